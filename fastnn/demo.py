"""``python -m fastnn demo``: train an MLP on the bundled digits and report
test accuracy and throughput.

The recipe (64-256-128-10 ReLU MLP, dropout 0.2, AdamW, label smoothing 0.1,
linear warmup into a cosine schedule, 30 epochs of batch 32) reaches >= 0.98
test accuracy on a stratified 80/20 split for every seed we tried, in about
a second of training on one core.
"""
import time
import types

import numpy as np

import fastnn as fn
from fastnn.datasets import load_digits, train_test_split

SEED = 0
EPOCHS = 30
BATCH_SIZE = 32
LR = 3e-3
WARMUP_STEPS = 100


def build_model():
    return fn.Sequential(
        fn.Linear(64, 256), fn.ReLU(), fn.Dropout(0.2),
        fn.Linear(256, 128), fn.ReLU(), fn.Dropout(0.2),
        fn.Linear(128, 10),
    )


def train(epochs=EPOCHS, seed=SEED, progress=True, verbose=True):
    """Train the demo model; returns (model, trainer, history, results dict)."""
    say = print if verbose else (lambda *a, **k: None)
    fn.seed(seed)
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, seed=seed,
                                                        stratify=True)
    model = build_model()
    optimizer = fn.AdamW(model.parameters(), lr=LR, weight_decay=1e-2)
    total_steps = epochs * -(-len(X_train) // BATCH_SIZE)
    warmup = min(WARMUP_STEPS, max(1, total_steps // 4))
    cosine = fn.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    scheduler = fn.LinearWarmup(optimizer, warmup, after=cosine)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(label_smoothing=0.1), optimizer, scheduler)

    say(f"fastnn {fn.__version__} demo: MLP 64-256-128-10 on the digits "
        f"({len(X_train)} train / {len(X_test)} test), {epochs} epochs of batch {BATCH_SIZE}, "
        f"{fn.get_num_threads()} thread(s)")
    start = time.perf_counter()
    # The held-out split is only watched here (no callback acts on it).
    history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=BATCH_SIZE,
                          validation_data=(X_test, y_test), shuffle=True, seed=seed,
                          progress=progress)
    train_time = time.perf_counter() - start

    start = time.perf_counter()
    predictions = model.predict(X_test).argmax(axis=1)
    infer_time = time.perf_counter() - start
    accuracy = float(np.mean(predictions == y_test))
    results = {
        "test_accuracy": accuracy,
        "train_time": train_time,
        "train_samples_per_s": epochs * len(X_train) / train_time,
        "inference_samples_per_s": len(X_test) / infer_time if infer_time > 0 else float("inf"),
        "final_loss": history.history["loss"][-1],
    }
    return model, trainer, history, results


def main(args=None):
    if args is None:
        args = types.SimpleNamespace(epochs=None, distributed=False)
    if getattr(args, "distributed", False):
        from fastnn.distributed import run_demo   # only needed (and importable) with MPI
        return run_demo(args)
    epochs = EPOCHS if getattr(args, "epochs", None) is None else args.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SystemExit(f"python -m fastnn demo: --epochs must be a positive int, got {epochs!r}")
    _, _, history, r = train(epochs=epochs)
    h = history.history
    print(f"final epoch: loss {h['loss'][-1]:.4f}, train accuracy {h['accuracy'][-1]:.4f}, "
          f"val loss {h['val_loss'][-1]:.4f}")
    print(f"test accuracy: {r['test_accuracy']:.4f}")
    print(f"train time: {r['train_time']:.2f} s ({r['train_samples_per_s']:,.0f} samples/s); "
          f"inference: {r['inference_samples_per_s']:,.0f} samples/s")
    return 0
