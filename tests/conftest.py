"""Make sure the tests exercise the compiled package.

``python -m pytest`` run from the repository root puts the source tree first on
sys.path; without an in-place build its ``fastnn/`` has no compiled kernels and
would shadow the installed package. Drop the root from sys.path in that case.
"""
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not glob.glob(os.path.join(ROOT, "fastnn", "_kernels", "_ops*.so")) + \
        glob.glob(os.path.join(ROOT, "fastnn", "_kernels", "_ops*.pyd")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
    # Subprocesses (`python -m fastnn ...`, `python -c ...`) started from the root
    # would put it first on their sys.path too; Python >= 3.11 honours this.
    os.environ["PYTHONSAFEPATH"] = "1"


def pytest_configure(config):
    """In CI (FASTNN_REQUIRE_OPTIONAL=1) the optional parity and MPI tests must
    run, so a missing torch or MPI is an error rather than a silent skip."""
    if os.environ.get("FASTNN_REQUIRE_OPTIONAL") != "1":
        return
    import importlib.util
    import shutil
    missing = [m for m in ("torch", "mpi4py", "hypothesis") if importlib.util.find_spec(m) is None]
    if shutil.which("mpirun") is None and shutil.which("mpiexec") is None:
        from fastnn.distributed import find_mpirun
        if find_mpirun() is None:
            missing.append("mpirun")
    if missing:
        raise RuntimeError(f"FASTNN_REQUIRE_OPTIONAL=1 but {missing} missing: install the extras")
