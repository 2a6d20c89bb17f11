"""GEMM cuts: every block structure fastnn may use gives the bits of one BLAS call.

At one thread a product is always one BLAS call; with more threads it may be cut
into row or column blocks, but only after the kernels checked, once per shape,
that the cut reproduces one call's bits (csrc/kernels.c, fnn_plan). These tests
pin that down for the products of the benchmark models: the forward X W^T and
both backward products dW = dZ^T X and dX = dZ W, float32 and float64.
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn._kernels import _ops

# (batch, in, out) of every layer in the benchmark models: MLP 784-512-256-10 at
# batch 1..1024, the tiny 32-64-64-1 at batch 32, the LM's Linear(192, 256) and
# Linear(256, 80) at batch 128; plus odd sizes that leave short edge blocks.
LAYERS = [(n, i, o) for n in (1, 16, 64, 256, 1024) for i, o in ((784, 512), (512, 256), (256, 10))]
LAYERS += [(32, 32, 64), (32, 64, 64), (32, 64, 1), (128, 192, 256), (128, 256, 80)]
LAYERS += [(49, 99, 130), (25, 1078, 132), (97, 300, 200)]
DTYPES = [np.float32, np.float64]


def _products(n, i, o, dtype, rng):
    """(a, b, trans_a, trans_b) of the three GEMMs of one Linear layer."""
    x = rng.standard_normal((n, i)).astype(dtype)
    w = rng.standard_normal((o, i)).astype(dtype)
    dz = rng.standard_normal((n, o)).astype(dtype)
    return {"forward": (x, w, False, True), "dW": (dz, x, True, False), "dX": (dz, w, False, False)}


def _one_call(a, b, ta, tb):
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    c = np.empty((m, n), a.dtype)
    _ops.gemm(a, b, c, ta, tb)
    return c


def _cut(a, b, ta, tb, dim, parts, threads=2, beta=0.0, c=None):
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    c = np.full((m, n), np.nan, a.dtype) if c is None else c
    _ops.gemm_split(a, b, c, ta, tb, dim, parts, threads, beta)
    return c


def _row_cut_ok(m, parts):
    """csrc's fnn_cut_ok for rows: blocks of a multiple of 24 rows, the last one
    non-empty and not a single row (which would go to gemv)."""
    cs = -(-m // parts)
    cs = -(-cs // 24) * 24
    return m - cs * (parts - 1) >= 2


def _same_bits(x, y):
    return x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_row_cuts_give_the_bits_of_one_call(layer, dtype):
    """Row blocks start at multiples of 24 rows: measured bit-exact on OpenBLAS
    0.3.30's Haswell, Sandybridge, Nehalem and Katmai kernels. A failure here
    means this BLAS rounds row blocks differently; results would still not
    depend on the thread count (the runtime check refuses such a cut), but the
    product would no longer use a second thread."""
    rng = np.random.default_rng(sum(layer))
    for name, (a, b, ta, tb) in _products(*layer, dtype, rng).items():
        m = a.shape[1] if ta else a.shape[0]
        full = _one_call(a, b, ta, tb)
        for parts in (2, 3, 4):
            if not _row_cut_ok(m, parts):
                continue
            assert _same_bits(_cut(a, b, ta, tb, 0, parts), full), (name, parts)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_column_cuts_give_the_bits_of_one_call_float64(layer):
    """64-byte aligned column blocks keep dgemm's bits on every kernel set tried.
    (Not sgemm's: OpenBLAS's Haswell sgemm rounds a column block differently from
    the whole, so there the runtime check keeps float32 products whole or cuts rows.)"""
    rng = np.random.default_rng(sum(layer))
    for name, (a, b, ta, tb) in _products(*layer, np.float64, rng).items():
        n = b.shape[0] if tb else b.shape[1]
        full = _one_call(a, b, ta, tb)
        for parts in (2, 3):
            if n <= 16 * (parts - 1):
                continue
            assert _same_bits(_cut(a, b, ta, tb, 1, parts), full), (name, parts)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_row_products_cut_by_columns(dtype):
    """Batch 1 runs gemv; its column blocks are gemv calls with the same sums."""
    rng = np.random.default_rng(1)
    for i, o in ((784, 512), (512, 256), (256, 10)):
        for name, (a, b, ta, tb) in _products(1, i, o, dtype, rng).items():
            if name == "dW":
                continue   # K = 1: an outer product, no sums at all
            full = _one_call(a, b, ta, tb)
            n = b.shape[0] if tb else b.shape[1]
            if n > 16:
                assert _same_bits(_cut(a, b, ta, tb, 1, 2), full), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuts_accumulate_like_one_call(dtype):
    """beta = 1 (gradient accumulation) goes through the same kernels."""
    rng = np.random.default_rng(2)
    a, b, ta, tb = _products(256, 784, 512, dtype, rng)["dW"]
    c0 = rng.standard_normal((512, 784)).astype(dtype)
    full = c0.copy()
    _ops.gemm(a, b, full, ta, tb, 1.0, 1.0)
    assert _same_bits(_cut(a, b, ta, tb, 0, 2, beta=1.0, c=c0.copy()), full)


def _run_layer(n, i, o, dtype, threads, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, i)).astype(dtype)
    w = (rng.standard_normal((o, i)) * 0.1).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    gy = rng.standard_normal((n, o)).astype(dtype)
    y = np.empty((n, o), dtype)
    gz, gx = np.empty_like(y), np.empty_like(x)
    gw, gb = np.empty_like(w), np.empty_like(b)
    old = fn.get_num_threads()
    try:
        fn.set_num_threads(threads)
        _ops.linear_forward(x, w, b, _ops.ACT_RELU, 0.0, None, y)
        _ops.linear_backward(x, w, _ops.ACT_RELU, 0.0, None, y, gy, gz, gx, gw, gb, False)
        gw2 = np.ones_like(w)   # accumulate=True: dW += dZ^T X with beta = 1
        _ops.linear_backward(x, w, _ops.ACT_RELU, 0.0, None, y, gy, gz, None, gw2, None, True)
    finally:
        fn.set_num_threads(old)
    return y, gx, gw, gb, gw2


@pytest.mark.skipif(not _ops.openmp_enabled(), reason="serial build: one thread only")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_layer_bits_do_not_depend_on_threads_or_cuts(layer, dtype):
    """The planned cuts at 2 and 3 threads, and each cut forced by hand where the
    kernels allow it, all give the 1-thread (one call per product) bits."""
    ref = _run_layer(*layer, dtype, 1)
    for threads in (2, 3):
        for _ in range(2):   # a shape's first call runs whole; the second is planned
            got = _run_layer(*layer, dtype, threads)
            assert all(_same_bits(r, g) for r, g in zip(ref, got)), threads
    try:
        _ops.set_split(2)   # forced one call
        assert all(_same_bits(r, g) for r, g in zip(ref, _run_layer(*layer, dtype, 2)))
        for parts in (2, 3):
            _ops.set_split(0, parts)   # forced row cut
            got = _run_layer(*layer, dtype, 2)
            assert all(_same_bits(r, g) for r, g in zip(ref, got)), ("rows", parts)
    finally:
        _ops.set_split(-1)


@pytest.mark.skipif(not _ops.openmp_enabled(), reason="serial build: one thread only")
def test_big_products_are_planned_and_cut():
    """With 2 threads a large product is checked and timed at its second call
    (the first runs whole); at 1 thread nothing is planned: the product is one call."""
    before = _ops.split_stats()
    _run_layer(1, 1, 1, np.float32, 2)   # tiny: never planned
    _run_layer(300, 500, 400, np.float32, 1)
    assert _ops.split_stats() == before
    _run_layer(301, 500, 400, np.float32, 2)
    assert _ops.split_stats() == before
    _run_layer(301, 500, 400, np.float32, 2)
    after = _ops.split_stats()
    assert sum(after) > sum(before)
