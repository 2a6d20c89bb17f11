"""Float64 central-difference gradient checks for every layer and every loss.

The scalar checked for a layer is L = sum(layer(x) * R) for a fixed random R,
so dL/d(output) = R: ``layer.backward(R)`` must return dL/dx and write dL/dp
into every ``p.grad``. Losses are checked through ``loss.backward()``.
"""
import numpy as np
import pytest

import fastnn as fn
from numeric import assert_backward_accumulates, numeric_grad

RTOL, ATOL = 1e-6, 1e-8


def assert_grad(analytic, numeric, what=""):
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=what)


def away_from_kinks(rng, shape, margin=0.05):
    """Normal values with |x| >= margin, so ReLU-type kinks are not straddled."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-300) * margin * 2, x)


def as_float64(module):
    """A standalone module converted to float64 (Sequential sets every layer's dtype)."""
    return fn.Sequential(module, dtype="float64")[0]


def check_module(layer, x, seed=0, reseed=None, input_grad=True):
    """Param and input gradients of L = sum(layer(x) * R) vs central differences."""
    rng = np.random.default_rng(seed)
    if reseed is not None:
        fn.seed(reseed)
    out = layer(x)
    assert out.dtype == np.float64
    R = rng.standard_normal(out.shape)

    def loss():
        if reseed is not None:
            fn.seed(reseed)
        return float(np.sum(layer(x) * R))

    if reseed is not None:
        fn.seed(reseed)
    layer(x)
    for p in layer.parameters():
        p.grad[...] = np.nan  # backward overwrites: stale values must not leak in
    gx = layer.backward(R)
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    for name, p in layer.named_parameters():
        assert np.isfinite(grads[name]).all(), name
        assert_grad(grads[name], numeric_grad(loss, p.data), name)
    if input_grad:
        assert gx is not None and gx.shape == x.shape
        assert_grad(gx, numeric_grad(loss, x), "input")
    return grads, gx


# ====================================================================== Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n", [1, 4])
def test_linear(bias, n):
    fn.seed(1)
    layer = fn.Linear(5, 3, bias=bias, dtype="float64")
    x = np.random.default_rng(2).standard_normal((n, 5))
    grads, _ = check_module(layer, x)
    assert set(grads) == ({"weight", "bias"} if bias else {"weight"})


# ================================================================= activations
ACTIVATIONS = {
    "relu": lambda: fn.ReLU(),
    "leaky_relu": lambda: fn.LeakyReLU(0.1),
    "leaky_relu_default": lambda: fn.LeakyReLU(),
    "sigmoid": lambda: fn.Sigmoid(),
    "tanh": lambda: fn.Tanh(),
    "gelu": lambda: fn.GELU(),
    "gelu_tanh": lambda: fn.GELU(approximate="tanh"),
    "softmax": lambda: fn.Softmax(),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_standalone(name):
    layer = as_float64(ACTIVATIONS[name]())
    x = away_from_kinks(np.random.default_rng(3), (4, 6)) * 2
    check_module(layer, x)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_fused_in_sequential(name):
    """Linear followed by an elementwise activation runs as one fused kernel."""
    fn.seed(4)
    model = fn.Sequential(fn.Linear(5, 6), ACTIVATIONS[name](), fn.Linear(6, 3), dtype="float64")
    x = np.random.default_rng(5).standard_normal((4, 5))
    check_module(model, x, input_grad=False)
    # The first Linear carries the fused activation: called on its own it runs
    # Linear+activation and its backward returns the input gradient.
    lin = model[0]
    out = lin(x)
    if name != "softmax":  # Softmax is not elementwise, so it is not fused
        np.testing.assert_allclose(out, model[1](x @ lin.weight.data.T + lin.bias.data),
                                   rtol=1e-12, atol=1e-14)
    check_module(lin, x)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_after_layernorm_not_fused(name):
    fn.seed(7)
    model = fn.Sequential(fn.Linear(4, 5), fn.LayerNorm(5), ACTIVATIONS[name](), fn.Linear(5, 2),
                          dtype="float64")
    x = np.random.default_rng(8).standard_normal((3, 4))
    check_module(model, x, input_grad=False)


def test_deep_mlp_all_parameters():
    fn.seed(9)
    model = fn.Sequential(fn.Linear(4, 8), fn.Tanh(), fn.Linear(8, 8), fn.GELU(),
                          fn.Linear(8, 8, bias=False), fn.Sigmoid(), fn.Linear(8, 3),
                          dtype="float64")
    x = np.random.default_rng(10).standard_normal((5, 4))
    grads, _ = check_module(model, x, input_grad=False)
    assert list(grads) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                           "6.weight", "6.bias"]


# =================================================================== LayerNorm
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 6), (1, 3), (2, 3, 5)])
def test_layernorm(affine, shape):
    layer = fn.LayerNorm(shape[-1], elementwise_affine=affine, dtype="float64")
    rng = np.random.default_rng(11)
    for p in layer.parameters():  # away from the ones/zeros init
        p.data[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal(shape) * 3 + 1
    grads, _ = check_module(layer, x)
    assert set(grads) == ({"weight", "bias"} if affine else set())


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_layernorm_eps(eps):
    layer = fn.LayerNorm(4, eps=eps, dtype="float64")
    x = np.random.default_rng(12).standard_normal((3, 4)) * 0.1
    check_module(layer, x)


# ===================================================================== Dropout
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
def test_dropout_training_fixed_mask(p):
    layer = as_float64(fn.Dropout(p))
    layer.train()
    x = np.random.default_rng(13).standard_normal((6, 7))
    fn.seed(21)
    a = layer(x)
    fn.seed(21)
    b = layer(x)
    np.testing.assert_array_equal(a, b)  # reseeding reproduces the mask
    if 0 < p:
        c = layer(x)  # no reseed: a fresh mask
        assert not np.array_equal(a, c)
        kept = a != 0
        np.testing.assert_allclose(a[kept], x[kept] / (1 - p), rtol=1e-15)
    _, gx = check_module(layer, x, reseed=21)
    fn.seed(21)
    out = layer(x)
    np.testing.assert_array_equal(gx == 0, out == 0)


def test_dropout_eval_is_identity():
    layer = as_float64(fn.Dropout(0.5))
    layer.eval()
    x = np.random.default_rng(14).standard_normal((3, 4))
    np.testing.assert_array_equal(layer(x), x)
    R = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(R), R)
    check_module(layer, x)


def test_dropout_inside_model():
    fn.seed(15)
    model = fn.Sequential(fn.Linear(4, 6), fn.ReLU(), fn.Dropout(0.4), fn.Linear(6, 2),
                          dtype="float64")
    model.train()
    x = np.random.default_rng(16).standard_normal((5, 4))
    check_module(model, x, reseed=99, input_grad=False)


# =================================================================== Embedding
def test_embedding_flatten_linear():
    fn.seed(17)
    model = fn.Sequential(fn.Embedding(7, 3), fn.Flatten(), fn.Linear(12, 2), dtype="float64")
    ids = np.array([[0, 1, 1, 6], [6, 6, 2, 0], [3, 3, 3, 3]])  # repeated ids accumulate
    grads, _ = check_module(model, ids, input_grad=False)
    # rows never looked up get no gradient
    unused = [4, 5]
    np.testing.assert_array_equal(grads["0.weight"][unused], 0)


def test_embedding_standalone():
    layer = fn.Embedding(5, 4, dtype="float64")
    ids = np.array([1, 1, 4, 0, 1])
    out = layer(ids)
    assert out.shape == (5, 4)
    np.testing.assert_array_equal(out, layer.weight.data[ids])
    rng = np.random.default_rng(18)
    R = rng.standard_normal(out.shape)
    layer.backward(R)
    want = np.zeros((5, 4))
    np.add.at(want, ids, R)
    np.testing.assert_allclose(layer.weight.grad, want, rtol=1e-15)
    f = lambda: float(np.sum(layer(ids) * R))  # noqa: E731
    assert_grad(layer.weight.grad, numeric_grad(f, layer.weight.data))


# ====================================================================== losses
def loss_cases(rng):
    n, C = 5, 4
    logits = rng.standard_normal((n, C)) * 2
    labels = rng.integers(0, C, n)
    probs = rng.dirichlet(np.ones(C), n)
    return [
        ("mse", fn.MSELoss(), rng.standard_normal((n, 3)), rng.standard_normal((n, 3))),
        ("mse_column", fn.MSELoss(), rng.standard_normal((n, 1)), rng.standard_normal((n, 1))),
        ("ce_labels", fn.CrossEntropyLoss(), logits.copy(), labels),
        ("ce_probs", fn.CrossEntropyLoss(), logits.copy(), probs),
        ("ce_smooth_labels", fn.CrossEntropyLoss(label_smoothing=0.1), logits.copy(), labels),
        ("ce_smooth_probs", fn.CrossEntropyLoss(label_smoothing=0.25), logits.copy(), probs),
        ("bce", fn.BCELoss(), rng.uniform(0.05, 0.95, (n, 2)), rng.integers(0, 2, (n, 2)).astype(float)),
        ("bce_soft", fn.BCELoss(), rng.uniform(0.05, 0.95, (n, 1)), rng.uniform(0, 1, (n, 1))),
        ("bce_logits", fn.BCEWithLogitsLoss(), rng.standard_normal((n, 2)) * 3,
         rng.integers(0, 2, (n, 2)).astype(float)),
        ("bce_logits_soft", fn.BCEWithLogitsLoss(), rng.standard_normal((n, 1)) * 3,
         rng.uniform(0, 1, (n, 1))),
    ]


CASE_NAMES = [c[0] for c in loss_cases(np.random.default_rng(0))]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_loss_gradient(case):
    _, loss_fn, out, target = next(c for c in loss_cases(np.random.default_rng(19)) if c[0] == case)
    value = loss_fn(out, target)
    assert isinstance(value, float)
    g = loss_fn.backward().copy()
    assert g.shape == out.shape and g.dtype == np.float64
    assert_grad(g, numeric_grad(lambda: loss_fn(out, target), out), case)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_loss_through_model(case):
    """model.backward(loss.backward()) gives d(loss)/d(params)."""
    _, loss_fn, out, target = next(c for c in loss_cases(np.random.default_rng(20)) if c[0] == case)
    fn.seed(21)
    last = [fn.Sigmoid()] if isinstance(loss_fn, fn.BCELoss) and not isinstance(
        loss_fn, fn.BCEWithLogitsLoss) else []
    model = fn.Sequential(fn.Linear(3, 6), fn.Tanh(), fn.Linear(6, out.shape[1]), *last,
                          dtype="float64")
    x = np.random.default_rng(22).standard_normal((out.shape[0], 3))
    loss_fn(model(x), target)
    model.backward(loss_fn.backward())
    for name, p in model.named_parameters():
        num = numeric_grad(lambda: loss_fn(model(x), target), p.data)
        assert_grad(p.grad, num, f"{case}: {name}")


# ================================================================= accumulate
def _models_for_accumulate():
    fn.seed(23)
    return {
        "mlp": (fn.Sequential(fn.Linear(4, 5), fn.GELU(), fn.Linear(5, 2), dtype="float64"),
                np.random.default_rng(24).standard_normal((3, 4))),
        "layernorm": (fn.Sequential(fn.Linear(4, 5), fn.LayerNorm(5), fn.ReLU(), fn.Linear(5, 2),
                                    dtype="float64"),
                      np.random.default_rng(25).standard_normal((3, 4))),
        "embedding": (fn.Sequential(fn.Embedding(6, 2), fn.Flatten(), fn.Linear(6, 2),
                                    dtype="float64"),
                      np.array([[1, 1, 5], [0, 2, 1]])),
        "linear_nobias": (fn.Sequential(fn.Linear(4, 2, bias=False), fn.Sigmoid(), dtype="float64"),
                          np.random.default_rng(26).standard_normal((3, 4))),
    }


@pytest.mark.parametrize("name", list(_models_for_accumulate()))
def test_backward_overwrites_and_accumulates(name):
    model, x = _models_for_accumulate()[name]
    out = model(x)
    R1 = np.random.default_rng(27).standard_normal(out.shape)
    R2 = np.random.default_rng(28).standard_normal(out.shape)
    model.backward(R1)
    g1 = [p.grad.copy() for p in model.parameters()]
    model.backward(R1)  # overwrite (the default): same grads, not doubled
    for p, a in zip(model.parameters(), g1):
        np.testing.assert_array_equal(p.grad, a)
    model.backward(R2)
    g2 = [p.grad.copy() for p in model.parameters()]
    model.backward(R1)
    model.backward(R2, accumulate=True)
    for p, a, b in zip(model.parameters(), g1, g2):
        np.testing.assert_allclose(p.grad, a + b, rtol=1e-13, atol=1e-15)
    # accumulate onto arbitrary existing values (e.g. a previous micro-batch)
    for p in model.parameters():
        p.grad[...] = 1.5
    model.backward(R1, accumulate=True)
    for p, a in zip(model.parameters(), g1):
        np.testing.assert_allclose(p.grad, a + 1.5, rtol=1e-13, atol=1e-15)


def test_accumulate_single_layers():
    rng = np.random.default_rng(29)
    layers = [(fn.Linear(3, 2, dtype="float64"), rng.standard_normal((4, 3))),
              (fn.LayerNorm(3, dtype="float64"), rng.standard_normal((4, 3))),
              (fn.Embedding(5, 2, dtype="float64"), np.array([0, 4, 4, 1]))]
    for layer, x in layers:
        out = layer(x)
        R = rng.standard_normal(out.shape)
        g = assert_backward_accumulates(layer, R, rtol=1e-14, atol=1e-15)
        layer.backward(R)
        for p, a in zip(layer.parameters(), g):
            np.testing.assert_allclose(p.grad, a, rtol=1e-14, atol=1e-15)


def test_gradient_accumulation_equals_big_batch():
    """Two half-batches with accumulate=True (loss scaled by 1/2) equal one full batch."""
    fn.seed(30)
    model = fn.Sequential(fn.Linear(4, 6), fn.ReLU(), fn.Linear(6, 3), dtype="float64")
    rng = np.random.default_rng(31)
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    ce = fn.CrossEntropyLoss()
    ce(model(x), y)
    model.backward(ce.backward())
    full = [p.grad.copy() for p in model.parameters()]
    for i, sl in enumerate((slice(0, 4), slice(4, 8))):
        ce(model(x[sl]), y[sl])
        model.backward(ce.backward() / 2, accumulate=i > 0)
    for p, a in zip(model.parameters(), full):
        np.testing.assert_allclose(p.grad, a, rtol=1e-12, atol=1e-14)
