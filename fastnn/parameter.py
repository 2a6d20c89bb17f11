"""Parameter: a weight array and its gradient, PyTorch-style.

Inside a model both are views into the model's flat buffers, so an optimizer
step or a clip is one pass over contiguous memory; assigning to ``.data`` or
``.grad`` copies into the view instead of rebinding it.
"""
import numpy as np


class Parameter:
    __slots__ = ("_data", "_grad", "_flat", "_offset")

    def __init__(self, data):
        data = np.array(data, copy=True, order="C")
        if data.dtype not in (np.float32, np.float64):
            raise TypeError(f"Parameter: data must be float32 or float64, got {data.dtype}")
        self._data = data
        self._grad = np.zeros_like(data)
        self._flat = None  # (FlatBuffer, offset) once bound into a model's buffers
        self._offset = 0

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._assign(self._data, value, "data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad.fill(0)
            return
        self._assign(self._grad, value, "grad")

    @staticmethod
    def _assign(target, value, name):
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"Parameter.{name}: expected shape {target.shape}, got {value.shape}")
        target[...] = value

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class FlatBuffer:
    """One contiguous data array and one grad array holding many parameters."""

    def __init__(self, params, dtype):
        sizes = [p.size for p in params]
        total = int(sum(sizes))
        self.data = np.empty(total, dtype=dtype)
        self.grad = np.zeros(total, dtype=dtype)
        self.params = list(params)
        offset = 0
        for p, size in zip(params, sizes):
            view = self.data[offset:offset + size].reshape(p.shape)
            view[...] = p._data
            p._data = view
            p._grad = self.grad[offset:offset + size].reshape(p.shape)
            p._flat = self
            p._offset = offset
            offset += size


def flat_span(params):
    """(buffer, start, stop) when params are consecutive pieces of one FlatBuffer."""
    if not params:
        return None
    flat = params[0]._flat
    if flat is None:
        return None
    start = pos = params[0]._offset
    for p in params:
        if p._flat is not flat or p._offset != pos:
            return None
        pos += p.size
    return flat, start, pos
