# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Typed entry points to the C kernels (csrc/), one per kernel, float32 and
float64 through the fused type ``floating``; each reaches C through its kernel's
shim in _fnn.pxd, the one place that picks the _f32 or _f64 symbol.

Callers (the Python layers) own validation of user input; these wrappers still
check every shape they rely on, so a wrong call raises instead of corrupting
memory. Arrays must be C-contiguous and share one dtype.
"""
from cython cimport floating
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
cimport numpy as cnp
import numpy as np
cimport scipy.linalg.cython_blas as blas
from fastnn._kernels._fnn cimport *
from fastnn._kernels._fnn_seq cimport *
from fastnn._kernels._fnn_rnn cimport *
from fastnn._kernels._fnn_attn cimport *

cnp.import_array()

fnn_set_blas(<fnn_sgemm_t>blas.sgemm, <fnn_dgemm_t>blas.dgemm,
             <fnn_sgemv_t>blas.sgemv, <fnn_dgemv_t>blas.dgemv)

# The codes of csrc/fnn.h, for Python (fastnn.nn, fastnn._reference, the tests):
# activations, a dense program's loss, and an Update's kind.
ACT_NONE = FNN_ACT_NONE
ACT_RELU = FNN_ACT_RELU
ACT_LEAKY = FNN_ACT_LEAKY
ACT_SIGMOID = FNN_ACT_SIGMOID
ACT_TANH = FNN_ACT_TANH
ACT_GELU = FNN_ACT_GELU
ACT_GELU_TANH = FNN_ACT_GELU_TANH
LOSS_MSE = FNN_LOSS_MSE
LOSS_CE_LABELS = FNN_LOSS_CE_LABELS
LOSS_CE_PROBS = FNN_LOSS_CE_PROBS
LOSS_BCE = FNN_LOSS_BCE
LOSS_BCE_LOGITS = FNN_LOSS_BCE_LOGITS
OPT_SGD = FNN_OPT_SGD
OPT_ADAM = FNN_OPT_ADAM
OPT_RMSPROP = FNN_OPT_RMSPROP
OPT_ADAGRAD = FNN_OPT_ADAGRAD
OPT_NADAM = FNN_OPT_NADAM


cdef inline void _need(bint ok, str what) except *:
    if not ok:
        raise ValueError(what)


cdef inline void *_ptr(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a) if a is not None else NULL


cdef inline bint _is_batch(object a, int typenum, int n, int width):
    """a is a C-contiguous (n, width) array of typenum (width 0: 1-D of length n)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    if width == 0:
        return cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_DIM(arr, 0) == n
    return cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_DIM(arr, 0) == n and cnp.PyArray_DIM(arr, 1) == width


# ------------------------------------------------------------------ runtime
def set_threads(int n):
    fnn_set_threads(n)

def get_threads():
    return fnn_get_threads()

def openmp_enabled():
    return bool(fnn_openmp_enabled())

def openmp_max_threads():
    return fnn_openmp_max_threads()

def openmp_pool_started():
    return bool(fnn_openmp_pool_started())


# --------------------------------------------------------------------- BLAS
def gemm(floating[:, ::1] a, floating[:, ::1] b, floating[:, ::1] c, bint trans_a=False,
         bint trans_b=False, double alpha=1.0, double beta=0.0):
    """c = alpha * op(a) @ op(b) + beta * c, row-major, on the calling thread."""
    cdef int m = a.shape[1] if trans_a else a.shape[0]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef int kb = b.shape[1] if trans_b else b.shape[0]
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    _need(k == kb and c.shape[0] == m and c.shape[1] == n, "gemm: shapes do not match")
    if m == 0 or n == 0:
        return
    cdef floating *pa = &a[0, 0] if a.shape[0] * a.shape[1] else NULL
    cdef floating *pb = &b[0, 0] if b.shape[0] * b.shape[1] else NULL
    fnn_gemm(trans_a, trans_b, m, n, k, alpha, pa, a.shape[1], pb, b.shape[1], beta, &c[0, 0], n)


def gemm_split(floating[:, ::1] a, floating[:, ::1] b, floating[:, ::1] c, bint trans_a, bint trans_b,
               int dim, int parts, int threads=1, double beta=0.0):
    """c = op(a) @ op(b) + beta * c computed as `parts` row (dim 0) or column (dim 1)
    blocks on up to `threads` threads: the cuts whose bits the tests compare."""
    cdef int m = a.shape[1] if trans_a else a.shape[0]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef int kb = b.shape[1] if trans_b else b.shape[0]
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    _need(k == kb and c.shape[0] == m and c.shape[1] == n and k > 0, "gemm_split: shapes do not match")
    _need(dim in (0, 1) and parts >= 1 and threads >= 1, "gemm_split: dim, parts or threads")
    if m == 0 or n == 0:
        return
    fnn_gemm_split(threads, dim, parts, trans_a, trans_b, m, n, k, &a[0, 0], a.shape[1],
                   &b[0, 0], b.shape[1], beta, &c[0, 0], n)


def set_split(int dim, int parts=2):
    """Force linear_forward/backward's GEMMs into `parts` blocks along dim (0 rows,
    1 columns, 2 one call) whatever the thread count; dim=-1 restores planning."""
    fnn_set_split(dim, parts)


def split_stats():
    """GEMM plans made in this process: (one call, row blocks, column blocks)."""
    cdef int out[3]
    fnn_split_stats(out)
    return out[0], out[1], out[2]


# ------------------------------------------------------------------- linear
def linear_forward(floating[:, ::1] x, floating[:, ::1] w, floating[::1] b, int act,
                   double slope, floating[:, ::1] z, floating[:, ::1] y):
    """y = act(x @ w.T + b); z (pre-activation) is required for GELU, else may be None."""
    cdef int n = x.shape[0], n_in = x.shape[1], n_out = w.shape[0]
    _need(w.shape[1] == n_in and y.shape[0] == n and y.shape[1] == n_out,
          "linear_forward: shapes do not match")
    _need(b is None or b.shape[0] == n_out, "linear_forward: bias shape")
    _need(z is not None or act < FNN_ACT_GELU, "linear_forward: GELU needs z")
    _need(z is None or (z.shape[0] == n and z.shape[1] == n_out), "linear_forward: z shape")
    if n == 0 or n_in == 0:
        return
    cdef floating *pb = &b[0] if b is not None else NULL
    cdef floating *pz = &z[0, 0] if z is not None else NULL
    with nogil:
        fnn_linear_forward(n, n_in, n_out, &x[0, 0], n_in, &w[0, 0], pb, act, slope, pz, &y[0, 0])


def linear_backward(floating[:, ::1] x, floating[:, ::1] w, int act, double slope,
                    floating[:, ::1] z, floating[:, ::1] y, floating[:, ::1] gy,
                    floating[:, ::1] gz, floating[:, ::1] gx, floating[:, ::1] gw,
                    floating[::1] gb, bint accumulate=False):
    """From gy: gz = gy * act'; gb (+)= sum gz; gw (+)= gz.T @ x; gx = gz @ w.

    gz may be gy itself (it is then overwritten); gx and gb may be None."""
    cdef int n = x.shape[0], n_in = x.shape[1], n_out = w.shape[0]
    _need(w.shape[1] == n_in and gy.shape[0] == n and gy.shape[1] == n_out
          and gz.shape[0] == n and gz.shape[1] == n_out and gw.shape[0] == n_out
          and gw.shape[1] == n_in, "linear_backward: shapes do not match")
    _need(act == FNN_ACT_NONE or (y is not None and y.shape[0] == n and y.shape[1] == n_out),
          "linear_backward: y shape")
    _need(act < FNN_ACT_GELU or (z is not None and z.shape[0] == n and z.shape[1] == n_out),
          "linear_backward: GELU needs z")
    _need(gx is None or (gx.shape[0] == n and gx.shape[1] == n_in), "linear_backward: gx shape")
    _need(gb is None or gb.shape[0] == n_out, "linear_backward: gb shape")
    if n == 0 or n_in == 0:
        return
    cdef floating *pz = &z[0, 0] if z is not None else NULL
    cdef floating *py = &y[0, 0] if y is not None else NULL
    cdef floating *pgx = &gx[0, 0] if gx is not None else NULL
    cdef floating *pgb = &gb[0] if gb is not None else NULL
    with nogil:
        fnn_linear_backward(n, n_in, n_out, &x[0, 0], n_in, &w[0, 0], act, slope, pz, py,
                            &gy[0, 0], &gz[0, 0], pgx, &gw[0, 0], pgb, accumulate)


# -------------------------------------------------------------- activations
def act_forward(int act, double slope, floating[::1] x, floating[::1] y):
    _need(x.shape[0] == y.shape[0], "act_forward: shapes do not match")
    if x.shape[0] == 0:
        return
    with nogil:
        fnn_act_forward(act, slope, x.shape[0], &x[0], &y[0])


def act_backward(int act, double slope, x, y, floating[::1] gy, floating[::1] gx):
    """gx = gy * act'(x); ReLU/LeakyReLU/Sigmoid/Tanh read y, GELU reads x.

    The dtype is taken from gy, so x or y may be None whichever it is."""
    cdef floating[::1] xv = x
    cdef floating[::1] yv = y
    cdef Py_ssize_t n = gy.shape[0]
    _need(gx.shape[0] == n, "act_backward: shapes do not match")
    _need((xv is not None and xv.shape[0] == n) if act >= FNN_ACT_GELU else
          (act == FNN_ACT_NONE or (yv is not None and yv.shape[0] == n)),
          "act_backward: needs x for GELU and y otherwise")
    if n == 0:
        return
    cdef floating *px = &xv[0] if xv is not None else NULL
    cdef floating *py = &yv[0] if yv is not None else NULL
    with nogil:
        fnn_act_backward(act, slope, n, px, py, &gy[0], &gx[0])


def softmax_forward(floating[:, ::1] x, floating[:, ::1] y):
    _need(x.shape[0] == y.shape[0] and x.shape[1] == y.shape[1], "softmax: shapes do not match")
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    with nogil:
        fnn_softmax_forward(x.shape[0], x.shape[1], &x[0, 0], &y[0, 0])


def softmax_backward(floating[:, ::1] y, floating[:, ::1] gy, floating[:, ::1] gx):
    _need(y.shape[0] == gy.shape[0] == gx.shape[0] and y.shape[1] == gy.shape[1] == gx.shape[1],
          "softmax_backward: shapes do not match")
    if y.shape[0] == 0 or y.shape[1] == 0:
        return
    with nogil:
        fnn_softmax_backward(y.shape[0], y.shape[1], &y[0, 0], &gy[0, 0], &gx[0, 0])


# ------------------------------------------------------------------- losses
# weight: optional per-row weights (Keras's sample_weight), one per k elements;
# None means unweighted. The loss stays the mean over all elements.
cdef inline floating *_row_weights(floating[::1] weight, Py_ssize_t n, Py_ssize_t k) except? NULL:
    if weight is None:
        return NULL
    if k <= 0 or n % k or weight.shape[0] != n // k:
        raise ValueError("loss: weight must have one entry per row")
    return &weight[0]


def pointwise_loss(int kind, floating[::1] y, floating[::1] t, floating[::1] grad,
                   floating[::1] weight=None, Py_ssize_t k=1):
    """Mean elementwise loss of y against t; grad (may be None) gets d(mean)/dy.
    kind: LOSS_MSE, LOSS_BCE (y: probabilities, log clamped at -100 like PyTorch)
    or LOSS_BCE_LOGITS (y: logits; grad = (sigmoid(y) - t) / n)."""
    _need(kind == FNN_LOSS_MSE or kind == FNN_LOSS_BCE or kind == FNN_LOSS_BCE_LOGITS,
          "pointwise_loss: kind must be LOSS_MSE, LOSS_BCE or LOSS_BCE_LOGITS")
    cdef Py_ssize_t n = y.shape[0]
    _need(n > 0 and t.shape[0] == n and (grad is None or grad.shape[0] == n), "loss: shapes")
    cdef floating *pg = &grad[0] if grad is not None else NULL
    cdef floating *pw = _row_weights(weight, n, k)
    cdef double r
    with nogil:
        r = fnn_pointwise_loss(kind, n, &y[0], &t[0], pg, pw, k)
    return r


def cross_entropy_labels(floating[:, ::1] z, const int64_t[::1] labels, double smoothing,
                         floating[:, ::1] grad, floating[::1] weight=None):
    """Softmax cross-entropy of logits z against class labels (checked in range)."""
    cdef int n = z.shape[0], C = z.shape[1]
    _need(n > 0 and C > 0 and labels.shape[0] == n, "cross_entropy: shapes")
    _need(grad is None or (grad.shape[0] == n and grad.shape[1] == C), "cross_entropy: grad shape")
    if not fnn_labels_in_range(n, <int64_t *>&labels[0], C):
        raise ValueError(f"cross_entropy: labels must be in [0, {C})")
    cdef floating *pg = &grad[0, 0] if grad is not None else NULL
    cdef floating *pw = _row_weights(weight, n, 1)
    cdef double r
    with nogil:
        r = fnn_cross_entropy(n, C, &z[0, 0], <int64_t *>&labels[0], NULL, smoothing, pg, pw)
    return r


def cross_entropy_probs(floating[:, ::1] z, floating[:, ::1] probs, double smoothing,
                        floating[:, ::1] grad, floating[::1] weight=None):
    """Softmax cross-entropy of logits z against target probabilities."""
    cdef int n = z.shape[0], C = z.shape[1]
    _need(n > 0 and C > 0 and probs.shape[0] == n and probs.shape[1] == C, "cross_entropy: shapes")
    _need(grad is None or (grad.shape[0] == n and grad.shape[1] == C), "cross_entropy: grad shape")
    cdef floating *pg = &grad[0, 0] if grad is not None else NULL
    cdef floating *pw = _row_weights(weight, n, 1)
    cdef double r
    with nogil:
        r = fnn_cross_entropy(n, C, &z[0, 0], NULL, &probs[0, 0], smoothing, pg, pw)
    return r


# --------------------------------------------------------------- optimizers
include "_optim.pxi"


def sumsq(floating[::1] x):
    """Sum of squares in float64, in an order fixed by the size alone."""
    if x.shape[0] == 0:
        return 0.0
    cdef double r
    with nogil:
        r = fnn_sumsq(x.shape[0], &x[0])
    return r


def scale(floating[::1] x, double c):
    if x.shape[0] == 0:
        return
    with nogil:
        fnn_scale(x.shape[0], &x[0], c)


def mul(floating[::1] a, floating[::1] b, floating[::1] out):
    _need(a.shape[0] == b.shape[0] == out.shape[0], "mul: shapes")
    if a.shape[0] == 0:
        return
    with nogil:
        fnn_mul(a.shape[0], &a[0], &b[0], &out[0])


def all_finite(floating[::1] x):
    if x.shape[0] == 0:
        return True
    return bool(fnn_all_finite(floating is double, x.shape[0], &x[0]))


def labels_in_range(const int64_t[::1] labels, long long num_classes):
    if labels.shape[0] == 0:
        return True
    return bool(fnn_labels_in_range(labels.shape[0], <int64_t *>&labels[0], num_classes))


# ---------------------------------------------------------------- layernorm
def layernorm_forward(floating[:, ::1] x, floating[::1] gamma, floating[::1] beta, double eps,
                      floating[:, ::1] y, floating[::1] mean, floating[::1] rstd):
    cdef int n = x.shape[0], d = x.shape[1]
    _need(y.shape[0] == n and y.shape[1] == d and mean.shape[0] == n and rstd.shape[0] == n,
          "layernorm_forward: shapes")
    _need((gamma is None) == (beta is None), "layernorm_forward: gamma and beta go together")
    _need(gamma is None or (gamma.shape[0] == d and beta.shape[0] == d), "layernorm: affine shape")
    if n == 0 or d == 0:
        return
    cdef floating *pg = &gamma[0] if gamma is not None else NULL
    cdef floating *pb = &beta[0] if beta is not None else NULL
    with nogil:
        fnn_layernorm_forward(n, d, &x[0, 0], pg, pb, eps, &y[0, 0], &mean[0], &rstd[0])


def layernorm_backward(floating[:, ::1] x, floating[::1] gamma, floating[::1] mean,
                       floating[::1] rstd, floating[:, ::1] gy, floating[:, ::1] gx,
                       floating[::1] ggamma, floating[::1] gbeta, bint accumulate=False):
    cdef int n = x.shape[0], d = x.shape[1]
    _need(gy.shape[0] == n and gy.shape[1] == d and gx.shape[0] == n and gx.shape[1] == d
          and mean.shape[0] == n and rstd.shape[0] == n, "layernorm_backward: shapes")
    _need((ggamma is None) == (gbeta is None) and (ggamma is None or
          (ggamma.shape[0] == d and gbeta.shape[0] == d)), "layernorm_backward: affine shapes")
    _need(gamma is None or gamma.shape[0] == d, "layernorm_backward: gamma shape")
    if n == 0 or d == 0:
        return
    cdef floating *pg = &gamma[0] if gamma is not None else NULL
    cdef floating *pgg = &ggamma[0] if ggamma is not None else NULL
    cdef floating *pgb = &gbeta[0] if gbeta is not None else NULL
    with nogil:
        fnn_layernorm_backward(n, d, &x[0, 0], pg, &mean[0], &rstd[0], &gy[0, 0], &gx[0, 0],
                               pgg, pgb, accumulate)


# ------------------------------------------------------------------ dropout
def dropout_forward(floating[::1] x, floating[::1] y, floating[::1] mask, double p,
                    unsigned long long seed):
    """y = x * mask, mask = 0 (probability p) or 1/(1-p); depends on (seed, index) only."""
    cdef Py_ssize_t n = x.shape[0]
    _need(y.shape[0] == n and mask.shape[0] == n, "dropout: shapes")
    _need(0.0 <= p <= 1.0, "dropout: p must be in [0, 1]")
    if n == 0:
        return
    with nogil:
        fnn_dropout_forward(n, &x[0], &y[0], &mask[0], p, seed)


# ---------------------------------------------------------------- embedding
def embedding_forward(const int64_t[::1] idx, floating[:, ::1] weight, floating[:, ::1] out):
    cdef Py_ssize_t n = idx.shape[0]
    cdef int dim = weight.shape[1]
    _need(out.shape[0] == n and out.shape[1] == dim, "embedding_forward: shapes")
    if n == 0 or dim == 0:
        return
    if not fnn_labels_in_range(n, <int64_t *>&idx[0], weight.shape[0]):
        raise ValueError(f"embedding: indices must be in [0, {weight.shape[0]})")
    with nogil:
        fnn_embedding_forward(n, dim, <int64_t *>&idx[0], &weight[0, 0], &out[0, 0])


def embedding_backward(const int64_t[::1] idx, floating[:, ::1] gout, floating[:, ::1] gweight,
                       bint accumulate=False):
    cdef Py_ssize_t n = idx.shape[0]
    cdef int dim = gweight.shape[1]
    _need(gout.shape[0] == n and gout.shape[1] == dim, "embedding_backward: shapes")
    if gweight.shape[0] == 0 or dim == 0:
        return
    if n and not fnn_labels_in_range(n, <int64_t *>&idx[0], gweight.shape[0]):
        raise ValueError(f"embedding: indices must be in [0, {gweight.shape[0]})")
    cdef int64_t *pidx = <int64_t *>&idx[0] if n else NULL
    cdef floating *pg = &gout[0, 0] if n else NULL
    with nogil:
        fnn_embedding_backward(n, dim, gweight.shape[0], pidx, pg, &gweight[0, 0], accumulate)


# ----------------------------------------------------------- dense programs
include "_dense.pxi"


# ------------------------------------------------- sequence architectures
include "_seq.pxi"
include "_rnn.pxi"
include "_attn.pxi"
