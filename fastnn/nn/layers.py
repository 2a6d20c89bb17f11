"""Layers with parameters or state: Linear, Dropout, LayerNorm, Embedding, Flatten."""
import math

import numpy as np

from .. import _memory, _random
from .. import _validation as V
from .._kernels import _ops
from .module import Module
from .parameter import Parameter


def _parameter(name, optional=False):
    """A read-only property for the registered parameter ``name`` (its state-dict
    name); an optional one is None where the layer was built without it."""
    if optional:
        return property(lambda self: self._parameters.get(name))
    return property(lambda self: self._parameters[name])


class _WeightAndBias:
    """``weight`` and the optional ``bias`` of a layer, by their state-dict names."""

    weight = _parameter("weight")
    bias = _parameter("bias", optional=True)


class Linear(_WeightAndBias, Module):
    """y = x W^T + b with W of shape (out, in) and PyTorch's initialization
    (Kaiming-uniform a=sqrt(5), i.e. U(+-1/sqrt(in)), bias U(+-1/sqrt(in)))."""

    def __init__(self, in_features, out_features, bias=True, dtype="float32"):
        super().__init__()
        self.in_features = V.positive_int(in_features, "in_features")
        self.out_features = V.positive_int(out_features, "out_features")
        self._dtype = V.as_dtype(dtype)
        shape = (self.out_features, self.in_features)
        _memory.check(2 * self._dtype.itemsize * (shape[0] * shape[1] + shape[0]),
                      f"{type(self).__name__}{(self.in_features, self.out_features)}'s weights "
                      "and gradients")
        bound = 1.0 / math.sqrt(self.in_features)
        w = _random.uniform_(np.empty(shape, self._dtype), -bound, bound)
        self.register_parameter("weight", Parameter._adopt(w))
        if bias:
            b = _random.uniform_(np.empty(self.out_features, self._dtype), -bound, bound)
            self.register_parameter("bias", Parameter._adopt(b))
        self._act = None

    def _fuse(self, activation):
        """Run `activation` inside this layer's kernel (set by Sequential)."""
        self.__dict__["_act"] = activation  # a reference, not a registered child

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim not in (2, 3) or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (batch, {self.in_features}) or (batch, time, "
                             f"{self.in_features}), got {x.shape}"
                             + (" (use x.reshape(1, -1) for one sample)" if x.ndim == 1 else ""))
        V.check_batch(x, "x")
        return x

    # A (batch, time, features) input runs as (batch*time, features) rows: reshapes
    # of contiguous arrays, no copies.
    def _forward(self, x):
        x2 = x.reshape(-1, self.in_features)
        n = x2.shape[0]
        act = self._act
        code, slope = (act.code, act.slope) if act else (_ops.ACT_NONE, 0.0)
        y = self._buffer("y", x.shape[:-1] + (self.out_features,))
        y2 = y.reshape(n, self.out_features)
        z = self._buffer("z", y2.shape) if act is not None and act.needs_input else None
        b = self.bias
        _ops.linear_forward(x2, self.weight.data, None if b is None else b.data, code, slope, z, y2)
        self._x, self._z, self._out = x2, z, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        act = self._act
        code, slope = (act.code, act.slope) if act else (_ops.ACT_NONE, 0.0)
        x2 = self._x
        grad2 = grad.reshape(x2.shape[0], self.out_features)
        # without an activation the kernel reads grad in place; otherwise dZ goes to a workspace
        gz = grad2 if code == _ops.ACT_NONE else self._buffer("gz", grad2.shape)
        gx = self._buffer("gx", grad.shape[:-1] + (self.in_features,)) if need_input_grad else None
        b = self.bias
        _ops.linear_backward(x2, self.weight.data, code, slope, self._z,
                             self._out.reshape(grad2.shape), grad2, gz,
                             None if gx is None else gx.reshape(x2.shape), self.weight.grad,
                             None if b is None else b.grad, accumulate)
        return gx

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Dropout(Module):
    """Inverted dropout: training keeps each activation with probability 1-p and
    scales it by 1/(1-p); eval is the identity. Masks come from fn.seed's stream."""

    def __init__(self, p=0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self._identity = True

    def _forward(self, x):
        self._identity = not self.training or self.p == 0.0
        if self._identity:
            self._out = x
            return x
        y = self._buffer("y", x.shape)
        mask = self._buffer("mask", x.shape)
        _ops.dropout_forward(x.reshape(-1), y.reshape(-1), mask.reshape(-1), self.p,
                             _random.next_seed())
        self._out, self._mask = y, mask
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        if self._identity:
            return grad
        gx = self._buffer("gx", grad.shape)
        _ops.mul(grad.reshape(-1), self._mask.reshape(-1), gx.reshape(-1))
        return gx

    def config(self):
        return {"p": self.p}

    def extra_repr(self):
        return f"p={self.p}"


class LayerNorm(Module):
    """Layer normalization over the last dimension (torch.nn.LayerNorm):
    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the
    (biased) variance of each row computed in float64. x: (batch, ..., n).
    Arguments: normalized_shape n, eps=1e-5, elementwise_affine=True (weight
    ones, bias zeros)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype="float32"):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError("LayerNorm: only a single normalized dimension is supported, "
                                 f"got {normalized_shape}")
            normalized_shape = normalized_shape[0]
        self.normalized_shape = V.positive_int(normalized_shape, "normalized_shape")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self._dtype = V.as_dtype(dtype)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.register_parameter("weight", Parameter(np.ones(self.normalized_shape, self._dtype)))
            self.register_parameter("bias", Parameter(np.zeros(self.normalized_shape, self._dtype)))

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim < 2 or x.shape[-1] != self.normalized_shape:
            raise ValueError(f"x must have shape (batch, ..., {self.normalized_shape}), got {x.shape}")
        V.check_batch(x, "x")
        return x

    def _forward(self, x):
        x2 = x.reshape(-1, self.normalized_shape)
        n = x2.shape[0]
        y = self._buffer("y", x.shape)
        mean = self._buffer("mean", (n,))
        rstd = self._buffer("rstd", (n,))
        w, b = self._parameters.get("weight"), self._parameters.get("bias")
        _ops.layernorm_forward(x2, w and w.data, b and b.data, self.eps,
                               y.reshape(n, -1), mean, rstd)
        self._x, self._mean, self._rstd, self._out = x2, mean, rstd, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        n = self._x.shape[0]
        gx = self._buffer("gx", grad.shape)
        w, b = self._parameters.get("weight"), self._parameters.get("bias")
        _ops.layernorm_backward(self._x, w and w.data, self._mean, self._rstd, grad.reshape(n, -1),
                                gx.reshape(n, -1), w and w.grad, b and b.grad, accumulate)
        return gx

    def config(self):
        return {"normalized_shape": self.normalized_shape, "eps": self.eps,
                "elementwise_affine": self.elementwise_affine}

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class _WeightTable(Module):
    """A module whose one parameter ``weight`` is a (rows, dim) table drawn N(0, 1)
    as torch draws an Embedding's: Embedding, EmbeddingBag, PositionalEmbedding.
    ``_dims`` names rows and dim: constructor arguments, attributes and config keys."""

    _dims = ("num_embeddings", "embedding_dim")

    def __init__(self, rows, dim, dtype):
        super().__init__()
        rows, dim = (V.positive_int(v, name) for v, name in zip((rows, dim), self._dims))
        for name, v in zip(self._dims, (rows, dim)):
            setattr(self, name, v)
        self._dtype = V.as_dtype(dtype)
        _memory.check(2 * self._dtype.itemsize * rows * dim,
                      f"{type(self).__name__}{(rows, dim)}'s weights and gradients")
        w = _random.normal_(np.empty((rows, dim), self._dtype))
        self.register_parameter("weight", Parameter._adopt(w))

    weight = _parameter("weight")

    def config(self):
        return dict(zip(self._dims, self.weight.shape))

    def extra_repr(self):
        return ", ".join(map(str, self.weight.shape))


class Embedding(_WeightTable):
    """A lookup table: integer ids (batch, ...) -> vectors (batch, ..., dim).
    The backward scatter-add is deterministic and independent of the thread count."""

    def __init__(self, num_embeddings, embedding_dim, dtype="float32"):
        super().__init__(num_embeddings, embedding_dim, dtype)

    def _as_input(self, x):
        return V.as_index_array(x, "x", self.num_embeddings)

    def _forward(self, x):
        idx = x.reshape(-1)
        y = self._buffer("y", x.shape + (self.embedding_dim,))
        _ops.embedding_forward(idx, self.weight.data, y.reshape(idx.shape[0], -1))
        self._idx, self._out = idx, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        _ops.embedding_backward(self._idx, grad.reshape(self._idx.shape[0], -1), self.weight.grad,
                                accumulate)
        return None


class Flatten(Module):
    """Flatten all but the batch dimension: (batch, d1, d2, ...) ->
    (batch, d1*d2*...) (torch.nn.Flatten with its defaults)."""

    def config(self):
        return {}

    def _forward(self, x):
        self._shape = x.shape
        y = x.reshape(x.shape[0], -1)
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        return grad.reshape(self._shape)
