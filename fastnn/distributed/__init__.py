"""Data-parallel training over MPI: ``DistributedTrainer`` is ``Trainer``'s one
step pipeline and one fit loop with MPI collectives as its hooks; ``launch``
finds mpirun and builds the command that starts local ranks. mpi4py is
imported only when a DistributedTrainer is made."""
from .launch import find_mpirun, mpirun_command
from .trainer import DistributedError, DistributedTrainer, install_excepthook

__all__ = ["DistributedTrainer", "DistributedError", "install_excepthook", "find_mpirun",
           "mpirun_command"]
