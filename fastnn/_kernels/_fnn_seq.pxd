# Declarations of the C kernels for EmbeddingBag, Conv1d and the (batch, time, ...)
# sequence losses (csrc/fnn_seq_decl.h), each pair with its one fused shim; the
# pattern is written at the top of _fnn.pxd.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "fnn.h" nogil:
    enum:
        FNN_BAG_SUM
        FNN_BAG_MEAN
        FNN_BAG_MAX


cdef extern from "fnn.h" nogil:
    double fnn_cross_entropy_ignore_f32(int n, int C, const float *z, const int64_t *labels, int64_t ignore, float smoothing, float *grad, const float *w, int64_t *count)
    double fnn_cross_entropy_ignore_f64(int n, int C, const double *z, const int64_t *labels, int64_t ignore, double smoothing, double *grad, const double *w, int64_t *count)

cdef inline double fnn_cross_entropy_ignore(int n, int C, floating *z, int64_t *labels,
        int64_t ignore, double smoothing, floating *grad, floating *w,
        int64_t *count) noexcept nogil:
    if floating is float:
        return fnn_cross_entropy_ignore_f32(n, C, z, labels, ignore, <float>smoothing, grad, w,
                                            count)
    else:
        return fnn_cross_entropy_ignore_f64(n, C, z, labels, ignore, smoothing, grad, w, count)


cdef extern from "fnn.h" nogil:
    void fnn_embedding_bag_forward_f32(int64_t n, int bag, int dim, const int64_t *idx, const float *W, int mode, float *out, int64_t *arg)
    void fnn_embedding_bag_forward_f64(int64_t n, int bag, int dim, const int64_t *idx, const double *W, int mode, double *out, int64_t *arg)

cdef inline void fnn_embedding_bag_forward(int64_t n, int bag, int dim, int64_t *idx,
        floating *W, int mode, floating *out, int64_t *arg) noexcept nogil:
    if floating is float:
        fnn_embedding_bag_forward_f32(n, bag, dim, idx, W, mode, out, arg)
    else:
        fnn_embedding_bag_forward_f64(n, bag, dim, idx, W, mode, out, arg)


cdef extern from "fnn.h" nogil:
    void fnn_embedding_bag_backward_f32(int64_t n, int bag, int dim, int64_t num, const int64_t *idx, const float *gout, int mode, const int64_t *arg, float *gW, int accumulate)
    void fnn_embedding_bag_backward_f64(int64_t n, int bag, int dim, int64_t num, const int64_t *idx, const double *gout, int mode, const int64_t *arg, double *gW, int accumulate)

cdef inline void fnn_embedding_bag_backward(int64_t n, int bag, int dim, int64_t num,
        int64_t *idx, floating *gout, int mode, int64_t *arg, floating *gW,
        int accumulate) noexcept nogil:
    if floating is float:
        fnn_embedding_bag_backward_f32(n, bag, dim, num, idx, gout, mode, arg, gW, accumulate)
    else:
        fnn_embedding_bag_backward_f64(n, bag, dim, num, idx, gout, mode, arg, gW, accumulate)


cdef extern from "fnn.h" nogil:
    void fnn_conv1d_forward_f32(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const float *x, const float *W, const float *b, int relu, float *Wr, float *col, float *y)
    void fnn_conv1d_forward_f64(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const double *x, const double *W, const double *b, int relu, double *Wr, double *col, double *y)

cdef inline void fnn_conv1d_forward(int B, int Cin, int L, int Cout, int k, int stride, int dil,
        int pl, int Lout, floating *x, floating *W, floating *b, int relu, floating *Wr,
        floating *col, floating *y) noexcept nogil:
    if floating is float:
        fnn_conv1d_forward_f32(B, Cin, L, Cout, k, stride, dil, pl, Lout, x, W, b, relu, Wr, col, y)
    else:
        fnn_conv1d_forward_f64(B, Cin, L, Cout, k, stride, dil, pl, Lout, x, W, b, relu, Wr, col, y)


cdef extern from "fnn.h" nogil:
    void fnn_conv1d_backward_f32(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const float *Wr, const float *col, const float *y, int relu, const float *gy, float *gz, float *dWr, float *dcol, float *gx, float *gW, float *gb, int accumulate)
    void fnn_conv1d_backward_f64(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const double *Wr, const double *col, const double *y, int relu, const double *gy, double *gz, double *dWr, double *dcol, double *gx, double *gW, double *gb, int accumulate)

cdef inline void fnn_conv1d_backward(int B, int Cin, int L, int Cout, int k, int stride,
        int dil, int pl, int Lout, floating *Wr, floating *col, floating *y, int relu,
        floating *gy, floating *gz, floating *dWr, floating *dcol, floating *gx, floating *gW,
        floating *gb, int accumulate) noexcept nogil:
    if floating is float:
        fnn_conv1d_backward_f32(B, Cin, L, Cout, k, stride, dil, pl, Lout, Wr, col, y, relu, gy,
                                gz, dWr, dcol, gx, gW, gb, accumulate)
    else:
        fnn_conv1d_backward_f64(B, Cin, L, Cout, k, stride, dil, pl, Lout, Wr, col, y, relu, gy,
                                gz, dWr, dcol, gx, gW, gb, accumulate)
