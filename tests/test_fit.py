"""Trainer.fit: History, validation, callbacks (order, EarlyStopping,
ModelCheckpoint with real files), seeded shuffling, progress output and
input validation."""
import os

import numpy as np
import pytest

import fastnn as fn


def blobs(n=120, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 3
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


def classifier(seed=0, d=5, classes=3, dropout=0.0, lr=1e-2):
    fn.seed(seed)
    layers = [fn.Linear(d, 16), fn.ReLU()] + ([fn.Dropout(dropout)] if dropout else [])
    model = fn.Sequential(*layers, fn.Linear(16, classes))
    return fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=lr))


def weights(trainer):
    return {k: v.tobytes() for k, v in trainer.model.state_dict().items()}


class Recorder(fn.Callback):
    def __init__(self, name="rec", log=None):
        self.name, self.log = name, log if log is not None else []
        self.snapshots = []

    def on_train_begin(self, trainer=None):
        self.log.append((self.name, "train_begin"))

    def on_epoch_begin(self, epoch, logs=None):
        self.log.append((self.name, "epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.log.append((self.name, "batch_end", batch))

    def on_epoch_end(self, epoch, logs=None):
        self.log.append((self.name, "epoch_end", epoch, tuple(sorted(logs))))
        self.snapshots.append(self.trainer.model.state_dict())

    def on_train_end(self, logs=None):
        self.log.append((self.name, "train_end"))


# ------------------------------------------------------------------ History

def test_history_keys_classification():
    X, y = blobs()
    t = classifier()
    h = t.fit(X[:100], y[:100], epochs=3, batch_size=16, validation_data=(X[100:], y[100:]),
              progress=False)
    assert isinstance(h, fn.History)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values()) and h.epoch == [0, 1, 2]
    assert all(isinstance(v, float) for vals in h.history.values() for v in vals)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert all(0.0 <= a <= 1.0 for a in h.history["val_accuracy"])
    # the last val entries are exactly what evaluate says about the final weights
    ev = t.evaluate(X[100:], y[100:])
    assert set(ev) == {"loss", "accuracy"}
    assert h.history["val_loss"][-1] == pytest.approx(ev["loss"], rel=1e-6)
    assert h.history["val_accuracy"][-1] == ev["accuracy"]


def test_history_keys_regression_and_bce():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    Y = X @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    fn.seed(0)
    model = fn.Sequential(fn.Linear(3, 8), fn.Tanh(), fn.Linear(8, 1))
    t = fn.Trainer(model, fn.MSELoss(), fn.Adam(model.parameters(), lr=1e-2))
    h = t.fit(X, Y, epochs=2, batch_size=16, validation_split=0.25, progress=False)
    assert set(h.history) == {"loss", "val_loss"}
    assert set(t.evaluate(X, Y)) == {"loss"}
    model = fn.Sequential(fn.Linear(3, 1))
    t = fn.Trainer(model, fn.BCEWithLogitsLoss(), fn.SGD(model.parameters(), lr=0.1))
    h = t.fit(X, (Y > 0).astype(np.float32), epochs=2, batch_size=16, progress=False)
    assert set(h.history) == {"loss", "accuracy"}


def test_validation_split_takes_the_last_samples():
    X, y = blobs(100)
    t = classifier()
    h = t.fit(X, y, epochs=2, batch_size=10, validation_split=0.2, progress=False, seed=0)
    ev = t.evaluate(X[80:], y[80:])
    assert h.history["val_loss"][-1] == pytest.approx(ev["loss"], rel=1e-6)
    # the training part is the first 80: the same run on X[:80] with validation_data matches
    t2 = classifier()
    h2 = t2.fit(X[:80], y[:80], epochs=2, batch_size=10, validation_data=(X[80:], y[80:]),
                progress=False, seed=0)
    assert weights(t2) == weights(t) and h2.history == h.history


@pytest.mark.parametrize("split", [0.0, 1.0, -0.1, 1.5])
def test_validation_split_range(split):
    X, y = blobs(20)
    with pytest.raises(ValueError, match="validation_split"):
        classifier().fit(X, y, validation_split=split, progress=False)


def test_validation_split_and_data_exclusive():
    X, y = blobs(20)
    with pytest.raises(ValueError, match="validation"):
        classifier().fit(X, y, validation_split=0.2, validation_data=(X, y), progress=False)


# ------------------------------------------------------------------ callbacks

def test_callback_order():
    X, y = blobs(40)
    log = []
    a, b = Recorder("a", log), Recorder("b", log)
    classifier().fit(X, y, epochs=2, batch_size=16, callbacks=[a, b],
                     validation_data=(X, y), progress=False)
    expected = [("a", "train_begin"), ("b", "train_begin")]
    keys = ("accuracy", "loss", "val_accuracy", "val_loss")
    for epoch in range(2):
        expected += [("a", "epoch_begin", epoch), ("b", "epoch_begin", epoch)]
        for batch in range(3):                      # 40 samples in batches of 16
            expected += [("a", "batch_end", batch), ("b", "batch_end", batch)]
        expected += [("a", "epoch_end", epoch, keys), ("b", "epoch_end", epoch, keys)]
    expected += [("a", "train_end"), ("b", "train_end")]
    assert log == expected
    assert a.trainer is not None


def test_early_stopping_restores_best_weights():
    X, y = blobs(90)
    flipped = (y + 1) % 3                # validation labels the model is trained away from
    t = classifier(lr=2e-2)
    rec = Recorder()
    stop = fn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = t.fit(X, y, epochs=30, batch_size=16, validation_data=(X, flipped),
              callbacks=[rec, stop], progress=False, seed=0)
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) < 30 and len(val) == best + 3        # patience 2 after the best epoch
    assert stop.best_epoch == best and stop.stopped_epoch == len(val) - 1
    restored = t.model.state_dict()
    for k, v in rec.snapshots[best].items():
        np.testing.assert_array_equal(restored[k], v)
    assert any(not np.array_equal(rec.snapshots[-1][k], restored[k]) for k in restored)


def test_early_stopping_without_restore_keeps_last_weights():
    X, y = blobs(90)
    t = classifier(lr=2e-2)
    rec = Recorder()
    t.fit(X, y, epochs=30, batch_size=16, validation_data=(X, (y + 1) % 3),
          callbacks=[rec, fn.EarlyStopping(patience=1)], progress=False, seed=0)
    for k, v in t.model.state_dict().items():
        np.testing.assert_array_equal(v, rec.snapshots[-1][k])


def test_model_checkpoint_writes_loadable_files(tmp_path):
    X, y = blobs(60)
    t = classifier()
    ck = fn.ModelCheckpoint(str(tmp_path / "ck" / "e{epoch:02d}.npz"), save_best_only=False)
    rec = Recorder()
    t.fit(X, y, epochs=3, batch_size=16, validation_data=(X, y), callbacks=[rec, ck],
          progress=False)
    assert sorted(os.listdir(tmp_path / "ck")) == ["e01.npz", "e02.npz", "e03.npz"]
    for epoch, name in enumerate(["e01.npz", "e02.npz", "e03.npz"]):
        loaded = fn.load(tmp_path / "ck" / name)
        for k, v in rec.snapshots[epoch].items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v)
    fresh = classifier(seed=9)
    fn.load(ck.last_path, fresh.model, fresh.optimizer)
    assert weights(fresh) == weights(t)
    assert fresh.optimizer.state_dict()["state"][0]["step"] == t.optimizer.state_dict()["state"][0]["step"]


def test_model_checkpoint_best_only_with_scheduler(tmp_path):
    X, y = blobs(60)
    fn.seed(0)
    model = fn.Sequential(fn.Linear(5, 16), fn.ReLU(), fn.Linear(16, 3))
    opt = fn.Adam(model.parameters(), lr=1e-2)
    sched = fn.StepLR(opt, step_size=5, gamma=0.5)
    t = fn.Trainer(model, fn.CrossEntropyLoss(), opt, sched)
    path = tmp_path / "best.npz"
    ck = fn.ModelCheckpoint(str(path), monitor="val_accuracy", save_best_only=True)
    t.fit(X, y, epochs=3, batch_size=16, validation_data=(X, y), callbacks=[ck], progress=False)
    assert os.listdir(tmp_path) == ["best.npz"]
    fn.seed(1)
    m2 = fn.Sequential(fn.Linear(5, 16), fn.ReLU(), fn.Linear(16, 3))
    o2 = fn.Adam(m2.parameters(), lr=1e-2)
    s2 = fn.StepLR(o2, step_size=5, gamma=0.5)
    fn.load(path, m2, o2, s2)                  # the checkpoint carries the scheduler too
    assert s2.last_epoch > 0


# ------------------------------------------------------------------ shuffling

def test_shuffle_with_seed_is_reproducible():
    X, y = blobs(64)
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        t = classifier(dropout=0.2)
        t.fit(X, y, epochs=2, batch_size=8, seed=seed, progress=False)
        runs[key] = weights(t)
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


def test_no_shuffle_ignores_order_seed():
    X, y = blobs(64)
    t1, t2 = classifier(), classifier()
    t1.fit(X, y, epochs=2, batch_size=8, shuffle=False, seed=1, progress=False)
    t2.fit(X, y, epochs=2, batch_size=8, shuffle=False, seed=2, progress=False)
    assert weights(t1) == weights(t2)
    # and without shuffling fit is exactly a loop of steps over consecutive batches
    t3 = classifier()
    for _ in range(2):
        for i in range(0, 64, 8):
            t3.step(X[i:i + 8], y[i:i + 8])
    assert weights(t3) == weights(t1)


def test_fn_seed_makes_unseeded_fit_reproducible():
    X, y = blobs(64)
    a = classifier(seed=5)
    a.fit(X, y, epochs=2, batch_size=8, progress=False)
    b = classifier(seed=5)
    b.fit(X, y, epochs=2, batch_size=8, progress=False)
    assert weights(a) == weights(b)


# ------------------------------------------------------------------ progress

def test_progress_false_prints_nothing(capsys, monkeypatch):
    monkeypatch.setenv("FASTNN_PROGRESS", "1")     # even when bars are forced on
    X, y = blobs(40)
    classifier().fit(X, y, epochs=2, batch_size=8, validation_data=(X, y), progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_progress_true_draws_a_bar_when_enabled(capsys, monkeypatch):
    monkeypatch.setenv("FASTNN_PROGRESS", "1")
    X, y = blobs(40)
    classifier().fit(X, y, epochs=2, batch_size=8, progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "epoch 2/2" in out.err


# ------------------------------------------------------------------ bad inputs

def _rejects(t, error, match, X, y, **kwargs):
    before = weights(t)
    opt_before = t.optimizer.state_dict()
    with pytest.raises(error, match=match):
        t.fit(X, y, progress=False, **kwargs)
    assert weights(t) == before                          # a rejected call changes nothing
    assert t.optimizer.state_dict()["state"].keys() == opt_before["state"].keys()


def test_mismatched_lengths():
    X, y = blobs(30)
    _rejects(classifier(), ValueError, "same number of samples", X, y[:29])
    _rejects(classifier(), ValueError, "same number of samples", X[:29], y)


@pytest.mark.parametrize("labels, error, match", [
    (lambda y: y.astype(np.float32), ValueError, "target"),            # float labels for CE
    (lambda y: y.astype(str), TypeError, "target"),                    # strings
    (lambda y: np.where(y == 0, 3, y), ValueError, r"target must be in \[0, 3\)"),
    (lambda y: np.where(y == 0, -1, y), ValueError, "target"),
    (lambda y: y.reshape(-1, 1), ValueError, "target"),
])
def test_wrong_label_types(labels, error, match):
    X, y = blobs(30)
    _rejects(classifier(), error, match, X, labels(y))


def test_int32_labels_are_fine():
    X, y = blobs(30)
    h = classifier().fit(X, y.astype(np.int32), epochs=1, progress=False)
    assert len(h.history["loss"]) == 1


# a bad value is a ValueError, a value of the wrong type (2.5, True) a TypeError
@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                             (True, TypeError)])
def test_bad_batch_size(batch_size, exc):
    X, y = blobs(30)
    _rejects(classifier(), exc, "batch_size", X, y, batch_size=batch_size)


@pytest.mark.parametrize("epochs, exc", [(0, ValueError), (-3, ValueError), (1.5, TypeError)])
def test_bad_epochs(epochs, exc):
    X, y = blobs(30)
    _rejects(classifier(), exc, "epochs", X, y, epochs=epochs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_X(bad):
    X, y = blobs(30)
    X[7, 2] = bad
    _rejects(classifier(), ValueError, r"(?i)\bx\b.*(nan|inf)", X, y)


@pytest.mark.parametrize("which", ["nan_x", "label_out_of_range"])
def test_bad_validation_data_is_rejected_before_training(which):
    X, y = blobs(30)
    Xv, yv = X.copy(), y.copy()
    if which == "nan_x":
        Xv[0, 0] = np.nan
    else:
        yv[0] = 7
    _rejects(classifier(), ValueError, r"(?i)nan|target", X, y, validation_data=(Xv, yv))


def test_regression_targets_are_not_broadcast():
    X, y = blobs(30)
    model = fn.Sequential(fn.Linear(5, 1))
    t = fn.Trainer(model, fn.MSELoss(), fn.SGD(model.parameters(), lr=0.1))
    _rejects(t, ValueError, "target must have the output's shape", X,
             y.astype(np.float32))                        # (n,) against (n, 1): no broadcast


def test_wrong_feature_count_and_empty():
    X, y = blobs(30)
    _rejects(classifier(), ValueError, r"x must have shape \(batch, 5\)", X[:, :4], y)
    _rejects(classifier(), ValueError, "empty", X[:0], y[:0])
    with pytest.raises(TypeError, match="x must hold real numbers"):
        classifier().fit(X.astype(str), y, progress=False)


def test_bad_validation_data_shape():
    X, y = blobs(30)
    _rejects(classifier(), ValueError, "validation_data", X, y, validation_data=(X,))
