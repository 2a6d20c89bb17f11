"""How fastnn cuts its GEMMs, measured: fastnn vs one NumPy matmul per layer.

    python benchmarks/splits.py [--trees after=.,before=/path/to/old/tree]
                                [--coretypes default,Sandybridge] [--rounds 3] [--json out.json]

For every OpenBLAS kernel set (OPENBLAS_CORETYPE, chosen when the library
loads) and every source tree (a built checkout: compare an old build with the
new one in the same run), worker processes measure, at 1 and 2 threads:

- ``fwd``: ``_ops.linear_forward`` of Linear(784, 512)+ReLU against
  ``np.matmul(x, W.T, out=) + b`` and ReLU in place, batch 1, 16, 64, 256, 1024;
- ``mlp``: ``model.predict`` of the MLP 784-512-256-10 against the same three
  NumPy layers;
- ``bwd``: ``_ops.linear_backward`` of Linear(784, 512)+ReLU (dW, db and dX)
  against NumPy's ``dZ.T @ X``, ``dZ.sum(0)`` and ``dZ @ W``;
- ``fresh``: a new process that builds the MLP and predicts batch 256 once,
  then 6 more times (the first calls pay for whatever the BLAS and fastnn set up
  lazily: fastnn plans a shape's cut at its second call), against NumPy doing
  the same in its own fresh process; 1st, 2nd and the median of the rest.

Workers for different trees and kernel sets take turns (round robin, `rounds`
times) so machine noise hits all of them alike; each number is the median over
rounds of per-worker medians. NumPy's own BLAS gets the same thread count
through threadpoolctl. Ratios are NumPy time / fastnn time (> 1: fastnn faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCHES = (1, 16, 64, 256, 1024)
HERE = os.path.abspath(__file__)


def _median_pair(f, g, reps, budget=0.15):
    """Interleaved medians of f and g (seconds), reps at least, ~budget s each."""
    f(); g()
    t0 = time.perf_counter(); f(); one = time.perf_counter() - t0
    reps = max(reps, min(200, int(budget / max(one, 1e-6))))
    tf, tg = [], []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); t1 = time.perf_counter(); g(); t2 = time.perf_counter()
        tf.append(t1 - t0); tg.append(t2 - t1)
    return statistics.median(tf), statistics.median(tg)


def _numpy_threads(n):
    """NumPy's own BLAS (not scipy's, which fastnn keeps at one thread) to n threads."""
    from threadpoolctl import ThreadpoolController
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "numpy" in lib.filepath:
            lib.set_num_threads(n)


def worker_warm(threads):
    import numpy as np
    import fastnn as fn
    from fastnn._kernels import _ops
    fn.set_num_threads(threads)
    _numpy_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    W = (rng.standard_normal((512, 784)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(512) * 0.05).astype(np.float32)
    for n in BATCHES:
        x = rng.standard_normal((n, 784)).astype(np.float32)
        y = np.empty((n, 512), np.float32); yn = np.empty_like(y)

        def fnn_fwd():
            _ops.linear_forward(x, W, b, _ops.ACT_RELU, 0.0, None, y)

        def np_fwd():
            np.matmul(x, W.T, out=yn); np.add(yn, b, out=yn); np.maximum(yn, 0, out=yn)
        out[f"fwd/{n}"] = _median_pair(fnn_fwd, np_fwd, 15)

        gy = rng.standard_normal((n, 512)).astype(np.float32)
        gz = np.empty_like(gy); gx = np.empty((n, 784), np.float32)
        gw = np.empty_like(W); gb = np.empty_like(b)
        gzn = np.empty_like(gy); gxn = np.empty_like(gx); gwn = np.empty_like(W)
        fnn_fwd()

        def fnn_bwd():
            _ops.linear_backward(x, W, _ops.ACT_RELU, 0.0, None, y, gy, gz, gx, gw, gb, False)

        def np_bwd():
            np.multiply(gy, y > 0, out=gzn)
            np.matmul(gzn.T, x, out=gwn); gzn.sum(0); np.matmul(gzn, W, out=gxn)
        out[f"bwd/{n}"] = _median_pair(fnn_bwd, np_bwd, 15)

        model = fn.Sequential(fn.Linear(784, 512), fn.ReLU(), fn.Linear(512, 256), fn.ReLU(),
                              fn.Linear(256, 10))
        model.eval()
        Ws = [(p.data.copy()) for p in model.parameters()]
        hs = [np.empty((n, 512), np.float32), np.empty((n, 256), np.float32),
              np.empty((n, 10), np.float32)]

        def np_mlp():
            h = x
            for i in range(3):
                np.matmul(h, Ws[2 * i].T, out=hs[i]); hs[i] += Ws[2 * i + 1]
                if i < 2:
                    np.maximum(hs[i], 0, out=hs[i])
                h = hs[i]
        out[f"mlp/{n}"] = _median_pair(lambda: model.predict(x), np_mlp, 15)
    out["plans"] = list(_ops.split_stats()) if hasattr(_ops, "split_stats") else ["n/a"]
    return out


FRESH_FASTNN = """
import time, numpy as np
t0 = time.perf_counter()
import fastnn as fn
fn.set_num_threads({threads})
model = fn.Sequential(fn.Linear(784, 512), fn.ReLU(), fn.Linear(512, 256), fn.ReLU(), fn.Linear(256, 10))
model.eval()
x = np.random.default_rng(0).standard_normal((256, 784)).astype(np.float32)
t1 = time.perf_counter(); model.predict(x); t2 = time.perf_counter()
rest = []
for _ in range(6):
    a = time.perf_counter(); model.predict(x); rest.append(time.perf_counter() - a)
print(t2 - t1, rest[0], sorted(rest[1:])[2])
"""
FRESH_NUMPY = """
import time, numpy as np
from threadpoolctl import threadpool_limits
threadpool_limits(limits={threads}, user_api="blas")   # NumPy's BLAS (fastnn is not imported)
rng = np.random.default_rng(0)
Ws = [(rng.standard_normal((o, i)) * 0.05).astype(np.float32) for i, o in ((784, 512), (512, 256), (256, 10))]
bs = [np.zeros(W.shape[0], np.float32) for W in Ws]
x = np.random.default_rng(0).standard_normal((256, 784)).astype(np.float32)
def predict(x):
    for i, (W, b) in enumerate(zip(Ws, bs)):
        x = x @ W.T + b
        if i < 2: np.maximum(x, 0, out=x)
    return x
t1 = time.perf_counter(); predict(x); t2 = time.perf_counter()
rest = []
for _ in range(6):
    a = time.perf_counter(); predict(x); rest.append(time.perf_counter() - a)
print(t2 - t1, rest[0], sorted(rest[1:])[2])
"""


def _env(tree, coretype, threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(tree)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype != "default":
        env["OPENBLAS_CORETYPE"] = coretype
    for var in ("OMP_NUM_THREADS", "FASTNN_NUM_THREADS"):
        env[var] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = "1"   # scipy's BLAS under fastnn; numpy's is set by threadpoolctl
    return env


def _run(code_or_args, env):
    args = [sys.executable] + (["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args)
    r = subprocess.run(args, env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE),
                       timeout=900)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return r.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", default="after=" + os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--coretypes", default="default,Sandybridge")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None:
        print(json.dumps(worker_warm(a.worker)))
        return
    trees = dict(t.split("=", 1) for t in a.trees.split(","))
    cores = a.coretypes.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    runs = {}
    for rnd in range(a.rounds):
        for core in cores:
            for th in threads:
                for name, tree in trees.items():
                    env = _env(tree, core, th)
                    w = json.loads(_run([HERE, "--worker", str(th)], env))
                    for k, v in w.items():
                        runs.setdefault((core, th, name, k), []).append(v)
                    f = _run(FRESH_FASTNN.format(threads=th), env).split()
                    runs.setdefault((core, th, name, "fresh"), []).append([float(x) for x in f])
                nf = _run(FRESH_NUMPY.format(threads=th), _env(".", core, th)).split()
                runs.setdefault((core, th, "numpy", "fresh"), []).append([float(x) for x in nf])
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr)
    med = {k: [statistics.median(c) for c in zip(*v)] for k, v in runs.items() if k[3] != "plans"}
    names = list(trees)
    for core in cores:
        for th in threads:
            print(f"\n== OPENBLAS_CORETYPE={core}, {th} thread(s): time in us (NumPy/fastnn ratio)")
            print(f"{'case':<10}" + "".join(f"{n:>24}" for n in names) + f"{'numpy':>10}")
            for kind in ("fwd", "mlp", "bwd"):
                for n in BATCHES:
                    row = f"{kind}/{n:<6}"
                    npt = []
                    for name in names:
                        f, g = med[(core, th, name, f"{kind}/{n}")]
                        npt.append(g)
                        row += f"{f * 1e6:>14.1f} ({g / f:5.2f}x)"
                    print(row + f"{statistics.median(npt) * 1e6:>10.1f}")
            row = f"{'fresh256':<10}"
            for name in names:
                first, second, rest = med[(core, th, name, "fresh")]
                row += f"  {name}: 1st {first * 1e3:.2f} ms, 2nd {second * 1e3:.2f}, then {rest * 1e3:.2f};"
            nfirst, nsecond, nrest = med[(core, th, "numpy", "fresh")]
            print(row + f"  numpy: 1st {nfirst * 1e3:.2f} ms, 2nd {nsecond * 1e3:.2f}, then {nrest * 1e3:.2f}")
            for name in names:
                print(f"   plans made by '{name}' (one call, rows, columns):",
                      runs.get((core, th, name, "plans"), [["n/a"]])[-1])
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"|".join(map(str, k)): v for k, v in runs.items()}, fh, indent=1)


if __name__ == "__main__":
    main()
