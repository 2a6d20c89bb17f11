"""Callbacks (EarlyStopping, History, ModelCheckpoint) and the progress reporter."""

import io as _stdio
import sys
import types
import warnings

import numpy as np
import pytest

from fastnn.train import progress
from fastnn.train.callbacks import Callback, CallbackList, EarlyStopping, History, ModelCheckpoint


class FakeModel:
    """state_dict hands out its live arrays, so a callback that does not copy them sees
    them change underneath it."""

    def __init__(self):
        self.w = np.zeros(3)
        self.loaded = []

    def state_dict(self):
        return {"0.weight": self.w}

    def load_state_dict(self, d):
        self.loaded.append(d)
        self.w[...] = d["0.weight"]


class FakeTrainer:
    def __init__(self):
        self.model = FakeModel()
        self.optimizer = object()
        self.stop_training = False


def fit(callbacks, values, key="val_loss", trainer=None):
    """Minimal trainer loop: epoch e sets the weights to e, then reports values[e]."""
    trainer = trainer or FakeTrainer()
    cbs = CallbackList(callbacks)
    cbs.on_train_begin(trainer)
    ran = 0
    for epoch, v in enumerate(values):
        cbs.on_epoch_begin(epoch, {})
        trainer.model.w[...] = epoch
        cbs.on_batch_end(0, {"loss": 1.0})
        cbs.on_epoch_end(epoch, {"loss": 1.0, key: v})
        ran += 1
        if trainer.stop_training:
            break
    cbs.on_train_end({})
    return trainer, ran


# ---------------------------------------------------------------- EarlyStopping

def test_early_stopping_patience():
    es = EarlyStopping(patience=2)
    trainer, ran = fit([es], [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    assert ran == 4 and trainer.stop_training
    assert es.stopped_epoch == 3 and es.best == 0.8 and es.best_epoch == 1
    assert trainer.model.loaded == []           # restore_best_weights is off


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    es = EarlyStopping()
    _, ran = fit([es], [1.0, 0.9, 0.9, 0.1])
    assert ran == 3 and es.stopped_epoch == 2   # equal is not an improvement


def test_early_stopping_min_delta():
    # improvements smaller than min_delta do not reset patience
    es = EarlyStopping(min_delta=0.1, patience=1)
    _, ran = fit([es], [1.0, 0.95, 0.92, 0.5])
    assert ran == 2 and es.best == 1.0
    es = EarlyStopping(min_delta=-0.1, patience=1)   # sign ignored, like Keras
    assert es.min_delta == 0.1


def test_early_stopping_mode_auto_and_max():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    assert es.maximize
    _, ran = fit([es], [0.5, 0.6, 0.7, 0.65, 0.6, 0.9], key="val_accuracy")
    assert ran == 4 and es.best == 0.7 and es.stopped_epoch == 3
    assert not EarlyStopping(monitor="loss").maximize
    assert EarlyStopping(monitor="loss", mode="max").maximize
    assert not EarlyStopping(monitor="val_acc", mode="min").maximize


def test_restore_best_weights_copies_and_restores_when_stopping():
    es = EarlyStopping(patience=2, restore_best_weights=True)
    trainer, ran = fit([es], [1.0, 0.5, 0.7, 0.8, 0.1])
    assert ran == 4
    # best epoch 1: its weights were copied (later epochs overwrote w in place)
    assert len(trainer.model.loaded) == 1
    np.testing.assert_array_equal(trainer.model.w, np.full(3, 1.0))


def test_restore_best_weights_at_train_end_without_stopping():
    es = EarlyStopping(patience=10, restore_best_weights=True)
    trainer, ran = fit([es], [1.0, 0.2, 0.7, 0.8])
    assert ran == 4 and not trainer.stop_training
    np.testing.assert_array_equal(trainer.model.w, np.full(3, 1.0))


def test_restore_without_any_improvement_uses_first_epoch():
    es = EarlyStopping(patience=1, restore_best_weights=True, baseline=0.1)
    trainer, ran = fit([es], [1.0, 2.0, 3.0])
    assert ran == 2                             # never beat the baseline
    np.testing.assert_array_equal(trainer.model.w, np.zeros(3))


def test_early_stopping_missing_key_warns_once_and_does_nothing():
    es = EarlyStopping(monitor="val_loss", patience=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, ran = fit([es], [1.0, 2.0, 3.0], key="other")
    assert ran == 3 and not trainer.stop_training
    assert len([w for w in caught if "val_loss" in str(w.message)]) == 1


def test_early_stopping_is_reset_by_a_new_fit():
    es = EarlyStopping(patience=0)
    fit([es], [1.0, 2.0])
    _, ran = fit([es], [5.0, 4.0, 3.0])
    assert ran == 3 and es.best == 3.0


@pytest.mark.parametrize("kwargs", [dict(patience=-1), dict(patience=1.5), dict(mode="up"),
                                    dict(min_delta=float("nan"))])
def test_early_stopping_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EarlyStopping(**kwargs)


def test_callbacklist_rejects_classes():
    with pytest.raises(TypeError, match="instance"):
        CallbackList([EarlyStopping])


def test_base_callback_hooks_are_noops():
    cb = Callback()
    trainer = FakeTrainer()
    cb.set_trainer(trainer)
    assert cb.trainer is trainer
    cb.on_train_begin(trainer)
    cb.on_epoch_begin(0, {})
    cb.on_batch_end(0, {})
    cb.on_epoch_end(0, {})
    cb.on_train_end({})


# ---------------------------------------------------------------- History

def test_history_records_per_epoch_lists():
    h = History()
    cbs = CallbackList([h])
    cbs.on_train_begin(FakeTrainer())
    for e in range(3):
        cbs.on_epoch_end(e, {"loss": np.float32(1.0 / (e + 1)), "val_loss": 2.0 - e,
                             "accuracy": 0.5, "val_accuracy": np.float64(0.25 * e)})
    assert h.epoch == [0, 1, 2]
    assert h.history["loss"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert h.history["val_loss"] == [2.0, 1.0, 0.0]
    assert h.history["val_accuracy"] == [0.0, 0.25, 0.5]
    assert all(type(v) is float for v in h.history["loss"])
    cbs.on_train_begin(FakeTrainer())           # a new fit starts a new record
    assert h.history == {} and h.epoch == []


def test_history_plot(tmp_path, monkeypatch):
    h = History()
    h.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.5})
    h.on_epoch_end(1, {"loss": 0.5, "val_loss": 1.0})
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            h.plot(tmp_path / "h.png")
    else:
        h.plot(tmp_path / "h.png")
        assert (tmp_path / "h.png").stat().st_size > 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # simulate "not installed"
    with pytest.raises(ImportError, match="pip install matplotlib"):
        h.plot()


# ---------------------------------------------------------------- ModelCheckpoint

@pytest.fixture
def saves(monkeypatch):
    calls = []
    fake = types.ModuleType("fastnn.train.checkpoint")
    fake.save = lambda path, model, optimizer=None, scheduler=None: calls.append(
        (path, model, optimizer, scheduler))
    import fastnn.train
    monkeypatch.setattr(fastnn.train, "checkpoint", fake)
    return calls


def test_checkpoint_every_epoch_formats_path(saves, tmp_path):
    pattern = str(tmp_path / "ck" / "e{epoch:02d}-{val_loss:.2f}.npz")
    cp = ModelCheckpoint(pattern)
    trainer, _ = fit([cp], [0.5, 0.25])
    assert [c[0] for c in saves] == [str(tmp_path / "ck" / "e01-0.50.npz"),
                                     str(tmp_path / "ck" / "e02-0.25.npz")]
    assert saves[0][1] is trainer.model and saves[0][2] is trainer.optimizer
    assert (tmp_path / "ck").is_dir()


def test_checkpoint_best_only(saves, tmp_path):
    cp = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), save_best_only=True)
    fit([cp], [1.0, 0.5, 0.7, 0.4, 0.4])
    assert [c[0].rsplit("-", 1)[1] for c in saves] == ["1.npz", "2.npz", "4.npz"]
    saves.clear()
    cp = ModelCheckpoint(str(tmp_path / "m.npz"), monitor="val_accuracy",
                         save_best_only=True)
    fit([cp], [0.1, 0.3, 0.2], key="val_accuracy")
    assert len(saves) == 2 and cp.best == 0.3


def test_checkpoint_passes_scheduler_and_reports_bad_pattern(saves, tmp_path):
    trainer = FakeTrainer()
    trainer.scheduler = "sched"
    fit([ModelCheckpoint(str(tmp_path / "a.npz"))], [1.0], trainer=trainer)
    assert saves[0][3] == "sched"
    with pytest.raises(ValueError, match="val_acc"):
        fit([ModelCheckpoint(str(tmp_path / "{val_acc}.npz"))], [1.0])


# ---------------------------------------------------------------- progress

class FakeStream(_stdio.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_silent_when_not_a_tty(monkeypatch):
    stream = FakeStream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("FASTNN_PROGRESS", raising=False)
    bar = progress.progress_bar(10, "train", True)
    for _ in range(10):
        bar.update(1, loss=0.5)
    bar.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize("env,enabled", [("1", False), ("0", True)])
def test_progress_silent_on_a_tty(monkeypatch, env, enabled):
    """enabled=False wins over FASTNN_PROGRESS=1; FASTNN_PROGRESS=0 silences a tty."""
    stream = FakeStream(tty=True)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("FASTNN_PROGRESS", env)
    with progress.progress_bar(5, "x", enabled) as bar:
        bar.update(5)
    assert stream.getvalue() == ""


def test_progress_plain_fallback_when_forced(monkeypatch):
    stream = FakeStream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("FASTNN_PROGRESS", "1")
    monkeypatch.setitem(sys.modules, "tqdm", None)           # tqdm "not installed"
    bar = progress.progress_bar(1000, "epoch 1", True)
    for _ in range(1000):
        bar.update(1, loss=0.123456)
    bar.close()
    out = stream.getvalue()
    assert out.startswith("\r") and out.endswith("\n")
    assert out.count("\r") <= 5                              # rate-limited, not 1000 redraws
    last = out.rstrip("\n").rsplit("\r", 1)[1]
    assert "epoch 1" in last and "1000/1000" in last and "loss=0.1235" in last


def test_progress_uses_tqdm_when_installed(monkeypatch):
    pytest.importorskip("tqdm")
    stream = FakeStream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("FASTNN_PROGRESS", "1")
    with progress.progress_bar(3, "fit", True) as bar:
        for _ in range(3):
            bar.update(1, loss=0.25)
    assert "fit" in stream.getvalue() and "3/3" in stream.getvalue()
