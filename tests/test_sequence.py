"""Sequence layers: (batch, time, features) tensors through Linear, the
activations, LayerNorm, Dropout and CrossEntropyLoss (with ignore_index);
EmbeddingBag; Conv1d (stride, padding, dilation, causal). Each compiled kernel
against its NumPy twin (hypothesis), 1-vs-2-thread bitwise equality, float64
central-difference gradients, PyTorch parity (when installed), bad-input
errors, and two tiny next-token models learning a toy sequence with fn.Trainer.
"""
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fn
from fastnn import _reference as ref
from fastnn._kernels import _ops
from fastnn.apps.seqmodels import BagOfWordsLM, CausalConvLM
from fastnn.nn.sequence import Conv1d, EmbeddingBag
from numeric import numeric_grad

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = st.sampled_from([np.float32, np.float64])


def tol(dtype):
    return 1e-4 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(got, want, dtype, scale=None):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if scale is None:
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol(dtype), atol=tol(dtype) * scale)


def randn(rng, shape, dtype, s=1.0):
    return (rng.standard_normal(shape) * s).astype(dtype)


def threads(n):
    """Context: run with n fastnn threads, restoring the old count."""
    class _T:
        def __enter__(self):
            self.old = fn.get_num_threads()
            fn.set_num_threads(n)

        def __exit__(self, *a):
            fn.set_num_threads(self.old)
    return _T()


# =============================================================== kernels vs twins
@st.composite
def conv_cases(draw):
    B, cin, cout = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pl, pr = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    need = d * (k - 1) + 1 - pl - pr  # shortest input with an output
    L = max(1, need) + draw(st.integers(0, 20))
    lout = (L + pl + pr - d * (k - 1) - 1) // s + 1
    return B, cin, cout, k, s, d, pl, pr, L, lout


@SETTINGS
@given(case=conv_cases(), dtype=DTYPES, seed=st.integers(0, 2**31), bias=st.booleans(),
       relu=st.booleans(), with_gx=st.booleans(), accumulate=st.booleans())
def test_conv1d_kernels_match_twin(case, dtype, seed, bias, relu, with_gx, accumulate):
    B, cin, cout, k, s, d, pl, pr, L, lout = case
    rng = np.random.default_rng(seed)
    x, w = randn(rng, (B, L, cin), dtype), randn(rng, (cout, cin, k), dtype)
    b = randn(rng, cout, dtype) if bias else None
    outs = []
    for impl in (_ops, ref):
        wr = np.full((cout, cin * k), np.nan, dtype)
        col = np.full((B * lout, cin * k), np.nan, dtype)
        y = np.full((B, lout, cout), np.nan, dtype)
        impl.conv1d_forward(x, w, b, s, d, pl, pr, relu, wr, col, y)
        outs.append((wr, col, y))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])  # the reorder and the unfold are exact
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert_close(outs[0][2], outs[1][2], dtype, scale=max(1.0, np.sqrt(cin * k)))
    wr, col, y = outs[1]
    gy = randn(rng, (B, lout, cout), dtype)
    gw0, gb0 = randn(rng, w.shape, dtype), randn(rng, cout, dtype)
    grads = []
    for impl in (_ops, ref):
        gw = gw0.copy() if accumulate else np.full(w.shape, np.nan, dtype)
        gb = (gb0.copy() if accumulate else np.full(cout, np.nan, dtype)) if bias else None
        gx = np.full(x.shape, np.nan, dtype) if with_gx else None
        dcol = np.empty((B * lout, cin * k), dtype) if with_gx else None
        gz = np.full(gy.shape, np.nan, dtype) if relu else None
        gy_in = gy.copy()
        impl.conv1d_backward(wr, col, y, relu, gy_in, s, d, pl, pr, gz,
                             np.empty_like(wr), dcol, gx, gw, gb, accumulate)
        np.testing.assert_array_equal(gy_in, gy)  # the incoming gradient is left alone
        grads.append((gw, gb, gx, gz))
    big = max(1.0, np.sqrt(B * lout * max(cout, cin * k)))
    for got, want in zip(*grads):
        if want is not None:
            assert_close(got, want, dtype, scale=big)


@SETTINGS
@given(n=st.integers(1, 40), bag=st.integers(1, 9), dim=st.sampled_from([1, 3, 16, 17, 64]),
       num=st.integers(1, 30), mode=st.sampled_from([_ops.BAG_SUM, _ops.BAG_MEAN, _ops.BAG_MAX]),
       accumulate=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**31))
def test_embedding_bag_kernels_match_twin(n, bag, dim, num, mode, accumulate, dtype, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num, n * bag)
    w = randn(rng, (num, dim), dtype)
    o_k, o_r = np.full((n, dim), np.nan, dtype), np.empty((n, dim), dtype)
    a_k, a_r = (np.full((n, dim), -1), np.empty((n, dim), np.int64)) if mode == _ops.BAG_MAX \
        else (None, None)
    _ops.embedding_bag_forward(idx, w, mode, o_k, a_k)
    ref.embedding_bag_forward(idx, w, mode, o_r, a_r)
    assert_close(o_k, o_r, dtype, scale=bag)
    if a_k is not None:
        np.testing.assert_array_equal(a_k, a_r)
    gout = randn(rng, (n, dim), dtype)
    g0 = randn(rng, (num, dim), dtype)
    gw_k = g0.copy() if accumulate else np.full((num, dim), np.nan, dtype)
    gw_r = g0.copy()
    _ops.embedding_bag_backward(idx, gout, mode, a_k, gw_k, accumulate)
    ref.embedding_bag_backward(idx, gout, mode, a_r, gw_r, accumulate)
    assert_close(gw_k, gw_r, dtype, scale=max(1.0, np.sqrt(n * bag)))


@SETTINGS
@given(n=st.integers(1, 80), C=st.integers(1, 12), frac=st.sampled_from([0.0, 0.3, 0.9]),
       smoothing=st.sampled_from([0.0, 0.1]), weighted=st.booleans(), dtype=DTYPES,
       ignore=st.sampled_from([-100, -1, 0]), seed=st.integers(0, 2**31))
def test_cross_entropy_ignore_matches_twin(n, C, frac, smoothing, weighted, dtype, ignore, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, C), dtype, 3.0)
    labels = rng.integers(0, C, n)
    labels[rng.random(n) < frac] = ignore
    w = rng.random(n).astype(dtype) if weighted else None
    g_k, g_r = np.full((n, C), np.nan, dtype), np.full((n, C), np.nan, dtype)
    v_k = _ops.cross_entropy_ignore(z, labels, ignore, smoothing, g_k, w)
    v_r = ref.cross_entropy_ignore(z, labels, ignore, smoothing, g_r, w)
    if np.isnan(v_r):
        assert np.isnan(v_k) and not g_k.any()
        return
    assert abs(v_k - v_r) <= tol(dtype) * max(1.0, abs(v_r))
    assert_close(g_k, g_r, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_ignore_without_ignored_rows_is_the_plain_kernel(dtype):
    rng = np.random.default_rng(3)
    z, labels = randn(rng, (300, 7), dtype), rng.integers(0, 7, 300)
    g1, g2 = np.empty_like(z), np.empty_like(z)
    v1 = _ops.cross_entropy_labels(z, labels, 0.1, g1)
    v2 = _ops.cross_entropy_ignore(z, labels, -100, 0.1, g2)
    assert v1 == v2
    np.testing.assert_array_equal(g1, g2)


def test_cross_entropy_ignore_kernel_rejects_other_labels():
    z = np.zeros((3, 4))
    for bad in (-1, 4, -101):
        with pytest.raises(ValueError, match="labels"):
            _ops.cross_entropy_ignore(z, np.array([0, bad, -100], np.int64), -100, 0.0, None)


# ====================================================== one thread vs two: bitwise
def _thread_cases(dtype):
    rng = np.random.default_rng(11)

    def conv(B, cin, cout, k, L, d, pl, relu, bias):
        x, w = randn(rng, (B, L, cin), dtype), randn(rng, (cout, cin, k), dtype)
        b = randn(rng, cout, dtype) if bias else None
        lout = L + pl - d * (k - 1)
        gy = randn(np.random.default_rng(2), (B, lout, cout), dtype)
        wr, col = np.empty((cout, cin * k), dtype), np.empty((B * lout, cin * k), dtype)
        y = np.empty((B, lout, cout), dtype)
        _ops.conv1d_forward(x, w, b, 1, d, pl, 0, relu, wr, col, y)
        dcol, gx, gw = np.empty_like(col), np.empty_like(x), np.empty_like(w)
        gz, gb = np.empty_like(y), None if b is None else np.empty_like(b)
        _ops.conv1d_backward(wr, col, y, relu, gy, 1, d, pl, 0, gz, np.empty_like(wr), dcol, gx,
                             gw, gb)
        return [a for a in (y, gx, gw, gb) if a is not None]

    def conv_causal_relu():  # the language model's layer: big enough to be split
        return conv(32, 128, 128, 3, 64, 2, 4, True, True)

    def conv_few_channels():
        return conv(8, 64, 4, 3, 200, 1, 0, False, False)

    def conv_lm():  # a training step of the model, time-major through the stack
        fn.seed(0)
        model = CausalConvLM(50, 32, 64, 3, 3, dtype=dtype)
        ids = np.random.default_rng(6).integers(0, 50, (16, 40))
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters()))
        for _ in range(3):  # the later steps run on the GEMM plans
            trainer.step(ids, ids[:, -1])
        return [p.data for p in model.parameters()] + [model(ids)]

    def bag():
        n, b, dim, num = 512, 8, 64, 50
        idx = np.random.default_rng(4).integers(0, num, n * b)
        w, gout = randn(rng, (num, dim), dtype), randn(rng, (n, dim), dtype)
        out, gw = np.empty((n, dim), dtype), np.empty((num, dim), dtype)
        _ops.embedding_bag_forward(idx, w, _ops.BAG_MEAN, out)
        _ops.embedding_bag_backward(idx, gout, _ops.BAG_MEAN, None, gw)
        arg, out_max, gw_max = np.empty((n, dim), np.int64), np.empty_like(out), np.empty_like(gw)
        _ops.embedding_bag_forward(idx, w, _ops.BAG_MAX, out_max, arg)
        _ops.embedding_bag_backward(idx, gout, _ops.BAG_MAX, arg, gw_max)
        return out, gw, out_max, arg, gw_max

    def ce():
        z = randn(rng, (2000, 50), dtype)
        labels = np.random.default_rng(5).integers(0, 50, 2000)
        labels[::3] = -100
        g = np.empty_like(z)
        return np.array(_ops.cross_entropy_ignore(z, labels, -100, 0.1, g)), g

    return {"conv1d": conv_causal_relu, "conv1d_few_channels": conv_few_channels,
            "causal_conv_lm": conv_lm, "embedding_bag": bag,
            "cross_entropy_ignore": ce}


@pytest.mark.skipif(not _ops.openmp_enabled(), reason="serial build: one thread only")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_thread_cases(np.float64)))
def test_results_do_not_depend_on_thread_count(case, dtype):
    with threads(1):
        one = _thread_cases(dtype)[case]()
    with threads(2):
        two = _thread_cases(dtype)[case]()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ========================================================= float64 gradient checks


def check_layer(layer, x, input_grad=True, seed=0, reseed=None):
    """Gradients of sum(layer(x) * R) against central differences."""
    R = np.random.default_rng(seed).standard_normal(layer(x).shape)

    def loss():
        if reseed is not None:
            fn.seed(reseed)
        return float(np.sum(layer(x) * R))

    loss()
    gx = layer.backward(R)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.data), rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    if input_grad:
        np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg="x")


CONV_CONFIGS = [
    dict(),
    dict(stride=2),
    dict(padding=2),
    dict(dilation=2, padding=1),
    dict(stride=3, padding=2, dilation=2),
    dict(causal=True),
    dict(causal=True, dilation=3),
    dict(padding="same", dilation=2),
    dict(bias=False, stride=2),
]


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv1d_gradcheck(cfg):
    fn.seed(0)
    layer = Conv1d(3, 4, 3, dtype="float64", **cfg)
    x = np.random.default_rng(1).standard_normal((2, 3, 11))
    check_layer(layer, x)


GROUP_CONFIGS = [  # (in_channels, out_channels, options)
    (4, 6, dict(groups=2)),
    (4, 8, dict(groups=4, causal=True, dilation=2)),  # depthwise, two filters per channel
    (6, 3, dict(groups=3, stride=2, padding=1, bias=False)),
]


@pytest.mark.parametrize("cin,cout,cfg", GROUP_CONFIGS)
def test_grouped_conv1d_gradcheck(cin, cout, cfg):
    fn.seed(0)
    layer = Conv1d(cin, cout, 3, dtype="float64", **cfg)
    x = np.random.default_rng(1).standard_normal((2, cin, 9))
    check_layer(layer, x)


@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_embedding_bag_gradcheck(mode):
    fn.seed(0)
    layer = EmbeddingBag(6, 4, mode=mode, dtype="float64")
    ids = np.array([[0, 1, 1], [5, 2, 0], [3, 3, 3], [1, 4, 5]])
    check_layer(layer, ids, input_grad=False)


def test_sequence_tensor_layers_gradcheck():
    """Linear, the activations, LayerNorm and Dropout on (batch, time, features)."""
    fn.seed(0)
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    for layer in (fn.Linear(4, 5, dtype="float64"), fn.Linear(4, 5, bias=False, dtype="float64"),
                  fn.LayerNorm(4, dtype="float64")):
        check_layer(layer, x.copy())
    for act in (fn.Tanh(), fn.GELU(), fn.Sigmoid(), fn.Softmax()):
        check_layer(fn.Sequential(act, dtype="float64")[0], x.copy())
    check_layer(fn.Sequential(fn.Dropout(0.3), dtype="float64")[0], x.copy(), reseed=7)


def test_sequential_fused_linear_on_sequences_gradcheck():
    """Inside Sequential the Linear+GELU pair runs fused, on rows of (batch, time, .)."""
    fn.seed(0)
    model = fn.Sequential(fn.Linear(4, 6), fn.GELU(), fn.LayerNorm(6), fn.Linear(6, 3),
                          dtype="float64")
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    check_layer(model, x, input_grad=False, seed=4)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_sequence_ignore_index_gradcheck(smoothing, weighted):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((3, 4, 5))
    y = rng.integers(0, 5, (3, 4))
    y[0, 1] = y[2, 3] = y[1, 0] = -100
    w = rng.random(3) if weighted else None
    loss_fn = fn.CrossEntropyLoss(label_smoothing=smoothing)
    loss_fn(z, y, sample_weight=w)
    g = loss_fn.backward().copy()
    num = numeric_grad(lambda: loss_fn(z, y, sample_weight=w), z)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    assert not g[0, 1].any() and not g[2, 3].any()


# ============================================================= PyTorch parity
PARITY = {}  # (layer, dtype) -> max abs error, printed at the end of the module


@pytest.fixture(scope="module", autouse=True)
def _report_parity():
    yield
    if PARITY:
        print("\n[sequence torch parity] max abs error: " + ", ".join(
            f"{k[0]} {k[1]}: {v:.2g}" for k, v in sorted(PARITY.items())))


def _record(name, dtype, *pairs):
    err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs)
    key = (name, np.dtype(dtype).name)
    PARITY[key] = max(PARITY.get(key, 0.0), err)
    return err


def _torch():
    return pytest.importorskip("torch")


PTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _check_conv1d_vs_torch(cin, cout, cfg, dtype, length):
    """Conv1d(cin, cout, 3, **cfg) against torch's on a (3, cin, length) input: output,
    input and parameter gradients; the state dict loads into torch unchanged (strict)
    and torch gets the causal left padding explicitly."""
    torch = _torch()
    fn.seed(1)
    cfg = dict(cfg)
    layer = Conv1d(cin, cout, 3, dtype=np.dtype(dtype).name, **cfg)
    causal = cfg.pop("causal", False)
    tlayer = torch.nn.Conv1d(cin, cout, 3, dtype=torch.float32 if dtype == np.float32
                             else torch.float64, **cfg)
    tlayer.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(2)
    x = randn(rng, (3, cin, length), dtype)
    y = layer(x)
    gy = randn(rng, y.shape, dtype)
    gx = layer.backward(gy)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tlayer(torch.nn.functional.pad(tx, (layer.dilation * 2, 0)) if causal else tx)
    ty.backward(torch.from_numpy(gy))
    pairs = [(y, ty.detach().numpy()), (gx, tx.grad.numpy()),
             (layer.weight.grad, tlayer.weight.grad.numpy())]
    if layer.bias is not None:
        pairs.append((layer.bias.grad, tlayer.bias.grad.numpy()))
    assert _record("Conv1d", dtype, *pairs) < PTOL[dtype] * 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv1d_matches_torch(cfg, dtype):
    _check_conv1d_vs_torch(5, 7, cfg, dtype, 19)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_embedding_bag_matches_torch(mode, dtype):
    torch = _torch()
    fn.seed(2)
    layer = EmbeddingBag(20, 8, mode=mode, dtype=np.dtype(dtype).name)
    tlayer = torch.nn.EmbeddingBag(20, 8, mode=mode,
                                   dtype=torch.float32 if dtype == np.float32 else torch.float64)
    tlayer.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 20, (6, 5))
    y = layer(ids)
    gy = randn(rng, y.shape, dtype)
    layer.backward(gy)
    ty = tlayer(torch.from_numpy(ids))
    ty.backward(torch.from_numpy(gy))
    err = _record("EmbeddingBag", dtype, (y, ty.detach().numpy()),
                  (layer.weight.grad, tlayer.weight.grad.numpy()))
    assert err < PTOL[dtype] * 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_sequence_cross_entropy_matches_torch(ignore_index, smoothing, dtype):
    torch = _torch()
    rng = np.random.default_rng(4)
    z = randn(rng, (4, 6, 5), dtype, 2.0)
    y = rng.integers(0, 5, (4, 6))
    y[rng.random((4, 6)) < 0.3] = ignore_index
    loss_fn = fn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=ignore_index)
    value = loss_fn(z, y)
    g = loss_fn.backward()
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(tz.permute(0, 2, 1), torch.from_numpy(y),
                                           ignore_index=ignore_index, label_smoothing=smoothing)
    tl.backward()
    err = _record("CrossEntropyLoss(B,T,C)", dtype, (value, tl.item()), (g, tz.grad.numpy()))
    assert err < PTOL[dtype] * 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_mlp_matches_torch(dtype):
    """Linear + GELU + LayerNorm + Dropout(eval) + Linear over (batch, time, features)."""
    torch = _torch()
    fn.seed(3)
    name = np.dtype(dtype).name
    model = fn.Sequential(fn.Linear(6, 8), fn.GELU(), fn.LayerNorm(8), fn.Dropout(0.0),
                          fn.Linear(8, 4), dtype=name)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.LayerNorm(8),
                                 torch.nn.Dropout(0.0), torch.nn.Linear(8, 4)).to(tdt)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(5)
    x, y = randn(rng, (3, 7, 6), dtype), rng.integers(0, 4, (3, 7))
    loss_fn = fn.CrossEntropyLoss()
    value = loss_fn(model(x), y)
    model.zero_grad()
    model.backward(loss_fn.backward())
    tl = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)).reshape(-1, 4),
                                           torch.from_numpy(y).reshape(-1))
    tl.backward()
    tparams = dict(tmodel.named_parameters())
    pairs = [(value, tl.item())] + [(p.grad, tparams[k].grad.numpy())
                                    for k, p in model.named_parameters()]
    assert _record("Linear/LayerNorm (B,T,F)", dtype, *pairs) < PTOL[dtype] * 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cin,cout,cfg", GROUP_CONFIGS)
def test_grouped_conv1d_matches_torch(cin, cout, cfg, dtype):
    _check_conv1d_vs_torch(cin, cout, cfg, dtype, 13)


# ===================================================================== layers
def test_conv1d_init_and_state_dict_keys():
    fn.seed(0)
    layer = Conv1d(4, 6, 5)
    bound = 1 / np.sqrt(4 * 5)
    assert layer.weight.shape == (6, 4, 5) and layer.bias.shape == (6,)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound
    assert sorted(layer.state_dict()) == ["bias", "weight"]
    assert sorted(Conv1d(4, 6, 5, bias=False).state_dict()) == ["weight"]
    big = EmbeddingBag(1000, 50)
    assert abs(big.weight.data.std() - 1) < 0.02 and abs(big.weight.data.mean()) < 0.02


def test_causal_conv_sees_only_the_past():
    fn.seed(0)
    layer = Conv1d(2, 3, 3, dilation=2, causal=True)
    x = np.random.default_rng(0).standard_normal((1, 2, 12)).astype(np.float32)
    y = layer(x)
    assert y.shape == (1, 3, 12)
    x2 = x.copy()
    x2[:, :, 7:] += 5.0  # the future from t = 7 on
    np.testing.assert_array_equal(layer(x2)[:, :, :7], y[:, :, :7])
    assert not np.allclose(layer(x2)[:, :, 7:], y[:, :, 7:])


def test_conv1d_output_lengths_follow_torch():
    for kw, L, want in [(dict(), 10, 8), (dict(stride=2), 10, 4), (dict(padding=1), 10, 10),
                        (dict(dilation=3), 10, 4), (dict(padding="same", dilation=2), 9, 9),
                        (dict(causal=True, dilation=4), 9, 9), (dict(stride=3, padding=2), 3, 2)]:
        layer = Conv1d(1, 1, 3, **kw)
        assert layer(np.zeros((2, 1, L))).shape == (2, 1, want), kw


@pytest.mark.parametrize("make,x,match", [
    (lambda: Conv1d(3, 4, 3), np.zeros((2, 3)), r"x must have shape \(batch, 3, time\)"),
    (lambda: Conv1d(3, 4, 3), np.zeros((2, 3, 5, 1)), r"x must have shape"),
    (lambda: Conv1d(3, 4, 3), np.zeros((2, 5, 8)), r"in_channels=3.*\(2, 5, 8\)"),
    (lambda: Conv1d(3, 4, 3), np.zeros((2, 8, 3)), r"transpose"),
    (lambda: Conv1d(3, 4, 3, dilation=2), np.zeros((2, 3, 4)), r"time length 4.*receptive field 5"),
    (lambda: Conv1d(3, 4, 3), np.zeros((0, 3, 8)), r"empty"),
    (lambda: Conv1d(3, 4, 3), np.full((1, 3, 8), np.nan), r"x"),
    (lambda: EmbeddingBag(5, 2), np.zeros(4, np.int64), r"\(batch, bag\)"),
    (lambda: EmbeddingBag(5, 2), np.zeros((2, 0), np.int64), r"non-empty bag"),
    (lambda: EmbeddingBag(5, 2), np.array([[0, 5]]), r"x must be in \[0, 5\)"),
    (lambda: EmbeddingBag(5, 2), np.zeros((2, 2)), r"x must be integers"),
])
def test_bad_inputs_raise_naming_the_argument(make, x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()(x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=2.5), "kernel_size"), (dict(kernel_size=0), "kernel_size"),
    (dict(kernel_size="3"), "kernel_size"), (dict(kernel_size=True), "kernel_size"),
    (dict(stride=0), "stride"), (dict(dilation=1.5), "dilation"), (dict(padding=-1), "padding"),
    (dict(padding="full"), "padding"), (dict(padding="same", stride=2), "stride=1"),
    (dict(padding_mode="reflect"), "padding_mode"), (dict(causal=True, padding=1), "causal"),
    (dict(in_channels=0), "in_channels"), (dict(groups=0), "groups"),
    (dict(in_channels=3, out_channels=4, groups=2), r"in_channels \(3\) .* groups \(2\)"),
    (dict(in_channels=4, groups=2), r"out_channels \(3\) must be divisible by groups \(2\)"),
])
def test_conv1d_bad_arguments(kwargs, match):
    args = dict(in_channels=2, out_channels=3, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Conv1d(**args)


def test_embedding_bag_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        EmbeddingBag(4, 2, mode="median")


def test_conv1d_accepts_torch_tuple_arguments_and_repr():
    layer = Conv1d(2, 3, (3,), stride=(2,), padding=(1,), dilation=(1,))
    assert (layer.kernel_size, layer.stride, layer.padding) == (3, 2, 1)
    assert repr(layer) == "Conv1d(2, 3, kernel_size=(3,), stride=(2,), padding=(1,))"
    assert "causal=True" in repr(Conv1d(2, 3, 3, causal=True))
    assert Conv1d(**Conv1d(2, 3, 3, dilation=2, causal=True).config()).causal
    grouped = Conv1d(4, 6, 3, groups=2)
    assert repr(grouped) == "Conv1d(4, 6, kernel_size=(3,), stride=(1,), groups=2)"
    assert Conv1d(**grouped.config()).weight.shape == (6, 2, 3)


def test_layers_pickle_without_workspaces():
    layer = Conv1d(2, 3, 3)
    layer(np.ones((4, 2, 9)))
    back = pickle.loads(pickle.dumps(layer))
    assert not hasattr(back, "_col") and back._workspace == {}
    np.testing.assert_array_equal(back(np.ones((4, 2, 9))), layer(np.ones((4, 2, 9))))


# ======================================================== losses on sequences
def test_cross_entropy_sequence_equals_flattened_rows():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((3, 5, 4)), rng.integers(0, 4, (3, 5))
    a, b = fn.CrossEntropyLoss(), fn.CrossEntropyLoss()
    assert a(z, y) == b(z.reshape(-1, 4), y.reshape(-1))
    np.testing.assert_array_equal(a.backward().reshape(-1, 4), b.backward())
    probs = np.eye(4)[y]
    c = fn.CrossEntropyLoss()
    assert abs(c(z, probs) - a(z, y)) < 1e-12


def test_cross_entropy_ignore_index_rules():
    z = np.zeros((4, 3))
    loss = fn.CrossEntropyLoss()
    value = loss(z, np.array([0, -100, 1, -100]))
    assert abs(value - np.log(3)) < 1e-12  # mean over the two kept rows
    assert not loss.backward()[[1, 3]].any()
    with pytest.raises(ValueError, match=r"target.*\[0, 3\).*-1"):
        loss(z, np.array([0, -1, 1, 2]))  # -1 is still an error ...
    assert np.isfinite(fn.CrossEntropyLoss(ignore_index=-1)(z, np.array([0, -1, 1, 2])))  # ... unless ignored
    with pytest.raises(ValueError, match=r"target.*got 3"):
        loss(z, np.array([0, -100, 3, 1]))
    assert np.isnan(loss(z, np.full(4, -100)))  # nothing to average, as torch
    with pytest.raises(ValueError, match=r"target labels must have shape \(2, 2\)"):
        loss(np.zeros((2, 2, 3)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"output must be logits"):
        loss(np.zeros((2, 2, 2, 3)), np.zeros((2, 2, 2), np.int64))
    with pytest.raises(TypeError, match="ignore_index"):
        fn.CrossEntropyLoss(ignore_index=1.5)
    # accuracy counts only kept positions
    assert fn.CrossEntropyLoss().correct(np.eye(3)[[0, 1, 2]][None], np.array([[0, -100, 1]])) == (1, 2)


def test_cross_entropy_ignored_class_label_takes_the_layer_path():
    """ignore_index may be a real class: the compiled step (which has no ignored rows)
    must not be used then, and training matches the layer path."""
    fn.seed(0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    results = []
    for compiled in (True, False):
        fn.seed(0)
        model = fn.Sequential(fn.Linear(4, 8), fn.ReLU(), fn.Linear(8, 3))
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(ignore_index=0), fn.SGD(model.parameters(), lr=0.1))
        trainer._compiled_path = compiled
        results.append([trainer.step(x, y) for _ in range(3)])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    loss = fn.CrossEntropyLoss(ignore_index=0)
    assert loss._compiled(y, _ops.ACT_NONE) is None


# ================================================ Sequential and Trainer on 3-D
def test_sequential_on_sequences_trains_and_predicts():
    fn.seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 5)).astype(np.float32)
    y = (x[:, :, 0] > 0).astype(np.int64) + (x[:, :, 1] > 0)
    y[:, 0] = -100  # e.g. padding
    model = fn.Sequential(fn.Linear(5, 16), fn.ReLU(), fn.Dropout(0.1), fn.LayerNorm(16),
                          fn.Linear(16, 3))
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=0.01))
    assert trainer._fused(x[:8], y[:8]) is None  # 3-D: the layers' path
    hist = trainer.fit(x, y, epochs=15, batch_size=8, progress=False, seed=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.8
    model.eval()
    out = model(x)
    assert out.shape == (40, 6, 3)
    np.testing.assert_allclose(model.predict(x, batch_size=16), out, rtol=1e-6, atol=1e-6)
    ev = trainer.evaluate(x, y)
    assert ev["accuracy"] > 0.8


def test_per_position_language_model_with_padding():
    """Embedding -> Linear -> GELU -> Linear over (batch, time): logits (batch, time,
    vocab) against the next ids, padded positions ignored; eval forward and
    predict take the layers' path (an Embedding without Flatten is not compiled)."""
    fn.seed(0)
    seq = np.tile(np.array([0, 1, 2, 3, 4, 5]), 50)
    X = np.stack([seq[i:i + 5] for i in range(0, 200)])
    Y = np.stack([seq[i + 1:i + 6] for i in range(0, 200)])
    Y[::4, :2] = -100
    model = fn.Sequential(fn.Embedding(6, 8), fn.Linear(8, 16), fn.GELU(), fn.Linear(16, 6))
    assert model.compiled(5) is None
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=0.02))
    trainer.fit(X, Y, epochs=10, batch_size=20, progress=False, seed=0)
    assert trainer.evaluate(X, Y)["accuracy"] > 0.99
    model.eval()
    out = model(X[:7])
    assert out.shape == (7, 5, 6)
    np.testing.assert_array_equal(out.argmax(-1), (X[:7] + 1) % 6)
    np.testing.assert_allclose(model.predict(X[:7], batch_size=3), out, rtol=1e-6, atol=1e-6)


def test_sequential_with_embedding_bag_is_not_compiled():
    fn.seed(0)
    model = fn.Sequential(EmbeddingBag(10, 4), fn.Linear(4, 3))
    ids = np.random.default_rng(0).integers(0, 10, (5, 3))
    assert model.compiled(5) is None
    model.eval()
    want = model[1](model[0](ids))
    np.testing.assert_allclose(model(ids), want, rtol=1e-6)
    np.testing.assert_allclose(model.predict(ids), want, rtol=1e-6)


def test_sequential_conv_stack_save_load(tmp_path):
    fn.seed(0)
    model = fn.Sequential(Conv1d(3, 8, 3, causal=True), fn.ReLU(), Conv1d(8, 4, 3, stride=2))
    x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)
    path = tmp_path / "conv.npz"
    fn.save(path, model)
    fn.seed(1)
    other = fn.Sequential(Conv1d(3, 8, 3, causal=True), fn.ReLU(), Conv1d(8, 4, 3, stride=2))
    fn.load(path, other)
    np.testing.assert_array_equal(other(x), model(x))
    rebuilt = fn.load(path)  # from the file's architecture alone (config())
    rebuilt = rebuilt[0] if isinstance(rebuilt, tuple) else rebuilt
    assert repr(rebuilt) == repr(model)
    np.testing.assert_array_equal(rebuilt(x), model(x))
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]


# ================================================ tiny next-token models learn
def _toy_sequence(ctx):
    pattern = np.array([0, 1, 2, 3, 1, 4, 2, 5, 6, 3])  # period 10, vocab 7
    seq = np.tile(pattern, 40)
    X = np.stack([seq[i:i + ctx] for i in range(len(seq) - ctx)])
    return X, seq[ctx:]


@pytest.mark.parametrize("make,min_acc", [
    (lambda: BagOfWordsLM(7, 16), 0.7),  # order-blind: cannot be perfect
    (lambda: CausalConvLM(7, 8, 16, kernel_size=2, layers=2), 0.99),
])
def test_tiny_next_token_models_learn(make, min_acc):
    fn.seed(0)
    X, y = _toy_sequence(4)
    model = make()
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=0.02))
    hist = trainer.fit(X, y, epochs=25, batch_size=32, progress=False, seed=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert trainer.evaluate(X, y)["accuracy"] >= min_acc
    assert model(X[:3]).shape == (3, 7)


def test_causal_conv_lm_gradcheck():
    fn.seed(0)
    model = CausalConvLM(5, 3, 4, kernel_size=2, layers=2, dtype="float64")
    assert model.receptive_field == 4
    ids = np.random.default_rng(0).integers(0, 5, (3, 6))
    check_layer(model, ids, input_grad=False, seed=1)


def test_causal_conv_lm_per_position_gradcheck_and_causality():
    """per_position=True: logits after every position; position t depends on
    ids <= t only, the last equals the last-position model's, and the
    gradients of a loss on every position match finite differences."""
    fn.seed(0)
    model = CausalConvLM(5, 3, 4, kernel_size=2, layers=2, dtype="float64", per_position=True)
    last = CausalConvLM(5, 3, 4, kernel_size=2, layers=2, dtype="float64")
    last.load_state_dict(model.state_dict())
    ids = np.random.default_rng(0).integers(0, 5, (3, 6))
    out = model(ids)
    assert out.shape == (3, 6, 5)
    np.testing.assert_allclose(out[:, -1], last(ids), rtol=1e-12)
    changed = ids.copy()
    changed[:, 3] = (changed[:, 3] + 1) % 5
    out2 = model(changed)
    np.testing.assert_array_equal(out2[:, :3], out[:, :3])
    assert not np.allclose(out2[:, 3], out[:, 3])
    check_layer(model, ids, input_grad=False, seed=1)
    assert model.config()["per_position"] and not last.config()["per_position"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_conv_lm_is_the_layer_composition(dtype):
    """The model's time-major path with fused ReLUs computes what its public layers do
    chained in torch's (batch, channels, time) layout, every position included."""
    fn.seed(0)
    model = CausalConvLM(11, 5, 6, kernel_size=3, layers=3, dtype=dtype)
    ids = np.random.default_rng(0).integers(0, 11, (4, 9))
    R = np.random.default_rng(1).standard_normal((4, 11)).astype(dtype)
    out = model(ids)
    model.zero_grad()
    model.backward(R)
    got = {name: p.grad.copy() for name, p in model.named_parameters()}
    convs = [getattr(model, f"conv{i}") for i in range(3)]
    h = model.embed(ids).transpose(0, 2, 1)
    acts = []
    for conv in convs:
        acts.append(conv(h))
        h = np.maximum(acts[-1], 0)
    assert_close(out, model.head(h[:, :, -1]), dtype)
    model.zero_grad()
    g = np.zeros(h.shape, dtype)
    g[:, :, -1] = model.head.backward(R)
    for conv, a in zip(reversed(convs), reversed(acts)):
        g = conv.backward(np.where(a > 0, g, 0).astype(dtype))
    model.embed.backward(g.transpose(0, 2, 1))
    for name, p in model.named_parameters():
        assert_close(got[name], p.grad, dtype, scale=10.0)
