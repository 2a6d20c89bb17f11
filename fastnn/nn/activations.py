"""Activation modules. The elementwise ones fuse into a preceding Linear inside
Sequential; standalone they run their own kernel."""
from .. import _validation as V
from .._kernels import _ops
from .module import Module


class Elementwise(Module):
    """An activation applied elementwise, known to the kernels by a code."""

    code = _ops.ACT_NONE
    slope = 0.0
    needs_input = False  # GELU's derivative needs x; the others use the output

    def config(self):
        return {}

    def _forward(self, x):
        y = self._buffer("y", x.shape)
        _ops.act_forward(self.code, self.slope, x.reshape(-1), y.reshape(-1))
        self._x, self._out = x, y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        gx = self._buffer("gx", grad.shape)
        _ops.act_backward(self.code, self.slope, self._x.reshape(-1),
                          self._out.reshape(-1), grad.reshape(-1), gx.reshape(-1))
        return gx


class ReLU(Elementwise):
    """max(x, 0), elementwise (torch.nn.ReLU)."""
    code = _ops.ACT_RELU


class LeakyReLU(Elementwise):
    """x if x > 0 else negative_slope * x (torch.nn.LeakyReLU; negative_slope=0.01)."""
    code = _ops.ACT_LEAKY

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.slope = float(negative_slope)

    def config(self):
        return {"negative_slope": self.slope}

    def extra_repr(self):
        return f"negative_slope={self.slope}"


class Sigmoid(Elementwise):
    """1 / (1 + exp(-x)), computed without overflow for any x (torch.nn.Sigmoid)."""
    code = _ops.ACT_SIGMOID


class Tanh(Elementwise):
    """tanh(x), elementwise (torch.nn.Tanh)."""
    code = _ops.ACT_TANH


class GELU(Elementwise):
    """x * Phi(x) with Phi the normal CDF, via erf (approximate="none", the
    default) or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate="tanh"),
    as torch.nn.GELU."""
    needs_input = True

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.code = _ops.ACT_GELU if approximate == "none" else _ops.ACT_GELU_TANH

    def config(self):
        return {"approximate": self.approximate}

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax over the last dimension (use CrossEntropyLoss on logits to train)."""

    def __init__(self, dim=-1):
        super().__init__()
        if dim not in (-1, 1):
            raise ValueError(f"Softmax: only dim=-1 (features) is supported, got {dim}")
        self.dim = dim

    def config(self):
        return {"dim": self.dim}

    def _check_input(self, x):
        x = V.as_float_array(x, "x", self._dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must have shape (batch, features) or (batch, time, features), "
                             f"got {x.shape}")
        return x

    # (batch, time, features) runs as rows, through reshaped views
    def _forward(self, x):
        y = self._buffer("y", x.shape)
        _ops.softmax_forward(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]))
        self._out = y
        return y

    def _backward(self, grad, accumulate, need_input_grad):
        gx = self._buffer("gx", grad.shape)
        d = grad.shape[-1]
        _ops.softmax_backward(self._out.reshape(-1, d), grad.reshape(-1, d), gx.reshape(-1, d))
        return gx


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh,
               "gelu": GELU, "softmax": Softmax}
