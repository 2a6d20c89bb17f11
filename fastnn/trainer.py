"""Trainer: one training step (forward, loss, backward, clip, update, schedule)
and a Keras-style ``fit`` loop around it."""
import numpy as np

from . import _random
from . import _validation as V
from .callbacks import CallbackList, History
from ._kernels import _ops
from .losses import _Loss, check_sample_weight
from .module import Module, Sequential
from .optim import Optimizer, clip_grad_norm
from .progress import EpochReporter


class DivergenceError(FloatingPointError):
    """A training step produced a non-finite loss or gradient norm. The step
    changed nothing: weights and optimizer state are those before it."""


class DivergenceWarning(RuntimeWarning):
    """``fit`` stopped early because training diverged."""


class Trainer:
    """Runs training steps for ``model`` with ``loss`` and ``optimizer``.

    ``step`` overwrites the gradients (no zero_grad needed), clips them to
    ``clip_grad_norm`` when set, updates the weights and advances the scheduler.
    """

    def __init__(self, model, loss, optimizer, scheduler=None, clip_grad_norm=None):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a fastnn Module, got {type(model).__name__}")
        if not isinstance(loss, _Loss):
            raise TypeError(f"loss must be a fastnn loss, got {type(loss).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn optimizer, got {type(optimizer).__name__}")
        if clip_grad_norm is not None:
            clip_grad_norm = V.non_negative(clip_grad_norm, "clip_grad_norm")
        self._params = model.parameters()
        owned = {id(p) for p in self._params}
        foreign = [i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])
                   if id(p) not in owned]
        if foreign:
            raise ValueError(f"optimizer holds {len(foreign)} parameter(s) that are not the model's "
                             f"(positions {foreign[:5]}{'...' if len(foreign) > 5 else ''} in its "
                             "param groups): was it built from another model's parameters()?")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.scheduler = scheduler
        self.clip_grad_norm = clip_grad_norm
        self.stop_training = False
        self._last_output = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_last_output"] = None  # a view of a compiled program's workspace
        return state

    def _diverged(self, value, norm=None):
        lr = self.optimizer.param_groups[0].get("lr")
        what = f"the loss is {value}" if not np.isfinite(value) else f"the gradient norm is {norm}"
        hint = "lower the learning rate" + (f" (lr={lr:g} now)" if lr is not None else "")
        if self.clip_grad_norm is None:
            hint += " or clip gradients (Trainer(..., clip_grad_norm=1.0))"
        return DivergenceError(f"training diverged: {what}; this step changed no weight and no "
                               f"optimizer state. Try to {hint}.")

    # --- one step ------------------------------------------------------------
    def _check_xy(self, x, y):
        x = self.model._check_input(x)
        n = len(y) if hasattr(y, "__len__") else None
        if n != x.shape[0]:
            raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {n}")
        return x, y

    def step(self, x, y, sample_weight=None):
        """One training step on a batch; returns the batch's mean loss (weighted
        per sample by sample_weight, Keras style, when given)."""
        if sample_weight is None:
            fused = self._fused(x, y)
            if fused is not None:
                return self._fused_step(x, y, *fused)
        return self._checked_step(x, y, sample_weight)

    # The fused path: the whole step is one compiled call over the flat buffers,
    # taken where the loss and the optimizer have a compiled form (their
    # ``_compiled``), the model is a dense stack, the optimizer holds exactly the
    # model's flat buffer, and the inputs need no conversion; everything else goes
    # through _checked_step, which computes the same.
    def _fused(self, x, y):
        """(program, loss code, label smoothing, flat segment) or None."""
        model = self.model
        if type(model) is not Sequential or type(self)._reduce_gradients is not Trainer._reduce_gradients:
            return None
        shape = getattr(x, "shape", None)
        if not shape or len(shape) != 2:
            return None
        seg = self.optimizer._flat_segment(self._params)
        prog = model._dense_program(shape[0]) if seg is not None else None
        if prog is None or not prog.accepts(x):
            return None
        loss = self.loss._compiled(y, prog.output_act)
        if loss is None or not prog.target_ok(y, loss[0]):
            return None
        return (prog, *loss, seg)

    def _fused_step(self, x, y, prog, code, smoothing, seg):
        update = self.optimizer._begin_step()
        if not self.model.training:
            self.model.train()
        max_norm = -1.0 if self.clip_grad_norm is None else self.clip_grad_norm
        value, norm = prog.step(x, y, code, smoothing, max_norm, update, seg.data, seg.grad)
        if not (np.isfinite(value) and np.isfinite(norm)):  # the C step skipped the update
            self.optimizer._cancel_step()
            raise self._diverged(value, norm)
        if self.scheduler is not None:
            self.scheduler.step()
        self._last_output = prog.output
        return value

    def _checked_step(self, x, y, sample_weight=None):
        x, y = self._check_xy(x, y)
        self.model.train()
        out = self.model._forward(x)
        if not _ops.all_finite(out.reshape(-1)):
            self.loss._check_target(out, y)  # bad targets are the user's error, not divergence
            raise self._diverged(float("nan"))
        value = self.loss(out, y, sample_weight)  # validates y before any weight changes
        if not np.isfinite(value):
            raise self._diverged(value)
        self.model._backward(self.loss.backward(), False, False)
        value = self._reduce_gradients(value, x.shape[0])
        if self.clip_grad_norm is not None:
            norm = clip_grad_norm(self._params, self.clip_grad_norm)
            if not np.isfinite(norm):
                raise self._diverged(value, norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self._last_output = out
        return value

    def _fit_args(self, X, y, epochs, batch_size, validation_data, validation_split, sample_weight):
        """fit's checks, all before any update: (X, y, validation_data,
        sample_weight, epochs, batch_size) of the training split, converted."""
        epochs = V.positive_int(epochs, "epochs")
        batch_size = V.positive_int(batch_size, "batch_size")
        X = self.model._check_input(X)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, len(X), X.dtype)
        y = np.asarray(V.from_pandas(y, "y"))
        if y.shape[:1] != X.shape[:1]:
            raise ValueError(f"X and y must have the same number of samples, got {len(X)} and "
                             f"{y.shape[0] if y.ndim else 'a scalar'}")
        if validation_split is not None:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
            cut = len(X) - int(round(len(X) * validation_split))
            if cut <= 0 or cut >= len(X):
                raise ValueError(f"validation_split={validation_split} leaves an empty split")
            X, y, validation_data = X[:cut], y[:cut], (X[cut:], y[cut:])
            if sample_weight is not None:
                sample_weight = sample_weight[:cut]
        # every target (and the validation data) once, rather than failing mid-training
        y = self._check_targets(X, y, "y")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = self.model._check_input(validation_data[0])
            validation_data = (Xv, self._check_targets(Xv, validation_data[1], "validation_data y"))
        return X, y, validation_data, sample_weight, epochs, batch_size

    def _check_targets(self, X, y, name):
        """All of y checked (and converted) against the model's output shape, without
        materializing an output array: a zero-strided stand-in carries the shape."""
        y_arr = np.asarray(V.from_pandas(y, name))
        if y_arr.shape[:1] != X.shape[:1]:
            raise ValueError(f"X and {name} must have the same number of samples, got {len(X)} "
                             f"and {y_arr.shape[0] if y_arr.ndim else 'a scalar'}")
        was_training = self.model.training
        self.model.eval()  # no dropout draw, no RNG consumed
        try:
            out_shape = self.model._forward(X[:1]).shape[1:]
        finally:
            self.model.train(was_training)
        stand_in = np.broadcast_to(np.zeros((), self.model.dtype), (len(X),) + out_shape)
        return self.loss._check_target(stand_in, y_arr)

    def _reduce_gradients(self, loss, batch_size):
        """Hook between backward and update: data-parallel trainers average the
        flat gradient buffer (and the loss) across processes here."""
        return loss

    # --- metrics -------------------------------------------------------------
    def _correct(self, out, y):
        """(correct, counted) predictions in a batch, or None for regression."""
        return self.loss.correct(out, y)

    def evaluate(self, X, y, batch_size=1024, sample_weight=None):
        """Mean loss (and accuracy for classification) in eval mode."""
        batch_size = V.positive_int(batch_size, "batch_size")
        X, y = self._check_xy(X, y)
        y = np.asarray(V.from_pandas(y, "y"))
        w = None if sample_weight is None else check_sample_weight(sample_weight, len(X), X.dtype)
        was_training = self.model.training
        self.model.eval()
        total, hits, n = 0.0, [0, 0], len(X)
        try:
            for i in range(0, n, batch_size):
                out = self.model._forward(X[i:i + batch_size])
                wb = None if w is None else w[i:i + batch_size]
                if not _ops.all_finite(out.reshape(-1)):  # diverged weights: say so with nan
                    total = float("nan")
                else:
                    total += self.loss(out, y[i:i + batch_size], wb) * len(out)
                hits = _add_hits(hits, self._correct(out, y[i:i + batch_size]))
        finally:
            self.model.train(was_training)
        result = {"loss": total / n}
        if hits is not None:
            result["accuracy"] = hits[0] / hits[1]
        return result

    # --- the loop --------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, validation_data=None, validation_split=None,
            shuffle=True, seed=None, callbacks=(), progress=True, sample_weight=None,
            verbose="auto"):
        """Train for ``epochs`` passes over (X, y) in mini-batches; returns a History.

        verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch with
        the loss, accuracy and val_* metrics and the time; "auto" (default) is 1
        on a terminal and 2 otherwise. ``progress=False`` silences it too.
        If a step diverges (non-finite loss or gradient norm), fit stops with a
        DivergenceWarning naming the epoch and step; the weights are those
        before that step and the History keeps the epochs that ran."""
        X, y, validation_data, sample_weight, epochs, batch_size = self._fit_args(
            X, y, epochs, batch_size, validation_data, validation_split, sample_weight)
        report = EpochReporter(verbose if progress else 0, epochs,
                               (len(X) + batch_size - 1) // batch_size)
        rng = np.random.default_rng(seed) if seed is not None else _random.generator()

        history = History()
        cbs = CallbackList([*callbacks, history])  # History last, as in Keras: it sees what callbacks add to logs
        self.stop_training = False
        cbs.on_train_begin(self)
        n = len(X)
        n_batches = (n + batch_size - 1) // batch_size
        xb_full = np.empty((batch_size,) + X.shape[1:], X.dtype)
        yb_full = np.empty((batch_size,) + y.shape[1:], y.dtype)
        logs = {}
        for epoch in range(epochs):
            cbs.on_epoch_begin(epoch, logs)
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, hits, seen, diverged = 0.0, [0, 0], 0, None
            report.begin_epoch(epoch)
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                xb, yb = xb_full[:len(idx)], yb_full[:len(idx)]
                np.take(X, idx, axis=0, out=xb)
                np.take(y, idx, axis=0, out=yb)
                try:
                    value = self.step(xb, yb, None if sample_weight is None else sample_weight[idx])
                except DivergenceError as exc:
                    diverged = exc
                    break
                total += value * len(idx)
                seen += len(idx)
                hits = _add_hits(hits, self._correct(self._last_output, yb))
                cbs.on_batch_end(b, {"loss": value, "size": len(idx)})
                report.batch(value)
            if diverged is not None:
                # the epoch's record says what happened: the loss went non-finite
                logs = {"loss": float("nan")}
                if hits is not None:
                    logs["accuracy"] = hits[0] / hits[1] if hits[1] else float("nan")
                if validation_data is not None:
                    logs.update({f"val_{k}": float("nan") for k in list(logs)})
                where = f"epoch {epoch + 1}, step {b + 1} of {n_batches}"
                report.end_epoch(epoch, logs, note=f"diverged at {where}")
                history.on_epoch_end(epoch, logs)
                self.stop_training = True
                import warnings
                warnings.warn(str(diverged).replace("training diverged:", f"training diverged "
                                                    f"at {where}:", 1)
                              + " fit stopped; its History keeps the epochs that ran.",
                              DivergenceWarning, stacklevel=2)
                break
            logs = {"loss": total / n}
            if hits is not None:
                logs["accuracy"] = hits[0] / hits[1]
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                logs.update({f"val_{k}": v for k, v in val.items()})
            report.end_epoch(epoch, logs)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def predict(self, X, batch_size=1024):
        return self.model.predict(X, batch_size)


def _add_hits(hits, batch):
    if hits is None or batch is None:
        return None
    return [hits[0] + batch[0], hits[1] + batch[1]]
