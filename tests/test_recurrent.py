"""GRU and LSTM: the compiled kernels against their NumPy twins, float64
central-difference gradients, parity with torch.nn.GRU / LSTM (forward and
backward from the same weights), thread-count independence, input errors, and
recurrent language models trained with fn.Trainer.fit.

Run with ``pytest -s`` to see the max abs error against torch per dtype.
Observed here (torch 2.13 CPU): float32 1.4e-06, float64 2.5e-15 (values up to ~3).
"""
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fn
from fastnn import _reference as ref
from fastnn._kernels import _ops
from fastnn.apps.rnnlm import GRULM, LSTMLM
from fastnn.nn.recurrent import GRU, LSTM
from numeric import assert_backward_accumulates, numeric_grad
from threads import assert_same_at_1_and_2_threads

CELLS = {"gru": GRU, "lstm": LSTM}
GATES = {"gru": 3, "lstm": 4}


# ================================================================ kernels vs twins
def _kernel_case(rng, cell, dtype, T, B, I, H, bias, input_grad, accumulate):
    G = GATES[cell]
    a = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, w_ih, w_hh = a(T, B, I), a(G * H, I) * 0.5, a(G * H, H) * 0.5
    b_ih, b_hh = (a(G * H), a(G * H)) if bias else (None, None)
    h0, c0, gy, dhn, dcn = a(B, H), a(B, H), a(T, B, H), a(B, H), a(B, H)
    grads0 = [a(G * H, I), a(G * H, H), a(G * H), a(G * H)]
    results = []
    wp = np.empty(_ops.rnn_pack_size(G, H), dtype)
    for mod in (_ops, ref):
        hs = np.zeros((T + 1, B, H), dtype)
        hs[0] = h0
        g = np.empty((T, B, G * H), dtype)
        gx = np.empty_like(x) if input_grad else None
        gw_ih, gw_hh, gb_ih, gb_hh = (p.copy() for p in grads0)
        if not bias:
            gb_ih = gb_hh = None
        dh = dhn.copy()
        if cell == "gru":
            gh = np.empty((T, B, G * H), dtype)
            mod.gru_forward(x, w_ih, w_hh, b_ih, b_hh, hs, g, gh, wp)
            mod.gru_backward(x, w_ih, w_hh, hs, g, gh, gy, dh, np.empty_like(g), np.empty_like(g),
                             gx, gw_ih, gw_hh, gb_ih, gb_hh, wp, accumulate)
            results.append([hs, g, gh, dh, gx, gw_ih, gw_hh, gb_ih, gb_hh])
        else:
            cs = np.zeros((T + 1, B, H), dtype)
            cs[0] = c0
            dc = dcn.copy()
            mod.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, hs, cs, g, np.empty((B, G * H), dtype), wp)
            mod.lstm_backward(x, w_ih, w_hh, hs, cs, g, gy, dh, dc, np.empty_like(g), gx, gw_ih,
                              gw_hh, gb_ih, gb_hh, wp, accumulate)
            results.append([hs, cs, g, dh, dc, gx, gw_ih, gw_hh, gb_ih, gb_hh])
    return results


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(["gru", "lstm"]), dtype=st.sampled_from([np.float32, np.float64]),
       T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 6), H=st.integers(1, 7),
       bias=st.booleans(), input_grad=st.booleans(), accumulate=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_kernels_match_numpy_twins(cell, dtype, T, B, I, H, bias, input_grad, accumulate, seed):
    got, want = _kernel_case(np.random.default_rng(seed), cell, dtype, T, B, I, H, bias,
                             input_grad, accumulate)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for k, (a, b) in enumerate(zip(got, want)):
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()),
                                   err_msg=f"{cell} output #{k}")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("mod", [_ops, ref], ids=["compiled", "twin"])
def test_kernels_take_a_precomputed_input_projection(cell, mod):
    """x None: g already holds x W_ih^T + b_ih, and backward leaves the input side alone."""
    rng = np.random.default_rng(3)
    G, T, B, I, H = GATES[cell], 3, 5, 4, 21
    a = lambda *s: rng.standard_normal(s)  # noqa: E731
    x, w_ih, w_hh, b_ih, b_hh, gy = a(T, B, I), a(G * H, I), a(G * H, H), a(G * H), a(G * H), \
        a(T, B, H)
    wp = np.empty(_ops.rnn_pack_size(G, H))
    runs = []
    for given_x in (True, False):
        hs, cs = np.zeros((T + 1, B, H)), np.zeros((T + 1, B, H))
        g, gh, dg, dgh = (np.zeros((T, B, G * H)) for _ in range(4))
        if not given_x:
            g[...] = x @ w_ih.T + b_ih
        gw_ih, gw_hh, gb_ih, gb_hh = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(G * H), \
            np.zeros(G * H)
        dh, dc = np.zeros((B, H)), np.zeros((B, H))
        xx = x if given_x else None
        if cell == "gru":
            mod.gru_forward(xx, w_ih, w_hh, b_ih, b_hh, hs, g, gh, wp)
            mod.gru_backward(xx, w_ih, w_hh, hs, g, gh, gy, dh, dg, dgh, None, gw_ih, gw_hh, gb_ih,
                             gb_hh, wp)
        else:
            mod.lstm_forward(xx, w_ih, w_hh, b_ih, b_hh, hs, cs, g, gh[0], wp)
            mod.lstm_backward(xx, w_ih, w_hh, hs, cs, g, gy, dh, dc, dg, None, gw_ih, gw_hh, gb_ih,
                              gb_hh, wp)
        runs.append([hs, dg, dh, gw_hh, gb_hh, gw_ih, gb_ih])
    for k, (u, v) in enumerate(zip(runs[0][:5], runs[1][:5])):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12, err_msg=f"#{k}")
    assert not runs[1][5].any() and not runs[1][6].any()  # the caller's part


def test_kernels_reject_mismatched_shapes():
    f = lambda *s: np.ones(s)  # noqa: E731
    with pytest.raises(ValueError, match="hs"):
        _ops.gru_forward(f(2, 3, 4), f(15, 4), f(15, 5), None, None, f(2, 3, 5), f(2, 3, 15),
                         f(2, 3, 15), f(_ops.rnn_pack_size(3, 5)))
    with pytest.raises(ValueError, match="weight"):
        _ops.lstm_forward(f(2, 3, 4), f(15, 4), f(15, 5), None, None, f(3, 3, 5), f(3, 3, 5),
                          f(2, 3, 20), f(3, 20), f(_ops.rnn_pack_size(4, 5)))


# ============================================================== module gradients
def _state_shape(m, B):
    return (m.num_layers, B, m.hidden_size)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("num_layers,bias,batch_first", [(1, True, False), (2, True, True),
                                                          (2, False, False)])
def test_gradcheck_float64(cell, num_layers, bias, batch_first):
    """L = sum(out R) + sum(h_n Rh) (+ sum(c_n Rc)): weights, biases, x, h0 (c0)."""
    rng = np.random.default_rng(1)
    fn.seed(0)
    T, B, I, H = 3, 2, 3, 4
    m = CELLS[cell](I, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                    dtype="float64")
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0, c0 = rng.standard_normal(_state_shape(m, B)), rng.standard_normal(_state_shape(m, B))
    hx = h0 if cell == "gru" else (h0, c0)
    out, state = m(x, hx)
    R, Rh, Rc = (rng.standard_normal(s) for s in (out.shape, h0.shape, c0.shape))

    def loss():
        o, s = m(x, hx)
        if cell == "gru":
            return float(np.sum(o * R) + np.sum(s * Rh))
        return float(np.sum(o * R) + np.sum(s[0] * Rh) + np.sum(s[1] * Rc))

    m(x, hx)
    if cell == "gru":
        gx, gh0 = m.backward(R, Rh)
    else:
        gx, (gh0, gc0) = m.backward(R, Rh, Rc)
        np.testing.assert_allclose(gc0, numeric_grad(loss, c0), rtol=1e-6, atol=1e-8, err_msg="c0")
    np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg="x")
    np.testing.assert_allclose(gh0, numeric_grad(loss, h0), rtol=1e-6, atol=1e-8, err_msg="h0")
    grads = {name: p.grad.copy() for name, p in m.named_parameters()}
    for name, p in m.named_parameters():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, p.data), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_gradcheck_without_h0_and_state_grads():
    """No h0, no gradient on h_n: the output gradient alone, input gradient checked."""
    rng = np.random.default_rng(2)
    m = GRU(2, 3, dtype="float64")
    x = rng.standard_normal((4, 2, 2))
    R = rng.standard_normal((4, 2, 3))
    m(x)
    gx, gh0 = m.backward(R)
    np.testing.assert_allclose(gx, numeric_grad(lambda: float(np.sum(m(x)[0] * R)), x),
                               rtol=1e-6, atol=1e-8)
    assert gh0.shape == (1, 2, 3)


def test_accumulate_adds_parameter_grads():
    rng = np.random.default_rng(3)
    m = LSTM(3, 4, num_layers=2, dtype="float64")
    x = rng.standard_normal((3, 2, 3))
    out, _ = m(x)
    assert_backward_accumulates(m, rng.standard_normal(out.shape), rtol=1e-12, atol=1e-14)


# ==================================================================== torch parity
MAX_ERR = {"float32": 0.0, "float64": 0.0}


@pytest.fixture(scope="module")
def torch_mod():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(old)
    print("\n[rnn torch parity] max abs error (outputs, states, all gradients): "
          + ", ".join(f"{k}: {v:.3g}" for k, v in MAX_ERR.items()))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [False, True])
def test_torch_parity(torch_mod, cell, dtype, batch_first, num_layers, bias, with_h0):
    torch = torch_mod
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    rng = np.random.default_rng(zlib.crc32(repr((cell, dtype, batch_first, num_layers, bias,
                                                  with_h0)).encode()))
    T, B, I, H = 5, 3, 4, 6
    m = CELLS[cell](I, H, num_layers=num_layers, bias=bias, batch_first=batch_first, dtype=dtype)
    tm = getattr(torch.nn, cell.upper())(I, H, num_layers=num_layers, bias=bias,
                                         batch_first=batch_first).to(tdt)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    a = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x = a(B, T, I) if batch_first else a(T, B, I)
    h0, c0 = a(num_layers, B, H), a(num_layers, B, H)
    tx, th, tc = (torch.from_numpy(v.copy()).requires_grad_() for v in (x, h0, c0))
    if cell == "gru":
        out, hn = m(x, h0 if with_h0 else None)
        tout, thn = tm(tx, th if with_h0 else None)
        states, tstates = [hn], [thn]
    else:
        out, (hn, cn) = m(x, (h0, c0) if with_h0 else None)
        tout, (thn, tcn) = tm(tx, (th, tc) if with_h0 else None)
        states, tstates = [hn, cn], [thn, tcn]
    gy = a(*out.shape)
    gs = [a(num_layers, B, H) for _ in states]
    tloss = (tout * torch.from_numpy(gy)).sum()
    for s, g in zip(tstates, gs):
        tloss = tloss + (s * torch.from_numpy(g)).sum()
    tloss.backward()
    if cell == "gru":
        gx, gh0 = m.backward(gy, gs[0])
        gstates = [gh0]
    else:
        gx, (gh0, gc0) = m.backward(gy, gs[0], gs[1])
        gstates = [gh0, gc0]
    pairs = [("output", out, tout), ("x.grad", gx, tx.grad)]
    pairs += [(f"state{k}", s, t) for k, (s, t) in enumerate(zip(states, tstates))]
    if with_h0:
        pairs += [("h0.grad", gstates[0], th.grad)]
        if cell == "lstm":
            pairs += [("c0.grad", gstates[1], tc.grad)]
    tparams = dict(tm.named_parameters())
    pairs += [(f"{name}.grad", p.grad, tparams[name].grad) for name, p in m.named_parameters()]
    tol = 1e-5 if dtype == "float32" else 1e-12
    for what, got, want in pairs:
        want = want.detach().double().numpy()
        err = float(np.abs(np.asarray(got, np.float64) - want).max())
        MAX_ERR[dtype] = max(MAX_ERR[dtype], err)
        assert err <= tol * max(1.0, float(np.abs(want).max())), (what, err)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_state_dict_roundtrip_with_torch(torch_mod, cell):
    torch = torch_mod
    tm = getattr(torch.nn, cell.upper())(5, 7, num_layers=2)
    m = CELLS[cell](5, 7, num_layers=2)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert {k: v.shape for k, v in m.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    m.load_state_dict(tm.state_dict())  # torch tensors load directly
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy())
    tm2 = getattr(torch.nn, cell.upper())(5, 7, num_layers=2)
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_init_is_torch_uniform(cell):
    fn.seed(0)
    m = CELLS[cell](10, 16, num_layers=2)
    bound = 1 / np.sqrt(16)
    for name, p in m.named_parameters():
        assert p.data.dtype == np.float32
        assert np.abs(p.data).max() <= bound, name
        assert np.abs(p.data).max() > 0.8 * bound, name
    assert m.weight_ih_l0.shape == (GATES[cell] * 16, 10)
    assert m.weight_ih_l1.shape == (GATES[cell] * 16, 16)
    assert m.weight_hh_l1.shape == (GATES[cell] * 16, 16)
    assert m.bias_hh_l1.shape == (GATES[cell] * 16,)
    assert "bias_ih_l0" not in dict(CELLS[cell](3, 4, bias=False).named_parameters())


# ============================================================ threads, workspaces
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H", [64, 37])
def test_one_and_two_threads_bitwise_equal(cell, dtype, H):
    """Large enough that the time loop and the GEMMs take their parallel paths; H = 37
    leaves a partial panel of units."""
    rng = np.random.default_rng(5)
    T, B, I = 4, 96, 48
    m = CELLS[cell](I, H, num_layers=2, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    gy = rng.standard_normal((T, B, H)).astype(dtype)

    def run():
        out, state = m(x)
        gx, gstate = m.backward(gy)
        return [out, gx, *(p.grad.copy() for p in m.parameters())]
    assert_same_at_1_and_2_threads(run)


def test_warm_calls_reuse_workspaces():
    rng = np.random.default_rng(6)
    m = LSTM(3, 4, num_layers=2, batch_first=True)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    first = m._forward(x)
    m._backward(np.ones_like(first), False, True)
    n_buffers = len(m._workspace)
    assert m._forward(x) is first
    m._backward(np.ones_like(first), False, True)
    assert len(m._workspace) == n_buffers


def test_predict_batches_along_the_batch_axis():
    rng = np.random.default_rng(7)
    for batch_first in (False, True):
        m = GRU(3, 4, batch_first=batch_first)
        x = rng.standard_normal((5, 7, 3)).astype(np.float32)
        np.testing.assert_allclose(m.predict(x, batch_size=2), m(x)[0], rtol=1e-6, atol=1e-7)


def test_float64_via_sequential_and_repr():
    m = fn.Sequential(GRU(3, 4, num_layers=2), dtype="float64")[0]
    out, h = m(np.zeros((2, 1, 3)))
    assert out.dtype == np.float64 and h.shape == (2, 1, 4)
    assert repr(LSTM(3, 4, num_layers=2, batch_first=True)) == \
        "LSTM(3, 4, num_layers=2, batch_first=True)"


# ========================================================================== errors
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bad_inputs_name_the_argument(cell):
    m = CELLS[cell](4, 5, num_layers=2)
    x = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"x must be 3-D"):
        m(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"x must have input_size=4"):
        m(np.zeros((3, 2, 5), np.float32))
    with pytest.raises(TypeError, match=r"x must hold real numbers"):
        m(np.full((3, 2, 4), "a"))
    with pytest.raises(ValueError, match=r"x contains NaN"):
        m(np.full((3, 2, 4), np.nan))
    with pytest.raises(ValueError, match=r"x is empty"):
        m(np.zeros((0, 2, 4), np.float32))
    bad_h = np.zeros((1, 2, 5), np.float32)  # one layer short
    good_h = np.zeros((2, 2, 5), np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape .*\(2, 2, 5\)"):
        m(x, bad_h if cell == "gru" else (bad_h, good_h))
    with pytest.raises(ValueError, match=r"h0 must have shape"):
        m(x, np.zeros((2, 3, 5), np.float32) if cell == "gru" else
          (np.zeros((2, 3, 5), np.float32), None))
    if cell == "lstm":
        with pytest.raises(ValueError, match=r"c0 must have shape"):
            m(x, (good_h, bad_h))
        with pytest.raises(ValueError, match=r"hx must be a pair"):
            m(x, good_h)
    with pytest.raises(TypeError, match=r"h0 must hold real numbers"):
        m(x, np.full((2, 2, 5), "a") if cell == "gru" else (np.full((2, 2, 5), "a"), None))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bad_gradients_and_order(cell):
    m = CELLS[cell](4, 5)
    with pytest.raises(RuntimeError, match="before forward"):
        m.backward(np.zeros((3, 2, 5)))
    m(np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="grad must have the output's shape"):
        m.backward(np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match="grad_h_n must have shape"):
        m.backward(np.zeros((3, 2, 5)), np.zeros((2, 2, 5)))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bad_constructor_arguments(cell):
    cls = CELLS[cell]
    with pytest.raises(ValueError, match="input_size"):
        cls(0, 4)
    with pytest.raises(ValueError, match="hidden_size"):
        cls(3, -1)
    with pytest.raises(ValueError, match="num_layers"):
        cls(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="dropout .*not implemented"):
        cls(3, 4, num_layers=2, dropout=0.5)
    with pytest.raises(ValueError, match="bidirectional"):
        cls(3, 4, bidirectional=True)
    with pytest.raises(TypeError, match="dtype"):
        cls(3, 4, dtype="int32")


# ======================================================================= training
def _toy_sequence(n=600, context=6):
    """A period-7 sequence in which the token after 0 depends on the context:
    0 1 2 0 3 4 5 | 0 1 2 ...: ids (n, context) -> next token."""
    pattern = np.array([0, 1, 2, 0, 3, 4, 5])
    seq = np.tile(pattern, n // len(pattern) + context + 2)
    X = np.stack([seq[i:i + context] for i in range(n)])
    y = seq[context:context + n]
    return X.astype(np.int64), y.astype(np.int64)


@pytest.mark.parametrize("cls", [GRULM, LSTMLM])
def test_recurrent_lm_learns_a_toy_sequence(cls):
    fn.seed(0)
    X, y = _toy_sequence()
    model = cls(vocab=6, dim=8, hidden=24)
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=2e-2))
    hist = trainer.fit(X, y, epochs=12, batch_size=32, seed=0, progress=False, verbose=0)
    assert hist.history["loss"][-1] < 0.1 * hist.history["loss"][0]
    assert trainer.evaluate(X, y)["accuracy"] == 1.0
    assert model.predict(X[:5]).shape == (5, 6)


@pytest.mark.parametrize("cls", [GRULM, LSTMLM])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("per_position", [False, True])
@pytest.mark.parametrize("vocab", [9, 30])
def test_recurrent_lm_matches_its_layers_composed(cls, num_layers, per_position, vocab):
    """The LM gives the outputs and gradients of Embedding -> RNN -> last step (or
    every step) -> Linear run layer by layer (float64), accumulate included: with
    its per-token projection table (vocab 9 < 24 positions) and without (30)."""
    fn.seed(2)
    rng = np.random.default_rng(2)
    m = cls(vocab=vocab, dim=5, hidden=7, num_layers=num_layers, dtype="float64",
            per_position=per_position)
    x = rng.integers(0, vocab, (4, 6))
    g = rng.standard_normal((4, 6, vocab) if per_position else (4, vocab))
    grads = []
    for fused in (True, False):
        m.zero_grad()
        for accumulate in (False, True):
            if fused:
                y = m._forward(x)
                m._backward(g, accumulate, False)
            else:
                out = m.rnn._forward(m.embedding._forward(x))
                if per_position:
                    y = m.head._forward(out)
                    gout = m.head._backward(g, accumulate, True)
                else:
                    y = m.head._forward(np.ascontiguousarray(out[:, -1]))
                    gout = np.zeros_like(out)
                    gout[:, -1] = m.head._backward(g, accumulate, True)
                m.embedding._backward(m.rnn._backward(gout, accumulate, True), accumulate, False)
        grads.append([y.copy()] + [p.grad.copy() for p in m.parameters()])
    for k, (u, v) in enumerate(zip(*grads)):
        np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-13, err_msg=f"#{k}")


@pytest.mark.parametrize("cls", [GRULM, LSTMLM])
def test_recurrent_lm_one_and_two_threads_bitwise_equal(cls):
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 50, (24, 12)), rng.integers(0, 50, 24)

    def run():
        fn.seed(3)
        m = cls(vocab=50, dim=16, hidden=40)
        tr = fn.Trainer(m, fn.CrossEntropyLoss(), fn.Adam(m.parameters(), lr=1e-2))
        for _ in range(3):
            tr.step(x, y)
        return [p.data.copy() for p in m.parameters()]
    assert_same_at_1_and_2_threads(run)


class TinyGRULM(fn.Module):
    """What a user writes: children as attributes, forward and backward by hand."""

    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.emb = fn.Embedding(vocab, dim)
        self.gru = GRU(dim, hidden, batch_first=True)
        self.fc = fn.Linear(hidden, vocab)

    def _check_input(self, x):  # int ids, not floats
        return self.emb._check_input(x)

    def forward(self, x):
        out, h_n = self.gru(self.emb(x))
        return self.fc(h_n[-1])  # the last layer's final state

    def backward(self, grad):
        g_h = self.fc.backward(grad)
        gx, _ = self.gru.backward(None, g_h[None])  # no loss on the output sequence
        self.emb.backward(gx)


def test_user_defined_module_with_a_gru_trains():
    fn.seed(1)
    X, y = _toy_sequence(400)
    model = TinyGRULM(6, 8, 24)
    assert [n for n, _ in model.named_parameters()][:3] == \
        ["emb.weight", "gru.weight_ih_l0", "gru.weight_hh_l0"]
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=2e-2))
    hist = trainer.fit(X, y, epochs=12, batch_size=32, seed=0, progress=False, verbose=0)
    assert hist.history["loss"][-1] < 0.1 * hist.history["loss"][0]
    assert trainer.evaluate(X, y)["accuracy"] == 1.0


def test_recurrent_lm_saves_and_loads(tmp_path):
    fn.seed(2)
    model = LSTMLM(vocab=6, dim=4, hidden=8, num_layers=2)
    X, _ = _toy_sequence(10)
    path = tmp_path / "lm.npz"
    fn.save(path, model)
    other = LSTMLM(vocab=6, dim=4, hidden=8, num_layers=2)
    fn.load(path, other)
    np.testing.assert_array_equal(model.predict(X), other.predict(X))


def test_recurrent_lm_rejects_bad_ids():
    model = GRULM(vocab=6, dim=4, hidden=8)
    with pytest.raises(ValueError, match=r"x must be in \[0, 6\)"):
        model(np.array([[0, 6]]))
    with pytest.raises(TypeError, match="x must be integers"):
        model(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"\(batch, context\)"):
        model(np.array([0, 1]))


def test_checkpoint_rebuilds_recurrent_models_from_config(tmp_path):
    """GRU/LSTM and the LMs describe themselves (config()), so fn.load rebuilds them."""
    fn.seed(3)
    lm = GRULM(vocab=6, dim=4, hidden=8, num_layers=2, dtype="float64")
    X, _ = _toy_sequence(10)
    fn.save(tmp_path / "lm.npz", lm)
    rebuilt = fn.load(tmp_path / "lm.npz")
    assert type(rebuilt) is GRULM and rebuilt.dtype == np.float64
    np.testing.assert_array_equal(rebuilt.predict(X), lm.predict(X))
    lstm = LSTM(3, 4, num_layers=2, bias=False, batch_first=True)
    fn.save(tmp_path / "lstm.npz", lstm)
    again = fn.load(tmp_path / "lstm.npz")
    assert again.config() == lstm.config()
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(again(x)[0], lstm(x)[0])
