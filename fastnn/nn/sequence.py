"""Layers over sequences: EmbeddingBag (a bag of ids -> one vector) and Conv1d
(a 1-D convolution over (batch, channels, time), with a causal option for
language models). PyTorch's names, shapes, defaults and initialization, so a
state dict loads into torch unchanged; compiled kernels in csrc/fnn_seq.h."""
import math
import numbers

import numpy as np

from .. import _memory, _random
from .. import _validation as V
from .._kernels import _ops
from .layers import _WeightAndBias, _WeightTable
from .module import Module
from .parameter import Parameter


class EmbeddingBag(_WeightTable):
    """torch.nn.EmbeddingBag over fixed-size bags: ids (batch, bag) -> the sum, the
    mean or the columnwise max of the bag's rows of ``weight`` (num_embeddings,
    embedding_dim), shape (batch, embedding_dim). ``weight`` starts N(0, 1), like
    Embedding. The backward scatter-add is deterministic and independent of the
    thread count."""

    _transient = Module._transient + ("_arg",)

    MODES = {"sum": _ops.BAG_SUM, "mean": _ops.BAG_MEAN, "max": _ops.BAG_MAX}

    def __init__(self, num_embeddings, embedding_dim, mode="mean", dtype="float32"):
        super().__init__(num_embeddings, embedding_dim, dtype)
        if mode not in self.MODES:
            raise ValueError(f"EmbeddingBag: mode must be one of {tuple(self.MODES)}, got {mode!r}")
        self.mode = mode

    def _check_input(self, x):
        x = V.as_index_array(x, "x", self.num_embeddings)
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"x must be ids of shape (batch, bag) with a non-empty bag, got "
                             f"shape {x.shape}")
        V.check_batch(x, "x")
        return x

    def _forward(self, x):
        y = self._buffer("y", (x.shape[0], self.embedding_dim))
        idx = x.reshape(-1)
        mode = self.MODES[self.mode]
        arg = self._buffer("arg", y.shape, np.int64) if mode == _ops.BAG_MAX else None
        _ops.embedding_bag_forward(idx, self.weight.data, mode, y, arg)
        self._idx, self._arg, self._out = idx, arg, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        _ops.embedding_bag_backward(self._idx, grad, self.MODES[self.mode], self._arg,
                                    self.weight.grad, accumulate)
        return None

    def config(self):
        return {**super().config(), "mode": self.mode}

    def extra_repr(self):
        return f"{super().extra_repr()}, mode={self.mode!r}"


def _int_arg(value, name, low):
    """An int (or a 1-tuple of one, as torch accepts) >= low, else ValueError naming it."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"Conv1d: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class Conv1d(_WeightAndBias, Module):
    """torch.nn.Conv1d on x (batch, in_channels, time) -> (batch, out_channels, time_out),
    weight (out_channels, in_channels / groups, kernel_size), bias (out_channels,),
    PyTorch's initialization (both U(+-1/sqrt(in_channels / groups * kernel_size))).
    ``padding`` is an int, "valid" or "same" (stride 1); ``groups`` splits the
    channels into independent convolutions; only ``padding_mode="zeros"``.

    ``causal=True`` (fastnn's own option) pads dilation*(kernel_size-1) zeros on the
    left only, so the output has the input's length and position t sees inputs
    t, t-dilation, ... only: the recipe for a convolutional language model (stack
    causal layers, read the logits at the last position).

    Compiled in the (batch, time, channels) layout: an unfold whose rows are the k
    input rows each position reads, then one Linear product over all batch*time
    positions with the bias fused (the engine's GEMM plans: results independent
    of the thread count); dX folded back per sequence. This layer's
    (batch, channels, time) input and output are transposed around it."""

    _transient = Module._transient + ("_col", "_wr", "_yt", "_yg")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", causal=False, dtype="float32"):
        super().__init__()
        self.in_channels = V.positive_int(in_channels, "in_channels")
        self.out_channels = V.positive_int(out_channels, "out_channels")
        self.kernel_size = _int_arg(kernel_size, "kernel_size", 1)
        self.stride = _int_arg(stride, "stride", 1)
        self.dilation = _int_arg(dilation, "dilation", 1)
        self.groups = _int_arg(groups, "groups", 1)
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ValueError(f"Conv1d: {name} ({getattr(self, name)}) must be divisible by "
                                 f"groups ({self.groups})")
        if padding_mode != "zeros":
            raise ValueError(f"Conv1d: padding_mode must be 'zeros' (the only one implemented), "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.causal = bool(causal)
        span = self.dilation * (self.kernel_size - 1)
        if isinstance(padding, str):
            if padding == "valid":
                left = right = 0
            elif padding == "same":
                if self.stride != 1:
                    raise ValueError("Conv1d: padding='same' needs stride=1 (as in torch)")
                left, right = span // 2, span - span // 2
            else:
                raise ValueError(f"Conv1d: padding must be an int, 'valid' or 'same', got {padding!r}")
        else:
            left = right = _int_arg(padding, "padding", 0)
        self.padding = padding if isinstance(padding, str) else left  # as given (torch's attribute)
        if self.causal:
            if padding not in (0, "valid"):
                raise ValueError(f"Conv1d: causal=True pads on the left itself; padding must be 0, "
                                 f"got {padding!r}")
            left, right = span, 0
        self._pads = (left, right)
        self._dtype = V.as_dtype(dtype)
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size)
        n_w = shape[0] * shape[1] * shape[2]
        _memory.check(2 * self._dtype.itemsize * (n_w + shape[0]),
                      f"Conv1d{(self.in_channels, self.out_channels, self.kernel_size)}'s weights "
                      "and gradients")
        bound = 1.0 / math.sqrt(shape[1] * self.kernel_size)
        w = _random.uniform_(np.empty(shape, self._dtype), -bound, bound)
        self.register_parameter("weight", Parameter._adopt(w))
        if bias:
            b = _random.uniform_(np.empty(self.out_channels, self._dtype), -bound, bound)
            self.register_parameter("bias", Parameter._adopt(b))

    def output_length(self, length):
        """The output's time length for an input of ``length`` steps (< 1: too short)."""
        left, right = self._pads
        return (length + left + right - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, time) "
                             f"(in_channels={self.in_channels}), got {x.shape}"
                             + (" (a (batch, time, channels) input needs x.transpose(0, 2, 1))"
                                if x.ndim == 3 and x.shape[2] == self.in_channels else ""))
        V.check_batch(x, "x")
        if x.shape[2] == 0 or self.output_length(x.shape[2]) < 1:
            field = self.dilation * (self.kernel_size - 1) + 1
            raise ValueError(f"x has time length {x.shape[2]}, shorter than the receptive field "
                             f"{field} (kernel_size={self.kernel_size}, dilation={self.dilation}) "
                             f"with padding {self._pads}")
        return x

    def _forward(self, x):
        xt = self._buffer("xt", (x.shape[0], x.shape[2], x.shape[1]))
        np.copyto(xt, x.transpose(0, 2, 1))
        y = self._buffer("y", (x.shape[0], self.out_channels, self.output_length(x.shape[2])))
        np.copyto(y, self._forward_time_major(xt).transpose(0, 2, 1))
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        gt = self._buffer("gyt", self._yt.shape)
        np.copyto(gt, grad.transpose(0, 2, 1))
        gxt = self._backward_time_major(gt, accumulate, need_input_grad)
        if gxt is None:
            return None
        gx = self._buffer("gx", (gxt.shape[0], gxt.shape[2], gxt.shape[1]))
        np.copyto(gx, gxt.transpose(0, 2, 1))
        return gx

    # The compiled form works on (batch, time, channels), the layout an Embedding
    # gives: a model that keeps it through a stack of convolutions (CausalConvLM)
    # calls these and never transposes; ``relu`` fuses the activation.
    def _forward_time_major(self, x, relu=False):
        B, L, G = x.shape[0], x.shape[1], self.groups
        l_out = self.output_length(L)
        cin, cout = self.in_channels // G, self.out_channels // G
        K = cin * self.kernel_size
        wr = self._buffer("wr", (G, cout, K))
        col = self._buffer("col", (G, B * l_out, K))
        y = self._buffer("yt", (B, l_out, self.out_channels))
        # groups > 1: each group's channels gathered, computed and scattered back
        xg = self._buffer("xg", (G, B, L, cin)) if G > 1 else x[None]
        yg = self._buffer("yg", (G, B, l_out, cout)) if G > 1 else y[None]
        w, b = self.weight.data, self.bias
        left, right = self._pads
        for g in range(G):
            if G > 1:
                np.copyto(xg[g], x[:, :, g * cin:(g + 1) * cin])
            _ops.conv1d_forward(xg[g], w[g * cout:(g + 1) * cout],
                                None if b is None else b.data[g * cout:(g + 1) * cout],
                                self.stride, self.dilation, left, right, relu, wr[g], col[g],
                                yg[g])
            if G > 1:
                y[:, :, g * cout:(g + 1) * cout] = yg[g]
        self._wr, self._col, self._xshape, self._yt, self._yg, self._relu = \
            wr, col, x.shape, y, yg, relu
        return y

    def _backward_time_major(self, grad, accumulate, need_input_grad):
        G, (B, L, _), b = self.groups, self._xshape, self.bias
        cin, cout = self.in_channels // G, self.out_channels // G
        left, right = self._pads
        yg = self._yg
        gyg = self._buffer("gyg", yg.shape) if G > 1 else grad[None]
        gz = self._buffer("gz", yg.shape) if self._relu else [None] * G
        dwr = self._buffer("dwr", self._wr.shape[1:])
        gx = self._buffer("gxt", self._xshape) if need_input_grad else None
        gxg = (self._buffer("gxg", (G, B, L, cin)) if G > 1 else gx[None]) \
            if need_input_grad else [None] * G
        dcol = self._buffer("dcol", self._col.shape[1:]) if need_input_grad else None
        gw = self.weight.grad
        for g in range(G):
            if G > 1:
                np.copyto(gyg[g], grad[:, :, g * cout:(g + 1) * cout])
            _ops.conv1d_backward(self._wr[g], self._col[g], yg[g], self._relu, gyg[g],
                                 self.stride, self.dilation, left, right, gz[g], dwr, dcol,
                                 gxg[g], gw[g * cout:(g + 1) * cout],
                                 None if b is None else b.grad[g * cout:(g + 1) * cout],
                                 accumulate)
            if G > 1 and need_input_grad:
                gx[:, :, g * cin:(g + 1) * cin] = gxg[g]
        return gx

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups, "bias": self.bias is not None,
                "padding_mode": self.padding_mode, "causal": self.causal}

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size=({self.kernel_size},), "
             f"stride=({self.stride},)")
        if self.causal:
            s += ", causal=True"
        elif self.padding != 0:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding=({self.padding},)"
        if self.dilation != 1:
            s += f", dilation=({self.dilation},)"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
