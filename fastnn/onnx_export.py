"""export_onnx: a Sequential (or a single layer) as an ONNX graph, so a trained
model can be served by onnxruntime or any other ONNX runtime.

The graph is the eval-mode forward. Layer by layer:

    Linear       Gemm(transB=1); MatMul + Add on inputs of more than two dims
    ReLU, Sigmoid, Tanh   Relu, Sigmoid, Tanh
    LeakyReLU    LeakyRelu(alpha); float64: Where(x > 0, x, slope * x) (alpha is float32)
    GELU         opset >= 20: Gelu; else x * (1 + Erf(x / sqrt 2)) / 2, or the tanh form
                 (float64 exact: always Erf, run in float32; onnxruntime has no float64 Erf)
    Softmax      Softmax(axis=-1)
    Dropout      nothing: the identity at inference
    LayerNorm    LayerNormalization (opset >= 17, float32); else ReduceMean, Sub, Sqrt, Div
    Flatten      Flatten(axis=1)
    Embedding    Gather(axis=0) of the weight by int64 ids (first layer only)

onnx is an optional extra (``pip install "fastnn[onnx]"``), imported on the first
export only.
(Not named onnx.py: a script run from inside the package folder, such as a bench
worker, has that folder on sys.path, where an onnx.py would shadow the package.)"""
import math
import numbers
import os

import numpy as np

from ._version import __version__
from ._atomic import atomic_write
from .nn.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .nn.layers import Dropout, Embedding, Flatten, LayerNorm, Linear
from .nn.module import Module
from .nn.sequential import Sequential

DEFAULT_OPSET = 17  # the first with LayerNormalization; any onnxruntime the extra allows runs it
MIN_OPSET = 13      # from 13 on, Softmax(axis=-1) normalizes the last axis alone


def _import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("export_onnx needs the onnx package: pip install 'fastnn[onnx]' "
                          "(onnx and onnxruntime)") from e
    return onnx


class _Graph:
    """Nodes and initializers being collected, plus the tensor-naming rules: a
    node and its output share one name, "<layer path>/<Op>" (made unique)."""

    def __init__(self, onnx, dtype, opset):
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.dtype, self.opset = dtype, opset
        self.nodes, self.initializers = [], []
        self._used = set()

    def const(self, name, value, dtype=None):
        if name not in self._used:
            self._used.add(name)
            arr = np.array(value, dtype or self.dtype, order="C")
            self.initializers.append(self.numpy_helper.from_array(arr, name))
        return name

    def scalar(self, value):
        """A shared scalar constant of the model's dtype (for decompositions)."""
        return self.const(f"const/{value!r}", value)

    def node(self, op, inputs, prefix, **attrs):
        name, k = f"{prefix}/{op}", 1
        while name in self._used:
            k += 1
            name = f"{prefix}/{op}_{k}"
        self._used.add(name)
        self.nodes.append(self.helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return name


# --- one function per layer: (graph, layer, input name, input shape, path) -> (output, shape).
# A shape is a list of dims: an int, a symbolic name, or None for unknown.

def _where(path):
    return f"layer {path!r}" if path else "the model"


def _check_width(shape, path, m, size):
    if isinstance(shape[-1], int) and shape[-1] != size:
        raise ValueError(f"export_onnx: {_where(path)} ({type(m).__name__}) expects {size} "
                         f"features, but the layer before it gives {shape[-1]}")


def _linear(g, m, x, shape, path):
    _check_width(shape, path, m, m.in_features)
    p = _param_prefix(path)
    w = g.const(p + "weight", m.weight.data)
    b = None if m.bias is None else g.const(p + "bias", m.bias.data)
    if len(shape) == 2:
        y = g.node("Gemm", [x, w] + ([b] if b else []), path, transB=1)
    else:  # Gemm is 2-D only; MatMul broadcasts over leading dims
        wt = g.const(p + "weight_t", m.weight.data.T)
        y = g.node("MatMul", [x, wt], path)
        if b:
            y = g.node("Add", [y, b], path)
    return y, shape[:-1] + [m.out_features]


def _simple(op, **attrs):
    def emit(g, m, x, shape, path):
        return g.node(op, [x], path, **attrs), shape
    return emit


def _leaky(g, m, x, shape, path):
    if g.dtype == np.float64:  # LeakyRelu's alpha is a float32 attribute: spell it out
        # (onnxruntime's PRelu, whose slope is a tensor, has no float64 kernel at every opset)
        positive = g.node("Greater", [x, g.scalar(0.0)], path)
        scaled = g.node("Mul", [x, g.scalar(float(m.slope))], path)
        return g.node("Where", [positive, x, scaled], path), shape
    return g.node("LeakyRelu", [x], path, alpha=float(m.slope)), shape


def _softmax(g, m, x, shape, path):
    # fastnn's Softmax is over the last (feature) dimension for dim=-1 and dim=1 alike
    return g.node("Softmax", [x], path, axis=-1), shape


def _gelu(g, m, x, shape, path):
    double = g.dtype == np.float64
    # onnxruntime has no float64 Erf kernel (so no float64 exact Gelu either)
    if g.opset >= 20 and not (double and m.approximate == "none"):
        return g.node("Gelu", [x], path, approximate=m.approximate), shape
    half, one = g.scalar(0.5), g.scalar(1.0)
    if m.approximate == "none":  # x * (1 + erf(x / sqrt 2)) / 2
        u = g.node("Mul", [x, g.scalar(1.0 / math.sqrt(2.0))], path)
        if double:  # erf in float32 (abs. error ~6e-8), everything else in float64
            u = g.node("Cast", [u], path, to=g.helper.np_dtype_to_tensor_dtype(np.dtype(np.float32)))
            u = g.node("Erf", [u], path)
            u = g.node("Cast", [u], path, to=g.helper.np_dtype_to_tensor_dtype(np.dtype(np.float64)))
        else:
            u = g.node("Erf", [u], path)
    else:  # x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2
        x3 = g.node("Mul", [g.node("Mul", [x, x], path), x], path)
        inner = g.node("Add", [x, g.node("Mul", [x3, g.scalar(0.044715)], path)], path)
        u = g.node("Tanh", [g.node("Mul", [inner, g.scalar(math.sqrt(2.0 / math.pi))], path)],
                   path)
    y = g.node("Mul", [x, g.node("Add", [u, one], path)], path)
    return g.node("Mul", [y, half], path), shape


def _dropout(g, m, x, shape, path):
    return x, shape  # the identity at inference: no node at all


def _flatten(g, m, x, shape, path):
    rest = shape[1:]
    flat = math.prod(rest) if all(isinstance(d, int) for d in rest) else None
    return g.node("Flatten", [x], path, axis=1), [shape[0], flat]


def _layernorm(g, m, x, shape, path):
    _check_width(shape, path, m, m.normalized_shape)
    p = _param_prefix(path)
    n = m.normalized_shape
    if m.elementwise_affine:
        w = g.const(p + "weight", m._parameters["weight"].data)
        b = g.const(p + "bias", m._parameters["bias"].data)
    else:
        w, b = g.const(p + "ones", np.ones(n)), None
    # LayerNormalization's epsilon is a float32 attribute: a float64 model spells the
    # formula out (as does an opset before 17), with eps a float64 constant
    if g.opset >= 17 and g.dtype == np.float32:
        y = g.node("LayerNormalization", [x, w] + ([b] if b else []), path, axis=-1,
                   epsilon=float(m.eps))
        return y, shape
    mean = _reduce_mean(g, x, path)
    d = g.node("Sub", [x, mean], path)
    var = _reduce_mean(g, g.node("Mul", [d, d], path), path)
    std = g.node("Sqrt", [g.node("Add", [var, g.scalar(float(m.eps))], path)], path)
    y = g.node("Mul", [g.node("Div", [d, std], path), w], path)
    if b:
        y = g.node("Add", [y, b], path)
    return y, shape


def _reduce_mean(g, x, path):
    """Mean over the last axis, kept; the axes moved from attribute to input in opset 18."""
    if g.opset >= 18:
        axes = g.const("const/axes_last", np.array([-1]), np.int64)
        return g.node("ReduceMean", [x, axes], path, keepdims=1)
    return g.node("ReduceMean", [x], path, axes=[-1], keepdims=1)


def _embedding(g, m, x, shape, path):
    w = g.const(_param_prefix(path) + "weight", m.weight.data)
    y = g.node("Gather", [w, x], path, axis=0)
    return y, shape + [m.embedding_dim]


_EXPORTERS = {
    Linear: _linear, ReLU: _simple("Relu"), Sigmoid: _simple("Sigmoid"), Tanh: _simple("Tanh"),
    LeakyReLU: _leaky, GELU: _gelu, Softmax: _softmax, Dropout: _dropout, Flatten: _flatten,
    LayerNorm: _layernorm, Embedding: _embedding,
}
# layers that keep the feature count: the input's width is found behind them
_SHAPE_KEEPING = (ReLU, Sigmoid, Tanh, LeakyReLU, GELU, Softmax, Dropout)


def _param_prefix(path):
    return "" if path == "" else path + "."


def _leaves(model, path=""):
    """(path, layer) in execution order; paths are the state-dict prefixes ("0", "1.2")."""
    if type(model) is Sequential:
        for name, child in model._modules.items():
            yield from _leaves(child, f"{path}.{name}" if path else name)
    else:
        yield path, model


def _check_supported(leaves):
    for i, (path, m) in enumerate(leaves):
        if type(m) in _EXPORTERS:
            if isinstance(m, Embedding) and i:
                raise ValueError(f"export_onnx: layer {path!r} (Embedding) must be the first "
                                 "layer: it takes integer ids, the graph's input")
            continue
        base = next((c.__name__ for c in type(m).__mro__[1:] if c in _EXPORTERS), None)
        why = (f"a subclass of {base} may compute something else, so only fastnn's own "
               "layers are exported" if base else "no ONNX operator is known for it")
        supported = ", ".join(sorted(c.__name__ for c in _EXPORTERS))
        raise TypeError(f"export_onnx: {_where(path)} ({type(m).__name__}) cannot be exported: {why}. "
                        f"Supported layers: {supported}, and Sequential containers of them")


def _input_shape(leaves, batch, sample_shape):
    """The graph input's shape: [batch] + sample_shape when given, else read off the
    first layer that fixes the width."""
    if sample_shape is not None:
        return [batch] + list(sample_shape)
    first = leaves[0][1]
    if isinstance(first, Embedding):
        if (len(leaves) > 2 and type(leaves[1][1]) is Flatten and type(leaves[2][1]) is Linear
                and leaves[2][1].in_features % first.embedding_dim == 0):
            return [batch, leaves[2][1].in_features // first.embedding_dim]
        return [batch, None]
    for path, m in leaves:
        if isinstance(m, Linear):
            return [batch, m.in_features]
        if isinstance(m, LayerNorm):
            return [batch, m.normalized_shape]
        if not isinstance(m, _SHAPE_KEEPING):  # a leading Flatten takes any rank
            raise ValueError(f"export_onnx: the input's rank is not fixed by the model (layer "
                             f"{path!r} is a {type(m).__name__}): pass input_shape, the shape "
                             "of one sample, e.g. input_shape=(28, 28)")
    return [batch, None]


def _check_sample_shape(input_shape):
    if input_shape is None:
        return None
    try:
        dims = list(input_shape)
    except TypeError:
        dims = None
    if dims is None or not all(d is None or (isinstance(d, numbers.Integral) and not
                                             isinstance(d, bool) and d > 0) for d in dims):
        raise ValueError("export_onnx: input_shape must be a tuple of positive ints (or None "
                         f"for a dynamic dimension), the shape of one sample; got {input_shape!r}")
    return [None if d is None else int(d) for d in dims]


def _value_info(helper, name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, [d if d is not None else "" for d in shape])


def export_onnx(model, path, opset=None, batch_dim="batch", input_shape=None):
    """Write ``model``'s inference graph to ``path`` as ONNX; returns the ModelProto.

    The graph has one input, ``"input"`` (float of the model's dtype, or int64 ids when
    the first layer is an Embedding), and one output, ``"output"``; the first dimension
    of both is ``batch_dim`` (a name, so any batch size runs; an int fixes it).
    ``opset`` defaults to 17 (LayerNormalization); from 20 GELU uses ONNX's Gelu op.
    ``input_shape``, the shape of one sample (None for a dynamic dimension), is needed
    only when the model does not fix it (a leading Flatten), or to fix an Embedding's.

    Example::

        fn.export_onnx(model, "model.onnx")
        import onnxruntime as ort
        ort.InferenceSession("model.onnx").run(None, {"input": x})[0]   # == model.predict(x)
    """
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx: model must be a fastnn Module, got {type(model).__name__}")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"export_onnx: path must be a file path, got {type(path).__name__}")
    if isinstance(batch_dim, bool) or not (
            (isinstance(batch_dim, str) and batch_dim) or
            (isinstance(batch_dim, numbers.Integral) and batch_dim > 0)):
        raise ValueError(f"export_onnx: batch_dim must be a dimension name or a positive int, "
                         f"got {batch_dim!r}")
    batch_dim = batch_dim if isinstance(batch_dim, str) else int(batch_dim)
    sample_shape = _check_sample_shape(input_shape)
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        opset = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export_onnx: opset must be an int in [{MIN_OPSET}, {newest}] "
                         f"(the installed onnx's newest), got {opset!r}")
    opset = int(opset)

    leaves = list(_leaves(model))
    if not leaves:
        raise ValueError("export_onnx: the model has no layers")
    _check_supported(leaves)
    dtype = np.dtype(model.dtype)
    for name, p in model.named_parameters():
        if p.data.dtype != dtype:
            raise TypeError(f"export_onnx: parameter {name!r} is {p.data.dtype}, the model is {dtype}")

    helper = onnx.helper
    g = _Graph(onnx, dtype, opset)
    shape = _input_shape(leaves, batch_dim, sample_shape)
    ids = isinstance(leaves[0][1], Embedding)
    in_type = helper.np_dtype_to_tensor_dtype(np.dtype(np.int64) if ids else dtype)
    inputs = [_value_info(helper, "input", in_type, shape)]
    g._used.add("input")
    x = "input"
    for where, m in leaves:
        x, shape = _EXPORTERS[type(m)](g, m, x, shape, where)
    if x == "input":  # only identities (Dropout): the graph still needs one node
        x = g.node("Identity", [x], "output")
    g.nodes[-1].output[0] = "output"  # x: the last node's output, read by no other node
    out_type = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(g.nodes, "fastnn", inputs,
                              [_value_info(helper, "output", out_type, shape)], g.initializers,
                              doc_string=repr(model))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                              producer_version=__version__)
    # the oldest IR version that carries this opset: readable by the most runtimes
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto
