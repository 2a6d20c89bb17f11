"""A small next-token transformer language model, written as an ordinary
fastnn Module with its own forward and backward (no autograd engine):

    ids (batch, seq) -> Embedding + PositionalEmbedding -> N pre-LN causal
    TransformerBlocks -> LayerNorm -> Linear on the last position -> (batch, vocab) logits

so it trains with ``fn.Trainer(model, fn.CrossEntropyLoss(), opt).fit(ids, next_ids)``.
"""

from .. import _validation as V
from .._kernels import _ops
from ..nn.attention import PositionalEmbedding, TransformerBlock, _heads
from ..nn.layers import Embedding, LayerNorm, Linear
from ..nn.module import Module
from .seqmodels import _NextTokenModel

__all__ = ["TransformerLM"]


class _Blocks(Module):
    """The blocks in order, named "0", "1", ... (torch's ModuleList keys). With
    ``last_only`` only the last position of the last block is read, so that block
    computes it alone."""

    def __init__(self, blocks, last_only):
        super().__init__()
        self.last_only = last_only
        for i, b in enumerate(blocks):
            self.add_module(str(i), b)

    def _forward(self, x):
        *first, last = self._modules.values()
        for b in first:
            x = b._forward(x)
        self._out = last._forward_last(x) if self.last_only else last._forward(x)
        return self._out

    def _backward(self, grad, accumulate, need_input_grad):
        *first, last = self._modules.values()
        grad = (last._backward_last(grad, accumulate) if self.last_only
                else last._backward(grad, accumulate, True))
        for b in reversed(first):
            grad = b._backward(grad, accumulate, True)
        return grad


class TransformerLM(_NextTokenModel):
    """Predicts the token after a window of at most ``context`` token ids:
    (batch, seq) ids -> (batch, vocab) logits; with ``per_position=True`` the
    token after every position, (batch, seq, vocab) logits, trained with
    (batch, seq) targets (the causal mask keeps position t from seeing later ids).

    Parameters: ``embed.weight`` (vocab, d_model), ``pos.weight`` (context, d_model),
    ``blocks.{i}.*`` (TransformerBlock, causal), ``norm.*``, ``head.*`` (vocab, d_model)."""

    _transient = Module._transient + ("_last",)

    def __init__(self, vocab, d_model, nhead, layers, context, dim_feedforward=None,
                 dtype="float32", per_position=False):
        super().__init__(dtype, per_position, vocab=vocab, d_model=d_model, nhead=nhead,
                         layers=layers, context=context)
        _heads(self.d_model, self.nhead, "d_model", "nhead")
        self.dim_feedforward = (4 * self.d_model if dim_feedforward is None
                                else V.positive_int(dim_feedforward, "dim_feedforward"))
        dt = self._dtype
        self.embed = Embedding(self.vocab, self.d_model, dtype=dt)
        self.pos = PositionalEmbedding(self.context, self.d_model, dtype=dt)
        self.blocks = _Blocks([TransformerBlock(self.d_model, self.nhead, self.dim_feedforward,
                                                dtype=dt) for _ in range(self.layers)],
                              last_only=not self.per_position)
        self.norm = LayerNorm(self.d_model, dtype=dt)
        self.head = Linear(self.d_model, self.vocab, dtype=dt)

    def _check_input(self, x):
        x = V.as_index_array(x, "x", self.vocab)
        if x.ndim != 2:
            raise ValueError(f"x must be token ids of shape (batch, seq), got shape {x.shape}")
        if not 1 <= x.shape[1] <= self.context:
            raise ValueError(f"x's sequence length must be in [1, context={self.context}], "
                             f"got {x.shape[1]}")
        V.check_batch(x, "x")
        return x

    def _forward(self, x):
        z = self.norm._forward(self.blocks._forward(self.pos._forward(self.embed._forward(x))))
        if self.per_position:
            self._out = self.head._forward(z)
            return self._out
        out = self._buffer("logits", (x.shape[0], self.vocab))
        hb = self.head.bias
        _ops.linear_forward(z, self.head.weight.data, hb.data, _ops.ACT_NONE, 0.0, None, out)
        self._last, self._out = z, out
        return out

    def _backward(self, grad, accumulate, need_input_grad):
        if self.per_position:
            glast = self.head._backward(grad, accumulate, True)
        else:
            hw, hb = self.head.weight, self.head.bias
            glast = self._buffer("glast", self._last.shape)
            _ops.linear_backward(self._last, hw.data, _ops.ACT_NONE, 0.0, None, None, grad, grad,
                                 glast, hw.grad, hb.grad, accumulate)
        gz = self.norm._backward(glast, accumulate, True)
        g = self.pos._backward(self.blocks._backward(gz, accumulate, True), accumulate, True)
        self.embed._backward(g, accumulate, False)
        return None

    def config(self):
        return {**super().config(), "dim_feedforward": self.dim_feedforward}

    def extra_repr(self):
        return (f"vocab={self.vocab}, d_model={self.d_model}, nhead={self.nhead}, "
                f"layers={self.layers}, context={self.context}")

    def __repr__(self):
        return f"TransformerLM({self.extra_repr()})"
