/* Declarations of the dtype-templated kernels; included once per dtype by fnn.h. */
/* Row-major C = alpha op(A) op(B) + beta C on the calling thread (gemv for one row). */
void FNN_S(fnn_gemm)(int ta, int tb, int M, int N, int K, FNN_T alpha, const FNN_T *A, int lda,
                     const FNN_T *B, int ldb, FNN_T beta, FNN_T *C, int ldc);
/* The same product cut into `parts` row (dim 0) or column (dim 1) blocks, on up
 * to nt threads; for tests of the cuts' bits. */
void FNN_S(fnn_gemm_split)(int nt, int dim, int parts, int ta, int tb, int M, int N, int K,
                           const FNN_T *A, int lda, const FNN_T *B, int ldb, FNN_T beta, FNN_T *C,
                           int ldc);
/* Y = act(X W^T + b); Z keeps the pre-activation (needed by GELU only; may be NULL otherwise). */
void FNN_S(fnn_linear_forward)(int n, int in, int out, const FNN_T *X, int ldx, const FNN_T *W,
                               const FNN_T *b, int act, FNN_T slope, FNN_T *Z, FNN_T *Y);
/* From dY (grad of Y): dZ = dY * act'; db (+)= colsum dZ; dW (+)= dZ^T X; dX = dZ W.
 * dZ may alias dY; dX and db may be NULL. */
void FNN_S(fnn_linear_backward)(int n, int in, int out, const FNN_T *X, int ldx, const FNN_T *W,
                                int act, FNN_T slope, const FNN_T *Z, const FNN_T *Y,
                                const FNN_T *dY, FNN_T *dZ, FNN_T *dX, FNN_T *dW, FNN_T *db,
                                int accumulate);
void FNN_S(fnn_act_forward)(int act, FNN_T slope, int64_t n, const FNN_T *x, FNN_T *y);
void FNN_S(fnn_act_backward)(int act, FNN_T slope, int64_t n, const FNN_T *x, const FNN_T *y,
                             const FNN_T *gy, FNN_T *gx);
void FNN_S(fnn_softmax_forward)(int n, int C, const FNN_T *x, FNN_T *y);
void FNN_S(fnn_softmax_backward)(int n, int C, const FNN_T *y, const FNN_T *gy, FNN_T *gx);

/* Losses: mean loss returned, gradient of the mean written to grad (may be NULL);
 * w: optional weight per row of k elements (NULL: unweighted). The pointwise ones
 * take kind FNN_LOSS_MSE, FNN_LOSS_BCE (y: probabilities) or FNN_LOSS_BCE_LOGITS. */
double FNN_S(fnn_pointwise_loss)(int kind, int64_t N, const FNN_T *y, const FNN_T *t,
                                 FNN_T *grad, const FNN_T *w, int64_t k);
/* Softmax cross-entropy on logits; targets are labels (int64) or probs (n, C). */
double FNN_S(fnn_cross_entropy)(int n, int C, const FNN_T *z, const int64_t *labels,
                                const FNN_T *probs, FNN_T smoothing, FNN_T *grad,
                                const FNN_T *w);

/* Optimizer updates: one in-place pass each, PyTorch's update rules. */
void FNN_S(fnn_sgd)(int64_t n, FNN_T *p, const FNN_T *g, FNN_T *buf, FNN_T lr, FNN_T momentum,
                    FNN_T dampening, FNN_T wd, int nesterov, int first);
void FNN_S(fnn_adam)(int64_t n, FNN_T *p, const FNN_T *g, FNN_T *m, FNN_T *v, FNN_T lr,
                     FNN_T beta1, FNN_T beta2, FNN_T eps, FNN_T wd, int decoupled, int64_t step);
void FNN_S(fnn_rmsprop)(int64_t n, FNN_T *p, const FNN_T *g, FNN_T *sq, FNN_T *gavg, FNN_T *buf,
                        FNN_T lr, FNN_T alpha, FNN_T eps, FNN_T wd, FNN_T momentum);
void FNN_S(fnn_adagrad)(int64_t n, FNN_T *p, const FNN_T *g, FNN_T *sum, FNN_T clr, FNN_T wd,
                        FNN_T eps);
void FNN_S(fnn_nadam)(int64_t n, FNN_T *p, const FNN_T *g, FNN_T *m, FNN_T *v, FNN_T lr,
                      FNN_T beta1, FNN_T beta2, FNN_T eps, FNN_T wd, int decoupled,
                      double bias_correction2, double grad_coef, double avg_coef);
/* The update u over n parameters p with gradients g: dispatches to the rule's kernel. */
void FNN_S(fnn_update_apply)(const fnn_update *u, int64_t n, FNN_T *p, const FNN_T *g);
/* Clip g to max_norm (if >= 0; the norm before clipping goes to *norm) and apply u.
 * Returns 0, or -1 without touching p when the norm is not finite. */
int FNN_S(fnn_clip_update)(double max_norm, double *norm, const fnn_update *u, int64_t n,
                           FNN_T *p, FNN_T *g);
double FNN_S(fnn_sumsq)(int64_t n, const FNN_T *x);
void FNN_S(fnn_scale)(int64_t n, FNN_T *x, FNN_T c);
void FNN_S(fnn_mul)(int64_t n, const FNN_T *a, const FNN_T *b, FNN_T *out);
int FNN_S(fnn_all_finite)(int64_t n, const FNN_T *x);

void FNN_S(fnn_layernorm_forward)(int n, int d, const FNN_T *x, const FNN_T *gamma,
                                  const FNN_T *beta, FNN_T eps, FNN_T *y, FNN_T *mean,
                                  FNN_T *rstd);
void FNN_S(fnn_layernorm_backward)(int n, int d, const FNN_T *x, const FNN_T *gamma,
                                   const FNN_T *mean, const FNN_T *rstd, const FNN_T *gy,
                                   FNN_T *gx, FNN_T *ggamma, FNN_T *gbeta, int accumulate);
/* Inverted dropout with a counter-based RNG: the mask depends on (seed, index) only. */
void FNN_S(fnn_dropout_forward)(int64_t n, const FNN_T *x, FNN_T *y, FNN_T *mask, double p,
                                uint64_t seed);
void FNN_S(fnn_embedding_forward)(int64_t n, int dim, const int64_t *idx, const FNN_T *W,
                                  FNN_T *out);
void FNN_S(fnn_embedding_backward)(int64_t n, int dim, int64_t num, const int64_t *idx,
                                   const FNN_T *gout, FNN_T *gW, int accumulate);

/* Forward through a dense stack; the output is the last layer's Y. */
void FNN_S(fnn_dense_forward)(int n, int nl, const fnn_dense *L, const FNN_T *X,
                              const fnn_embed *emb, const int64_t *ids);
/* One whole training step of a dense stack in one call: forward, loss (value
 * returned, gradient into the last dY), backward, clipping to max_norm (if >= 0;
 * the norm before clipping goes to *norm), and the optimizer update u over the
 * flat parameter buffer p with gradients g.
 * With emb, the input is ids (X unused) and E's gradient is part of g. A
 * non-finite loss (or gradient norm, when clipping) returns before the update. */
double FNN_S(fnn_dense_step)(int n, int nl, const fnn_dense *L, const FNN_T *X,
                             const fnn_embed *emb, const int64_t *ids, int loss,
                             const int64_t *labels, const FNN_T *target, FNN_T smoothing,
                             double max_norm, double *norm, const fnn_update *u,
                             int64_t np_, FNN_T *p, FNN_T *g);
/* The first half of the step (forward, loss, backward; the loss gradient scaled
 * by grad_scale), for callers that reduce gradients before fnn_clip_update. */
double FNN_S(fnn_dense_forward_backward)(int n, int nl, const fnn_dense *L, const FNN_T *X,
                                         const fnn_embed *emb, const int64_t *ids, int loss,
                                         const int64_t *labels, const FNN_T *target,
                                         FNN_T smoothing, double grad_scale);

#include "fnn_seq_decl.h"
#include "fnn_rnn_decl.h"
#include "fnn_attn_decl.h"
