"""Rosenblatt's perceptron on linearly separable data.

Two Gaussian clouds separated by a margin: the learning rule makes mistakes
for a few epochs, then an epoch with none, which is convergence (Novikoff:
at most (R / margin)^2 updates in total).

    python examples/perceptron.py
"""
import numpy as np

import fastnn as fn
from fastnn.datasets import train_test_split

rng = np.random.default_rng(0)
n = 400
true_w, true_b = np.array([2.0, -1.0]), 0.5
X = rng.normal(size=(4 * n, 2)) * 2.0
score = X @ true_w + true_b
keep = np.abs(score) > 0.2                       # a margin around the true boundary
X, y = X[keep][:n], (score[keep][:n] > 0).astype(int)

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)
model = fn.Perceptron(n_features=2, max_epochs=1000, shuffle=True, seed=0).fit(X_train, y_train)

print(f"converged: {model.converged_} after {model.n_epochs_} epochs")
print(f"mistakes per epoch: {model.n_mistakes_}")
print(f"learned w = {np.round(model.weight_, 3)}, b = {model.bias_:.3f}")
direction = model.weight_ / np.linalg.norm(model.weight_)
print(f"direction {np.round(direction, 3)} vs true {np.round(true_w / np.linalg.norm(true_w), 3)}")
print(f"train accuracy {model.score(X_train, y_train):.3f}, test accuracy {model.score(X_test, y_test):.3f}")

# {-1, +1} labels work the same way, and predict answers in that label set
signed = fn.Perceptron(n_features=2).fit(X_train, np.where(y_train == 1, 1, -1))
print(f"with labels {{-1, +1}}: predictions {signed.predict(X_test[:8])}, "
      f"converged={signed.converged_}")

if not (model.converged_ and model.score(X_train, y_train) == 1.0):
    raise SystemExit("the perceptron should converge on separable data")
