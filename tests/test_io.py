"""fn.save / fn.load: round trips, rebuilds, atomic writes, rejected files
leaving everything untouched, and resumed training equal to uninterrupted."""
import os
import zipfile

import numpy as np
import pytest

import fastnn as fn
from fastnn.train import checkpoint as io


def make(seed=0, dtype="float32", dropout=0.0):
    fn.seed(seed)
    layers = [fn.Linear(6, 16), fn.ReLU()]
    if dropout:
        layers.append(fn.Dropout(dropout))
    layers += [fn.Linear(16, 8), fn.Tanh(), fn.Linear(8, 3)]
    model = fn.Sequential(*layers, dtype=dtype)
    opt = fn.Adam(model.parameters(), lr=1e-2)
    sched = fn.LinearWarmup(opt, 4, after=fn.CosineAnnealingLR(opt, T_max=20))
    return model, opt, sched


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)


def trained(steps=5, **kw):
    model, opt, sched = make(**kw)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt, sched)
    X, y = data()
    for i in range(steps):
        trainer.step(X[i % 4 * 12:(i % 4 + 1) * 12], y[i % 4 * 12:(i % 4 + 1) * 12])
    return model, opt, sched


def snapshot(model, opt=None, sched=None):
    """Everything load could touch, as bytes and plain values."""
    snap = {"model": {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in model.state_dict().items()}}
    if opt is not None:
        sd = opt.state_dict()
        snap["opt_state"] = {i: {k: (v.tobytes() if isinstance(v, np.ndarray) else v)
                                 for k, v in e.items()} for i, e in sd["state"].items()}
        snap["opt_groups"] = [{k: v for k, v in g.items() if k != "params"}
                              for g in opt.param_groups]
        snap["opt_steps"] = list(opt._steps)
    if sched is not None:
        snap["sched"] = sched.state_dict()
    return snap


@pytest.fixture
def ckpt(tmp_path):
    model, opt, sched = trained()
    path = tmp_path / "ck.npz"
    fn.save(path, model, opt, sched)
    return path, (model, opt, sched)


# ------------------------------------------------------------------ round trips

def test_round_trip_model_adam_scheduler(ckpt):
    path, (model, opt, sched) = ckpt
    model2, opt2, sched2 = make(seed=7)
    assert snapshot(model2, opt2, sched2) != snapshot(model, opt, sched)
    out = fn.load(path, model2, opt2, sched2)
    assert out is model2
    assert snapshot(model2, opt2, sched2) == snapshot(model, opt, sched)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)   # tuples survive JSON
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_file_layout_is_versioned_and_pickle_free(ckpt):
    path, (model, opt, sched) = ckpt
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        assert str(f["fastnn/format"]) == "fastnn-checkpoint"
        assert int(f["fastnn/version"]) == io.FORMAT_VERSION == 1
        assert f["architecture"].dtype.kind == "U" and f["architecture"].ndim == 0
        assert {f"model/{k}" for k in model.state_dict()} <= keys
        assert "optim/0/exp_avg" in keys and "optim/5/exp_avg_sq" in keys
        assert all(f[k].dtype != object for k in keys)
    assert "scheduler" in keys and "optimizer" in keys


def test_model_only_round_trip_and_extra_state_ignored(ckpt, tmp_path):
    path, (model, _, _) = ckpt
    model2, _, _ = make(seed=3)
    fn.load(path, model2)                     # the file's optimizer state is simply not used
    assert snapshot(model2) == snapshot(model)
    p = tmp_path / "only.npz"
    fn.save(p, model)
    model3, opt3, _ = make(seed=3)
    before = snapshot(model3, opt3)
    with pytest.raises(ValueError, match="no optimizer state"):
        fn.load(p, model3, opt3)
    assert snapshot(model3, opt3) == before


ALL_LAYERS = {
    "every_layer": (lambda: fn.Sequential(
        fn.Linear(5, 7, bias=False), fn.LeakyReLU(0.2), fn.Dropout(0.25),
        fn.LayerNorm(7, eps=1e-4), fn.GELU("tanh"), fn.Linear(7, 6),
        fn.LayerNorm(6, elementwise_affine=False), fn.GELU(), fn.Linear(6, 4),
        fn.Sigmoid(), fn.Linear(4, 3), fn.Softmax()),
        np.random.default_rng(0).normal(size=(4, 5))),
    "embedding_float64": (lambda: fn.Sequential(
        fn.Embedding(11, 4), fn.Flatten(), fn.Linear(12, 5), fn.Tanh(), fn.Linear(5, 2),
        dtype="float64"),
        np.arange(6).reshape(2, 3)),
    "bare_linear": (lambda: fn.Linear(3, 2, dtype="float64"),
                    np.random.default_rng(0).normal(size=(4, 3))),
}


@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
def test_load_without_model_rebuilds_it(name, tmp_path):
    build, x = ALL_LAYERS[name]
    fn.seed(1)
    model = build()
    path = tmp_path / "m.npz"
    fn.save(path, model)
    stream = fn._random.generator().bit_generator.state
    rebuilt = fn.load(path)
    assert fn._random.generator().bit_generator.state == stream   # rebuilding draws nothing
    assert type(rebuilt) is type(model) and repr(rebuilt) == repr(model)
    assert rebuilt.dtype == model.dtype
    assert snapshot(rebuilt) == snapshot(model)
    model.eval()
    rebuilt.eval()
    np.testing.assert_array_equal(rebuilt(x), model(x))


def test_sgd_and_rmsprop_state_round_trip(tmp_path):
    X, y = data()
    for make_opt in (lambda p: fn.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                     lambda p: fn.RMSprop(p, lr=1e-2, momentum=0.5, centered=True),
                     lambda p: fn.SGD(p, lr=0.1)):
        model, _, _ = make()
        opt = make_opt(model.parameters())
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
        for _ in range(3):
            trainer.step(X, y)
        fn.save(tmp_path / "o.npz", model, opt)
        model2, _, _ = make(seed=5)
        opt2 = make_opt(model2.parameters())
        fn.load(tmp_path / "o.npz", model2, opt2)
        assert snapshot(model2, opt2) == snapshot(model, opt)


def test_param_groups_and_unstepped_optimizer(tmp_path):
    def build(seed):
        model, _, _ = make(seed=seed)
        p = model.parameters()
        opt = fn.AdamW([{"params": p[:2], "lr": 1e-3}, {"params": p[2:], "weight_decay": 0.1}],
                       lr=5e-3)
        return model, opt
    model, opt = build(0)
    fn.save(tmp_path / "fresh.npz", model, opt)           # never stepped: no state yet
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
    X, y = data()
    trainer.step(X, y)
    trainer.step(X, y)
    fn.save(tmp_path / "g.npz", model, opt)
    model2, opt2 = build(4)
    fn.load(tmp_path / "g.npz", model2, opt2)
    assert snapshot(model2, opt2) == snapshot(model, opt)
    assert [g["lr"] for g in opt2.param_groups] == [1e-3, 5e-3]
    fn.load(tmp_path / "fresh.npz", model2, opt2)         # back to the unstepped state
    assert opt2.state_dict()["state"] == {} and opt2._steps == [0, 0]
    model3, _ = build(0)
    single = fn.AdamW(model3.parameters(), lr=5e-3)
    with pytest.raises(ValueError, match="param groups|parameters do not match"):
        fn.load(tmp_path / "g.npz", model3, single)


def test_save_path_used_as_given_and_overwrites(tmp_path, ckpt):
    _, (model, opt, _) = ckpt
    p = tmp_path / "weights.bin"
    fn.save(str(p), model)
    fn.save(p, model, opt)                   # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["ck.npz", "weights.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------ atomic writes

def test_no_temp_files_left_on_success(tmp_path):
    model, opt, sched = trained()
    for i in range(3):
        fn.save(tmp_path / "a.npz", model, opt, sched)
    assert os.listdir(tmp_path) == ["a.npz"]


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    model, opt, sched = trained()
    path = tmp_path / "a.npz"
    fn.save(path, model)
    old = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(io.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        fn.save(path, model, opt, sched)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["a.npz"] and path.read_bytes() == old


def test_save_rejects_bad_arguments(tmp_path):
    model, opt, sched = make()
    other, other_opt, _ = make(seed=1)
    with pytest.raises(TypeError, match="model"):
        fn.save(tmp_path / "x.npz", "not a model")
    with pytest.raises(TypeError, match="optimizer"):
        fn.save(tmp_path / "x.npz", model, optimizer=object())
    with pytest.raises(ValueError, match="scheduler"):
        fn.save(tmp_path / "x.npz", model, scheduler=sched)
    with pytest.raises(ValueError, match="not one of the model's"):
        fn.save(tmp_path / "x.npz", model, other_opt)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ rejected files

def _victims():
    model, opt, sched = make(seed=11)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt, sched)
    X, y = data(seed=3)
    trainer.step(X, y)
    return model, opt, sched


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _bad_files(path, tmp):
    raw = path.read_bytes()
    flipped = bytearray(raw)
    mid = len(raw) // 2
    flipped[mid:mid + 16] = bytes(b ^ 0xFF for b in flipped[mid:mid + 16])
    files = {
        "truncated": raw[:len(raw) // 2],
        "truncated_tail": raw[:-10],
        "corrupt": bytes(flipped),
        "random": np.random.default_rng(0).bytes(4096),
        "text": b"epoch,loss\n1,0.5\n",
        "empty": b"",
        "zip_no_npy": b"",
    }
    out = {}
    for name, content in files.items():
        p = tmp / f"{name}.npz"
        p.write_bytes(content)
        out[name] = p
    with zipfile.ZipFile(out["zip_no_npy"], "w") as z:
        z.writestr("hello.txt", "not numpy")
    out["foreign_npz"] = tmp / "foreign.npz"
    np.savez(out["foreign_npz"], x=np.arange(3), y=np.ones((2, 2)))
    out["npy"] = tmp / "array.npy"
    np.save(out["npy"], np.arange(4))
    edits = {
        "newer_version": lambda a: a.update({"fastnn/version": np.array(99)}),
        "wrong_magic": lambda a: a.update({"fastnn/format": np.array("something-else")}),
        "bad_json": lambda a: a.update({"architecture": np.array("{not json")}),
        "missing_weight": lambda a: a.pop("model/2.bias"),
        "extra_weight": lambda a: a.update({"model/9.weight": np.zeros(3, np.float32)}),
        "weight_shape": lambda a: a.update({"model/2.weight": np.zeros((8, 15), np.float32)}),
        "weight_dtype": lambda a: a.update({"model/2.weight": a["model/2.weight"].astype(np.float64)}),
        "weight_nan": lambda a: a["model/4.bias"].__setitem__(0, np.nan),
        "optim_shape": lambda a: a.update({"optim/1/exp_avg": np.zeros(3, np.float32)}),
        "optim_missing": lambda a: a.pop("optim/3/exp_avg_sq"),
        "optim_type": lambda a: a.update({"optimizer": np.array(
            str(a["optimizer"]).replace('"Adam"', '"SGD"'))}),
        "optim_negative_lr": lambda a: a.update({"optimizer": np.array(
            str(a["optimizer"]).replace('"lr": ', '"lr": -'))}),
        "optim_unknown_state": lambda a: a.update(
            {"optimizer": np.array(str(a["optimizer"]).replace('"exp_avg_sq"', '"bogus"')),
             **{k.replace("exp_avg_sq", "bogus"): a.pop(k) for k in list(a) if "exp_avg_sq" in k}}),
        "optim_bad_betas": lambda a: a.update({"optimizer": np.array(
            str(a["optimizer"]).replace('"betas": [', '"betas": [-', 1))}),
        "sched_type": lambda a: a.update({"scheduler": np.array(
            str(a["scheduler"]).replace('"type": "LinearWarmup"', '"type": "StepLR"'))}),
        "sched_state": lambda a: a.update({"scheduler": np.array(
            str(a["scheduler"]).replace('"last_epoch": ', '"last_epoch": -', 1))}),
        "no_scheduler": lambda a: a.pop("scheduler"),
        # an object array can only be read with pickle, which load refuses
        "object_array": lambda a: a.update({"model/0.bias": np.array([{"a": 1}] * 16, object)}),
    }
    for name, change in edits.items():
        out[name] = tmp / f"{name}.npz"
        _rewrite(path, out[name], change)
    return out


# files whose weights section itself is unusable (the others fail on optimizer/scheduler)
MODEL_LEVEL = {"truncated", "truncated_tail", "corrupt", "random", "text", "empty",
               "zip_no_npy", "foreign_npz", "npy", "newer_version", "wrong_magic", "bad_json",
               "missing_weight", "extra_weight", "weight_shape", "weight_dtype", "weight_nan",
               "object_array"}


def test_bad_files_raise_valueerror_and_change_nothing(ckpt, tmp_path):
    path, _ = ckpt
    bad = tmp_path / "bad"
    bad.mkdir()
    files = _bad_files(path, bad)
    assert len(files) >= 25
    model, opt, sched = _victims()
    before = snapshot(model, opt, sched)
    rng_before = fn._random.generator().bit_generator.state
    for name, p in files.items():
        with pytest.raises(ValueError) as err:
            fn.load(p, model, opt, sched, restore_rng=True)
        assert str(p) in str(err.value), name      # the message names the file
        assert snapshot(model, opt, sched) == before, name
        assert fn._random.generator().bit_generator.state == rng_before, name
        if name in MODEL_LEVEL:
            with pytest.raises(ValueError):
                fn.load(p, model)
            with pytest.raises(ValueError):
                fn.load(p)
            assert snapshot(model, opt, sched) == before, name
    # and the good file still loads into them afterwards
    fn.load(path, model, opt, sched)
    assert snapshot(model, opt, sched) != before


@pytest.mark.parametrize("name, message", [
    ("newer_version", "version 99"), ("wrong_magic", "not a fastnn checkpoint"),
    ("foreign_npz", "not a fastnn checkpoint"), ("truncated", "not a readable"),
    ("text", "not a .npz archive"), ("random", "not a .npz archive"), ("npy", ".npy"),
    ("weight_shape", "shape"), ("weight_dtype", "dtype"), ("weight_nan", "NaN"),
    ("missing_weight", "missing"), ("optim_type", "SGD"), ("sched_type", "StepLR"),
    ("corrupt", "not a readable"), ("optim_negative_lr", "optimizer state rejected.*lr"),
    ("optim_unknown_state", "unexpected optimizer state 'bogus'"), ("optim_bad_betas", "beta"),
])
def test_bad_file_messages(ckpt, tmp_path, name, message):
    path, _ = ckpt
    files = _bad_files(path, tmp_path)
    model, opt, sched = _victims()
    with pytest.raises(ValueError, match=message):
        fn.load(files[name], model, opt, sched)


def test_mismatched_architecture_is_described(ckpt, tmp_path):
    path, _ = ckpt
    fn.seed(0)
    cases = [
        (fn.Sequential(fn.Linear(6, 16), fn.ReLU(), fn.Linear(16, 8), fn.Tanh(), fn.Linear(8, 4)),
         r"model\[4\].*out_features=3.*out_features=4"),
        (fn.Sequential(fn.Linear(6, 16), fn.GELU(), fn.Linear(16, 8), fn.Tanh(), fn.Linear(8, 3)),
         r"model\[1\].*ReLU.*GELU"),
        (fn.Sequential(fn.Linear(6, 16), fn.ReLU(), fn.Linear(16, 8), fn.Tanh()),
         r"5 layers, the model has 4"),
        (fn.Sequential(fn.Linear(6, 16), fn.ReLU(), fn.Linear(16, 8), fn.Tanh(), fn.Linear(8, 3),
                       dtype="float64"), "float32 weights, the model is float64"),
    ]
    for model, pattern in cases:
        before = snapshot(model)
        with pytest.raises(ValueError, match=pattern):
            fn.load(path, model)
        assert snapshot(model) == before


def test_mismatched_optimizer_and_scheduler(ckpt):
    path, _ = ckpt
    model, _, _ = make(seed=2)
    sgd = fn.SGD(model.parameters(), lr=0.1)
    before = snapshot(model, sgd)
    with pytest.raises(ValueError, match="holds Adam state, but the optimizer is SGD"):
        fn.load(path, model, sgd)
    assert snapshot(model, sgd) == before
    model, opt, _ = make(seed=2)
    step = fn.StepLR(opt, step_size=3)
    before = snapshot(model, opt, step)
    with pytest.raises(ValueError, match="LinearWarmup.*StepLR"):
        fn.load(path, model, opt, step)
    assert snapshot(model, opt, step) == before
    # an optimizer over a subset/other ordering of the parameters
    params = model.parameters()
    partial = fn.Adam(params[:2], lr=1e-2)
    with pytest.raises(ValueError, match="parameters do not match"):
        fn.load(path, model, partial)


def test_missing_file_stays_filenotfound(tmp_path):
    model, opt, sched = make()
    with pytest.raises(FileNotFoundError):
        fn.load(tmp_path / "nope.npz", model, opt, sched)
    with pytest.raises(FileNotFoundError):
        fn.load(tmp_path / "nope.npz")


def test_load_argument_checks(ckpt):
    path, _ = ckpt
    model, opt, sched = make()
    with pytest.raises(ValueError, match="model"):
        fn.load(path, optimizer=opt)
    with pytest.raises(TypeError, match="model"):
        fn.load(path, "model")
    with pytest.raises(ValueError, match="scheduler"):
        fn.load(path, model, scheduler=sched)


def test_failure_during_writes_is_rolled_back(ckpt, monkeypatch):
    path, _ = ckpt
    model, opt, sched = _victims()
    before = snapshot(model, opt, sched)

    def boom(state_dict):
        raise ValueError("simulated failure after the optimizer was written")
    monkeypatch.setattr(sched, "load_state_dict", boom)
    with pytest.raises(ValueError, match="simulated"):
        fn.load(path, model, opt, sched)
    monkeypatch.undo()
    assert snapshot(model, opt, sched) == before


def test_custom_module_saves_but_is_not_rebuilt(tmp_path):
    class Scaled(fn.Linear):
        pass

    fn.seed(0)
    model = fn.Sequential(Scaled(3, 2), fn.ReLU())
    fn.save(tmp_path / "c.npz", model)
    fn.seed(1)
    twin = fn.Sequential(Scaled(3, 2), fn.ReLU())
    fn.load(tmp_path / "c.npz", twin)
    assert snapshot(twin) == snapshot(model)
    with pytest.raises(ValueError, match="custom module"):
        fn.load(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="architecture mismatch"):
        fn.load(tmp_path / "c.npz", fn.Sequential(fn.Linear(3, 2), fn.ReLU()))


# ------------------------------------------------------------------ resume

def _batches(n_steps, seed=0):
    X, y = data(96, seed)
    return [(X[i % 6 * 16:(i % 6 + 1) * 16], y[i % 6 * 16:(i % 6 + 1) * 16])
            for i in range(n_steps)]


@pytest.mark.parametrize("threads", [1, 2])
def test_resume_equals_uninterrupted_steps(tmp_path, threads):
    old = fn.get_num_threads()
    fn.set_num_threads(threads)
    try:
        N, M = 7, 9
        batches = _batches(N + M)
        model, opt, sched = make(dropout=0.3)
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt, sched, clip_grad_norm=1.0)
        for xb, yb in batches[:N]:
            trainer.step(xb, yb)
        fn.save(tmp_path / "mid.npz", model, opt, sched)
        for xb, yb in batches[N:]:
            trainer.step(xb, yb)

        fn.seed(123)                           # a different stream, on purpose
        model2, opt2, sched2 = make(seed=99, dropout=0.3)
        fn.load(tmp_path / "mid.npz", model2, opt2, sched2, restore_rng=True)
        resumed = fn.Trainer(model2, fn.CrossEntropyLoss(), opt2, sched2, clip_grad_norm=1.0)
        for xb, yb in batches[N:]:
            resumed.step(xb, yb)
        assert snapshot(model2, opt2, sched2) == snapshot(model, opt, sched)
    finally:
        fn.set_num_threads(old)


def test_resume_with_fit_equals_uninterrupted(tmp_path):
    X, y = data(64)
    model, opt, sched = make(dropout=0.2)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt, sched)
    trainer.fit(X, y, epochs=2, batch_size=16, progress=False)      # shuffles with fn's stream
    fn.save(tmp_path / "e2.npz", model, opt, sched)
    trainer.fit(X, y, epochs=2, batch_size=16, progress=False)

    model2, opt2, sched2 = make(seed=42, dropout=0.2)
    fn.load(tmp_path / "e2.npz", model2, opt2, sched2, restore_rng=True)
    fn.Trainer(model2, fn.CrossEntropyLoss(), opt2, sched2).fit(
        X, y, epochs=2, batch_size=16, progress=False)
    assert snapshot(model2, opt2, sched2) == snapshot(model, opt, sched)


def test_rng_restored_only_on_request(ckpt):
    path, _ = ckpt
    model, opt, sched = make()
    fn.seed(5)
    state = fn._random.generator().bit_generator.state
    fn.load(path, model, opt, sched)
    assert fn._random.generator().bit_generator.state == state
    fn.load(path, model, opt, sched, restore_rng=True)
    assert fn._random.generator().bit_generator.state != state
