"""Benchmarks: fastnn vs a careful pure-NumPy implementation vs its peers
(PyTorch eager and fused-optimizer, a ``jax.jit`` whole step, ONNX Runtime).

``python -m fastnn bench [--threads N] [--json out.json] [--quick] [--only SUBSTR,...]
[--plot out.png] [--from-json earlier.json]``: the command line, the run, the JSON."""
import json
import os
import sys
import time

from .configs import CONFIGS, IMPL_LABELS, PEERS
from .machine import machine_info
from .procs import available_peers
from .report import format_table, plot
from .runner import run_all


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
    configs = select(getattr(args, "only", None))
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


def select(only):
    """The configurations --only names: those whose name contains one of its
    comma-separated substrings (all for None)."""
    if not only:
        return CONFIGS
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    configs = [c for c in CONFIGS if any(w in c["name"] for w in wanted)]
    if not configs:
        raise SystemExit(f"--only {only!r} matches no configuration "
                         f"({', '.join(c['name'] for c in CONFIGS)})")
    return configs


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
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (a few minutes)")
    p.add_argument("--only", default=None,
                   help="comma-separated substrings of configuration names to run")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the speed-ups (vs NumPy, vs the best peer) to this file "
                        "(needs matplotlib)")
    p.add_argument("--from-json", metavar="PATH", default=None,
                   help="do not measure: print the table (and --plot) from an earlier JSON")
