"""Losses (mean reduction). Calling a loss computes the value and the gradient
of the mean with respect to the output in the same pass; ``backward()`` returns
that gradient for ``model.backward``."""
import numbers

import numpy as np

from .. import _validation as V
from .._kernels import _ops


def check_sample_weight(sample_weight, n, dtype):
    """One finite, non-negative weight per sample, as a contiguous array of dtype."""
    w = V.as_float_array(sample_weight, "sample_weight", dtype)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if n and w.min() < 0:
        raise ValueError("sample_weight must be non-negative")
    return w


class _Loss:
    classification = False

    def __init__(self):
        self._grad = None
        self._buffers = {}

    def __call__(self, output, target, sample_weight=None):
        """Mean loss; sample_weight (one non-negative weight per row) scales each
        row's loss and gradient, as in Keras."""
        output = self._check_output(output)
        target = self._check_target(output, target)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, output.shape[0], output.dtype)
        grad = self._buffers.get(output.shape)
        if grad is None or grad.dtype != output.dtype:
            self._buffers = {output.shape: np.empty(output.shape, output.dtype)}
            grad = self._buffers[output.shape]
        value = self._compute(output, target, grad, sample_weight)
        self._grad = grad
        return float(value)

    forward = __call__

    def correct(self, output, target):
        """(correct, counted) predictions for the accuracy metric, or None where
        the loss is not a classification loss."""
        return None

    def _compiled(self, target, output_act):
        """(kernel code, label smoothing) of this loss inside a compiled training
        step whose last layer ends in activation ``output_act``, for targets like
        ``target``; None where the step does not implement it exactly."""
        return None

    def backward(self):
        """d(mean loss)/d(output) of the last call, shaped like the output."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        return self._grad

    def _check_output(self, output):
        arr = np.asarray(output)
        dtype = arr.dtype if arr.dtype in V.FLOAT_DTYPES else np.float64
        out = V.as_float_array(arr, "output", dtype)
        if out.ndim == 0:
            raise ValueError("output must be a batch (at least 1-D), got a scalar")
        V.check_batch(out, "output")
        return out

    def _same_shape_target(self, output, target):
        t = V.as_float_array(target, "target", output.dtype)
        if t.shape != output.shape:
            raise ValueError(f"target must have the output's shape {output.shape}, got {t.shape}"
                             " (no broadcasting: reshape the target explicitly)")
        return t

    def __repr__(self):
        return f"{type(self).__name__}()"


class _PointwiseLoss(_Loss):
    """A mean over elements of one kernel loss (``_kind``: an _ops.LOSS_* code) of
    output and a target of the same shape; sample weights apply per row."""

    _kind = None

    def _check_target(self, output, target):
        return self._same_shape_target(output, target)

    def _compiled(self, target, output_act):
        return self._kind, 0.0

    def _compute(self, output, target, grad, weight):
        return _ops.pointwise_loss(self._kind, output.reshape(-1), target.reshape(-1),
                                   grad.reshape(-1), weight, output.size // output.shape[0])


class MSELoss(_PointwiseLoss):
    """Mean squared error, mean((output - target)^2) over all elements
    (torch.nn.MSELoss). output and target have the same shape (n, ...); a target
    of another shape is an error, never broadcast. Gradient 2 (output - target) / N."""

    _kind = _ops.LOSS_MSE


class BCELoss(_PointwiseLoss):
    """Binary cross-entropy on probabilities (torch.nn.BCELoss):
    mean(-(t log p + (1 - t) log(1 - p))) over all elements, each log clamped at
    -100 as torch does. output p in [0, 1] and target t in [0, 1], same shape.
    On logits use BCEWithLogitsLoss (stable, fused)."""

    classification = True
    _kind = _ops.LOSS_BCE

    def _check_output(self, output):
        out = super()._check_output(output)
        if out.min() < 0 or out.max() > 1:
            raise ValueError("output of BCELoss must be probabilities in [0, 1] "
                             "(use BCEWithLogitsLoss on logits)")
        return out

    def _check_target(self, output, target):
        t = super()._check_target(output, target)
        if t.min() < 0 or t.max() > 1:
            raise ValueError("target of BCELoss must be in [0, 1]")
        return t

    threshold = 0.5  # on probabilities; BCEWithLogitsLoss: 0 on logits

    def correct(self, output, target):
        """Per element: output above the threshold vs target above 0.5."""
        hits = (np.asarray(output) > self.threshold) == (np.asarray(target) > 0.5)
        return int(np.count_nonzero(hits)), hits.size

    def _compiled(self, target, output_act):
        # the compiled step takes probabilities from a fused sigmoid only
        return super()._compiled(target, output_act) if output_act == _ops.ACT_SIGMOID else None


class BCEWithLogitsLoss(BCELoss):
    """Sigmoid + binary cross-entropy on logits z, fused and stable
    (torch.nn.BCEWithLogitsLoss): mean(max(z, 0) - z t + log(1 + exp(-|z|))) over
    all elements; the gradient is (sigmoid(z) - t) / N. Same shapes as BCELoss."""

    _kind = _ops.LOSS_BCE_LOGITS
    threshold = 0.0

    def _check_output(self, output):
        return _Loss._check_output(self, output)

    _compiled = _PointwiseLoss._compiled


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (torch.nn.CrossEntropyLoss), mean over rows:
    loss_i = logsumexp(z_i) - sum_c q_ic z_ic with q = (1 - eps) target + eps / C.

    output: logits (n, C), or (batch, time, C) where every position is a row.
    target: int class labels (n,) / (batch, time) in [0, C), or probabilities of
    the output's shape (non-negative, rows summing to 1). label_smoothing=eps in
    [0, 1] (default 0). Labels equal to ``ignore_index`` (torch's name and
    default, -100) contribute neither loss nor gradient, and the mean is over the
    other labels, as in torch. The gradient is (softmax(z) - q) / n, one pass."""

    classification = True

    def __init__(self, label_smoothing=0.0, ignore_index=-100):
        super().__init__()
        if (isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float))
                or not 0.0 <= label_smoothing <= 1.0):
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)

    def _check_output(self, output):
        out = super()._check_output(output)
        if out.ndim not in (2, 3):
            raise ValueError("output must be logits of shape (batch, classes) or (batch, time, "
                             f"classes), got {out.shape}")
        return out

    def _labels(self, t, C):
        """t as C-contiguous int64 labels in [0, C) or equal to ignore_index."""
        arr = np.require(t, np.int64, "C")
        flat = arr.reshape(-1)
        if flat.size and not _ops.labels_in_range(flat, C):
            raw = t.reshape(-1)
            ignored = raw == self.ignore_index
            bad = ~ignored & ((flat < 0) | (flat >= C) | (raw != flat))
            if bad.any():
                raise ValueError(f"target must be in [0, {C}) (or equal ignore_index="
                                 f"{self.ignore_index}), got {raw[bad][0]}")
        return arr

    def _check_target(self, output, target):
        t = np.asarray(V.from_pandas(target, "target"))
        lead, C = output.shape[:-1], output.shape[-1]
        if t.dtype.kind in "iu":
            if t.shape != lead:
                raise ValueError(f"target labels must have shape {lead}, got {t.shape}")
            return self._labels(t, C)
        if t.dtype.kind != "f":
            raise TypeError(f"target must be int class labels or float probabilities, got dtype {t.dtype}")
        if t.shape != output.shape:
            hint = " (class labels must be an integer array)" if t.shape == lead else ""
            raise ValueError(f"target probabilities must have shape {output.shape}, got "
                             f"{t.shape}{hint}")
        t = V.as_float_array(t, "target", output.dtype)
        if t.min() < 0 or not np.allclose(t.sum(axis=-1), 1.0, atol=1e-4 if t.dtype == np.float32 else 1e-8):
            raise ValueError("target probabilities must be non-negative with rows summing to 1")
        return t

    def correct(self, output, target):
        """Rows (positions) whose arg-max matches the label (or the target's
        arg-max); ignored labels are not counted."""
        target, output = np.asarray(target), np.asarray(output)
        pred = output.argmax(axis=-1)
        if target.ndim == pred.ndim:
            keep = target != self.ignore_index
            return int(np.count_nonzero((pred == target) & keep)), int(np.count_nonzero(keep))
        return int(np.count_nonzero(pred == target.argmax(axis=-1))), pred.size

    def _compiled(self, target, output_act):
        labels = getattr(target, "dtype", None) == np.int64
        # the compiled step has no ignored rows; a negative ignore_index is already
        # out of its label range (target_ok), a real class has to be looked for
        if labels and self.ignore_index >= 0 and np.any(target == self.ignore_index):
            return None
        return (_ops.LOSS_CE_LABELS if labels else _ops.LOSS_CE_PROBS), self.label_smoothing

    def _compute(self, output, target, grad, weight):
        C = output.shape[-1]
        z, g = output.reshape(-1, C), grad.reshape(-1, C)
        if weight is not None and output.ndim == 3:  # one weight per sequence: per position
            weight = np.repeat(weight, output.shape[1])
        if target.dtype == np.int64:
            # without ignored labels this is cross_entropy_labels, bit for bit
            return _ops.cross_entropy_ignore(z, target.reshape(-1), self.ignore_index,
                                             self.label_smoothing, g, weight)
        return _ops.cross_entropy_probs(z, target.reshape(-1, C), self.label_smoothing, g, weight)

    def __repr__(self):
        extra = "" if self.ignore_index == -100 else f", ignore_index={self.ignore_index}"
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing}{extra})"
