/* Declarations for the recurrent layers: GRU and LSTM (fnn_rnn.h); included by fnn_decl.h once per dtype.
 * One entry point per direction serves both cells: cs == NULL makes it a GRU
 * (torch's gate order r, z, n: 3H gate columns), cs given an LSTM (i, f, g, o:
 * 4H columns, cs (Tn+1, B, H) the cell states, cs[0] = c0 in).
 * wp is a workspace for W_hh packed into panels: G * (H + 1) * Hp values,
 * Hp = H rounded up to a multiple of 16. X = NULL: G already holds the input
 * projection x W_ih^T + b_ih (forward), and backward stops at the gate gradients,
 * leaving dW_ih, db_ih and dX to the caller. */
/* One layer over Tn steps, time-major: X (Tn*B, I); W_ih (GH, I); W_hh (GH, H);
 * b_ih, b_hh (GH) or NULL. hs (Tn+1, B, H): hs[0] = h0 in, hs[t+1] = h_t out.
 * G (Tn*B, GH) out: the gate activations. gh: h_{t-1} W_hh^T + b_hh, for the GRU
 * every step's (Tn*B, 3H) out, for the LSTM a (B, 4H) workspace. */
void FNN_S(fnn_rnn_forward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                            const FNN_T *Whh, const FNN_T *bih, const FNN_T *bhh, FNN_T *hs,
                            FNN_T *cs, FNN_T *G, FNN_T *gh, FNN_T *wp);
/* Backward through time from dY (Tn*B, H), the gradient of hs[1:], and dh (B, H),
 * the gradient of h_n, which becomes the gradient of h0 (LSTM: dc likewise for
 * c_n and c0; NULL for the GRU). Gh: the GRU's forward gh (unread for the LSTM).
 * dGx, dGh (Tn*B, GH) workspaces for the input and recurrent gate gradients (the
 * same array for the LSTM, where they are equal); dX (may be NULL), dW_ih, dW_hh,
 * db_ih, db_hh (may be NULL) written (or added to with accumulate). */
void FNN_S(fnn_rnn_backward)(int Tn, int B, int In, int H, const FNN_T *X, const FNN_T *Wih,
                             const FNN_T *Whh, const FNN_T *hs, const FNN_T *cs, const FNN_T *G,
                             const FNN_T *Gh, const FNN_T *dY, FNN_T *dh, FNN_T *dc, FNN_T *dGx,
                             FNN_T *dGh, FNN_T *dX, FNN_T *dWih, FNN_T *dWhh, FNN_T *dbih,
                             FNN_T *dbhh, FNN_T *wp, int accumulate);
