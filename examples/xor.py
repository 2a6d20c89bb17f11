"""XOR: the classic problem a single linear unit cannot solve.

A two-layer MLP learns it in a few hundred steps; Rosenblatt's perceptron,
being linear, cannot, and says so (ConvergenceWarning, converged_ = False).

    python examples/xor.py
"""
import warnings

import numpy as np

import fastnn as fn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
y = np.array([0, 1, 1, 0])

# --- a multi-layer perceptron: one hidden Tanh layer is enough ---------------
fn.seed(0)
model = fn.Sequential(fn.Linear(2, 8), fn.Tanh(), fn.Linear(8, 1))
trainer = fn.Trainer(model, fn.BCEWithLogitsLoss(), fn.Adam(model.parameters(), lr=0.05))
targets = y.reshape(-1, 1).astype(np.float32)   # BCE targets have the output's shape (4, 1)
for step in range(1, 301):
    loss = trainer.step(X, targets)
    if step % 100 == 0:
        print(f"step {step:3d}: loss {loss:.5f}")

probabilities = 1.0 / (1.0 + np.exp(-model.predict(X)[:, 0]))
predicted = (probabilities > 0.5).astype(int)
print("\nMLP  x1 x2 -> p(1)   predicted  target")
for (a, b), p, pred, t in zip(X.astype(int), probabilities, predicted, y):
    print(f"      {a}  {b}    {p:.3f}   {pred}          {t}")
mlp_accuracy = float(np.mean(predicted == y))
print(f"MLP accuracy: {mlp_accuracy:.2f}")

# --- a single perceptron: no line separates XOR, and it reports that --------
perceptron = fn.Perceptron(n_features=2, max_epochs=100)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    perceptron.fit(X, y)
print(f"\nPerceptron: converged={perceptron.converged_} after {perceptron.n_epochs_} epochs, "
      f"mistakes in the last epoch: {perceptron.n_mistakes_[-1]}, "
      f"accuracy {perceptron.score(X, y):.2f}")
for w in caught:
    print(f"  {w.category.__name__}: {w.message}")

if mlp_accuracy != 1.0 or perceptron.converged_:
    raise SystemExit("unexpected result")
