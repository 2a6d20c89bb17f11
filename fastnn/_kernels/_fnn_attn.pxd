# Declarations of the C kernels for attention (csrc/fnn_attn_decl.h), each pair with its
# one fused shim; the pattern is written at the top of _fnn.pxd.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "fnn.h" nogil:
    void fnn_mha_forward_f32(int B, int L, int E, int H, int batch_first, const float *X, const float *Win, const float *bin, const float *Wout, const float *bout, const float *mask, int64_t mask_stride, int causal, const float *M, float *QKV, float *P, float *D, float *C, float *Y)
    void fnn_mha_forward_f64(int B, int L, int E, int H, int batch_first, const double *X, const double *Win, const double *bin, const double *Wout, const double *bout, const double *mask, int64_t mask_stride, int causal, const double *M, double *QKV, double *P, double *D, double *C, double *Y)

cdef inline void fnn_mha_forward(int B, int L, int E, int H, int batch_first, floating *X,
        floating *Win, floating *bin, floating *Wout, floating *bout, floating *mask,
        int64_t mask_stride, int causal, floating *M, floating *QKV, floating *P, floating *D,
        floating *C, floating *Y) noexcept nogil:
    if floating is float:
        fnn_mha_forward_f32(B, L, E, H, batch_first, X, Win, bin, Wout, bout, mask, mask_stride,
                            causal, M, QKV, P, D, C, Y)
    else:
        fnn_mha_forward_f64(B, L, E, H, batch_first, X, Win, bin, Wout, bout, mask, mask_stride,
                            causal, M, QKV, P, D, C, Y)


cdef extern from "fnn.h" nogil:
    void fnn_mha_backward_f32(int B, int L, int E, int H, int batch_first, const float *X, const float *Win, const float *Wout, const float *QKV, const float *P, const float *M, const float *D, const float *C, const float *dY, int causal, float *dC, float *G, float *dQKV, float *dX, float *dWin, float *dbin, float *dWout, float *dbout, int accumulate)
    void fnn_mha_backward_f64(int B, int L, int E, int H, int batch_first, const double *X, const double *Win, const double *Wout, const double *QKV, const double *P, const double *M, const double *D, const double *C, const double *dY, int causal, double *dC, double *G, double *dQKV, double *dX, double *dWin, double *dbin, double *dWout, double *dbout, int accumulate)

cdef inline void fnn_mha_backward(int B, int L, int E, int H, int batch_first, floating *X,
        floating *Win, floating *Wout, floating *QKV, floating *P, floating *M, floating *D,
        floating *C, floating *dY, int causal, floating *dC, floating *G, floating *dQKV,
        floating *dX, floating *dWin, floating *dbin, floating *dWout, floating *dbout,
        int accumulate) noexcept nogil:
    if floating is float:
        fnn_mha_backward_f32(B, L, E, H, batch_first, X, Win, Wout, QKV, P, M, D, C, dY, causal,
                             dC, G, dQKV, dX, dWin, dbin, dWout, dbout, accumulate)
    else:
        fnn_mha_backward_f64(B, L, E, H, batch_first, X, Win, Wout, QKV, P, M, D, C, dY, causal,
                             dC, G, dQKV, dX, dWin, dbin, dWout, dbout, accumulate)


cdef extern from "fnn.h" nogil:
    void fnn_attn_last_forward_f32(int B, int L, int E, int H, const float *q, const float *KV, float *P, float *C)
    void fnn_attn_last_forward_f64(int B, int L, int E, int H, const double *q, const double *KV, double *P, double *C)

cdef inline void fnn_attn_last_forward(int B, int L, int E, int H, floating *q, floating *KV,
        floating *P, floating *C) noexcept nogil:
    if floating is float:
        fnn_attn_last_forward_f32(B, L, E, H, q, KV, P, C)
    else:
        fnn_attn_last_forward_f64(B, L, E, H, q, KV, P, C)


cdef extern from "fnn.h" nogil:
    void fnn_attn_last_backward_f32(int B, int L, int E, int H, const float *q, const float *KV, const float *P, const float *dC, float *dq, float *dKV)
    void fnn_attn_last_backward_f64(int B, int L, int E, int H, const double *q, const double *KV, const double *P, const double *dC, double *dq, double *dKV)

cdef inline void fnn_attn_last_backward(int B, int L, int E, int H, floating *q, floating *KV,
        floating *P, floating *dC, floating *dq, floating *dKV) noexcept nogil:
    if floating is float:
        fnn_attn_last_backward_f32(B, L, E, H, q, KV, P, dC, dq, dKV)
    else:
        fnn_attn_last_backward_f64(B, L, E, H, q, KV, P, dC, dq, dKV)
