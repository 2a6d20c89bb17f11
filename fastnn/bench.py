"""Benchmarks: fastnn vs a careful pure-NumPy implementation vs PyTorch.

``python -m fastnn bench [--threads N] [--json out.json] [--quick] [--only SUBSTR,...]``

Each (implementation, thread count) runs in its own fresh Python process
whose thread count is fixed through the environment before anything is
imported (OMP/OPENBLAS/MKL/FASTNN_NUM_THREADS, plus ``torch.set_num_threads``).
All implementations start from the same weights (NumPy ``default_rng(seed)``,
float32, PyTorch layout) and train on the same batches with the same
hyperparameters. A configuration is built, warmed up and calibrated on first
use; then the worker processes take turns timing one repeat each (A B C ...
A B C ..., the order rotated every round, a pause between turns), so slow
machine drift hits every implementation alike; the table reports medians.

The "GEMM floor" of a configuration is the time of only the matrix products
one step needs (training: 3 forward, 3 weight-gradient and 2 input-gradient
products for the MLP), done with NumPy ``matmul(out=)`` on preallocated
arrays at the same thread count; fastnn's throughput is reported as a
percentage of it.

Workers: ``--serve IMPL THREADS`` (persistent, one JSON request/answer per
line, used by the parent) and ``--worker SPEC`` (one-shot, used by tests).
A worker imports only what its implementation needs: the NumPy worker loads
``_reference.py`` by path, so neither it nor the PyTorch worker ever loads
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
IMPLS = ("fastnn", "numpy", "torch", "torch_fused")
IMPL_LABELS = {"fastnn": "fastnn", "numpy": "numpy", "torch": "torch", "torch_fused": "torch-fused",
               "gemm": "GEMM floor"}
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

# (config, kind, threshold): kind "numpy"/"torch" = fastnn speed ratio >= x,
# "numpy_time" = fastnn time / numpy time <= x, "floor" = % of GEMM floor >= x,
# "scaling" = fastnn 2-thread / 1-thread throughput >= x.
TARGETS = [
    ("mlp b16", "numpy", 2.5), ("mlp b16", "torch", 1.8),
    ("mlp b64", "numpy", 1.6), ("mlp b64", "torch", 1.3),
    ("mlp b256", "floor", 90.0), ("mlp b256", "scaling", 1.8),
    ("mlp b1024", "numpy", 1.1), ("mlp b1024", "torch", 1.15),
    ("tiny b32", "numpy", 5.0), ("tiny b32", "torch", 20.0),
    ("infer b1", "numpy_time", 0.6),
]

# Timing budgets: warm-up (seconds, min steps), then `repeats` timed runs of
# about `repeat_s` seconds each per process, in `rounds` interleaved rounds.
# settle_s: idle time between turns, longer than OpenBLAS's worker threads keep
# spinning after a call (~0.1 s): a neighbour's spinning pool on the same two
# cores was measured to cost a 2-thread run a third of its speed.
FULL = {"rounds": 9, "repeats": 3, "repeat_s": 0.2, "warmup_s": 0.3, "warmup_steps": 10,
        "rewarm_s": 0.02, "settle_s": 0.4, "cap_s": 2.0}
QUICK = {"rounds": 3, "repeats": 2, "repeat_s": 0.04, "warmup_s": 0.05, "warmup_steps": 3,
         "rewarm_s": 0.005, "settle_s": 0.03, "cap_s": 0.4}


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
    per_step = (time.perf_counter() - t0) / n
    return max(3, int(math.ceil(repeat_s / max(per_step, 1e-7))))


def _timed(step, steps, batch, cap_s):
    """samples/s over `steps` steps (fewer if the run exceeds cap_s seconds)."""
    t0 = time.perf_counter()
    done = steps
    for j in range(steps):
        step(j)
        if time.perf_counter() - t0 > cap_s:
            done = j + 1
            break
    return done * batch / (time.perf_counter() - t0)


class _Cell:
    """One (configuration, implementation) in a worker: built, warmed up and
    calibrated on creation; each turn() re-warms briefly and times one repeat."""

    def __init__(self, cfg, impl, threads, budget, seed=SEED, losses=0):
        params = make_params(cfg, seed)
        data = make_data(cfg, seed)
        self.batch = cfg["batch"]
        self.step, step_loss = IMPL_BUILDERS[impl](cfg, params, data, threads)
        self.method = getattr(self.step, "method", None)
        self.losses = None
        if losses and step_loss is not None:
            self.losses = [float(step_loss(i)) for i in range(losses)]
        i = _warm(self.step, budget["warmup_steps"], budget["warmup_s"], start=losses)
        self.steps = _calibrate(self.step, budget["repeat_s"], i)

    def turn(self, budget):
        _warm(self.step, 2, budget["rewarm_s"])  # caches and thread pools, after others ran
        return _timed(self.step, self.steps, self.batch, budget["cap_s"])


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
            forward(xs[i % nb])
        return step, None

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


def _fastnn_impl(cfg, params, data, threads):
    """The public API: Sequential + Trainer.step; eval-mode model(x) for inference."""
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
    xs = [x for x, _ in data]
    ys = [y for _, y in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        model.eval()
        predict = model.predict

        def call(i):
            model(xs[i % nb])

        def pred(i):
            predict(xs[i % nb])
        # the faster of the two public inference calls (alternating trials)
        best = {call: [], pred: []}
        for _ in range(3):
            for f in best:
                t0 = time.perf_counter()
                n = _warm(f, 5, 0.02)
                best[f].append((time.perf_counter() - t0) / n)
        step = min(best, key=lambda f: min(best[f]))
        step.method = "model(x)" if step is call else "model.predict(x)"
        return step, None
    loss = fn.CrossEntropyLoss() if cfg["loss"] == "ce" else fn.BCEWithLogitsLoss()
    if cfg["opt"] == "adam":
        opt = fn.Adam(model.parameters(), lr=cfg["lr"])
    else:
        opt = fn.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    trainer = fn.Trainer(model, loss, opt)
    tstep = trainer.step

    def train_step(i):
        k = i % nb
        return tstep(xs[k], ys[k])
    train_step.method = "Trainer.step(x, y)"
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
                model(xs[i % nb])
        return step, None
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
    "torch": _torch_impl,
    "torch_fused": lambda *a: _torch_impl(*a, fused=True),
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
        result["method"] = cell.method
        rates = [cell.turn(budget) for _ in range(int(spec.get("repeats", budget["repeats"])))]
        if rates:
            result.update(steps=cell.steps, rates=rates, median=statistics.median(rates))
        result["blas_threads"] = _blas_threads()
        result["ok"] = True
    except _Skip as e:
        result["skipped"] = str(e)
    except Exception:  # reported, not raised: the parent prints it
        result["error"] = traceback.format_exc(limit=8)
    return result


def _serve(impl, threads):
    """Persistent worker: one process per (implementation, thread count).
    Reads one JSON request per line on stdin ({"config": ..., "budget": ...,
    "losses": k}) and answers one JSON line: the rate of one timed repeat."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints stays off the protocol
    versions = {"numpy": __import__("numpy").__version__}
    try:
        if impl == "fastnn":
            import fastnn
            versions["fastnn"] = fastnn.__version__
        elif impl.startswith("torch"):
            import torch
            versions["torch"] = torch.__version__
        ready = {"ready": True, "pid": os.getpid(), "versions": versions}
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
                out.update(ok=True, rate=cell.turn(budget), steps=cell.steps)
                if first:
                    out["losses"] = cell.losses
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


def _blas_threads():
    """{library: threads} of the thread pools loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {os.path.basename(i["filepath"]): i["num_threads"] for i in threadpool_info()}


# ---------------------------------------------------------------- the parent
def torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _thread_env(threads):
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(threads)
    # the fastnn worker needs the package even when it is not installed
    env["FASTNN_BENCH_ROOT"] = os.path.dirname(_HERE)
    return env


def _worker_cmd(*args):
    return [sys.executable, os.path.abspath(__file__), *args]


def launch(spec, timeout=300):
    """One-shot worker in a fresh process (``--worker SPEC``); returns its result dict."""
    try:
        proc = subprocess.run(_worker_cmd("--worker", json.dumps(spec)),
                              env=_thread_env(spec["threads"]), capture_output=True, text=True,
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
                                     env=_thread_env(threads), stdin=subprocess.PIPE,
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


def machine_info():
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "executable": sys.executable, "cpu_count": os.cpu_count()}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    import io
    import numpy
    import fastnn
    info["numpy"] = numpy.__version__
    info["fastnn_info"] = fastnn.info(file=io.StringIO())
    return info


def _impls_for(cfg, with_torch):
    impls = ["fastnn", "numpy"]
    if with_torch:
        impls.append("torch")
        if cfg["mode"] == "train":
            impls.append("torch_fused")
    impls.append("gemm")
    return impls


def run_all(thread_counts, quick=False, configs=None, log=sys.stderr, with_torch=None):
    """Measure every configuration; returns the results structure (see JSON).

    One persistent worker process per (implementation, thread count), all
    started before any timing. They take turns: for each round, configuration
    and thread count, every implementation times one repeat, in an order
    rotated from round to round, with a short pause between turns so that no
    idle thread pool is still spinning. Medians are over the rounds."""
    budget = dict(QUICK if quick else FULL)
    configs = configs or CONFIGS
    with_torch = torch_available() if with_torch is None else with_torch
    impls_all = ["fastnn", "numpy"] + (["torch", "torch_fused"] if with_torch else []) + ["gemm"]
    workers = {}
    samples, errors, skipped, losses, methods, worker_info = {}, {}, {}, {}, {}, {}
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
                    impls = _impls_for(cfg, with_torch)
                    shift = rnd % len(impls)  # rotate the order from round to round
                    for impl in impls[shift:] + impls[:shift]:
                        key = (cfg["name"], threads, impl)
                        if key in skipped or key in errors:
                            continue
                        time.sleep(budget["settle_s"])
                        res = workers[impl, threads].request(
                            {"config": cfg, "budget": budget, "seed": SEED,
                             "losses": 2 if cfg["mode"] == "train" else 0})
                        if res.get("ok"):
                            samples.setdefault(key, []).append(res["rate"])
                            if res.get("losses"):
                                losses[key] = res["losses"]
                            if res.get("method"):
                                methods[key] = res["method"]
                            if res.get("blas_threads"):
                                worker_info[f"{impl} {threads}T"]["thread_pools"] = res["blas_threads"]
                            msg = f"{res['rate']:12.1f} {cfg['unit']}/s"
                        elif "skipped" in res:
                            skipped[key] = res["skipped"]
                            msg = "skipped: " + res["skipped"]
                        else:
                            errors[key] = res.get("error", "unknown error")
                            msg = "ERROR: " + (errors[key].strip().splitlines() or ["?"])[-1]
                        if log:
                            print(f"[round {rnd + 1}/{budget['rounds']}] {cfg['name']:<11} "
                                  f"{threads}T {IMPL_LABELS[impl]:<11} {msg}", file=log, flush=True)
    finally:
        close_all(workers.values())
    summary = summarize(configs, thread_counts, samples, errors, skipped, budget)
    summary["loss_check"] = check_losses(losses)
    for row in summary["rows"]:
        row["methods"] = {impl: m for (name, thr, impl), m in methods.items()
                          if name == row["config"] and thr == row["threads"]}
    summary["workers"] = worker_info
    return summary


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
        out.append({"config": name, "threads": threads, "losses": per, "max_rel_diff": worst,
                    "agree": worst < 1e-4})
    return out


def _spread(rates):
    med = statistics.median(rates)
    return {"median": med, "min": min(rates), "max": max(rates), "n": len(rates),
            "rel_spread": (max(rates) - min(rates)) / med if med else None, "samples": rates}


def summarize(configs, thread_counts, samples, errors, skipped, budget):
    rows = []
    for cfg in configs:
        for threads in thread_counts:
            row = {"config": cfg["name"], "threads": threads, "unit": cfg["unit"],
                   "batch": cfg["batch"], "mode": cfg["mode"], "gemms": count_gemms(cfg),
                   "results": {}, "errors": {}, "skipped": {}}
            for impl in IMPLS + ("gemm",):
                key = (cfg["name"], threads, impl)
                if key in samples:
                    row["results"][impl] = _spread(samples[key])
                if key in errors:
                    row["errors"][impl] = errors[key]
                if key in skipped:
                    row["skipped"][impl] = skipped[key]
            med = {k: v["median"] for k, v in row["results"].items()}
            fn_ = med.get("fastnn")
            torch_best = max([med[k] for k in ("torch", "torch_fused") if k in med], default=None)
            row["fastnn_over_numpy"] = fn_ / med["numpy"] if fn_ and med.get("numpy") else None
            row["fastnn_over_torch"] = fn_ / med["torch"] if fn_ and med.get("torch") else None
            row["fastnn_over_torch_fused"] = (fn_ / med["torch_fused"]
                                              if fn_ and med.get("torch_fused") else None)
            row["fastnn_over_best_torch"] = fn_ / torch_best if fn_ and torch_best else None
            row["pct_of_gemm_floor"] = 100.0 * fn_ / med["gemm"] if fn_ and med.get("gemm") else None
            # fastnn / other within the same round (adjacent turns), median over
            # rounds: less sensitive to slow drift than the ratio of medians
            fs = samples.get((cfg["name"], threads, "fastnn"), [])
            row["paired_ratios"] = {
                impl: statistics.median(a / b for a, b in zip(fs, other))
                for impl in ("numpy", "torch", "torch_fused", "gemm")
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


def evaluate_targets(rows):
    out = []
    for r in rows:
        for name, kind, thr in TARGETS:
            if name != r["config"]:
                continue
            if kind == "numpy":
                value, text = r["fastnn_over_numpy"], f"≥{thr:g}× numpy"
            elif kind == "torch":
                value, text = r["fastnn_over_best_torch"], f"≥{thr:g}× torch"
            elif kind == "numpy_time":
                v = r["fastnn_over_numpy"]
                value, text = (1.0 / v if v else None), f"time ≤{thr:g}× numpy"
            elif kind == "floor":
                value, text = r["pct_of_gemm_floor"], f"≥{thr:g}% GEMM floor"
            else:  # scaling: only meaningful on multi-thread rows
                if r["threads"] == 1:
                    continue
                value, text = r.get("fastnn_thread_scaling"), f"1→{r['threads']}T ≥{thr:g}×"
            if value is None:
                ok = None
            else:
                ok = value <= thr if kind == "numpy_time" else value >= thr
            out.append({"config": r["config"], "threads": r["threads"], "kind": kind,
                        "threshold": thr, "value": value, "met": ok, "target": text})
    return out


# ---------------------------------------------------------------- output
def _fmt_rate(row, impl):
    res = row["results"].get(impl)
    if res is None:
        if impl in row["errors"]:
            return "error"
        return "-"
    v = res["median"]
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


def format_table(summary):
    head = ["config", "thr", "fastnn/s", "numpy/s", "torch/s", "t-fused/s", "fn/np", "fn/torch",
            "%floor", "targets"]
    lines = []
    for r in summary["rows"]:
        lines.append([r["config"], str(r["threads"]), _fmt_rate(r, "fastnn"), _fmt_rate(r, "numpy"),
                      _fmt_rate(r, "torch"), _fmt_rate(r, "torch_fused"),
                      _fmt_ratio(r["fastnn_over_numpy"]), _fmt_ratio(r["fastnn_over_best_torch"]),
                      _fmt_ratio(r["pct_of_gemm_floor"], "%"),
                      "; ".join(_fmt_target(t) for t in r["targets"])])
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = lambda cells: " | ".join(  # noqa: E731
        c.ljust(w) if i in (0, 9) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), "-+-".join("-" * w for w in widths)]
    out += [fmt(ln) for ln in lines]
    met = [t for t in summary["targets"] if t["met"]]
    judged = [t for t in summary["targets"] if t["met"] is not None]
    out.append("")
    out.append("rates are samples/s (tokens/s for lm), medians over all repeats; fn/torch is "
               "against the faster torch column; %floor = fastnn / (the step's GEMMs alone).")
    out.append(f"targets met: {len(met)}/{len(judged)}")
    checks = summary.get("loss_check") or []
    bad = [c for c in checks if not c["agree"]]
    if checks:
        worst = max(c["max_rel_diff"] for c in checks)
        out.append("same-start check (loss before and after one update, all implementations): "
                   + ("agree" if not bad else "DISAGREE in " + ", ".join(
                       f"{c['config']} {c['threads']}T" for c in bad))
                   + f" (max rel. diff {worst:.1e})")
    for r in summary["rows"]:
        for impl, err in r["errors"].items():
            out.append(f"error in {r['config']} {r['threads']}T {impl}: "
                       f"{err.strip().splitlines()[-1]}")
    return "\n".join(out)


def _default_threads():
    return [1, 2]


def main(args=None):
    """Entry point for `python -m fastnn bench` (args: argparse namespace or argv list)."""
    if args is None or isinstance(args, (list, tuple)):
        args = _parser().parse_args(args)
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
    with_torch = torch_available()
    print(f"fastnn bench: {info.get('cpu_model', '?')}, {info.get('affinity_cpus', '?')} cpus, "
          f"threads {thread_counts}, torch {'yes' if with_torch else 'no (skipped)'}"
          f"{', quick' if quick else ''}", file=sys.stderr, flush=True)
    summary = run_all(thread_counts, quick=quick, configs=configs, with_torch=with_torch)
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


def _worker_path():
    root = os.environ.get("FASTNN_BENCH_ROOT")
    if root and root not in sys.path:
        sys.path.append(root)  # after site-packages: an installed fastnn wins


def _worker_main(spec_text):
    _worker_path()
    result = run_worker(json.loads(spec_text))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") or "skipped" in result else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _worker_path()
        sys.exit(_serve(sys.argv[2], int(sys.argv[3])))
    sys.exit(main(sys.argv[1:]))
