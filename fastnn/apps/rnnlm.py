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
from ..nn.layers import Embedding, Linear
from ..nn.module import Module
from ..nn.recurrent import GRU, LSTM

__all__ = ["GRULM", "LSTMLM"]


class _RecurrentLM(Module):
    _cell = None

    def __init__(self, vocab, dim, hidden, num_layers=1, dtype="float32"):
        super().__init__()
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

    def _forward(self, x):
        e = self.embedding._forward(x)                 # (batch, context, dim)
        out = self.rnn._forward(e)                     # (batch, context, hidden)
        last = self._buffer("last", (out.shape[0], self.hidden))
        np.copyto(last, out[:, -1])
        y = self.head._forward(last)                   # (batch, vocab)
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        g_last = self.head._backward(grad, accumulate, True)
        B, C = self.rnn._dims[1], self.rnn._dims[0]
        g_out = self._buffer("g_out", (B, C, self.hidden))
        g_out[...] = 0
        g_out[:, -1] = g_last                          # only the last step feeds the head
        g_emb = self.rnn._backward(g_out, accumulate, True)
        self.embedding._backward(g_emb, accumulate, False)
        return None

    def config(self):
        return {"vocab": self.vocab, "dim": self.dim, "hidden": self.hidden,
                "num_layers": self.rnn.num_layers}

    def extra_repr(self):
        return f"vocab={self.vocab}, dim={self.dim}, hidden={self.hidden}"


class GRULM(_RecurrentLM):
    """(batch, context) ids -> Embedding(vocab, dim) -> GRU(dim, hidden, batch_first)
    -> last step -> Linear(hidden, vocab): next-token logits (batch, vocab)."""
    _cell = GRU


class LSTMLM(_RecurrentLM):
    """As GRULM with an LSTM."""
    _cell = LSTM
