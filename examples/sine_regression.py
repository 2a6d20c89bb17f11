"""Function approximation: fit y = sin(x) on [-pi, pi] with a small Tanh MLP.

    python examples/sine_regression.py
"""
import numpy as np

import fastnn as fn

fn.seed(0)
rng = np.random.default_rng(0)
X_train = rng.uniform(-np.pi, np.pi, size=(1024, 1)).astype(np.float32)
y_train = np.sin(X_train)
X_test = np.linspace(-np.pi, np.pi, 201, dtype=np.float32).reshape(-1, 1)
y_test = np.sin(X_test)

model = fn.Sequential(fn.Linear(1, 32), fn.Tanh(), fn.Linear(32, 32), fn.Tanh(), fn.Linear(32, 1))
optimizer = fn.Adam(model.parameters(), lr=1e-2)
epochs, batch_size = 150, 64
steps = epochs * (len(X_train) // batch_size)
scheduler = fn.CosineAnnealingLR(optimizer, T_max=steps)
trainer = fn.Trainer(model, fn.MSELoss(), optimizer, scheduler)
history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=batch_size,
                      validation_data=(X_test, y_test), seed=0, progress=False)
for e in (0, 9, 49, epochs - 1):
    print(f"epoch {e + 1:3d}: train MSE {history.history['loss'][e]:.2e}, "
          f"test MSE {history.history['val_loss'][e]:.2e}")

prediction = model.predict(X_test)
mse = float(np.mean((prediction - y_test) ** 2))
print("\n     x    sin(x)   model")
for i in range(0, len(X_test), 25):
    print(f"{X_test[i, 0]:6.2f}  {y_test[i, 0]:7.4f}  {prediction[i, 0]:7.4f}")
print(f"\ntest MSE: {mse:.2e}  (max abs error {np.max(np.abs(prediction - y_test)):.4f})")
if not mse < 1e-3:
    raise SystemExit("the fit is worse than expected")
