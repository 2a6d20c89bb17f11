"""Plain-NumPy twins of every compiled kernel.

They are the oracle the tests compare the kernels against, and the "pure
NumPy" side of the benchmarks, so they are written as a careful NumPy user
would write them: vectorized, in place where that is natural, and with the
same numerics as the kernels (stable sigmoid and softplus, log-sum-exp, the
BCE clamp, float64 statistics for LayerNorm). Signatures mirror
``fastnn._kernels._ops``: outputs are passed in and written.
"""
import math

import numpy as np
from scipy.special import erf

# The kernels' codes (csrc/fnn.h, csrc/fnn_seq_decl.h), written out rather than
# imported from _ops: a twin must not depend on the module it checks, and the
# benchmark's NumPy worker loads this file by path without importing fastnn.
# tests/test_kernels.py checks them against the values _ops reads from the headers.
ACT_NONE, ACT_RELU, ACT_LEAKY, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_GELU_TANH = range(7)
LOSS_MSE, LOSS_CE_LABELS, LOSS_CE_PROBS, LOSS_BCE, LOSS_BCE_LOGITS = range(5)
BAG_SUM, BAG_MEAN, BAG_MAX = range(3)
_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


# ------------------------------------------------------------------ helpers
def sigmoid(z):
    """exp never overflows: exp(-|z|) <= 1."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def act(code, slope, x):
    if code == ACT_RELU:
        return np.maximum(x, 0)
    if code == ACT_LEAKY:
        return np.where(x > 0, x, x * x.dtype.type(slope))
    if code == ACT_SIGMOID:
        return sigmoid(x)
    if code == ACT_TANH:
        return np.tanh(x)
    if code == ACT_GELU:
        return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)
    if code == ACT_GELU_TANH:
        return (0.5 * x * (1.0 + np.tanh(_GELU_K * (x + _GELU_C * x ** 3)))).astype(x.dtype, copy=False)
    return x.copy()


def dact(code, slope, x, y, gy):
    """gy * act'(.), from the input x (GELU) or the output y (the others)."""
    if code == ACT_RELU:
        return np.where(y > 0, gy, 0).astype(gy.dtype, copy=False)
    if code == ACT_LEAKY:
        return np.where(y > 0, gy, gy * gy.dtype.type(slope))
    if code == ACT_SIGMOID:
        return gy * y * (1 - y)
    if code == ACT_TANH:
        return gy * (1 - y * y)
    if code == ACT_GELU:
        cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return (gy * (cdf + x * pdf)).astype(gy.dtype, copy=False)
    if code == ACT_GELU_TANH:
        t = np.tanh(_GELU_K * (x + _GELU_C * x ** 3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_K * (1 + 3 * _GELU_C * x * x)
        return (gy * d).astype(gy.dtype, copy=False)
    return gy.copy()


# --------------------------------------------------------------- kernels
def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
    c[...] = alpha * prod + (beta * c if beta else 0)


def gemm_split(a, b, c, trans_a, trans_b, dim, parts, threads=1, beta=0.0):
    """The product cut into blocks is the same product (the compiled one also
    gives the same bits as one call wherever fastnn uses a cut)."""
    gemm(a, b, c, trans_a, trans_b, 1.0, beta)


def linear_forward(x, w, b, code, slope, z, y):
    np.matmul(x, w.T, out=y)
    if b is not None:
        y += b
    if code != ACT_NONE:
        if z is not None:
            z[...] = y
        y[...] = act(code, slope, y)


def linear_backward(x, w, code, slope, z, y, gy, gz, gx, gw, gb, accumulate=False):
    gz[...] = dact(code, slope, z, y, gy)
    if accumulate:
        gw += gz.T @ x
        if gb is not None:
            gb += gz.sum(axis=0)
    else:
        np.matmul(gz.T, x, out=gw)
        if gb is not None:
            gz.sum(axis=0, out=gb)
    if gx is not None:
        np.matmul(gz, w, out=gx)


def act_forward(code, slope, x, y):
    y[...] = act(code, slope, x)


def act_backward(code, slope, x, y, gy, gx):
    gx[...] = dact(code, slope, x, y, gy)


def softmax_forward(x, y):
    np.subtract(x, x.max(axis=1, keepdims=True), out=y)
    np.exp(y, out=y)
    y /= y.sum(axis=1, keepdims=True)


def softmax_backward(y, gy, gx):
    gx[...] = y * (gy - (gy * y).sum(axis=1, keepdims=True))


def _row_weights(weight, n, k):
    """Per-element weights from one weight per row of k elements (1 if None)."""
    return 1.0 if weight is None else np.repeat(weight, k)[:n]


def mse(y, t, grad, weight=None, k=1):
    d = y - t
    w = _row_weights(weight, d.size, k)
    if grad is not None:
        np.multiply(d * w, 2.0 / d.size, out=grad)
    d64 = d.astype(np.float64)
    return float((w * d64 * d64).sum() / d.size)


def bce(p, t, grad, weight=None, k=1):
    w = _row_weights(weight, p.size, k)
    lp = np.maximum(np.log(p), -100)
    l1p = np.maximum(np.log1p(-p), -100)
    if grad is not None:
        grad[...] = w * (p - t) / np.maximum((1 - p) * p, 1e-12) / p.size
    return float((-(t * lp + (1 - t) * l1p) * w).astype(np.float64).mean())


def bce_logits(z, t, grad, weight=None, k=1):
    w = _row_weights(weight, z.size, k)
    if grad is not None:
        np.subtract(sigmoid(z), t, out=grad)
        grad *= w
        grad /= z.size
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float((loss * w).astype(np.float64).mean())


def pointwise_loss(kind, y, t, grad, weight=None, k=1):
    losses = {LOSS_MSE: mse, LOSS_BCE: bce, LOSS_BCE_LOGITS: bce_logits}
    if kind not in losses:
        raise ValueError("pointwise_loss: kind must be LOSS_MSE, LOSS_BCE or LOSS_BCE_LOGITS")
    return losses[kind](y, t, grad, weight, k)


def _softmax_ce(z, q, grad, weight):
    """Mean of w (lse(z) - sum(q z)) over rows; grad = w (softmax(z) - q) / n."""
    n = z.shape[0]
    w = np.ones(n) if weight is None else weight
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    if grad is not None:
        np.divide(e, s, out=grad)
        grad -= q
        grad *= (w / n).astype(z.dtype)[:, None]
    lse = np.log(s[:, 0].astype(np.float64)) + z.max(axis=1)
    return float((w * (lse - (q.astype(np.float64) * z).sum(axis=1))).mean())


def cross_entropy_labels(z, labels, smoothing, grad, weight=None):
    n, C = z.shape
    q = np.full((n, C), smoothing / C, dtype=z.dtype)
    q[np.arange(n), labels] += 1 - smoothing
    return _softmax_ce(z, q, grad, weight)


def cross_entropy_probs(z, probs, smoothing, grad, weight=None):
    q = probs * (1 - smoothing) + smoothing / z.shape[1]
    return _softmax_ce(z, q.astype(z.dtype, copy=False), grad, weight)


def sgd(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    d = g + weight_decay * p if weight_decay else g
    if buf is not None:
        if first:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adam(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    if decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m += (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** step)
    denom = np.sqrt(v)
    denom /= math.sqrt(1 - beta2 ** step)
    denom += eps
    p -= step_size * m / denom


def adagrad(p, g, sum, lr, lr_decay, weight_decay, eps, step):
    if weight_decay:
        g = g + weight_decay * p
    sum += g * g
    p -= lr / (1 + (step - 1) * lr_decay) * g / (np.sqrt(sum) + eps)


def nadam(p, g, m, v, lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product,
          decoupled, step):
    """mu_product: mu_1 * ... * mu_step, this step's mu included."""
    if decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    m += (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v / (1 - beta2 ** step)) + eps
    p -= lr * (1 - mu) / (1 - mu_product) * g / denom
    p -= lr * mu_next / (1 - mu_product * mu_next) * m / denom


def rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    if weight_decay:
        g = g + weight_decay * p
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if grad_avg is not None:
        grad_avg += (1 - alpha) * (g - grad_avg)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if buf is not None:
        buf *= momentum
        buf += g / avg
        p -= lr * buf
    else:
        p -= lr * g / avg


def sumsq(x):
    x = x.astype(np.float64)
    return float(np.dot(x, x))


def scale(x, c):
    x *= c


def mul(a, b, out):
    np.multiply(a, b, out=out)


def all_finite(x):
    return bool(np.isfinite(x).all())


def labels_in_range(labels, num_classes):
    return bool(((labels >= 0) & (labels < num_classes)).all())


def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=1)
    var = ((x64 - mu[:, None]) ** 2).mean(axis=1)
    mean[...] = mu
    rstd[...] = 1.0 / np.sqrt(var + eps)
    y[...] = (x - mean[:, None]) * rstd[:, None]
    if gamma is not None:
        y *= gamma
        y += beta


def layernorm_backward(x, gamma, mean, rstd, gy, gx, ggamma, gbeta, accumulate=False):
    xhat = (x - mean[:, None]) * rstd[:, None]
    dxhat = gy * gamma if gamma is not None else gy
    a = dxhat.mean(axis=1, keepdims=True)
    b = (dxhat * xhat).mean(axis=1, keepdims=True)
    gx[...] = rstd[:, None] * (dxhat - a - xhat * b)
    if ggamma is not None:
        if not accumulate:
            ggamma[...] = 0
            gbeta[...] = 0
        ggamma += (gy * xhat).sum(axis=0)
        gbeta += gy.sum(axis=0)


def _hash64(seed, i):
    """The kernels' splitmix64 counter hash, on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (i.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def dropout_forward(x, y, mask, p, seed):
    thresh = np.uint64(int(p * 9007199254740992.0))
    keep = (_hash64(seed, np.arange(x.size)) >> np.uint64(11)) >= thresh
    scale_ = 1.0 / (1.0 - p) if p < 1 else 0.0
    mask[...] = np.where(keep, x.dtype.type(scale_), x.dtype.type(0)).reshape(mask.shape)
    np.multiply(x, mask, out=y)


def embedding_forward(idx, weight, out):
    np.take(weight, idx, axis=0, out=out)


def embedding_backward(idx, gout, gweight, accumulate=False):
    if not accumulate:
        gweight[...] = 0
    np.add.at(gweight, idx, gout)


# --- sequence layers (EmbeddingBag, Conv1d, sequence losses) ----------------------
def cross_entropy_ignore(z, labels, ignore_index, smoothing, grad, weight=None):
    """cross_entropy_labels over the rows whose label is not ignore_index; the mean
    is over those rows (NaN when there are none), ignored rows get zero gradient."""
    keep = labels != ignore_index
    bad = keep & ((labels < 0) | (labels >= z.shape[1]))
    if bad.any():
        raise ValueError(f"cross_entropy: labels must be in [0, {z.shape[1]}) or equal ignore_index")
    n_keep = int(keep.sum())
    if grad is not None:
        grad[...] = 0
    if n_keep == 0:
        return float("nan")
    zk = np.ascontiguousarray(z[keep])
    gk = None if grad is None else np.empty_like(zk)
    wk = None if weight is None else np.ascontiguousarray(weight[keep])
    value = cross_entropy_labels(zk, np.ascontiguousarray(labels[keep]), smoothing, gk, wk)
    if grad is not None:
        grad[keep] = gk
    return value


def embedding_bag_forward(idx, weight, mode, out, arg=None):
    """idx: out.shape[0] bags of equal size, flattened row-major."""
    bags = idx.reshape(out.shape[0], -1)
    rows = weight[bags]  # (n, bag, dim)
    if mode == BAG_MAX:
        j = rows.argmax(axis=1)  # the first maximum, as the kernel
        out[...] = np.take_along_axis(rows, j[:, None, :], axis=1)[:, 0]
        arg[...] = np.take_along_axis(bags, j, axis=1)
        return
    s = rows.sum(axis=1)
    out[...] = s / weight.dtype.type(bags.shape[1]) if mode == BAG_MEAN else s


def embedding_bag_backward(idx, gout, mode, arg, gweight, accumulate=False):
    if not accumulate:
        gweight[...] = 0
    if mode == BAG_MAX:
        np.add.at(gweight, (arg, np.arange(gout.shape[1])[None, :]), gout)
        return
    bag = idx.size // gout.shape[0]
    g = gout * gout.dtype.type(1.0 / bag) if mode == BAG_MEAN else gout
    np.add.at(gweight, idx, np.repeat(g, bag, axis=0))


def _conv_taps(L, k, stride, dilation, pad_left, l_out):
    """(k, l_out) input positions of each tap, and whether they fall inside x."""
    pos = (np.arange(l_out)[None, :] * stride + np.arange(k)[:, None] * dilation - pad_left)
    return pos, (pos >= 0) & (pos < L)


def conv1d_forward(x, w, b, stride, dilation, pad_left, pad_right, relu, wr, col, y):
    """Time-major: x (B, L, Cin), y (B, Lout, Cout); col rows hold the k taps' inputs."""
    B, L, cin = x.shape
    cout, _, k = w.shape
    l_out = y.shape[1]
    wr[...] = w.transpose(0, 2, 1).reshape(cout, k * cin)
    pos, ok = _conv_taps(L, k, stride, dilation, pad_left, l_out)
    unf = np.where(ok.T[None, :, :, None], x[:, np.clip(pos.T, 0, L - 1)], 0)  # (B, Lout, k, Cin)
    col[...] = unf.reshape(B * l_out, k * cin)
    z = col @ wr.T + (0 if b is None else b)
    y[...] = (np.maximum(z, 0) if relu else z).reshape(y.shape)


def conv1d_backward(wr, col, y, relu, gy, stride, dilation, pad_left, pad_right, gz, dwr, dcol,
                    gx, gw, gb, accumulate=False):
    cout, cin, k = gw.shape
    B, l_out, _ = gy.shape
    g = gy.reshape(-1, cout)
    if relu:
        g = np.where(y.reshape(-1, cout) > 0, g, 0).astype(gy.dtype)
        gz[...] = g.reshape(gz.shape)
    dwr[...] = g.T @ col
    dw = dwr.reshape(cout, k, cin).transpose(0, 2, 1)
    db = g.sum(axis=0)
    if accumulate:
        gw += dw
        if gb is not None:
            gb += db
    else:
        gw[...] = dw
        if gb is not None:
            gb[...] = db
    if gx is not None:
        L = gx.shape[1]
        dcol[...] = g @ wr
        pos, ok = _conv_taps(L, k, stride, dilation, pad_left, l_out)
        gx[...] = 0
        d4 = dcol.reshape(B, l_out, k, cin)
        for j in range(k):
            m = ok[j]
            np.add.at(gx, (slice(None), pos[j][m]), d4[:, m, j])



# --- recurrent layers (GRU, LSTM) ---------------------------------------------------

# Time-major, torch's gate orders; hs (T+1, B, H) with hs[0] = h0 (cs[0] = c0) as
# inputs, gates g (T, B, G*H). The input projection of all steps is one product.
# wp, the compiled kernels' packed-W_hh workspace, is not needed here. x None: g
# holds layer 0's input projection, and backward leaves the input side to the caller.
def _project_inputs(x, w_ih, b_ih, g):
    T, B, _ = g.shape
    if x is None:  # g already holds the projection
        return T, B
    g[...] = (x.reshape(T * B, -1) @ w_ih.T).reshape(g.shape)
    if b_ih is not None:
        g += b_ih
    return T, B


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, hs, g, gh, wp):
    T, B = _project_inputs(x, w_ih, b_ih, g)
    H = w_hh.shape[1]
    for t in range(T):
        np.matmul(hs[t], w_hh.T, out=gh[t])
        if b_hh is not None:
            gh[t] += b_hh
        r = sigmoid(g[t, :, :H] + gh[t, :, :H])
        z = sigmoid(g[t, :, H:2 * H] + gh[t, :, H:2 * H])
        n = np.tanh(g[t, :, 2 * H:] + r * gh[t, :, 2 * H:])
        g[t, :, :H], g[t, :, H:2 * H], g[t, :, 2 * H:] = r, z, n
        hs[t + 1] = (1 - z) * n + z * hs[t]


def _rnn_param_grads(x, w_ih, hs, dgx, dgh, gx, gw_ih, gw_hh, gb_ih, gb_hh, accumulate):
    T, B, _ = dgx.shape
    h2 = hs[:T].reshape(T * B, -1)
    dgx2, dgh2 = dgx.reshape(T * B, -1), dgh.reshape(T * B, -1)
    pairs = [(gw_hh, dgh2.T @ h2), (gb_hh, dgh2.sum(0))]
    if x is None:  # the caller owns the input side
        gx = None
    else:
        pairs += [(gw_ih, dgx2.T @ x.reshape(T * B, -1)), (gb_ih, dgx2.sum(0))]
    for grad, val in pairs:
        if grad is None:
            continue
        if accumulate:
            grad += val
        else:
            grad[...] = val
    if gx is not None:
        gx[...] = (dgx2 @ w_ih).reshape(gx.shape)


def gru_backward(x, w_ih, w_hh, hs, g, gh, gy, dh, dgx, dgh, gx, gw_ih, gw_hh, gb_ih, gb_hh,
                 wp, accumulate=False):
    T = g.shape[0]
    H = w_hh.shape[1]
    for t in range(T - 1, -1, -1):
        r, z, n = g[t, :, :H], g[t, :, H:2 * H], g[t, :, 2 * H:]
        d = dh + gy[t]
        dan = d * (1 - z) * (1 - n * n)
        daz = d * (hs[t] - n) * z * (1 - z)
        dar = dan * gh[t, :, 2 * H:] * r * (1 - r)
        dgx[t, :, :H], dgx[t, :, H:2 * H], dgx[t, :, 2 * H:] = dar, daz, dan
        dgh[t, :, :H], dgh[t, :, H:2 * H], dgh[t, :, 2 * H:] = dar, daz, dan * r
        dh[...] = d * z + dgh[t] @ w_hh
    _rnn_param_grads(x, w_ih, hs, dgx, dgh, gx, gw_ih, gw_hh, gb_ih, gb_hh, accumulate)


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, hs, cs, g, gh, wp):
    T, B = _project_inputs(x, w_ih, b_ih, g)
    H = w_hh.shape[1]
    for t in range(T):
        np.matmul(hs[t], w_hh.T, out=gh)
        if b_hh is not None:
            gh += b_hh
        a = g[t] + gh
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
        u, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        g[t] = np.concatenate([i, f, u, o], axis=1)
        cs[t + 1] = f * cs[t] + i * u
        hs[t + 1] = o * np.tanh(cs[t + 1])


def lstm_backward(x, w_ih, w_hh, hs, cs, g, gy, dh, dc, dg, gx, gw_ih, gw_hh, gb_ih, gb_hh,
                  wp, accumulate=False):
    T = g.shape[0]
    H = w_hh.shape[1]
    for t in range(T - 1, -1, -1):
        i, f, u, o = (g[t, :, k * H:(k + 1) * H] for k in range(4))
        tc = np.tanh(cs[t + 1])
        d = dh + gy[t]
        dcc = dc + d * o * (1 - tc * tc)
        dg[t] = np.concatenate([dcc * u * i * (1 - i), dcc * cs[t] * f * (1 - f),
                                dcc * i * (1 - u * u), d * tc * o * (1 - o)], axis=1)
        dc[...] = dcc * f
        dh[...] = dg[t] @ w_hh
    _rnn_param_grads(x, w_ih, hs, dg, dg, gx, gw_ih, gw_hh, gb_ih, gb_hh, accumulate)



# --- attention (MultiheadAttention, transformer block) ----------------------------
def _heads(a, batch_first, num_heads):
    """(B, L, E) or (L, B, E) -> (B, H, L, d) view."""
    b = a if batch_first else a.transpose(1, 0, 2)
    B, L, E = b.shape
    return b.reshape(B, L, num_heads, E // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(a, batch_first):
    """(B, H, L, d) -> (B, L, E) or (L, B, E)."""
    B, H, L, d = a.shape
    m = a.transpose(0, 2, 1, 3).reshape(B, L, H * d)
    return m if batch_first else m.transpose(1, 0, 2)


def mha_forward(x, w_in, b_in, w_out, b_out, mask, num_heads, causal, batch_first, qkv, attn,
                ctx, y, drop=None, dattn=None):
    E = x.shape[2]
    qkv[...] = x @ w_in.T + (0 if b_in is None else b_in)
    q, k, v = (_heads(qkv[..., i * E:(i + 1) * E], batch_first, num_heads) for i in range(3))
    L = q.shape[2]
    s = (q @ k.swapaxes(-1, -2)) * x.dtype.type(1.0 / math.sqrt(E // num_heads))
    if mask is not None:  # (L, L) for every sequence or (B*L, L), one per sequence
        s = s + mask.reshape(-1, L, L)[:, None]
    if causal:
        s = np.where(np.triu(np.ones((L, L), bool), 1), -np.inf, s)
    with np.errstate(invalid="ignore"):
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        attn[...] = e / e.sum(axis=-1, keepdims=True)
    if drop is not None:
        np.multiply(attn, drop, out=dattn)
    ctx[...] = _merge_heads((attn if drop is None else dattn) @ v, batch_first)
    y[...] = ctx @ w_out.T + (0 if b_out is None else b_out)


def mha_backward(x, w_in, w_out, qkv, attn, ctx, gy, num_heads, causal, batch_first, gctx, gs,
                 gqkv, gx, gw_in, gb_in, gw_out, gb_out, accumulate=False, drop=None, dattn=None):
    E = x.shape[2]

    def put(out, value):  # written, or added with accumulate (out may hold garbage)
        if accumulate:
            out += value
        else:
            out[...] = value

    put(gw_out, gy.reshape(-1, E).T @ ctx.reshape(-1, E))
    if gb_out is not None:
        put(gb_out, gy.reshape(-1, E).sum(axis=0))
    gctx[...] = gy @ w_out
    q, k, v = (_heads(qkv[..., i * E:(i + 1) * E], batch_first, num_heads) for i in range(3))
    go = _heads(gctx, batch_first, num_heads)
    gv = (attn if drop is None else dattn).swapaxes(-1, -2) @ go
    gp = go @ v.swapaxes(-1, -2)
    if drop is not None:
        gp = gp * drop
    gs[...] = attn * (gp - (gp * attn).sum(axis=-1, keepdims=True))
    gs *= x.dtype.type(1.0 / math.sqrt(E // num_heads))
    gq, gk = gs @ k, gs.swapaxes(-1, -2) @ q
    gqkv[...] = np.concatenate([_merge_heads(g, batch_first) for g in (gq, gk, gv)], axis=-1)
    g2 = gqkv.reshape(-1, 3 * E)
    put(gw_in, g2.T @ x.reshape(-1, E))
    if gb_in is not None:
        put(gb_in, g2.sum(axis=0))
    if gx is not None:
        gx[...] = gqkv @ w_in


def attn_last_forward(q, kv, num_heads, attn, ctx):
    E = q.shape[1]
    qh = q.reshape(q.shape[0], num_heads, 1, E // num_heads)
    k, v = (_heads(kv[..., i * E:(i + 1) * E], True, num_heads) for i in range(2))
    s = (qh @ k.swapaxes(-1, -2))[:, :, 0] * q.dtype.type(1.0 / math.sqrt(E // num_heads))
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    attn[...] = e / e.sum(axis=-1, keepdims=True)
    ctx[...] = (attn[:, :, None] @ v).reshape(q.shape)


def attn_last_backward(q, kv, attn, gctx, num_heads, gq, gkv):
    B, E = q.shape
    d = E // num_heads
    qh, go = (a.reshape(B, num_heads, 1, d) for a in (q, gctx))
    k, v = (_heads(kv[..., i * E:(i + 1) * E], True, num_heads) for i in range(2))
    gp = (go @ v.swapaxes(-1, -2))[:, :, 0]
    gs = attn * (gp - (gp * attn).sum(axis=-1, keepdims=True)) * q.dtype.type(1.0 / math.sqrt(d))
    gq[...] = (gs[:, :, None] @ k).reshape(B, E)
    gk, gv = gs[..., None] * qh, attn[..., None] * go
    gkv[...] = np.concatenate([_merge_heads(g, True) for g in (gk, gv)], axis=-1)
