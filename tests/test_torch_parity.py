"""Parity with PyTorch (skipped cleanly when torch is not installed): forward
outputs, losses and gradients of MLPs with every activation; 20-step training
trajectories of every optimizer configuration in float32 and float64; optimizer
state dicts, writable learning rates, gradient clipping; and the layers and
losses whose edge cases PyTorch defines (label smoothing, probability targets,
the BCE log clamp, LayerNorm, GELU tanh, Embedding).

Run with ``pytest -s`` to see the max abs weight error per dtype. Observed here
(torch 2.13 CPU): float32 3.8e-06 (worst: plain RMSprop, whose 1/sqrt(v) amplifies
rounding at the first steps), float64 6.0e-15, over all 20-step trajectories.
"""
import numpy as np
import pytest

import fastnn as fn

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

DTYPES = ["float32", "float64"]
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
# Tolerances: relative to the magnitude of the compared values
TOL = {"float32": 1e-4, "float64": 1e-10}

# max abs weight error over all optimizer trajectories, per dtype (printed at the end)
MAX_ERR = {"float32": 0.0, "float64": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _report_errors():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small problems anyway
    yield
    torch.set_num_threads(old)
    print("\n[torch parity] max abs weight error over all 20-step optimizer trajectories: "
          + ", ".join(f"{k}: {v:.3g}" for k, v in MAX_ERR.items()))


def assert_close(got, want, dtype, what="", scale=None):
    got = np.asarray(got, np.float64)
    want = want.detach().double().numpy() if hasattr(want, "detach") else np.asarray(want, np.float64)
    t = TOL[dtype]
    if scale is None:
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=t, atol=t * scale, err_msg=what)


def to_torch(a):
    return torch.from_numpy(np.ascontiguousarray(a))


ACTS = {
    "relu": (lambda: fn.ReLU(), lambda: nn.ReLU()),
    "leaky_relu": (lambda: fn.LeakyReLU(0.1), lambda: nn.LeakyReLU(0.1)),
    "leaky_relu_default": (lambda: fn.LeakyReLU(), lambda: nn.LeakyReLU()),
    "sigmoid": (lambda: fn.Sigmoid(), lambda: nn.Sigmoid()),
    "tanh": (lambda: fn.Tanh(), lambda: nn.Tanh()),
    "gelu": (lambda: fn.GELU(), lambda: nn.GELU()),
    "gelu_tanh": (lambda: fn.GELU(approximate="tanh"), lambda: nn.GELU(approximate="tanh")),
    "softmax": (lambda: fn.Softmax(), lambda: nn.Softmax(dim=-1)),
}


def mlp_pair(act, dtype, sizes=(6, 16, 8, 4), seed=0, bias=True):
    """A fastnn MLP and a torch.nn.Sequential with the same weights (via state_dict)."""
    fn.seed(seed)
    make_f, make_t = ACTS[act]
    f_layers, t_layers = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        f_layers.append(fn.Linear(a, b, bias=bias))
        t_layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            f_layers.append(make_f())
            t_layers.append(make_t())
    fmodel = fn.Sequential(*f_layers, dtype=dtype)
    tmodel = nn.Sequential(*t_layers).to(TORCH_DTYPE[dtype])
    tmodel.load_state_dict({k: to_torch(v) for k, v in fmodel.state_dict().items()})
    return fmodel, tmodel


# ============================================================ state dict interop
def test_state_dict_loads_into_torch_sequential_unchanged():
    fn.seed(1)
    model = fn.Sequential(fn.Linear(5, 7), fn.ReLU(), fn.Linear(7, 3))
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    tmodel = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    result = tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), sd[k])
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(model(x), tmodel(to_torch(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_state_dict_loads_into_fastnn(dtype):
    torch.manual_seed(0)
    tmodel = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Tanh(),
                           nn.Linear(3, 2, bias=False))
    model = fn.Sequential(fn.Linear(5, 7), fn.ReLU(), fn.Linear(7, 3), fn.Tanh(),
                          fn.Linear(3, 2, bias=False), dtype=dtype)
    model.load_state_dict(tmodel.state_dict())  # tensors accepted, float32 -> dtype
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy().astype(dtype))
        assert model.state_dict()[k].dtype == np.dtype(dtype)
    tmodel = tmodel.to(TORCH_DTYPE[dtype])
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(dtype)
    assert_close(model(x), tmodel(to_torch(x)), dtype)


# ================================================== forward / loss / gradients
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("n", [1, 17])
def test_mlp_forward_loss_grads(act, dtype, n):
    fmodel, tmodel = mlp_pair(act, dtype)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, 6)).astype(dtype)
    y = rng.integers(0, 4, n)
    out = fmodel(x)
    tout = tmodel(to_torch(x))
    assert_close(out, tout, dtype, "forward")
    loss_fn = fn.CrossEntropyLoss()
    loss = loss_fn(out, y)
    tloss = F.cross_entropy(tout, to_torch(y))
    assert_close(loss, tloss.item(), dtype, "loss")
    fmodel.zero_grad()
    fmodel.backward(loss_fn.backward())
    tloss.backward()
    tparams = dict(tmodel.named_parameters())
    for name, p in fmodel.named_parameters():
        assert_close(p.grad, tparams[name].grad, dtype, name,
                     scale=max(1.0, float(tparams[name].grad.abs().max())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_without_bias(dtype):
    fmodel, tmodel = mlp_pair("gelu", dtype, bias=False)
    x = np.random.default_rng(3).standard_normal((9, 6)).astype(dtype)
    t = np.random.default_rng(4).standard_normal((9, 4)).astype(dtype)
    mse = fn.MSELoss()
    out = fmodel(x)
    loss = mse(out, t)
    fmodel.backward(mse.backward())
    tloss = F.mse_loss(tmodel(to_torch(x)), to_torch(t))
    tloss.backward()
    assert_close(loss, tloss.item(), dtype)
    for (name, p), tp in zip(fmodel.named_parameters(), tmodel.parameters()):
        assert_close(p.grad, tp.grad, dtype, name)


# ================================================= 20-step optimizer trajectories
OPTIMIZERS = {
    "sgd": (lambda p: fn.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (lambda p: fn.SGD(p, lr=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd_dampening": (lambda p: fn.SGD(p, lr=0.05, momentum=0.9, dampening=0.3),
                      lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
    "sgd_nesterov": (lambda p: fn.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "sgd_weight_decay": (lambda p: fn.SGD(p, lr=0.1, weight_decay=0.05),
                         lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "sgd_momentum_wd": (lambda p: fn.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov_wd": (lambda p: fn.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                  weight_decay=0.01)),
    "rmsprop": (lambda p: fn.RMSprop(p), lambda p: torch.optim.RMSprop(p)),
    "rmsprop_alpha_eps": (lambda p: fn.RMSprop(p, lr=3e-3, alpha=0.9, eps=1e-4),
                          lambda p: torch.optim.RMSprop(p, lr=3e-3, alpha=0.9, eps=1e-4)),
    "rmsprop_momentum": (lambda p: fn.RMSprop(p, lr=1e-3, momentum=0.9),
                         lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9)),
    "rmsprop_centered": (lambda p: fn.RMSprop(p, lr=1e-3, centered=True),
                         lambda p: torch.optim.RMSprop(p, lr=1e-3, centered=True)),
    "rmsprop_centered_momentum": (
        lambda p: fn.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True)),
    "rmsprop_weight_decay": (lambda p: fn.RMSprop(p, lr=1e-3, weight_decay=0.1),
                             lambda p: torch.optim.RMSprop(p, lr=1e-3, weight_decay=0.1)),
    "rmsprop_all": (lambda p: fn.RMSprop(p, lr=1e-3, alpha=0.95, eps=1e-6, weight_decay=0.01,
                                         momentum=0.9, centered=True),
                    lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.95, eps=1e-6,
                                                  weight_decay=0.01, momentum=0.9, centered=True)),
    "adam": (lambda p: fn.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam_betas_eps": (lambda p: fn.Adam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-4),
                       lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-4)),
    "adam_weight_decay": (lambda p: fn.Adam(p, lr=1e-2, weight_decay=0.1),
                          lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1)),
    "adamw": (lambda p: fn.AdamW(p, lr=1e-2), lambda p: torch.optim.AdamW(p, lr=1e-2)),
    "adamw_weight_decay": (lambda p: fn.AdamW(p, lr=1e-2, weight_decay=0.3),
                           lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.3)),
    "adagrad": (lambda p: fn.Adagrad(p, lr=5e-2), lambda p: torch.optim.Adagrad(p, lr=5e-2)),
    "adagrad_all": (lambda p: fn.Adagrad(p, lr=5e-2, lr_decay=0.01, weight_decay=0.05,
                                         initial_accumulator_value=0.1, eps=1e-6),
                    lambda p: torch.optim.Adagrad(p, lr=5e-2, lr_decay=0.01, weight_decay=0.05,
                                                  initial_accumulator_value=0.1, eps=1e-6)),
    "nadam": (lambda p: fn.NAdam(p, lr=1e-2), lambda p: torch.optim.NAdam(p, lr=1e-2)),
    "nadam_all": (lambda p: fn.NAdam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05,
                                     momentum_decay=1e-2),
                  lambda p: torch.optim.NAdam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6,
                                              weight_decay=0.05, momentum_decay=1e-2)),
    "nadam_decoupled": (lambda p: fn.NAdam(p, lr=1e-2, weight_decay=0.1,
                                           decoupled_weight_decay=True),
                        lambda p: torch.optim.NAdam(p, lr=1e-2, weight_decay=0.1,
                                                    decoupled_weight_decay=True)),
}


def trajectory_setup(dtype, seed=5):
    """A smooth MLP (no ReLU kinks to amplify rounding), its torch twin and data."""
    fn.seed(seed)
    fmodel = fn.Sequential(fn.Linear(10, 32), fn.Tanh(), fn.Linear(32, 16), fn.GELU(),
                           fn.Linear(16, 3), dtype=dtype)
    tmodel = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 16), nn.GELU(),
                           nn.Linear(16, 3)).to(TORCH_DTYPE[dtype])
    tmodel.load_state_dict({k: to_torch(v) for k, v in fmodel.state_dict().items()})
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 10)).astype(dtype)
    y = rng.integers(0, 3, 64)
    return fmodel, tmodel, X, y


def batches(X, y, step, size=16):
    i = (step * size) % len(X)
    return X[i:i + size], y[i:i + size]


def fn_step(model, loss_fn, opt, xb, yb):
    loss = loss_fn(model(xb), yb)
    model.zero_grad()
    model.backward(loss_fn.backward())
    opt.step()
    return loss


def torch_step(model, opt, xb, yb):
    opt.zero_grad()
    loss = F.cross_entropy(model(to_torch(xb)), to_torch(yb))
    loss.backward()
    opt.step()
    return loss.item()


def compare_weights(fmodel, tmodel, dtype, what):
    tsd = tmodel.state_dict()
    err = 0.0
    for k, v in fmodel.state_dict().items():
        tv = tsd[k].double().numpy()
        err = max(err, float(np.abs(v.astype(np.float64) - tv).max()))
        assert_close(v, tv, dtype, f"{what}: {k}")
    MAX_ERR[dtype] = max(MAX_ERR[dtype], err)
    return err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trajectory(name, dtype):
    fmodel, tmodel, X, y = trajectory_setup(dtype)
    make_f, make_t = OPTIMIZERS[name]
    fopt, topt = make_f(fmodel.parameters()), make_t(tmodel.parameters())
    loss_fn = fn.CrossEntropyLoss()
    worst = 0.0
    for step in range(20):
        xb, yb = batches(X, y, step)
        floss = fn_step(fmodel, loss_fn, fopt, xb, yb)
        tloss = torch_step(tmodel, topt, xb, yb)
        assert_close(floss, tloss, dtype, f"loss at step {step}")
        worst = max(worst, compare_weights(fmodel, tmodel, dtype, f"{name} step {step + 1}"))
    print(f"\n{name:28s} {dtype}: max abs weight error over 20 steps {worst:.3g}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop_centered_momentum", "adam", "adamw"])
def test_trainer_step_trajectory(name, dtype):
    """Trainer.step (fused forward+backward+update, grads overwritten) follows torch too."""
    fmodel, tmodel, X, y = trajectory_setup(dtype, seed=6)
    make_f, make_t = OPTIMIZERS[name]
    trainer = fn.Trainer(fmodel, fn.CrossEntropyLoss(), make_f(fmodel.parameters()))
    topt = make_t(tmodel.parameters())
    for step in range(20):
        xb, yb = batches(X, y, step)
        assert_close(trainer.step(xb, yb), torch_step(tmodel, topt, xb, yb), dtype)
        compare_weights(fmodel, tmodel, dtype, f"trainer {name} step {step + 1}")


LOSSES = {
    # name: (fastnn loss, torch loss, sigmoid head, target maker)
    "mse": (lambda: fn.MSELoss(), F.mse_loss, False,
            lambda rng, n, dt: rng.standard_normal((n, 3)).astype(dt)),
    "ce": (lambda: fn.CrossEntropyLoss(), F.cross_entropy, False,
           lambda rng, n, dt: rng.integers(0, 3, n)),
    "ce_smoothing": (lambda: fn.CrossEntropyLoss(label_smoothing=0.2),
                     lambda z, t: F.cross_entropy(z, t, label_smoothing=0.2), False,
                     lambda rng, n, dt: rng.integers(0, 3, n)),
    "ce_probs": (lambda: fn.CrossEntropyLoss(), F.cross_entropy, False,
                 lambda rng, n, dt: rng.dirichlet(np.ones(3), n).astype(dt)),
    "bce_sigmoid": (lambda: fn.BCELoss(), F.binary_cross_entropy, True,
                    lambda rng, n, dt: rng.integers(0, 2, (n, 3)).astype(dt)),
    "bce_logits": (lambda: fn.BCEWithLogitsLoss(), F.binary_cross_entropy_with_logits, False,
                   lambda rng, n, dt: rng.uniform(0, 1, (n, 3)).astype(dt)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_name", ["sgd_nesterov_wd", "rmsprop_all", "adam_weight_decay", "adamw"])
@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("clip", [None, 0.1])
def test_trainer_step_losses_and_clipping(loss_name, opt_name, dtype, clip):
    """Trainer.step (the compiled whole-step path where it applies) follows torch for
    every loss, with and without gradient clipping."""
    make_loss, tloss_fn, sigmoid_head, make_target = LOSSES[loss_name]
    make_f, make_t = OPTIMIZERS[opt_name]
    fn.seed(20)
    head_f = [fn.Sigmoid()] if sigmoid_head else []
    head_t = [nn.Sigmoid()] if sigmoid_head else []
    fmodel = fn.Sequential(fn.Linear(10, 16), fn.Tanh(), fn.Linear(16, 3), *head_f, dtype=dtype)
    tmodel = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3), *head_t).to(TORCH_DTYPE[dtype])
    tmodel.load_state_dict({k: to_torch(v) for k, v in fmodel.state_dict().items()})
    trainer = fn.Trainer(fmodel, make_loss(), make_f(fmodel.parameters()), clip_grad_norm=clip)
    topt = make_t(tmodel.parameters())
    rng = np.random.default_rng(21)
    X = rng.standard_normal((48, 10)).astype(dtype)
    Y = make_target(rng, 48, dtype)
    for step in range(12):
        i = (step % 3) * 16
        xb, yb = X[i:i + 16], Y[i:i + 16]
        value = trainer.step(xb, yb)
        topt.zero_grad()
        tl = tloss_fn(tmodel(to_torch(xb)), to_torch(yb))
        tl.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        topt.step()
        assert_close(value, tl.item(), dtype, f"loss at step {step}")
        compare_weights(fmodel, tmodel, dtype, f"{loss_name}/{opt_name} step {step + 1}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop_momentum", "adam", "adamw"])
def test_lr_change_takes_effect(name, dtype):
    """param_groups[0]["lr"] is writable and used at the next step, as in torch."""
    fmodel, tmodel, X, y = trajectory_setup(dtype, seed=7)
    make_f, make_t = OPTIMIZERS[name]
    fopt, topt = make_f(fmodel.parameters()), make_t(tmodel.parameters())
    loss_fn = fn.CrossEntropyLoss()
    for step in range(12):
        if step in (4, 8):
            for opt in (fopt, topt):
                opt.param_groups[0]["lr"] *= 0.3 if step == 4 else 5.0
        xb, yb = batches(X, y, step)
        fn_step(fmodel, loss_fn, fopt, xb, yb)
        torch_step(tmodel, topt, xb, yb)
        compare_weights(fmodel, tmodel, dtype, f"{name} step {step + 1}")
    assert fopt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"])


def test_lr_zero_freezes_weights():
    fmodel, _, X, y = trajectory_setup("float64", seed=8)
    opt = fn.Adam(fmodel.parameters(), lr=1e-2)
    loss_fn = fn.CrossEntropyLoss()
    fn_step(fmodel, loss_fn, opt, X[:16], y[:16])
    opt.param_groups[0]["lr"] = 0.0
    before = fmodel.state_dict()
    fn_step(fmodel, loss_fn, opt, X[16:32], y[16:32])
    for k, v in fmodel.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# =========================================================== optimizer state dict
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd_momentum", "sgd_nesterov_wd", "rmsprop_all", "adam",
                                  "adam_weight_decay", "adamw"])
def test_optimizer_state_dict_round_trip(name, dtype):
    """Save after 10 steps, load into a fresh optimizer, 10 more: equals 20 straight."""
    make_f, _ = OPTIMIZERS[name]
    loss_fn = fn.CrossEntropyLoss()
    m1, _, X, y = trajectory_setup(dtype, seed=9)
    o1 = make_f(m1.parameters())
    for step in range(20):
        fn_step(m1, loss_fn, o1, *batches(X, y, step))

    m2, _, _, _ = trajectory_setup(dtype, seed=9)
    o2 = make_f(m2.parameters())
    for step in range(10):
        fn_step(m2, loss_fn, o2, *batches(X, y, step))
    saved_opt = o2.state_dict()
    saved_model = m2.state_dict()
    fn_step(m2, loss_fn, o2, *batches(X, y, 10))  # the saved copies must not change with it

    m3, _, _, _ = trajectory_setup(dtype, seed=123)  # other weights: all overwritten by load
    m3.load_state_dict(saved_model)
    o3 = make_f(m3.parameters())
    if name.startswith("adam"):
        o3.param_groups[0]["lr"] = 0.5  # hyperparameters come back from the state dict too
    o3.load_state_dict(saved_opt)
    assert o3.param_groups[0]["lr"] == o1.param_groups[0]["lr"]
    for step in range(10, 20):
        fn_step(m3, loss_fn, o3, *batches(X, y, step))
    for k, v in m1.state_dict().items():
        np.testing.assert_array_equal(m3.state_dict()[k], v, err_msg=k)
    s1, s3 = o1.state_dict(), o3.state_dict()
    assert s1["param_groups"] == s3["param_groups"]
    assert s1["state"].keys() == s3["state"].keys()
    for i in s1["state"]:
        for key, v in s1["state"][i].items():
            np.testing.assert_array_equal(s3["state"][i][key], v, err_msg=f"{i}/{key}")


@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop_centered_momentum", "adam", "adamw"])
def test_optimizer_state_dict_layout_matches_torch(name):
    """Same state names, param numbering and step counts as torch.optim."""
    make_f, make_t = OPTIMIZERS[name]
    fmodel, tmodel, X, y = trajectory_setup("float64", seed=10)
    fopt, topt = make_f(fmodel.parameters()), make_t(tmodel.parameters())
    for step in range(3):
        fn_step(fmodel, fn.CrossEntropyLoss(), fopt, *batches(X, y, step))
        torch_step(tmodel, topt, *batches(X, y, step))
    fs, ts = fopt.state_dict(), topt.state_dict()
    assert fs["param_groups"][0]["params"] == ts["param_groups"][0]["params"]
    assert set(fs["state"]) == set(ts["state"])
    for i, tstate in ts["state"].items():
        tkeys = {k for k, v in tstate.items() if k == "step" or v.numel() > 0}
        assert set(fs["state"][i]) - {"step"} == tkeys - {"step"}  # fastnn's SGD also counts steps
        for k, v in tstate.items():
            if k == "step":
                assert float(fs["state"][i][k]) == float(v)
            else:
                assert_close(fs["state"][i][k], v, "float64", f"{i}/{k}")


# =========================================================== gradient clipping
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e6])
def test_clip_grad_norm(max_norm, dtype):
    fmodel, tmodel = mlp_pair("tanh", dtype, seed=11)
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((32, 6)).astype(dtype), rng.integers(0, 4, 32)
    loss_fn = fn.CrossEntropyLoss()
    loss_fn(fmodel(x), y)
    fmodel.backward(loss_fn.backward() * 10)
    F.cross_entropy(tmodel(to_torch(x)), to_torch(y)).mul(10).backward()
    norm = fn.clip_grad_norm(fmodel.parameters(), max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), max_norm)
    assert isinstance(norm, float)
    assert_close(norm, tnorm.item(), dtype, "norm")
    for (name, p), tp in zip(fmodel.named_parameters(), tmodel.parameters()):
        assert_close(p.grad, tp.grad, dtype, name)
    total = np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in fmodel.parameters()))
    assert total <= max_norm * (1 + 1e-5) or max_norm > norm


def test_clip_grad_norm_on_loose_parameters():
    """Parameters outside a model's flat buffer (and a single Parameter) work too."""
    ps = [fn.Parameter(np.zeros((3, 2))), fn.Parameter(np.zeros(4))]
    tps = []
    rng = np.random.default_rng(13)
    for p in ps:
        p.grad = rng.standard_normal(p.shape)
        tp = torch.zeros(p.shape, dtype=torch.float64, requires_grad=True)
        tp.grad = to_torch(p.grad.copy())
        tps.append(tp)
    assert fn.clip_grad_norm(ps, 0.5) == pytest.approx(torch.nn.utils.clip_grad_norm_(tps, 0.5).item())
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    single = fn.Parameter(np.zeros(5))
    single.grad = np.full(5, 2.0)
    assert fn.clip_grad_norm(single, 1.0) == pytest.approx(np.sqrt(20))
    np.testing.assert_allclose(np.linalg.norm(single.grad), 1.0, rtol=1e-5)


# ====================================================================== losses
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4, 1.0])
@pytest.mark.parametrize("target_kind", ["labels", "probs", "one_hot"])
def test_cross_entropy(dtype, smoothing, target_kind):
    rng = np.random.default_rng(14)
    n, C = 13, 5
    z = (rng.standard_normal((n, C)) * 3).astype(dtype)
    labels = rng.integers(0, C, n)
    if target_kind == "labels":
        target, ttarget = labels, to_torch(labels)
    else:
        probs = rng.dirichlet(np.ones(C), n) if target_kind == "probs" else np.eye(C)[labels]
        target = probs.astype(dtype)
        ttarget = to_torch(target)
    loss_fn = fn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = loss_fn(z, target)
    tz = to_torch(z).requires_grad_()
    tloss = F.cross_entropy(tz, ttarget, label_smoothing=smoothing)
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, "loss")
    assert_close(loss_fn.backward(), tz.grad, dtype, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_clamp_matches_torch(dtype):
    """log clamped at -100: p = 0 or 1 gives a finite loss (and gradient) like torch."""
    p = np.array([[0.0, 1.0, 0.0, 1.0, 0.5, 1e-30, 1 - 1e-7, 0.3]], dtype).T
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.25]], dtype).T
    loss_fn = fn.BCELoss()
    loss = loss_fn(p, t)
    tp = to_torch(p).requires_grad_()
    tloss = F.binary_cross_entropy(tp, to_torch(t))
    tloss.backward()
    assert np.isfinite(loss)
    assert_close(loss, tloss.item(), dtype, "loss")
    g = loss_fn.backward()
    assert np.isfinite(g).all()
    # torch clamps the gradient's denominator p(1-p) at float(1e-12) even in float64,
    # fastnn at 1e-12: they differ by 4e-9 relative where the clamp is active
    np.testing.assert_allclose(g, tp.grad.numpy(), rtol=max(TOL[dtype], 1e-8), atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_and_mse_match_torch(dtype):
    rng = np.random.default_rng(15)
    z = (rng.standard_normal((11, 3)) * 5).astype(dtype)
    z[0, 0], z[1, 1] = 200.0, -200.0  # exp overflows in a naive formula
    t = rng.uniform(0, 1, (11, 3)).astype(dtype)
    for loss_fn, tfn in ((fn.BCEWithLogitsLoss(), F.binary_cross_entropy_with_logits),
                         (fn.MSELoss(), F.mse_loss)):
        loss = loss_fn(z, t)
        tz = to_torch(z).requires_grad_()
        tloss = tfn(tz, to_torch(t))
        tloss.backward()
        assert_close(loss, tloss.item(), dtype, type(loss_fn).__name__)
        assert_close(loss_fn.backward(), tz.grad, dtype, type(loss_fn).__name__)


# ============================================================= single layers
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_matches_torch(dtype, affine):
    rng = np.random.default_rng(16)
    layer = fn.LayerNorm(7, eps=1e-5, elementwise_affine=affine, dtype=dtype)
    tlayer = nn.LayerNorm(7, eps=1e-5, elementwise_affine=affine).to(TORCH_DTYPE[dtype])
    if affine:
        w, b = rng.standard_normal(7).astype(dtype), rng.standard_normal(7).astype(dtype)
        layer.load_state_dict({"weight": w, "bias": b})
        tlayer.load_state_dict({"weight": to_torch(w), "bias": to_torch(b)})
    x = (rng.standard_normal((9, 7)) * 4 + 3).astype(dtype)
    R = rng.standard_normal((9, 7)).astype(dtype)
    out = layer(x)
    tx = to_torch(x).requires_grad_()
    tout = tlayer(tx)
    assert_close(out, tout, dtype, "forward")
    gx = layer.backward(R)
    (tout * to_torch(R)).sum().backward()
    assert_close(gx, tx.grad, dtype, "input grad")
    if affine:
        tparams = dict(tlayer.named_parameters())
        for name, p in layer.named_parameters():
            assert_close(p.grad, tparams[name].grad, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(dtype, approximate):
    x = np.linspace(-12, 12, 2001).astype(dtype).reshape(-1, 1)
    layer = fn.Sequential(fn.GELU(approximate=approximate), dtype=dtype)[0]
    out = layer(x)
    tx = to_torch(x).requires_grad_()
    tout = F.gelu(tx, approximate=approximate)
    tout.sum().backward()
    assert_close(out, tout, dtype, "forward")
    assert_close(layer.backward(np.ones_like(x)), tx.grad, dtype, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_standalone_match_torch(dtype):
    x = np.linspace(-30, 30, 600).astype(dtype).reshape(-1, 3)
    for name, (make_f, make_t) in ACTS.items():
        layer = fn.Sequential(make_f(), dtype=dtype)[0]
        out = layer(x)
        assert out.dtype == np.dtype(dtype)
        tx = to_torch(x).requires_grad_()
        tout = make_t()(tx)
        R = np.cos(np.arange(x.size)).reshape(x.shape).astype(dtype)
        (tout * to_torch(R)).sum().backward()
        assert_close(out, tout, dtype, name)
        assert_close(layer.backward(R), tx.grad, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype):
    rng = np.random.default_rng(17)
    fn.seed(18)
    model = fn.Sequential(fn.Embedding(10, 4), fn.Flatten(), fn.Linear(12, 2), dtype=dtype)
    tmodel = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).to(TORCH_DTYPE[dtype])
    tmodel.load_state_dict({k: to_torch(v) for k, v in model.state_dict().items()})
    ids = np.array([[1, 1, 9], [0, 9, 9], [3, 1, 1], [1, 2, 3]])  # repeats accumulate
    out = model(ids)
    tout = tmodel(to_torch(ids))
    assert_close(out, tout, dtype, "forward")
    R = rng.standard_normal(out.shape).astype(dtype)
    model.backward(R)
    (tout * to_torch(R)).sum().backward()
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.grad, tparams[name].grad, dtype, name)


def test_linear_init_distribution_like_torch():
    """Kaiming-uniform a=sqrt(5): weight and bias ~ U(+-1/sqrt(in))."""
    fn.seed(19)
    layer = fn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w, b = layer.weight.data, layer.bias.data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    t = nn.Linear(400, 300)
    assert abs(w.std() - t.weight.detach().numpy().std()) < 0.02 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound
