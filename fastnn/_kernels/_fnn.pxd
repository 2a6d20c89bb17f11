# Declarations of the C kernels in csrc/ (one line per dtype: the C side is
# generated from one template, so these pairs cannot drift apart).
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
    enum:
        FNN_LOSS_MSE
        FNN_LOSS_CE_LABELS
        FNN_LOSS_CE_PROBS
        FNN_LOSS_BCE
        FNN_LOSS_BCE_LOGITS
        FNN_OPT_SGD
        FNN_OPT_ADAM
        FNN_OPT_RMSPROP
        FNN_OPT_ADAGRAD
        FNN_OPT_NADAM
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
    void fnn_gemm_f32(int ta, int tb, int M, int N, int K, float alpha, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc) noexcept
    void fnn_gemm_split_f32(int nt, int dim, int parts, int ta, int tb, int M, int N, int K, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc) noexcept
    void fnn_linear_forward_f32(int n, int n_in, int n_out, float *X, int ldx, float *W, float *b, int act, float slope, float *Z, float *Y) noexcept
    void fnn_linear_backward_f32(int n, int n_in, int n_out, float *X, int ldx, float *W, int act, float slope, float *Z, float *Y, float *dY, float *dZ, float *dX, float *dW, float *db, int accumulate) noexcept
    void fnn_act_forward_f32(int act, float slope, int64_t n, float *x, float *y) noexcept
    void fnn_act_backward_f32(int act, float slope, int64_t n, float *x, float *y, float *gy, float *gx) noexcept
    void fnn_softmax_forward_f32(int n, int C, float *x, float *y) noexcept
    void fnn_softmax_backward_f32(int n, int C, float *y, float *gy, float *gx) noexcept
    double fnn_mse_f32(int64_t N, float *y, float *t, float *grad, float *w, int64_t k) noexcept
    double fnn_bce_f32(int64_t N, float *p, float *t, float *grad, float *w, int64_t k) noexcept
    double fnn_bce_logits_f32(int64_t N, float *z, float *t, float *grad, float *w, int64_t k) noexcept
    double fnn_cross_entropy_f32(int n, int C, float *z, int64_t *labels, float *probs, float smoothing, float *grad, float *w) noexcept
    void fnn_sgd_f32(int64_t n, float *p, float *g, float *buf, float lr, float momentum, float dampening, float wd, int nesterov, int first) noexcept
    void fnn_adam_f32(int64_t n, float *p, float *g, float *m, float *v, float lr, float beta1, float beta2, float eps, float wd, int decoupled, int64_t step) noexcept
    void fnn_rmsprop_f32(int64_t n, float *p, float *g, float *sq, float *gavg, float *buf, float lr, float alpha, float eps, float wd, float momentum) noexcept
    double fnn_sumsq_f32(int64_t n, float *x) noexcept
    void fnn_scale_f32(int64_t n, float *x, float c) noexcept
    void fnn_mul_f32(int64_t n, float *a, float *b, float *out) noexcept
    int fnn_all_finite_f32(int64_t n, float *x) noexcept
    void fnn_layernorm_forward_f32(int n, int d, float *x, float *gamma, float *beta, float eps, float *y, float *mean, float *rstd) noexcept
    void fnn_layernorm_backward_f32(int n, int d, float *x, float *gamma, float *mean, float *rstd, float *gy, float *gx, float *ggamma, float *gbeta, int accumulate) noexcept
    void fnn_dropout_forward_f32(int64_t n, float *x, float *y, float *mask, double p, uint64_t seed) noexcept
    void fnn_embedding_forward_f32(int64_t n, int dim, int64_t *idx, float *W, float *out) noexcept
    void fnn_embedding_backward_f32(int64_t n, int dim, int64_t num, int64_t *idx, float *gout, float *gW, int accumulate) noexcept
    void fnn_gemm_f64(int ta, int tb, int M, int N, int K, double alpha, double *A, int lda, double *B, int ldb, double beta, double *C, int ldc) noexcept
    void fnn_gemm_split_f64(int nt, int dim, int parts, int ta, int tb, int M, int N, int K, double *A, int lda, double *B, int ldb, double beta, double *C, int ldc) noexcept
    void fnn_linear_forward_f64(int n, int n_in, int n_out, double *X, int ldx, double *W, double *b, int act, double slope, double *Z, double *Y) noexcept
    void fnn_linear_backward_f64(int n, int n_in, int n_out, double *X, int ldx, double *W, int act, double slope, double *Z, double *Y, double *dY, double *dZ, double *dX, double *dW, double *db, int accumulate) noexcept
    void fnn_act_forward_f64(int act, double slope, int64_t n, double *x, double *y) noexcept
    void fnn_act_backward_f64(int act, double slope, int64_t n, double *x, double *y, double *gy, double *gx) noexcept
    void fnn_softmax_forward_f64(int n, int C, double *x, double *y) noexcept
    void fnn_softmax_backward_f64(int n, int C, double *y, double *gy, double *gx) noexcept
    double fnn_mse_f64(int64_t N, double *y, double *t, double *grad, double *w, int64_t k) noexcept
    double fnn_bce_f64(int64_t N, double *p, double *t, double *grad, double *w, int64_t k) noexcept
    double fnn_bce_logits_f64(int64_t N, double *z, double *t, double *grad, double *w, int64_t k) noexcept
    double fnn_cross_entropy_f64(int n, int C, double *z, int64_t *labels, double *probs, double smoothing, double *grad, double *w) noexcept
    void fnn_sgd_f64(int64_t n, double *p, double *g, double *buf, double lr, double momentum, double dampening, double wd, int nesterov, int first) noexcept
    void fnn_adam_f64(int64_t n, double *p, double *g, double *m, double *v, double lr, double beta1, double beta2, double eps, double wd, int decoupled, int64_t step) noexcept
    void fnn_rmsprop_f64(int64_t n, double *p, double *g, double *sq, double *gavg, double *buf, double lr, double alpha, double eps, double wd, double momentum) noexcept
    double fnn_sumsq_f64(int64_t n, double *x) noexcept
    void fnn_scale_f64(int64_t n, double *x, double c) noexcept
    void fnn_mul_f64(int64_t n, double *a, double *b, double *out) noexcept
    int fnn_all_finite_f64(int64_t n, double *x) noexcept
    void fnn_layernorm_forward_f64(int n, int d, double *x, double *gamma, double *beta, double eps, double *y, double *mean, double *rstd) noexcept
    void fnn_layernorm_backward_f64(int n, int d, double *x, double *gamma, double *mean, double *rstd, double *gy, double *gx, double *ggamma, double *gbeta, int accumulate) noexcept
    void fnn_dropout_forward_f64(int64_t n, double *x, double *y, double *mask, double p, uint64_t seed) noexcept
    void fnn_embedding_forward_f64(int64_t n, int dim, int64_t *idx, double *W, double *out) noexcept
    void fnn_embedding_backward_f64(int64_t n, int dim, int64_t num, int64_t *idx, double *gout, double *gW, int accumulate) noexcept
    void fnn_dense_forward_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids) noexcept
    double fnn_dense_step_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, float *target, float smoothing, double max_norm, double *norm, fnn_update *u, int64_t np_, float *p, float *g) noexcept
    double fnn_dense_forward_backward_f32(int n, int nl, fnn_dense *L, float *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, float *target, float smoothing, double grad_scale) noexcept
    void fnn_update_apply_f32(fnn_update *u, int64_t n, float *p, float *g) noexcept
    int fnn_clip_update_f32(double max_norm, double *norm, fnn_update *u, int64_t n, float *p, float *g) noexcept
    void fnn_dense_forward_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids) noexcept
    double fnn_dense_step_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, double *target, double smoothing, double max_norm, double *norm, fnn_update *u, int64_t np_, double *p, double *g) noexcept
    double fnn_dense_forward_backward_f64(int n, int nl, fnn_dense *L, double *X, fnn_embed *emb, int64_t *ids, int loss, int64_t *labels, double *target, double smoothing, double grad_scale) noexcept
    void fnn_update_apply_f64(fnn_update *u, int64_t n, double *p, double *g) noexcept
    int fnn_clip_update_f64(double max_norm, double *norm, fnn_update *u, int64_t n, double *p, double *g) noexcept
