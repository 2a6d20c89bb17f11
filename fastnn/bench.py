"""Benchmarks: fastnn vs a careful pure-NumPy implementation vs its peers
(PyTorch eager and fused-optimizer, a ``jax.jit`` whole step, ONNX Runtime).

``python -m fastnn bench [--threads N] [--json out.json] [--quick] [--only SUBSTR,...]
[--plot out.png] [--from-json earlier.json]``

Each (implementation, thread count) runs in its own fresh Python process
whose thread count is fixed through the environment before anything is
imported (OMP/OPENBLAS/MKL/FASTNN_NUM_THREADS, plus ``torch.set_num_threads``,
ONNX Runtime's ``intra_op_num_threads``; a 1-thread JAX worker also gets
XLA_FLAGS and a one-CPU affinity mask, see ``_pin``).
All implementations start from the same weights (NumPy ``default_rng(seed)``,
float32, PyTorch layout) and train on the same batches with the same
hyperparameters. A configuration is built, warmed up and calibrated on first
use; then the worker processes take turns timing one repeat each (A B C ...
A B C ..., the order rotated every round, a pause between turns), so slow
machine drift hits every implementation alike; the table reports medians.
fastnn is measured twice for training: ``Trainer.step`` (the fused path) and
the explicit layer loop ("fastnn-layers").

Inference is also measured as a user meets it: a new process per run loads
the weights from a temporary .npz, builds the model and times its first call
and the next few ("(fresh)" and "(fresh, 1st)" rows): a warm benchmark process
can hide what a fresh serving process pays (BLAS state, lazy initialization,
JIT compilation).

The "GEMM floor" of a configuration is the time of only the matrix products
one step needs (training: 3 forward, 3 weight-gradient and 2 input-gradient
products for the MLP), done with NumPy ``matmul(out=)`` on preallocated
arrays at the same thread count; fastnn's throughput is reported as a
percentage of it.

Workers: ``--serve IMPL THREADS`` (persistent, one JSON request/answer per
line, used by the parent), ``--worker SPEC`` (one-shot, used by tests) and
``--fresh SPEC`` (one fresh-process inference run).
A worker imports only what its implementation needs: the NumPy worker loads
``_reference.py`` by path, so neither it nor the peers' workers ever load
fastnn's compiled core or its OpenMP runtime.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__" and not __package__:
    # Run as a script (how the parent launches workers): sys.path[0] is this
    # package's directory, whose module names (text, layers, ...) must not
    # shadow anything.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

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
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# ---------------------------------------------------------------- configurations
def _mlp(batch):
    return {"name": f"mlp b{batch}", "mode": "train", "sizes": [784, 512, 256, 10], "act": "relu",
            "loss": "ce", "opt": "adam", "lr": 1e-3, "batch": batch, "unit": "samples"}


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
]
CONFIG_BY_NAME = {c["name"]: c for c in CONFIGS}

# (config, kind, threshold): kind "numpy"/"peer" = fastnn speed over NumPy /
# over the best peer >= x, "floor" = % of the GEMM floor >= x (for inference at
# batch 1, 100 % means fastnn's time is at or below the floor's). "*" applies to
# every row (warm and fresh-process) without a more specific target of that kind.
FRESH = " (fresh)"        # row suffix: steady calls in a fresh process
FRESH_FIRST = " (fresh, 1st)"  # row suffix: the first call in a fresh process
TARGETS = [
    ("*", "numpy", 1.0), ("*", "peer", 1.0),
    ("tiny b32", "numpy", 5.0),
    ("mlp b256", "floor", 90.0), ("mlp b1024", "floor", 90.0),
    ("infer b256", "floor", 95.0), ("infer b256" + FRESH, "floor", 95.0),
    ("infer b1", "floor", 100.0), ("infer b1" + FRESH, "floor", 100.0),
]

# Timing budgets: warm-up (seconds, min steps), then `repeats` timed runs of
# about `repeat_s` seconds each per process, in `rounds` interleaved rounds.
# settle_s: idle time between turns, longer than OpenBLAS's worker threads keep
# spinning after a call (~0.1 s): a neighbour's spinning pool on the same two
# cores was measured to cost a 2-thread run a third of its speed.
# fresh_reps: fresh processes per (inference config, implementation, threads);
# fresh_calls: calls timed after the first one in each.
FULL = {"rounds": 9, "repeats": 3, "repeat_s": 0.2, "warmup_s": 0.3, "warmup_steps": 10,
        "rewarm_s": 0.02, "settle_s": 0.4, "cap_s": 2.0, "fresh_reps": 3, "fresh_calls": 20}
QUICK = {"rounds": 3, "repeats": 2, "repeat_s": 0.04, "warmup_s": 0.05, "warmup_steps": 3,
         "rewarm_s": 0.005, "settle_s": 0.03, "cap_s": 0.4, "fresh_reps": 1, "fresh_calls": 5}


# ---------------------------------------------------------------- shared setup
def make_params(cfg, seed=SEED):
    """The initial weights, in PyTorch order and layout: [embedding.weight]
    then (weight (out, in), bias (out,)) per Linear, all float32."""
    import numpy as np
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


def make_data(cfg, seed=SEED):
    """N_BATCHES (x, y) pairs: float32 N(0,1) inputs (or token ids), int64
    labels for CE, float32 {0,1} targets of shape (batch, 1) for BCE."""
    import numpy as np
    rng = np.random.default_rng(seed + 1)
    n, out = cfg["batch"], cfg["sizes"][-1]
    emb = cfg.get("embed")
    batches = []
    for _ in range(N_BATCHES):
        if emb:
            x = rng.integers(0, emb["vocab"], (n, emb["context"]), dtype=np.int64)
        else:
            x = rng.standard_normal((n, cfg["sizes"][0])).astype(np.float32)
        if cfg.get("loss") == "bce":
            y = rng.integers(0, 2, (n, out)).astype(np.float32)
        else:
            y = rng.integers(0, out, n, dtype=np.int64)
        batches.append((x, y))
    return batches


# ---------------------------------------------------------------- timing
def _warm(step, steps, seconds, start=0):
    """Run at least `steps` steps and at least `seconds`; returns the next index."""
    t0 = time.perf_counter()
    i = start
    while i < start + steps or time.perf_counter() - t0 < seconds:
        step(i)
        i += 1
    return i


def _calibrate(step, repeat_s, start):
    """Steps per timed repeat, so that one repeat lasts about repeat_s."""
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < 0.1 * repeat_s:
        step(start + n)
        n += 1
    if getattr(step, "sync", None) is not None:
        step.sync()
    per_step = (time.perf_counter() - t0) / n
    return max(3, int(math.ceil(repeat_s / max(per_step, 1e-7))))


def _timed(step, steps, batch, cap_s):
    """(samples/s, process CPU time / wall time) over `steps` steps (fewer if
    the run exceeds cap_s seconds). CPU/wall near 1 on a 1-thread run shows
    that the implementation really used one core (spinning pools count too).
    A step function with a ``sync`` attribute (asynchronous dispatch) is
    waited for before the clock stops."""
    sync = getattr(step, "sync", None)
    c0 = time.process_time()
    t0 = time.perf_counter()
    done = steps
    for j in range(steps):
        step(j)
        if time.perf_counter() - t0 > cap_s:
            done = j + 1
            break
    if sync is not None:
        sync()
    wall = time.perf_counter() - t0
    return done * batch / wall, (time.process_time() - c0) / wall


def _head(out, rows=4):
    """The first rows of an output, as JSON-able floats (for the same-start check)."""
    import numpy as np
    return np.asarray(out, dtype=np.float64)[:rows].tolist()


class _Cell:
    """One (configuration, implementation) in a worker: built, warmed up and
    calibrated on creation; each turn() re-warms briefly and times one repeat.
    With losses=k, records the first k training losses or, for inference, the
    first rows of the output on the first batch."""

    def __init__(self, cfg, impl, threads, budget, seed=SEED, losses=0):
        params = make_params(cfg, seed)
        data = make_data(cfg, seed)
        self.batch = cfg["batch"]
        self.step, step_loss = IMPL_BUILDERS[impl](cfg, params, data, threads)
        self.method = getattr(self.step, "method", None)
        self.losses = self.outputs = None
        if losses and step_loss is not None:
            if cfg["mode"] == "train":
                self.losses = [float(step_loss(i)) for i in range(losses)]
            else:
                self.outputs = _head(step_loss(0))
        i = _warm(self.step, budget["warmup_steps"], budget["warmup_s"], start=losses)
        self.steps = _calibrate(self.step, budget["repeat_s"], i)
        self.cpu = None

    def turn(self, budget):
        _warm(self.step, 2, budget["rewarm_s"])  # caches and thread pools, after others ran
        rate, self.cpu = _timed(self.step, self.steps, self.batch, budget["cap_s"])
        return rate


# ---------------------------------------------------------------- implementations
def _load_reference():
    """fastnn/_reference.py as a standalone module (no fastnn import)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_fastnn_reference_standalone",
                                                  os.path.join(_HERE, "_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _numpy_impl(cfg, params, data, threads):
    """The careful NumPy user, from fastnn._reference: preallocated buffers,
    weights and gradients in one flat buffer each (one optimizer pass),
    fused bias+activation, in-place updates."""
    import numpy as np
    R = _load_reference()
    act_code = {"relu": R.ACT_RELU, "tanh": R.ACT_TANH}[cfg["act"]]
    n, sizes, emb = cfg["batch"], cfg["sizes"], cfg.get("embed")
    total = sum(p.size for p in params)
    P = np.empty(total, np.float32)
    G = np.zeros(total, np.float32)
    views, gviews, off = [], [], 0
    for p in params:
        views.append(P[off:off + p.size].reshape(p.shape))
        gviews.append(G[off:off + p.size].reshape(p.shape))
        views[-1][...] = p
        off += p.size
    E = gE = None
    if emb:
        E, gE = views.pop(0), gviews.pop(0)
    Ws, bs, gWs, gbs = views[0::2], views[1::2], gviews[0::2], gviews[1::2]
    L = len(Ws)
    codes = [act_code] * (L - 1) + [R.ACT_NONE]
    ys = [np.empty((n, s), np.float32) for s in sizes[1:]]
    x0 = np.empty((n, sizes[0]), np.float32) if emb else None
    gys = [np.empty((n, s), np.float32) for s in sizes[1:]]  # grad w.r.t. layer outputs
    gzs = [np.empty((n, s), np.float32) for s in sizes[1:]]
    gx0 = np.empty((n, sizes[0]), np.float32) if emb else None
    xs = [x for x, _ in data]
    ys_t = [y for _, y in data]
    nb = len(data)

    def forward(x):
        if emb:
            R.embedding_forward(x.reshape(-1), E, x0.reshape(n * emb["context"], emb["dim"]))
            x = x0
        inp = [x]
        for i in range(L):
            R.linear_forward(inp[i], Ws[i], bs[i], codes[i], 0.0, None, ys[i])
            inp.append(ys[i])
        return inp

    if cfg["mode"] == "infer":
        def step(i):
            return forward(xs[i % nb])[-1]
        return step, step

    m = np.zeros(total, np.float32)
    v = np.zeros(total, np.float32)
    buf = np.zeros(total, np.float32)
    state = {"t": 0}

    def train_step(i):
        k = i % nb
        inp = forward(xs[k])
        out, gout = ys[-1], gys[-1]
        if cfg["loss"] == "ce":
            loss = R.cross_entropy_labels(out, ys_t[k], 0.0, gout)
        else:
            loss = R.bce_logits(out.reshape(-1), ys_t[k].reshape(-1), gout.reshape(-1))
        for j in range(L - 1, -1, -1):
            if j > 0:
                gx = gys[j - 1]
            else:
                gx = gx0  # None unless an embedding needs it
            R.linear_backward(inp[j], Ws[j], codes[j], 0.0, None, ys[j], gys[j], gzs[j], gx,
                              gWs[j], gbs[j])
        if emb:
            R.embedding_backward(xs[k].reshape(-1), gx0.reshape(n * emb["context"], emb["dim"]),
                                 gE)
        state["t"] += 1
        if cfg["opt"] == "adam":
            R.adam(P, G, m, v, cfg["lr"], 0.9, 0.999, 1e-8, 0.0, False, state["t"])
        else:
            R.sgd(P, G, buf, cfg["lr"], cfg["momentum"], 0.0, 0.0, False, state["t"] == 1)
        return loss

    return train_step, train_step


def _fastnn_model(cfg, params, threads):
    import fastnn as fn
    fn.set_num_threads(threads)
    act = {"relu": fn.ReLU, "tanh": fn.Tanh}[cfg["act"]]
    sizes, emb = cfg["sizes"], cfg.get("embed")
    layers = []
    if emb:
        layers += [fn.Embedding(emb["vocab"], emb["dim"]), fn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    model = fn.Sequential(*layers)
    names = [name for name, _ in model.named_parameters()]
    model.load_state_dict(dict(zip(names, params)))
    if cfg["mode"] == "train":
        loss = fn.CrossEntropyLoss() if cfg["loss"] == "ce" else fn.BCEWithLogitsLoss()
        if cfg["opt"] == "adam":
            opt = fn.Adam(model.parameters(), lr=cfg["lr"])
        else:
            opt = fn.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
        return model, loss, opt
    return model, None, None


def _fastnn_impl(cfg, params, data, threads):
    """The public API: Sequential + Trainer.step; for inference eval-mode
    model(x) or model.predict(x), whichever is faster (a fresh process, which
    must not warm anything up, uses model.predict(x))."""
    import fastnn as fn
    model, loss, opt = _fastnn_model(cfg, params, threads)
    xs = [x for x, _ in data]
    ys = [y for _, y in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        model.eval()
        predict = model.predict

        def call(i):
            return model(xs[i % nb])

        def pred(i):
            return predict(xs[i % nb])
        pred.method = "model.predict(x)"
        if cfg.get("fresh"):
            return pred, pred
        # the faster of the two public inference calls (alternating trials)
        best = {call: [], pred: []}
        for _ in range(3):
            for f in best:
                t0 = time.perf_counter()
                n = _warm(f, 5, 0.02)
                best[f].append((time.perf_counter() - t0) / n)
        step = min(best, key=lambda f: min(best[f]))
        step.method = "model(x)" if step is call else "model.predict(x)"
        return step, step
    trainer = fn.Trainer(model, loss, opt)
    tstep = trainer.step

    def train_step(i):
        k = i % nb
        return tstep(xs[k], ys[k])
    train_step.method = "Trainer.step(x, y)"
    return train_step, train_step


def _fastnn_layers_impl(cfg, params, data, threads):
    """The explicit PyTorch-style loop over fastnn's layers: forward, loss,
    zero_grad, backward, optimizer step (no fused Trainer.step)."""
    if cfg["mode"] == "infer":
        raise _Skip("inference has no separate layer path (the fastnn row is model(x))")
    model, loss_fn, opt = _fastnn_model(cfg, params, threads)
    xs = [x for x, _ in data]
    ys = [y for _, y in data]
    nb = len(data)

    def train_step(i):
        k = i % nb
        out = model(xs[k])
        loss = loss_fn(out, ys[k])
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        return loss
    train_step.method = "model(x); loss_fn(out, y); zero_grad(); backward(); opt.step()"
    return train_step, train_step


def _torch_impl(cfg, params, data, threads, fused=False):
    """A plain PyTorch loop: zero_grad(set_to_none=True), forward, loss,
    backward, step; Adam/SGD with foreach=False, or fused=True."""
    import torch
    torch.set_num_threads(threads)
    nn = torch.nn
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[cfg["act"]]
    sizes, emb = cfg["sizes"], cfg.get("embed")
    layers = []
    if emb:
        layers += [nn.Embedding(emb["vocab"], emb["dim"]), nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p, w in zip(model.parameters(), params):
            p.copy_(torch.from_numpy(w))
    xs = [torch.from_numpy(x) for x, _ in data]
    ys = [torch.from_numpy(y) for _, y in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        if fused:
            raise _Skip("no fused variant for inference")
        model.eval()
        inference_mode = torch.inference_mode

        def step(i):
            with inference_mode():
                return model(xs[i % nb])
        return step, lambda i: step(i).numpy()
    loss_fn = nn.CrossEntropyLoss() if cfg["loss"] == "ce" else nn.BCEWithLogitsLoss()
    kw = {"fused": True} if fused else {"foreach": False}
    try:
        if cfg["opt"] == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], **kw)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], **kw)
    except (RuntimeError, TypeError, ValueError) as e:
        raise _Skip(f"fused optimizer unsupported: {e}")

    def train_step(i):
        k = i % nb
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[k]), ys[k])
        loss.backward()
        opt.step()
        return loss

    return train_step, lambda i: train_step(i).item()


def _jax_impl(cfg, params, data, threads):
    """A ``jax.jit``-compiled whole step with optax (Adam, or SGD with momentum;
    softmax CE or sigmoid BCE on logits), parameters and optimizer state
    donated; for inference a jitted forward. At 1 thread asynchronous dispatch
    is off and every step is waited for; otherwise the timer waits at the end."""
    import functools
    import numpy as np
    import jax
    if threads == 1:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    emb = cfg.get("embed")
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[cfg["act"]]

    def forward(p, x):
        if emb:
            h, lin = jnp.take(p[0], x, axis=0).reshape(x.shape[0], -1), p[1:]
        else:
            h, lin = x, p
        L = len(lin) // 2
        for j in range(L):
            h = h @ lin[2 * j].T + lin[2 * j + 1]
            if j < L - 1:
                h = act(h)
        return h

    # jax's default integers are 32-bit: hand it int32 ids and labels up front
    xs = [jax.device_put(x.astype(np.int32) if emb else x) for x, _ in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        fwd = jax.jit(forward)
        p = [jax.device_put(w) for w in params]

        def step(i):
            return fwd(p, xs[i % nb]).block_until_ready()
        step.method = "jax.jit(forward)"
        return step, lambda i: np.asarray(step(i))
    import optax
    ce = cfg["loss"] == "ce"
    ys = [jax.device_put(y.astype(np.int32) if ce else y) for _, y in data]

    def loss_fn(p, x, y):
        z = forward(p, x)
        if ce:
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
        return optax.sigmoid_binary_cross_entropy(z, y).mean()

    if cfg["opt"] == "adam":
        tx = optax.adam(cfg["lr"], b1=0.9, b2=0.999, eps=1e-8)
    else:
        tx = optax.sgd(cfg["lr"], momentum=cfg["momentum"])

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def update(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p = [jnp.array(w) for w in params]
    state = [p, tx.init(p)]
    block = threads == 1

    def train_step(i):
        k = i % nb
        state[0], state[1], loss = update(state[0], state[1], xs[k], ys[k])
        if block:
            loss.block_until_ready()
        return loss
    if not block:
        train_step.sync = lambda: jax.block_until_ready(state)
    train_step.method = "jax.jit(value_and_grad + optax update, donate_argnums=(0, 1))"
    return train_step, train_step


def onnx_model(cfg, params):
    """The inference MLP as an ONNX graph (Gemm with transB=1, Relu/Tanh), as bytes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    if cfg.get("embed"):
        raise _Skip("no ONNX graph for the embedding model")
    sizes = cfg["sizes"]
    L = len(sizes) - 1
    act = {"relu": "Relu", "tanh": "Tanh"}[cfg["act"]]
    nodes, inits, h = [], [], "x"
    for j in range(L):
        w, b = params[2 * j], params[2 * j + 1]
        inits += [numpy_helper.from_array(np.ascontiguousarray(w), f"w{j}"),
                  numpy_helper.from_array(np.ascontiguousarray(b), f"b{j}")]
        out = "y" if j == L - 1 else f"z{j}"
        nodes.append(helper.make_node("Gemm", [h, f"w{j}", f"b{j}"], [out], transB=1))
        if j < L - 1:
            nodes.append(helper.make_node(act, [out], [f"h{j}"]))
            out = f"h{j}"
        h = out
    graph = helper.make_graph(
        nodes, "fastnn_bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fastnn.bench")
    model.ir_version = 8  # readable by every onnxruntime >= 1.13
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnxruntime_impl(cfg, params, data, threads):
    """ONNX Runtime (CPU provider) on the same graph and weights: an
    InferenceSession with intra_op_num_threads = threads, one inter-op thread,
    sequential execution, all graph optimizations; sess.run per call."""
    if cfg["mode"] != "infer":
        raise _Skip("ONNX Runtime is measured for inference only")
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_model(cfg, params), so, providers=["CPUExecutionProvider"])
    run = sess.run
    xs = [x for x, _ in data]
    nb = len(data)

    def step(i):
        return run(["y"], {"x": xs[i % nb]})[0]
    step.method = "InferenceSession.run"
    return step, step


def _gemm_impl(cfg, params, data, threads):
    """The GEMM floor: only the matrix products of one step, NumPy matmul(out=)
    on preallocated float32 arrays (forward; dW and, where needed, dX)."""
    import numpy as np
    rng = np.random.default_rng(0)
    n, sizes, emb = cfg["batch"], cfg["sizes"], cfg.get("embed")
    Ws = [p for p in params if p.ndim == 2][1 if emb else 0:]
    acts = [rng.standard_normal((n, s)).astype(np.float32) for s in sizes]
    grads = [rng.standard_normal((n, s)).astype(np.float32) for s in sizes]
    gWs = [np.empty_like(w) for w in Ws]
    L = len(Ws)
    train = cfg["mode"] == "train"

    def step(i):
        for j in range(L):
            np.matmul(acts[j], Ws[j].T, out=acts[j + 1])
        if train:
            for j in range(L - 1, -1, -1):
                np.matmul(grads[j + 1].T, acts[j], out=gWs[j])
                if j > 0 or emb:
                    np.matmul(grads[j + 1], Ws[j], out=grads[j])
    return step, None


class _Skip(Exception):
    pass


def count_gemms(cfg):
    """How many matrix products the floor times for one step."""
    L = len(cfg["sizes"]) - 1
    if cfg["mode"] == "infer":
        return L
    return L + L + (L if cfg.get("embed") else L - 1)


IMPL_BUILDERS = {
    "numpy": _numpy_impl,
    "fastnn": _fastnn_impl,
    "fastnn_layers": _fastnn_layers_impl,
    "torch": _torch_impl,
    "torch_fused": lambda *a: _torch_impl(*a, fused=True),
    "jax": _jax_impl,
    "onnxruntime": _onnxruntime_impl,
    "gemm": _gemm_impl,
}


def _budget(spec):
    b = dict(FULL)
    b.update({k: spec[k] for k in FULL if k in spec})
    return b


def run_worker(spec):
    """One-shot: build, warm up and time one implementation in this process;
    returns a JSON-able dict (spec: config, impl, threads, and optionally
    seed, losses = how many first-step losses to record, repeats, budget keys)."""
    cfg, impl, threads = spec["config"], spec["impl"], int(spec["threads"])
    if isinstance(cfg, str):
        cfg = CONFIG_BY_NAME[cfg]
    result = {"impl": impl, "config": cfg["name"], "threads": threads, "ok": False}
    try:
        if impl not in IMPL_BUILDERS:
            raise ValueError(f"unknown implementation {impl!r}")
        budget = _budget(spec)
        cell = _Cell(cfg, impl, threads, budget, spec.get("seed", SEED), int(spec.get("losses", 0)))
        if cell.losses is not None:
            result["losses"] = cell.losses
        if cell.outputs is not None:
            result["outputs"] = cell.outputs
        result["method"] = cell.method
        rates, cpus = [], []
        for _ in range(int(spec.get("repeats", budget["repeats"]))):
            rates.append(cell.turn(budget))
            cpus.append(cell.cpu)
        if rates:
            result.update(steps=cell.steps, rates=rates, median=statistics.median(rates),
                          cpu_per_wall=statistics.median(cpus))
        result["blas_threads"] = _blas_threads()
        result["ok"] = True
    except _Skip as e:
        result["skipped"] = str(e)
    except Exception:  # reported, not raised: the parent prints it
        result["error"] = traceback.format_exc(limit=8)
    return result


def run_fresh(spec):
    """Inference as a user meets it, in this new process: load the weights from
    the .npz (spec["weights"]: p0, p1, ... in PyTorch order), build the model,
    time the first call, then each of spec["calls"] more calls one by one."""
    t_start = time.perf_counter()
    cfg, impl, threads = dict(spec["config"], fresh=True), spec["impl"], int(spec["threads"])
    result = {"impl": impl, "config": cfg["name"], "threads": threads, "ok": False,
              "fresh": True}
    try:
        if impl not in IMPL_BUILDERS:
            raise ValueError(f"unknown implementation {impl!r}")
        if cfg["mode"] != "infer":
            raise ValueError("fresh-process runs are for inference configurations")
        import numpy as np
        with np.load(spec["weights"]) as z:
            params = [z[f"p{i}"] for i in range(len(z.files))]
        data = make_data(cfg, spec.get("seed", SEED))
        step, _ = IMPL_BUILDERS[impl](cfg, params, data, threads)
        t_built = time.perf_counter()
        step(0)
        first = time.perf_counter() - t_built
        times = []
        for j in range(1, int(spec.get("calls", FULL["fresh_calls"])) + 1):
            t0 = time.perf_counter()
            step(j)
            times.append(time.perf_counter() - t0)
        result.update(ok=True, first_s=first, build_s=t_built - t_start, times=times,
                      median_s=statistics.median(times) if times else None,
                      method=getattr(step, "method", None))
    except _Skip as e:
        result["skipped"] = str(e)
    except Exception:
        result["error"] = traceback.format_exc(limit=8)
    return result


def _serve(impl, threads):
    """Persistent worker: one process per (implementation, thread count).
    Reads one JSON request per line on stdin ({"config": ..., "budget": ...,
    "losses": k}) and answers one JSON line: the rate of one timed repeat."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints stays off the protocol
    try:
        versions = _import_for(impl)
        ready = {"ready": True, "pid": os.getpid(), "versions": versions,
                 "affinity": _affinity()}
    except Exception as e:  # e.g. torch not importable
        ready = {"ready": False, "error": f"{type(e).__name__}: {e}"}
    proto.write(json.dumps(ready) + "\n")
    proto.flush()
    cells, broken = {}, {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        cfg, budget = req["config"], req["budget"]
        name = cfg["name"]
        out = {"ok": False}
        try:
            if name in broken:
                out.update(broken[name])
            else:
                first = name not in cells
                if first:
                    cells[name] = _Cell(cfg, impl, threads, budget, req.get("seed", SEED),
                                        int(req.get("losses", 0)))
                cell = cells[name]
                out.update(ok=True, rate=cell.turn(budget), steps=cell.steps,
                           cpu_per_wall=cell.cpu)
                if first:
                    out["losses"] = cell.losses
                    out["outputs"] = cell.outputs
                    out["method"] = cell.method
                    out["blas_threads"] = _blas_threads()
        except _Skip as e:
            broken[name] = {"skipped": str(e)}
            out.update(broken[name])
        except Exception:
            broken[name] = {"error": traceback.format_exc(limit=8)}
            out.update(broken[name])
        proto.write(json.dumps(out) + "\n")
        proto.flush()
    return 0


def _import_for(impl):
    """Import what an implementation needs (before any timing); its versions."""
    import numpy
    versions = {"numpy": numpy.__version__}
    if impl.startswith("fastnn"):
        import fastnn
        versions["fastnn"] = fastnn.__version__
    for mod in OPTIONAL_MODULES.get(impl, ()):
        versions[mod] = __import__(mod).__version__
    return versions


def _affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


def _blas_threads():
    """{library: threads} of the thread pools loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {os.path.basename(i["filepath"]): i["num_threads"] for i in threadpool_info()}


# ---------------------------------------------------------------- the parent
def torch_available():
    return impl_available("torch")


def impl_available(impl):
    """Whether an implementation's optional packages are importable."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in OPTIONAL_MODULES.get(impl, ()))


def available_peers(with_torch=None):
    """The peers that can run here (with_torch=False leaves PyTorch out)."""
    return [p for p in PEERS if impl_available(p)
            and (with_torch is not False or not p.startswith("torch"))]


# XLA's CPU client ignores OMP_NUM_THREADS: its matrix products run on an Eigen
# pool as wide as the machine (sized from the CPU affinity mask). The often
# quoted "intra_op_parallelism_threads=1" is not an XLA flag (a lone token in
# XLA_FLAGS is read as a file of flags), so only the Eigen switch is set; it
# was measured not to be enough on its own (jax 0.10: with it, 2 of the
# worker's threads were running or runnable at once three quarters of the
# time), hence the affinity mask too (PIN_JAX; then never).
PIN_JAX = True  # see _pin
JAX_1T_FLAGS = "--xla_cpu_multi_thread_eigen=false"


def _thread_env(threads, impl=None):
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(threads)
    # the fastnn worker needs the package even when it is not installed
    env["FASTNN_BENCH_ROOT"] = os.path.dirname(_HERE)
    if impl == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + JAX_1T_FLAGS).strip()
    return env


def _pin(impl, threads):
    """Called first thing in a worker: restrict a JAX worker to `threads` CPUs
    of its affinity mask, so XLA's pools are sized to it and cannot spill over."""
    if impl != "jax" or not PIN_JAX or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


def _worker_cmd(*args):
    return [sys.executable, os.path.abspath(__file__), *args]


def launch(spec, timeout=300, mode="--worker"):
    """One-shot worker in a fresh process (``--worker SPEC``, or ``--fresh SPEC``
    for a fresh-process inference run); returns its result dict."""
    try:
        proc = subprocess.run(_worker_cmd(mode, json.dumps(spec)),
                              env=_thread_env(spec["threads"], spec.get("impl")),
                              capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"worker exited with {proc.returncode}: "
                                      f"{(proc.stderr or proc.stdout)[-2000:]}"}
    return json.loads(lines[-1])


class _Worker:
    """A persistent ``--serve`` process for one (implementation, threads)."""

    def __init__(self, impl, threads):
        import queue
        import tempfile
        import threading
        self.impl, self.threads = impl, threads
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(_worker_cmd("--serve", impl, str(threads)),
                                     env=_thread_env(threads, impl), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.info = None
        self.dead = None

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read(self, timeout):
        import queue
        hung = False
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line, hung = None, True
        if line is None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:]
            what = f"hung (no answer in {timeout} s)" if hung else "died"
            self.dead = f"worker {self.impl} {self.threads}T {what}: {tail}"
            if hung:
                self.close(kill=True)
            return {"ok": False, "error": self.dead}
        return json.loads(line)

    def wait_ready(self, timeout=300):
        self.info = self._read(timeout)
        if not self.info.get("ready"):
            self.dead = self.info.get("error", "worker failed to start")
        return self.info

    def request(self, msg, timeout=300):
        if self.dead:
            return {"ok": False, "error": self.dead}
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            self.dead = f"worker {self.impl} {self.threads}T: {e}"
            return {"ok": False, "error": self.dead}
        return self._read(timeout)

    def quit(self):
        """Ask the worker to exit (without waiting for it)."""
        if self.proc.poll() is None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, kill=False):
        if not kill:
            self.quit()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def close_all(workers):
    for w in workers:
        w.quit()
    for w in workers:
        w.close()


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


def _impls_for(cfg, peers):
    """The columns a configuration is measured with, in a fixed order."""
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


def run_all(thread_counts, quick=False, configs=None, log=sys.stderr, with_torch=None,
            peers=None, fresh=True):
    """Measure every configuration; returns the results structure (see JSON).

    One persistent worker process per (implementation, thread count), all
    started before any timing. They take turns: for each round, configuration
    and thread count, every implementation times one repeat, in an order
    rotated from round to round, with a short pause between turns so that no
    idle thread pool is still spinning. Medians are over the rounds. Then,
    with fresh=True, every inference configuration is also run in a new
    process per (implementation, threads, repetition): see run_fresh_rows.

    peers: the peer implementations to include (default: those importable;
    with_torch=False leaves PyTorch out)."""
    budget = dict(QUICK if quick else FULL)
    configs = configs or CONFIGS
    if peers is None:
        peers = available_peers(with_torch)
    peers = [p for p in PEERS if p in peers]
    wanted = {i for cfg in configs for i in _impls_for(cfg, peers)}
    impls_all = [i for i in ("fastnn", "fastnn_layers", "numpy", *PEERS, "gemm") if i in wanted]
    workers = {}
    samples, cpus, errors, skipped, losses, outputs, methods, worker_info = ({} for _ in range(8))
    try:
        for threads in thread_counts:
            for impl in impls_all:
                workers[impl, threads] = _Worker(impl, threads)
        for (impl, threads), w in workers.items():
            info = w.wait_ready()
            worker_info[f"{impl} {threads}T"] = info
            if w.dead and log:
                print(f"worker {impl} {threads}T unavailable: {w.dead}", file=log, flush=True)
        for rnd in range(budget["rounds"]):
            for cfg in configs:
                for threads in thread_counts:
                    impls = _impls_for(cfg, peers)
                    shift = rnd % len(impls)  # rotate the order from round to round
                    for impl in impls[shift:] + impls[:shift]:
                        key = (cfg["name"], threads, impl)
                        if key in skipped or key in errors:
                            continue
                        time.sleep(budget["settle_s"])
                        res = workers[impl, threads].request(
                            {"config": cfg, "budget": budget, "seed": SEED, "losses": 2})
                        if res.get("ok"):
                            samples.setdefault(key, []).append(res["rate"])
                            if res.get("cpu_per_wall") is not None:
                                cpus.setdefault(key, []).append(res["cpu_per_wall"])
                            if res.get("losses"):
                                losses[key] = res["losses"]
                            if res.get("outputs"):
                                outputs[key] = res["outputs"]
                            if res.get("method"):
                                methods[key] = res["method"]
                            if res.get("blas_threads"):
                                worker_info[f"{impl} {threads}T"]["thread_pools"] = \
                                    res["blas_threads"]
                            msg = f"{res['rate']:12.1f} {cfg['unit']}/s"
                        elif "skipped" in res:
                            skipped[key] = res["skipped"]
                            msg = "skipped: " + res["skipped"]
                        else:
                            errors[key] = res.get("error", "unknown error")
                            msg = "ERROR: " + (errors[key].strip().splitlines() or ["?"])[-1]
                        if log:
                            print(f"[round {rnd + 1}/{budget['rounds']}] {cfg['name']:<11} "
                                  f"{threads}T {IMPL_LABELS[impl]:<13} {msg}", file=log, flush=True)
    finally:
        close_all(workers.values())
    all_configs = list(configs)
    fresh_info = {}
    if fresh:
        infer = [c for c in configs if c["mode"] == "infer"]
        if infer:
            f_samples, f_errors, f_skipped, fresh_info = run_fresh_rows(
                infer, thread_counts, peers, budget, log)
            samples.update(f_samples)
            errors.update(f_errors)
            skipped.update(f_skipped)
            for c in infer:
                all_configs += [dict(c, name=c["name"] + FRESH, fresh_of=c["name"]),
                                dict(c, name=c["name"] + FRESH_FIRST, fresh_of=c["name"],
                                     first_call=True)]
    summary = summarize(all_configs, thread_counts, samples, errors, skipped, budget, cpus=cpus)
    summary["peers"] = peers
    summary["loss_check"] = check_losses(losses) + check_outputs(outputs)
    for row in summary["rows"]:
        row["methods"] = {impl: m for (name, thr, impl), m in methods.items()
                          if name == row["config"] and thr == row["threads"]}
    summary["workers"] = worker_info
    summary["fresh"] = fresh_info
    return summary


def run_fresh_rows(configs, thread_counts, peers, budget, log=None):
    """Inference as a user meets it: for every inference configuration,
    implementation and thread count, `fresh_reps` new processes that load the
    same weights from a temporary .npz, build the model and time the first
    call and each of the next `fresh_calls` calls (interleaved like the warm
    rounds). Returns samples for the "(fresh)" rows (batch / median call) and
    the "(fresh, 1st)" rows (batch / first call), errors, skips and details."""
    import tempfile
    import numpy as np
    samples, errors, skipped, details = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="fastnn_bench_") as tmp:
        paths = {}
        for cfg in configs:
            paths[cfg["name"]] = os.path.join(tmp, f"weights{len(paths)}.npz")
            np.savez(paths[cfg["name"]],
                     **{f"p{i}": p for i, p in enumerate(make_params(cfg, SEED))})
        for rep in range(budget["fresh_reps"]):
            for cfg in configs:
                for threads in thread_counts:
                    impls = _impls_for(cfg, peers)
                    shift = rep % len(impls)
                    for impl in impls[shift:] + impls[:shift]:
                        steady, first = cfg["name"] + FRESH, cfg["name"] + FRESH_FIRST
                        if (steady, threads, impl) in skipped or (steady, threads, impl) in errors:
                            continue
                        time.sleep(budget["settle_s"])
                        res = launch({"config": cfg, "impl": impl, "threads": threads,
                                      "weights": paths[cfg["name"]], "seed": SEED,
                                      "calls": budget["fresh_calls"]}, mode="--fresh")
                        if res.get("ok"):
                            samples.setdefault((steady, threads, impl), []).append(
                                cfg["batch"] / res["median_s"])
                            samples.setdefault((first, threads, impl), []).append(
                                cfg["batch"] / res["first_s"])
                            details.setdefault(f"{cfg['name']} {threads}T {impl}", []).append(
                                {k: res.get(k) for k in ("first_s", "median_s", "build_s",
                                                         "method")})
                            msg = (f"first {1e3 * res['first_s']:8.3f} ms, then "
                                   f"{1e3 * res['median_s']:8.3f} ms")
                        else:
                            for row in (steady, first):
                                if "skipped" in res:
                                    skipped[row, threads, impl] = res["skipped"]
                                else:
                                    errors[row, threads, impl] = res.get("error", "unknown error")
                            msg = ("skipped: " + res["skipped"] if "skipped" in res else
                                   "ERROR: " + (res.get("error", "?").strip().splitlines()
                                                or ["?"])[-1])
                        if log:
                            print(f"[fresh {rep + 1}/{budget['fresh_reps']}] {cfg['name']:<11} "
                                  f"{threads}T {IMPL_LABELS[impl]:<13} {msg}", file=log, flush=True)
    return samples, errors, skipped, details


def check_losses(losses):
    """Harness self-check: from the same weights and batch, every implementation
    must report the same loss before and after one update (float32 tolerance)."""
    out = []
    by_cfg = {}
    for (name, threads, impl), ls in losses.items():
        by_cfg.setdefault((name, threads), {})[impl] = ls
    for (name, threads), per in sorted(by_cfg.items()):
        ref = per.get("numpy") or next(iter(per.values()))
        worst = max(abs(a - b) / max(abs(b), 1e-12)
                    for ls in per.values() for a, b in zip(ls, ref))
        out.append({"config": name, "threads": threads, "kind": "losses", "losses": per,
                    "max_rel_diff": worst, "agree": worst < 1e-4})
    return out


def check_outputs(outputs):
    """The same for inference: the first rows of the output on the first batch,
    difference relative to the largest reference value."""
    out = []
    by_cfg = {}
    for (name, threads, impl), rows in outputs.items():
        by_cfg.setdefault((name, threads), {})[impl] = rows
    for (name, threads), per in sorted(by_cfg.items()):
        ref = per.get("numpy") or next(iter(per.values()))
        scale = max(max(abs(v) for row in ref for v in row), 1e-12)
        worst = max(abs(a - b) / scale for rows in per.values()
                    for ra, rb in zip(rows, ref) for a, b in zip(ra, rb))
        out.append({"config": name, "threads": threads, "kind": "outputs",
                    "impls": sorted(per), "max_rel_diff": worst, "agree": worst < 1e-4})
    return out


def _spread(rates):
    med = statistics.median(rates)
    return {"median": med, "min": min(rates), "max": max(rates), "n": len(rates),
            "rel_spread": (max(rates) - min(rates)) / med if med else None, "samples": rates}


def summarize(configs, thread_counts, samples, errors, skipped, budget, cpus=None):
    cpus = cpus or {}
    rows = []
    for cfg in configs:
        for threads in thread_counts:
            row = {"config": cfg["name"], "threads": threads, "unit": cfg["unit"],
                   "batch": cfg["batch"], "mode": cfg["mode"], "gemms": count_gemms(cfg),
                   "fresh_of": cfg.get("fresh_of"), "first_call": bool(cfg.get("first_call")),
                   "results": {}, "errors": {}, "skipped": {}}
            for impl in IMPLS + ("gemm",):
                key = (cfg["name"], threads, impl)
                if key in samples:
                    row["results"][impl] = _spread(samples[key])
                    if cpus.get(key):
                        row["results"][impl]["cpu_per_wall"] = statistics.median(cpus[key])
                if key in errors:
                    row["errors"][impl] = errors[key]
                if key in skipped:
                    row["skipped"][impl] = skipped[key]
            med = {k: v["median"] for k, v in row["results"].items()}
            fn_ = med.get("fastnn")

            def over(impl):
                return fn_ / med[impl] if fn_ and med.get(impl) else None
            torch_best = max([med[k] for k in ("torch", "torch_fused") if k in med], default=None)
            peer_rates = {k: med[k] for k in PEERS if med.get(k)}
            best_peer = max(peer_rates, key=peer_rates.get) if peer_rates else None
            row["fastnn_over_numpy"] = over("numpy")
            row["fastnn_over_torch"] = over("torch")
            row["fastnn_over_torch_fused"] = over("torch_fused")
            row["fastnn_over_jax"] = over("jax")
            row["fastnn_over_onnxruntime"] = over("onnxruntime")
            row["fastnn_over_best_torch"] = fn_ / torch_best if fn_ and torch_best else None
            row["best_peer"] = best_peer
            row["fastnn_over_best_peer"] = over(best_peer) if best_peer else None
            row["fastnn_layers_over_fastnn"] = (med["fastnn_layers"] / fn_
                                                if fn_ and med.get("fastnn_layers") else None)
            row["fastnn_layers_over_numpy"] = (med["fastnn_layers"] / med["numpy"]
                                               if med.get("fastnn_layers") and med.get("numpy")
                                               else None)
            row["pct_of_gemm_floor"] = (100.0 * fn_ / med["gemm"]
                                        if fn_ and med.get("gemm") else None)
            # fastnn / other within the same round (adjacent turns), median over
            # rounds: less sensitive to slow drift than the ratio of medians
            fs = samples.get((cfg["name"], threads, "fastnn"), [])
            row["paired_ratios"] = {
                impl: statistics.median(a / b for a, b in zip(fs, other))
                for impl in IMPLS[1:] + ("gemm",)
                for other in [samples.get((cfg["name"], threads, impl), [])] if fs and other}
            rows.append(row)
    by = {(r["config"], r["threads"]): r for r in rows}
    for r in rows:
        one = by.get((r["config"], 1))
        if r["threads"] > 1 and one and "fastnn" in one["results"] and "fastnn" in r["results"]:
            r["fastnn_thread_scaling"] = (r["results"]["fastnn"]["median"]
                                          / one["results"]["fastnn"]["median"])
    verdicts = evaluate_targets(rows)
    for r in rows:
        r["targets"] = [v for v in verdicts if v["config"] == r["config"]
                        and v["threads"] == r["threads"]]
    return {"rows": rows, "targets": verdicts, "budget": budget, "seed": SEED}


def targets_for(name):
    """[(kind, threshold)] for a row: its own targets, plus the "*" ones of a
    kind it has no own target for."""
    own = [(k, t) for n, k, t in TARGETS if n == name]
    kinds = {k for k, _ in own}
    return own + [(k, t) for n, k, t in TARGETS if n == "*" and k not in kinds]


def evaluate_targets(rows):
    out = []
    for r in rows:
        for kind, thr in targets_for(r["config"]):
            if kind == "numpy":
                value, text = r["fastnn_over_numpy"], f"≥{thr:g}× numpy"
            elif kind == "peer":
                value, text = r["fastnn_over_best_peer"], f"≥{thr:g}× best peer"
            elif kind == "floor":
                value = r["pct_of_gemm_floor"]
                text = ("time ≤ GEMM floor" if thr == 100.0 and r["mode"] == "infer"
                        else f"≥{thr:g}% GEMM floor")
            else:
                raise ValueError(f"unknown target kind {kind!r}")
            ok = None if value is None else value >= thr
            out.append({"config": r["config"], "threads": r["threads"], "kind": kind,
                        "threshold": thr, "value": value, "met": ok, "target": text})
    return out


# ---------------------------------------------------------------- output
TABLE_IMPLS = [("fastnn", "fastnn"), ("fastnn_layers", "layers"), ("numpy", "numpy"),
               ("torch", "torch"), ("torch_fused", "t-fused"), ("jax", "jax"),
               ("onnxruntime", "ort")]


def _fmt_rate(row, impl):
    res = row["results"].get(impl)
    if res is None:
        if impl in row["errors"]:
            return "error"
        return "-"
    v = res["median"]
    if row.get("first_call"):  # a latency: the time of that one call
        return f"{1e3 * row['batch'] / v:.2f}ms"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _fmt_ratio(v, suffix="×"):
    return "-" if v is None else f"{v:.2f}{suffix}"


def _fmt_target(t):
    if t["value"] is None:
        return f"n/a ({t['target']})"
    mark = "met" if t["met"] else "NOT met"
    v = t["value"]
    val = f"{v:.0f}%" if t["kind"] == "floor" else f"{v:.2f}×"
    return f"{mark} ({val} vs {t['target']})"


def _fmt_target_short(t):
    short = {"numpy": "np", "peer": "peer", "floor": "floor"}[t["kind"]]
    if t["value"] is None:
        return f"{short} n/a"
    return f"{short} {'ok' if t['met'] else 'NO'}"


def format_table(summary):
    head = (["config", "thr"] + [label for _, label in TABLE_IMPLS]
            + ["vs NumPy", "vs best peer", "%floor", "targets"])
    lines = []
    for r in summary["rows"]:
        peer = r.get("best_peer")
        vs_peer = (f"{r['fastnn_over_best_peer']:.2f}× {IMPL_LABELS[peer]}"
                   if r.get("fastnn_over_best_peer") else "-")
        lines.append([r["config"], str(r["threads"])]
                     + [_fmt_rate(r, impl) for impl, _ in TABLE_IMPLS]
                     + [_fmt_ratio(r["fastnn_over_numpy"]), vs_peer,
                        _fmt_ratio(r["pct_of_gemm_floor"], "%"),
                        ", ".join(_fmt_target_short(t) for t in r["targets"])])
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    last = len(head) - 1
    fmt = lambda cells: " | ".join(  # noqa: E731
        c.ljust(w) if i in (0, last) else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [fmt(head), "-+-".join("-" * w for w in widths)]
    out += [fmt(ln) for ln in lines]
    judged = [t for t in summary["targets"] if t["met"] is not None]
    met = [t for t in judged if t["met"]]
    out.append("")
    out.append("rates are samples/s (tokens/s for lm), medians over all repeats; layers = "
               "fastnn's explicit layer loop; vs best peer = fastnn over the fastest of "
               "torch, torch-fused, jax, onnxruntime; %floor = fastnn / (the step's GEMMs alone); "
               "(fresh) = a new process per run, median call after the first; (fresh, 1st) = "
               "time of the first call in a new process.")
    out.append(f"targets met: {len(met)}/{len(judged)}")
    for t in judged:
        if not t["met"]:
            out.append(f"  NOT met: {t['config']} {t['threads']}T: {_fmt_target(t)}")
    checks = summary.get("loss_check") or []
    bad = [c for c in checks if not c["agree"]]
    if checks:
        worst = max(c["max_rel_diff"] for c in checks)
        out.append("same-start check (losses before/after one update, inference outputs, all "
                   "implementations): " + ("agree" if not bad else "DISAGREE in " + ", ".join(
                       f"{c['config']} {c['threads']}T" for c in bad))
                   + f" (max rel. diff {worst:.1e})")
    cpu = {}
    for r in summary["rows"]:
        if r["threads"] == 1:
            for impl, res in r["results"].items():
                if res.get("cpu_per_wall") is not None:
                    cpu.setdefault(impl, []).append(res["cpu_per_wall"])
    if cpu:
        out.append("CPU time / wall time at 1 thread, worst row (1.00 = one busy core): "
                   + ", ".join(f"{IMPL_LABELS[i]} {max(v):.2f}" for i, v in cpu.items()))
    for r in summary["rows"]:
        for impl, err in r["errors"].items():
            out.append(f"error in {r['config']} {r['threads']}T {impl}: "
                       f"{err.strip().splitlines()[-1]}")
    return "\n".join(out)


def plot(summary, path):
    """Speed-up bars per configuration: fastnn over NumPy and over the best
    peer (named above its bar), one panel per thread count, log scale, bars
    drawn from 1× so that a slowdown points down."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as e:
        raise SystemExit(f"--plot needs matplotlib ({e}); pip install matplotlib") from None
    threads = sorted({r["threads"] for r in summary["rows"]})
    names = list(dict.fromkeys(r["config"] for r in summary["rows"]))
    by = {(r["config"], r["threads"]): r for r in summary["rows"]}
    fig, axes = plt.subplots(len(threads), 1, figsize=(max(8, 0.9 * len(names) + 2),
                                                       3.8 * len(threads)), squeeze=False)
    width = 0.38
    series = (("fastnn_over_numpy", "vs NumPy", "#4c72b0"),
              ("fastnn_over_best_peer", "vs best peer", "#dd8452"))
    for ax, thr in zip(axes[:, 0], threads):
        values = []
        for k, (key, label, color) in enumerate(series):
            pts = [(x + (k - 0.5) * width, by[n, thr][key], by[n, thr].get("best_peer"))
                   for x, n in enumerate(names) if (by.get((n, thr)) or {}).get(key)]
            if not pts:
                continue
            xs, vs, peers = zip(*pts)
            values += vs
            ax.bar(xs, [v - 1.0 for v in vs], width, bottom=1.0, label=label, color=color)
            for x, v, peer in pts:
                text = (f"{v:.2f}" if v >= 0.1 else f"{v:.2g}") + (f" {dict(TABLE_IMPLS).get(peer, peer)}"
                                     if key == "fastnn_over_best_peer" else "")
                ax.annotate(text, (x, v), ha="center", va="bottom" if v >= 1 else "top",
                            fontsize=7, rotation=90, xytext=(0, 2 if v >= 1 else -2),
                            textcoords="offset points")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        lo, hi = (min(min(values), 1.0) / 3, max(max(values), 1.0) * 3) if values else (0.5, 2)
        ax.set_ylim(lo, hi)
        ax.set_yticks([m * 10.0 ** e for e in range(-4, 4) for m in (1, 2, 5)
                       if lo <= m * 10.0 ** e <= hi])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel("fastnn speed-up")
        ax.set_title(f"{thr} thread{'s' if thr > 1 else ''}", fontsize=10, loc="right")
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2,
                  frameon=False, borderaxespad=0.2)
    m = summary.get("machine") or {}
    fig.suptitle(f"fastnn bench{' (quick)' if summary.get('quick') else ''}"
                 f"{': ' + m['cpu_model'] if m.get('cpu_model') else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _default_threads():
    return [1, 2]


def main(args=None):
    """Entry point for `python -m fastnn bench` (args: argparse namespace or argv list)."""
    if args is None or isinstance(args, (list, tuple)):
        args = _parser().parse_args(args)
    plot_path = getattr(args, "plot", None)
    from_json = getattr(args, "from_json", None)
    if plot_path:  # fail before a long run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError as e:
            raise SystemExit(f"--plot needs matplotlib ({e}); pip install matplotlib") from None
    if from_json:
        try:
            with open(from_json) as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--from-json {from_json!r}: cannot read it ({e})") from None
        if not isinstance(summary, dict) or "rows" not in summary:
            raise SystemExit(f"--from-json {from_json!r}: not a fastnn bench JSON (no rows)")
        print(format_table(summary))
        if plot_path:
            plot(summary, plot_path)
            print(f"\nplot written to {plot_path}")
        return 0
    threads = getattr(args, "threads", None)
    thread_counts = [threads] if threads else _default_threads()
    only = getattr(args, "only", None)
    configs = CONFIGS
    if only:
        wanted = [s.strip() for s in only.split(",") if s.strip()]
        configs = [c for c in CONFIGS if any(w in c["name"] for w in wanted)]
        if not configs:
            raise SystemExit(f"--only {only!r} matches no configuration "
                             f"({', '.join(c['name'] for c in CONFIGS)})")
    quick = bool(getattr(args, "quick", False))
    json_path = getattr(args, "json", None) or "fastnn_bench.json"
    t0 = time.time()
    info = machine_info()
    peers = available_peers()
    missing = [IMPL_LABELS[p] for p in PEERS if p not in peers]
    print(f"fastnn bench: {info.get('cpu_model', '?')}, {info.get('affinity_cpus', '?')} cpus, "
          f"threads {thread_counts}, peers {', '.join(IMPL_LABELS[p] for p in peers) or 'none'}"
          f"{' (not installed: ' + ', '.join(missing) + ')' if missing else ''}"
          f"{', quick' if quick else ''}", file=sys.stderr, flush=True)
    summary = run_all(thread_counts, quick=quick, configs=configs, peers=peers)
    try:
        info["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    for w in summary.get("workers", {}).values():
        for lib, version in (w.get("versions") or {}).items():
            info.setdefault(lib, version)
    summary["machine"] = info
    summary["quick"] = quick
    summary["wall_time_s"] = time.time() - t0
    summary["thread_counts"] = thread_counts
    summary["configs"] = configs
    table = format_table(summary)
    print(table)
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, json_path)
    print(f"\nJSON written to {json_path} ({summary['wall_time_s']:.0f} s)")
    if plot_path:
        plot(summary, plot_path)
        print(f"plot written to {plot_path}")
    return 0


def _parser():
    import argparse
    p = argparse.ArgumentParser(prog="python -m fastnn bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def add_arguments(p):
    p.add_argument("--threads", type=int, default=None,
                   help="thread count to measure (default: all, i.e. 1 and 2)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the JSON results (default: fastnn_bench.json)")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 2 minutes)")
    p.add_argument("--only", default=None,
                   help="comma-separated substrings of configuration names to run")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the speed-ups (vs NumPy, vs the best peer) to this file "
                        "(needs matplotlib)")
    p.add_argument("--from-json", metavar="PATH", default=None,
                   help="do not measure: print the table (and --plot) from an earlier JSON")


def _worker_path():
    root = os.environ.get("FASTNN_BENCH_ROOT")
    if root and root not in sys.path:
        sys.path.append(root)  # after site-packages: an installed fastnn wins


def _worker_main(spec_text, fresh=False):
    _worker_path()
    spec = json.loads(spec_text)
    _pin(spec.get("impl"), int(spec.get("threads", 1)))
    result = run_fresh(spec) if fresh else run_worker(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") or "skipped" in result else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--worker", "--fresh"):
        sys.exit(_worker_main(sys.argv[2], fresh=sys.argv[1] == "--fresh"))
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _worker_path()
        _pin(sys.argv[2], int(sys.argv[3]))
        sys.exit(_serve(sys.argv[2], int(sys.argv[3])))
    sys.exit(main(sys.argv[1:]))
