"""Sequential: an ordered container whose parameters live in two flat buffers
(one pass per optimizer update) and whose dense stacks run compiled."""
from .. import _validation as V
from . import program
from .module import Module
from .parameter import FlatBuffer


class Sequential(Module):
    """Layers applied in order; weights and grads live in two flat buffers.

    Where a Linear is followed by an elementwise activation the two run as one
    fused kernel (bias + activation while the GEMM output is hot)."""

    def __init__(self, *modules, dtype="float32"):
        super().__init__()
        dtype = V.as_dtype(dtype)
        if not modules:
            raise ValueError("Sequential needs at least one module")
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} must be a fastnn Module, "
                                f"got {type(m).__name__}")
            self._modules[str(i)] = m
        program.check_feature_sizes(modules)
        self._to_dtype(dtype)
        params = self.parameters()
        self._flat = FlatBuffer(params, dtype) if params else None
        self._stages = program.plan(modules)
        self._programs = program.ProgramCache()
        self._compiled_input = None

    def __getstate__(self):
        state = super().__getstate__()
        state["_programs"] = program.ProgramCache()  # compiled: rebuilt on use
        state["_compiled_input"] = None
        return state

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def compiled(self, n, inference=False):
        """The whole stack compiled for batch size n (an ``_ops.DenseProgram``), or
        None where the stages are not a dense stack; ``inference`` skips Dropout."""
        return self._programs.get(self._stages, n, self._dtype, inference)

    def zero_grad(self):
        if self._flat is not None:
            self._flat.grad.fill(0)

    def _check_input(self, x):
        return self._stages[0]._check_input(x)

    def forward(self, x):
        """Validated forward; returns a fresh array. In eval mode a dense stack
        runs as one compiled call, like predict."""
        x = self._check_input(x)
        if not self.training and x.ndim == 2:
            prog = self.compiled(x.shape[0], inference=True)
            if prog is not None:
                out = prog.forward(x).copy()
                # a backward after this forward recomputes the layers' state
                self._compiled_input, self._out = x, out
                return out
        return self._forward(x).copy()

    def _forward(self, x):
        self._compiled_input = None
        for stage in self._stages:
            x = stage._forward(x)
        self._out = x
        return x

    def _backward(self, grad, accumulate, need_input_grad):
        stages = self._stages
        # The first stage's input gradient is only computed when someone needs it.
        first_needed = 0 if need_input_grad else next(
            (i for i, s in enumerate(stages) if s._parameters or s._modules), len(stages))
        for i in range(len(stages) - 1, -1, -1):
            if i < first_needed:
                return None
            grad = stages[i]._backward(grad, accumulate, i > first_needed or need_input_grad)
        return grad

    def backward(self, grad, accumulate=False):
        """Write parameter gradients for the last forward (add with accumulate=True)."""
        grad = self._check_grad(grad)
        if self._compiled_input is not None:
            self._forward(self._compiled_input)
        self._backward(grad, accumulate, False)

    def predict(self, x, batch_size=1024):
        """Eval-mode forward in batches; the model's mode is restored afterwards."""
        batch_size = V.positive_int(batch_size, "batch_size")
        n = getattr(x, "shape", (0,))[0] if getattr(x, "ndim", 0) == 2 else 0
        if n and n <= batch_size:  # one compiled call when x is already a clean batch
            prog = self.compiled(n, inference=True)
            if prog is not None and prog.accepts(x):
                return prog.forward(x).copy()
        return super().predict(x, batch_size)
