"""From samples to results: medians and spreads, ratios between the columns,
the same-start checks, and the verdict on each target."""
import statistics

from .configs import IMPLS, PEERS, SEED, TARGET_NEEDS, TARGETS, count_gemms


def _per_config(found):
    """{(config, threads, impl): x} -> sorted [((config, threads), {impl: x}, reference x)],
    the reference being NumPy's where it was measured."""
    by_cfg = {}
    for (name, threads, impl), x in found.items():
        by_cfg.setdefault((name, threads), {})[impl] = x
    return [(key, per, per.get("numpy") or next(iter(per.values())))
            for key, per in sorted(by_cfg.items())]


def check_losses(losses):
    """Harness self-check: from the same weights and batch, every implementation
    must report the same loss before and after one update (float32 tolerance)."""
    out = []
    for (name, threads), per, ref in _per_config(losses):
        worst = max(abs(a - b) / max(abs(b), 1e-12)
                    for ls in per.values() for a, b in zip(ls, ref))
        out.append({"config": name, "threads": threads, "kind": "losses", "losses": per,
                    "max_rel_diff": worst, "agree": worst < 1e-4})
    return out


def check_outputs(outputs):
    """The same for inference: the first rows of the output on the first batch,
    difference relative to the largest reference value."""
    out = []
    for (name, threads), per, ref in _per_config(outputs):
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
    verdicts = evaluate_targets(rows, {c["name"]: c.get("impls") for c in configs})
    for r in rows:
        r["targets"] = [v for v in verdicts if v["config"] == r["config"]
                        and v["threads"] == r["threads"]]
    return {"rows": rows, "targets": verdicts, "budget": budget, "seed": SEED}


def targets_for(name, impls=None):
    """[(kind, threshold)] for a row: its own targets, plus the "*" ones of a
    kind it has no own target for and whose reference column it measures
    (impls: its columns, None = all)."""
    own = [(k, t) for n, k, t in TARGETS if n == name]
    kinds = {k for k, _ in own}
    return own + [(k, t) for n, k, t in TARGETS if n == "*" and k not in kinds
                  and (impls is None or TARGET_NEEDS.get(k, "fastnn") in impls)]


def evaluate_targets(rows, impls=None):
    """The verdict on every target of every row (impls: {config: its columns})."""
    out = []
    for r in rows:
        for kind, thr in targets_for(r["config"], (impls or {}).get(r["config"])):
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
