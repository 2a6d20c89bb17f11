# Declarations of the C kernels for the recurrent layers (csrc/fnn_rnn_decl.h): one
# entry point per direction for both cells (cs NULL: GRU, else LSTM), each pair with
# its one fused shim; the pattern is written at the top of _fnn.pxd.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "fnn.h" nogil:
    void fnn_rnn_forward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *bih, const float *bhh, float *hs, float *cs, float *G, float *gh, float *wp)
    void fnn_rnn_forward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *bih, const double *bhh, double *hs, double *cs, double *G, double *gh, double *wp)

cdef inline void fnn_rnn_forward(int Tn, int B, int In, int H, floating *X, floating *Wih,
        floating *Whh, floating *bih, floating *bhh, floating *hs, floating *cs, floating *G,
        floating *gh, floating *wp) noexcept nogil:
    if floating is float:
        fnn_rnn_forward_f32(Tn, B, In, H, X, Wih, Whh, bih, bhh, hs, cs, G, gh, wp)
    else:
        fnn_rnn_forward_f64(Tn, B, In, H, X, Wih, Whh, bih, bhh, hs, cs, G, gh, wp)


cdef extern from "fnn.h" nogil:
    void fnn_rnn_backward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *hs, const float *cs, const float *G, const float *Gh, const float *dY, float *dh, float *dc, float *dGx, float *dGh, float *dX, float *dWih, float *dWhh, float *dbih, float *dbhh, float *wp, int accumulate)
    void fnn_rnn_backward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *hs, const double *cs, const double *G, const double *Gh, const double *dY, double *dh, double *dc, double *dGx, double *dGh, double *dX, double *dWih, double *dWhh, double *dbih, double *dbhh, double *wp, int accumulate)

cdef inline void fnn_rnn_backward(int Tn, int B, int In, int H, floating *X, floating *Wih,
        floating *Whh, floating *hs, floating *cs, floating *G, floating *Gh, floating *dY,
        floating *dh, floating *dc, floating *dGx, floating *dGh, floating *dX, floating *dWih,
        floating *dWhh, floating *dbih, floating *dbhh, floating *wp, int accumulate) noexcept nogil:
    if floating is float:
        fnn_rnn_backward_f32(Tn, B, In, H, X, Wih, Whh, hs, cs, G, Gh, dY, dh, dc, dGx, dGh, dX,
                             dWih, dWhh, dbih, dbhh, wp, accumulate)
    else:
        fnn_rnn_backward_f64(Tn, B, In, H, X, Wih, Whh, hs, cs, G, Gh, dY, dh, dc, dGx, dGh, dX,
                             dWih, dWhh, dbih, dbhh, wp, accumulate)
