"""A worker process: one implementation at one thread count.

The parent runs this file by path, with the thread count fixed in the
environment before anything is imported:

    python .../fastnn/bench/worker.py --serve IMPL THREADS   persistent, one JSON
                                                             request/answer per line
    python .../fastnn/bench/worker.py --worker SPEC          one-shot (tests)
    python .../fastnn/bench/worker.py --fresh SPEC           one fresh-process inference run

Run so, this folder is loaded as a private package (no ``import fastnn``), so
the NumPy and peer workers never load fastnn's compiled core or its OpenMP
runtime; only the fastnn worker imports fastnn (an installed one first, else
the tree this file is in, via FASTNN_BENCH_ROOT)."""
import os
import sys

if __name__ == "__main__" and not __package__:
    import types
    _HERE = os.path.dirname(os.path.abspath(__file__))
    # sys.path[0] is this folder, whose module names must not shadow anything
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    _pkg = types.ModuleType("_fastnn_bench")
    _pkg.__path__ = [_HERE]
    sys.modules[_pkg.__name__] = _pkg
    __package__ = _pkg.__name__  # PEP 366: relative imports from a script

import json  # noqa: E402
import statistics  # noqa: E402
import traceback  # noqa: E402

from .configs import CONFIG_BY_NAME, FULL, OPTIONAL_MODULES, SEED, Skip  # noqa: E402
from .impls import builder  # noqa: E402
from .timing import Cell  # noqa: E402


def budget(given):
    """FULL, with what the request or spec sets."""
    return dict(FULL, **{k: given[k] for k in FULL if k in given})


def run_worker(spec):
    """One-shot: build, warm up and time one implementation in this process;
    returns a JSON-able dict (spec: config, impl, threads, and optionally
    seed, losses = how many first-step losses to record, repeats, budget keys)."""
    cfg, impl, threads = spec["config"], spec["impl"], int(spec["threads"])
    if isinstance(cfg, str):
        cfg = CONFIG_BY_NAME[cfg]
    result = {"impl": impl, "config": cfg["name"], "threads": threads, "ok": False}
    try:
        b = budget(spec)
        cell = Cell(cfg, builder(cfg, impl), threads, b, spec.get("seed", SEED),
                    int(spec.get("losses", 0)))
        if cell.losses is not None:
            result["losses"] = cell.losses
        if cell.outputs is not None:
            result["outputs"] = cell.outputs
        result["method"] = cell.method
        rates, cpus = [], []
        for _ in range(int(spec.get("repeats", b["repeats"]))):
            rates.append(cell.turn(b))
            cpus.append(cell.cpu)
        if rates:
            result.update(steps=cell.steps, rates=rates, median=statistics.median(rates),
                          cpu_per_wall=statistics.median(cpus))
        result["blas_threads"] = blas_threads()
        result["ok"] = True
    except Skip as e:
        result["skipped"] = str(e)
    except Exception:  # reported, not raised: the parent prints it
        result["error"] = traceback.format_exc(limit=8)
    return result


def serve(impl, threads):
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
        cfg, b = req["config"], budget(req["budget"])
        name = cfg["name"]
        out = {"ok": False}
        try:
            if name in broken:
                out.update(broken[name])
            else:
                first = name not in cells
                if first:
                    cells[name] = Cell(cfg, builder(cfg, impl), threads, b,
                                       req.get("seed", SEED), int(req.get("losses", 0)))
                cell = cells[name]
                out.update(ok=True, rate=cell.turn(b), steps=cell.steps, cpu_per_wall=cell.cpu)
                if first:
                    out["losses"] = cell.losses
                    out["outputs"] = cell.outputs
                    out["method"] = cell.method
                    out["blas_threads"] = blas_threads()
        except Skip as e:
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


def blas_threads():
    """{library: threads} of the thread pools loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {os.path.basename(i["filepath"]): i["num_threads"] for i in threadpool_info()}


def main(argv):
    """A worker's command line (see the module docstring); its exit status."""
    from .fresh import run_fresh
    from .procs import pin
    root = os.environ.get("FASTNN_BENCH_ROOT")
    if root and root not in sys.path:
        sys.path.append(root)  # after site-packages: an installed fastnn wins
    if len(argv) == 3 and argv[0] == "--serve":
        pin(argv[1], int(argv[2]))
        return serve(argv[1], int(argv[2]))
    if len(argv) != 2 or argv[0] not in ("--worker", "--fresh"):
        raise SystemExit("usage: worker.py --serve IMPL THREADS | --worker SPEC | --fresh SPEC")
    spec = json.loads(argv[1])
    pin(spec.get("impl"), int(spec.get("threads", 1)))
    result = run_fresh(spec) if argv[0] == "--fresh" else run_worker(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") or "skipped" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
