"""Off the happy path (issue "works the first time"): an unbuilt source tree,
forked workers, pickled and copied models, diverging runs, custom modules,
mistakes caught at construction, memory at construction, fit's logs."""
import copy
import os
import pickle
import shutil
import subprocess
import tempfile
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=256, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return X, y % classes


def _mlp(d=8, h=16, c=3, dropout=0.0):
    layers = [fn.Linear(d, h), fn.ReLU()] + ([fn.Dropout(dropout)] if dropout else [])
    return fn.Sequential(*layers, fn.Linear(h, c))


def _run_python(code, timeout=120):
    """A fresh interpreter, from another folder so the installed fastnn is imported."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir())


# --- 1. the README's commands from the repository root ---------------------------
def test_unbuilt_source_tree_says_what_to_do(tmp_path):
    """`import fastnn` from a checkout without its compiled core names the cause
    and the fix instead of a bare ImportError."""
    shutil.copytree(os.path.join(ROOT, "fastnn"), tmp_path / "fastnn",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.c"))
    shutil.copy(os.path.join(ROOT, "setup.py"), tmp_path / "setup.py")
    proc = subprocess.run([sys.executable, "-c", "import fastnn"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"})
    assert proc.returncode != 0
    assert "not built" in proc.stderr and "source checkout" in proc.stderr
    assert "fastnn demo" in proc.stderr and "build_ext --inplace" in proc.stderr


def test_console_script_runs_from_the_repository_root():
    exe = shutil.which("fastnn", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    if exe is None:
        if os.environ.get("FASTNN_REQUIRE_OPTIONAL") == "1":
            pytest.fail("the fastnn console script is not installed")
        pytest.skip("fastnn is not installed as a distribution (no console script)")
    proc = subprocess.run([exe, "info"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "openmp" in proc.stdout


# --- 2. forked workers -------------------------------------------------------------
FORK_SCRIPT = """
import multiprocessing as mp, warnings, numpy as np, fastnn as fn
fn.set_num_threads(2)
fn.seed(0)
model = fn.Sequential(fn.Linear(256, 512), fn.ReLU(), fn.Linear(512, 64))
X = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
y = np.random.default_rng(1).integers(0, 64, 512)
trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.SGD(model.parameters(), lr=0.01))
trainer.step(X, y)
expected = model.predict(X)
from fastnn._kernels import _ops
assert _ops.openmp_pool_started() or not _ops.openmp_enabled()

def child(q):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn.set_num_threads(2)
    out = model.predict(X)
    loss = trainer.step(X, y)
    q.put((bool(np.array_equal(out, expected)), fn.get_num_threads(), [str(x.message) for x in w],
           float(loss)))

q = mp.get_context("fork").Queue()
p = mp.get_context("fork").Process(target=child, args=(q,))
p.start()
same, threads, msgs, loss = q.get(timeout=60)
p.join(60)
print(same, threads, np.isfinite(loss), p.exitcode)
print("|".join(msgs))
"""


def test_forked_child_predicts_and_trains_without_hanging():
    proc = _run_python(FORK_SCRIPT, timeout=120)  # a hang fails here, never hangs the suite
    assert proc.returncode == 0, proc.stderr
    first, msgs = proc.stdout.splitlines()[:2]
    assert first == "True 1 True 0", proc.stdout
    if fn._kernels._ops.openmp_enabled():
        assert "forked" in msgs and "serially" in msgs


def test_child_of_a_parent_that_never_went_parallel_keeps_its_threads():
    code = """
    import os, fastnn as fn
    from fastnn._kernels import _ops
    fn.set_num_threads(2)
    assert not _ops.openmp_pool_started()
    pid = os.fork()
    if pid == 0:
        fn.set_num_threads(2)
        os._exit(0 if fn.get_num_threads() == 2 or not _ops.openmp_enabled() else 3)
    print(os.waitpid(pid, 0)[1])
    """
    proc = _run_python(code, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr


# --- 3. pickle and deepcopy --------------------------------------------------------
def _trained(dropout=0.0, opt=fn.Adam):
    fn.seed(1)
    X, y = _data()
    model = _mlp(dropout=dropout)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt(model.parameters(), lr=1e-2))
    trainer.fit(X, y, epochs=2, batch_size=32, verbose=0)
    model.predict(X)
    model(X)
    return model, trainer, X, y


@pytest.mark.parametrize("clone", [lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_model_clones_after_use_and_are_independent(clone):
    model, _, X, y = _trained()
    twin = clone(model)
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))
    assert list(twin.state_dict()) == list(model.state_dict())
    before = {k: v.copy() for k, v in model.state_dict().items()}
    t2 = fn.Trainer(twin, fn.CrossEntropyLoss(), fn.SGD(twin.parameters(), lr=0.1))
    t2.fit(X, y, epochs=1, batch_size=32, verbose=0)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert any(not np.array_equal(v, before[k]) for k, v in twin.state_dict().items())
    # the copy's parameters are still views of its own flat buffer
    assert twin.parameters()[0].data.base is twin._flat.data or \
        np.shares_memory(twin.parameters()[0].data, twin._flat.data)


@pytest.mark.parametrize("opt", [fn.Adam, fn.SGD, fn.RMSprop])
def test_deepcopied_trainer_continues_bitwise_like_the_original(opt):
    _, trainer, X, y = _trained(opt=opt)
    twin = copy.deepcopy(trainer)
    assert twin.model is not trainer.model and twin.optimizer is not trainer.optimizer
    for _ in range(3):
        a = trainer.step(X[:32], y[:32])
        b = twin.step(X[:32], y[:32])
        assert a == b
    for (k, v), (k2, v2) in zip(trainer.model.state_dict().items(), twin.model.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v, v2)
    ta, tb = trainer.optimizer.state_dict(), twin.optimizer.state_dict()
    for i in ta["state"]:
        for name in ta["state"][i]:
            np.testing.assert_array_equal(ta["state"][i][name], tb["state"][i][name])


def test_pickled_optimizer_keeps_updating_the_pickled_model():
    _, trainer, X, y = _trained()
    model2, opt2 = pickle.loads(pickle.dumps((trainer.model, trainer.optimizer)))
    before = model2.state_dict()
    fn.Trainer(model2, fn.CrossEntropyLoss(), opt2).step(X[:32], y[:32])
    assert any(not np.array_equal(v, before[k]) for k, v in model2.state_dict().items())


def _predict_in_worker(model_and_x):
    model, x = model_and_x
    return model.predict(x)


def test_multiprocessing_pool_ships_a_trained_model():
    import multiprocessing as mp
    model, _, X, _ = _trained()
    with mp.get_context("spawn").Pool(1) as pool:
        out = pool.map(_predict_in_worker, [(model, X[:16])], chunksize=1)[0]
    np.testing.assert_array_equal(out, model.predict(X[:16]))


def test_joblib_ships_a_trained_model():
    joblib = pytest.importorskip("joblib")
    model, _, X, _ = _trained()
    out = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_predict_in_worker)((model, X[i:i + 8])) for i in (0, 8))
    for i, part in zip((0, 8), out):  # same batch size, so the same BLAS blocking
        np.testing.assert_array_equal(part, model.predict(X[i:i + 8]))


# --- 4. divergence ----------------------------------------------------------------
@pytest.mark.parametrize("validation", [False, True])
def test_diverging_fit_stops_with_a_warning_and_keeps_history(tmp_path, validation):
    fn.seed(0)
    X, y = _data()
    model = _mlp()
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.SGD(model.parameters(), lr=1e6))
    with pytest.warns(fn.DivergenceWarning, match=r"diverged.*epoch \d+, step \d+.*learning rate"):
        hist = trainer.fit(X, y, epochs=20, batch_size=32, verbose=0,
                           validation_data=(X, y) if validation else None)
    losses = hist.history["loss"]
    assert 1 <= len(losses) < 20 and np.isnan(losses[-1])
    assert all(len(v) == len(losses) for v in hist.history.values())
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    fn.save(tmp_path / "m.npz", model)          # what save writes, load reads
    loaded = fn.load(tmp_path / "m.npz")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


@pytest.mark.parametrize("fused", [True, False])
def test_a_diverged_step_changes_nothing(fused):
    fn.seed(0)
    X, y = _data()
    model = _mlp()
    opt = fn.Adam(model.parameters(), lr=1e-3)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
    trainer.step(X[:32], y[:32])
    before, ostate = model.state_dict(), copy.deepcopy(opt.state_dict())
    model[0].weight.data[0, 0] = 3e38  # the next forward overflows to inf
    before["0.weight"][0, 0] = 3e38
    xb = X[:32] if fused else X[:32].astype(np.float64)  # float64 input takes the checked path
    with pytest.raises(fn.DivergenceError, match="changed no weight"):
        trainer.step(xb * 1e3, y[:32])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    after = opt.state_dict()
    assert after["state"][0]["step"] == ostate["state"][0]["step"]
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], ostate["state"][0]["exp_avg"])


def test_save_refuses_a_nan_model_and_writes_nothing(tmp_path):
    model = _mlp()
    model[0].weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="'0.weight' contains NaN"):
        fn.save(tmp_path / "m.npz", model)
    assert os.listdir(tmp_path) == []


# --- 5. custom modules ---------------------------------------------------------------
class Residual(fn.Module):
    """x + fc2(relu(fc1(x))), then a head: the README's example."""

    def __init__(self, d, h, c):
        super().__init__()
        self.fc1 = fn.Linear(d, h)
        self.act = fn.ReLU()
        self.fc2 = fn.Linear(h, d)
        self.head = fn.Linear(d, c)

    def forward(self, x):
        return self.head(x + self.fc2(self.act(self.fc1(x))))

    def backward(self, grad):
        g = self.head.backward(grad)
        return g + self.fc1.backward(self.act.backward(self.fc2.backward(g)))


def test_custom_module_registers_children_with_torch_names():
    m = Residual(4, 8, 3)
    assert [k for k, _ in m.named_parameters()] == [
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight", "head.bias"]
    assert list(m.state_dict()) == [k for k, _ in m.named_parameters()]
    m.scale = fn.Parameter(np.ones(3, np.float32))
    assert "scale" in m.state_dict() and m.scale is m._parameters["scale"]
    del m.scale
    assert "scale" not in m.state_dict()
    with pytest.raises(TypeError, match="fc1"):
        m.fc1 = 3


def test_module_assignment_before_init_is_a_clear_error():
    class Bad(fn.Module):
        def __init__(self):
            self.fc = fn.Linear(2, 2)
    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_custom_module_gradients_match_finite_differences():
    fn.seed(3)
    m = Residual(3, 5, 2)
    for p in m.parameters():
        p.data = p.data.astype(np.float32)
    X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    loss = fn.CrossEntropyLoss()
    loss(m(X), y)
    m.zero_grad()
    m.backward(loss.backward())
    p = m.fc1.weight
    analytic = p.grad[1, 2]
    eps = 1e-2
    old = p.data[1, 2]
    p.data[1, 2] = old + eps
    up = loss(m(X), y)
    p.data[1, 2] = old - eps
    down = loss(m(X), y)
    p.data[1, 2] = old
    assert abs((up - down) / (2 * eps) - analytic) < 2e-3


def test_custom_module_trains_with_fit_like_the_equivalent_sequential():
    X, y = _data()
    fn.seed(5)
    custom = Residual(8, 16, 3)
    fn.seed(5)
    # without the skip connection the two are the same network: compare on that
    class Plain(Residual):
        def forward(self, x):
            return self.head(self.fc2(self.act(self.fc1(x))))

        def backward(self, grad):
            return self.fc1.backward(self.act.backward(self.fc2.backward(self.head.backward(grad))))
    fn.seed(5)
    plain = Plain(8, 16, 3)
    seq = fn.Sequential(fn.Linear(8, 16), fn.ReLU(), fn.Linear(16, 8), fn.Linear(8, 3))
    seq.load_state_dict({k.replace("fc1", "0").replace("fc2", "2").replace("head", "3"): v
                         for k, v in plain.state_dict().items()})
    histories = []
    for model in (plain, seq):
        t = fn.Trainer(model, fn.CrossEntropyLoss(), fn.SGD(model.parameters(), lr=0.1))
        histories.append(t.fit(X, y, epochs=3, batch_size=32, shuffle=True, seed=0,
                               verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    t = fn.Trainer(custom, fn.CrossEntropyLoss(), fn.Adam(custom.parameters(), lr=1e-2))
    h = t.fit(X, y, epochs=5, batch_size=32, verbose=0, validation_data=(X, y)).history
    assert h["loss"][-1] < h["loss"][0] and h["accuracy"][-1] > 0.7
    assert t.predict(X).shape == (len(X), 3)
    twin = pickle.loads(pickle.dumps(custom))
    np.testing.assert_array_equal(twin.predict(X), custom.predict(X))


# --- 6. mistakes caught where they are made --------------------------------------------
def test_sequential_rejects_mismatched_sizes_at_construction():
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\) expects 9 input features, but "
                                         r"layer 0 \(Linear\) produces 8"):
        fn.Sequential(fn.Linear(4, 8), fn.ReLU(), fn.Linear(9, 3))
    with pytest.raises(ValueError, match="LayerNorm"):
        fn.Sequential(fn.Linear(4, 8), fn.LayerNorm(7))
    fn.Sequential(fn.Embedding(10, 4), fn.Flatten(), fn.Linear(12, 3))  # width unknown: fine


def test_trainer_rejects_another_models_optimizer_but_allows_a_subset():
    a, b = _mlp(), _mlp()
    with pytest.raises(ValueError, match="not the model's"):
        fn.Trainer(a, fn.CrossEntropyLoss(), fn.SGD(b.parameters(), lr=0.1))
    fn.Trainer(a, fn.CrossEntropyLoss(), fn.SGD(a[2].parameters(), lr=0.1))  # frozen first layer


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_cli_rejects_unknown_options():
    for cmd in (("demo", "--bogus"), ("info", "--bogus")):
        proc = _cli(*cmd)
        assert proc.returncode == 2 and "--bogus" in proc.stderr


def test_lm_checks_the_save_path_before_training(tmp_path):
    proc = _cli("lm", "--save", str(tmp_path / "nodir" / "x.npz"), "--epochs", "1")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "perplexity" not in proc.stdout  # it did not train first


def test_lm_says_worse_when_the_model_is_worse_than_the_baseline():
    from fastnn.apps.lm_cli import versus_baseline
    assert "lower" in versus_baseline(5.0, 20.0)
    worse = versus_baseline(20.0, 14.0)
    assert "HIGHER" in worse and "worse" in worse and "better" not in worse


# --- 7. memory at construction -------------------------------------------------------
def test_building_a_large_model_peaks_near_its_weights():
    code = """
    import resource, numpy as np, fastnn as fn
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = fn.Sequential(fn.Linear(4096, 4096), fn.ReLU(), fn.Linear(4096, 4096))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    weights = sum(p.data.nbytes for p in model.parameters())
    print((peak - base) * 1024 / weights)
    """
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    ratio = float(proc.stdout.strip())
    assert ratio <= 2.0, ratio  # weights + gradients at most (it was 3.4x)


def test_a_layer_larger_than_memory_is_a_memory_error():
    from fastnn import _memory
    avail = _memory.available_bytes()
    if avail is None:
        pytest.skip("no /proc/meminfo")
    side = int((avail / 4) ** 0.5) + 1000  # its weights alone exceed what is available
    with pytest.raises(MemoryError, match="GiB"):
        fn.Linear(side, side)


def test_init_is_the_same_stream_as_a_whole_array_draw():
    fn.seed(7)
    lin = fn.Linear(300, 500)
    rng = np.random.default_rng(7)
    bound = 1 / np.sqrt(300)
    np.testing.assert_array_equal(lin.weight.data,
                                  rng.uniform(-bound, bound, (500, 300)).astype(np.float32))
    np.testing.assert_array_equal(lin.bias.data, rng.uniform(-bound, bound, 500).astype(np.float32))


# --- 8. fit's logs ----------------------------------------------------------------------
def test_fit_verbose_2_prints_one_line_per_epoch_with_metrics(capsys):
    X, y = _data()
    model = _mlp()
    t = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters()))
    t.fit(X, y, epochs=2, batch_size=64, validation_data=(X, y), verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines):
        assert line.startswith(f"Epoch {i + 1}/2 - ")
        for key in ("s - loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "):
            assert key in line


def test_fit_verbose_auto_logs_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("FASTNN_PROGRESS", raising=False)
    X, y = _data()
    model = _mlp()
    t = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters()))
    t.fit(X, y, epochs=1, batch_size=64)
    assert capsys.readouterr().out.startswith("Epoch 1/1 - ")
    t.fit(X, y, epochs=1, batch_size=64, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_fit_verbose_1_shows_the_epoch_metrics_on_the_bar(capsys, monkeypatch):
    monkeypatch.setenv("FASTNN_PROGRESS", "1")
    X, y = _data()
    model = _mlp()
    t = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters()))
    t.fit(X, y, epochs=1, batch_size=64, validation_data=(X, y), verbose=1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "val_loss" in err


def test_fit_rejects_a_bad_verbose():
    X, y = _data()
    model = _mlp()
    t = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters()))
    with pytest.raises(ValueError, match="verbose"):
        t.fit(X, y, verbose=3)


# --- the layer path (issue 12 item 2) ------------------------------------------------------
def test_eval_mode_forward_is_the_compiled_program_and_backward_still_works():
    model, _, X, y = _trained(dropout=0.2)
    model.eval()
    out = model(X)
    np.testing.assert_array_equal(out, model.predict(X))
    assert model._compiled_input is not None
    loss = fn.CrossEntropyLoss()
    loss(out, y)
    model.zero_grad()
    model.backward(loss.backward())
    g_compiled = [p.grad.copy() for p in model.parameters()]
    model._forward(model._check_input(X))  # the layer path, then the same backward
    model.zero_grad()
    model.backward(loss.backward())
    for a, p in zip(g_compiled, model.parameters()):
        np.testing.assert_array_equal(a, p.grad)


PYPROJECT = os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml")


@pytest.mark.skipif(not os.path.exists(PYPROJECT), reason="no pyproject.toml next to the tests")
def test_version_is_the_packages_and_imports_no_cycle():
    """One version everywhere (pyproject, fastnn.__version__, info(), checkpoints),
    read from fastnn._version, which imports nothing of fastnn."""
    import ast
    import re
    import fastnn
    from fastnn import _version
    with open(PYPROJECT) as fh:
        declared = re.search(r'^version = "([^"]+)"', fh.read(), re.M).group(1)
    assert fastnn.__version__ == _version.__version__ == declared
    with open(_version.__file__) as fh:
        tree = ast.parse(fh.read())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
