/* Declarations for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses (fnn_seq.h); included by fnn_decl.h once per dtype. */

/* Softmax cross-entropy on logits (n, C) against labels, where a row whose label
 * equals ignore contributes neither loss nor gradient (its grad row is zeroed);
 * the mean is over the *count non-ignored rows (NaN when there are none, as torch). */
double FNN_S(fnn_cross_entropy_ignore)(int n, int C, const FNN_T *z, const int64_t *labels,
                                       int64_t ignore, FNN_T smoothing, FNN_T *grad,
                                       const FNN_T *w, int64_t *count);

/* EmbeddingBag over n bags of `bag` ids each (idx row-major (n, bag)): out (n, dim) is
 * the sum, the mean or the columnwise max (whose id goes to arg (n, dim); arg is
 * unused otherwise) of the bag's rows of W. */
#ifndef FNN_BAG_MODES
#define FNN_BAG_MODES
enum { FNN_BAG_SUM = 0, FNN_BAG_MEAN = 1, FNN_BAG_MAX = 2 };
#endif
void FNN_S(fnn_embedding_bag_forward)(int64_t n, int bag, int dim, const int64_t *idx,
                                      const FNN_T *W, int mode, FNN_T *out, int64_t *arg);
/* gW (+)= scatter of gout (scaled by 1/bag for the mean; to the arg rows for the max)
 * to the ids of its bag; split by columns, each gW entry summed in bag order:
 * independent of the thread count. */
void FNN_S(fnn_embedding_bag_backward)(int64_t n, int bag, int dim, int64_t num,
                                       const int64_t *idx, const FNN_T *gout, int mode,
                                       const int64_t *arg, FNN_T *gW, int accumulate);

/* Conv1d, time-major: x (B, L, Cin) with W (Cout, Cin, k), zero padding pl on the left
 * (the right padding is implied by Lout). Wr (Cout, k*Cin) receives W reordered by tap,
 * col (B*Lout, k*Cin) the unfold (tap j of position t at columns j*Cin..), and
 * y (B, Lout, Cout) = col Wr^T + b (b may be NULL), through ReLU when relu. */
void FNN_S(fnn_conv1d_forward)(int B, int Cin, int L, int Cout, int k, int stride, int dil,
                               int pl, int Lout, const FNN_T *x, const FNN_T *W,
                               const FNN_T *b, int relu, FNN_T *Wr, FNN_T *col, FNN_T *y);
/* From gy (B, Lout, Cout) and the forward's Wr, col and y: gz = gy masked by the ReLU
 * (unused without relu), gb (+)= sums of gz, gW (+)= gz^T col (through the workspace
 * dWr, shaped like Wr), and, when gx is not NULL, dcol = gz Wr folded back into
 * gx (B, L, Cin). gb may be NULL. */
void FNN_S(fnn_conv1d_backward)(int B, int Cin, int L, int Cout, int k, int stride, int dil,
                                int pl, int Lout, const FNN_T *Wr, const FNN_T *col,
                                const FNN_T *y, int relu, const FNN_T *gy, FNN_T *gz,
                                FNN_T *dWr, FNN_T *dcol, FNN_T *gx, FNN_T *gW, FNN_T *gb,
                                int accumulate);
