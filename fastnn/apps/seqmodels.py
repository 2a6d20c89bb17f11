"""Two small next-token models over a fixed context (fn.Module subclasses whose
internal forward/backward chain their children's), for the
language-model table: each takes (batch, context) token ids and returns
(batch, vocab) logits for the next token, to train with fn.CrossEntropyLoss.

- ``BagOfWordsLM``: the mean of the context's embeddings (EmbeddingBag) -> Linear.
  Order-blind: the baseline.
- ``CausalConvLM``: Embedding -> a stack of causal Conv1d + ReLU (dilation
  doubling per layer, WaveNet style) -> Linear on the last position, which sees
  the whole receptive field
  1 + (kernel_size - 1) * (2**layers - 1) tokens.
"""
import numpy as np

from .. import _validation as V
from ..nn.layers import Embedding, Linear
from ..nn.module import Module
from ..nn.sequence import Conv1d, EmbeddingBag


class _NextTokenModel(Module):
    """A next-token model built from named positive sizes (vocab first), each kept
    as an attribute and a config key, with its dtype and per_position flag."""

    def __init__(self, dtype, per_position, **sizes):
        super().__init__()
        self.per_position = bool(per_position)
        self._sizes = tuple(sizes)
        for name, value in sizes.items():
            setattr(self, name, V.positive_int(value, name))
        self._dtype = V.as_dtype(dtype)

    def config(self):
        return {**{name: getattr(self, name) for name in self._sizes},
                "per_position": self.per_position}


class BagOfWordsLM(Module):
    """EmbeddingBag(vocab, dim, mode="mean") -> Linear(dim, vocab)."""

    def __init__(self, vocab, dim, dtype="float32"):
        super().__init__()
        self.vocab = V.positive_int(vocab, "vocab")
        self.dim = V.positive_int(dim, "dim")
        self._dtype = V.as_dtype(dtype)
        self.bag = EmbeddingBag(self.vocab, self.dim, mode="mean", dtype=dtype)
        self.head = Linear(self.dim, self.vocab, dtype=dtype)
        self._to_dtype(self._dtype)

    def _check_input(self, x):
        return self.bag._check_input(x)

    # the children's internal calls: the ids are checked once, nothing is copied
    def _forward(self, x):
        self._out = self.head._forward(self.bag._forward(x))
        return self._out

    def _backward(self, grad, accumulate, need_input_grad):
        self.bag._backward(self.head._backward(grad, accumulate, True), accumulate, False)
        return None

    def config(self):
        return {"vocab": self.vocab, "dim": self.dim}


class CausalConvLM(_NextTokenModel):
    """Embedding(vocab, dim) -> [Conv1d(causal, dilation 2**i) -> ReLU] * layers
    -> Linear(channels, vocab) at the last position.

    Every position is computed, as torch does; the activations stay (batch, time,
    channels), the Embedding's layout, through the whole stack (no transposes),
    with each ReLU fused into its convolution. With ``per_position=True`` the head
    runs at every position: logits (batch, context, vocab), the t-th predicting
    the token after position t (train with (batch, context) targets)."""

    def __init__(self, vocab, dim, channels, kernel_size, layers, dtype="float32",
                 per_position=False):
        super().__init__(dtype, per_position, vocab=vocab, dim=dim, channels=channels,
                         kernel_size=kernel_size, layers=layers)
        self.embed = Embedding(self.vocab, self.dim, dtype=dtype)
        for i in range(self.layers):
            setattr(self, f"conv{i}", Conv1d(self.dim if i == 0 else self.channels, self.channels,
                                             self.kernel_size, dilation=2 ** i, causal=True,
                                             dtype=dtype))
        self.head = Linear(self.channels, self.vocab, dtype=dtype)

    @property
    def receptive_field(self):
        return 1 + (self.kernel_size - 1) * (2 ** self.layers - 1)

    def _convs(self):
        return [getattr(self, f"conv{i}") for i in range(self.layers)]

    def _check_input(self, x):
        x = self.embed._check_input(x)
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"x must be token ids of shape (batch, context), got {x.shape}")
        return x

    def _forward(self, x):
        h = self.embed._forward(x)  # (batch, time, dim)
        for conv in self._convs():
            h = conv._forward_time_major(h, relu=True)
        self._shape = h.shape
        if not self.per_position:
            last = self._buffer("last", (h.shape[0], h.shape[2]))
            np.copyto(last, h[:, -1])
            h = last
        self._out = self.head._forward(h)
        return self._out

    def _backward(self, grad, accumulate, need_input_grad):
        g = self.head._backward(grad, accumulate, True)
        if not self.per_position:
            full = self._buffer("g", self._shape)
            full[:, :-1] = 0  # only the last position reaches the head
            full[:, -1] = g
            g = full
        for conv in reversed(self._convs()):
            g = conv._backward_time_major(g, accumulate, True)
        self.embed._backward(g, accumulate, False)
        return None
