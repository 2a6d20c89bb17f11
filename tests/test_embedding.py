"""Embedding and Flatten: gradient check, PyTorch parity, determinism, input checks."""
import numpy as np
import pytest

import fastnn as fn


def _lm(V=7, context=4, dim=3, hidden=5, dtype="float64"):
    return fn.Sequential(fn.Embedding(V, dim), fn.Flatten(), fn.Linear(context * dim, hidden),
                         fn.Tanh(), fn.Linear(hidden, V), dtype=dtype)


# ---------------------------------------------------------------- gradients

def test_gradcheck_embedding_flatten_linear():
    """Analytic parameter grads of Embedding+Flatten+MLP vs central differences."""
    fn.seed(0)
    model = _lm()
    rng = np.random.default_rng(1)
    # repeated ids within a row and across rows, and one id (6) never used
    x = np.array([[0, 0, 1, 2], [2, 2, 2, 2], [5, 1, 0, 3], [4, 4, 3, 0], [1, 5, 5, 2]])
    y = rng.integers(0, 7, size=len(x))
    loss_fn = fn.CrossEntropyLoss()

    def loss():
        return loss_fn(model(x), y)

    loss()
    model.zero_grad()
    model.backward(loss_fn.backward())
    eps = 1e-6
    for name, p in model.named_parameters():
        analytic = p.grad.copy()
        numeric = np.zeros_like(analytic)
        for i in np.ndindex(p.shape):
            old = p.data[i]
            p.data[i] = old + eps
            up = loss()
            p.data[i] = old - eps
            down = loss()
            p.data[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    emb_grad = model[0].weight.grad
    assert np.all(emb_grad[6] == 0)            # an unused id gets exactly zero
    assert np.abs(emb_grad[2]).sum() > 0


def test_embedding_backward_overwrites_and_accumulates():
    fn.seed(0)
    emb = fn.Embedding(5, 3, dtype="float64")
    x = np.array([[1, 1], [3, 1]])
    g = np.arange(12, dtype=np.float64).reshape(2, 2, 3)
    emb(x)
    emb.weight.grad[...] = 99.0                # stale values must not survive
    assert emb.backward(g) is None             # ids have no gradient
    expected = np.zeros((5, 3))
    expected[1] = g[0, 0] + g[0, 1] + g[1, 1]
    expected[3] = g[1, 0]
    np.testing.assert_array_equal(emb.weight.grad, expected)
    emb.backward(g, accumulate=True)
    np.testing.assert_array_equal(emb.weight.grad, 2 * expected)


def test_embedding_forward_is_a_lookup():
    fn.seed(3)
    emb = fn.Embedding(10, 4)
    assert emb.weight.shape == (10, 4) and emb.weight.dtype == np.float32
    x = np.array([[9, 0, 0], [3, 9, 1]])
    out = emb(x)
    assert out.shape == (2, 3, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, emb.weight.data[x])
    # any leading shape; Python lists and unsigned ints are accepted
    np.testing.assert_array_equal(emb([1, 2]), emb.weight.data[[1, 2]])
    np.testing.assert_array_equal(emb(np.array([[[1]], [[2]]], np.uint8)),
                                  emb.weight.data[[[[1]], [[2]]]])


def test_flatten_forward_backward():
    f = fn.Flatten()
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = f(x)
    np.testing.assert_array_equal(out, x.reshape(2, 12))
    g = np.arange(24, dtype=np.float32).reshape(2, 12) * 0.5
    np.testing.assert_array_equal(f.backward(g), g.reshape(2, 3, 4))
    np.testing.assert_array_equal(f(np.ones((5, 7), np.float32)), np.ones((5, 7)))


# ------------------------------------------------------------- PyTorch parity

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, dtype)
    fn.seed(0)
    emb = fn.Embedding(11, 6, dtype=dtype)
    temb = torch.nn.Embedding(11, 6).to(tdtype)
    with torch.no_grad():
        temb.weight.copy_(torch.from_numpy(emb.weight.data))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, size=(40, 5))
    x[0] = 3                                   # many repeats of one id
    g = rng.standard_normal((40, 5, 6)).astype(dtype)

    out = emb(x)
    tout = temb(torch.from_numpy(x))
    np.testing.assert_array_equal(out, tout.detach().numpy())  # a copy: exact
    emb.backward(g)
    tout.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(emb.weight.grad, temb.weight.grad.numpy(), **tol)


def test_lm_stack_matches_torch():
    """Embedding -> Flatten -> Linear -> Tanh -> Linear with torch's weights
    (state-dict keys line up): logits, loss and every gradient."""
    torch = pytest.importorskip("torch")
    V, C, D, H = 13, 3, 4, 8
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Embedding(V, D), torch.nn.Flatten(),
                             torch.nn.Linear(C * D, H), torch.nn.Tanh(),
                             torch.nn.Linear(H, V)).double()
    model = _lm(V, C, D, H)
    assert sorted(model.state_dict()) == sorted(tm.state_dict())
    model.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(2)
    x = rng.integers(0, V, size=(32, C))
    x[:8, :] = 5
    y = rng.integers(0, V, size=32)

    loss_fn = fn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    tloss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    tgrads = dict(tm.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


# ------------------------------------------------------------- determinism

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_grad_independent_of_thread_count(dtype):
    """The scatter-add sums each id's rows in batch order whatever the threads:
    bitwise-identical weight grads with 1 and 2 threads."""
    rng = np.random.default_rng(0)
    V, D = 50, 64
    # Zipf-like ids: a handful of ids take most of the 200k lookups
    x = np.minimum(rng.zipf(1.3, size=(50_000, 4)) - 1, V - 1)
    g = rng.standard_normal((50_000, 4, D)).astype(dtype)
    fn.seed(0)
    emb = fn.Embedding(V, D, dtype=dtype)
    saved = fn.get_num_threads()
    grads, outs = [], []
    try:
        for threads in (1, 2, 1):
            fn.set_num_threads(threads)
            outs.append(emb(x))
            emb.backward(g)
            grads.append(emb.weight.grad.copy())
    finally:
        fn.set_num_threads(saved)
    assert fn.get_num_threads() == saved
    itype = np.uint32 if dtype == "float32" else np.uint64
    for out, grad in zip(outs[1:], grads[1:]):
        np.testing.assert_array_equal(out.view(itype), outs[0].view(itype))
        np.testing.assert_array_equal(grad.view(itype), grads[0].view(itype))
    assert np.count_nonzero(grads[0].any(axis=1)) > 10


# ------------------------------------------------------------- input checks

@pytest.mark.parametrize("bad", [-1, 7, 1000])
def test_out_of_range_ids_raise(bad):
    fn.seed(0)
    emb = fn.Embedding(7, 3)
    with pytest.raises(ValueError, match=r"x must be in \[0, 7\), got " + str(bad)):
        emb(np.array([[0, 1], [bad, 2]]))
    model = _lm(V=7, context=2)
    with pytest.raises(ValueError, match=r"x must be in \[0, 7\)"):
        model(np.array([[0, bad]]))
    with pytest.raises(ValueError, match=r"x must be in \[0, 7\)"):
        model.predict(np.array([[bad, 0]]))


def test_rejected_batch_changes_no_weight():
    fn.seed(0)
    model = _lm(V=7, context=2, dtype="float32")
    opt = fn.Adam(model.parameters(), lr=0.1)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="x must be in"):
        trainer.step(np.array([[0, 7]]), np.array([1]))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("bad", [np.array([[0.0, 1.0]]), np.array([[0.5, 1.0]]),
                                 np.array([[True, False]]), np.array([["a", "b"]])])
def test_non_integer_ids_raise_type_error(bad):
    fn.seed(0)
    emb = fn.Embedding(7, 3)
    with pytest.raises(TypeError, match="x must be integers"):
        emb(bad)
    with pytest.raises(TypeError, match="x must be integers"):
        _lm(V=7, context=2)(bad)


def test_empty_and_scalar_batches_raise():
    fn.seed(0)
    emb = fn.Embedding(7, 3)
    with pytest.raises(ValueError, match="x is an empty batch"):
        emb(np.zeros((0, 2), np.int64))


def test_scalar_id_raises():
    fn.seed(0)
    with pytest.raises(ValueError, match="scalar"):
        fn.Embedding(7, 3)(np.int64(3))


@pytest.mark.parametrize("args", [(0, 3), (3, 0), (-1, 3), (2.5, 3), (True, 3)])
def test_bad_sizes_raise(args):
    with pytest.raises((TypeError, ValueError)):  # a non-int size is a TypeError, a bad int a ValueError
        fn.Embedding(*args)
