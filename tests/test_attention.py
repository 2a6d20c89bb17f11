"""Attention: the compiled self-attention kernels against their NumPy twins,
float64 central-difference gradients of MultiheadAttention, PositionalEmbedding,
Residual, TransformerBlock and TransformerLM, parity with torch.nn.MultiheadAttention
and a torch pre-LN block (TransformerEncoderLayer, norm_first) built from the same
weights, bitwise results for 1 and 2 threads, argument errors, and a tiny
transformer LM that learns a toy sequence with Trainer.fit.

Run with ``pytest -s`` to see the max torch parity errors per dtype.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fn
from fastnn import _reference as ref
from fastnn._kernels import _ops
from fastnn.apps.transformerlm import TransformerLM
from fastnn.nn.attention import (MultiheadAttention, PositionalEmbedding, Residual,
                                 TransformerBlock)
from numeric import numeric_grad
from threads import assert_same_at_1_and_2_threads

SETTINGS = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tol(dtype):
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10


def causal_bool(L):
    return np.triu(np.ones((L, L), bool), 1)


# ============================================================ kernels vs twins
def _kernel_run(mod, x, wi, bi, wo, bo, mask, H, causal, bf, gy, accumulate):
    dt = x.dtype
    d0, d1, E = x.shape
    B, L = (d0, d1) if bf else (d1, d0)
    qkv, attn = np.empty((d0, d1, 3 * E), dt), np.empty((B, H, L, L), dt)
    ctx, y = np.empty(x.shape, dt), np.empty(x.shape, dt)
    mod.mha_forward(x, wi, bi, wo, bo, mask, H, causal, bf, qkv, attn, ctx, y)
    gctx, gs, gqkv, gx = np.empty_like(ctx), np.empty_like(attn), np.empty_like(qkv), np.empty_like(x)
    rng = np.random.default_rng(9)
    # accumulate adds to what is there; otherwise the old contents (NaN here) must not leak in
    grads = [(rng.standard_normal(a.shape) if accumulate else np.full(a.shape, np.nan)).astype(dt)
             if a is not None else None for a in (wi, bi, wo, bo)]
    mod.mha_backward(x, wi, wo, qkv, attn, ctx, gy, H, causal, bf, gctx, gs, gqkv, gx, *grads,
                     accumulate)
    return [y, attn, qkv, ctx, gx] + [g for g in grads if g is not None]


@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), B=st.integers(1, 3),
       L=st.one_of(st.integers(1, 9), st.sampled_from([63, 64, 65, 130])), H=st.sampled_from([1, 2, 3]),
       d=st.integers(1, 6), causal=st.booleans(), bf=st.booleans(),
       mask=st.sampled_from(["none", "float", "bool", "per-sequence"]), bias=st.booleans(),
       accumulate=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_mha_kernels_match_reference(dtype, B, L, H, d, causal, bf, mask, bias, accumulate, seed):
    rng = np.random.default_rng(seed)
    E = H * d
    shape = (B, L, E) if bf else (L, B, E)
    x = rng.standard_normal(shape).astype(dtype)
    wi = (rng.standard_normal((3 * E, E)) * 0.5).astype(dtype)
    wo = (rng.standard_normal((E, E)) * 0.5).astype(dtype)
    bi = rng.standard_normal(3 * E).astype(dtype) if bias else None
    bo = rng.standard_normal(E).astype(dtype) if bias else None
    m = None
    if mask == "float":
        m = rng.standard_normal((L, L)).astype(dtype)
    elif mask == "bool":  # a random bool mask as -inf, never a fully masked row
        bad = rng.random((L, L)) < 0.3
        bad[np.arange(L), np.arange(L)] = False
        m = np.where(bad, -np.inf, 0).astype(dtype)
    elif mask == "per-sequence":  # (B*L, L): one mask per sequence (key padding)
        m = rng.standard_normal((B * L, L)).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    got = _kernel_run(_ops, x, wi, bi, wo, bo, m, H, causal, bf, gy, accumulate)
    want = _kernel_run(ref, x, wi, bi, wo, bo, m, H, causal, bf, gy, accumulate)
    for g, w in zip(got, want):
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=tol(dtype), atol=tol(dtype) * scale)


@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64]), B=st.integers(1, 3),
       L=st.integers(1, 9), H=st.sampled_from([1, 2, 3]), d=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_attn_last_kernels_match_reference(dtype, B, L, H, d, seed):
    rng = np.random.default_rng(seed)
    E = H * d
    q, kv, gc = (rng.standard_normal(s).astype(dtype) for s in ((B, E), (B, L, 2 * E), (B, E)))
    outs = []
    for mod in (_ops, ref):
        p, c = np.full((B, H, L), np.nan, dtype), np.full((B, E), np.nan, dtype)
        gq, gkv = np.full((B, E), np.nan, dtype), np.full((B, L, 2 * E), np.nan, dtype)
        mod.attn_last_forward(q, kv, H, p, c)
        mod.attn_last_backward(q, kv, p, gc, H, gq, gkv)
        outs.append((p, c, gq, gkv))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_dropout_kernels_match_reference(dtype, causal):
    rng = np.random.default_rng(22)
    B, L, H, d = 2, 7, 2, 3
    E = H * d
    x, gy = (rng.standard_normal((B, L, E)).astype(dtype) for _ in range(2))
    wi, wo = (rng.standard_normal(s).astype(dtype) * 0.5 for s in ((3 * E, E), (E, E)))
    bi, bo = rng.standard_normal(3 * E).astype(dtype), rng.standard_normal(E).astype(dtype)
    drop = np.where(rng.random((B, H, L, L)) < 0.3, 0, 1 / 0.7).astype(dtype)
    outs = []
    for mod in (_ops, ref):
        qkv, attn, dattn = (np.empty(s, dtype) for s in ((B, L, 3 * E), drop.shape, drop.shape))
        ctx, y = np.empty(x.shape, dtype), np.empty(x.shape, dtype)
        mod.mha_forward(x, wi, bi, wo, bo, None, H, causal, True, qkv, attn, ctx, y, drop, dattn)
        grads = [np.empty(a.shape, dtype) for a in (x, wi, bi, wo, bo)]
        mod.mha_backward(x, wi, wo, qkv, attn, ctx, gy, H, causal, True, np.empty_like(ctx),
                         np.empty_like(attn), np.empty_like(qkv), *grads, False, drop, dattn)
        outs.append([y, attn, dattn] + grads)
    for g, w in zip(*outs):
        np.testing.assert_allclose(g, w, rtol=tol(dtype), atol=tol(dtype) * max(1, np.abs(w).max()))


def test_mha_kernel_masked_probabilities_are_exact_zeros():
    """Causal and -inf entries are exactly 0 (never exp's smallest value), rows sum to 1."""
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        B, L, E, H = 2, 70, 8, 2
        x = rng.standard_normal((B, L, E)).astype(dt)
        out = _kernel_run(_ops, x, rng.standard_normal((3 * E, E)).astype(dt), None,
                          rng.standard_normal((E, E)).astype(dt), None, None, H, True, True,
                          x, False)
        attn = out[1]
        assert np.all(attn[..., causal_bool(L)] == 0)
        np.testing.assert_allclose(attn.sum(-1), 1, rtol=1e-5)


# ============================================================ gradient checks


def check_grads(module, run, x, input_grad=True, rtol=1e-6, atol=1e-8):
    """run(x) -> output; L = sum(out * R). Every parameter's and x's gradient vs
    central differences (parameter grads pre-filled with NaN: backward overwrites)."""
    out = run(x)
    R = np.random.default_rng(1).standard_normal(out.shape)
    loss = lambda: float(np.sum(run(x) * R))  # noqa: E731
    run(x)
    for p in module.parameters():
        p.grad[...] = np.nan
    gx = module.backward(R)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.data), rtol=rtol, atol=atol,
                                   err_msg=name)
    if input_grad:
        np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=rtol, atol=atol,
                                   err_msg="input")
    return gx


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masking", ["none", "causal", "float", "bool", "causal+float"])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_gradcheck(batch_first, masking, bias):
    fn.seed(3)
    m = MultiheadAttention(6, 2, bias=bias, batch_first=batch_first, dtype="float64")
    rng = np.random.default_rng(4)
    for p in m.parameters():  # non-zero biases, so their gradients matter
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    L = 4
    x = rng.standard_normal((2, L, 6) if batch_first else (L, 2, 6))
    mask = {"float": rng.standard_normal((L, L)), "bool": causal_bool(L).T.copy(),
            "causal+float": rng.standard_normal((L, L))}.get(masking)
    causal = masking.startswith("causal")
    check_grads(m, lambda x: m(x, x, x, attn_mask=mask, is_causal=causal)[0], x)


def test_mha_dropout_semantics_and_gradcheck():
    """Training drops attention weights (kept ones scaled by 1/(1-p), the returned
    weights are the dropped ones, as torch); eval is dropout-free; gradients match
    central differences under a fixed mask."""
    p = 0.4
    fn.seed(23)
    m = MultiheadAttention(4, 2, dropout=p, batch_first=True, dtype="float64")
    x = np.random.default_rng(24).standard_normal((2, 5, 4))
    m.eval()
    y_eval, w_eval = m(x, is_causal=True, need_weights=True, average_attn_weights=False)
    m.train()
    y, w = m(x, is_causal=True, need_weights=True, average_attn_weights=False)
    kept = w != 0
    np.testing.assert_allclose(w, np.where(kept, w_eval / (1 - p), 0), rtol=1e-14)
    assert kept[w_eval > 0].any() and not kept[w_eval > 0].all()
    assert not np.allclose(y, y_eval)

    def run(x):
        fn.seed(25)  # the same mask for every evaluation
        return m(x, is_causal=True)[0]
    check_grads(m, run, x)
    m0 = MultiheadAttention(4, 2, batch_first=True, dtype="float64")
    m0.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m0(x, is_causal=True)[0], y_eval)


def test_mha_backward_accumulates():
    fn.seed(0)
    m = MultiheadAttention(4, 2, dtype="float64")
    x = np.random.default_rng(0).standard_normal((3, 2, 4))
    y, _ = m(x)
    g = np.ones_like(y)
    m.backward(g)
    first = {k: p.grad.copy() for k, p in m.named_parameters()}
    m.backward(g, accumulate=True)
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[k], rtol=1e-14, atol=1e-15)


def test_positional_embedding_and_residual_gradcheck():
    fn.seed(5)
    pe = PositionalEmbedding(6, 3, dtype="float64")
    x = np.random.default_rng(6).standard_normal((2, 4, 3))
    check_grads(pe, pe, x)
    assert np.all(pe.weight.grad[4:] == 0)  # positions past the sequence get no gradient
    res = Residual(fn.LayerNorm(3, dtype="float64"))
    res.module.weight.data[...] = [0.5, -1.0, 2.0]
    check_grads(res, res, x)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_block_gradcheck(causal):
    fn.seed(7)
    blk = TransformerBlock(4, 2, dim_feedforward=6, causal=causal, dtype="float64")
    rng = np.random.default_rng(8)
    for name, p in blk.named_parameters():  # off the default init so every path matters
        p.data[...] += rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((2, 3, 4))
    check_grads(blk, blk, x)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_block_last_position_equals_the_full_block(causal):
    """The LM's last block computes its last position alone: the same output there
    and the same gradients as the whole block with a gradient at that position only."""
    fn.seed(11)
    blk = TransformerBlock(6, 2, dim_feedforward=5, causal=causal, dtype="float64")
    rng = np.random.default_rng(12)
    for p in blk.parameters():
        p.data[...] += rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((3, 4, 6))
    g = rng.standard_normal((3, 6))
    y = blk(x)
    gfull = np.zeros_like(y)
    gfull[:, -1] = g
    gx = blk.backward(gfull)
    grads = [p.grad.copy() for p in blk.parameters()]
    np.testing.assert_allclose(blk._forward_last(x), y[:, -1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blk._backward_last(g, False), gx, rtol=1e-11, atol=1e-12)
    for (name, p), want in zip(blk.named_parameters(), grads):
        np.testing.assert_allclose(p.grad, want, rtol=1e-11, atol=1e-12, err_msg=name)


def test_transformer_lm_gradcheck():
    fn.seed(9)
    lm = TransformerLM(5, 4, 2, 2, 3, dim_feedforward=4, dtype="float64")
    rng = np.random.default_rng(10)
    for p in lm.parameters():
        p.data[...] += rng.standard_normal(p.shape) * 0.1
    ids = rng.integers(0, 5, (2, 3))
    assert lm.backward is not None
    check_grads(lm, lm, ids, input_grad=False)


def test_transformer_lm_per_position_gradcheck_and_causality():
    """per_position=True: logits after every position, the last equal to the
    last-position model's; position t depends on ids <= t only."""
    fn.seed(9)
    lm = TransformerLM(5, 4, 2, 2, 3, dim_feedforward=4, dtype="float64", per_position=True)
    last = TransformerLM(5, 4, 2, 2, 3, dim_feedforward=4, dtype="float64")
    rng = np.random.default_rng(10)
    for p in lm.parameters():
        p.data[...] += rng.standard_normal(p.shape) * 0.1
    last.load_state_dict(lm.state_dict())
    ids = rng.integers(0, 5, (2, 3))
    out = lm(ids)
    assert out.shape == (2, 3, 5) and lm.config()["per_position"]
    np.testing.assert_allclose(out[:, -1], last(ids), rtol=1e-12, atol=1e-13)
    changed = ids.copy()
    changed[:, 1] = (changed[:, 1] + 1) % 5
    np.testing.assert_array_equal(lm(changed)[:, 0], out[:, 0])
    check_grads(lm, lm, ids, input_grad=False)


# ============================================================== torch parity
torch = None
try:
    import torch
except ImportError:  # pragma: no cover - parity tests are skipped
    pass
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
PARITY = {"float32": 0.0, "float64": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _report_parity():
    yield
    if any(PARITY.values()):
        print("\n[attention torch parity] max abs error (outputs, weights, all gradients): "
              + ", ".join(f"{k}: {v:.3g}" for k, v in PARITY.items()))


def _compare(dtype, pairs):
    for what, got, want in pairs:
        want = want.detach().numpy() if hasattr(want, "detach") else want
        err = float(np.max(np.abs(got - want)))
        PARITY[dtype] = max(PARITY[dtype], err)
        scale = max(1.0, float(np.abs(want).max()))
        assert err <= (1e-5 if dtype == "float32" else 1e-12) * scale, (what, err)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masking", ["none", "causal", "bool", "float"])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch(dtype, batch_first, masking, bias):
    torch.set_num_threads(1)
    fn.seed(11)
    E, H, L, B = 16, 4, 9, 3
    m = MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=dtype)
    tdt = getattr(torch, dtype)
    tm = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=tdt)
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})  # unchanged
    rng = np.random.default_rng(12)
    x = rng.standard_normal((B, L, E) if batch_first else (L, B, E)).astype(dtype)
    mask = {"causal": causal_bool(L), "bool": rng.random((L, L)) < 0.3,
            "float": rng.standard_normal((L, L)).astype(dtype)}.get(masking)
    if masking == "bool":
        mask[np.arange(L), np.arange(L)] = False
    y, w = m(x, x, x, attn_mask=mask, is_causal=masking == "causal", need_weights=True)
    R = rng.standard_normal(y.shape).astype(dtype)
    gx = m.backward(R)
    xt = torch.tensor(x, requires_grad=True)
    yt, wt = tm(xt, xt, xt, attn_mask=None if mask is None else torch.tensor(mask),
                is_causal=masking == "causal", need_weights=True)
    yt.backward(torch.tensor(R))
    pairs = [("output", y, yt), ("weights", w, wt), ("input grad", gx, xt.grad)]
    tparams = dict(tm.named_parameters())
    assert [k for k, _ in m.named_parameters()] == list(tparams)
    pairs += [(k, p.grad, tparams[k].grad) for k, p in m.named_parameters()]
    _compare(dtype, pairs)
    # per-head weights too
    _, w_heads = m(x, attn_mask=mask, is_causal=masking == "causal", need_weights=True,
                   average_attn_weights=False)
    _, wt_heads = tm(xt, xt, xt, attn_mask=None if mask is None else torch.tensor(mask),
                     need_weights=True, average_attn_weights=False)
    _compare(dtype, [("per-head weights", w_heads, wt_heads)])


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("with_mask", ["none", "bool", "float", "causal"])
def test_mha_key_padding_mask_matches_torch(dtype, batch_first, kind, with_mask):
    torch.set_num_threads(1)
    fn.seed(13)
    E, H, L, B = 8, 2, 6, 3
    m = MultiheadAttention(E, H, batch_first=batch_first, dtype=dtype)
    tm = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=getattr(torch, dtype))
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(14)
    x = rng.standard_normal((B, L, E) if batch_first else (L, B, E)).astype(dtype)
    pad = np.zeros((B, L), bool)
    pad[0, -2:] = pad[2, 3:] = True  # padded tails; key 0 stays visible to every query
    kpm = pad if kind == "bool" else np.where(pad, -1e4, rng.standard_normal((B, L))).astype(dtype)
    mask = {"bool": rng.random((L, L)) < 0.3, "float": rng.standard_normal((L, L)).astype(dtype),
            "causal": causal_bool(L)}.get(with_mask)
    if with_mask == "bool":
        mask[:, 0] = False
    if mask is not None and mask.dtype != kpm.dtype:  # torch wants the two of one type
        mask = np.where(mask, -np.inf, 0).astype(dtype) if mask.dtype == bool else mask
        kpm = np.where(kpm, -np.inf, 0).astype(dtype) if kpm.dtype == bool else kpm
    causal = with_mask == "causal"
    y, w = m(x, key_padding_mask=kpm, attn_mask=mask, is_causal=causal, need_weights=True)
    R = rng.standard_normal(y.shape).astype(dtype)
    gx = m.backward(R)
    xt = torch.tensor(x, requires_grad=True)
    yt, wt = tm(xt, xt, xt, key_padding_mask=torch.tensor(kpm),
                attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal,
                need_weights=True)
    yt.backward(torch.tensor(R))
    tparams = dict(tm.named_parameters())
    _compare(dtype, [("output", y, yt), ("weights", w, wt), ("input grad", gx, xt.grad)]
             + [(k, p.grad, tparams[k].grad) for k, p in m.named_parameters()])


def test_mha_key_padding_mask_gradcheck_and_ignored_keys():
    fn.seed(15)
    m = MultiheadAttention(4, 2, batch_first=True, dtype="float64")
    rng = np.random.default_rng(16)
    x = rng.standard_normal((2, 5, 4))
    pad = np.zeros((2, 5), bool)
    pad[1, 3:] = True
    check_grads(m, lambda x: m(x, key_padding_mask=pad, is_causal=True)[0], x)
    _, w = m(x, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    assert np.all(w[1][:, :, 3:] == 0) and np.all(w[0] > 0)
    y = m(x, key_padding_mask=pad)[0]  # changing an ignored key changes nothing
    x2 = x.copy()
    x2[1, 4] += 1.0
    np.testing.assert_array_equal(m(x2, key_padding_mask=pad)[0][:, :4], y[:, :4])


@needs_torch
def test_mha_init_like_torch():
    """torch's init: xavier-uniform in_proj_weight, zero biases, out_proj.weight U(+-1/sqrt(E))."""
    fn.seed(0)
    E = 64
    m = MultiheadAttention(E, 4)
    sd = m.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        k: tuple(v.shape) for k, v in torch.nn.MultiheadAttention(E, 4).state_dict().items()}
    assert np.all(sd["in_proj_bias"] == 0) and np.all(sd["out_proj.bias"] == 0)
    bound = np.sqrt(6 / (4 * E))
    w = sd["in_proj_weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound
    ow = sd["out_proj.weight"]
    assert np.abs(ow).max() <= 1 / np.sqrt(E) and np.abs(ow).max() > 0.95 / np.sqrt(E)


def _torch_pre_ln_block(blk, tdt, x, causal):
    """The block by hand in torch: x + MHA(LN1(x)), then + linear2(GELU(linear1(LN2(x))))."""
    P = {k: torch.tensor(v, requires_grad=True) for k, v in blk.state_dict().items()}
    E = x.shape[-1]
    L = x.shape[1]
    ln = lambda t, n: torch.nn.functional.layer_norm(t, (E,), P[n + ".weight"], P[n + ".bias"])  # noqa: E731
    mask = torch.tensor(causal_bool(L)) if causal else None
    h = ln(x, "norm1")
    a, _ = torch.nn.functional.multi_head_attention_forward(
        h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), E, blk.nhead,
        P["self_attn.in_proj_weight"], P["self_attn.in_proj_bias"], None, None, False, 0.0,
        P["self_attn.out_proj.weight"], P["self_attn.out_proj.bias"], need_weights=False,
        attn_mask=mask)
    x1 = x + a.transpose(0, 1)
    f = torch.nn.functional.linear(ln(x1, "norm2"), P["linear1.weight"], P["linear1.bias"])
    f = torch.nn.functional.linear(torch.nn.functional.gelu(f), P["linear2.weight"],
                                   P["linear2.bias"])
    return x1 + f, P


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("causal", [True, False])
def test_transformer_block_matches_torch(dtype, causal):
    torch.set_num_threads(1)
    fn.seed(13)
    d, H, L, B = 16, 4, 7, 3
    blk = TransformerBlock(d, H, causal=causal, dtype=dtype)
    rng = np.random.default_rng(14)
    for p in blk.parameters():
        p.data[...] += (rng.standard_normal(p.shape) * 0.1).astype(dtype)
    x = rng.standard_normal((B, L, d)).astype(dtype)
    y = blk(x)
    R = rng.standard_normal(y.shape).astype(dtype)
    gx = blk.backward(R)
    tdt = getattr(torch, dtype)
    # 1. built by hand from the same weights
    xt = torch.tensor(x, requires_grad=True)
    yt, P = _torch_pre_ln_block(blk, tdt, xt, causal)
    yt.backward(torch.tensor(R))
    pairs = [("output", y, yt), ("input grad", gx, xt.grad)]
    pairs += [(k, p.grad, P[k].grad) for k, p in blk.named_parameters()]
    _compare(dtype, pairs)
    # 2. the state dict loads into torch's pre-LN TransformerEncoderLayer unchanged
    layer = torch.nn.TransformerEncoderLayer(d, H, 4 * d, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True, dtype=tdt)
    layer.load_state_dict({k: torch.tensor(v) for k, v in blk.state_dict().items()})
    layer.eval()
    xt2 = torch.tensor(x, requires_grad=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=tdt) if causal else None
    yt2 = layer(xt2, src_mask=mask, is_causal=causal)
    yt2.backward(torch.tensor(R))
    tparams = dict(layer.named_parameters())
    _compare(dtype, [("encoder layer output", y, yt2), ("encoder layer input grad", gx, xt2.grad)]
             + [(k, p.grad, tparams[k].grad) for k, p in blk.named_parameters()])


# =================================================================== threads
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_bitwise_independent_of_thread_count(dtype, causal, batch_first):
    """Large enough to split the (batch, head) pairs over threads."""
    fn.seed(15)
    m = MultiheadAttention(64, 4, batch_first=batch_first, dtype=dtype)
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3, 80, 64) if batch_first else (80, 3, 64)).astype(dtype)
    R = rng.standard_normal(x.shape).astype(dtype)

    def run():
        y, w = m(x, is_causal=causal, need_weights=True)
        gx = m.backward(R)
        return [y, w, gx] + [p.grad.copy() for p in m.parameters()]
    assert_same_at_1_and_2_threads(run)


def test_transformer_block_bitwise_independent_of_thread_count():
    fn.seed(17)
    blk = TransformerBlock(32, 4)
    x = np.random.default_rng(18).standard_normal((4, 64, 32)).astype(np.float32)

    def run():
        y = blk(x)
        gx = blk.backward(np.cos(y))
        return [y, gx] + [p.grad.copy() for p in blk.parameters()]
    assert_same_at_1_and_2_threads(run)


def test_transformer_lm_step_bitwise_independent_of_thread_count():
    x = np.random.default_rng(19).integers(0, 20, (8, 64))
    y = np.random.default_rng(20).integers(0, 20, 8)

    def run():
        fn.seed(21)
        lm = TransformerLM(20, 32, 4, 2, 64, dim_feedforward=48)
        tr = fn.Trainer(lm, fn.CrossEntropyLoss(), fn.Adam(lm.parameters(), lr=1e-3))
        losses = [tr.step(x, y) for _ in range(2)]
        return [np.array(losses)] + [p.data.copy() for p in lm.parameters()]
    assert_same_at_1_and_2_threads(run)


# ================================================================ semantics
def test_is_causal_alone_equals_the_causal_mask_and_combines_with_a_mask():
    fn.seed(19)
    m = MultiheadAttention(8, 2, dtype="float64")
    rng = np.random.default_rng(20)
    x = rng.standard_normal((5, 2, 8))
    y1, w1 = m(x, is_causal=True, need_weights=True)
    y2, w2 = m(x, x, x, attn_mask=causal_bool(5), need_weights=True)
    y3, _ = m(x, attn_mask=np.where(causal_bool(5), -np.inf, 0.0))
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(y1, y3, rtol=1e-13, atol=1e-14)
    assert w1.shape == (2, 5, 5) and np.all(w1[:, causal_bool(5)] == 0)
    fm = rng.standard_normal((5, 5))
    y4, _ = m(x, attn_mask=fm, is_causal=True)
    y5, _ = m(x, attn_mask=np.where(causal_bool(5), -np.inf, fm))
    np.testing.assert_allclose(y4, y5, rtol=1e-13, atol=1e-14)
    y, w = m(x)
    assert w is None and y.shape == x.shape


def test_state_dict_round_trip_and_float32_default():
    fn.seed(21)
    a, b = MultiheadAttention(8, 2), MultiheadAttention(8, 2)
    assert a.in_proj_weight.dtype == np.float32
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(22).standard_normal((3, 2, 8)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    assert [k for k, _ in TransformerBlock(8, 2).named_parameters()][:4] == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias"]


# =================================================================== errors
def test_constructor_errors():
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="embed_dim"):
        MultiheadAttention(0, 1)
    with pytest.raises(ValueError, match="num_heads"):
        MultiheadAttention(8, 0)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        MultiheadAttention(8, 2, dropout=1.5)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        MultiheadAttention(8, 2, dropout=True)
    with pytest.raises(ValueError, match="dropout"):
        TransformerBlock(8, 2, dropout=0.1)
    with pytest.raises(ValueError, match="nhead"):
        TransformerBlock(8, 3)
    with pytest.raises(ValueError, match="d_model"):
        TransformerLM(10, 8, 3, 1, 4)


def test_forward_errors_name_the_argument():
    m = MultiheadAttention(8, 2)
    x = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(ValueError, match="query must be 3-D"):
        m(np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match="embed_dim=8"):
        m(np.zeros((4, 2, 6), np.float32))
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        m(x, attn_mask=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        m(x, attn_mask=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(TypeError, match="attn_mask must be a bool or float"):
        m(x, attn_mask=np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="attn_mask contains NaN"):
        m(x, attn_mask=np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="query contains NaN"):
        m(np.full((4, 2, 8), np.nan))
    with pytest.raises(ValueError, match="key must be the query"):
        m(x, np.ones_like(x), x)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(batch, source_len\)"):
        m(x, key_padding_mask=np.zeros((4, 2), bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool or float"):
        m(x, key_padding_mask=np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="key_padding_mask contains NaN"):
        m(x, key_padding_mask=np.full((2, 4), np.nan))
    with pytest.raises(TypeError, match="is_causal"):
        m(x, is_causal="yes")
    with pytest.raises(RuntimeError, match="before forward"):
        MultiheadAttention(8, 2).backward(x)
    m(x)
    with pytest.raises(ValueError, match="grad must have the output's shape"):
        m.backward(np.zeros((4, 2, 7), np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, 8\)"):
        TransformerBlock(8, 2)(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="max_len"):
        PositionalEmbedding(3, 8)(np.zeros((1, 4, 8), np.float32))
    lm = TransformerLM(10, 8, 2, 1, 4)
    with pytest.raises(ValueError, match="context=4"):
        lm(np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"x must be in \[0, 10\)"):
        lm(np.full((2, 3), 10))
    with pytest.raises(TypeError, match="Residual"):
        Residual(lambda x: x)


# ======================================================================= LM
def test_transformer_lm_learns_a_toy_sequence():
    """The next token after 0 or 3 depends on what came before them: attention has
    to look back, not only at the last token."""
    fn.seed(0)
    pattern = np.array([0, 1, 2, 0, 3, 4, 5, 3, 6, 7])
    seq = np.tile(pattern, 40)
    ctx = 6
    X = np.stack([seq[i:i + ctx] for i in range(len(seq) - ctx)])
    y = seq[ctx:]
    model = TransformerLM(8, 16, 2, 2, ctx)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
    hist = trainer.fit(X, y, epochs=12, batch_size=32, seed=0, progress=False)
    assert hist.history["loss"][-1] < 0.05 < hist.history["loss"][0]
    assert trainer.evaluate(X, y)["accuracy"] == 1.0
    # shorter windows than the context work too (positions 0..L-1)
    assert model.predict(X[:, -3:]).shape == (len(X), 8)
