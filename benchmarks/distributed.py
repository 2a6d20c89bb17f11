"""Data-parallel scaling on one machine: ranks x threads at a fixed global batch.

    python benchmarks/distributed.py [--batch 256] [--steps 40] [--rounds 3] [--json out.json]

Trains the benchmark MLP (784-512-256-10, ReLU, Adam, float32, 535,818
parameters) on random data at global batch 256 in these layouts, each in fresh
processes (the thread count is fixed through the environment before import):

  1x1           one process, 1 thread, plain ``Trainer``            (reference)
  1x2           one process, 2 threads, plain ``Trainer``
  2x1           ``mpirun -n 2``, 1 thread per rank, ``DistributedTrainer``
                (128 rows per rank, one Allreduce of the 2.1 MB gradient)
  2x1 buckets   the same with ``bucket_cap_mb=0.25`` (Iallreduce per bucket,
                started during the backward pass)
  1x1 half      one process, 1 thread, batch 128: a rank's compute in 2x1
                without any communication (the model's T_compute)
  1x1 half x2   two such processes at once, one per core, no MPI: a rank's
                compute when the other core is busy too (the slower of the
                two, and their mean)

and a plain ``Allreduce`` of the gradient buffer alone between 2 ranks, which
gives the latency + bandwidth of the transport for the model in SCALING.md.
For the MPI layouts ``allreduce share`` is the time spent waiting for the
gradient reduction (transport plus waiting for the slower rank) divided by the
step time, averaged over ranks. Layouts run in rounds (A B C D A B C D ...)
so that machine drift hits them alike; the table shows the best round.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.abspath(__file__)
SIZES = [784, 512, 256, 10]
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS")
LAYOUTS = {  # name: (ranks, threads per rank, bucket_cap_mb, fraction of the batch, processes)
    "1x1": (1, 1, None, 1, 1),
    "1x2": (1, 2, None, 1, 1),
    "2x1": (2, 1, None, 1, 1),
    "2x1 buckets": (2, 1, 0.25, 1, 1),
    "1x1 half": (1, 1, None, 2, 1),  # one rank's share of 2x1 without communication
    "1x1 half x2": (1, 1, None, 2, 2),  # the same on both cores at once
}


# --- worker (one process, or one rank of an mpirun job) ------------------------------------
def _model(fn):
    fn.seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        layers.append(fn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(fn.ReLU())
    return fn.Sequential(*layers)


def worker(args):
    import numpy as np

    import fastnn as fn

    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((args.batch, SIZES[0]), dtype=np.float32),
                rng.integers(0, SIZES[-1], args.batch)) for _ in range(4)]
    model = _model(fn)
    opt = fn.Adam(model.parameters(), lr=1e-3)
    if args.mpi is None:
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
        for i in range(5):
            trainer.step(*batches[i % 4])
        t0 = time.perf_counter()
        for i in range(args.steps):
            trainer.step(*batches[i % 4])
        seconds = time.perf_counter() - t0
        print("RESULT " + json.dumps({"seconds": seconds, "threads": fn.get_num_threads()}))
        return
    from mpi4py import MPI

    from fastnn.distributed.trainer import DistributedTrainer, _split
    comm = MPI.COMM_WORLD
    if args.mpi == "allreduce":  # the transport alone, on a buffer the size of the gradient
        buf = np.ones(model._flat.grad.size, np.float32)
        for _ in range(5):
            comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)

        def timed(a):
            times = []
            for _ in range(args.steps):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, a, MPI.SUM)
                times.append(time.perf_counter() - t0)
            return times
        times, tiny = timed(buf), timed(np.ones(3))
        worst = comm.reduce(float(np.median(times)), MPI.MAX)
        worst_tiny = comm.reduce(float(np.median(tiny)), MPI.MAX)
        if comm.rank == 0:
            print("RESULT " + json.dumps({"allreduce_s": worst, "bytes": buf.nbytes,
                                          "tiny_allreduce_s": worst_tiny}))
        return
    bucket = None if args.mpi == "flat" else float(args.mpi)
    trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), opt, comm=comm,
                                 bucket_cap_mb=bucket)
    lo, hi = _split(args.batch, comm.size, comm.rank)
    shards = [(x[lo:hi], y[lo:hi]) for x, y in batches]
    for i in range(5):
        trainer.step(*shards[i % 4])
    comm.Barrier()
    trainer.timings.update(steps=0, step_s=0.0, allreduce_s=0.0, agree_s=0.0)
    t0 = time.perf_counter()
    for i in range(args.steps):
        trainer.step(*shards[i % 4])
    comm.Barrier()
    seconds = comm.reduce(time.perf_counter() - t0, MPI.MAX)
    timings = comm.gather(dict(trainer.timings), root=0)
    if comm.rank == 0:
        step_s = sum(t["step_s"] for t in timings)
        share = sum(t["allreduce_s"] for t in timings) / step_s
        sync = sum(t["agree_s"] for t in timings) / step_s
        print("RESULT " + json.dumps({"seconds": seconds, "allreduce_share": share,
                                      "sync_share": sync,
                                      "threads": fn.get_num_threads()}))


# --- parent ----------------------------------------------------------------------------------
def _run(cmd, env, timeout=300):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n"
                           f"{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _measure(name, args):
    ranks, threads, bucket, part, processes = LAYOUTS.get(name, (2, 1, None, 1, 1))
    base = [HERE, "--worker", "--batch", str(args.batch // part), "--steps", str(args.steps)]
    if ranks == 1:
        env = dict(os.environ, **{k: str(threads) for k in THREAD_ENV})
        if processes == 1:
            return _run([sys.executable] + base, env)
        with ThreadPoolExecutor(processes) as pool:  # started together, one per core
            runs = list(pool.map(lambda _: _run([sys.executable] + base, env), range(processes)))
        seconds = [r["seconds"] for r in runs]
        return {"seconds": max(seconds), "mean_seconds": sum(seconds) / processes}
    from fastnn.distributed import mpirun_command
    argv, env = mpirun_command(ranks, threads)
    env.update({k: str(threads) for k in THREAD_ENV})
    mode = "allreduce" if name == "allreduce" else ("flat" if bucket is None else str(bucket))
    return _run(argv + ["-x", "OPENBLAS_NUM_THREADS", sys.executable] + base + ["--mpi", mode],
                env)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    names = list(LAYOUTS)
    try:
        from fastnn.distributed import find_mpirun
        import importlib.util
        if find_mpirun() is None or importlib.util.find_spec("mpi4py") is None:
            raise ImportError
    except ImportError:
        print("mpi4py/mpirun not installed (pip install '.[mpi]'): measuring 1 process only")
        names = [n for n in names if LAYOUTS[n][0] == 1]
    else:
        names.append("allreduce")
    best = {}
    for r in range(args.rounds):
        for name in names:
            res = _measure(name, args)
            if name == "allreduce":
                if name not in best or res["allreduce_s"] < best[name]["allreduce_s"]:
                    best[name] = res
                continue
            res["samples_per_s"] = args.steps * args.batch / res["seconds"]
            res["ms_per_step"] = 1e3 * res["seconds"] / args.steps
            if name not in best or res["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = res
    print(f"MLP {'-'.join(map(str, SIZES))} Adam float32, global batch {args.batch}, "
          f"{args.steps} steps, best of {args.rounds} rounds")
    print(f"{'layout':<14}{'samples/s':>12}{'ms/step':>10}{'vs 1x2':>9}{'allreduce share':>18}"
          f"{'sync share':>12}")
    ref = best.get("1x2", {}).get("samples_per_s")
    for name in names:
        if name == "allreduce":
            continue
        res = best[name]
        if LAYOUTS[name][3] != 1:
            both = "" if "mean_seconds" not in res else \
                f"; the slower of two at once, mean {1e3 * res['mean_seconds'] / args.steps:.2f}"
            print(f"{name:<14}{'':>12}{res['ms_per_step']:>10.2f}   "
                  f"(batch {args.batch // LAYOUTS[name][3]}: compute only{both})")
            continue
        shares = ["" if key not in res else f"{100 * res[key]:.1f}%"
                  for key in ("allreduce_share", "sync_share")]
        ratio = res["samples_per_s"] / ref if ref else float("nan")
        print(f"{name:<14}{res['samples_per_s']:>12,.0f}{res['ms_per_step']:>10.2f}"
              f"{ratio:>8.2f}x{shares[0]:>18}{shares[1]:>12}")
    if "allreduce" in best:
        a = best["allreduce"]
        print(f"Allreduce of {a['bytes'] / 1e6:.2f} MB between 2 ranks: "
              f"{1e3 * a['allreduce_s']:.3f} ms ({a['bytes'] / a['allreduce_s'] / 1e9:.2f} GB/s "
              f"algorithmic); 3-double Allreduce: {1e6 * a['tiny_allreduce_s']:.1f} us")
    if {"2x1", "1x1 half", "allreduce"} <= set(best):
        # one rank's compiled step at its batch + the bare Allreduce + 3%
        ar_ms = 1e3 * best["allreduce"]["allreduce_s"]
        for ref in ("1x1 half", "1x1 half x2"):
            if ref in best:
                bound = (best[ref]["ms_per_step"] + ar_ms) * 1.03
                got = best["2x1"]["ms_per_step"]
                print(f"2x1 vs ({ref} + Allreduce) x 1.03 = {bound:.2f} ms: {got:.2f} ms "
                      f"({'met' if got <= bound else 'not met'})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"batch": args.batch, "steps": args.steps, "rounds": args.rounds,
                       "results": best}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
