"""Benchmarks: fastnn vs a careful pure-NumPy implementation vs PyTorch.

``python -m fastnn bench [--threads N] [--json out.json] [--quick]``

Every (configuration, implementation, thread count) is measured in its own
fresh Python process whose thread count is fixed through the environment
before anything is imported (OMP/OPENBLAS/MKL/FASTNN_NUM_THREADS, plus
``torch.set_num_threads``). All implementations start from the same weights
(NumPy ``default_rng(seed)``, float32, PyTorch layout) and train on the same
batches with the same hyperparameters. A worker warms up, then times
``repeats`` runs of ``steps`` steps; the parent runs the workers in rounds
(A B C ... A B C ..., a fresh process each time) so that slow machine drift
hits every implementation alike, and reports medians over all repeats.

The "GEMM floor" of a configuration is the time of only the matrix products
one step needs (training: 3 forward, 3 weight-gradient and 2 input-gradient
products for the MLP), done with NumPy ``matmul(out=)`` on preallocated
arrays at the same thread count; fastnn's throughput is reported as a
percentage of it.

The worker side (``--worker SPEC``) imports only what its implementation
needs: the NumPy worker loads ``_reference.py`` by path, so neither it nor the
PyTorch worker ever loads fastnn's compiled core or its OpenMP runtime.
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
FULL = {"rounds": 3, "repeats": 3, "repeat_s": 0.25, "warmup_s": 0.3, "warmup_steps": 10}
QUICK = {"rounds": 1, "repeats": 2, "repeat_s": 0.06, "warmup_s": 0.08, "warmup_steps": 5}


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
def _measure(step, batch, spec):
    """Warm up, calibrate steps per repeat, then time `repeats` runs.
    `step(i)` runs step i (cycling through the batches)."""
    t0 = time.perf_counter()
    i = 0
    while i < spec["warmup_steps"] or time.perf_counter() - t0 < spec["warmup_s"]:
        step(i)
        i += 1
    # calibrate on a few more warm steps
    n_cal = max(3, i // 4)
    t1 = time.perf_counter()
    for j in range(n_cal):
        step(i + j)
    per_step = (time.perf_counter() - t1) / n_cal
    steps = max(3, int(math.ceil(spec["repeat_s"] / max(per_step, 1e-7))))
    rates = []
    for _ in range(spec["repeats"]):
        t1 = time.perf_counter()
        for j in range(steps):
            step(j)
        dt = time.perf_counter() - t1
        rates.append(steps * batch / dt)
    return steps, rates


def _first_losses(step_with_loss, k):
    return [float(step_with_loss(i)) for i in range(k)]


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

        def step(i):
            model(xs[i % nb])
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
        ctx = torch.inference_mode()
        ctx.__enter__()  # held for the whole (single-purpose) process

        def step(i):
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


def run_worker(spec):
    """Build, warm up and time one implementation; returns a JSON-able dict."""
    cfg, impl, threads = spec["config"], spec["impl"], int(spec["threads"])
    result = {"impl": impl, "config": cfg["name"], "threads": threads, "ok": False}
    try:
        params = make_params(cfg, spec.get("seed", SEED))
        data = make_data(cfg, spec.get("seed", SEED))
        if impl == "numpy":
            step, step_loss = _numpy_impl(cfg, params, data, threads)
        elif impl == "fastnn":
            step, step_loss = _fastnn_impl(cfg, params, data, threads)
        elif impl in ("torch", "torch_fused"):
            step, step_loss = _torch_impl(cfg, params, data, threads, fused=impl == "torch_fused")
        elif impl == "gemm":
            step, step_loss = _gemm_impl(cfg, params, data, threads)
        else:
            raise ValueError(f"unknown implementation {impl!r}")
        k = int(spec.get("losses", 0))
        if k and step_loss is not None:
            result["losses"] = _first_losses(step_loss, k)
        if spec.get("repeats", 0) > 0:
            steps, rates = _measure(step, cfg["batch"], spec)
            result.update(steps=steps, rates=rates, median=statistics.median(rates))
        result["blas_threads"] = _blas_threads()
        result["ok"] = True
    except _Skip as e:
        result["skipped"] = str(e)
    except Exception:  # reported, not raised: the parent prints it
        result["error"] = traceback.format_exc(limit=8)
    return result


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
    root = os.path.dirname(_HERE)
    env["FASTNN_BENCH_ROOT"] = root
    return env


def launch(spec, timeout=300):
    """Run one worker in a fresh process; returns its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=_thread_env(spec["threads"]), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"ok": False, "error": f"worker exited with {proc.returncode}: "
                                      f"{(proc.stderr or proc.stdout)[-2000:]}"}
    return json.loads(lines[-1])


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
    try:
        info["torch"] = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.__version__)"],
            capture_output=True, text=True, timeout=120).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        info["torch"] = None
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
    """Measure every configuration; returns the results structure (see JSON)."""
    budget = QUICK if quick else FULL
    configs = configs or CONFIGS
    with_torch = torch_available() if with_torch is None else with_torch
    samples = {}  # (config, threads, impl) -> list of rates
    errors = {}
    skipped = {}
    for rnd in range(budget["rounds"]):
        for cfg in configs:
            for threads in thread_counts:
                impls = _impls_for(cfg, with_torch)
                shift = rnd % len(impls)  # rotate the order from round to round
                for impl in impls[shift:] + impls[:shift]:
                    key = (cfg["name"], threads, impl)
                    if key in skipped or key in errors:
                        continue
                    spec = {"config": cfg, "impl": impl, "threads": threads, "seed": SEED,
                            **{k: budget[k] for k in ("repeats", "repeat_s", "warmup_s",
                                                      "warmup_steps")}}
                    res = launch(spec)
                    if res.get("ok"):
                        samples.setdefault(key, []).extend(res["rates"])
                        msg = f"{statistics.median(res['rates']):12.1f} {cfg['unit']}/s"
                    elif "skipped" in res:
                        skipped[key] = res["skipped"]
                        msg = "skipped: " + res["skipped"]
                    else:
                        errors[key] = res.get("error", "unknown error")
                        msg = "ERROR: " + errors[key].strip().splitlines()[-1]
                    if log:
                        print(f"[round {rnd + 1}/{budget['rounds']}] {cfg['name']:<11} "
                              f"{threads}T {IMPL_LABELS[impl]:<11} {msg}", file=log, flush=True)
    return summarize(configs, thread_counts, samples, errors, skipped, budget)


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
                value, ok, text = r["fastnn_over_numpy"], None, f"≥{thr:g}× numpy"
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
        return f"? {t['target']}"
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


def _worker_main(spec_text):
    root = os.environ.get("FASTNN_BENCH_ROOT")
    if root and root not in sys.path:
        sys.path.append(root)  # after site-packages: an installed fastnn wins
    spec = json.loads(spec_text)
    if isinstance(spec.get("config"), str):
        spec["config"] = CONFIG_BY_NAME[spec["config"]]
    result = run_worker(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") or "skipped" in result else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
