"""End to end: MLPs built from fastnn's pieces learn real (nonlinear) tasks.

Data are generated with seeded NumPy: a 3-class spiral, two moons, and a sine
regression. Thresholds leave margin over what the seeded runs reach, but a
broken gradient, optimizer or fused step would not get near them.
"""
import numpy as np
import pytest

import fastnn as fn

DTYPES = ["float32", "float64"]


@pytest.fixture(autouse=True)
def _one_thread():
    """These small models learn the same with any thread count (test_kernels checks
    thread independence); one thread keeps them fast on a shared, loaded machine,
    where a 2-thread fork-join per tiny GEMM can cost more than the GEMM."""
    old = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(old)


def spiral(n_per_class, seed, noise=0.2, turns=1.5):
    """Three interleaved spiral arms in 2-D, shuffled; labels 0..2."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(3):
        t = rng.uniform(0, 1, n_per_class)
        theta = c * 2 * np.pi / 3 + t * turns * 2 * np.pi + rng.standard_normal(n_per_class) * noise
        X.append(np.c_[t * np.sin(theta), t * np.cos(theta)])
        y.append(np.full(n_per_class, c))
    X, y = np.concatenate(X), np.concatenate(y)
    order = rng.permutation(len(X))
    return X[order], y[order]


def two_moons(n, seed, noise=0.1):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.integers(0, 2, n)
    X = np.where(upper[:, None] == 1, np.c_[np.cos(t), np.sin(t)],
                 np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return X + rng.standard_normal((n, 2)) * noise, upper


def split(X, y, n_train):
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def accuracy(model, X, y):
    return float(np.mean(model.predict(X).argmax(axis=1) == y))


# ================================================================= spiral
@pytest.mark.parametrize("dtype", DTYPES)
def test_spiral_fit_adam(dtype):
    X, y = spiral(400, seed=0)
    Xtr, ytr, Xte, yte = split(X, y, 900)
    fn.seed(0)
    model = fn.Sequential(fn.Linear(2, 64), fn.ReLU(), fn.Linear(64, 64), fn.ReLU(),
                          fn.Linear(64, 3), dtype=dtype)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
    history = trainer.fit(Xtr, ytr, epochs=40, batch_size=32, validation_data=(Xte, yte),
                          seed=0, progress=False)
    h = history.history
    assert len(h["loss"]) == 40 and len(h["val_accuracy"]) == 40
    assert h["loss"][-1] < 0.25 * h["loss"][0]
    train_acc, test_acc = accuracy(model, Xtr, ytr), accuracy(model, Xte, yte)
    print(f"\nspiral {dtype}: train {train_acc:.3f} held-out {test_acc:.3f}")
    assert train_acc >= 0.95
    assert test_acc >= 0.90
    ev = trainer.evaluate(Xte, yte)
    assert ev["accuracy"] == pytest.approx(test_acc)
    assert ev["loss"] == pytest.approx(h["val_loss"][-1])


def test_spiral_is_not_linearly_separable():
    """The task needs the hidden layers: a linear softmax model cannot solve it."""
    X, y = spiral(400, seed=0)
    Xtr, ytr, Xte, yte = split(X, y, 900)
    fn.seed(0)
    model = fn.Sequential(fn.Linear(2, 3), dtype="float64")
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
    trainer.fit(Xtr, ytr, epochs=20, batch_size=32, seed=0, progress=False)
    assert accuracy(model, Xtr, ytr) < 0.75


@pytest.mark.parametrize("dtype", DTYPES)
def test_spiral_step_loop_with_regularized_stack(dtype):
    """A manual Trainer.step loop through the general (non-fused) path: LayerNorm,
    Dropout, GELU, AdamW, label smoothing, gradient clipping and a cosine schedule."""
    X, y = spiral(400, seed=1)
    Xtr, ytr, Xte, yte = split(X, y, 900)
    fn.seed(1)
    model = fn.Sequential(fn.Linear(2, 64), fn.ReLU(), fn.LayerNorm(64), fn.Dropout(0.05),
                          fn.Linear(64, 64), fn.GELU(), fn.Linear(64, 3), dtype=dtype)
    opt = fn.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    epochs, bs = 40, 32
    steps = epochs * ((len(Xtr) + bs - 1) // bs)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(label_smoothing=0.05), opt,
                         scheduler=fn.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-4),
                         clip_grad_norm=5.0)
    rng = np.random.default_rng(2)
    for _ in range(epochs):
        order = rng.permutation(len(Xtr))
        for i in range(0, len(Xtr), bs):
            idx = order[i:i + bs]
            loss = trainer.step(Xtr[idx], ytr[idx])
            assert np.isfinite(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-6, abs=1e-9)
    train_acc, test_acc = accuracy(model, Xtr, ytr), accuracy(model, Xte, yte)
    print(f"\nspiral (regularized) {dtype}: train {train_acc:.3f} held-out {test_acc:.3f}")
    assert train_acc >= 0.95
    assert test_acc >= 0.90
    assert model.training  # predict restored the mode


# ============================================================== two moons
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["bce_logits", "bce_sigmoid"])
def test_two_moons_sgd_momentum(dtype, loss):
    X, y = two_moons(1000, seed=3)
    Xtr, ytr, Xte, yte = split(X, y, 800)
    fn.seed(3)
    head = [fn.Sigmoid()] if loss == "bce_sigmoid" else []
    model = fn.Sequential(fn.Linear(2, 32), fn.Tanh(), fn.Linear(32, 32), fn.Tanh(),
                          fn.Linear(32, 1), *head, dtype=dtype)
    loss_fn = fn.BCELoss() if head else fn.BCEWithLogitsLoss()
    trainer = fn.Trainer(model, loss_fn, fn.SGD(model.parameters(), lr=0.1, momentum=0.9))
    h = trainer.fit(Xtr, ytr[:, None].astype(dtype), epochs=40, batch_size=32, seed=3,
                    validation_data=(Xte, yte[:, None].astype(dtype)), progress=False).history
    threshold = 0.5 if head else 0.0
    pred_tr = (model.predict(Xtr)[:, 0] > threshold)
    pred_te = (model.predict(Xte)[:, 0] > threshold)
    train_acc, test_acc = np.mean(pred_tr == ytr), np.mean(pred_te == yte)
    print(f"\ntwo moons {loss} {dtype}: train {train_acc:.3f} held-out {test_acc:.3f}")
    assert train_acc >= 0.95 and test_acc >= 0.93
    assert h["val_accuracy"][-1] == pytest.approx(test_acc)


# ============================================================== regression
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_name", ["adam", "rmsprop"])
def test_sine_regression_tanh(dtype, opt_name):
    rng = np.random.default_rng(4)
    X = rng.uniform(-np.pi, np.pi, (800, 1))
    y = np.sin(X) + rng.standard_normal(X.shape) * 0.02
    Xtr, ytr, Xte, yte = split(X, y, 600)
    fn.seed(4)
    model = fn.Sequential(fn.Linear(1, 32), fn.Tanh(), fn.Linear(32, 32), fn.Tanh(),
                          fn.Linear(32, 1), dtype=dtype)
    opt = (fn.Adam(model.parameters(), lr=1e-2) if opt_name == "adam"
           else fn.RMSprop(model.parameters(), lr=3e-3))
    trainer = fn.Trainer(model, fn.MSELoss(), opt)
    h = trainer.fit(Xtr, ytr, epochs=60, batch_size=32, seed=4, progress=False).history
    assert "accuracy" not in h  # regression: loss only
    test_mse = float(np.mean((model.predict(Xte) - yte) ** 2))
    print(f"\nsine {opt_name} {dtype}: train mse {h['loss'][-1]:.2e} held-out mse {test_mse:.2e}")
    assert h["loss"][-1] < 5e-3
    assert test_mse < 5e-3  # variance of sin is 0.5: a 100x reduction at least
    assert trainer.evaluate(Xte, yte)["loss"] == pytest.approx(test_mse, rel=1e-4)


def test_training_is_reproducible_with_seed():
    X, y = spiral(100, seed=5)

    def run():
        fn.seed(7)
        model = fn.Sequential(fn.Linear(2, 16), fn.ReLU(), fn.Dropout(0.1), fn.Linear(16, 3))
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
        trainer.fit(X, y, epochs=3, batch_size=16, shuffle=True, progress=False)
        return model.state_dict()

    a, b = run(), run()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_float32_and_float64_train_alike():
    """Same seed, same data: the two precisions follow nearly the same path."""
    X, y = spiral(100, seed=6)
    results = {}
    for dtype in DTYPES:
        fn.seed(8)
        model = fn.Sequential(fn.Linear(2, 16), fn.Tanh(), fn.Linear(16, 3), dtype=dtype)
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
        results[dtype] = trainer.fit(X, y, epochs=5, batch_size=30, seed=0,
                                     progress=False).history["loss"]
    np.testing.assert_allclose(results["float32"], results["float64"], rtol=1e-3)
