"""One threading runtime at a time.

fastnn's kernels split GEMMs across OpenMP threads themselves and call scipy's
BLAS single-threaded inside them: OpenBLAS's pool and the OpenMP pool spinning
against each other on the same cores was measured at 5-8x slower. So scipy's
OpenBLAS is pinned to one thread and ``set_num_threads`` sets the OpenMP side.
NumPy's own BLAS (a separate library in NumPy >= 2 wheels) is left alone.
"""
import os

from ._kernels import _ops

_blas_controller = None


def _scipy_blas_pools():
    """threadpoolctl handles of the BLAS that scipy.linalg.cython_blas uses."""
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional in source builds; then OPENBLAS_NUM_THREADS rules
            return []
        _blas_controller = ThreadpoolController()
    return [lib for lib in _blas_controller.lib_controllers
            if lib.user_api == "blas" and "numpy" not in os.path.basename(os.path.dirname(lib.filepath))]


def _pin_blas():
    for lib in _scipy_blas_pools():
        lib.set_num_threads(1)


# Set in a child forked after the OpenMP pool started: it must stay serial.
_serial_after_fork = False


def set_num_threads(n):
    """Threads used by fastnn's kernels (results do not depend on it).

    In a process forked after fastnn ran in parallel (multiprocessing's default
    on Linux) GNU OpenMP's pool cannot be used; fastnn then stays serial and
    warns once instead of hanging."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > 1 and _serial_after_fork:
        import warnings
        warnings.warn(f"fastnn: set_num_threads({n}) ignored in this forked process: OpenMP's "
                      "thread pool does not survive fork, so fastnn runs serially here (use "
                      "the 'spawn' or 'forkserver' start method for parallel workers)",
                      RuntimeWarning, stacklevel=2)
        return
    _ops.set_threads(n)


def get_num_threads():
    """The number of OpenMP threads fastnn's kernels use (see set_num_threads)."""
    return _ops.get_threads()


def _default_threads():
    for var in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _after_fork_in_child():
    # libgomp's thread pool does not survive fork: a parallel region in the
    # child waits forever for threads that do not exist. A child that stays
    # serial never touches it (PyTorch does the same). If the parent never
    # started the pool, the child has none to inherit and may go parallel.
    global _serial_after_fork
    if _ops.openmp_pool_started():
        _serial_after_fork = True
        _ops.set_threads(1)


def blas_info():
    """Description of scipy's BLAS as threadpoolctl sees it."""
    return [dict(lib.info()) for lib in _scipy_blas_pools()]


_pin_blas()
_ops.set_threads(_default_threads() if _ops.openmp_enabled() else 1)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
