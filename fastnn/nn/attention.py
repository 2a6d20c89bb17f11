"""Attention and the pieces of a pre-LN transformer: MultiheadAttention,
TransformerBlock, PositionalEmbedding and Residual.

MultiheadAttention keeps torch.nn.MultiheadAttention's parameter names and
layouts, so its state dict loads into torch unchanged (and back); its forward
and backward are single compiled calls (``_ops.mha_forward``/``mha_backward``).
TransformerBlock names its parts like torch.nn.TransformerEncoderLayer
(``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``), so a block's state
dict loads into ``TransformerEncoderLayer(d_model, nhead, dim_feedforward,
dropout=0.0, activation="gelu", batch_first=True, norm_first=True)``.

There is no autograd engine: each module's backward replays its forward's
structure in reverse, from the workspaces its forward kept.
"""
import math
import numbers

import numpy as np

from .. import _random
from .. import _validation as V
from .._kernels import _ops
from .layers import LayerNorm, Linear, _parameter, _WeightTable
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention", "TransformerBlock", "PositionalEmbedding", "Residual"]


def _heads(width, heads, width_name, heads_name):
    """(width, heads), positive ints with width divisible by heads, else ValueError."""
    width = V.positive_int(width, width_name)
    heads = V.positive_int(heads, heads_name)
    if width % heads:
        raise ValueError(f"{width_name} must be divisible by {heads_name}, got "
                         f"{width_name}={width} and {heads_name}={heads}")
    return width, heads


def _probability(dropout, who):
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"{who}: dropout must be a probability in [0, 1], got {dropout!r}")
    return float(dropout)


def _no_dropout(dropout, who, where):
    if _probability(dropout, who) != 0.0:
        raise ValueError(f"{who}: dropout={dropout!r} is not implemented ({where}); "
                         "use dropout=0.0")
    return 0.0


class MultiheadAttention(Module):
    """Multi-head scaled dot-product self-attention, torch.nn.MultiheadAttention's
    parameters and semantics: ``in_proj_weight`` (3E, E), ``in_proj_bias`` (3E),
    ``out_proj.weight`` (E, E), ``out_proj.bias`` (E); inputs (L, N, E), or (N, L, E)
    with ``batch_first=True``.

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=False,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(attn_output, attn_weights or None)``. Self-attention only: key and value
    must be the query (or omitted). ``attn_mask`` is torch's (L, L) float mask
    (added to the scaled scores) or bool mask (True = not allowed);
    ``key_padding_mask`` (batch, L), bool (True = ignore that key) or float (added),
    combines with it as in torch; ``is_causal`` masks the future (it needs no
    attn_mask here; with one, both apply). A query that may see no key gets NaN,
    as in torch. ``dropout`` zeroes attention weights while training (the kept ones
    scaled by 1/(1-p)), as torch does; the returned weights are the dropped ones."""

    _transient = Module._transient + ("_qkv", "_attn", "_ctx", "_drop", "_dattn")

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False,
                 dtype="float32"):
        super().__init__()
        self.embed_dim, self.num_heads = _heads(embed_dim, num_heads, "embed_dim", "num_heads")
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = _probability(dropout, "MultiheadAttention")
        self.batch_first = bool(batch_first)
        self._dtype = V.as_dtype(dtype)
        E = self.embed_dim
        # torch: xavier_uniform_ on in_proj_weight (fan_in E, fan_out 3E), zero biases,
        # out_proj as a Linear (Kaiming-uniform a=sqrt(5): U(+-1/sqrt(E)))
        self.out_proj = Linear(E, E, bias=bias, dtype=self._dtype)
        bound = math.sqrt(6.0 / (E + 3 * E))
        w = _random.uniform_(np.empty((3 * E, E), self._dtype), -bound, bound)
        self.register_parameter("in_proj_weight", Parameter._adopt(w))
        if bias:
            self.register_parameter("in_proj_bias", Parameter(np.zeros(3 * E, self._dtype)))
            self.out_proj.bias.data[...] = 0
        # torch's parameter order: in_proj_weight, in_proj_bias, out_proj.*
        self._causal = False

    in_proj_weight = _parameter("in_proj_weight")
    in_proj_bias = _parameter("in_proj_bias", optional=True)

    # --- validation ----------------------------------------------------------
    def _check_input(self, x, name="x"):
        x = V.as_float_array(x, name, self._dtype)
        layout = "(batch, seq, embed_dim)" if self.batch_first else "(seq, batch, embed_dim)"
        if x.ndim != 3:
            raise ValueError(f"{name} must be 3-D {layout}, got shape {x.shape}")
        if x.shape[2] != self.embed_dim:
            raise ValueError(f"{name}'s last dimension must be embed_dim={self.embed_dim}, "
                             f"got shape {x.shape}")
        if 0 in x.shape:
            raise ValueError(f"{name} is empty (shape {x.shape})")
        return x

    def _additive(self, mask, name, shape, expected):
        """A bool (True = not allowed) or float mask as an additive float array."""
        if hasattr(mask, "detach"):  # a torch tensor
            mask = mask.detach().cpu().numpy()
        m = np.asarray(mask)
        if m.dtype == np.bool_:
            out = np.zeros(m.shape, self._dtype)
            out[m] = -np.inf
        elif m.dtype.kind == "f":
            if np.isnan(m).any():
                raise ValueError(f"{name} contains NaN")
            out = np.require(m, self._dtype, "C")
        else:
            raise TypeError(f"{name} must be a bool or float array, got dtype {m.dtype}")
        if out.shape != shape:
            raise ValueError(f"{name} must have shape {expected} = {shape}, got {out.shape}")
        return out

    def _check_mask(self, attn_mask, L, B=None, key_padding_mask=None):
        """The (L, L) mask, or with a key padding mask (B, L) the (B*L, L) masks of
        every sequence: torch adds the two (a bool one counting as -inf)."""
        m = None if attn_mask is None else self._additive(attn_mask, "attn_mask", (L, L),
                                                          "(L, L)")
        if key_padding_mask is None:
            return m
        kp = self._additive(key_padding_mask, "key_padding_mask", (B, L), "(batch, source_len)")
        out = self._buffer("mask", (B, L, L))
        out[...] = kp[:, None, :]
        if m is not None:
            out += m
        return out.reshape(B * L, L)

    # --- computation ---------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=False,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        x = self._check_input(query, "query")
        for name, other in (("key", key), ("value", value)):
            if other is not None and other is not query and not (
                    np.shape(other) == np.shape(query) and np.array_equal(other, query)):
                raise ValueError(f"MultiheadAttention: {name} must be the query (self-attention); "
                                 "cross-attention is not implemented")
        if not isinstance(is_causal, (bool, np.bool_)):
            raise TypeError(f"is_causal must be a bool, got {is_causal!r}")
        B, L = x.shape[:2] if self.batch_first else x.shape[1::-1]
        mask = self._check_mask(attn_mask, L, B, key_padding_mask)
        y = self._attend(x, mask, bool(is_causal)).copy()
        if not need_weights:
            return y, None
        a = self._attn if self._drop is None else self._dattn
        w = a.mean(axis=1) if average_attn_weights else a.copy()
        return y, w

    def _forward(self, x):
        """Self-attention without a mask (as a stage of a container)."""
        return self._attend(x, None, False)

    def _attend(self, x, mask, causal):
        """x (validated, the module's layout) -> output buffer; keeps the backward's state."""
        E, H = self.embed_dim, self.num_heads
        d0, d1 = x.shape[0], x.shape[1]
        B, L = (d0, d1) if self.batch_first else (d1, d0)
        qkv = self._buffer("qkv", (d0, d1, 3 * E))
        attn = self._buffer("attn", (B, H, L, L))
        ctx = self._buffer("ctx", (d0, d1, E))
        y = self._buffer("y", (d0, d1, E))
        drop = dattn = None
        if self.training and self.dropout > 0:
            drop, dattn = self._buffer("drop", attn.shape), self._buffer("dattn", attn.shape)
            ones = self._buffer("ones", attn.shape)
            ones.fill(1)
            _ops.dropout_forward(ones.reshape(-1), drop.reshape(-1), drop.reshape(-1),
                                 self.dropout, _random.next_seed())
        bi, bo = self.in_proj_bias, self.out_proj.bias
        _ops.mha_forward(x, self.in_proj_weight.data, None if bi is None else bi.data,
                         self.out_proj.weight.data, None if bo is None else bo.data, mask, H,
                         causal, self.batch_first, qkv, attn, ctx, y, drop, dattn)
        self._x, self._qkv, self._attn, self._ctx, self._out = x, qkv, attn, ctx, y
        self._drop, self._dattn = drop, dattn
        self._causal = causal
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        x = self._x
        gctx = self._buffer("gctx", x.shape)
        gs = self._buffer("gs", self._attn.shape)
        gqkv = self._buffer("gqkv", self._qkv.shape)
        gx = self._buffer("gx", x.shape) if need_input_grad else None
        bi, bo = self.in_proj_bias, self.out_proj.bias
        _ops.mha_backward(x, self.in_proj_weight.data, self.out_proj.weight.data, self._qkv,
                          self._attn, self._ctx, grad, self.num_heads, self._causal,
                          self.batch_first, gctx, gs, gqkv, gx, self.in_proj_weight.grad,
                          None if bi is None else bi.grad, self.out_proj.weight.grad,
                          None if bo is None else bo.grad, accumulate, self._drop, self._dattn)
        return gx

    def config(self):
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "dropout": self.dropout, "bias": self.in_proj_bias is not None,
                "batch_first": self.batch_first}

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"bias={self.in_proj_bias is not None}, batch_first={self.batch_first}")

    def __repr__(self):
        return f"MultiheadAttention({self.extra_repr()})"


class PositionalEmbedding(_WeightTable):
    """A learned position embedding: (batch, seq, dim) -> x + weight[:seq], for
    seq <= max_len. ``weight`` (max_len, dim) starts N(0, 1), like Embedding."""

    _dims = ("max_len", "dim")

    def __init__(self, max_len, dim, dtype="float32"):
        super().__init__(max_len, dim, dtype)

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"x must have shape (batch, seq, {self.dim}), got {x.shape}")
        if x.shape[1] > self.max_len:
            raise ValueError(f"x's sequence length {x.shape[1]} exceeds max_len={self.max_len}")
        V.check_batch(x, "x")
        return x

    def _forward(self, x):
        y = self._buffer("y", x.shape)
        np.add(x, self.weight.data[:x.shape[1]], out=y)
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        g = self.weight.grad
        L = grad.shape[1]
        if not accumulate:
            g[L:] = 0
            np.sum(grad, axis=0, out=g[:L])
        else:
            g[:L] += grad.sum(axis=0)
        return grad


class Residual(Module):
    """y = x + module(x); the backward adds the branch's input gradient to the skip's."""

    def __init__(self, module):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"Residual: module must be a fastnn Module, got {type(module).__name__}")
        self.module = module
        self._dtype = module.dtype

    def _check_input(self, x):
        return self.module._check_input(x)

    def _forward(self, x):
        f = self.module._forward(x)
        if f.shape != x.shape:
            raise ValueError(f"Residual: the module maps {x.shape} to {f.shape}; "
                             "a residual branch must keep the shape")
        y = self._buffer("y", x.shape)
        np.add(x, f, out=y)
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        gf = self.module._backward(grad, accumulate, True)
        gx = self._buffer("gx", grad.shape)
        np.add(grad, gf, out=gx)
        return gx


class TransformerBlock(Module):
    """A pre-LN transformer block on (batch, seq, d_model):
    ``x = x + self_attn(norm1(x))`` (causal by default), then
    ``x = x + linear2(GELU(linear1(norm2(x))))``. torch.nn.TransformerEncoderLayer's
    names, so the state dict loads into ``TransformerEncoderLayer(d_model, nhead,
    dim_feedforward, dropout=0.0, activation="gelu", batch_first=True,
    norm_first=True)``. Dropout is not implemented (dropout must be 0)."""

    _transient = Module._transient + ("_x1", "_h2", "_u", "_zf", "_last")

    def __init__(self, d_model, nhead, dim_feedforward=None, dropout=0.0, causal=True,
                 dtype="float32"):
        super().__init__()
        self.d_model, self.nhead = _heads(d_model, nhead, "d_model", "nhead")
        if dim_feedforward is None:
            dim_feedforward = 4 * self.d_model
        self.dim_feedforward = V.positive_int(dim_feedforward, "dim_feedforward")
        self.dropout = _no_dropout(dropout, "TransformerBlock", "in the block")
        self.causal = bool(causal)
        self._dtype = V.as_dtype(dtype)
        d, f = self.d_model, self.dim_feedforward
        self.self_attn = MultiheadAttention(d, self.nhead, batch_first=True, dtype=self._dtype)
        self.linear1 = Linear(d, f, dtype=self._dtype)
        self.linear2 = Linear(f, d, dtype=self._dtype)
        self.norm1 = LayerNorm(d, dtype=self._dtype)
        self.norm2 = LayerNorm(d, dtype=self._dtype)

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"x must have shape (batch, seq, {self.d_model}), got {x.shape}")
        if 0 in x.shape:
            raise ValueError(f"x is empty (shape {x.shape})")
        return x

    def _forward(self, x):
        n, d, f = x.shape[0] * x.shape[1], self.d_model, self.dim_feedforward
        a = self.self_attn._attend(self.norm1._forward(x), None, self.causal)
        x1 = self._buffer("x1", x.shape)
        np.add(x, a, out=x1)
        h2 = self.norm2._forward(x1).reshape(n, d)
        zf = self._buffer("zf", (n, f))
        u = self._buffer("u", (n, f))
        l1, l2 = self.linear1, self.linear2
        _ops.linear_forward(h2, l1.weight.data, l1.bias.data, _ops.ACT_GELU, 0.0, zf, u)
        y = self._buffer("y", x.shape)
        _ops.linear_forward(u, l2.weight.data, l2.bias.data, _ops.ACT_NONE, 0.0, None,
                            y.reshape(n, d))
        y += x1
        self._x, self._x1, self._h2, self._u, self._zf, self._out = x, x1, h2, u, zf, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        n, d, f = self._h2.shape[0], self.d_model, self.dim_feedforward
        l1, l2 = self.linear1, self.linear2
        g2 = np.ascontiguousarray(grad).reshape(n, d)
        gu = self._buffer("gu", (n, f))
        _ops.linear_backward(self._u, l2.weight.data, _ops.ACT_NONE, 0.0, None, None, g2, g2, gu,
                             l2.weight.grad, l2.bias.grad, accumulate)
        gh2 = self._buffer("gh2", (n, d))
        _ops.linear_backward(self._h2, l1.weight.data, _ops.ACT_GELU, 0.0, self._zf, self._u,
                             gu, gu, gh2, l1.weight.grad, l1.bias.grad, accumulate)
        gx1 = self._buffer("gx1", grad.shape)
        np.add(grad, self.norm2._backward(gh2.reshape(grad.shape), accumulate, True), out=gx1)
        gh1 = self.self_attn._backward(gx1, accumulate, True)
        gx = self._buffer("gx", grad.shape)
        np.add(gx1, self.norm1._backward(gh1, accumulate, True), out=gx)
        return gx

    def _forward_last(self, x):
        """The block's output at the last position only, (batch, d_model): every
        token's keys and values, but the query, attention, out_proj and
        feed-forward of the last token alone (what a last-position head reads)."""
        B, L, E = x.shape
        H, F = self.nhead, self.dim_feedforward
        at = self.self_attn
        w, bi = at.in_proj_weight.data, at.in_proj_bias.data
        h1 = self.norm1._forward(x).reshape(B * L, E)
        kv = self._buffer("kv", (B, L, 2 * E))
        _ops.linear_forward(h1, w[E:], bi[E:], _ops.ACT_NONE, 0.0, None, kv.reshape(B * L, 2 * E))
        hl = self._buffer("hl", (B, E))
        hl[...] = h1.reshape(B, L, E)[:, -1]
        q = self._buffer("q", (B, E))
        _ops.linear_forward(hl, w[:E], bi[:E], _ops.ACT_NONE, 0.0, None, q)
        p = self._buffer("p", (B, H, L))
        c = self._buffer("c", (B, E))
        _ops.attn_last_forward(q, kv, H, p, c)
        x1 = self._buffer("x1l", (B, E))
        _ops.linear_forward(c, at.out_proj.weight.data, at.out_proj.bias.data, _ops.ACT_NONE, 0.0,
                            None, x1)
        x1 += x[:, -1]
        h2 = self.norm2._forward(x1)
        zf = self._buffer("zfl", (B, F))
        u = self._buffer("ul", (B, F))
        l1, l2 = self.linear1, self.linear2
        _ops.linear_forward(h2, l1.weight.data, l1.bias.data, _ops.ACT_GELU, 0.0, zf, u)
        y = self._buffer("yl", (B, E))
        _ops.linear_forward(u, l2.weight.data, l2.bias.data, _ops.ACT_NONE, 0.0, None, y)
        y += x1
        self._x, self._last = x, (h1, kv, hl, q, p, c, x1, h2, zf, u)
        self._out = y
        return y

    def _backward_last(self, grad, accumulate):
        """The input gradient (batch, seq, d_model) from the gradient of
        ``_forward_last``'s output; parameter gradients written or added."""
        h1, kv, hl, q, p, c, x1, h2, zf, u = self._last
        B, L, E = self._x.shape
        F, H = self.dim_feedforward, self.nhead
        at, l1, l2 = self.self_attn, self.linear1, self.linear2
        w, gw = at.in_proj_weight.data, at.in_proj_weight.grad
        gbi = at.in_proj_bias.grad
        gu = self._buffer("gul", (B, F))
        _ops.linear_backward(u, l2.weight.data, _ops.ACT_NONE, 0.0, None, None, grad, grad, gu,
                             l2.weight.grad, l2.bias.grad, accumulate)
        gh2 = self._buffer("gh2l", (B, E))
        _ops.linear_backward(h2, l1.weight.data, _ops.ACT_GELU, 0.0, zf, u, gu, gu, gh2,
                             l1.weight.grad, l1.bias.grad, accumulate)
        gx1 = self._buffer("gx1l", (B, E))
        np.add(grad, self.norm2._backward(gh2, accumulate, True), out=gx1)
        gc = self._buffer("gcl", (B, E))
        _ops.linear_backward(c, at.out_proj.weight.data, _ops.ACT_NONE, 0.0, None, None, gx1, gx1,
                             gc, at.out_proj.weight.grad, at.out_proj.bias.grad, accumulate)
        gq = self._buffer("gql", (B, E))
        gkv = self._buffer("gkvl", (B, L, 2 * E))
        _ops.attn_last_backward(q, kv, p, gc, H, gq, gkv)
        ghl = self._buffer("ghll", (B, E))
        _ops.linear_backward(hl, w[:E], _ops.ACT_NONE, 0.0, None, None, gq, gq, ghl, gw[:E],
                             gbi[:E], accumulate)
        gh1 = self._buffer("gh1l", (B, L, E))
        g2 = gkv.reshape(B * L, 2 * E)
        _ops.linear_backward(h1, w[E:], _ops.ACT_NONE, 0.0, None, None, g2, g2,
                             gh1.reshape(B * L, E), gw[E:], gbi[E:], accumulate)
        gh1[:, -1] += ghl
        gx = self.norm1._backward(gh1, accumulate, True)
        gx[:, -1] += gx1
        return gx

    def config(self):
        return {"d_model": self.d_model, "nhead": self.nhead,
                "dim_feedforward": self.dim_feedforward, "dropout": self.dropout,
                "causal": self.causal}

    def extra_repr(self):
        return (f"d_model={self.d_model}, nhead={self.nhead}, "
                f"dim_feedforward={self.dim_feedforward}, causal={self.causal}")
