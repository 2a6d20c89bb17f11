# Declarations of the C kernels for the recurrent layers: GRU and LSTM (csrc/fnn_rnn_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    void fnn_gru_forward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *bih, const float *bhh, float *hs, float *G, float *Gh, float *wp)
    void fnn_gru_forward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *bih, const double *bhh, double *hs, double *G, double *Gh, double *wp)
    void fnn_gru_backward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *hs, const float *G, const float *Gh, const float *dY, float *dh, float *dGx, float *dGh, float *dX, float *dWih, float *dWhh, float *dbih, float *dbhh, float *wp, int accumulate)
    void fnn_gru_backward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *hs, const double *G, const double *Gh, const double *dY, double *dh, double *dGx, double *dGh, double *dX, double *dWih, double *dWhh, double *dbih, double *dbhh, double *wp, int accumulate)
    void fnn_lstm_forward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *bih, const float *bhh, float *hs, float *cs, float *G, float *gh, float *wp)
    void fnn_lstm_forward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *bih, const double *bhh, double *hs, double *cs, double *G, double *gh, double *wp)
    void fnn_lstm_backward_f32(int Tn, int B, int In, int H, const float *X, const float *Wih, const float *Whh, const float *hs, const float *cs, const float *G, const float *dY, float *dh, float *dc, float *dG, float *dX, float *dWih, float *dWhh, float *dbih, float *dbhh, float *wp, int accumulate)
    void fnn_lstm_backward_f64(int Tn, int B, int In, int H, const double *X, const double *Wih, const double *Whh, const double *hs, const double *cs, const double *G, const double *dY, double *dh, double *dc, double *dG, double *dX, double *dWih, double *dWhh, double *dbih, double *dbhh, double *wp, int accumulate)
