"""Keras-style training callbacks for ``Trainer.fit``.

Protocol (what a trainer does): ``cb.set_trainer(trainer)`` and
``cb.on_train_begin(trainer)`` once, then per epoch ``on_epoch_begin(epoch,
logs)``, ``on_batch_end(batch, logs)`` after every optimizer step and
``on_epoch_end(epoch, logs)`` with the epoch's metrics (``loss``,
``val_loss``, ``accuracy``, ...), and finally ``on_train_end(logs)``. Epochs
and batches are 0-based. A callback stops training by setting
``trainer.stop_training = True``; the trainer checks it after each epoch.
``CallbackList`` does this dispatching.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint"]


def _scalar(value):
    """Logs may hold numpy scalars or 0-d arrays; history and comparisons want floats."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _auto_max(monitor):
    """Keras' mode="auto": accuracy-like metrics are maximised, the rest minimised."""
    name = monitor.lower()
    return "acc" in name or "auc" in name


def _check_mode(mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be one of 'auto', 'min', 'max', got {mode!r}")
    return mode


class Callback:
    """Base class: every hook is a no-op, so subclasses override only what they need."""

    trainer = None

    def set_trainer(self, trainer):
        """Called by fit with the Trainer being fitted (``self.trainer``)."""
        self.trainer = trainer

    def _bind(self, trainer):
        if trainer is not None:
            self.set_trainer(trainer)

    def on_train_begin(self, trainer=None):
        """Before the first epoch."""
        pass

    def on_epoch_begin(self, epoch, logs=None):
        """Before epoch ``epoch`` (0-based)."""
        pass

    def on_batch_end(self, batch, logs=None):
        """After each training step; logs has the batch's "loss" and "size"."""
        pass

    def on_epoch_end(self, epoch, logs=None):
        """After an epoch; logs has "loss" (and "accuracy", "val_loss", ... as fit
        reports them). Setting ``trainer.stop_training = True`` stops training."""
        pass

    def on_train_end(self, logs=None):
        """After the last epoch (also when training stopped early)."""
        pass


class CallbackList:
    """Fan one hook call out to several callbacks, in order."""

    def __init__(self, callbacks=None, trainer=None):
        callbacks = list(callbacks or [])
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                hint = " (did you pass the class instead of an instance?)" \
                    if isinstance(cb, type) else ""
                raise TypeError(f"callbacks[{i}] must be a fastnn Callback instance, "
                                f"got {cb!r}{hint}")
        self.callbacks = callbacks
        if trainer is not None:
            self.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def append(self, callback):
        self.callbacks.append(callback)

    def set_trainer(self, trainer):
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def on_train_begin(self, trainer=None):
        for cb in self.callbacks:
            if trainer is not None:
                cb.set_trainer(trainer)
            cb.on_train_begin(trainer)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)


class History(Callback):
    """Per-epoch logs, Keras style: ``history["val_loss"][i]`` is epoch ``epoch[i]``."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_train_begin(self, trainer=None):
        self._bind(trainer)
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(int(epoch))
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(_scalar(value))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    def plot(self, path=None):
        """Plot each metric (with its ``val_`` twin) against the 1-based epoch.

        Saves to ``path`` when given; returns the matplotlib Figure.
        """
        try:
            import matplotlib
        except ImportError:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              "pip install matplotlib") from None
        if path is not None:
            from matplotlib.figure import Figure   # no GUI backend needed to save
            fig = Figure()
        else:
            import matplotlib.pyplot as plt
            fig = plt.figure()
        del matplotlib
        from matplotlib.ticker import MaxNLocator
        bases = []
        for key, values in self.history.items():
            if not all(isinstance(v, numbers.Real) for v in values):
                continue                        # e.g. a string logged per epoch
            base = key[4:] if key.startswith("val_") else key
            if base not in bases:
                bases.append(base)
        if not bases:
            raise ValueError("History is empty: nothing to plot")
        fig.set_size_inches(4.5 * len(bases), 3.5)
        for i, base in enumerate(bases):
            ax = fig.add_subplot(1, len(bases), i + 1)
            for key in (base, "val_" + base):
                values = self.history.get(key)
                if values:
                    ax.plot([e + 1 for e in self.epoch[:len(values)]], values,
                            marker="o", label=key)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_title(base)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(os.fspath(path))
        return fig


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs (Keras semantics).

    With ``restore_best_weights`` the model gets the weights of its best epoch
    back when training ends, whether it stopped early or ran all epochs (if no
    epoch ever improved, those of the first monitored epoch).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, verbose=False, baseline=None,
                 start_from_epoch=0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a non-empty str, got {monitor!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta):
            raise ValueError(f"min_delta must be a finite number, got {min_delta!r}")
        for name, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if baseline is not None and (isinstance(baseline, bool)
                                     or not isinstance(baseline, numbers.Real)):
            raise ValueError(f"baseline must be a number or None, got {baseline!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.mode = _check_mode(mode)
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = int(start_from_epoch)
        self.maximize = mode == "max" or (mode == "auto" and _auto_max(monitor))
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = -math.inf if self.maximize else math.inf
        self.best_epoch = 0
        self.best_weights = None
        self._warned = False

    def _is_improvement(self, value, reference):
        if self.maximize:
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def _snapshot(self):
        if self.trainer is None:
            raise RuntimeError("EarlyStopping(restore_best_weights=True) has no trainer: "
                               "call set_trainer(trainer) before training")
        return {k: np.array(v, copy=True)
                for k, v in self.trainer.model.state_dict().items()}

    def on_train_begin(self, trainer=None):
        self._bind(trainer)
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs or logs[self.monitor] is None:
            if not self._warned:
                self._warned = True
                warnings.warn(f"EarlyStopping is monitoring {self.monitor!r}, which is "
                              f"not in the logs (available: {sorted(logs)}); it does nothing",
                              RuntimeWarning, stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        current = float(_scalar(logs[self.monitor]))
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._snapshot()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = int(epoch)
            if self.restore_best_weights:
                self.best_weights = self._snapshot()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = int(epoch)
            if self.trainer is not None:
                self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.trainer.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save model and optimizer with ``fastnn.save`` after each epoch, or only
    when ``monitor`` improves (``save_best_only``).

    ``filepath`` may contain ``{epoch}`` (1-based, like Keras) and any log key,
    e.g. ``"ckpt/e{epoch:02d}-{val_loss:.3f}.npz"``.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 verbose=False):
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or path, got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a non-empty str, got {monitor!r}")
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _check_mode(mode)
        self.verbose = verbose
        self.maximize = mode == "max" or (mode == "auto" and _auto_max(monitor))
        self.best = -math.inf if self.maximize else math.inf
        self.last_path = None
        self._warned = False

    def _format(self, epoch, logs):
        fields = {k: _scalar(v) for k, v in logs.items()}
        fields["epoch"] = epoch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError) as exc:
            raise ValueError(f"ModelCheckpoint filepath {self.filepath!r} refers to "
                             f"{exc.args[0]!r}, which is not a log key (available: "
                             f"{sorted(fields)})") from None

    def _save(self, path):
        from . import checkpoint
        if self.trainer is None:
            raise RuntimeError("ModelCheckpoint has no trainer: call set_trainer(trainer) "
                               "before training")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        kwargs = {}
        scheduler = getattr(self.trainer, "scheduler", None)
        if scheduler is not None:
            kwargs["scheduler"] = scheduler
        checkpoint.save(path, self.trainer.model, getattr(self.trainer, "optimizer", None), **kwargs)
        self.last_path = path

    def on_train_begin(self, trainer=None):
        self._bind(trainer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.save_best_only:
            self._save(self._format(epoch, logs))
            return
        current = logs.get(self.monitor)
        if current is None:
            if not self._warned:
                self._warned = True
                warnings.warn(f"ModelCheckpoint(save_best_only=True) is monitoring "
                              f"{self.monitor!r}, which is not in the logs (available: "
                              f"{sorted(logs)}); skipping", RuntimeWarning, stacklevel=2)
            return
        current = float(_scalar(current))
        improved = current > self.best if self.maximize else current < self.best
        if improved:
            path = self._format(epoch, logs)
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5g} "
                      f"to {current:.5g}, saving model to {path}")
            self.best = current
            self._save(path)
        elif self.verbose:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5g}")
