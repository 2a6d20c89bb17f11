"""How a Sequential runs compiled: its layers planned into stages (a Linear
with the elementwise activation after it fused into one kernel), its feature
sizes checked at construction, and dense stacks compiled into one C program
per batch size (``_ops.DenseProgram``: forward, and the whole training step,
each one call)."""
from .._kernels import _ops
from .activations import Elementwise, Softmax
from .layers import Dropout, Embedding, Flatten, LayerNorm, Linear


def plan(modules):
    """The stages: each Linear takes the elementwise activation that follows it."""
    stages, i = [], 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, Linear):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            fused = nxt if isinstance(nxt, Elementwise) else None
            m._fuse(fused)
            i += 2 if fused else 1
        else:
            i += 1
        stages.append(m)
    return stages


def check_feature_sizes(modules):
    """Reject a stack whose feature sizes do not chain, naming both layers,
    instead of failing at the first forward."""
    size, source = None, None
    for i, m in enumerate(modules):
        if isinstance(m, Linear):
            if size is not None and m.in_features != size:
                raise ValueError(f"Sequential: layer {i} ({type(m).__name__}) expects "
                                 f"{m.in_features} input features, but layer {source} "
                                 f"({type(modules[source]).__name__}) produces {size}")
            size, source = m.out_features, i
        elif isinstance(m, LayerNorm):
            if size is not None and m.normalized_shape != size:
                raise ValueError(f"Sequential: layer {i} (LayerNorm) normalizes {m.normalized_shape} "
                                 f"features, but layer {source} ({type(modules[source]).__name__}) "
                                 f"produces {size}")
        elif not isinstance(m, (Elementwise, Softmax, Dropout)):
            size, source = None, None  # a layer whose output width is not known here


class ProgramCache:
    """Compiled programs of one model by (batch size, inference): a few sizes
    (training, the last batch, evaluation), built on first use. A cache: a
    pickled or copied model starts with an empty one."""

    MAX = 6

    def __init__(self):
        self._programs = {}

    def get(self, stages, n, dtype, inference):
        prog = self._programs.get((n, inference))
        if prog is None and n > 0:
            specs, embedding = _dense_specs(stages, inference)
            if specs is None:
                return None
            if len(self._programs) >= self.MAX:
                self._programs.clear()
            prog = self._programs[(n, inference)] = _ops.DenseProgram(specs, n, dtype, embedding)
        return prog


def _dense_specs(stages, inference):
    """(layer specs, embedding) of a dense stack, optionally behind Embedding +
    Flatten; (None, None) for anything else. Inference drops Dropout (the
    identity in eval mode)."""
    embedding = None
    if inference:
        stages = [s for s in stages if type(s) is not Dropout]
    if (len(stages) > 2 and type(stages[0]) is Embedding and type(stages[1]) is Flatten
            and type(stages[2]) is Linear):
        emb = stages[0]
        k, rem = divmod(stages[2].in_features, emb.embedding_dim)
        if rem:
            return None, None
        embedding = (emb.weight.data, emb.weight.grad, k)
        stages = stages[2:]
    if not stages or not all(type(s) is Linear for s in stages):
        return None, None
    specs = []
    for s in stages:
        b, act = s.bias, s._act
        specs.append((s.weight.data, None if b is None else b.data, s.weight.grad,
                      None if b is None else b.grad, act.code if act else _ops.ACT_NONE,
                      act.slope if act else 0.0))
    return specs, embedding
