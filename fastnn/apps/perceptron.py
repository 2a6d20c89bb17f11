"""Rosenblatt's perceptron (1958): a linear threshold unit trained one sample at
a time, updating only on mistakes.

With labels t in {-1, +1}, a sample is a mistake when t * (w.x + b) <= 0, and
then w += lr * t * x, b += lr * t. On linearly separable data this stops
making mistakes after finitely many updates (Novikoff's theorem); on data
that is not separable (XOR) it never does, and ``fit`` says so with a
``ConvergenceWarning`` and ``converged_ = False`` instead of pretending.
"""
import numbers
import warnings

import numpy as np

from .. import _random
from .. import _validation as V

__all__ = ["Perceptron", "ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """The learning rule did not reach an epoch without mistakes."""


class Perceptron:
    """Binary linear classifier trained with Rosenblatt's rule.

    ``Perceptron(n_features, lr=1.0, max_epochs=1000, shuffle=False, seed=None)``;
    labels are {0, 1} or {-1, +1} and ``predict`` answers in the set it was
    trained on. After ``fit``: ``weight_``, ``bias_``, ``classes_``,
    ``converged_`` (an epoch passed without a mistake), ``n_epochs_`` and
    ``n_mistakes_`` (mistakes per epoch).

    Weights start at zero, so ``lr`` only scales them (the sequence of
    mistakes, hence the decisions, does not depend on it).
    """

    def __init__(self, n_features, lr=1.0, max_epochs=1000, shuffle=False, seed=None):
        self.n_features = V.integer(n_features, "n_features", 1)
        self.lr = V.real(lr, "lr", 0.0, low_open=True)
        self.max_epochs = V.integer(max_epochs, "max_epochs", 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
        self.seed = seed
        self.weight_ = None
        self.bias_ = None
        self.classes_ = None

    # --- input checks ---------------------------------------------------------
    def _check_X(self, X):
        arr = np.asarray(X)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"X must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}), got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError("X is empty (0 samples)")
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("X contains NaN or inf")
        return arr

    def _check_y(self, y, n):
        arr = np.asarray(y)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"y must have shape ({n},) to match X, got {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"y must hold labels {{0, 1}} or {{-1, +1}}, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("y contains NaN or inf")
        classes = np.unique(arr)
        values = set(classes.astype(np.float64).tolist())
        if values not in ({0.0, 1.0}, {-1.0, 1.0}):
            shown = classes.tolist() if len(classes) <= 6 else classes[:6].tolist() + ["..."]
            raise ValueError(f"y must hold exactly two labels, {{0, 1}} or {{-1, +1}}, got {shown}")
        return np.where(arr == classes[1], 1.0, -1.0), classes

    # --- training ---------------------------------------------------------------
    def fit(self, X, y):
        """Run Rosenblatt's rule over (X, y) until an epoch makes no mistake or
        ``max_epochs`` is reached; returns self."""
        X = self._check_X(X)
        t, classes = self._check_y(y, X.shape[0])
        n = X.shape[0]
        signed = t[:, None] * X           # row i is t_i * x_i: the margin is signed @ w + t*b
        w = np.zeros(self.n_features)
        b = 0.0
        lr = self.lr
        rng = None
        if self.shuffle:
            rng = np.random.default_rng(self.seed) if self.seed is not None else _random.generator()
        mistakes_per_epoch = []
        converged = False
        for _ in range(self.max_epochs):
            order = rng.permutation(n) if rng is not None else None
            S, T = (signed, t) if order is None else (signed[order], t[order])
            mistakes = 0
            # Sequential rule, vectorised: score a block of upcoming samples
            # with the current weights and jump to its first mistake. Identical
            # to visiting samples one by one; cheap once mistakes are rare.
            i, block = 0, 8
            while i < n:
                j = min(i + block, n)
                margins = S[i:j] @ w + T[i:j] * b
                bad = np.flatnonzero(margins <= 0)
                if bad.size == 0:
                    i, block = j, min(block * 2, 1024)
                    continue
                k = i + int(bad[0])
                w += lr * S[k]
                b += lr * T[k]
                mistakes += 1
                i, block = k + 1, 8
            mistakes_per_epoch.append(mistakes)
            if mistakes == 0:
                converged = True
                break
        self.weight_, self.bias_, self.classes_ = w, float(b), classes
        self.converged_ = converged
        self.n_epochs_ = len(mistakes_per_epoch)
        self.n_mistakes_ = mistakes_per_epoch
        if not converged:
            warnings.warn(f"Perceptron did not converge in {self.max_epochs} epochs "
                          f"({mistakes_per_epoch[-1]} mistakes in the last one): the data may "
                          "not be linearly separable", ConvergenceWarning, stacklevel=2)
        return self

    # --- inference ----------------------------------------------------------------
    def _check_fitted(self):
        if self.weight_ is None:
            raise RuntimeError("this Perceptron is not fitted yet: call fit(X, y) first")

    def decision_function(self, X):
        """w.x + b for each sample (positive means the larger label)."""
        self._check_fitted()
        return self._check_X(X) @ self.weight_ + self.bias_

    def predict(self, X):
        """Labels from the training label set: the larger one where w.x + b > 0."""
        scores = self.decision_function(X)
        return np.where(scores > 0, self.classes_[1], self.classes_[0])

    def score(self, X, y):
        """Accuracy of predict(X) against y."""
        pred = self.predict(X)
        y = np.asarray(y)
        if y.shape != pred.shape:
            raise ValueError(f"y must have shape {pred.shape} to match X, got {y.shape}")
        return float(np.mean(pred == y))

    def __repr__(self):
        return (f"Perceptron(n_features={self.n_features}, lr={self.lr}, "
                f"max_epochs={self.max_epochs}, shuffle={self.shuffle}, seed={self.seed})")
