"""The machine record in the JSON: CPU, build flags, BLAS and its kernel set,
the versions of fastnn's peers, the load."""
import os
import platform
import sys

from .procs import JAX_1T_FLAGS, PIN_JAX


def _cpuinfo():
    """CPU model, family/model/stepping and the SIMD flags that matter here."""
    out = {}
    keys = {"model name": "cpu_model", "cpu family": "cpu_family", "model": "cpu_model_number",
            "stepping": "cpu_stepping", "vendor_id": "cpu_vendor"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k in keys:
                    out[keys[k]] = v
                elif k == "flags":
                    have = set(v.split())
                    out["cpu_simd"] = [x for x in ("sse4_2", "avx", "avx2", "fma", "avx512f",
                                                   "avx512_bf16", "amx_tile") if x in have]
    except OSError:
        pass
    return out


def build_info():
    """How the compiled core was built: the compiler and the flags it recorded
    in the extension (DWARF producer string, present when built with -g)."""
    import glob
    import sysconfig
    info = {"cc": sysconfig.get_config_var("CC"),
            "python_cflags": sysconfig.get_config_var("CFLAGS"),
            "FASTNN_NATIVE": os.environ.get("FASTNN_NATIVE")}
    try:
        import fastnn._kernels as k
        sos = sorted(glob.glob(os.path.join(os.path.dirname(k.__file__), "_ops*.so"))
                     + glob.glob(os.path.join(os.path.dirname(k.__file__), "_ops*.pyd")))
    except ImportError:
        sos = []
    if sos:
        import re
        info["extension"] = sos[0]
        with open(sos[0], "rb") as f:
            blob = f.read()
        producers = sorted({m.decode(errors="replace") for m in
                            re.findall(rb"GNU C[0-9x+]* [^\x00]{1,600}", blob)})
        comments = sorted({m.decode(errors="replace")
                           for m in re.findall(rb"GCC: \([^\x00]{1,200}", blob)})
        info["compiler"] = comments[:3]
        info["compile_flags"] = producers[:3] or "not recorded (built without -g)"
    return info


def _versions():
    from importlib import metadata
    out = {}
    for dist in ("numpy", "scipy", "threadpoolctl", "torch", "jax", "jaxlib", "optax", "onnx",
                 "onnxruntime", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _blas_kernels():
    """The BLAS scipy (and so fastnn) and NumPy use, and its kernel set."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    return [{k: i.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                   "num_threads", "filepath")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def machine_info():
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "executable": sys.executable, "cpu_count": os.cpu_count()}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    info.update(_cpuinfo())
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    import io
    import numpy
    import fastnn
    info["numpy"] = numpy.__version__
    info["versions"] = _versions()
    info["fastnn_info"] = fastnn.info(file=io.StringIO())
    info["fastnn_build"] = build_info()
    info["blas"] = _blas_kernels()
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS")
    info["jax_1thread"] = {"XLA_FLAGS": JAX_1T_FLAGS, "affinity_pinned": PIN_JAX}
    return info
