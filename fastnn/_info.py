"""fn.info(): what this build is and what it runs on."""
import platform
import sys

import numpy as np
import scipy

from ._version import __version__
from ._kernels import _ops
from ._threading import blas_info, get_num_threads


def info(file=None):
    """Print version, OpenMP, BLAS and thread counts (and return them as a dict)."""
    blas = blas_info()
    data = {
        "fastnn": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "openmp": _ops.openmp_enabled(),
        "threads": get_num_threads(),
        "openmp_max_threads": _ops.openmp_max_threads(),
        "blas": ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                          f"{b.get('num_threads')} thread)" for b in blas) or "scipy BLAS (unknown)",
    }
    width = max(map(len, data))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in data.items()), file=file or sys.stdout)
    return data
