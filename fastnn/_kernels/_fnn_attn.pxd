# Declarations of the C kernels for attention: MultiheadAttention and the transformer block (csrc/fnn_attn_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    void fnn_mha_forward_f32(int B, int L, int E, int H, int batch_first, const float *X,
                             const float *Win, const float *bin, const float *Wout,
                             const float *bout, const float *mask, int64_t mask_stride, int causal,
                             const float *M, float *QKV, float *P, float *D, float *C, float *Y)
    void fnn_mha_forward_f64(int B, int L, int E, int H, int batch_first, const double *X,
                             const double *Win, const double *bin, const double *Wout,
                             const double *bout, const double *mask, int64_t mask_stride,
                             int causal, const double *M, double *QKV, double *P, double *D,
                             double *C, double *Y)
    void fnn_mha_backward_f32(int B, int L, int E, int H, int batch_first, const float *X,
                              const float *Win, const float *Wout, const float *QKV,
                              const float *P, const float *M, const float *D, const float *C,
                              const float *dY, int causal,
                              float *dC, float *G, float *dQKV, float *dX, float *dWin,
                              float *dbin, float *dWout, float *dbout, int accumulate)
    void fnn_mha_backward_f64(int B, int L, int E, int H, int batch_first, const double *X,
                              const double *Win, const double *Wout, const double *QKV,
                              const double *P, const double *M, const double *D, const double *C,
                              const double *dY, int causal,
                              double *dC, double *G, double *dQKV, double *dX, double *dWin,
                              double *dbin, double *dWout, double *dbout, int accumulate)
    void fnn_attn_last_forward_f32(int B, int L, int E, int H, const float *q, const float *KV,
                                   float *P, float *C)
    void fnn_attn_last_backward_f32(int B, int L, int E, int H, const float *q, const float *KV,
                                    const float *P, const float *dC, float *dq, float *dKV)
    void fnn_attn_last_forward_f64(int B, int L, int E, int H, const double *q, const double *KV,
                                   double *P, double *C)
    void fnn_attn_last_backward_f64(int B, int L, int E, int H, const double *q, const double *KV,
                                    const double *P, const double *dC, double *dq, double *dKV)
