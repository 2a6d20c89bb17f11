/* fastnn C kernels: the compute floor under the Cython wrappers.
 * Every kernel exists for float (suffix _f32) and double (_f64), generated from
 * one templated source (fnn_template.h), so the two dtypes can never drift. */
#ifndef FNN_H
#define FNN_H
#include <stdint.h>

/* The numbered codes (FNN_ACT_*, FNN_LOSS_*, FNN_OPT_*) are defined here and nowhere
 * else: _fnn.pxd declares them and _ops exports them to Python (ACT_RELU, ...).
 * The GELU forms come last: they alone read the pre-activation (act >= FNN_ACT_GELU). */
enum { FNN_ACT_NONE = 0, FNN_ACT_RELU = 1, FNN_ACT_LEAKY = 2, FNN_ACT_SIGMOID = 3,
       FNN_ACT_TANH = 4, FNN_ACT_GELU = 5, FNN_ACT_GELU_TANH = 6 };

/* Fortran BLAS entry points, handed over from scipy.linalg.cython_blas. */
typedef void (*fnn_sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*,
                            float*, int*, float*, float*, int*);
typedef void (*fnn_dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                            double*, int*, double*, double*, int*);
typedef void (*fnn_sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*,
                            float*, float*, int*);
typedef void (*fnn_dgemv_t)(char*, int*, int*, double*, double*, int*, double*, int*,
                            double*, double*, int*);
void fnn_set_blas(fnn_sgemm_t sgemm, fnn_dgemm_t dgemm, fnn_sgemv_t sgemv, fnn_dgemv_t dgemv);

void fnn_set_threads(int n);
int fnn_get_threads(void);
int fnn_openmp_enabled(void);
/* Force every planned GEMM into `parts` blocks along dim (0 rows, 1 columns, 2 one
 * call), or -1 to plan by measurement again; plans made so far: one call/rows/columns. */
void fnn_set_split(int dim, int parts);
void fnn_split_stats(int *out);
int fnn_openmp_max_threads(void);
/* Whether this process (or the parent it was forked from) ever ran an OpenMP
 * parallel region: GNU OpenMP's pool then exists and does not survive fork. */
int fnn_openmp_pool_started(void);
int fnn_labels_in_range(int64_t n, const int64_t *labels, int64_t C);

/* One dense layer of a compiled training program: y = act(x W^T + b). The
 * pointers are to the dtype of the program; dX is the previous layer's dY. */
typedef struct {
    int n_in, n_out, act;
    double slope;
    void *W, *b, *dW, *db;   /* b and db may be NULL */
    void *Z, *Y, *dY, *dZ, *dX; /* workspaces: Z only for GELU, dZ may be dY, dX NULL first */
} fnn_dense;

/* An optional embedding in front of a dense stack: ids (n, k) -> rows of E,
 * concatenated into X0 (n, k*dim); the backward scatter-adds dX0 into dE. */
typedef struct {
    int64_t num;
    int dim, k;
    void *E, *dE, *X0, *dX0;
} fnn_embed;

enum { FNN_LOSS_MSE = 0, FNN_LOSS_CE_LABELS = 1, FNN_LOSS_CE_PROBS = 2, FNN_LOSS_BCE = 3,
       FNN_LOSS_BCE_LOGITS = 4 };

/* One optimizer update over a flat parameter buffer: which rule, its named
 * hyperparameters for this step, and its state buffers (each shaped like the
 * parameters, of their dtype; NULL when the rule does not use it). Built by the
 * optimizer class that owns the rule (fastnn/optim.py, via _ops.Update). */
typedef struct { double lr, momentum, dampening, weight_decay; int nesterov, first;
                 void *momentum_buffer; } fnn_sgd_args;
typedef struct { double lr, beta1, beta2, eps, weight_decay; int decoupled; int64_t step;
                 void *exp_avg, *exp_avg_sq; } fnn_adam_args;
typedef struct { double lr, alpha, eps, weight_decay, momentum;
                 void *square_avg, *grad_avg, *momentum_buffer; } fnn_rmsprop_args;
typedef struct { double lr, lr_decay, weight_decay, eps; int64_t step; void *sum; } fnn_adagrad_args;
/* mu_product: the product of the momentum schedule up to this step (torch's state). */
typedef struct { double lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product;
                 int decoupled; int64_t step; void *exp_avg, *exp_avg_sq; } fnn_nadam_args;
enum { FNN_OPT_SGD = 0, FNN_OPT_ADAM = 1, FNN_OPT_RMSPROP = 2, FNN_OPT_ADAGRAD = 3,
       FNN_OPT_NADAM = 4 };
typedef struct {
    int kind;  /* FNN_OPT_*: which member of the union is set */
    union { fnn_sgd_args sgd; fnn_adam_args adam; fnn_rmsprop_args rmsprop;
            fnn_adagrad_args adagrad; fnn_nadam_args nadam; } u;
} fnn_update;

#define FNN_T float
#define FNN_S(name) name##_f32
#include "fnn_decl.h"
#undef FNN_T
#undef FNN_S
#define FNN_T double
#define FNN_S(name) name##_f64
#include "fnn_decl.h"
#undef FNN_T
#undef FNN_S
#endif
