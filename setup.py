"""Build of fastnn's compiled core: one Cython extension over the C kernels in csrc/.

OpenMP is probed by compiling a tiny program; without it the kernels build
serially and a warning says so. Set FASTNN_NATIVE=1 for a local -march=native
build (not portable; wheels never use it)."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


# (compile flags, link flags) to try: GCC/Clang, Intel, Apple Clang with libomp.
OPENMP_CANDIDATES = (("-fopenmp", "-fopenmp"), ("-qopenmp", "-qopenmp"),
                     ("-Xpreprocessor -fopenmp", "-lomp"))


def openmp_flags():
    """(compile flags, link flags) that make OpenMP work with this compiler, or None."""
    if os.environ.get("FASTNN_NO_OPENMP"):
        return None
    if sys.platform == "win32":
        return ["/openmp"], []  # MSVC always has OpenMP 2.0, which is all the kernels use
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    env_flags = os.environ.get("CFLAGS", "").split() + os.environ.get("LDFLAGS", "").split()
    for compile_flags, link_flags in OPENMP_CANDIDATES:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as fh:
                fh.write(OPENMP_PROBE)
            cmd = (cc + env_flags + compile_flags.split() + [src, "-o", os.path.join(tmp, "probe")]
                   + link_flags.split())
            try:
                ok = subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return compile_flags.split(), link_flags.split()
    return None


omp = openmp_flags()
if omp is None:
    warnings.warn("fastnn: the C compiler has no OpenMP; building serial kernels "
                  "(set_num_threads will have no effect)")
    omp = ([], [])

# -fno-math-errno and -fno-trapping-math change no result (errno and FP exception
# flags only) but let sqrt and the selects in exp/tanh/sigmoid vectorize.
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function",
                "-Werror=implicit-function-declaration"]  # a missing kernel fails the build
if os.environ.get("FASTNN_NATIVE"):
    compile_args.append("-march=native")
if sys.platform == "win32":
    compile_args = ["/O2", "/std:c11"]  # C11 for restrict and _Pragma

extensions = [
    Extension(
        "fastnn._kernels._ops",
        sources=["fastnn/_kernels/_ops.pyx", "csrc/kernels.c"],
        include_dirs=["csrc", numpy.get_include()],
        depends=["csrc/fnn.h", "csrc/fnn_decl.h", "csrc/fnn_template.h"]
        + [f"csrc/fnn_{a}{s}.h" for a in ("seq", "rnn", "attn") for s in ("", "_decl")]
        + ["fastnn/_kernels/_fnn.pxd"]
        + [f"fastnn/_kernels/_fnn_{a}.pxd" for a in ("seq", "rnn", "attn")]
        + [f"fastnn/_kernels/_{a}.pxi" for a in ("seq", "rnn", "attn")],
        extra_compile_args=compile_args + omp[0],
        extra_link_args=omp[1],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(extensions, language_level=3,
                          compiler_directives={"freethreading_compatible": False}),
)
