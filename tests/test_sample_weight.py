"""sample_weight: Keras semantics (mean over the batch of w_i * loss_i)."""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _reference as R
from fastnn._kernels import _ops as K

RNG = np.random.default_rng(0)


def per_row(loss, out, target):
    return np.array([loss(out[i:i + 1], target[i:i + 1]) for i in range(len(out))])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["mse", "bce", "bcel", "ce", "ce_probs"])
def test_weighted_losses_equal_weighted_mean_of_rows(dtype, name):
    n, k = 7, 3
    w = RNG.random(n).astype(dtype)
    if name == "mse":
        loss, out, t = fn.MSELoss(), RNG.standard_normal((n, k)), RNG.standard_normal((n, k))
    elif name == "bce":
        loss, out, t = fn.BCELoss(), RNG.random((n, k)), RNG.random((n, k))
    elif name == "bcel":
        loss, out, t = fn.BCEWithLogitsLoss(), RNG.standard_normal((n, k)), RNG.random((n, k))
    elif name == "ce":
        loss, out, t = fn.CrossEntropyLoss(0.1), RNG.standard_normal((n, k)), RNG.integers(0, k, n)
    else:
        p = RNG.random((n, k))
        loss, out, t = fn.CrossEntropyLoss(), RNG.standard_normal((n, k)), p / p.sum(1, keepdims=True)
    out = out.astype(dtype)
    t = t.astype(dtype) if t.dtype.kind == "f" else t
    rows = per_row(loss, out, t)
    value = loss(out, t, sample_weight=w)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(float(np.mean(w * rows)), rel=tol, abs=tol)
    grad = loss.backward().copy()
    loss(out, t)
    np.testing.assert_allclose(grad, loss.backward() * w[:, None], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_kernels_match_reference(dtype):
    n, k = 33, 4
    w = RNG.random(n).astype(dtype)
    z = RNG.standard_normal((n, k)).astype(dtype)
    t = RNG.random((n, k)).astype(dtype)
    labels = RNG.integers(0, k, n)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for kind, f, args in ((K.LOSS_MSE, "mse", (z.ravel(), t.ravel())),
                          (K.LOSS_BCE_LOGITS, "bce_logits", (z.ravel(), t.ravel())),
                          (K.LOSS_BCE, "bce", (t.ravel(), (t.ravel() > 0.5).astype(dtype)))):
        g1, g2 = np.empty(n * k, dtype), np.empty(n * k, dtype)
        a = K.pointwise_loss(kind, *args, g1, w, k)
        b = getattr(R, f)(*args, g2, w, k)
        assert a == pytest.approx(b, rel=tol)
        np.testing.assert_allclose(g1, g2, rtol=tol, atol=tol)
    g1, g2 = np.empty((n, k), dtype), np.empty((n, k), dtype)
    assert K.cross_entropy_labels(z, labels, 0.1, g1, w) == pytest.approx(
        R.cross_entropy_labels(z, labels, 0.1, g2, w), rel=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="weight"):
        K.pointwise_loss(K.LOSS_MSE, z.ravel(), t.ravel(), None, w[:-1], k)


def test_fit_with_zero_weights_ignores_those_samples():
    X = RNG.standard_normal((64, 5)).astype(np.float32)
    y = RNG.integers(0, 3, 64)
    w = np.ones(64, np.float32)
    w[::2] = 0.0
    y_noise = y.copy()
    y_noise[::2] = (y[::2] + 1) % 3  # corrupted labels carry weight 0

    def train(labels):
        fn.seed(3)
        m = fn.Sequential(fn.Linear(5, 16), fn.Tanh(), fn.Linear(16, 3))
        t = fn.Trainer(m, fn.CrossEntropyLoss(), fn.SGD(m.parameters(), lr=0.1))
        t.fit(X, labels, epochs=3, batch_size=16, shuffle=False, sample_weight=w, progress=False)
        return m._flat.data.copy()

    np.testing.assert_array_equal(train(y), train(y_noise))


def test_bad_sample_weight():
    m = fn.Sequential(fn.Linear(2, 2))
    t = fn.Trainer(m, fn.MSELoss(), fn.SGD(m.parameters()))
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="sample_weight"):
        t.fit(X, X, sample_weight=np.ones(3), progress=False)
    with pytest.raises(ValueError, match="sample_weight"):
        t.fit(X, X, sample_weight=-np.ones(4), progress=False)
    with pytest.raises(ValueError, match="sample_weight"):
        t.fit(X, X, sample_weight=np.full(4, np.nan), progress=False)
