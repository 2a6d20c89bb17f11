"""Data-parallel training over MPI (fastnn.distributed).

Each test starts ``mpirun -n 2`` (loopback only) on this file, which doubles as
the worker script: ``python tests/test_distributed.py SCENARIO [ARG]``. Rank 0
prints ``RESULT {json}`` lines that the test checks. Every launch has a timeout,
and a hung job is killed with its whole process group. Skipped when mpi4py or
mpirun is not installed (``pip install ".[mpi]"``).
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.abspath(__file__)


# --- the launcher side (pytest) -------------------------------------------------------------
def _require_mpi():
    try:
        found = importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        pytest.skip("mpi4py is not installed (pip install '.[mpi]')")
    from fastnn.distributed import find_mpirun
    if find_mpirun() is None:
        pytest.skip("mpirun/mpiexec not found (pip install '.[mpi]')")


def run_mpi(scenario, *args, n=2, timeout=60, module=None):
    """Run this file (or ``python -m module``) on n ranks; returns (rc, stdout,
    stderr, seconds, results) with results the RESULT lines' JSON."""
    _require_mpi()
    from fastnn.distributed import mpirun_command
    argv, env = mpirun_command(n, threads_per_rank=1)
    env["FASTNN_PROGRESS"] = "0"
    target = ["-m", module] if module else [HERE]
    cmd = argv + [sys.executable] + target + [scenario, *map(str, args)]
    t0 = time.monotonic()
    # A neutral cwd: `python -m fastnn` run from an unbuilt checkout would import
    # the source tree instead of the installed package.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=tempfile.gettempdir())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mpirun forwards it to the ranks
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"mpirun {scenario} hung for {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    seconds = time.monotonic() - t0
    results = [json.loads(line[len("RESULT "):]) for line in out.splitlines()
               if line.startswith("RESULT ")]
    return proc.returncode, out, err, seconds, results


def _ok(scenario, *args, **kw):
    rc, out, err, _, results = run_mpi(scenario, *args, **kw)
    assert rc == 0, f"mpirun {scenario} failed with {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert results, f"no RESULT from {scenario}\nstdout:\n{out}\nstderr:\n{err}"
    return results


def test_import_fastnn_does_not_need_mpi():
    code = ("import sys, fastnn, fastnn.distributed as d; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported eagerly'; "
            "assert callable(d.DistributedTrainer) and callable(d.mpirun_command)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   cwd=tempfile.gettempdir())


@pytest.mark.parametrize("n", [2, 1])
def test_equivalent_to_one_process_with_the_global_batch(n):
    """n ranks x batch b == 1 process x batch n*b, for SGD (momentum, clipping,
    a scheduler) and Adam, float64 and float32, 20 steps; also unequal and
    empty shards, bucketed reduction, and the base Trainer.step hook."""
    results = _ok("equivalence", n=n)
    assert len(results) >= 10
    for r in results:
        tol = 1e-12 if r["dtype"] == "float64" else 2e-5
        assert r["max_param_diff"] <= tol, r
        assert r["max_loss_diff"] <= tol * 10, r
        assert r["ranks_identical"], r  # replicas stay bit-identical


@pytest.mark.parametrize("n", [2, 1])
def test_fit_matches_single_process_fit(n):
    """fit on n ranks with global batch B == Trainer.fit with batch B: weights,
    history (reduced metrics) and evaluate; with sample weights and early
    stopping too; only rank 0 writes checkpoints; save/load round trip."""
    results = _ok("fit", n=n)
    assert [r["variant"] for r in results] == ["plain", "weighted+early stop"]
    for r in results:
        assert r["max_param_diff"] <= 1e-12, r
        assert r["epochs_run"] == r["ref_epochs_run"], r
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert r["history_diff"][key] <= 1e-12, (key, r)
        assert r["evaluate_diff"] <= 1e-12, r
    plain = results[0]
    assert plain["saves_per_rank"][0] == plain["epochs_run"] == 4
    assert not any(plain["saves_per_rank"][1:])
    assert plain["restored_from_checkpoint"]
    assert results[1]["epochs_run"] < 6  # early stopping stopped every rank together


def test_rejected_batch_raises_on_every_rank_and_changes_nothing():
    results = _ok("errors")
    by_case = {r["case"]: r for r in results}
    bad = by_case["bad labels on rank 1"]
    assert bad["raised"] == ["ValueError", "ValueError"]
    assert "rank 1" in bad["message"]
    assert bad["unchanged"] and bad["trains_after"]
    assert by_case["different data per rank"]["raised"] == ["ValueError", "ValueError"]
    assert by_case["empty everywhere"]["raised"] == ["ValueError", "ValueError"]
    assert by_case["different model"]["raised"] == ["ValueError", "ValueError"]
    assert "0.weight" in by_case["different model"]["message"]
    assert by_case["bad timeout"]["raised"] == ["ValueError", "ValueError"]
    assert by_case["bad bucket"]["raised"] == ["ValueError", "ValueError"]


@pytest.mark.parametrize("how", ["uncaught", "in_step"])
def test_failing_rank_aborts_the_job_fast(how):
    rc, out, err, seconds, _ = run_mpi("crash", how, timeout=60)
    assert rc != 0, out + err
    assert seconds < 30, f"took {seconds:.1f} s to fail"
    assert "rank 1" in err and "boom" in err, err
    assert "aborting the MPI job" in err, err


def test_stuck_rank_is_detected_by_the_timeout():
    rc, out, err, seconds, _ = run_mpi("hang", timeout=60)
    assert rc != 0, out + err
    assert seconds < 30, f"took {seconds:.1f} s to fail"
    assert "waited" in err and "rank 0" in err, err


def test_demo_distributed():
    if importlib.util.find_spec("fastnn.apps.demo") is None:
        pytest.skip("fastnn.apps.demo is not there yet")
    rc, out, err, _, _ = run_mpi("demo", "--distributed", "--epochs", "3", module="fastnn",
                                 timeout=90)
    assert rc == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "2 rank(s)" in out and "test accuracy" in out, out
    assert out.count("test accuracy") == 1, "only rank 0 prints"


# --- the worker side (under mpirun) ------------------------------------------------------------
def _result(comm, **fields):
    if comm.rank == 0:
        print("RESULT " + json.dumps(fields), flush=True)


def _mlp(fn, seed, dtype, n_in=6, n_out=3):
    fn.seed(seed)
    return fn.Sequential(fn.Linear(n_in, 16), fn.Tanh(), fn.Linear(16, 12), fn.ReLU(),
                         fn.Linear(12, n_out), dtype=dtype)


def _flat(model):
    return model._flat.data.copy()


def _identical_across_ranks(comm, array):
    arrays = comm.allgather(array)
    return all(np.array_equal(a, arrays[0]) for a in arrays)


def _equivalence(comm):
    import fastnn as fn
    from fastnn.distributed.trainer import DistributedTrainer, _split

    rank, size = comm.rank, comm.size
    configs = []
    for dtype in ("float64", "float32"):
        for opt in ("sgd", "adam"):
            configs.append(dict(dtype=dtype, opt=opt, batches=[4 * size], bucket=None))
    configs += [
        dict(dtype="float64", opt="adam", batches=[7, 5, 9], bucket=None),        # unequal
        dict(dtype="float64", opt="sgd", batches=[1, 6], bucket=None),            # empty shard
        dict(dtype="float64", opt="adam", batches=[8], bucket=1e-4),              # buckets
        dict(dtype="float32", opt="sgd", batches=[8], bucket=1e-4),
        dict(dtype="float64", opt="adam", batches=[1, 6], bucket=1e-4),           # both
        dict(dtype="float64", opt="sgd", batches=[8], bucket=None, clip=0.05, sched=True),
        dict(dtype="float64", opt="adam", batches=[3 * size, size + 1], bucket=None,
             hook=True),  # the base Trainer.step + _reduce_gradients hook
    ]
    for cfg in configs:
        def make(seed):
            model = _mlp(fn, seed, cfg["dtype"])
            if cfg["opt"] == "sgd":
                opt = fn.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
            else:
                opt = fn.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
            sched = fn.StepLR(opt, step_size=5, gamma=0.5) if cfg.get("sched") else None
            return model, opt, sched

        # Every rank starts from different weights: the broadcast must fix that.
        model, opt, sched = make(100 + rank)
        trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), opt, comm=comm,
                                     scheduler=sched, clip_grad_norm=cfg.get("clip"),
                                     bucket_cap_mb=cfg["bucket"], timeout=60)
        if rank == 0:
            ref_model, ref_opt, ref_sched = make(100)
            ref = fn.Trainer(ref_model, fn.CrossEntropyLoss(), ref_opt, scheduler=ref_sched,
                             clip_grad_norm=cfg.get("clip"))
        data = np.random.default_rng(7)
        loss_diff = 0.0
        for step in range(20):
            n = cfg["batches"][step % len(cfg["batches"])]
            X = data.standard_normal((n, 6))
            y = data.integers(0, 3, n)
            lo, hi = _split(n, size, rank)
            if cfg.get("hook"):
                value = fn.Trainer.step(trainer, X[lo:hi], y[lo:hi]) if hi > lo else None
                if value is None:
                    raise AssertionError("hook config needs non-empty shards")
            else:
                value = trainer.step(X[lo:hi], y[lo:hi])
            if rank == 0:
                loss_diff = max(loss_diff, abs(value - ref.step(X, y)))
        identical = _identical_across_ranks(comm, _flat(model))
        if rank == 0:
            diff = float(np.max(np.abs(_flat(model).astype(np.float64) - _flat(ref_model))))
            _result(comm, **{k: v for k, v in cfg.items()}, max_param_diff=diff,
                    max_loss_diff=loss_diff, ranks_identical=identical)


def _fit(comm):
    import fastnn as fn
    import fastnn.train.checkpoint
    from fastnn.distributed import DistributedTrainer

    rank = comm.rank
    saves = []
    real_save = fastnn.train.checkpoint.save

    def counting_save(*args, **kwargs):
        saves.append(args[0])
        return real_save(*args, **kwargs)

    fastnn.train.checkpoint.save = counting_save
    data = np.random.default_rng(3)
    X = data.standard_normal((93, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    w = data.uniform(0.2, 2.0, len(X))
    Xv, yv = X[:30] * 1.1, y[:30]
    tmpdir = comm.bcast(tempfile.mkdtemp() if rank == 0 else None)

    def make(seed):
        model = _mlp(fn, seed, "float64")
        return model, fn.Adam(model.parameters(), lr=1e-2)

    for variant in ("plain", "weighted+early stop"):
        weighted = variant != "plain"
        kwargs = dict(epochs=6 if weighted else 4, batch_size=10, validation_data=(Xv, yv),
                      seed=11, progress=False, sample_weight=w if weighted else None)

        def callbacks():
            if weighted:  # stops after epoch 2: the loss never improves by 10
                return [fn.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)]
            return [fn.ModelCheckpoint(os.path.join(tmpdir, "e{epoch}.npz"))]

        model, opt = make(5 + rank)
        trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), opt, comm=comm, timeout=60)
        del saves[:]
        hist = trainer.fit(X, y, callbacks=callbacks(), **kwargs)
        ev = trainer.evaluate(Xv, yv, batch_size=7, sample_weight=w[:30] if weighted else None)
        counts = comm.gather(len(saves), root=0)
        after_fit = _flat(model)
        # save/load: rank 0 writes, everyone gets the weights back (rank 1 by broadcast)
        path = os.path.join(tmpdir, f"trainer-{weighted}.npz")
        trainer.save(path)
        model._flat.data[...] = rank + 0.5
        trainer.load(path)
        restored = bool(comm.allreduce(int(np.array_equal(_flat(model), after_fit)),
                                       op=_land()))
        if rank == 0:
            ref_model, ref_opt = make(5)
            ref = fn.Trainer(ref_model, fn.CrossEntropyLoss(), ref_opt)
            ref_hist = ref.fit(X, y, callbacks=callbacks(), **kwargs)
            ref_ev = ref.evaluate(Xv, yv, sample_weight=w[:30] if weighted else None)
            hdiff = {k: float(np.max(np.abs(np.subtract(hist.history[k], ref_hist.history[k]))))
                     for k in ref_hist.history}
            _result(comm, variant=variant,
                    max_param_diff=float(np.max(np.abs(after_fit - _flat(ref_model)))),
                    history_diff=hdiff, saves_per_rank=counts,
                    epochs_run=len(hist.history["loss"]),
                    ref_epochs_run=len(ref_hist.history["loss"]),
                    restored_from_checkpoint=restored,
                    evaluate_diff=max(abs(ev[k] - ref_ev[k]) for k in ref_ev))


def _land():
    from mpi4py import MPI
    return MPI.LAND


def _errors(comm):
    import fastnn as fn
    from fastnn.distributed import DistributedTrainer

    rank = comm.rank
    model = _mlp(fn, 1, "float64")
    opt = fn.Adam(model.parameters(), lr=1e-2)
    trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), opt, comm=comm, timeout=60)
    X = np.random.default_rng(0).standard_normal((8, 6))
    y = np.arange(8) % 3
    trainer.step(X[rank::2], y[rank::2])

    def attempt(fn_call):
        try:
            fn_call()
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__, str(exc)
        return None, ""

    before, state = _flat(model), opt.state_dict()
    bad = y[rank::2].copy()
    if rank == 1:
        bad[0] = 7
    kind, message = attempt(lambda: trainer.step(X[rank::2], bad))
    unchanged = np.array_equal(_flat(model), before) and all(
        np.array_equal(a, b) for k in state["state"]
        for a, b in zip(state["state"][k].values(), opt.state_dict()["state"][k].values()))
    trains_after = np.isfinite(trainer.step(X[rank::2], y[rank::2]))
    raised = comm.gather(kind, root=0)
    _result(comm, case="bad labels on rank 1", raised=raised, message=message,
            unchanged=bool(comm.allreduce(int(unchanged), op=_land())),
            trains_after=bool(trains_after))

    Xr = X + rank
    kind, message = attempt(lambda: trainer.fit(Xr, y, epochs=1, batch_size=4, progress=False))
    _result(comm, case="different data per rank", raised=comm.gather(kind, root=0),
            message=message)

    kind, message = attempt(lambda: trainer.step(X[:0], y[:0]))
    _result(comm, case="empty everywhere", raised=comm.gather(kind, root=0), message=message)

    width = 12 if rank == 0 else 13
    fn.seed(0)
    other = fn.Sequential(fn.Linear(6, width), fn.ReLU(), fn.Linear(width, 3))
    kind, message = attempt(lambda: DistributedTrainer(
        other, fn.CrossEntropyLoss(), fn.SGD(other.parameters(), lr=0.1), comm=comm, timeout=60))
    _result(comm, case="different model", raised=comm.gather(kind, root=0), message=message)

    for case, kw in (("bad timeout", dict(timeout=-1)), ("bad bucket", dict(bucket_cap_mb=0))):
        kind, message = attempt(lambda: DistributedTrainer(
            model, fn.CrossEntropyLoss(), opt, comm=comm, **kw))
        _result(comm, case=case, raised=comm.gather(kind, root=0), message=message)


def _crash(comm, how):
    import fastnn as fn
    from fastnn.distributed import DistributedTrainer

    model = _mlp(fn, 1, "float32")
    opt = fn.SGD(model.parameters(), lr=0.1)
    trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), opt, comm=comm, timeout=120)
    X = np.random.default_rng(0).standard_normal((8, 6))
    y = np.arange(8) % 3
    for step in range(1000):
        if comm.rank == 1 and step == 3:
            if how == "uncaught":
                raise RuntimeError("boom: rank 1 failed outside the step")
            opt.step = lambda: (_ for _ in ()).throw(RuntimeError("boom inside the update"))
        trainer.step(X, y)
    print("RESULT {\"finished\": true}", flush=True)  # must not get here


def _hang(comm):
    import fastnn as fn
    from fastnn.distributed import DistributedTrainer

    model = _mlp(fn, 1, "float32")
    trainer = DistributedTrainer(model, fn.CrossEntropyLoss(), fn.SGD(model.parameters(), lr=0.1),
                                 comm=comm, timeout=2)
    X = np.random.default_rng(0).standard_normal((8, 6))
    y = np.arange(8) % 3
    for step in range(5):
        if comm.rank == 1 and step == 2:
            time.sleep(40)  # stuck: rank 0 waits in the next collective
        trainer.step(X, y)


if __name__ == "__main__":
    from mpi4py import MPI

    scenario, args = sys.argv[1], sys.argv[2:]
    {"equivalence": _equivalence, "fit": _fit, "errors": _errors, "crash": _crash,
     "hang": _hang}[scenario](MPI.COMM_WORLD, *args)
