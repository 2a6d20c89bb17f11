"""Module and Sequential: the container, its parameters and its state dict.

A module's ``forward``/``backward`` are the public, validated, copying calls;
``_forward``/``_backward`` are the internal ones that work in reusable
workspaces (so a warm training step allocates nothing)."""
import numpy as np

from .. import _validation as V
from .parameter import Parameter


class Module:
    """Base class: parameters by name, children, train/eval, state dicts.

    As in PyTorch, a ``Parameter`` or ``Module`` assigned as an attribute
    (``self.fc1 = fn.Linear(4, 8)``) is registered under that name, so
    ``parameters()`` finds it and the state dict calls it ``fc1.weight``. A
    subclass defines ``forward(x)`` and ``backward(grad)``; ``backward`` chains
    the children's ``backward`` in reverse and returns the input's gradient."""

    # Per-call references to workspaces, dropped when pickling (caches, not state).
    _transient = ("_x", "_z", "_out", "_mask", "_idx", "_mean", "_rstd", "_shape")
    # fastnn's own layers by class name: what a checkpoint can rebuild from config()
    builtin_layers = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fastnn.") and cls.config is not Module.config:
            Module.builtin_layers[cls.__name__] = cls

    def config(self):
        """The constructor arguments (dtype aside) that rebuild this layer, JSON-safe;
        None for a module a checkpoint cannot rebuild (a user's own)."""
        return None

    def __init__(self):
        self.training = True
        self._parameters = {}
        self._modules = {}
        self._workspace = {}
        self._dtype = np.dtype(np.float32)

    # --- structure -------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)):
            registry = self.__dict__.get("_parameters" if isinstance(value, Parameter)
                                         else "_modules")
            if registry is None:
                raise AttributeError(f"cannot assign {type(value).__name__} {name!r} before "
                                     "Module.__init__() call (call super().__init__() first)")
            self.__dict__.pop(name, None)
            self.__dict__["_parameters"].pop(name, None)
            self.__dict__["_modules"].pop(name, None)
            registry[name] = value
        elif name in self.__dict__.get("_parameters", ()) or name in self.__dict__.get("_modules", ()):
            raise TypeError(f"cannot assign {type(value).__name__} to {name!r}: it holds a "
                            "registered Parameter or Module (del it first)")
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # reached only when normal lookup fails
        d = self.__dict__
        for registry in ("_parameters", "_modules"):
            if name in d.get(registry, ()):
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in ("_parameters", "_modules"):
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                return
        object.__delattr__(self, name)

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._transient}
        state["_workspace"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def register_parameter(self, name, param):
        """Add ``param`` under ``name`` (what ``self.name = Parameter(...)`` does)."""
        if not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name} must be a Parameter")
        self._parameters[name] = param

    def add_module(self, name, module):
        """Add a child module under ``name``; its parameters join this one's as ``name.*``."""
        if not isinstance(module, Module):
            raise TypeError(f"add_module: {name} must be a fastnn Module, got {type(module).__name__}")
        self._modules[name] = module

    def children(self):
        """The direct child modules, in registration order."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        """[(dotted name, Parameter)], the state-dict names (``0.weight``, ``fc1.bias``)."""
        out = [(prefix + name, p) for name, p in self._parameters.items()]
        for cname, child in self._modules.items():
            out.extend(child.named_parameters(f"{prefix}{cname}."))
        return out

    def parameters(self):
        """Every Parameter, in state-dict order: what an optimizer is built on."""
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and every descendant, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    @property
    def dtype(self):
        return self._dtype

    def _to_dtype(self, dtype):
        for m in self.modules():
            m._dtype = dtype
            m._workspace.clear()
            for name, p in m._parameters.items():
                if p.dtype != dtype:
                    m._parameters[name] = Parameter._adopt(p.data.astype(dtype))

    # --- modes and gradients ------------------------------------------------
    def train(self, mode=True):
        """Set training mode (Dropout active) on this module and its descendants; returns self."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (Dropout off, inference through the compiled program); returns self."""
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's gradient to zero (backward writes, or adds with accumulate=True)."""
        for p in self.parameters():
            p.grad.fill(0)

    # --- state ---------------------------------------------------------------
    def state_dict(self):
        """name -> copy of the weights, with PyTorch's key names."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy weights in; everything is checked before anything is written."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = []
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if hasattr(value, "detach"):  # a torch tensor
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape}, "
                                 f"expected {p.shape}")
            staged.append((p, V.as_float_array(value, f"state_dict[{name!r}]", p.dtype)))
        for p, value in staged:
            p.data[...] = value

    # --- computation ---------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """Validated forward; returns a fresh array."""
        x = self._check_input(x)
        return self._forward(x).copy()

    def backward(self, grad, accumulate=False):
        """Gradients of the last forward: parameter grads written (or added with
        accumulate=True); returns the gradient with respect to the input."""
        grad = self._check_grad(grad)
        gx = self._backward(grad, accumulate, True)
        return None if gx is None else gx.copy()

    def _user_defined(self, name):
        return getattr(type(self), name) is not getattr(Module, name)

    def predict(self, x, batch_size=1024):
        """Eval-mode forward in batches; the model's mode is restored afterwards."""
        batch_size = V.positive_int(batch_size, "batch_size")
        x = self._check_input(x)
        was_training = self.training
        self.eval()
        try:
            outs = [np.array(self._forward(x[i:i + batch_size]))
                    for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(outs)

    def _check_input(self, x):
        x = self._as_input(x)
        if x.ndim == 0:
            raise ValueError("x must be a batch (at least 1-D), got a scalar")
        V.check_batch(x, "x")
        return x

    def _as_input(self, x):
        """x converted to what this module computes on (a float array of its dtype)."""
        return V.as_float_array(x, "x", self._dtype)

    def _check_grad(self, grad):
        out = getattr(self, "_out", None)
        if out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        grad = V.as_float_array(grad, "grad", self._dtype)
        if grad.shape != out.shape:
            raise ValueError(f"grad must have the output's shape {out.shape}, got {grad.shape}")
        return grad

    def _buffer(self, name, shape, dtype=None):
        """A reusable workspace array (contents undefined)."""
        key = (name, shape)
        buf = self._workspace.get(key)
        if buf is None:
            if len(self._workspace) > 32:
                self._workspace.clear()
            buf = self._workspace[key] = np.empty(shape, dtype or self._dtype)
        return buf

    # A subclass written PyTorch-style defines the public forward/backward; the
    # internal calls the trainer makes then go through them.
    def _forward(self, x):
        if not self._user_defined("forward"):
            raise NotImplementedError(f"{type(self).__name__} must define forward(x)")
        out = np.asarray(self.forward(x))
        self._out = out
        return out

    def _backward(self, grad, accumulate, need_input_grad):
        if not self._user_defined("backward"):
            raise NotImplementedError(f"{type(self).__name__} must define backward(grad), "
                                      "calling its children's backward in reverse order")
        params = self.parameters()
        kept = [p.grad.copy() for p in params] if accumulate else None
        gx = self.backward(grad)
        if kept is not None:
            for p, g in zip(params, kept):
                p.grad += g
        return gx

    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): {child!r}" for name, child in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"
