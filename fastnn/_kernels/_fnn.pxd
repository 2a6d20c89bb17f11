# Declarations of the C kernels in csrc/fnn.h, and the one place each is called.
#
# The pattern, for this file and every _fnn_*.pxd (scikit-learn's _cython_blas.pxd
# is the model):
# - The C side is one template compiled per dtype (csrc/fnn_template.h), so a
#   kernel is two symbols, fnn_x_f32 and fnn_x_f64. Both are declared in a small
#   `cdef extern` block, and right below it one shim, `cdef inline ... noexcept
#   nogil` fnn_x (no suffix) over the fused type `floating`, chooses between them
#   (`if floating is float`). The shim is the only code that names the two symbols;
#   the wrappers in _ops.pyx and the .pxi files call the shim, once. Scalars the C
#   takes in the array dtype arrive as double and are narrowed in the shim.
# - A kernel of a dense program, whose dtype is known only at run time, gets a
#   shim that takes the dtype as a flag (f64) and void pointers, as fnn_dense does.
# - Numbered codes are C enums in csrc/*.h only: declared here as extern enums,
#   exported by _ops as Python ints (ACT_RELU = FNN_ACT_RELU), and read from _ops
#   by all Python code, fastnn/_reference.py included; never written as numbers.
from cython cimport floating
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    enum:
        FNN_ACT_NONE
        FNN_ACT_RELU
        FNN_ACT_LEAKY
        FNN_ACT_SIGMOID
        FNN_ACT_TANH
        FNN_ACT_GELU
        FNN_ACT_GELU_TANH
    enum:
        FNN_LOSS_MSE
        FNN_LOSS_CE_LABELS
        FNN_LOSS_CE_PROBS
        FNN_LOSS_BCE
        FNN_LOSS_BCE_LOGITS
    enum:
        FNN_OPT_SGD
        FNN_OPT_ADAM
        FNN_OPT_RMSPROP
        FNN_OPT_ADAGRAD
        FNN_OPT_NADAM
    ctypedef void (*fnn_sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*, int*) noexcept nogil
    ctypedef void (*fnn_dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*, double*, double*, int*) noexcept nogil
    ctypedef void (*fnn_sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*, float*, float*, int*) noexcept nogil
    ctypedef void (*fnn_dgemv_t)(char*, int*, int*, double*, double*, int*, double*, int*, double*, double*, int*) noexcept nogil
    ctypedef struct fnn_dense:
        int n_in, n_out, act
        double slope
        void *W
        void *b
        void *dW
        void *db
        void *Z
        void *Y
        void *dY
        void *dZ
        void *dX
    ctypedef struct fnn_embed:
        int64_t num
        int dim, k
        void *E
        void *dE
        void *X0
        void *dX0
    ctypedef struct fnn_sgd_args:
        double lr, momentum, dampening, weight_decay
        int nesterov, first
        void *momentum_buffer
    ctypedef struct fnn_adam_args:
        double lr, beta1, beta2, eps, weight_decay
        int decoupled
        int64_t step
        void *exp_avg
        void *exp_avg_sq
    ctypedef struct fnn_rmsprop_args:
        double lr, alpha, eps, weight_decay, momentum
        void *square_avg
        void *grad_avg
        void *momentum_buffer
    ctypedef struct fnn_adagrad_args:
        double lr, lr_decay, weight_decay, eps
        int64_t step
        void *sum
    ctypedef struct fnn_nadam_args:
        double lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product
        int decoupled
        int64_t step
        void *exp_avg
        void *exp_avg_sq
    ctypedef union fnn_update_union:
        fnn_sgd_args sgd
        fnn_adam_args adam
        fnn_rmsprop_args rmsprop
        fnn_adagrad_args adagrad
        fnn_nadam_args nadam
    ctypedef struct fnn_update:
        int kind
        fnn_update_union u
    void fnn_set_blas(fnn_sgemm_t, fnn_dgemm_t, fnn_sgemv_t, fnn_dgemv_t) noexcept
    void fnn_set_threads(int n) noexcept
    int fnn_get_threads() noexcept
    int fnn_openmp_enabled() noexcept
    int fnn_openmp_max_threads() noexcept
    int fnn_openmp_pool_started() noexcept
    int fnn_labels_in_range(int64_t n, int64_t *labels, int64_t C) noexcept
    void fnn_set_split(int dim, int parts) noexcept
    void fnn_split_stats(int *out) noexcept


cdef extern from "fnn.h" nogil:
    void fnn_gemm_f32(int ta, int tb, int M, int N, int K, float alpha, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc) noexcept
    void fnn_gemm_f64(int ta, int tb, int M, int N, int K, double alpha, double *A, int lda, double *B, int ldb, double beta, double *C, int ldc) noexcept

cdef inline void fnn_gemm(int ta, int tb, int M, int N, int K, double alpha, floating *A, int lda,
        floating *B, int ldb, double beta, floating *C, int ldc) noexcept nogil:
    if floating is float:
        fnn_gemm_f32(ta, tb, M, N, K, <float>alpha, A, lda, B, ldb, <float>beta, C, ldc)
    else:
        fnn_gemm_f64(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)


cdef extern from "fnn.h" nogil:
    void fnn_gemm_split_f32(int nt, int dim, int parts, int ta, int tb, int M, int N, int K, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc) noexcept
    void fnn_gemm_split_f64(int nt, int dim, int parts, int ta, int tb, int M, int N, int K, double *A, int lda, double *B, int ldb, double beta, double *C, int ldc) noexcept

cdef inline void fnn_gemm_split(int nt, int dim, int parts, int ta, int tb, int M, int N, int K,
        floating *A, int lda, floating *B, int ldb, double beta, floating *C,
        int ldc) noexcept nogil:
    if floating is float:
        fnn_gemm_split_f32(nt, dim, parts, ta, tb, M, N, K, A, lda, B, ldb, <float>beta, C, ldc)
    else:
        fnn_gemm_split_f64(nt, dim, parts, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc)


cdef extern from "fnn.h" nogil:
    void fnn_linear_forward_f32(int n, int n_in, int n_out, float *X, int ldx, float *W, float *b, int act, float slope, float *Z, float *Y) noexcept
    void fnn_linear_forward_f64(int n, int n_in, int n_out, double *X, int ldx, double *W, double *b, int act, double slope, double *Z, double *Y) noexcept

cdef inline void fnn_linear_forward(int n, int n_in, int n_out, floating *X, int ldx, floating *W,
        floating *b, int act, double slope, floating *Z, floating *Y) noexcept nogil:
    if floating is float:
        fnn_linear_forward_f32(n, n_in, n_out, X, ldx, W, b, act, <float>slope, Z, Y)
    else:
        fnn_linear_forward_f64(n, n_in, n_out, X, ldx, W, b, act, slope, Z, Y)


cdef extern from "fnn.h" nogil:
    void fnn_linear_backward_f32(int n, int n_in, int n_out, float *X, int ldx, float *W, int act, float slope, float *Z, float *Y, float *dY, float *dZ, float *dX, float *dW, float *db, int accumulate) noexcept
    void fnn_linear_backward_f64(int n, int n_in, int n_out, double *X, int ldx, double *W, int act, double slope, double *Z, double *Y, double *dY, double *dZ, double *dX, double *dW, double *db, int accumulate) noexcept

cdef inline void fnn_linear_backward(int n, int n_in, int n_out, floating *X, int ldx, floating *W,
        int act, double slope, floating *Z, floating *Y, floating *dY, floating *dZ, floating *dX,
        floating *dW, floating *db, int accumulate) noexcept nogil:
    if floating is float:
        fnn_linear_backward_f32(n, n_in, n_out, X, ldx, W, act, <float>slope, Z, Y, dY, dZ, dX, dW,
            db, accumulate)
    else:
        fnn_linear_backward_f64(n, n_in, n_out, X, ldx, W, act, slope, Z, Y, dY, dZ, dX, dW, db,
            accumulate)


cdef extern from "fnn.h" nogil:
    void fnn_act_forward_f32(int act, float slope, int64_t n, float *x, float *y) noexcept
    void fnn_act_forward_f64(int act, double slope, int64_t n, double *x, double *y) noexcept

cdef inline void fnn_act_forward(int act, double slope, int64_t n, floating *x,
        floating *y) noexcept nogil:
    if floating is float:
        fnn_act_forward_f32(act, <float>slope, n, x, y)
    else:
        fnn_act_forward_f64(act, slope, n, x, y)


cdef extern from "fnn.h" nogil:
    void fnn_act_backward_f32(int act, float slope, int64_t n, float *x, float *y, float *gy, float *gx) noexcept
    void fnn_act_backward_f64(int act, double slope, int64_t n, double *x, double *y, double *gy, double *gx) noexcept

cdef inline void fnn_act_backward(int act, double slope, int64_t n, floating *x, floating *y,
        floating *gy, floating *gx) noexcept nogil:
    if floating is float:
        fnn_act_backward_f32(act, <float>slope, n, x, y, gy, gx)
    else:
        fnn_act_backward_f64(act, slope, n, x, y, gy, gx)


cdef extern from "fnn.h" nogil:
    void fnn_softmax_forward_f32(int n, int C, float *x, float *y) noexcept
    void fnn_softmax_forward_f64(int n, int C, double *x, double *y) noexcept

cdef inline void fnn_softmax_forward(int n, int C, floating *x, floating *y) noexcept nogil:
    if floating is float:
        fnn_softmax_forward_f32(n, C, x, y)
    else:
        fnn_softmax_forward_f64(n, C, x, y)


cdef extern from "fnn.h" nogil:
    void fnn_softmax_backward_f32(int n, int C, float *y, float *gy, float *gx) noexcept
    void fnn_softmax_backward_f64(int n, int C, double *y, double *gy, double *gx) noexcept

cdef inline void fnn_softmax_backward(int n, int C, floating *y, floating *gy,
        floating *gx) noexcept nogil:
    if floating is float:
        fnn_softmax_backward_f32(n, C, y, gy, gx)
    else:
        fnn_softmax_backward_f64(n, C, y, gy, gx)


cdef extern from "fnn.h" nogil:
    double fnn_pointwise_loss_f32(int kind, int64_t N, float *y, float *t, float *grad, float *w, int64_t k) noexcept
    double fnn_pointwise_loss_f64(int kind, int64_t N, double *y, double *t, double *grad, double *w, int64_t k) noexcept

cdef inline double fnn_pointwise_loss(int kind, int64_t N, floating *y, floating *t, floating *grad,
        floating *w, int64_t k) noexcept nogil:
    if floating is float:
        return fnn_pointwise_loss_f32(kind, N, y, t, grad, w, k)
    else:
        return fnn_pointwise_loss_f64(kind, N, y, t, grad, w, k)


cdef extern from "fnn.h" nogil:
    double fnn_cross_entropy_f32(int n, int C, float *z, int64_t *labels, float *probs, float smoothing, float *grad, float *w) noexcept
    double fnn_cross_entropy_f64(int n, int C, double *z, int64_t *labels, double *probs, double smoothing, double *grad, double *w) noexcept

cdef inline double fnn_cross_entropy(int n, int C, floating *z, int64_t *labels, floating *probs,
        double smoothing, floating *grad, floating *w) noexcept nogil:
    if floating is float:
        return fnn_cross_entropy_f32(n, C, z, labels, probs, <float>smoothing, grad, w)
    else:
        return fnn_cross_entropy_f64(n, C, z, labels, probs, smoothing, grad, w)


cdef extern from "fnn.h" nogil:
    double fnn_sumsq_f32(int64_t n, float *x) noexcept
    double fnn_sumsq_f64(int64_t n, double *x) noexcept

cdef inline double fnn_sumsq(int64_t n, floating *x) noexcept nogil:
    if floating is float:
        return fnn_sumsq_f32(n, x)
    else:
        return fnn_sumsq_f64(n, x)


cdef extern from "fnn.h" nogil:
    void fnn_scale_f32(int64_t n, float *x, float c) noexcept
    void fnn_scale_f64(int64_t n, double *x, double c) noexcept

cdef inline void fnn_scale(int64_t n, floating *x, double c) noexcept nogil:
    if floating is float:
        fnn_scale_f32(n, x, <float>c)
    else:
        fnn_scale_f64(n, x, c)


cdef extern from "fnn.h" nogil:
    void fnn_mul_f32(int64_t n, float *a, float *b, float *out) noexcept
    void fnn_mul_f64(int64_t n, double *a, double *b, double *out) noexcept

cdef inline void fnn_mul(int64_t n, floating *a, floating *b, floating *out) noexcept nogil:
    if floating is float:
        fnn_mul_f32(n, a, b, out)
    else:
        fnn_mul_f64(n, a, b, out)


cdef extern from "fnn.h" nogil:
    int fnn_all_finite_f32(int64_t n, float *x) noexcept
    int fnn_all_finite_f64(int64_t n, double *x) noexcept

cdef inline int fnn_all_finite(bint f64, int64_t n, void *x) noexcept nogil:
    if f64:
        return fnn_all_finite_f64(n, <double *>x)
    return fnn_all_finite_f32(n, <float *>x)


cdef extern from "fnn.h" nogil:
    void fnn_layernorm_forward_f32(int n, int d, float *x, float *gamma, float *beta, float eps, float *y, float *mean, float *rstd) noexcept
    void fnn_layernorm_forward_f64(int n, int d, double *x, double *gamma, double *beta, double eps, double *y, double *mean, double *rstd) noexcept

cdef inline void fnn_layernorm_forward(int n, int d, floating *x, floating *gamma, floating *beta,
        double eps, floating *y, floating *mean, floating *rstd) noexcept nogil:
    if floating is float:
        fnn_layernorm_forward_f32(n, d, x, gamma, beta, <float>eps, y, mean, rstd)
    else:
        fnn_layernorm_forward_f64(n, d, x, gamma, beta, eps, y, mean, rstd)


cdef extern from "fnn.h" nogil:
    void fnn_layernorm_backward_f32(int n, int d, float *x, float *gamma, float *mean, float *rstd, float *gy, float *gx, float *ggamma, float *gbeta, int accumulate) noexcept
    void fnn_layernorm_backward_f64(int n, int d, double *x, double *gamma, double *mean, double *rstd, double *gy, double *gx, double *ggamma, double *gbeta, int accumulate) noexcept

cdef inline void fnn_layernorm_backward(int n, int d, floating *x, floating *gamma, floating *mean,
        floating *rstd, floating *gy, floating *gx, floating *ggamma, floating *gbeta,
        int accumulate) noexcept nogil:
    if floating is float:
        fnn_layernorm_backward_f32(n, d, x, gamma, mean, rstd, gy, gx, ggamma, gbeta, accumulate)
    else:
        fnn_layernorm_backward_f64(n, d, x, gamma, mean, rstd, gy, gx, ggamma, gbeta, accumulate)


cdef extern from "fnn.h" nogil:
    void fnn_dropout_forward_f32(int64_t n, float *x, float *y, float *mask, double p, uint64_t seed) noexcept
    void fnn_dropout_forward_f64(int64_t n, double *x, double *y, double *mask, double p, uint64_t seed) noexcept

cdef inline void fnn_dropout_forward(int64_t n, floating *x, floating *y, floating *mask, double p,
        uint64_t seed) noexcept nogil:
    if floating is float:
        fnn_dropout_forward_f32(n, x, y, mask, p, seed)
    else:
        fnn_dropout_forward_f64(n, x, y, mask, p, seed)


cdef extern from "fnn.h" nogil:
    void fnn_embedding_forward_f32(int64_t n, int dim, int64_t *idx, float *W, float *out) noexcept
    void fnn_embedding_forward_f64(int64_t n, int dim, int64_t *idx, double *W, double *out) noexcept

cdef inline void fnn_embedding_forward(int64_t n, int dim, int64_t *idx, floating *W,
        floating *out) noexcept nogil:
    if floating is float:
        fnn_embedding_forward_f32(n, dim, idx, W, out)
    else:
        fnn_embedding_forward_f64(n, dim, idx, W, out)


cdef extern from "fnn.h" nogil:
    void fnn_embedding_backward_f32(int64_t n, int dim, int64_t num, int64_t *idx, float *gout, float *gW, int accumulate) noexcept
    void fnn_embedding_backward_f64(int64_t n, int dim, int64_t num, int64_t *idx, double *gout, double *gW, int accumulate) noexcept

cdef inline void fnn_embedding_backward(int64_t n, int dim, int64_t num, int64_t *idx,
        floating *gout, floating *gW, int accumulate) noexcept nogil:
    if floating is float:
        fnn_embedding_backward_f32(n, dim, num, idx, gout, gW, accumulate)
    else:
        fnn_embedding_backward_f64(n, dim, num, idx, gout, gW, accumulate)


cdef extern from "fnn.h" nogil:
    void fnn_dense_forward_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids) noexcept
    void fnn_dense_forward_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids) noexcept

cdef inline void fnn_dense_forward(bint f64, int n, int nl, fnn_dense *L, void *X, fnn_embed *emb,
        int64_t *ids) noexcept nogil:
    if f64:
        fnn_dense_forward_f64(n, nl, L, <double *>X, emb, ids)
    else:
        fnn_dense_forward_f32(n, nl, L, <float *>X, emb, ids)


cdef extern from "fnn.h" nogil:
    double fnn_dense_step_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, float *target, float smoothing, double max_norm, double *norm, fnn_update *u, int64_t np_, float *p, float *g) noexcept
    double fnn_dense_step_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, double *target, double smoothing, double max_norm, double *norm, fnn_update *u, int64_t np_, double *p, double *g) noexcept

cdef inline double fnn_dense_step(bint f64, int n, int nl, fnn_dense *L, void *X, fnn_embed *emb,
        int64_t *ids, int loss, int64_t *labels, void *target, double smoothing, double max_norm,
        double *norm, fnn_update *u, int64_t np_, void *p, void *g) noexcept nogil:
    if f64:
        return fnn_dense_step_f64(n, nl, L, <double *>X, emb, ids, loss, labels, <double *>target,
            smoothing, max_norm, norm, u, np_, <double *>p, <double *>g)
    return fnn_dense_step_f32(n, nl, L, <float *>X, emb, ids, loss, labels, <float *>target,
        <float>smoothing, max_norm, norm, u, np_, <float *>p, <float *>g)


cdef extern from "fnn.h" nogil:
    double fnn_dense_forward_backward_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, float *target, float smoothing, double grad_scale) noexcept
    double fnn_dense_forward_backward_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, double *target, double smoothing, double grad_scale) noexcept

cdef inline double fnn_dense_forward_backward(bint f64, int n, int nl, fnn_dense *L, void *X,
        fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, void *target, double smoothing,
        double grad_scale) noexcept nogil:
    if f64:
        return fnn_dense_forward_backward_f64(n, nl, L, <double *>X, emb, ids, loss, labels,
            <double *>target, smoothing, grad_scale)
    return fnn_dense_forward_backward_f32(n, nl, L, <float *>X, emb, ids, loss, labels,
        <float *>target, <float>smoothing, grad_scale)


cdef extern from "fnn.h" nogil:
    int fnn_clip_update_f32(double max_norm, double *norm, fnn_update *u, int64_t n, float *p, float *g) noexcept
    int fnn_clip_update_f64(double max_norm, double *norm, fnn_update *u, int64_t n, double *p, double *g) noexcept

cdef inline int fnn_clip_update(double max_norm, double *norm, fnn_update *u, int64_t n,
        floating *p, floating *g) noexcept nogil:
    if floating is float:
        return fnn_clip_update_f32(max_norm, norm, u, n, p, g)
    else:
        return fnn_clip_update_f64(max_norm, norm, u, n, p, g)
