"""Handwritten digits: train, evaluate, predict, save and load.

    python examples/digits.py
"""
import os
import tempfile

import numpy as np

import fastnn as fn
from fastnn.datasets import load_digits, train_test_split

fn.seed(0)
X, y = load_digits()                              # float32 pixels in [0, 1], int64 labels
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, seed=0, stratify=True)

model = fn.Sequential(fn.Linear(64, 128), fn.ReLU(), fn.Dropout(0.1), fn.Linear(128, 10))
optimizer = fn.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
trainer = fn.Trainer(model, fn.CrossEntropyLoss(label_smoothing=0.1), optimizer)
history = trainer.fit(X_train, y_train, epochs=20, batch_size=32, validation_split=0.1, seed=0,
                      callbacks=[fn.EarlyStopping(monitor="val_loss", patience=5,
                                                  restore_best_weights=True)],
                      progress=False)
print(f"trained {len(history.epoch)} epochs; last val accuracy "
      f"{history.history['val_accuracy'][-1]:.4f}")

metrics = trainer.evaluate(X_test, y_test)
print(f"test loss {metrics['loss']:.4f}, test accuracy {metrics['accuracy']:.4f}")

logits = model.predict(X_test[:10])              # eval mode, batched, no grad bookkeeping
print(f"predicted {logits.argmax(axis=1)}\nactual    {y_test[:10]}")

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "digits.npz")
    fn.save(path, model, optimizer)
    print(f"saved {os.path.getsize(path):,} bytes to {os.path.basename(path)}; "
          f"directory holds {os.listdir(tmp)}")

    rebuilt = fn.load(path)                       # the architecture is in the file
    same = np.array_equal(rebuilt.predict(X_test), model.predict(X_test))
    print(f"rebuilt model: {len(rebuilt)} layers, identical predictions: {same}")

    # resuming: a fresh model and optimizer get weights and Adam moments back
    model2 = fn.Sequential(fn.Linear(64, 128), fn.ReLU(), fn.Dropout(0.1), fn.Linear(128, 10))
    optimizer2 = fn.AdamW(model2.parameters(), lr=3e-3, weight_decay=1e-2)
    fn.load(path, model2, optimizer2)
    resumed = fn.Trainer(model2, fn.CrossEntropyLoss(label_smoothing=0.1), optimizer2)
    resumed.fit(X_train, y_train, epochs=2, batch_size=32, seed=1, progress=False)
    print(f"after 2 more epochs: test accuracy {resumed.evaluate(X_test, y_test)['accuracy']:.4f}")

    try:
        fn.load(path, fn.Sequential(fn.Linear(64, 32), fn.ReLU(), fn.Linear(32, 10)))
    except ValueError as err:
        print(f"loading into a different architecture fails clearly:\n  {err}")

if not (same and metrics["accuracy"] >= 0.95):
    raise SystemExit("unexpected result")
