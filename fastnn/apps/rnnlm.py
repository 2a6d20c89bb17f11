"""Recurrent next-token language models: Embedding -> GRU / LSTM -> Linear.

``GRULM(vocab, dim, hidden)`` and ``LSTMLM(vocab, dim, hidden)`` read int ids
of shape (batch, context), run the recurrent stack over the context (batch
first) and map the last step's hidden state to next-token logits (batch,
vocab), so they train with ``fn.Trainer(model, fn.CrossEntropyLoss(), opt).fit``
like any classifier::

    model = GRULM(vocab=50, dim=16, hidden=64)
    fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), 1e-2)).fit(X, y)

They are the pattern for any model with a recurrent layer inside: a Module whose
forward chains its children and whose backward chains their backwards in
reverse, feeding the recurrent layer the gradient of its output.
"""
import numpy as np

from .. import _validation as V
from .._kernels import _ops
from ..nn.layers import Embedding, Linear
from ..nn.module import Module
from ..nn.recurrent import GRU, LSTM

__all__ = ["GRULM", "LSTMLM"]


class _RecurrentLM(Module):
    _cell = None

    def __init__(self, vocab, dim, hidden, num_layers=1, dtype="float32", per_position=False):
        super().__init__()
        self.per_position = bool(per_position)
        self.vocab = V.positive_int(vocab, "vocab")
        self.dim = V.positive_int(dim, "dim")
        self.hidden = V.positive_int(hidden, "hidden")
        self._dtype = V.as_dtype(dtype)
        self.embedding = Embedding(self.vocab, self.dim, dtype=dtype)
        self.rnn = self._cell(self.dim, self.hidden, num_layers=num_layers, batch_first=True,
                              dtype=dtype)
        self.head = Linear(self.hidden, self.vocab, dtype=dtype)

    def _check_input(self, x):
        x = V.as_index_array(x, "x", self.vocab)
        if x.ndim != 2:
            raise ValueError(f"x must be token ids of shape (batch, context), got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x is empty (shape {x.shape})")
        return x

    # The recurrent layer's first input projection e W_ih^T + b_ih of an embedded
    # token depends on the token alone: it is computed once per step for the whole
    # vocabulary (a (vocab, dim) product) and gathered per position, and its
    # gradient is scattered back per token before the products for W_ih, b_ih and
    # the embedding, so three (batch*context, dim) GEMMs shrink to (vocab, dim)
    # ones. When the vocabulary has more tokens than the batch has positions the
    # table would cost more, and the embedding and the recurrent layer run as layers.
    def _forward(self, x):
        B, C = x.shape
        self._by_layers = self.vocab > B * C
        if self._by_layers:
            out = self.rnn._forward(self.embedding._forward(x), last_only=not self.per_position)
            self._out = self.head._forward(out)
            return self._out
        ids = self._buffer("ids", (C, B), np.int64)    # time-major, as the GRU/LSTM runs
        np.copyto(ids, x.T)
        w_ih, b_ih = self._input_side()
        table = self._buffer("table", (self.vocab, w_ih.shape[0]))
        _ops.linear_forward(self.embedding.weight.data, w_ih.data,
                            None if b_ih is None else b_ih.data, _ops.ACT_NONE, 0.0, None, table)
        g0 = self.rnn._gates0(C, B)
        _ops.embedding_forward(ids.reshape(-1), table, g0.reshape(C * B, -1))
        # (batch, hidden), the last step; per position (batch, context, hidden)
        out = self.rnn._forward(None, last_only=not self.per_position)
        self._out = self.head._forward(out)
        return self._out

    def _input_side(self):
        p = self.rnn._parameters
        return p["weight_ih_l0"], p.get("bias_ih_l0")

    def _backward(self, grad, accumulate, need_input_grad):
        g = self.head._backward(grad, accumulate, True)
        g_out = gh = None
        if self.per_position:
            g_out = g
        else:
            gh = self._buffer("g_hn", (self.rnn.num_layers, g.shape[0], self.hidden))
            gh[:-1] = 0
            gh[-1] = g                                 # only the last step feeds the head
        if self._by_layers:
            gx = self.rnn._backward(g_out, accumulate, True, gh)
            self.embedding._backward(gx, accumulate, False)
            return None
        self.rnn._backward(g_out, accumulate, False, gh)
        C, B = self.rnn._dims
        w_ih, b_ih = self._input_side()
        gtable = self._buffer("gtable", (self.vocab, w_ih.shape[0]))
        _ops.embedding_backward(self._buffer("ids", (C, B), np.int64).reshape(-1),
                                self.rnn._dgates0().reshape(C * B, -1), gtable)
        emb = self.embedding.weight
        gemb = self._buffer("gemb", emb.grad.shape) if accumulate else emb.grad
        _ops.linear_backward(emb.data, w_ih.data, _ops.ACT_NONE, 0.0, None, None, gtable, gtable,
                             gemb, w_ih.grad, None if b_ih is None else b_ih.grad, accumulate)
        if accumulate:
            emb.grad += gemb
        return None

    def config(self):
        return {"vocab": self.vocab, "dim": self.dim, "hidden": self.hidden,
                "num_layers": self.rnn.num_layers, "per_position": self.per_position}

    def extra_repr(self):
        return f"vocab={self.vocab}, dim={self.dim}, hidden={self.hidden}"


class GRULM(_RecurrentLM):
    """(batch, context) ids -> Embedding(vocab, dim) -> GRU(dim, hidden, batch_first)
    -> last step -> Linear(hidden, vocab): next-token logits (batch, vocab). With
    ``per_position=True`` the head runs at every step: (batch, context, vocab)
    logits, trained with (batch, context) targets."""
    _cell = GRU


class LSTMLM(_RecurrentLM):
    """As GRULM with an LSTM."""
    _cell = LSTM
