"""Trainer: one training step (forward, loss, backward, clip, update, schedule)
and a Keras-style ``fit`` loop around it."""
import warnings

import numpy as np

from .. import _random
from .. import _validation as V
from .callbacks import CallbackList, History, ModelCheckpoint
from .._kernels import _ops
from ..nn.losses import _Loss, check_sample_weight
from ..nn.module import Module
from ..nn.sequential import Sequential
from ..optim.optimizers import Optimizer, clip_grad_norm
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
        self._stats = np.zeros(3)  # rows, summed loss, error flag: agreed before any change
        self._gscaled = None

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
        fused = self._fused(x, y) if sample_weight is None else None
        if fused is not None and self._single_process:
            return self._fused_step(x, y, *fused)  # the whole step in one compiled call
        return self._pipeline_step(x, y, sample_weight, fused)

    # The compiled path runs over the flat buffers, taken where the loss and the
    # optimizer have a compiled form (their ``_compiled``), the model is a dense
    # stack, the optimizer holds exactly the model's flat buffer, and the inputs
    # need no conversion; everything else takes the layers' path, which computes
    # the same.
    _compiled_path = True

    def _fused(self, x, y):
        """(program, loss code, label smoothing, flat segment) or None."""
        model = self.model
        if type(model) is not Sequential or not self._compiled_path:
            return None
        shape = getattr(x, "shape", None)
        if not shape or len(shape) != 2:
            return None
        seg = self.optimizer._flat_segment(self._params)
        prog = model.compiled(shape[0]) if seg is not None else None
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

    def _pipeline_step(self, x, y, sample_weight, fused):
        """The step in stages, with the data-parallel hooks between them: this
        process's forward and loss (with ``fused``, forward and backward in one
        compiled call) → one agreement on the rows, the summed loss and any
        error (no weight has changed yet, so a batch rejected anywhere is
        rejected everywhere and a non-finite loss stops every process) →
        backward of the loss gradient scaled by n/N → gradients summed over
        processes → clip → update → schedule. For one process the hooks do
        nothing.

        The compiled backward runs before the rows are agreed, so it scales by
        1/processes, which is n/N when the shards are equal (the usual case,
        exactly); unequal shards rescale the gradient afterwards."""
        n, value, error = 0, 0.0, None
        guess = 1.0 / self._processes
        try:
            if fused is not None:
                prog, code, smoothing, seg = fused
                n = x.shape[0]
                self.model.train()
                value = prog.forward_backward(x, y, code, smoothing, guess)
                self._last_output = prog.output
            elif not self._empty_shard(x, y):
                x, y = self._check_xy(x, y)
                n = x.shape[0]
                self.model.train()
                out = self.model._forward(x)
                if _ops.all_finite(out.reshape(-1)):
                    value = self.loss(out, y, sample_weight)  # validates y
                else:  # bad targets are still the user's error, not divergence
                    self.loss._check_target(out, y)
                    value = float("nan")
                self._last_output = out
        except Exception as exc:  # noqa: BLE001 - every process raises it in _agree
            error, n, value = exc, 0, 0.0
        stats = self._stats
        stats[0], stats[1] = n, n * value if n else 0.0
        self._agree(error, stats, "Allreduce of the rows and the loss")
        total, loss_sum = stats[0], stats[1]
        if total == 0:
            raise self._everywhere(ValueError("x is an empty batch on every rank"))
        if not np.isfinite(loss_sum):
            raise self._diverged(loss_sum / total)
        scale = n / total
        if fused is not None:
            if scale != guess:
                np.multiply(seg.grad, scale / guess, out=seg.grad)
            self._allreduce(seg.grad, "Allreduce of the gradients")
            update = self.optimizer._begin_step()
            max_norm = -1.0 if self.clip_grad_norm is None else self.clip_grad_norm
            norm = update.apply(seg.data, seg.grad, max_norm)
            if not np.isfinite(norm):
                self.optimizer._cancel_step()
                raise self._diverged(loss_sum / total, norm)
        else:
            g = self.loss.backward() if n else None
            if g is not None and scale != 1.0:
                if self._gscaled is None or self._gscaled.shape != g.shape:
                    self._gscaled = np.empty_like(g)
                g = np.multiply(g, scale, out=self._gscaled)
            self._backward_and_reduce(g)
            if self.clip_grad_norm is not None:
                norm = clip_grad_norm(self._params, self.clip_grad_norm)
                if not np.isfinite(norm):
                    raise self._diverged(loss_sum / total, norm)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss_sum / total

    # --- hooks between the stages: one process here; fastnn.distributed
    # overrides them with MPI collectives ------------------------------------------
    _single_process = True  # the step may be one compiled call
    _processes = 1          # how many processes share each batch
    _root = True            # this process reports progress and writes checkpoints

    def _agree(self, error, stats, what):
        """Sum ``stats`` over processes and raise ``error`` everywhere if any failed."""
        if error is not None:
            raise error

    def _everywhere(self, exc):
        """An exception every process raises at the same point."""
        return exc

    def _allreduce(self, array, what):
        """``array`` summed over processes, in place."""

    def _any(self, flag, what):
        """Whether ``flag`` is set on any process."""
        return flag

    def _shard(self, n):
        """This process's rows [lo, hi) of n rows of a global batch or data set."""
        return 0, n

    def _empty_shard(self, x, y):
        """Whether (x, y) is an empty share of a global batch (allowed in data
        parallel training; an error for one process)."""
        return False

    def _backward_and_reduce(self, grad):
        """Backward from the output gradient (None: no rows here), then the
        parameter gradients summed over processes."""
        self.model._backward(grad, False, False)

    def _agree_fit(self, error, args, shuffle, seed):
        """fit's checks (``args``: _fit_args' result), data and shuffling seed agreed
        by every process; returns the seed."""
        if error is not None:
            raise error
        return seed

    def _end_epoch(self):
        """After each epoch (data parallel: the replicas' weights are compared)."""

    def _guard(self, exc, where):
        """An exception past the point where processes agree (data parallel: abort)."""
        raise exc

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

    # --- metrics -------------------------------------------------------------
    def _correct(self, out, y):
        """(correct, counted) predictions in a batch, or None for regression."""
        return self.loss.correct(out, y)

    def evaluate(self, X, y, batch_size=1024, sample_weight=None):
        """Mean loss (and accuracy for classification) in eval mode; data
        parallel, each process scores its share of the rows."""
        error, total, hits, n = None, 0.0, [0, 0], 0
        try:
            batch_size = V.positive_int(batch_size, "batch_size")
            X, y = self._check_xy(X, y)
            y = np.asarray(V.from_pandas(y, "y"))
            w = None if sample_weight is None else check_sample_weight(sample_weight, len(X),
                                                                       X.dtype)
            lo, hi = self._shard(len(X))
            was_training = self.model.training
            self.model.eval()
            try:
                for i in range(lo, hi, batch_size):
                    j = min(i + batch_size, hi)
                    out = self.model._forward(X[i:j])
                    if not _ops.all_finite(out.reshape(-1)):  # diverged weights: say so with nan
                        total = float("nan")
                    else:
                        total += self.loss(out, y[i:j], None if w is None else w[i:j]) * len(out)
                    hits = _add_hits(hits, self._correct(out, y[i:j]))
            finally:
                self.model.train(was_training)
            n = hi - lo
        except Exception as exc:  # noqa: BLE001 - raised on every process by _agree
            error = exc
        stats = np.array([total, *(hits or (0, 0)), n, 0.0])
        self._agree(error, stats, "Allreduce of the evaluation metrics")
        result = {"loss": stats[0] / stats[3]}
        if self.loss.classification:
            result["accuracy"] = stats[1] / stats[2]
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
        before that step and the History keeps the epochs that ran.
        Data parallel (``DistributedTrainer``): every process passes the same
        data, ``batch_size`` is the global batch and each process trains on its
        slice of every batch; only the root process reports and checkpoints."""
        error, args = None, None
        try:
            args = self._fit_args(X, y, epochs, batch_size, validation_data, validation_split,
                                  sample_weight)
        except Exception as exc:  # noqa: BLE001 - raised on every process by _agree_fit
            error = exc
        seed = self._agree_fit(error, args, shuffle, seed)
        X, y, validation_data, sample_weight, epochs, batch_size = args
        try:
            return self._fit_loop(X, y, validation_data, sample_weight, epochs, batch_size,
                                  shuffle, seed, callbacks, verbose if progress else 0)
        except Exception as exc:  # noqa: BLE001
            self._guard(exc, "fit")

    def _fit_loop(self, X, y, validation_data, sample_weight, epochs, batch_size, shuffle, seed,
                  callbacks, verbose):
        n = len(X)
        n_batches = (n + batch_size - 1) // batch_size
        report = EpochReporter(verbose if self._root else 0, epochs, n_batches)
        rng = np.random.default_rng(seed) if seed is not None else _random.generator()
        history = History()
        if not self._root:  # checkpoints are written by the root process only
            callbacks = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)
                         and not getattr(cb, "rank_zero_only", False)]
        cbs = CallbackList([*callbacks, history])  # History last, as in Keras: it sees what callbacks add to logs
        self.stop_training = False
        cbs.on_train_begin(self)
        share = self._shard(batch_size)
        xb_full = np.empty((share[1] - share[0],) + X.shape[1:], X.dtype)
        yb_full = np.empty((share[1] - share[0],) + y.shape[1:], y.dtype)
        classify = self.loss.classification
        logs = {}
        for epoch in range(epochs):
            cbs.on_epoch_begin(epoch, logs)
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, hits, diverged = 0.0, [0, 0], None
            report.begin_epoch(epoch)
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                lo, hi = self._shard(len(idx))
                mine = idx[lo:hi]
                xb, yb = xb_full[:len(mine)], yb_full[:len(mine)]
                np.take(X, mine, axis=0, out=xb)
                np.take(y, mine, axis=0, out=yb)
                try:
                    value = self.step(xb, yb, None if sample_weight is None else sample_weight[mine])
                except DivergenceError as exc:  # raised by every process at the same step
                    diverged = exc
                    break
                total += value * len(idx)
                if len(mine) and classify:
                    hits = _add_hits(hits, self._correct(self._last_output, yb))
                cbs.on_batch_end(b, {"loss": value, "size": len(idx)})
                report.batch(value)
            if diverged is not None:
                # the epoch's record says what happened: the loss went non-finite
                logs = {"loss": float("nan")}
                if classify:
                    logs["accuracy"] = float("nan")
                if validation_data is not None:
                    logs.update({f"val_{k}": float("nan") for k in list(logs)})
                where = f"epoch {epoch + 1}, step {b + 1} of {n_batches}"
                report.end_epoch(epoch, logs, note=f"diverged at {where}")
                history.on_epoch_end(epoch, logs)
                self.stop_training = True
                if self._root:
                    warnings.warn(str(diverged).replace("training diverged:",
                                                        f"training diverged at {where}:", 1)
                                  + " fit stopped; its History keeps the epochs that ran.",
                                  DivergenceWarning, stacklevel=3)
                break
            logs = {"loss": total / n}
            if classify:
                counts = np.array(hits, dtype=np.float64)
                self._allreduce(counts, "Allreduce of the epoch's accuracy")
                logs["accuracy"] = counts[0] / counts[1]
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                logs.update({f"val_{k}": v for k, v in val.items()})
            report.end_epoch(epoch, logs)
            cbs.on_epoch_end(epoch, logs)
            # every process stops when any one's callbacks asked to, so all leave together
            self.stop_training = self._any(self.stop_training, "Allreduce of stop_training")
            self._end_epoch()
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def predict(self, X, batch_size=1024):
        """The model's outputs for X in eval mode, in batches (``model.predict``)."""
        return self.model.predict(X, batch_size)


def _add_hits(hits, batch):
    if hits is None or batch is None:
        return None
    return [hits[0] + batch[0], hits[1] + batch[1]]
