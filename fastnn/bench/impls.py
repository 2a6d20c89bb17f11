"""Which function builds which implementation's step."""
from . import (impl_fastnn, impl_gemm, impl_jax, impl_numpy, impl_onnxruntime, impl_torch,
               sequence)
from .configs import Skip

BUILDERS = {
    "numpy": impl_numpy.build,
    "fastnn": impl_fastnn.build,
    "fastnn_layers": impl_fastnn.build_layers,
    "torch": impl_torch.build,
    "torch_fused": lambda *a: impl_torch.build(*a, fused=True),
    "jax": impl_jax.build,
    "onnxruntime": impl_onnxruntime.build,
    "gemm": impl_gemm.build,
}
SEQ_BUILDERS = {"fastnn": sequence.build_fastnn, "torch": sequence.build_torch}


def builder(cfg, impl):
    """The function (cfg, params, data, threads) -> (step, step_loss) that
    builds `impl` for `cfg`; raises Skip for a column `cfg` does not have."""
    if impl not in BUILDERS:
        raise ValueError(f"unknown implementation {impl!r}")
    if cfg.get("impls") and impl not in cfg["impls"]:
        raise Skip(f"{cfg['name']} is measured with {', '.join(cfg['impls'])} only")
    return (SEQ_BUILDERS if cfg.get("seq") else BUILDERS)[impl]
