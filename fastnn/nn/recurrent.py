"""Recurrent layers: GRU and LSTM, with PyTorch's constructor, weight layout,
state-dict names, gate order and initialization, so a state dict moves between
fastnn and ``torch.nn.GRU`` / ``torch.nn.LSTM`` unchanged.

Each layer of the stack is two compiled calls (csrc/fnn_rnn.h): forward runs the
input projection of all time steps as one GEMM, then the time loop in one
parallel region, each thread owning a block of hidden units (its rows of
``h W_hh^T + b_hh`` over W_hh packed once per call, then its gates, one barrier
per step); backward runs through time the same way (fused gate backward, then
its columns of ``dG W_hh``), then the weight gradients and the input gradient as
single GEMMs over all steps.

The library has no autograd, so the gradients flow explicitly::

    gru = fn.GRU(8, 16, num_layers=2)
    out, h_n = gru(x, h0)                 # x (T, B, 8), h0 (2, B, 16) or None
    gx, gh0 = gru.backward(g_out, g_h_n)  # g_h_n may be None (no loss on h_n)

    lstm = fn.LSTM(8, 16, batch_first=True)
    out, (h_n, c_n) = lstm(x, (h0, c0))   # x (B, T, 8); the state may be None
    gx, (gh0, gc0) = lstm.backward(g_out, g_h_n, g_c_n)

Inside a model, the internal ``_forward(x)`` returns ``output`` alone and
``_backward(grad, accumulate, need_input_grad)`` takes its gradient, so a GRU can
also stand where a layer returning one array is expected.
"""
import math

import numpy as np

from .. import _memory, _random
from .. import _validation as V
from .._kernels import _ops
from .module import Module
from .parameter import Parameter

__all__ = ["GRU", "LSTM"]


class _RNNBase(Module):
    _gates = 0  # gate blocks stacked in the weights: 3 (GRU) or 4 (LSTM)
    _has_cell = False
    _transient = Module._transient + ("_xt", "_hs", "_cs", "_g", "_gh", "_hn", "_cn", "_dh",
                                      "_dc", "_dims", "_g_in", "_dg")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        self.input_size = V.positive_int(input_size, "input_size")
        self.hidden_size = V.positive_int(hidden_size, "hidden_size")
        self.num_layers = V.positive_int(num_layers, "num_layers")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout!r}")
        if dropout != 0:
            raise ValueError(f"{name}: dropout between layers is not implemented (got "
                             f"dropout={dropout!r}); put a Dropout on the output instead")
        if bidirectional:
            raise ValueError(f"{name}: bidirectional=True is not implemented")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = 0.0
        self.bidirectional = False
        self._dtype = V.as_dtype(dtype)
        H, G = self.hidden_size, self._gates
        n = sum(G * H * ((self.input_size if l == 0 else H) + H + 2 * self.bias)
                for l in range(self.num_layers))
        _memory.check(2 * self._dtype.itemsize * n,
                      f"{name}{(self.input_size, H, self.num_layers)}'s weights and gradients")
        bound = 1.0 / math.sqrt(H)  # torch: every weight and bias U(-1/sqrt(H), 1/sqrt(H))
        for l in range(self.num_layers):
            shapes = [("weight_ih", (G * H, self.input_size if l == 0 else H)),
                      ("weight_hh", (G * H, H))]
            if self.bias:
                shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
            for kind, shape in shapes:
                w = _random.uniform_(np.empty(shape, self._dtype), -bound, bound)
                self.register_parameter(f"{kind}_l{l}", Parameter._adopt(w))

    def _layer(self, l):
        p = self._parameters
        b_ih, b_hh = p.get(f"bias_ih_l{l}"), p.get(f"bias_hh_l{l}")
        return p[f"weight_ih_l{l}"], p[f"weight_hh_l{l}"], b_ih, b_hh

    # --- checks ----------------------------------------------------------------
    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        layout = "(batch, seq_len, input_size)" if self.batch_first else \
            "(seq_len, batch, input_size)"
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D {layout} with input_size={self.input_size}, got "
                             f"shape {x.shape}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size={self.input_size} features (last axis), "
                             f"got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x is empty (shape {x.shape}, layout {layout})")
        return x

    def _batch(self, x):
        return x.shape[0] if self.batch_first else x.shape[1]

    def _check_state(self, h, name, batch):
        h = V.as_float_array(h, name, self._dtype)
        want = (self.num_layers, batch, self.hidden_size)
        if h.shape != want:
            raise ValueError(f"{name} must have shape (num_layers, batch, hidden_size) = {want}, "
                             f"got {h.shape}")
        return h

    # --- computation -------------------------------------------------------------
    def _gates0(self, T, B):
        """Layer 0's gate workspace (T, B, G*H), for a caller that computes the input
        projection x W_ih^T + b_ih itself (the language models, from a table of it
        per token): fill it, then call _forward(None)."""
        self._dims = (T, B)
        self._g_in = self._buffer("g", (self.num_layers, T, B, self._gates * self.hidden_size))
        return self._g_in[0]

    def _dgates0(self):
        """After _backward of a _forward(None): the gradient of layer 0's input
        projection (T, B, G*H), whose parameter and input gradients the caller owns."""
        return self._dg

    def _forward(self, x, h0=None, c0=None, last_only=False):
        """output (view of a workspace), or with last_only the last layer's h_n alone
        (batch, hidden); h_n (and c_n) kept in self._hn (self._cn). x None: layer 0's
        input projection is already in _gates0(T, B)."""
        L, H, G = self.num_layers, self.hidden_size, self._gates
        if x is None:
            T, B = self._dims
            xt = None
        elif self.batch_first:
            B, T = x.shape[0], x.shape[1]
            xt = self._buffer("xt", (T, B, x.shape[2]))
            np.copyto(xt, x.transpose(1, 0, 2))
        else:
            T, B = x.shape[0], x.shape[1]
            xt = x
        hs = self._buffer("hs", (L, T + 1, B, H))
        g = self._g_in if x is None else self._buffer("g", (L, T, B, G * H))
        cs = gh = None
        if self._has_cell:
            cs = self._buffer("cs", (L, T + 1, B, H))
            gh = self._buffer("gh", (B, G * H))
        else:
            gh = self._buffer("gh", (L, T, B, G * H))
        wp = self._buffer("wp", (_ops.rnn_pack_size(G, H),))
        inp = xt
        for l in range(L):
            w_ih, w_hh, b_ih, b_hh = self._layer(l)
            b_ih = None if b_ih is None else b_ih.data
            b_hh = None if b_hh is None else b_hh.data
            if h0 is None:
                hs[l, 0] = 0
            else:
                hs[l, 0] = h0[l]
            if self._has_cell:
                if c0 is None:
                    cs[l, 0] = 0
                else:
                    cs[l, 0] = c0[l]
                _ops.lstm_forward(inp, w_ih.data, w_hh.data, b_ih, b_hh, hs[l], cs[l], g[l], gh,
                                  wp)
            else:
                _ops.gru_forward(inp, w_ih.data, w_hh.data, b_ih, b_hh, hs[l], g[l], gh[l], wp)
            inp = hs[l, 1:]
        if last_only:
            out = hs[L - 1, T]
        elif self.batch_first:
            out = self._buffer("out", (B, T, H))
            np.copyto(out, inp.transpose(1, 0, 2))
        else:
            out = inp
        self._hn = hs[:, T]
        self._cn = cs[:, T] if self._has_cell else None
        self._xt, self._hs, self._cs, self._g, self._gh = xt, hs, cs, g, gh
        self._dims = (T, B)
        self._out = out
        return out

    def _backward(self, grad, accumulate, need_input_grad, grad_h=None, grad_c=None):
        """From grad (of output; None: zero), grad_h / grad_c (of h_n / c_n; None:
        zero). Returns the input gradient (or None); the gradients of h0 (and c0)
        are left in self._dh (self._dc), (num_layers, batch, hidden) each."""
        L, H, G = self.num_layers, self.hidden_size, self._gates
        T, B = self._dims
        if grad is None:
            fresh = ("gy0", (T, B, H)) not in self._workspace
            gy = self._buffer("gy0", (T, B, H))
            if fresh:  # the kernels only read it
                gy[...] = 0
        elif self.batch_first:
            gy = self._buffer("gyt", (T, B, H))
            np.copyto(gy, grad.transpose(1, 0, 2))
        else:
            gy = grad
        dh = self._buffer("dh", (L, B, H))
        dh[...] = 0 if grad_h is None else grad_h
        dc = None
        if self._has_cell:
            dc = self._buffer("dc", (L, B, H))
            dc[...] = 0 if grad_c is None else grad_c
        dg = self._buffer("dgx", (T, B, G * H))
        dgh = None if self._has_cell else self._buffer("dgh", (T, B, G * H))
        mid = self._buffer("gmid", (2, T, B, H)) if L > 1 else None
        wp = self._buffer("wp", (_ops.rnn_pack_size(G, H),))
        gx = None
        for l in range(L - 1, -1, -1):
            w_ih, w_hh, b_ih, b_hh = self._layer(l)
            inp = self._xt if l == 0 else self._hs[l - 1, 1:]
            if l > 0:
                gx = mid[l % 2]
            elif need_input_grad and inp is not None:
                gx = self._buffer("gx", self._xt.shape)
            else:
                gx = None
            gb_ih = None if b_ih is None else b_ih.grad
            gb_hh = None if b_hh is None else b_hh.grad
            if self._has_cell:
                _ops.lstm_backward(inp, w_ih.data, w_hh.data, self._hs[l], self._cs[l],
                                   self._g[l], gy, dh[l], dc[l], dg, gx, w_ih.grad, w_hh.grad,
                                   gb_ih, gb_hh, wp, accumulate)
            else:
                _ops.gru_backward(inp, w_ih.data, w_hh.data, self._hs[l], self._g[l],
                                  self._gh[l], gy, dh[l], dg, dgh, gx, w_ih.grad, w_hh.grad,
                                  gb_ih, gb_hh, wp, accumulate)
            gy = gx
        self._dh, self._dc, self._dg = dh, dc, dg
        if gx is None or not self.batch_first:
            return gx
        gxb = self._buffer("gxb", (B, T, self.input_size))
        np.copyto(gxb, gx.transpose(1, 0, 2))
        return gxb

    # --- the public, validated calls ---------------------------------------------
    def __call__(self, x, hx=None):
        return self.forward(x, hx)

    def _check_grad_out(self, grad):
        if getattr(self, "_out", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if grad is None:
            return None
        return self._check_grad(grad)

    def _check_grad_state(self, g, name):
        if g is None:
            return None
        return self._check_state(g, name, self._dims[1])

    def predict(self, x, batch_size=1024):
        """The output of forward (zero initial state), in batches along the batch axis."""
        batch_size = V.positive_int(batch_size, "batch_size")
        x = self._check_input(x)
        ax = 0 if self.batch_first else 1
        outs = []
        for i in range(0, x.shape[ax], batch_size):
            xi = x[i:i + batch_size] if ax == 0 else np.ascontiguousarray(x[:, i:i + batch_size])
            outs.append(np.array(self._forward(xi)))
        return np.concatenate(outs, axis=ax)

    def config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s


class GRU(_RNNBase):
    """A multi-layer gated recurrent unit, ``torch.nn.GRU``'s semantics:

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    ``forward(x, h0=None)``: x (seq_len, batch, input_size), or (batch, seq_len,
    input_size) with batch_first; h0 (num_layers, batch, hidden_size) or None
    (zeros). Returns ``(output, h_n)``: output (seq_len, batch, hidden_size)
    (batch first with batch_first), the last layer's h_t for every t; h_n
    (num_layers, batch, hidden_size), every layer's last state.

    ``backward(grad_output, grad_h_n=None, accumulate=False)``: the gradients of
    the loss with respect to output and to h_n (None: the loss does not use it)
    of the last forward. Parameter gradients are written (added with
    accumulate=True); returns ``(grad_x, grad_h0)``, shaped like x and h0.

    dropout and bidirectional are not implemented (a non-default value raises).
    """
    _gates = 3

    def forward(self, x, h0=None):
        x = self._check_input(x)
        if h0 is not None:
            h0 = self._check_state(h0, "h0", self._batch(x))
        out = self._forward(x, h0)
        return out.copy(), self._hn.copy()

    def backward(self, grad_output, grad_h_n=None, accumulate=False):
        grad = self._check_grad_out(grad_output)
        gh = self._check_grad_state(grad_h_n, "grad_h_n")
        gx = self._backward(grad, accumulate, True, gh)
        return gx.copy(), self._dh.copy()


class LSTM(_RNNBase):
    """A multi-layer long short-term memory, ``torch.nn.LSTM``'s semantics (no
    projection, proj_size=0), gates in torch's order i, f, g, o:

        i, f, o = sigmoid(W_i. x + b_i. + W_h. h + b_h.),  g = tanh(...)
        c' = f * c + i * g,   h' = o * tanh(c')

    ``forward(x, hx=None)``: x as for GRU; hx a pair (h0, c0), each
    (num_layers, batch, hidden_size) or None (zeros). Returns
    ``(output, (h_n, c_n))``.

    ``backward(grad_output, grad_h_n=None, grad_c_n=None, accumulate=False)``:
    gradients of the loss with respect to output, h_n and c_n (None: unused).
    Returns ``(grad_x, (grad_h0, grad_c0))``.
    """
    _gates = 4
    _has_cell = True

    def forward(self, x, hx=None):
        x = self._check_input(x)
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("LSTM: hx must be a pair (h0, c0) (either may be None), got "
                                 f"{type(hx).__name__}")
            h0, c0 = hx
            B = self._batch(x)
            h0 = None if h0 is None else self._check_state(h0, "h0", B)
            c0 = None if c0 is None else self._check_state(c0, "c0", B)
        out = self._forward(x, h0, c0)
        return out.copy(), (self._hn.copy(), self._cn.copy())

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None, accumulate=False):
        grad = self._check_grad_out(grad_output)
        gh = self._check_grad_state(grad_h_n, "grad_h_n")
        gc = self._check_grad_state(grad_c_n, "grad_c_n")
        gx = self._backward(grad, accumulate, True, gh, gc)
        return gx.copy(), (self._dh.copy(), self._dc.copy())
