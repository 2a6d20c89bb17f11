/* Declarations for attention: MultiheadAttention and the transformer block (fnn_attn.h); included by fnn_decl.h once per dtype. */
/* Self-attention (torch.nn.MultiheadAttention with query = key = value) over B
 * sequences of L tokens of width E in H heads. X, C, Y are (rows, E), QKV (rows, 3E),
 * rows in (b, t) order when batch_first, else (t, b). P (B, H, L, L) keeps the
 * attention probabilities for the backward; mask (L, L) is added to the scaled
 * scores (NULL: none; -inf = not allowed), sequence b's at mask + b * mask_stride
 * (0: one mask for all, L*L: one per sequence, as a key padding mask makes them);
 * causal masks j > i without computing it. With dropout on the attention weights,
 * M (B, H, L, L) holds each weight's scale (1/(1-p) kept, 0 dropped) and D receives
 * P * M, which multiplies V; M = D = NULL without.
 * bin/bout may be NULL (bias=False). */
void FNN_S(fnn_mha_forward)(int B, int L, int E, int H, int batch_first, const FNN_T *X,
                            const FNN_T *Win, const FNN_T *bin, const FNN_T *Wout,
                            const FNN_T *bout, const FNN_T *mask, int64_t mask_stride,
                            int causal, const FNN_T *M, FNN_T *QKV, FNN_T *P, FNN_T *D,
                            FNN_T *C, FNN_T *Y);
/* From dY: dWout, dbout, dC (rows, E), the scratch G (B, H, L, L), dQKV (rows, 3E),
 * dWin, dbin and dX (may be NULL). Parameter gradients are written or, with
 * accumulate, added; dbin/dbout may be NULL. */
void FNN_S(fnn_mha_backward)(int B, int L, int E, int H, int batch_first, const FNN_T *X,
                             const FNN_T *Win, const FNN_T *Wout, const FNN_T *QKV,
                             const FNN_T *P, const FNN_T *M, const FNN_T *D, const FNN_T *C,
                             const FNN_T *dY, int causal,
                             FNN_T *dC, FNN_T *G, FNN_T *dQKV, FNN_T *dX, FNN_T *dWin,
                             FNN_T *dbin, FNN_T *dWout, FNN_T *dbout, int accumulate);
/* Attention of the last query of each of B sequences only: q (B, E), KV (B*L, 2E)
 * every token's keys then values (rows b*L + t), no mask (the last query sees
 * every key). P (B, H, L) the probabilities, C (B, E) the heads' outputs. */
void FNN_S(fnn_attn_last_forward)(int B, int L, int E, int H, const FNN_T *q, const FNN_T *KV,
                                  FNN_T *P, FNN_T *C);
/* Its backward from dC (B, E): dq (B, E) and dKV (B*L, 2E), written. */
void FNN_S(fnn_attn_last_backward)(int B, int L, int E, int H, const FNN_T *q, const FNN_T *KV,
                                   const FNN_T *P, const FNN_T *dC, FNN_T *dq, FNN_T *dKV);
