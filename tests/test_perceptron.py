"""Perceptron: Rosenblatt's rule exactly, convergence on separable data, an
honest failure on XOR, label sets and input validation."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn as fn
from fastnn.apps.perceptron import ConvergenceWarning

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])
AND_Y = np.array([0, 0, 0, 1])


def separable(n=200, d=3, margin=0.3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    X = rng.normal(size=(4 * n, d)) * 2
    s = X @ w + 0.4
    keep = np.abs(s) > margin
    return X[keep][:n], (s[keep][:n] > 0).astype(int)


def rosenblatt(X, t, lr, max_epochs, orders=None):
    """Textbook rule, one sample at a time (labels t in {-1, +1})."""
    w, b, mistakes = np.zeros(X.shape[1]), 0.0, []
    for epoch in range(max_epochs):
        order = range(len(X)) if orders is None else orders[epoch]
        m = 0
        for i in order:
            if t[i] * (X[i] @ w + b) <= 0:
                w = w + lr * t[i] * X[i]
                b = b + lr * t[i]
                m += 1
        mistakes.append(m)
        if m == 0:
            break
    return w, b, mistakes


def test_and_converges():
    p = fn.Perceptron(2).fit(XOR_X, AND_Y)
    assert p.converged_ and p.n_mistakes_[-1] == 0 and p.n_epochs_ == len(p.n_mistakes_)
    assert p.score(XOR_X, AND_Y) == 1.0
    np.testing.assert_array_equal(p.predict(XOR_X), AND_Y)


def test_xor_does_not_converge_and_says_so():
    p = fn.Perceptron(2, max_epochs=50)
    with pytest.warns(ConvergenceWarning, match="did not converge in 50 epochs"):
        out = p.fit(XOR_X, XOR_Y)
    assert out is p
    assert p.converged_ is False and p.n_epochs_ == 50 and len(p.n_mistakes_) == 50
    assert all(m > 0 for m in p.n_mistakes_)
    assert p.score(XOR_X, XOR_Y) < 1.0
    assert issubclass(ConvergenceWarning, UserWarning)
    assert fn.ConvergenceWarning is ConvergenceWarning


def test_separable_data_converges_without_warning():
    X, y = separable()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = fn.Perceptron(3, max_epochs=1000).fit(X, y)
    assert p.converged_ and p.score(X, y) == 1.0
    assert p.weight_.shape == (3,) and isinstance(p.bias_, float)


@settings(max_examples=25, deadline=None)
# Learning rates that are powers of two keep integer data exact, so a score of
# exactly 0 (a mistake) is decided the same way whatever the summation order.
@given(seed=st.integers(0, 10_000), lr=st.sampled_from([1.0, 0.125, 2.0]),
       n=st.integers(1, 60), d=st.integers(1, 5), separable_data=st.booleans())
def test_matches_the_textbook_rule(seed, lr, n, d, separable_data):
    rng = np.random.default_rng(seed)
    if separable_data:
        X, y = separable(n=n, d=d, seed=seed)
        if len(np.unique(y)) < 2:
            return
    else:
        X = rng.integers(-3, 4, size=(n, d)).astype(float)   # integers: exact arithmetic
        y = rng.integers(0, 2, size=n)
        if len(np.unique(y)) < 2:
            return
    t = np.where(y == 1, 1.0, -1.0)
    w, b, mistakes = rosenblatt(X, t, lr, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        p = fn.Perceptron(d, lr=lr, max_epochs=30).fit(X, y)
    assert p.n_mistakes_ == mistakes
    np.testing.assert_allclose(p.weight_, w, rtol=1e-12, atol=1e-12)
    assert p.bias_ == pytest.approx(b, abs=1e-12)
    assert p.converged_ == (mistakes[-1] == 0)


def test_shuffle_is_seeded_and_matches_the_rule():
    X, y = separable(n=120, seed=3)
    t = np.where(y == 1, 1.0, -1.0)
    p = fn.Perceptron(3, shuffle=True, seed=7).fit(X, y)
    q = fn.Perceptron(3, shuffle=True, seed=7).fit(X, y)
    assert p.n_mistakes_ == q.n_mistakes_ and np.array_equal(p.weight_, q.weight_)
    rng = np.random.default_rng(7)
    orders = [rng.permutation(len(X)) for _ in range(1000)]
    w, b, mistakes = rosenblatt(X, t, 1.0, 1000, orders)
    assert p.n_mistakes_ == mistakes
    np.testing.assert_allclose(p.weight_, w, atol=1e-9)
    fn.seed(0)
    a = fn.Perceptron(3, shuffle=True).fit(X, y).n_mistakes_
    fn.seed(0)
    assert fn.Perceptron(3, shuffle=True).fit(X, y).n_mistakes_ == a   # fn.seed seeds shuffling


def test_lr_only_scales_the_weights():
    X, y = separable(seed=4)
    p1 = fn.Perceptron(3, lr=1.0).fit(X, y)
    p2 = fn.Perceptron(3, lr=0.25).fit(X, y)
    assert p1.n_mistakes_ == p2.n_mistakes_
    np.testing.assert_allclose(p2.weight_ * 4, p1.weight_, rtol=1e-12)
    np.testing.assert_array_equal(p1.predict(X), p2.predict(X))


@pytest.mark.parametrize("labels", [(0, 1), (-1, 1), (False, True), (0.0, 1.0), (-1.0, 1.0)])
def test_predicts_in_the_training_label_set(labels):
    lo, hi = labels
    y = np.where(AND_Y == 1, hi, lo)
    p = fn.Perceptron(2).fit(XOR_X, y)
    pred = p.predict(XOR_X)
    assert pred.dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(pred, y)
    assert set(np.unique(pred).tolist()) <= {lo, hi}
    assert p.score(XOR_X, y) == 1.0


def test_decision_function_sign():
    p = fn.Perceptron(2).fit(XOR_X, AND_Y)
    d = p.decision_function(XOR_X)
    assert d.shape == (4,)
    np.testing.assert_array_equal(d > 0, AND_Y == 1)
    np.testing.assert_allclose(d, XOR_X @ p.weight_ + p.bias_)


def test_lists_are_accepted():
    p = fn.Perceptron(2).fit(XOR_X.tolist(), AND_Y.tolist())
    assert p.predict([[1, 1]]).tolist() == [1]


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1, 2, 1]), "two labels"),
    (np.array([1, 1, 1, 1]), "two labels"),
    (np.array([0, 2, 2, 0]), "two labels"),
    (np.array([-1, 0, 0, -1]), "two labels"),
    (np.array(["a", "b", "a", "b"]), "y"),
    (np.array([0, 1, 1]), r"y must have shape \(4,\)"),
    (np.array([[0], [1], [1], [0]]), "y must have shape"),
    (np.array([0, 1, np.nan, 1]), "y contains NaN"),
])
def test_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        fn.Perceptron(2).fit(XOR_X, y)


def test_bad_inputs():
    p = fn.Perceptron(2)
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        p.fit(np.zeros((4, 3)), XOR_Y)
    with pytest.raises(ValueError, match="X must have shape"):
        p.fit(np.zeros(4), XOR_Y)
    with pytest.raises(ValueError, match="X contains NaN"):
        p.fit(np.array([[0, np.nan], [1, 1]]), [0, 1])
    with pytest.raises(ValueError, match="X contains NaN"):
        p.fit(np.array([[0, np.inf], [1, 1]]), [0, 1])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        p.fit(np.array([["a", "b"], ["c", "d"]]), [0, 1])
    with pytest.raises(ValueError, match="empty"):
        p.fit(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        p.predict(XOR_X)
    p.fit(XOR_X, AND_Y)
    with pytest.raises(ValueError, match="X must have shape"):
        p.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="y must have shape"):
        p.score(XOR_X, AND_Y[:3])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_features=0), "n_features"), (dict(n_features=2.5), "n_features"),
    (dict(n_features=2, lr=0), "lr"), (dict(n_features=2, lr=-1), "lr"),
    (dict(n_features=2, lr=float("nan")), "lr"), (dict(n_features=2, max_epochs=0), "max_epochs"),
    (dict(n_features=2, seed=-1), "seed"), (dict(n_features=True), "n_features"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):  # type or value: named either way
        fn.Perceptron(**kwargs)
    with pytest.raises(TypeError, match="shuffle"):
        fn.Perceptron(2, shuffle="yes")


def test_refit_resets_state():
    p = fn.Perceptron(2, max_epochs=20)
    with pytest.warns(ConvergenceWarning):
        p.fit(XOR_X, XOR_Y)
    p.fit(XOR_X, AND_Y)
    assert p.converged_ and p.n_epochs_ < 20
    np.testing.assert_array_equal(p.predict(XOR_X), AND_Y)


def test_large_separable_problem_is_fast():
    X, y = separable(n=5000, d=20, margin=0.05, seed=1)
    p = fn.Perceptron(20, max_epochs=2000).fit(X, y)
    assert p.converged_ and p.score(X, y) == 1.0
