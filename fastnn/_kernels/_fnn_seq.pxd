# Declarations of the C kernels for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses (csrc/fnn_seq_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    enum:
        FNN_BAG_SUM
        FNN_BAG_MEAN
        FNN_BAG_MAX
    double fnn_cross_entropy_ignore_f32(int n, int C, const float *z, const int64_t *labels, int64_t ignore, float smoothing, float *grad, const float *w, int64_t *count)
    double fnn_cross_entropy_ignore_f64(int n, int C, const double *z, const int64_t *labels, int64_t ignore, double smoothing, double *grad, const double *w, int64_t *count)
    void fnn_embedding_bag_forward_f32(int64_t n, int bag, int dim, const int64_t *idx, const float *W, int mode, float *out, int64_t *arg)
    void fnn_embedding_bag_forward_f64(int64_t n, int bag, int dim, const int64_t *idx, const double *W, int mode, double *out, int64_t *arg)
    void fnn_embedding_bag_backward_f32(int64_t n, int bag, int dim, int64_t num, const int64_t *idx, const float *gout, int mode, const int64_t *arg, float *gW, int accumulate)
    void fnn_embedding_bag_backward_f64(int64_t n, int bag, int dim, int64_t num, const int64_t *idx, const double *gout, int mode, const int64_t *arg, double *gW, int accumulate)
    void fnn_conv1d_forward_f32(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const float *x, const float *W, const float *b, int relu, float *Wr, float *col, float *y)
    void fnn_conv1d_forward_f64(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const double *x, const double *W, const double *b, int relu, double *Wr, double *col, double *y)
    void fnn_conv1d_backward_f32(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const float *Wr, const float *col, const float *y, int relu, const float *gy, float *gz, float *dWr, float *dcol, float *gx, float *gW, float *gb, int accumulate)
    void fnn_conv1d_backward_f64(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl, int Lout, const double *Wr, const double *col, const double *y, int relu, const double *gy, double *gz, double *dWr, double *dcol, double *gx, double *gW, double *gb, int accumulate)
