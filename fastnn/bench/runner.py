"""The parent's run: persistent workers taking turns, then the fresh-process
rows, then the summary."""
import sys
import time

from .configs import (CONFIGS, FRESH, FRESH_FIRST, FULL, PEERS, QUICK, SEED, budget_for,
                      impls_for)
from .fresh import run_fresh_rows
from .procs import Worker, available_peers, close_all, failure, note, turns
from .summary import check_losses, check_outputs, summarize


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
    wanted = {i for cfg in configs for i in impls_for(cfg, peers)}
    impls_all = [i for i in ("fastnn", "fastnn_layers", "numpy", *PEERS, "gemm") if i in wanted]
    budgets = {cfg["name"]: budget_for(cfg, budget, quick) for cfg in configs}
    workers = {}
    samples, cpus, errors, skipped, losses, outputs, methods, worker_info = ({} for _ in range(8))
    try:
        for threads in thread_counts:
            for impl in impls_all:
                workers[impl, threads] = Worker(impl, threads)
        for (impl, threads), w in workers.items():
            info = w.wait_ready()
            worker_info[f"{impl} {threads}T"] = info
            if w.dead and log:
                print(f"worker {impl} {threads}T unavailable: {w.dead}", file=log, flush=True)
        for rnd, cfg, threads, impl in turns(budget["rounds"], configs, thread_counts, peers):
            key = (cfg["name"], threads, impl)
            if key in skipped or key in errors:
                continue
            time.sleep(budget["settle_s"])
            res = workers[impl, threads].request(
                {"config": cfg, "budget": budgets[cfg["name"]], "seed": SEED, "losses": 2})
            if res.get("ok"):
                samples.setdefault(key, []).append(res["rate"])
                if res.get("cpu_per_wall") is not None:
                    cpus.setdefault(key, []).append(res["cpu_per_wall"])
                for got, kept in ((res.get("losses"), losses), (res.get("outputs"), outputs),
                                  (res.get("method"), methods)):
                    if got:
                        kept[key] = got
                if res.get("blas_threads"):
                    worker_info[f"{impl} {threads}T"]["thread_pools"] = res["blas_threads"]
                msg = f"{res['rate']:12.1f} {cfg['unit']}/s"
            elif "skipped" in res:
                skipped[key] = res["skipped"]
            else:
                errors[key] = res.get("error", "unknown error")
            if not res.get("ok"):
                msg = failure(res)
            note(log, f"round {rnd + 1}/{budget['rounds']}", cfg, threads, impl, msg)
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
    summary["budget_by_config"] = {name: b for name, b in budgets.items() if b != budget}
    summary["workers"] = worker_info
    summary["fresh"] = fresh_info
    return summary
