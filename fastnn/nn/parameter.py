"""Parameter: a weight array and its gradient, PyTorch-style.

Inside a model both are views into the model's flat buffers, so an optimizer
step or a clip is one pass over contiguous memory; assigning to ``.data`` or
``.grad`` copies into the view instead of rebinding it.
"""
import numpy as np


class Parameter:
    """A trainable array ``data`` (float32 or float64, copied from ``data``) and
    its gradient ``grad`` of the same shape, zero at first. Assign with
    ``p.data = value`` or ``p.data[...] = value``: the shape and dtype stay."""
    __slots__ = ("_data", "_grad", "_flat", "_offset")

    def __init__(self, data):
        data = np.array(data, copy=True, order="C")
        if data.dtype not in (np.float32, np.float64):
            raise TypeError(f"Parameter: data must be float32 or float64, got {data.dtype}")
        self._data = data
        self._grad = np.zeros(data.shape, data.dtype)  # calloc: no memory until written
        self._flat = None  # (FlatBuffer, offset) once bound into a model's buffers
        self._offset = 0

    @classmethod
    def _adopt(cls, data):
        """A Parameter over ``data`` itself (a fresh C-contiguous float array the
        caller gives up), without the defensive copy."""
        p = cls.__new__(cls)
        p._data, p._grad, p._flat, p._offset = data, np.zeros(data.shape, data.dtype), None, 0
        return p

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

    # Pickle and deepcopy would turn the views into independent copies, so an
    # optimizer would update the flat buffer while the layers read stale arrays.
    # A bound parameter is saved as its place in the buffer and bound again.
    def __getstate__(self):
        if self._flat is not None:
            return {"flat": self._flat, "offset": self._offset, "shape": self._data.shape}
        return {"data": self._data, "grad": self._grad}

    def __setstate__(self, state):
        self._flat = state.get("flat")
        self._offset = state.get("offset", 0)
        if self._flat is None:
            self._data, self._grad = state["data"], state["grad"]
        elif hasattr(self._flat, "data"):  # else FlatBuffer.__setstate__ binds it later
            self._flat._bind(self, self._offset, state["shape"])


class FlatBuffer:
    """One contiguous data array and one grad array holding many parameters."""

    def __init__(self, params, dtype):
        sizes = [p.size for p in params]
        total = int(sum(sizes))
        from .. import _memory
        _memory.check(2 * total * np.dtype(dtype).itemsize - sum(p.data.nbytes for p in params),
                      f"a model of {total} parameters ({np.dtype(dtype)}, weights and gradients)")
        self.data = np.empty(total, dtype=dtype)
        self.grad = np.zeros(total, dtype=dtype)
        self.params = list(params)
        offset = 0
        for p, size in zip(params, sizes):
            data = p._data
            self._bind(p, offset, p.shape)
            p._data[...] = data
            del data  # the layer's own array goes now, so the peak is one layer over
            offset += size

    def _bind(self, p, offset, shape):
        size = int(np.prod(shape, dtype=np.int64))
        p._data = self.data[offset:offset + size].reshape(shape)
        p._grad = self.grad[offset:offset + size].reshape(shape)
        p._flat = self
        p._offset = offset

    def __getstate__(self):
        return {"data": self.data, "grad": self.grad, "params": self.params,
                "layout": [(p._offset, p.shape) for p in self.params]}

    def __setstate__(self, state):
        self.data, self.grad, self.params = state["data"], state["grad"], state["params"]
        for p, (offset, shape) in zip(self.params, state["layout"]):
            self._bind(p, offset, shape)


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
