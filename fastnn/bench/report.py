"""The report: the table, its footer (targets, checks, CPU use, errors), and
the plot of speed-ups."""
from .configs import IMPL_LABELS


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
    out.append("rates are samples/s (tokens/s for the LMs: predicted by lm b128, read by the "
               "sequence LMs), medians over all repeats; layers = "
               "fastnn's explicit layer loop; vs best peer = fastnn over the fastest of "
               "torch, torch-fused, jax, onnxruntime (torch alone for the sequence LMs); %floor = fastnn / (the step's GEMMs alone); "
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
