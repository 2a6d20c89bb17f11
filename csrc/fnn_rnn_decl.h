/* Declarations for the recurrent layers: GRU and LSTM (fnn_rnn.h); included by fnn_decl.h once per dtype.
 * wp is a workspace for W_hh packed into panels: G * (H + 1) * Hp values,
 * Hp = H rounded up to a multiple of 16. X = NULL: G already holds the input
 * projection x W_ih^T + b_ih (forward), and backward stops at the gate gradients
 * (dGx for the GRU, dG for the LSTM), leaving dW_ih, db_ih and dX to the caller. */
/* One GRU layer over Tn steps, time-major, torch's gate order (r, z, n):
 * X (Tn*B, I); W_ih (3H, I); W_hh (3H, H); b_ih, b_hh (3H) or NULL.
 * hs (Tn+1, B, H): hs[0] = h0 in, hs[t+1] = h_t out. G (Tn*B, 3H) out: the gate
 * activations r, z, n; Gh (Tn*B, 3H) out: h_{t-1} W_hh^T + b_hh per step. */
void FNN_S(fnn_gru_forward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                            const FNN_T *Whh, const FNN_T *bih, const FNN_T *bhh, FNN_T *hs,
                            FNN_T *G, FNN_T *Gh, FNN_T *wp);
/* Backward through time from dY (Tn*B, H), the gradient of hs[1:], and dh (B, H),
 * the gradient of h_n, which becomes the gradient of h0. dGx, dGh (Tn*B, 3H) are
 * workspaces; dX (may be NULL), dW_ih, dW_hh, db_ih, db_hh (may be NULL) written
 * (or added to with accumulate). */
void FNN_S(fnn_gru_backward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                             const FNN_T *Whh, const FNN_T *hs, const FNN_T *G, const FNN_T *Gh,
                             const FNN_T *dY, FNN_T *dh, FNN_T *dGx, FNN_T *dGh, FNN_T *dX,
                             FNN_T *dWih, FNN_T *dWhh, FNN_T *dbih, FNN_T *dbhh, FNN_T *wp,
                             int accumulate);
/* One LSTM layer, gate order (i, f, g, o): as the GRU with 4H gate columns, and
 * cs (Tn+1, B, H) the cell states (cs[0] = c0 in); gh (B, 4H) a workspace. */
void FNN_S(fnn_lstm_forward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                             const FNN_T *Whh, const FNN_T *bih, const FNN_T *bhh, FNN_T *hs,
                             FNN_T *cs, FNN_T *G, FNN_T *gh, FNN_T *wp);
/* dh, dc (B, H): gradients of h_n, c_n in, of h0, c0 out; dG (Tn*B, 4H) a workspace. */
void FNN_S(fnn_lstm_backward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                              const FNN_T *Whh, const FNN_T *hs, const FNN_T *cs, const FNN_T *G,
                              const FNN_T *dY, FNN_T *dh, FNN_T *dc, FNN_T *dG, FNN_T *dX,
                              FNN_T *dWih, FNN_T *dWhh, FNN_T *dbih, FNN_T *dbhh, FNN_T *wp,
                              int accumulate);
