"""Inference as a serving process meets it: a new process per run loads the
weights from a .npz, builds the model and times its first call and the next
few. A warm benchmark process can hide what a fresh one pays (BLAS state,
lazy initialization, JIT compilation)."""
import os
import statistics
import time
import traceback

from .configs import FRESH, FRESH_FIRST, FULL, SEED, Skip, make_data, make_params
from .impls import builder
from .procs import failure, launch, note, turns


def run_fresh(spec):
    """In the new process: load the weights from the .npz (spec["weights"]:
    p0, p1, ... in PyTorch order), build the model, time the first call, then
    each of spec["calls"] more calls one by one."""
    t_start = time.perf_counter()
    cfg, impl, threads = dict(spec["config"], fresh=True), spec["impl"], int(spec["threads"])
    result = {"impl": impl, "config": cfg["name"], "threads": threads, "ok": False,
              "fresh": True}
    try:
        build = builder(cfg, impl)
        if cfg["mode"] != "infer":
            raise ValueError("fresh-process runs are for inference configurations")
        import numpy as np
        with np.load(spec["weights"]) as z:
            params = [z[f"p{i}"] for i in range(len(z.files))]
        step, _ = build(cfg, params, make_data(cfg, spec.get("seed", SEED)), threads)
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
    except Skip as e:
        result["skipped"] = str(e)
    except Exception:
        result["error"] = traceback.format_exc(limit=8)
    return result


def run_fresh_rows(configs, thread_counts, peers, budget, log=None):
    """For every inference configuration, implementation and thread count,
    `fresh_reps` new processes that load the same weights from a temporary
    .npz, build the model and time the first call and each of the next
    `fresh_calls` calls (interleaved like the warm rounds). Returns samples
    for the "(fresh)" rows (batch / median call) and the "(fresh, 1st)" rows
    (batch / first call), errors, skips and details."""
    import tempfile
    import numpy as np
    samples, errors, skipped, details = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="fastnn_bench_") as tmp:
        paths = {}
        for cfg in configs:
            paths[cfg["name"]] = os.path.join(tmp, f"weights{len(paths)}.npz")
            np.savez(paths[cfg["name"]],
                     **{f"p{i}": p for i, p in enumerate(make_params(cfg, SEED))})
        for rep, cfg, threads, impl in turns(budget["fresh_reps"], configs, thread_counts, peers):
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
                    {k: res.get(k) for k in ("first_s", "median_s", "build_s", "method")})
                msg = (f"first {1e3 * res['first_s']:8.3f} ms, then "
                       f"{1e3 * res['median_s']:8.3f} ms")
            else:
                for row in (steady, first):
                    if "skipped" in res:
                        skipped[row, threads, impl] = res["skipped"]
                    else:
                        errors[row, threads, impl] = res.get("error", "unknown error")
                msg = failure(res)
            note(log, f"fresh {rep + 1}/{budget['fresh_reps']}", cfg, threads, impl, msg)
    return samples, errors, skipped, details
