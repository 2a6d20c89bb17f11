"""What is measured: the configurations, their targets, the timing budgets,
and the same start every implementation gets (weights and batches).

NumPy only: worker processes import this without fastnn or any peer."""
import math
import zlib

SEED = 1234
N_BATCHES = 4  # distinct batches cycled through by every implementation
IMPLS = ("fastnn", "fastnn_layers", "numpy", "torch", "torch_fused", "jax", "onnxruntime")
# the peers fastnn is compared with ("vs best peer"); NumPy is reported on its own
PEERS = ("torch", "torch_fused", "jax", "onnxruntime")
IMPL_LABELS = {"fastnn": "fastnn", "fastnn_layers": "fastnn-layers", "numpy": "numpy",
               "torch": "torch", "torch_fused": "torch-fused", "jax": "jax",
               "onnxruntime": "onnxruntime", "gemm": "GEMM floor"}
# what each optional implementation needs importable
OPTIONAL_MODULES = {"torch": ("torch",), "torch_fused": ("torch",), "jax": ("jax", "optax"),
                    "onnxruntime": ("onnx", "onnxruntime")}


class Skip(Exception):
    """Raised by an implementation for a configuration it does not measure."""


# ---------------------------------------------------------------- configurations
def _mlp(batch):
    return {"name": f"mlp b{batch}", "mode": "train", "sizes": [784, 512, 256, 10], "act": "relu",
            "loss": "ce", "opt": "adam", "lr": 1e-3, "batch": batch, "unit": "samples"}


def _seq(name, arch, **sizes):
    """A sequence LM (fastnn.apps' GRULM, LSTMLM, TransformerLM, CausalConvLM
    against the same model in PyTorch): (batch, context) ids -> next token,
    cross-entropy, Adam; the rate counts the context tokens read."""
    seq = {"arch": arch, "vocab": 100, "context": 64, **sizes}
    return {"name": name, "mode": "train", "seq": seq, "loss": "ce",
            "opt": "adam", "lr": 1e-3, "batch": 32, "unit": "tokens",
            "impls": ["fastnn", "torch"]}


SEQ_CONFIGS = [
    _seq("gru lm", "gru", dim=64, hidden=256),
    _seq("lstm lm", "lstm", dim=64, hidden=256),
    _seq("transformer lm", "transformer", d_model=128, nhead=4, layers=2, dim_feedforward=512),
    _seq("conv lm", "conv", dim=64, channels=128, kernel_size=3, layers=3),
    _seq("gru lm h512", "gru", dim=64, hidden=512),
    _seq("lstm lm h512", "lstm", dim=64, hidden=512),
    _seq("transformer lm d512", "transformer", d_model=512, nhead=8, layers=2,
         dim_feedforward=2048),
]
CONFIGS = [
    _mlp(16), _mlp(64), _mlp(256), _mlp(1024),
    {"name": "tiny b32", "mode": "train", "sizes": [32, 64, 64, 1], "act": "relu", "loss": "bce",
     "opt": "sgd", "lr": 1e-2, "momentum": 0.9, "batch": 32, "unit": "samples"},
    {"name": "infer b1", "mode": "infer", "sizes": [784, 512, 256, 10], "act": "relu", "batch": 1,
     "unit": "samples"},
    {"name": "infer b256", "mode": "infer", "sizes": [784, 512, 256, 10], "act": "relu",
     "batch": 256, "unit": "samples"},
    # next-token LM: Embedding(80, 24), Flatten, Linear(8*24, 256), Tanh, Linear(256, 80)
    {"name": "lm b128", "mode": "train", "embed": {"vocab": 80, "dim": 24, "context": 8},
     "sizes": [8 * 24, 256, 80], "act": "tanh", "loss": "ce", "opt": "adam", "lr": 1e-3,
     "batch": 128, "unit": "tokens"},
] + SEQ_CONFIGS
CONFIG_BY_NAME = {c["name"]: c for c in CONFIGS}

# (config, kind, threshold): kind "numpy"/"peer" = fastnn speed over NumPy /
# over the best peer >= x, "floor" = % of the GEMM floor >= x (for inference at
# batch 1, 100 % means fastnn's time is at or below the floor's). "*" applies to
# every row (warm and fresh-process) that measures that kind's reference and
# has no more specific target of that kind.
FRESH = " (fresh)"        # row suffix: steady calls in a fresh process
FRESH_FIRST = " (fresh, 1st)"  # row suffix: the first call in a fresh process
TARGETS = [
    ("*", "numpy", 1.0), ("*", "peer", 1.0),
    ("tiny b32", "numpy", 5.0),
    ("mlp b256", "floor", 90.0), ("mlp b1024", "floor", 90.0),
    ("infer b256", "floor", 95.0), ("infer b256" + FRESH, "floor", 95.0),
    ("infer b1", "floor", 100.0), ("infer b1" + FRESH, "floor", 100.0),
    # the sequence LMs' only peer is PyTorch
    ("gru lm", "peer", 1.5), ("lstm lm", "peer", 1.5), ("transformer lm", "peer", 1.5),
    ("conv lm", "peer", 1.5),
    ("gru lm h512", "peer", 1.0), ("lstm lm h512", "peer", 1.0),
    ("transformer lm d512", "peer", 1.0),
]
TARGET_NEEDS = {"numpy": "numpy", "floor": "gemm"}  # the column a kind of target compares with

# Timing budgets: warm-up (seconds, min steps), then `repeats` timed runs of
# about `repeat_s` seconds each (at least `min_steps` steps) per process, in
# `rounds` interleaved rounds, each after a re-warm of `rewarm_steps` steps
# and `rewarm_s` seconds.
# settle_s: idle time between turns, longer than OpenBLAS's worker threads keep
# spinning after a call (~0.1 s): a neighbour's spinning pool on the same two
# cores was measured to cost a 2-thread run a third of its speed.
# fresh_reps: fresh processes per (inference config, implementation, threads);
# fresh_calls: calls timed after the first one in each.
FULL = {"rounds": 9, "repeats": 3, "repeat_s": 0.2, "warmup_s": 0.3, "warmup_steps": 10,
        "min_steps": 3, "rewarm_steps": 2, "rewarm_s": 0.02, "settle_s": 0.4, "cap_s": 2.0,
        "fresh_reps": 3, "fresh_calls": 20}
QUICK = {"rounds": 3, "repeats": 2, "repeat_s": 0.04, "warmup_s": 0.05, "warmup_steps": 3,
         "min_steps": 3, "rewarm_steps": 2, "rewarm_s": 0.005, "settle_s": 0.03, "cap_s": 0.4,
         "fresh_reps": 1, "fresh_calls": 5}
# A sequence LM's step takes 0.05-2 s: fewer, longer steps per repeat, and the
# first steps (the loss check) count as warm-up.
SEQ_FULL = {"repeat_s": 1.0, "warmup_s": 0.3, "warmup_steps": 3, "min_steps": 2,
            "rewarm_steps": 1, "rewarm_s": 0.0, "cap_s": 10.0}
SEQ_QUICK = {"repeat_s": 0.3, "warmup_s": 0.0, "warmup_steps": 1, "min_steps": 1,
             "rewarm_steps": 0, "rewarm_s": 0.0, "cap_s": 5.0}


def layers(cfg, ns):
    """A (non-sequence) configuration's layers, made by `ns`: fastnn or
    torch.nn, whose layers have the same names and arguments."""
    act = {"relu": ns.ReLU, "tanh": ns.Tanh}[cfg["act"]]
    sizes, emb = cfg["sizes"], cfg.get("embed")
    out = [ns.Embedding(emb["vocab"], emb["dim"]), ns.Flatten()] if emb else []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append(ns.Linear(a, b))
        if i < len(sizes) - 2:
            out.append(act())
    return out


def impls_for(cfg, peers):
    """The columns a configuration is measured with, in a fixed order."""
    if cfg.get("impls"):
        return [i for i in cfg["impls"] if i not in PEERS or i in peers]
    impls = ["fastnn"]
    if cfg["mode"] == "train":
        impls.append("fastnn_layers")
    impls.append("numpy")
    for p in peers:
        if p == "torch_fused" and cfg["mode"] != "train":
            continue
        if p == "onnxruntime" and (cfg["mode"] != "infer" or cfg.get("embed")):
            continue
        impls.append(p)
    impls.append("gemm")
    return impls


def budget_for(cfg, budget, quick):
    """The budget one configuration is measured with."""
    if cfg.get("seq"):
        return dict(budget, **(SEQ_QUICK if quick else SEQ_FULL))
    return budget


def items_per_step(cfg):
    """What a rate counts per step: samples, or for a sequence LM the tokens read."""
    return cfg["batch"] * (cfg["seq"]["context"] if cfg.get("seq") else 1)


def count_gemms(cfg):
    """How many matrix products the floor times for one step (None: no floor)."""
    if cfg.get("seq"):
        return None
    L = len(cfg["sizes"]) - 1
    if cfg["mode"] == "infer":
        return L
    return L + L + (L if cfg.get("embed") else L - 1)


# ---------------------------------------------------------------- the same start
def make_params(cfg, seed=SEED):
    """The initial weights, in PyTorch order and layout: [embedding.weight]
    then (weight (out, in), bias (out,)) per Linear, all float32. A sequence
    LM's shapes are its model's: for those, a function (name, shape) -> array
    that both implementations load by parameter name (see named_param)."""
    import numpy as np
    if cfg.get("seq"):
        return lambda name, shape: named_param(name, shape, seed)
    rng = np.random.default_rng(seed)
    params = []
    emb = cfg.get("embed")
    if emb:
        params.append(rng.standard_normal((emb["vocab"], emb["dim"])).astype(np.float32))
    sizes = cfg["sizes"]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(n_in)
        params.append(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, n_out).astype(np.float32))
    return params


def named_param(name, shape, seed=SEED):
    """A parameter's start from its name alone: U(±1/√fan_in) for matrices and
    biases, ones for a 1-d weight (a LayerNorm's gain)."""
    import numpy as np
    if len(shape) == 1 and name.endswith("weight"):
        return np.ones(shape, np.float32)
    bound = 1.0 / math.sqrt(math.prod(shape[1:]) if len(shape) > 1 else shape[0])
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def make_data(cfg, seed=SEED):
    """N_BATCHES (x, y) pairs: float32 N(0,1) inputs (or token ids), int64
    labels for CE, float32 {0,1} targets of shape (batch, 1) for BCE."""
    import numpy as np
    rng = np.random.default_rng(seed + 1)
    ids = cfg.get("embed") or cfg.get("seq")
    n, out = cfg["batch"], cfg["seq"]["vocab"] if cfg.get("seq") else cfg["sizes"][-1]
    batches = []
    for _ in range(N_BATCHES):
        if ids:
            x = rng.integers(0, ids["vocab"], (n, ids["context"]), dtype=np.int64)
        else:
            x = rng.standard_normal((n, cfg["sizes"][0])).astype(np.float32)
        if cfg.get("loss") == "bce":
            y = rng.integers(0, 2, (n, out)).astype(np.float32)
        else:
            y = rng.integers(0, out, n, dtype=np.int64)
        batches.append((x, y))
    return batches
