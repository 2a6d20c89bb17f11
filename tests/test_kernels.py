"""Every compiled kernel in ``fastnn._kernels._ops`` against its plain-NumPy twin
in ``fastnn._reference`` (hypothesis draws shapes, dtypes and values), plus the
kernels' input discipline: C-contiguous arrays of one dtype, checked shapes, and
a clean exception (never a crash) for anything else. The public API must accept
strided, Fortran-ordered and read-only inputs and give the contiguous result.
"""
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fn
from fastnn import _reference as ref
from fastnn._kernels import _ops
from threads import assert_same_at_1_and_2_threads

SETTINGS = settings(max_examples=30, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
# small sizes (incl. 1: the gemv path), sizes around multiples of 16, and sizes
# large enough that n*in*out crosses the kernels' threading threshold (131072 flops)
DIM = st.one_of(st.integers(1, 24), st.sampled_from([1, 15, 16, 17, 31, 33, 64, 65, 127, 150, 200, 300]))
# 1-D sizes: small, and large enough for every elementwise kernel to go parallel
N1D = st.one_of(st.integers(1, 70), st.sampled_from([16, 17, 1023, 16385, 40000, 140001]))


def codes(prefix):
    """The kernels' codes named prefix* (defined in csrc/fnn.h, exported by _ops)."""
    return sorted(v for k, v in vars(_ops).items() if k.startswith(prefix))


ACT_CODES = codes("ACT_")
ACT_CODES_NO_Z = [c for c in ACT_CODES if c < _ops.ACT_GELU]  # those that never read x/z
ACTS = st.sampled_from(ACT_CODES)
SLOPES = st.sampled_from([0.01, 0.2, 0.0, -0.5])


def tol(dtype):
    return 1e-4 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(got, want, dtype, rtol=None, scale=None):
    """rtol relative, plus an absolute slack scaled by the result's magnitude."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    t = tol(dtype) if rtol is None else rtol
    if scale is None:
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=t, atol=t * scale)


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ======================================================================== GEMM
@SETTINGS
@given(dtype=DTYPES, m=DIM, k=DIM, n=DIM, ta=st.booleans(), tb=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, 0.3]), seed=SEEDS)
def test_gemm(dtype, m, k, n, ta, tb, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a = randn(rng, (k, m) if ta else (m, k), dtype)
    b = randn(rng, (n, k) if tb else (k, n), dtype)
    c0 = randn(rng, (m, n), dtype)
    c_k, c_r = c0.copy(), c0.copy()
    _ops.gemm(a, b, c_k, ta, tb, alpha, beta)
    ref.gemm(a, b, c_r, ta, tb, alpha, beta)
    assert_close(c_k, c_r, dtype, scale=max(1.0, float(np.abs(c_r).max()), np.sqrt(k)))


@SETTINGS
@given(dtype=DTYPES, m=DIM, k=DIM, n=DIM, ta=st.booleans(), tb=st.booleans(),
       dim=st.integers(0, 1), parts=st.integers(1, 4), threads=st.integers(1, 3),
       beta=st.sampled_from([0.0, 1.0]), seed=SEEDS)
def test_gemm_split(dtype, m, k, n, ta, tb, dim, parts, threads, beta, seed):
    rng = np.random.default_rng(seed)
    a = randn(rng, (k, m) if ta else (m, k), dtype)
    b = randn(rng, (n, k) if tb else (k, n), dtype)
    c0 = randn(rng, (m, n), dtype)
    c_k, c_r = c0.copy(), c0.copy()
    _ops.gemm_split(a, b, c_k, ta, tb, dim, parts, threads, beta)
    ref.gemm_split(a, b, c_r, ta, tb, dim, parts, threads, beta)
    assert_close(c_k, c_r, dtype, scale=max(1.0, float(np.abs(c_r).max()), np.sqrt(k)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_gemm_empty_inner_dimension(dtype, beta):
    """k = 0: the product is zero, so c becomes beta * c (no BLAS call with lda=0)."""
    a, b = np.ones((3, 0), dtype), np.ones((0, 4), dtype)
    c = np.full((3, 4), 2.0, dtype)
    _ops.gemm(a, b, c, False, False, 1.0, beta)
    np.testing.assert_array_equal(c, np.full((3, 4), 2.0 * beta, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_beta_zero_ignores_nan_in_c(dtype):
    """BLAS semantics: beta = 0 means c is not read (NaN garbage in a workspace is fine)."""
    rng = np.random.default_rng(0)
    for m in (1, 5):  # gemv and gemm paths
        a, b = randn(rng, (m, 7), dtype), randn(rng, (7, 3), dtype)
        c = np.full((m, 3), np.nan, dtype)
        _ops.gemm(a, b, c)
        assert np.isfinite(c).all()
        assert_close(c, a @ b, dtype)


# ====================================================================== linear
@SETTINGS
@given(dtype=DTYPES, n=DIM, n_in=DIM, n_out=DIM, code=ACTS, slope=SLOPES, bias=st.booleans(),
       seed=SEEDS)
def test_linear_forward(dtype, n, n_in, n_out, code, slope, bias, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, n_in), dtype)
    w = randn(rng, (n_out, n_in), dtype, 1 / np.sqrt(n_in))
    b = randn(rng, n_out, dtype) if bias else None
    use_z = code >= _ops.ACT_GELU or bool(rng.integers(2))
    z_k = np.full((n, n_out), np.nan, dtype) if use_z else None
    z_r = np.full((n, n_out), np.nan, dtype) if use_z else None
    y_k = np.full((n, n_out), np.nan, dtype)  # workspaces hold garbage: must be overwritten
    y_r = np.empty((n, n_out), dtype)
    _ops.linear_forward(x, w, b, code, slope, z_k, y_k)
    ref.linear_forward(x, w, b, code, slope, z_r, y_r)
    assert_close(y_k, y_r, dtype)
    if use_z and code != _ops.ACT_NONE:
        assert_close(z_k, z_r, dtype)


@SETTINGS
@given(dtype=DTYPES, n=DIM, n_in=DIM, n_out=DIM, code=ACTS, slope=SLOPES, bias=st.booleans(),
       accumulate=st.booleans(), need_gx=st.booleans(), alias=st.booleans(), seed=SEEDS)
def test_linear_backward(dtype, n, n_in, n_out, code, slope, bias, accumulate, need_gx, alias,
                         seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, n_in), dtype)
    w = randn(rng, (n_out, n_in), dtype, 1 / np.sqrt(n_in))
    b = randn(rng, n_out, dtype)
    z = np.empty((n, n_out), dtype)
    y = np.empty((n, n_out), dtype)
    ref.linear_forward(x, w, b, code, slope, z, y)
    if code == _ops.ACT_NONE:
        z[...] = y
    gy = randn(rng, (n, n_out), dtype)
    gw0, gb0 = randn(rng, (n_out, n_in), dtype), randn(rng, n_out, dtype)
    out = {}
    for name, mod in (("k", _ops), ("r", ref)):
        gy_ = gy.copy()
        gz = gy_ if alias else np.full((n, n_out), np.nan, dtype)  # gz may be gy itself
        gx = np.full((n, n_in), np.nan, dtype) if need_gx else None
        gw = gw0.copy() if accumulate else np.full_like(gw0, np.nan)
        gb = (gb0.copy() if accumulate else np.full_like(gb0, np.nan)) if bias else None
        mod.linear_backward(x, w, code, slope, z, y, gy_, gz, gx, gw, gb, accumulate)
        out[name] = (gz, gx, gw, gb)
    (gz_k, gx_k, gw_k, gb_k), (gz_r, gx_r, gw_r, gb_r) = out["k"], out["r"]
    assert_close(gz_k, gz_r, dtype)
    assert_close(gw_k, gw_r, dtype, scale=max(1.0, float(np.abs(gw_r).max()), np.sqrt(n)))
    if bias:
        assert_close(gb_k, gb_r, dtype, scale=max(1.0, float(np.abs(gb_r).max()), np.sqrt(n)))
    if need_gx:
        assert_close(gx_k, gx_r, dtype, scale=max(1.0, float(np.abs(gx_r).max()), np.sqrt(n_out)))


def test_linear_large_shape_crosses_thread_threshold():
    """300x200x150 (9e6 flops) runs multithreaded; results equal a 1-thread run
    bit for bit (fixed reduction order) and match the reference."""
    rng = np.random.default_rng(1)
    n, n_in, n_out = 300, 200, 150
    for dtype in (np.float32, np.float64):
        x = randn(rng, (n, n_in), dtype)
        w = randn(rng, (n_out, n_in), dtype, 0.1)
        b = randn(rng, n_out, dtype)
        gy = randn(rng, (n, n_out), dtype)
        y = assert_same_at_1_and_2_threads(lambda: _linear_step(x, w, b, gy, _ops.ACT_GELU))[0]
        z_r, y_r = np.empty((n, n_out), dtype), np.empty((n, n_out), dtype)
        ref.linear_forward(x, w, b, _ops.ACT_GELU, 0.0, z_r, y_r)
        assert_close(y, y_r, dtype)


def _linear_step(x, w, b, gy, act):
    """(y, gx, gw, gb) of one linear_forward + linear_backward with activation act."""
    n, n_out = x.shape[0], w.shape[0]
    z, y = np.empty((n, n_out), x.dtype), np.empty((n, n_out), x.dtype)
    _ops.linear_forward(x, w, b, act, 0.0, z, y)
    gz, gx, gw, gb = np.empty_like(y), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _ops.linear_backward(x, w, act, 0.0, z, y, gy, gz, gx, gw, gb, False)
    return [y, gx, gw, gb]


def _thread_cases(dtype):
    """Kernels with reductions or a parallel split, on sizes that go multithreaded."""
    rng = np.random.default_rng(7)
    n, d = 600, 300
    x, g = randn(rng, (n, d), dtype), randn(rng, (n, d), dtype)
    flat = x.reshape(-1)
    labels = rng.integers(0, d, n)
    gamma, beta = randn(rng, d, dtype), randn(rng, d, dtype)
    idx = rng.integers(0, 50, 5000)
    gout = randn(rng, (5000, d), dtype)

    def ln():
        y, m, r = np.empty_like(x), np.empty(n, dtype), np.empty(n, dtype)
        _ops.layernorm_forward(x, gamma, beta, 1e-5, y, m, r)
        gx, gg, gb = np.empty_like(x), np.empty(d, dtype), np.empty(d, dtype)
        _ops.layernorm_backward(x, gamma, m, r, g, gx, gg, gb)
        return y, gx, gg, gb

    def ce():
        grad = np.empty_like(x)
        return _ops.cross_entropy_labels(x, labels, 0.1, grad), grad

    def losses():
        gm, gb_ = np.empty_like(flat), np.empty_like(flat)
        p = 1 / (1 + np.exp(-flat))
        return (_ops.pointwise_loss(_ops.LOSS_MSE, flat, g.reshape(-1), gm), gm,
                _ops.pointwise_loss(_ops.LOSS_BCE_LOGITS, flat, p, gb_), gb_, _ops.sumsq(flat))

    def optim():
        p, m, v = flat.copy(), np.zeros_like(flat), np.zeros_like(flat)
        _ops.adam(p, g.reshape(-1), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, 1)
        q, sq, ga, buf = flat.copy(), np.ones_like(flat), np.zeros_like(flat), np.zeros_like(flat)
        _ops.rmsprop(q, g.reshape(-1), sq, ga, buf, 1e-2, 0.99, 1e-8, 0.0, 0.9)
        return p, m, v, q, sq, ga, buf

    def emb():
        gw = np.empty((50, d), dtype)
        _ops.embedding_backward(idx, gout, gw)
        return (gw,)

    def soft():
        y, gx = np.empty_like(x), np.empty_like(x)
        _ops.softmax_forward(x, y)
        _ops.softmax_backward(y, g, gx)
        return y, gx

    return {"layernorm": ln, "cross_entropy": ce, "losses": losses, "optimizers": optim,
            "embedding": emb, "softmax": soft}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_thread_cases(np.float64)))
def test_results_do_not_depend_on_thread_count(case, dtype):
    assert_same_at_1_and_2_threads(_thread_cases(dtype)[case])


@pytest.mark.skipif(not _ops.openmp_enabled(), reason="serial build: one thread only")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    (300, 200, 150), (64, 64, 64), (100, 200, 30), (32, 64, 128), (40, 40, 100), (2, 300, 300),
    (32, 64, 64),
    (16, 128, 128),
    (8, 200, 300),
])
def test_linear_does_not_depend_on_thread_count(shape, dtype):
    """Every shape here crosses the threading threshold (n*in*out >= 131072)."""
    n, n_in, n_out = shape
    rng = np.random.default_rng(8)
    x, w = randn(rng, (n, n_in), dtype), randn(rng, (n_out, n_in), dtype)
    b, gy = randn(rng, n_out, dtype), randn(rng, (n, n_out), dtype)
    assert_same_at_1_and_2_threads(lambda: _linear_step(x, w, b, gy, _ops.ACT_TANH))


# ================================================================= activations
def act_inputs(rng, n, dtype):
    x = randn(rng, n, dtype, 3.0)
    # a few extreme values: sigmoid/tanh/GELU must saturate without overflow
    k = min(n, 4)
    x[rng.integers(0, n, k)] = rng.choice([-60.0, -20.0, 20.0, 60.0, 0.0], k)
    return x


@SETTINGS
@given(dtype=DTYPES, n=N1D, code=ACTS, slope=SLOPES, seed=SEEDS)
def test_act_forward(dtype, n, code, slope, seed):
    rng = np.random.default_rng(seed)
    x = act_inputs(rng, n, dtype)
    y_k, y_r = np.full(n, np.nan, dtype), np.empty(n, dtype)
    _ops.act_forward(code, slope, x, y_k)
    ref.act_forward(code, slope, x, y_r)
    assert np.isfinite(y_k).all()
    assert_close(y_k, y_r, dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, code=ACTS, slope=SLOPES, seed=SEEDS)
def test_act_backward(dtype, n, code, slope, seed):
    rng = np.random.default_rng(seed)
    x = act_inputs(rng, n, dtype)
    y = ref.act(code, slope, x)
    gy = randn(rng, n, dtype)
    gx_k, gx_r = np.full(n, np.nan, dtype), np.empty(n, dtype)
    _ops.act_backward(code, slope, x, y, gy, gx_k)
    ref.act_backward(code, slope, x, y, gy, gx_r)
    assert_close(gx_k, gx_r, dtype)


@pytest.mark.parametrize("code", ACT_CODES)
def test_act_in_place(code):
    """act_forward may write over its input, act_backward over gy."""
    rng = np.random.default_rng(code)
    x = randn(rng, 100, np.float64, 2.0)
    want = ref.act(code, 0.1, x)
    y = x.copy()
    _ops.act_forward(code, 0.1, y, y)
    assert_close(y, want, np.float64)
    gy = randn(rng, 100, np.float64)
    want_g = ref.dact(code, 0.1, x, want, gy)
    g = gy.copy()
    _ops.act_backward(code, 0.1, x, want, g, g)
    assert_close(g, want_g, np.float64)


@pytest.mark.parametrize("code", ACT_CODES_NO_Z)
def test_act_backward_without_x_float64(code):
    y = np.linspace(-1, 1, 9)
    gy = np.ones(9)
    gx = np.empty(9)
    _ops.act_backward(code, 0.1, None, y, gy, gx)
    assert_close(gx, ref.dact(code, 0.1, None, y, gy), np.float64)


@pytest.mark.parametrize("code", ACT_CODES_NO_Z)
def test_act_backward_without_x_float32(code):
    y = np.linspace(-1, 1, 9, dtype=np.float32)
    gy = np.ones(9, np.float32)
    gx = np.empty(9, np.float32)
    _ops.act_backward(code, 0.1, None, y, gy, gx)
    assert_close(gx, ref.dact(code, 0.1, None, y, gy), np.float32)


@SETTINGS
@given(dtype=DTYPES, n=DIM, c=DIM, big=st.booleans(), seed=SEEDS)
def test_softmax(dtype, n, c, big, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, c), dtype, 30.0 if big else 1.0)  # big logits: needs the max shift
    y_k, y_r = np.full((n, c), np.nan, dtype), np.empty((n, c), dtype)
    _ops.softmax_forward(x, y_k)
    ref.softmax_forward(x, y_r)
    assert np.isfinite(y_k).all()
    assert_close(y_k, y_r, dtype)
    gy = randn(rng, (n, c), dtype)
    gx_k, gx_r = np.full((n, c), np.nan, dtype), np.empty((n, c), dtype)
    _ops.softmax_backward(y_r, gy, gx_k)
    ref.softmax_backward(y_r, gy, gx_r)
    assert_close(gx_k, gx_r, dtype)


# ====================================================================== losses
def assert_loss_close(got, want, dtype):
    assert isinstance(got, float)
    assert_close(got, want, dtype, scale=max(1.0, abs(want)))


# sample weights: None (unweighted) or k, one weight per row of k elements
WEIGHTING = st.sampled_from([None, None, 1, 2, 3])


def _weights(rng, n, k, dtype):
    """(n rounded to a multiple of k, per-row weights or None)."""
    if k is None:
        return n, None
    rows = max(1, n // k)
    w = rng.uniform(0, 2, rows)
    w[rng.integers(0, rows, min(rows, 2))] = 0.0  # zero weight: the row drops out
    return rows * k, w.astype(dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, with_grad=st.booleans(), k=WEIGHTING, seed=SEEDS)
def test_mse(dtype, n, with_grad, k, seed):
    rng = np.random.default_rng(seed)
    n, w = _weights(rng, n, k, dtype)
    y, t = randn(rng, n, dtype), randn(rng, n, dtype)
    g_k = np.full(n, np.nan, dtype) if with_grad else None
    g_r = np.empty(n, dtype) if with_grad else None
    kw = {} if k is None else {"weight": w, "k": k}
    got = _ops.pointwise_loss(_ops.LOSS_MSE, y, t, g_k, **kw)
    assert_loss_close(got, ref.mse(y, t, g_r, **kw), dtype)
    if with_grad:
        assert_close(g_k, g_r, dtype, scale=float(np.abs(g_r).max()) + 1e-30)


@SETTINGS
@given(dtype=DTYPES, n=N1D, with_grad=st.booleans(), soft=st.booleans(), k=WEIGHTING, seed=SEEDS)
def test_bce(dtype, n, with_grad, soft, k, seed):
    rng = np.random.default_rng(seed)
    n, w = _weights(rng, n, k, dtype)
    p = rng.uniform(1e-3, 1 - 1e-3, n).astype(dtype)
    # exact 0 and 1 probabilities: the log clamp at -100 and the 1e-12 denominator
    j = min(n, 3)
    p[rng.integers(0, n, j)] = rng.choice([0.0, 1.0], j)
    t = (rng.uniform(size=n) if soft else rng.integers(0, 2, n)).astype(dtype)
    g_k = np.full(n, np.nan, dtype) if with_grad else None
    g_r = np.empty(n, dtype) if with_grad else None
    kw = {} if k is None else {"weight": w, "k": k}
    with np.errstate(divide="ignore"):
        want = ref.bce(p, t, g_r, **kw)
    got = _ops.pointwise_loss(_ops.LOSS_BCE, p, t, g_k, **kw)
    assert np.isfinite(got)
    assert_loss_close(got, want, dtype)
    if with_grad:
        assert np.isfinite(g_k).all()
        np.testing.assert_allclose(g_k, g_r, rtol=tol(dtype), atol=tol(dtype) / n)


@SETTINGS
@given(dtype=DTYPES, n=N1D, with_grad=st.booleans(), k=WEIGHTING, seed=SEEDS)
def test_bce_logits(dtype, n, with_grad, k, seed):
    rng = np.random.default_rng(seed)
    n, w = _weights(rng, n, k, dtype)
    z = act_inputs(rng, n, dtype)
    z[rng.integers(0, n, min(n, 2))] = rng.choice([-500.0, 500.0])  # exp(500) overflows: must not
    t = rng.uniform(size=n).astype(dtype)
    g_k = np.full(n, np.nan, dtype) if with_grad else None
    g_r = np.empty(n, dtype) if with_grad else None
    kw = {} if k is None else {"weight": w, "k": k}
    got = _ops.pointwise_loss(_ops.LOSS_BCE_LOGITS, z, t, g_k, **kw)
    want = ref.bce_logits(z, t, g_r, **kw)
    assert np.isfinite(got)
    assert_loss_close(got, want, dtype)
    if with_grad:
        np.testing.assert_allclose(g_k, g_r, rtol=tol(dtype), atol=tol(dtype) / n)


def _check_cross_entropy(name, z, target, smoothing, with_grad, weighted, rng):
    """Kernel `name` and its twin agree on the loss and (into a NaN-filled buffer,
    so every element must be written) the gradient; weighted: random row weights."""
    (n, c), dtype = z.shape, z.dtype.type
    g_k = np.full((n, c), np.nan, dtype) if with_grad else None
    g_r = np.empty((n, c), dtype) if with_grad else None
    kw = {"weight": _weights(rng, n, 1, dtype)[1]} if weighted else {}
    got = getattr(_ops, name)(z, target, smoothing, g_k, **kw)
    want = getattr(ref, name)(z, target, smoothing, g_r, **kw)
    assert_loss_close(got, want, dtype)
    if with_grad:
        np.testing.assert_allclose(g_k, g_r, rtol=tol(dtype), atol=tol(dtype) / n)


@SETTINGS
@given(dtype=DTYPES, n=DIM, c=DIM, smoothing=st.sampled_from([0.0, 0.1, 0.25, 1.0]),
       with_grad=st.booleans(), scale=st.sampled_from([1.0, 50.0]), weighted=st.booleans(),
       seed=SEEDS)
def test_cross_entropy_labels(dtype, n, c, smoothing, with_grad, scale, weighted, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, c), dtype, scale)
    labels = rng.integers(0, c, n).astype(np.int64)
    _check_cross_entropy("cross_entropy_labels", z, labels, smoothing, with_grad, weighted, rng)


@SETTINGS
@given(dtype=DTYPES, n=DIM, c=DIM, smoothing=st.sampled_from([0.0, 0.1, 0.3]),
       with_grad=st.booleans(), one_hot=st.booleans(), weighted=st.booleans(), seed=SEEDS)
def test_cross_entropy_probs(dtype, n, c, smoothing, with_grad, one_hot, weighted, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, c), dtype, 3.0)
    if one_hot:
        probs = np.eye(c, dtype=dtype)[rng.integers(0, c, n)]
    else:
        probs = rng.dirichlet(np.ones(c), n).astype(dtype)
    _check_cross_entropy("cross_entropy_probs", z, probs, smoothing, with_grad, weighted, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_weights_checked(dtype):
    """weight needs one entry per row of k elements, and the losses' dtype."""
    y = np.ones(6, dtype)
    for w, k in ((np.ones(4, dtype), 2), (np.ones(3, dtype), 4), (np.ones(6, dtype), 0),
                 (np.ones(2, dtype), 2)):
        for kind in (_ops.LOSS_MSE, _ops.LOSS_BCE_LOGITS):
            with pytest.raises(ValueError):
                _ops.pointwise_loss(kind, y, y, None, w, k)
    z = np.ones((3, 2), dtype)
    with pytest.raises(ValueError):
        _ops.cross_entropy_labels(z, np.zeros(3, np.int64), 0.0, None, np.ones(2, dtype))
    with pytest.raises(ValueError):
        _ops.cross_entropy_probs(z, z / 2, 0.0, None, np.ones(4, dtype))
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises((TypeError, ValueError)):
        _ops.pointwise_loss(_ops.LOSS_MSE, y, y, None, np.ones(3, other), 2)
    with pytest.raises((TypeError, ValueError)):
        # right length, but strided
        _ops.pointwise_loss(_ops.LOSS_MSE, y, y, None, np.ones(6, dtype)[::2], 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_weights_equal_unweighted(dtype):
    rng = np.random.default_rng(4)
    y, t = randn(rng, 12, dtype), rng.uniform(size=12).astype(dtype)
    for kind in (_ops.LOSS_MSE, _ops.LOSS_BCE_LOGITS):
        g1, g2 = np.empty(12, dtype), np.empty(12, dtype)
        assert _ops.pointwise_loss(kind, y, t, g1) == pytest.approx(
            _ops.pointwise_loss(kind, y, t, g2, np.ones(4, dtype), 3), rel=1e-12)
        np.testing.assert_array_equal(g1, g2)
    z, labels = randn(rng, (4, 3), dtype), rng.integers(0, 3, 4)
    g1, g2 = np.empty_like(z), np.empty_like(z)
    a = _ops.cross_entropy_labels(z, labels, 0.1, g1)
    b = _ops.cross_entropy_labels(z, labels, 0.1, g2, np.ones(4, dtype))
    assert a == pytest.approx(b, rel=1e-12)
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_labels_equal_one_hot_probs(dtype, smoothing):
    rng = np.random.default_rng(3)
    z = randn(rng, (37, 11), dtype)
    labels = rng.integers(0, 11, 37)
    g1, g2 = np.empty_like(z), np.empty_like(z)
    a = _ops.cross_entropy_labels(z, labels, smoothing, g1)
    b = _ops.cross_entropy_probs(z, np.eye(11, dtype=dtype)[labels], smoothing, g2)
    assert_loss_close(a, b, dtype)
    assert_close(g1, g2, dtype)


# ================================================================== optimizers
@SETTINGS
@given(dtype=DTYPES, n=N1D, lr=st.sampled_from([0.1, 1e-3]),
       momentum=st.sampled_from([0.0, 0.9, 0.5]), dampening=st.sampled_from([0.0, 0.1]),
       wd=st.sampled_from([0.0, 1e-2]), nesterov=st.booleans(), first=st.booleans(), seed=SEEDS)
def test_sgd(dtype, n, lr, momentum, dampening, wd, nesterov, first, seed):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False  # torch rejects that combination
    rng = np.random.default_rng(seed)
    p, g, buf = randn(rng, n, dtype), randn(rng, n, dtype), randn(rng, n, dtype)
    states = {}
    for name, mod in (("k", _ops), ("r", ref)):
        p_, b_ = p.copy(), (buf.copy() if momentum else None)
        mod.sgd(p_, g, b_, lr, momentum, dampening, wd, nesterov, first)
        states[name] = (p_, b_)
    assert_close(states["k"][0], states["r"][0], dtype)
    if momentum:
        assert_close(states["k"][1], states["r"][1], dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, lr=st.sampled_from([1e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]),
       eps=st.sampled_from([1e-8, 1e-3]), wd=st.sampled_from([0.0, 0.1]),
       decoupled=st.booleans(), step=st.sampled_from([1, 2, 10, 1000]), seed=SEEDS)
def test_adam(dtype, n, lr, betas, eps, wd, decoupled, step, seed):
    rng = np.random.default_rng(seed)
    p, g = randn(rng, n, dtype), randn(rng, n, dtype)
    m = randn(rng, n, dtype, 0.1) if step > 1 else np.zeros(n, dtype)
    v = (rng.uniform(0.01, 1, n) if step > 1 else np.zeros(n)).astype(dtype)
    states = {}
    for name, mod in (("k", _ops), ("r", ref)):
        p_, m_, v_ = p.copy(), m.copy(), v.copy()
        mod.adam(p_, g, m_, v_, lr, betas[0], betas[1], eps, wd, decoupled, step)
        states[name] = (p_, m_, v_)
    for a, b in zip(states["k"], states["r"]):
        assert_close(a, b, dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, lr=st.sampled_from([1e-2, 1e-3]), alpha=st.sampled_from([0.99, 0.9]),
       eps=st.sampled_from([1e-8, 1e-2]), wd=st.sampled_from([0.0, 0.1]),
       momentum=st.sampled_from([0.0, 0.9]), centered=st.booleans(), seed=SEEDS)
def test_rmsprop(dtype, n, lr, alpha, eps, wd, momentum, centered, seed):
    rng = np.random.default_rng(seed)
    p, g = randn(rng, n, dtype), randn(rng, n, dtype)
    ga = randn(rng, n, dtype, 0.3) if centered else None
    # square_avg >= grad_avg**2 (+ margin, so sqrt(s - ga^2) is well conditioned)
    sq = (rng.uniform(0.1, 1.0, n) + (ga.astype(np.float64) ** 2 if centered else 0)).astype(dtype)
    buf = randn(rng, n, dtype) if momentum else None
    states = {}
    for name, mod in (("k", _ops), ("r", ref)):
        s = [p.copy(), sq.copy(), None if ga is None else ga.copy(), None if buf is None else buf.copy()]
        mod.rmsprop(s[0], g, s[1], s[2], s[3], lr, alpha, eps, wd, momentum)
        states[name] = s
    for a, b in zip(states["k"], states["r"]):
        if b is not None:
            assert_close(a, b, dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, lr=st.sampled_from([1e-2, 0.5]), lr_decay=st.sampled_from([0.0, 0.1]),
       wd=st.sampled_from([0.0, 0.1]), eps=st.sampled_from([1e-10, 1e-3]),
       step=st.sampled_from([1, 3, 100]), seed=SEEDS)
def test_adagrad(dtype, n, lr, lr_decay, wd, eps, step, seed):
    rng = np.random.default_rng(seed)
    p, g = randn(rng, n, dtype), randn(rng, n, dtype)
    s = (rng.uniform(0.0, 2.0, n) if step > 1 else np.zeros(n)).astype(dtype)
    states = {}
    for name, mod in (("k", _ops), ("r", ref)):
        p_, s_ = p.copy(), s.copy()
        mod.adagrad(p_, g, s_, lr, lr_decay, wd, eps, step)
        states[name] = (p_, s_)
    for a, b in zip(states["k"], states["r"]):
        assert_close(a, b, dtype)


@SETTINGS
@given(dtype=DTYPES, n=N1D, lr=st.sampled_from([2e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]), eps=st.sampled_from([1e-8, 1e-3]),
       wd=st.sampled_from([0.0, 0.1]), decoupled=st.booleans(),
       step=st.sampled_from([1, 2, 10, 500]), seed=SEEDS)
def test_nadam(dtype, n, lr, betas, eps, wd, decoupled, step, seed):
    rng = np.random.default_rng(seed)
    p, g = randn(rng, n, dtype), randn(rng, n, dtype)
    m = randn(rng, n, dtype, 0.1) if step > 1 else np.zeros(n, dtype)
    v = (rng.uniform(0.01, 1, n) if step > 1 else np.zeros(n)).astype(dtype)
    mu_product = float(np.prod([betas[0] * (1 - 0.5 * 0.96 ** (t * 4e-3))
                                for t in range(1, step + 1)]))
    states = {}
    for name, mod in (("k", _ops), ("r", ref)):
        p_, m_, v_ = p.copy(), m.copy(), v.copy()
        mod.nadam(p_, g, m_, v_, lr, betas[0], betas[1], eps, wd, 4e-3, mu_product, decoupled,
                  step)
        states[name] = (p_, m_, v_)
    for a, b in zip(states["k"], states["r"]):
        assert_close(a, b, dtype)


def test_update_rejects_state_that_does_not_fit():
    p, g = np.zeros(6, np.float32), np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="state buffer"):
        _ops.adam(p, g, np.zeros(5, np.float32), np.zeros(6, np.float32), 1e-3, 0.9, 0.999,
                  1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match="state buffer"):
        _ops.adagrad(p, g, np.zeros(6, np.float64), 1e-2, 0.0, 0.0, 1e-10, 1)
    with pytest.raises(ValueError):
        _ops.adam(p, g, None, np.zeros(6, np.float32), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)


# ============================================================ small reductions
@SETTINGS
@given(dtype=DTYPES, n=st.one_of(st.integers(0, 70), st.sampled_from([131073, 300001])), seed=SEEDS)
def test_sumsq(dtype, n, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, n, dtype)
    got = _ops.sumsq(x)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref.sumsq(x), rtol=1e-12, atol=0)


@SETTINGS
@given(dtype=DTYPES, n=st.one_of(st.integers(0, 70), st.sampled_from([131073, 200000])),
       c=st.floats(-3, 3, allow_nan=False), seed=SEEDS)
def test_scale_and_mul(dtype, n, c, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, n, dtype)
    a, b = x.copy(), x.copy()
    _ops.scale(a, c)
    ref.scale(b, c)
    np.testing.assert_array_equal(a, b)  # one rounding each: bit-equal
    y = randn(rng, n, dtype)
    o_k, o_r = np.full(n, np.nan, dtype), np.empty(n, dtype)
    _ops.mul(x, y, o_k)
    ref.mul(x, y, o_r)
    np.testing.assert_array_equal(o_k, o_r)


@SETTINGS
@given(dtype=DTYPES, n=st.one_of(st.integers(0, 70), st.sampled_from([4097, 100000])),
       bad=st.sampled_from([None, np.nan, np.inf, -np.inf]), where=st.floats(0, 1), seed=SEEDS)
def test_all_finite(dtype, n, bad, where, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, n, dtype, 1e30)  # huge but finite in both dtypes
    if bad is not None and n:
        x[min(int(where * n), n - 1)] = bad
    got = _ops.all_finite(x)
    assert got is ref.all_finite(x)
    assert got is (bad is None or n == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_extremes(dtype):
    info = np.finfo(dtype)
    finite = np.array([info.max, -info.max, info.tiny, info.tiny / 4, -0.0, 0.0], dtype)
    assert _ops.all_finite(finite)
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        assert not _ops.all_finite(np.append(finite, dtype(bad)))


@SETTINGS
@given(n=st.integers(0, 60), c=st.integers(1, 20),
       bad=st.sampled_from([None, -1, "C", "big", "min"]), seed=SEEDS)
def test_labels_in_range(n, c, bad, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n).astype(np.int64)
    if bad is not None and n:
        labels[rng.integers(0, n)] = {-1: -1, "C": c, "big": 2**62, "min": -2**63}[bad]
    got = _ops.labels_in_range(labels, c)
    assert got is ref.labels_in_range(labels, c)
    assert got is (bad is None or n == 0)


# =================================================================== layernorm
@SETTINGS
@given(dtype=DTYPES, n=DIM, d=DIM, affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3]),
       offset=st.sampled_from([0.0, 10.0]), seed=SEEDS)
def test_layernorm_forward(dtype, n, d, affine, eps, offset, seed):
    rng = np.random.default_rng(seed)
    x = (randn(rng, (n, d), np.float64) + offset).astype(dtype)
    gamma = randn(rng, d, dtype) if affine else None
    beta = randn(rng, d, dtype) if affine else None
    out = {}
    for name, mod in (("k", _ops), ("r", ref)):
        y, mean, rstd = np.full((n, d), np.nan, dtype), np.empty(n, dtype), np.empty(n, dtype)
        mod.layernorm_forward(x, gamma, beta, eps, y, mean, rstd)
        out[name] = (y, mean, rstd)
    for a, b in zip(out["k"], out["r"]):
        assert_close(a, b, dtype)


@SETTINGS
@given(dtype=DTYPES, n=DIM, d=DIM, affine=st.booleans(), accumulate=st.booleans(), seed=SEEDS)
def test_layernorm_backward(dtype, n, d, affine, accumulate, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, d), dtype)
    gamma = randn(rng, d, dtype) if affine else None
    beta = randn(rng, d, dtype) if affine else None
    y, mean, rstd = np.empty((n, d), dtype), np.empty(n, dtype), np.empty(n, dtype)
    ref.layernorm_forward(x, gamma, beta, 1e-5, y, mean, rstd)
    gy = randn(rng, (n, d), dtype)
    gg0, gb0 = randn(rng, d, dtype), randn(rng, d, dtype)
    out = {}
    for name, mod in (("k", _ops), ("r", ref)):
        gx = np.full((n, d), np.nan, dtype)
        gg = (gg0.copy() if accumulate else np.full(d, np.nan, dtype)) if affine else None
        gb = (gb0.copy() if accumulate else np.full(d, np.nan, dtype)) if affine else None
        mod.layernorm_backward(x, gamma, mean, rstd, gy, gx, gg, gb, accumulate)
        out[name] = (gx, gg, gb)
    gx_k, gg_k, gb_k = out["k"]
    gx_r, gg_r, gb_r = out["r"]
    assert_close(gx_k, gx_r, dtype, scale=max(1.0, float(np.abs(gx_r).max()), np.sqrt(d)))
    if affine:
        assert_close(gg_k, gg_r, dtype, scale=max(1.0, float(np.abs(gg_r).max()), np.sqrt(n)))
        assert_close(gb_k, gb_r, dtype, scale=max(1.0, float(np.abs(gb_r).max()), np.sqrt(n)))


# ===================================================================== dropout
def _dropout_both(x, p, seed):
    out = {}
    for name, mod in (("k", _ops), ("r", ref)):
        y, mask = np.full(x.size, np.nan, x.dtype), np.full(x.size, np.nan, x.dtype)
        mod.dropout_forward(x, y, mask, p, seed)
        out[name] = (y, mask)
    return out["k"], out["r"]


@SETTINGS
@given(dtype=DTYPES, n=N1D, p=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0]),
       seed=st.integers(0, 2**64 - 1), xseed=SEEDS)
def test_dropout_forward_bitwise(dtype, n, p, seed, xseed):
    """The reference reimplements the counter hash: masks must be bit-identical."""
    x = randn(np.random.default_rng(xseed), n, dtype)
    (y_k, m_k), (y_r, m_r) = _dropout_both(x, p, seed)
    np.testing.assert_array_equal(m_k, m_r)
    np.testing.assert_array_equal(y_k, y_r)


@SETTINGS
@given(n=N1D, p=st.floats(0.0, 1.0), seed=st.integers(0, 2**64 - 1))
def test_dropout_forward_bitwise_float64_any_p(n, p, seed):
    x = randn(np.random.default_rng(n), n, np.float64)
    (y_k, m_k), (y_r, m_r) = _dropout_both(x, p, seed)
    np.testing.assert_array_equal(m_k, m_r)
    np.testing.assert_array_equal(y_k, y_r)


@pytest.mark.parametrize("p", [0.9, 0.33, 0.15])
def test_dropout_forward_bitwise_float32_rounding(p):
    x = np.ones(1000, np.float32)
    (y_k, m_k), (y_r, m_r) = _dropout_both(x, p, 5)
    np.testing.assert_array_equal(m_k, m_r)
    assert m_k.max() == np.float32(1.0 / (1.0 - p))


def test_dropout_statistics_and_threads():
    n, p = 200_000, 0.3
    x = np.ones(n)

    def run():
        y, mask = np.empty(n), np.empty(n)
        _ops.dropout_forward(x, y, mask, p, 12345)
        return [mask]
    mask = assert_same_at_1_and_2_threads(run)[0]
    assert set(np.unique(mask)) == {0.0, 1 / (1 - p)}
    assert abs((mask == 0).mean() - p) < 0.005
    y2, mask2 = np.empty(n), np.empty(n)
    _ops.dropout_forward(x, y2, mask2, p, 12346)
    assert (mask2 != mask).any()  # another seed, another mask


# =================================================================== embedding
@SETTINGS
@given(dtype=DTYPES, n=st.one_of(st.integers(0, 50), st.sampled_from([3000])),
       num=st.integers(1, 30), dim=DIM, accumulate=st.booleans(), seed=SEEDS)
def test_embedding(dtype, n, num, dim, accumulate, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num, n).astype(np.int64)  # n > num forces repeated indices
    if n >= 2:
        idx[1] = idx[0]
    w = randn(rng, (num, dim), dtype)
    o_k, o_r = np.full((n, dim), np.nan, dtype), np.empty((n, dim), dtype)
    _ops.embedding_forward(idx, w, o_k)
    ref.embedding_forward(idx, w, o_r)
    np.testing.assert_array_equal(o_k, o_r)
    gout = randn(rng, (n, dim), dtype)
    g0 = randn(rng, (num, dim), dtype)
    gw_k = g0.copy() if accumulate else np.full((num, dim), np.nan, dtype)
    gw_r = g0.copy()
    _ops.embedding_backward(idx, gout, gw_k, accumulate)
    ref.embedding_backward(idx, gout, gw_r, accumulate)
    assert_close(gw_k, gw_r, dtype, scale=max(1.0, float(np.abs(gw_r).max()), np.sqrt(n)))


@pytest.mark.parametrize("bad", [-1, 5, 2**40])
def test_embedding_rejects_out_of_range_indices(bad):
    w = np.ones((5, 3))
    idx = np.array([0, bad, 1], np.int64)
    with pytest.raises(ValueError, match="indices"):
        _ops.embedding_forward(idx, w, np.empty((3, 3)))
    with pytest.raises(ValueError, match="indices"):
        _ops.embedding_backward(idx, np.ones((3, 3)), np.empty((5, 3)))


def test_cross_entropy_kernel_rejects_out_of_range_labels():
    z = np.zeros((3, 4))
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="labels"):
            _ops.cross_entropy_labels(z, np.array([0, bad, 1], np.int64), 0.0, None)


# ============================================ strides, shapes and dtypes: raise
def _f(*shape, dtype=np.float64):
    return np.ones(shape, dtype)


def _i(*shape):
    return np.zeros(shape, np.int64)


def _strided(a):
    """A non-contiguous view with a's shape and values."""
    big = np.repeat(a, 2, axis=-1)
    return big[..., ::2]


def kernel_calls(dtype=np.float64):
    """(name, function, args) for a well-formed call of every kernel."""
    f = lambda *s: _f(*s, dtype=dtype)  # noqa: E731
    return [
        ("gemm", _ops.gemm, [f(4, 3), f(3, 5), f(4, 5)]),
        ("gemm_split", _ops.gemm_split, [f(4, 3), f(3, 5), f(4, 5), False, False, 1, 2]),
        ("linear_forward", _ops.linear_forward, [f(4, 3), f(5, 3), f(5), 1, 0.0, f(4, 5), f(4, 5)]),
        ("linear_backward", _ops.linear_backward,
         [f(4, 3), f(5, 3), 5, 0.0, f(4, 5), f(4, 5), f(4, 5), f(4, 5), f(4, 3), f(5, 3), f(5)]),
        ("act_forward", _ops.act_forward, [3, 0.0, f(6), f(6)]),
        ("act_backward", _ops.act_backward, [5, 0.0, f(6), f(6), f(6), f(6)]),
        ("softmax_forward", _ops.softmax_forward, [f(4, 3), f(4, 3)]),
        ("softmax_backward", _ops.softmax_backward, [f(4, 3), f(4, 3), f(4, 3)]),
        ("pointwise_loss", _ops.pointwise_loss, [_ops.LOSS_BCE, f(6) / 2, f(6), f(6)]),
        ("cross_entropy_labels", _ops.cross_entropy_labels, [f(4, 3), _i(4), 0.0, f(4, 3)]),
        ("cross_entropy_probs", _ops.cross_entropy_probs, [f(4, 3), f(4, 3) / 3, 0.0, f(4, 3)]),
        ("sgd", _ops.sgd, [f(6), f(6), f(6), 0.1, 0.9, 0.0, 0.0, False, False]),
        ("adam", _ops.adam, [f(6), f(6), f(6), f(6), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1]),
        ("rmsprop", _ops.rmsprop, [f(6), f(6), f(6), f(6) * 0, f(6), 1e-2, 0.99, 1e-8, 0.0, 0.9]),
        ("adagrad", _ops.adagrad, [f(6), f(6), f(6), 1e-2, 0.0, 0.0, 1e-10, 1]),
        ("nadam", _ops.nadam, [f(6), f(6), f(6), f(6), 2e-3, 0.9, 0.999, 1e-8, 0.0, 4e-3, 0.45,
                               False, 1]),
        ("sumsq", _ops.sumsq, [f(6)]),
        ("scale", _ops.scale, [f(6), 2.0]),
        ("mul", _ops.mul, [f(6), f(6), f(6)]),
        ("all_finite", _ops.all_finite, [f(6)]),
        ("labels_in_range", _ops.labels_in_range, [_i(6), 3]),
        ("layernorm_forward", _ops.layernorm_forward,
         [f(4, 3), f(3), f(3), 1e-5, f(4, 3), f(4), f(4)]),
        ("layernorm_backward", _ops.layernorm_backward,
         [f(4, 3), f(3), f(4), f(4), f(4, 3), f(4, 3), f(3), f(3)]),
        ("dropout_forward", _ops.dropout_forward, [f(6), f(6), f(6), 0.5, 7]),
        ("embedding_forward", _ops.embedding_forward, [_i(4), f(3, 5), f(4, 5)]),
        ("embedding_backward", _ops.embedding_backward, [_i(4), f(4, 5), f(3, 5)]),
        # attention: x (B=2, L=3, E=4) batch-first, 2 heads
        ("mha_forward", _ops.mha_forward,
         [f(2, 3, 4), f(12, 4), f(12), f(4, 4), f(4), f(3, 3), 2, True, True, f(2, 3, 12),
          f(2, 2, 3, 3), f(2, 3, 4), f(2, 3, 4)]),
        ("mha_backward", _ops.mha_backward,
         [f(2, 3, 4), f(12, 4), f(4, 4), f(2, 3, 12), f(2, 2, 3, 3), f(2, 3, 4), f(2, 3, 4), 2,
          True, True, f(2, 3, 4), f(2, 2, 3, 3), f(2, 3, 12), f(2, 3, 4), f(12, 4), f(12),
          f(4, 4), f(4)]),
        ("attn_last_forward", _ops.attn_last_forward, [f(2, 4), f(2, 3, 8), 2, f(2, 2, 3), f(2, 4)]),
        ("attn_last_backward", _ops.attn_last_backward,
         [f(2, 4), f(2, 3, 8), f(2, 2, 3), f(2, 4), 2, f(2, 4), f(2, 3, 8)]),
        ("cross_entropy_ignore", _ops.cross_entropy_ignore, [f(4, 3), _i(4), -100, 0.0, f(4, 3)]),
        ("embedding_bag_forward", _ops.embedding_bag_forward, [_i(8), f(3, 5), 2, f(4, 5), _i(4, 5)]),
        ("embedding_bag_backward", _ops.embedding_bag_backward, [_i(8), f(4, 5), 2, _i(4, 5), f(3, 5)]),
        ("conv1d_forward", _ops.conv1d_forward,
         [f(2, 6, 3), f(4, 3, 2), f(4), 1, 1, 0, 0, True, f(4, 6), f(10, 6), f(2, 5, 4)]),
        ("conv1d_backward", _ops.conv1d_backward,
         [f(4, 6), f(10, 6), f(2, 5, 4), True, f(2, 5, 4), 1, 1, 0, 0, f(2, 5, 4), f(4, 6),
          f(10, 6), f(2, 6, 3), f(4, 3, 2), f(4)]),
        # recurrent layers: x (T=2, B=3, I=4), H=5, gates 3H (GRU) / 4H (LSTM)
        ("gru_forward", _ops.gru_forward,
         [f(2, 3, 4), f(15, 4), f(15, 5), f(15), f(15), f(3, 3, 5), f(2, 3, 15), f(2, 3, 15),
          f(_ops.rnn_pack_size(3, 5))]),
        ("gru_backward", _ops.gru_backward,
         [f(2, 3, 4), f(15, 4), f(15, 5), f(3, 3, 5), f(2, 3, 15), f(2, 3, 15), f(2, 3, 5),
          f(3, 5), f(2, 3, 15), f(2, 3, 15), f(2, 3, 4), f(15, 4), f(15, 5), f(15), f(15),
          f(_ops.rnn_pack_size(3, 5))]),
        ("lstm_forward", _ops.lstm_forward,
         [f(2, 3, 4), f(20, 4), f(20, 5), f(20), f(20), f(3, 3, 5), f(3, 3, 5), f(2, 3, 20),
          f(3, 20), f(_ops.rnn_pack_size(4, 5))]),
        ("lstm_backward", _ops.lstm_backward,
         [f(2, 3, 4), f(20, 4), f(20, 5), f(3, 3, 5), f(3, 3, 5), f(2, 3, 20), f(2, 3, 5), f(3, 5),
          f(3, 5), f(2, 3, 20), f(2, 3, 4), f(20, 4), f(20, 5), f(20), f(20),
          f(_ops.rnn_pack_size(4, 5))]),
    ]


# GELU's backward reads x, the other activations read y: the other one is unused
UNREAD = {("act_backward", 3)}


def _array_slots(pred=lambda a: True):
    """(kernel name, argument position) of every array argument satisfying pred."""
    return [(name, i) for name, _, args in kernel_calls() for i, a in enumerate(args)
            if isinstance(a, np.ndarray) and pred(a)]


def test_every_kernel_is_covered():
    """Every public function of _ops with a twin in _reference is exercised here."""
    covered = {name for name, _, _ in kernel_calls()}
    twins = {name for name in dir(_ops) if not name.startswith("_") and callable(getattr(_ops, name))
             and callable(getattr(ref, name, None))}
    assert twins <= covered, twins - covered


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_well_formed_calls_succeed(dtype):
    for name, func, args in kernel_calls(dtype):
        func(*args)


@pytest.mark.parametrize("name,slot", _array_slots())
def test_strided_view_raises(name, slot):
    """Kernels need C-contiguous arrays: a strided view is rejected, never misread."""
    _, func, args = next(c for c in kernel_calls() if c[0] == name)
    args = list(args)
    args[slot] = _strided(args[slot])
    assert not args[slot].flags.c_contiguous
    with pytest.raises((ValueError, TypeError)):
        func(*args)


@pytest.mark.parametrize("name,slot", _array_slots(lambda a: a.ndim == 2 and min(a.shape) > 1))
def test_fortran_order_raises(name, slot):
    _, func, args = next(c for c in kernel_calls() if c[0] == name)
    args = list(args)
    args[slot] = np.asfortranarray(args[slot])
    with pytest.raises((ValueError, TypeError)):
        func(*args)


@pytest.mark.parametrize("name,slot", _array_slots())
def test_wrong_shape_raises_value_error(name, slot):
    """Growing any one array by one along its last axis is a shape mismatch."""
    _, func, args = next(c for c in kernel_calls() if c[0] == name)
    if name in ("sumsq", "scale", "all_finite", "labels_in_range"):
        pytest.skip("single-array kernel: every shape is valid")
    if (name, slot) in UNREAD:
        pytest.skip("this array is not read for this activation code")
    args = list(args)
    a = args[slot]
    args[slot] = np.ascontiguousarray(np.concatenate([a, a[..., :1]], axis=-1))
    with pytest.raises(ValueError):
        func(*args)


@pytest.mark.parametrize("name,slot", _array_slots(lambda a: a.dtype == np.float64))
@pytest.mark.parametrize("bad", [np.float32, np.float16, np.int64, np.complex128, object])
def test_mixed_dtypes_raise(name, slot, bad):
    """One float64 array swapped for another dtype: TypeError/ValueError, no crash."""
    _, func, args = next(c for c in kernel_calls() if c[0] == name)
    if bad is np.float32 and name in ("sumsq", "scale", "all_finite"):
        pytest.skip("a single float32 array is a valid call")
    args = list(args)
    args[slot] = args[slot].astype(bad)
    with pytest.raises((TypeError, ValueError)):
        func(*args)


@pytest.mark.parametrize("name,slot", _array_slots(lambda a: a.dtype == np.int64))
@pytest.mark.parametrize("bad", [np.int32, np.uint64, np.float64])
def test_index_arrays_must_be_int64(name, slot, bad):
    _, func, args = next(c for c in kernel_calls() if c[0] == name)
    args = list(args)
    args[slot] = args[slot].astype(bad)
    with pytest.raises((TypeError, ValueError)):
        func(*args)


def test_gemm_specific_mismatches():
    with pytest.raises(ValueError):
        _ops.gemm(_f(4, 3), _f(4, 5), _f(4, 5))  # inner dims
    with pytest.raises(ValueError):
        _ops.gemm(_f(4, 3), _f(3, 5), _f(5, 4))  # output
    with pytest.raises(ValueError):
        _ops.gemm(_f(4, 3), _f(3, 5), _f(4, 5), True)  # op(a) is 3x4
    _ops.gemm(_f(3, 4), _f(5, 3), _f(4, 5), True, True)


def test_gelu_without_z_raises():
    x, w, y = _f(4, 3), _f(5, 3), _f(4, 5)
    for code in (_ops.ACT_GELU, _ops.ACT_GELU_TANH):
        with pytest.raises(ValueError, match="GELU"):
            _ops.linear_forward(x, w, None, code, 0.0, None, y)
        with pytest.raises(ValueError):
            _ops.act_backward(code, 0.0, None, y.ravel(), y.ravel(), y.ravel())


def test_losses_reject_empty():
    for kind in (_ops.LOSS_MSE, _ops.LOSS_BCE, _ops.LOSS_BCE_LOGITS):
        with pytest.raises(ValueError):
            _ops.pointwise_loss(kind, _f(0), _f(0), None)
    with pytest.raises(ValueError, match="kind"):
        _ops.pointwise_loss(_ops.LOSS_CE_LABELS, _f(6), _f(6), None)
    with pytest.raises(ValueError):
        _ops.cross_entropy_labels(_f(0, 3), _i(0), 0.0, None)
    with pytest.raises(ValueError):
        _ops.cross_entropy_probs(_f(0, 3), _f(0, 3), 0.0, None)


def test_dropout_rejects_bad_p():
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            _ops.dropout_forward(_f(4), _f(4), _f(4), p, 1)


# ============================================ public API: any layout is accepted
def _models(dtype):
    fn.seed(0)
    return [
        fn.Sequential(fn.Linear(8, 16), fn.ReLU(), fn.Linear(16, 4), dtype=dtype),
        fn.Sequential(fn.Linear(8, 6), fn.GELU(), fn.LayerNorm(6), fn.Linear(6, 3), fn.Softmax(),
                      dtype=dtype),
        fn.Sequential(fn.Linear(8, 1, bias=False), fn.Sigmoid(), dtype=dtype),
    ]


def _layouts(x):
    """Non-contiguous, Fortran-ordered, negative-stride and read-only views of x."""
    wide = np.repeat(x, 2, axis=1)
    ro = x.copy()
    ro.flags.writeable = False
    return {
        "strided_cols": wide[:, ::2],
        "strided_rows": np.repeat(x, 3, axis=0)[::3],
        "fortran": np.asfortranarray(x),
        "reversed": x[::-1][::-1],
        "negative_stride": x[::-1].copy()[::-1],
        "read_only": ro,
        "other_dtype": x.astype(np.float32 if x.dtype == np.float64 else np.float64),
        "list": x.tolist(),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", list(_layouts(np.zeros((2, 2)))))
def test_model_accepts_any_layout(dtype, layout):
    rng = np.random.default_rng(0)
    # float32-representable values, so the "other_dtype" cast is exact
    x = rng.standard_normal((9, 8)).astype(np.float32).astype(dtype)
    view = _layouts(x)[layout]
    tol_ = 1e-6 if dtype == "float32" else 0
    for model in _models(dtype):
        want = model(x)
        got = model(view)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=tol_, atol=tol_)
        np.testing.assert_allclose(model.predict(view), want, rtol=tol_, atol=tol_)


@pytest.mark.parametrize("layout", ["strided_cols", "fortran", "negative_stride", "read_only"])
def test_backward_and_losses_accept_any_layout(layout):
    rng = np.random.default_rng(1)
    model = _models("float64")[0]
    x = rng.standard_normal((7, 8))
    out = model(x)
    g = rng.standard_normal(out.shape)
    model.zero_grad()
    model.backward(g)
    want = [p.grad.copy() for p in model.parameters()]
    model(_layouts(x)[layout])
    model.zero_grad()
    model.backward(_layouts(g)[layout])
    for p, w in zip(model.parameters(), want):
        np.testing.assert_allclose(p.grad, w, rtol=1e-12, atol=1e-12)

    t = rng.standard_normal(out.shape)
    for loss in (fn.MSELoss(), fn.BCEWithLogitsLoss()):
        tt = t if isinstance(loss, fn.MSELoss) else (t > 0).astype(float)
        a = loss(out, tt)
        ga = loss.backward().copy()
        b = loss(_layouts(out)[layout], _layouts(tt)[layout])
        assert b == pytest.approx(a, rel=1e-12)
        np.testing.assert_allclose(loss.backward(), ga, rtol=1e-12)
    probs = rng.dirichlet(np.ones(4), 7)
    ce = fn.CrossEntropyLoss()
    assert ce(_layouts(out)[layout], _layouts(probs)[layout]) == pytest.approx(ce(out, probs), rel=1e-12)
    labels = rng.integers(0, 4, 7)
    lab_view = np.repeat(labels, 2)[::2]
    assert ce(_layouts(out)[layout], lab_view) == pytest.approx(ce(out, labels), rel=1e-12)


# ======================================================================= codes
HEADER = os.path.join(os.path.dirname(__file__), os.pardir, "csrc", "fnn.h")


@pytest.mark.skipif(not os.path.exists(HEADER), reason="no csrc/ next to the tests")
def test_codes_are_the_headers():
    """Every numbered code of csrc/fnn.h reaches Python under its name, with its value."""
    with open(HEADER) as fh:
        header = dict(re.findall(r"\bFNN_((?:ACT|LOSS|OPT)_\w+) = (\d+)", fh.read()))
    exported = {k: v for k, v in vars(_ops).items() if re.match(r"(ACT|LOSS|OPT)_", k)}
    assert exported == {k: int(v) for k, v in header.items()}


def test_reference_codes_are_the_kernels():
    """The twins write the activation, loss and bag codes out (they must not import
    the module they check); they are the values the kernels use."""
    names = [k for k in vars(_ops) if re.match(r"(ACT|LOSS|BAG)_[A-Z_]+$", k)]
    assert len(names) == 15
    for name in names:
        assert getattr(ref, name) == getattr(_ops, name), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_codes_compute_their_losses(dtype):
    """A dense program given LOSS_x computes the loss x of its twin in _reference."""
    rng = np.random.default_rng(0)
    n, d, C = 6, 4, 3
    w, b, x = randn(rng, (C, d), dtype), randn(rng, C, dtype), randn(rng, (n, d), dtype)
    binary = rng.random((n, C)).astype(dtype)
    cases = {  # code: (output activation, target, the twin's loss of output y)
        _ops.LOSS_MSE: (_ops.ACT_NONE, randn(rng, (n, C), dtype),
                        lambda y, t: ref.mse(y.ravel(), t.ravel(), None)),
        _ops.LOSS_BCE: (_ops.ACT_SIGMOID, binary, lambda y, t: ref.bce(y.ravel(), t.ravel(), None)),
        _ops.LOSS_BCE_LOGITS: (_ops.ACT_NONE, binary,
                               lambda y, t: ref.bce_logits(y.ravel(), t.ravel(), None)),
        _ops.LOSS_CE_LABELS: (_ops.ACT_NONE, rng.integers(0, C, n),
                              lambda y, t: ref.cross_entropy_labels(y, t, 0.0, None)),
        _ops.LOSS_CE_PROBS: (_ops.ACT_NONE, rng.dirichlet(np.ones(C), n).astype(dtype),
                             lambda y, t: ref.cross_entropy_probs(y, t, 0.0, None)),
    }
    assert sorted(cases) == codes("LOSS_")
    for code, (act, target, twin) in cases.items():
        prog = _ops.DenseProgram([(w, b, np.empty_like(w), np.empty_like(b), act, 0.0)], n, dtype)
        assert prog.target_ok(target, code)
        y = np.empty((n, C), dtype)
        ref.linear_forward(x, w, b, act, 0.0, None, y)
        assert prog.forward_backward(x, target, code, 0.0, 1.0) == pytest.approx(
            twin(y, target), rel=tol(dtype))


def test_update_kinds():
    """Each optimizer's Update carries the OPT_ code of its rule (the C switch reads it)."""
    p = np.zeros(3)
    kinds = [_ops.sgd_update(0.1, 0.0, 0.0, 0.0, False, True, None).kind,
             _ops.adam_update(0.1, 0.9, 0.99, 1e-8, 0.0, False, 1, p, p).kind,
             _ops.rmsprop_update(0.1, 0.99, 1e-8, 0.0, 0.0, p, None, None).kind,
             _ops.adagrad_update(0.1, 0.0, 0.0, 1e-10, 1, p).kind,
             _ops.nadam_update(0.1, 0.9, 0.99, 1e-8, 0.0, 4e-3, 0.9, False, 1, p, p).kind]
    assert kinds == [_ops.OPT_SGD, _ops.OPT_ADAM, _ops.OPT_RMSPROP, _ops.OPT_ADAGRAD,
                     _ops.OPT_NADAM]
    assert sorted(kinds) == codes("OPT_")
