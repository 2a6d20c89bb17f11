"""Behaviour the speed work relies on (not timings): no allocation per warm
step, results independent of the thread count, fork safety, and the fused step
equal to the unfused API."""
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastnn as fn


def make(dtype="float32", opt="adam", loss="ce", sizes=(784, 512, 256, 10), seed=0):
    fn.seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(fn.ReLU())
    model = fn.Sequential(*layers, dtype=dtype)
    optim = {"adam": lambda p: fn.Adam(p, lr=1e-3),
             "sgd": lambda p: fn.SGD(p, lr=0.05, momentum=0.9),
             "adamw": lambda p: fn.AdamW(p, lr=1e-3),
             "rmsprop": lambda p: fn.RMSprop(p, lr=1e-3, centered=True, momentum=0.5),
             "adagrad": lambda p: fn.Adagrad(p, lr=1e-2, lr_decay=1e-3, weight_decay=1e-4),
             "nadam": lambda p: fn.NAdam(p, lr=2e-3, weight_decay=1e-4)}[opt]
    lossf = (fn.CrossEntropyLoss(label_smoothing=0.1) if loss == "ce_probs" else
             fn.CrossEntropyLoss() if loss == "ce" else fn.BCEWithLogitsLoss())
    return model, fn.Trainer(model, lossf, optim(model.parameters()), clip_grad_norm=5.0)


def data(n=64, sizes=(784, 512, 256, 10), loss="ce", dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    if loss == "ce":
        return x, rng.integers(0, sizes[-1], n)
    if loss == "ce_probs":
        p = rng.random((n, sizes[-1])).astype(dtype)
        return x, (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    return x, (rng.random((n, sizes[-1])) > 0.5).astype(dtype)


@pytest.fixture
def threads():
    before = fn.get_num_threads()
    yield
    fn.set_num_threads(before)


@pytest.mark.parametrize("cfg", [dict(), dict(opt="sgd", loss="bce", sizes=(32, 64, 64, 1))])
def test_warm_steps_do_not_allocate(cfg):
    model, trainer = make(**cfg)
    x, y = data(32, cfg.get("sizes", (784, 512, 256, 10)), cfg.get("loss", "ce"))
    for _ in range(5):
        trainer.step(x, y)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(200):
        trainer.step(x, y)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 64 * 1024
    assert peak - before < 64 * 1024  # not even transient workspaces


@pytest.mark.parametrize("opt", ["adam", "sgd", "rmsprop", "adagrad", "nadam"])
def test_one_and_two_threads_give_identical_training(threads, opt):
    results = []
    for n in (1, 2):
        fn.set_num_threads(n)
        model, trainer = make(opt=opt)
        x, y = data(256)
        losses = [trainer.step(x, y) for _ in range(30)]
        results.append((np.array(losses), model._flat.data.copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])  # bitwise


def test_fork_after_two_thread_training_does_not_hang(threads):
    code = textwrap.dedent("""
        import os, sys, numpy as np, fastnn as fn
        fn.set_num_threads(2)
        fn.seed(0)
        m = fn.Sequential(fn.Linear(256, 512), fn.ReLU(), fn.Linear(512, 10))
        t = fn.Trainer(m, fn.CrossEntropyLoss(), fn.Adam(m.parameters()))
        x = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
        y = np.arange(512) % 10
        for _ in range(5):
            t.step(x, y)
        pid = os.fork()
        if pid == 0:
            for _ in range(5):
                t.step(x, y)
            os._exit(0 if np.isfinite(m.predict(x)).all() else 3)
        _, status = os.waitpid(pid, 0)
        t.step(x, y)  # the parent keeps its threads
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam"])
@pytest.mark.parametrize("loss", ["ce", "ce_probs", "bce"])
def test_fused_step_equals_unfused_api(dtype, opt, loss):
    sizes = (40, 64, 32, 5)
    x, y = data(48, sizes, loss, np.dtype(dtype).type)
    model_a, trainer_a = make(dtype, opt, loss, sizes)
    assert trainer_a._fused(x, y) is not None  # the fused path is really taken
    model_b, trainer_b = make(dtype, opt, loss, sizes)
    lossf = trainer_b.loss
    for _ in range(10):
        la = trainer_a.step(x, y)
        # the plain public API, step by step
        lb = lossf(model_b(x), y)
        model_b.zero_grad()
        model_b.backward(lossf.backward())
        fn.clip_grad_norm(model_b.parameters(), 5.0)
        trainer_b.optimizer.step()
        assert la == pytest.approx(lb, rel=1e-6, abs=1e-7)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(model_a._flat.data, model_b._flat.data, rtol=tol, atol=tol)


def test_openmp_enabled_in_this_build():
    import shutil
    if os.environ.get("FASTNN_NO_OPENMP") or shutil.which("cc") is None:
        pytest.skip("serial build requested")
    from fastnn._kernels import _ops
    assert _ops.openmp_enabled()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_embedding_step_equals_checked_step(dtype):
    """Embedding + Flatten + dense stack (the language model) also runs as one call."""
    def run(fused):
        fn.seed(0)
        model = fn.Sequential(fn.Embedding(50, 8), fn.Flatten(), fn.Linear(32, 64), fn.Tanh(),
                              fn.Linear(64, 50), dtype=dtype)
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2),
                             clip_grad_norm=1.0)
        rng = np.random.default_rng(1)
        x, y = rng.integers(0, 50, (64, 4)), rng.integers(0, 50, 64)
        assert trainer._fused(x, y) is not None
        losses = [trainer.step(x, y) if fused else trainer._pipeline_step(x, y, None, None) for _ in range(10)]
        return np.array(losses), model._flat.data.copy()

    (la, wa), (lb, wb) = run(True), run(False)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(wa, wb)
