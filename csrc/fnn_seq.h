/* Kernel bodies for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses, templated on T/S like
 * fnn_template.h, which includes this file once per dtype. */

/* ------------------------------------------------ cross-entropy, ignore_index */
/* Fixed chunks as in fnn_cross_entropy; inside a chunk, each run of kept rows goes
 * through the same row kernel (ce_rows), ignored rows get a zero gradient. */
double S(fnn_cross_entropy_ignore)(int n, int C, const T *z, const int64_t *labels,
                                   int64_t ignore, T smoothing, T *grad, const T *w,
                                   int64_t *count)
{
    int64_t kept = 0;
    for (int i = 0; i < n; i++) kept += labels[i] != ignore;
    if (count) *count = kept;
    double part[FNN_NCHUNK];
    int cs = (n + FNN_NCHUNK - 1) / FNN_NCHUNK;
    T sc = kept ? (T)(1.0 / (double)kept) : (T)0;
    FNN_PAR_FOR(fnn_threads_for((double)n * C * 24), c, FNN_NCHUNK, {
        int r0 = (int)c * cs, r1 = r0 + cs < n ? r0 + cs : n;
        double s = 0;
        int r = r0;
        while (r < r1) {
            if (labels[r] == ignore) {
                if (grad) memset(grad + (int64_t)r * C, 0, sizeof(T) * (size_t)C);
                r++;
                continue;
            }
            int e = r + 1;
            while (e < r1 && labels[e] != ignore) e++;
            s += S(ce_rows)(r, e, C, z, labels, NULL, smoothing, grad, sc, w);
            r = e;
        }
        part[c] = s;
    });
    return kept ? fnn_sum_parts(part) / (double)kept : NAN;
}

/* --------------------------------------------------------------- EmbeddingBag */
FNN_CLONES static void S(bag_rows)(int64_t r0, int64_t r1, int bag, int dim, const int64_t *idx,
                                   const T *W, int mean, T *out)
{
    T inv = (T)1 / (T)bag;
    for (int64_t i = r0; i < r1; i++) {
        T *o = out + i * dim;
        const int64_t *id = idx + i * bag;
        memcpy(o, W + id[0] * dim, sizeof(T) * (size_t)dim);
        for (int j = 1; j < bag; j++) {
            const T *w = W + id[j] * dim;
            for (int c = 0; c < dim; c++) o[c] += w[c];
        }
        if (mean && bag > 1) for (int c = 0; c < dim; c++) o[c] *= inv;
    }
}

/* max: per column the largest entry, the first id that has it in arg */
FNN_CLONES static void S(bag_max_rows)(int64_t r0, int64_t r1, int bag, int dim,
                                       const int64_t *idx, const T *W, T *out, int64_t *arg)
{
    for (int64_t i = r0; i < r1; i++) {
        T *o = out + i * dim;
        int64_t *a = arg + i * dim;
        const int64_t *id = idx + i * bag;
        memcpy(o, W + id[0] * dim, sizeof(T) * (size_t)dim);
        for (int c = 0; c < dim; c++) a[c] = id[0];
        for (int j = 1; j < bag; j++) {
            const T *w = W + id[j] * dim;
            for (int c = 0; c < dim; c++)
                if (w[c] > o[c]) { o[c] = w[c]; a[c] = id[j]; }
        }
    }
}

void S(fnn_embedding_bag_forward)(int64_t n, int bag, int dim, const int64_t *idx, const T *W,
                                  int mode, T *out, int64_t *arg)
{
    int nt = fnn_threads_for((double)n * bag * dim);
    int64_t cs = fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int64_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        if (hi > lo && mode == FNN_BAG_MAX) S(bag_max_rows)(lo, hi, bag, dim, idx, W, out, arg);
        else if (hi > lo) S(bag_rows)(lo, hi, bag, dim, idx, W, mode == FNN_BAG_MEAN, out);
    });
}

FNN_CLONES static void S(bag_scatter_cols)(int64_t n, int bag, int dim, int c0, int c1,
                                           const int64_t *idx, const T *gout, int mean, T *gW)
{
    T inv = (T)1 / (T)bag;
    for (int64_t i = 0; i < n; i++) {
        const T *g = gout + i * dim;
        for (int j = 0; j < bag; j++) {
            T *w = gW + idx[i * bag + j] * dim;
            if (mean) for (int c = c0; c < c1; c++) w[c] += g[c] * inv;
            else for (int c = c0; c < c1; c++) w[c] += g[c];
        }
    }
}

static void S(bag_max_scatter_cols)(int64_t n, int dim, int c0, int c1, const int64_t *arg,
                                    const T *gout, T *gW)
{
    for (int64_t i = 0; i < n; i++) {
        const T *g = gout + i * dim;
        const int64_t *a = arg + i * dim;
        for (int c = c0; c < c1; c++) gW[a[c] * dim + c] += g[c];
    }
}

void S(fnn_embedding_bag_backward)(int64_t n, int bag, int dim, int64_t num, const int64_t *idx,
                                   const T *gout, int mode, const int64_t *arg, T *gW,
                                   int accumulate)
{
    if (!accumulate) memset(gW, 0, sizeof(T) * (size_t)(num * dim));
    int nt = fnn_threads_for((double)n * (mode == FNN_BAG_MAX ? 1 : bag) * dim * 2);
    int cs = (int)fnn_chunk_aligned(dim, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int c0 = (int)c * cs, c1 = c0 + cs < dim ? c0 + cs : dim;
        if (c1 > c0 && mode == FNN_BAG_MAX) S(bag_max_scatter_cols)(n, dim, c0, c1, arg, gout, gW);
        else if (c1 > c0)
            S(bag_scatter_cols)(n, bag, dim, c0, c1, idx, gout, mode == FNN_BAG_MEAN, gW);
    });
}

/* --------------------------------------------------------------------- Conv1d */
/* Time-major layout throughout: x (B, L, Cin), y (B, Lout, Cout). A row of the
 * unfold col (B*Lout, k*Cin) holds the k input rows a position reads, tap j at
 * columns [j*Cin, (j+1)*Cin), so each tap is one memcpy and the whole layer is one
 * Linear product with M = B*Lout, on the engine's bit-checked GEMM plans; the
 * weight is reordered to Wr (Cout, k*Cin) to match (a small pass per step). */
static inline int S(conv_src)(int t, int j, int stride, int dil, int pl, int L)
{
    int s = t * stride + j * dil - pl;
    return s >= 0 && s < L ? s : -1;
}

static void S(conv_im2col)(int Cin, int L, int k, int stride, int dil, int pl, int Lout,
                           const T *x, T *col)
{
    int64_t K = (int64_t)k * Cin;
    for (int t = 0; t < Lout; t++)
        for (int j = 0; j < k; j++) {
            int s = S(conv_src)(t, j, stride, dil, pl, L);
            T *dst = col + t * K + (int64_t)j * Cin;
            if (s >= 0) memcpy(dst, x + (int64_t)s * Cin, sizeof(T) * (size_t)Cin);
            else memset(dst, 0, sizeof(T) * (size_t)Cin);
        }
}

/* gx[s] = the dcol slices that read position s, summed over t then j in order. */
FNN_CLONES static void S(conv_col2im)(int Cin, int L, int k, int stride, int dil, int pl,
                                      int Lout, const T *dcol, T *gx)
{
    int64_t K = (int64_t)k * Cin;
    memset(gx, 0, sizeof(T) * (size_t)Cin * (size_t)L);
    for (int t = 0; t < Lout; t++)
        for (int j = 0; j < k; j++) {
            int s = S(conv_src)(t, j, stride, dil, pl, L);
            if (s < 0) continue;
            T *restrict g = gx + (int64_t)s * Cin;
            const T *restrict d = dcol + t * K + (int64_t)j * Cin;
            for (int c = 0; c < Cin; c++) g[c] += d[c];
        }
}

/* Wr[o, j*Cin + c] <-> W[o, c, j], in the direction to_wr says. */
static void S(conv_reorder)(int Cout, int Cin, int k, T *W, T *Wr, int to_wr)
{
    for (int o = 0; o < Cout; o++)
        for (int c = 0; c < Cin; c++)
            for (int j = 0; j < k; j++) {
                T *w = W + ((int64_t)o * Cin + c) * k + j;
                T *r = Wr + (int64_t)o * k * Cin + (int64_t)j * Cin + c;
                if (to_wr) *r = *w;
                else *w = *r;
            }
}

/* Threads over whole sequences for the unfold and the fold: each sequence is done
 * by the same code whatever the split. */
static inline int S(conv_seq_threads)(int B, int Lout, int K)
{
    int nt = fnn_threads_for((double)B * Lout * K);
    return nt < B ? nt : B;
}

void S(fnn_conv1d_forward)(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl,
                           int Lout, const T *x, const T *W, const T *b, int relu, T *Wr,
                           T *col, T *y)
{
    int K = Cin * k;
    S(conv_reorder)(Cout, Cin, k, (T *)W, Wr, 1);
    int nt = S(conv_seq_threads)(B, Lout, K);
    FNN_PAR_FOR(nt, i, B, {
        S(conv_im2col)(Cin, L, k, stride, dil, pl, Lout, x + i * (int64_t)L * Cin,
                       col + i * (int64_t)Lout * K);
    });
    S(fnn_linear_forward)(B * Lout, K, Cout, col, K, Wr, b, relu ? FNN_ACT_RELU : FNN_ACT_NONE,
                          0, NULL, y);
}

void S(fnn_conv1d_backward)(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl,
                            int Lout, const T *Wr, const T *col, const T *y, int relu,
                            const T *gy, T *gz, T *dWr, T *dcol, T *gx, T *gW, T *gb,
                            int accumulate)
{
    int K = Cin * k;
    if (accumulate) S(conv_reorder)(Cout, Cin, k, gW, dWr, 1);  /* the product adds to it */
    S(fnn_linear_backward)(B * Lout, K, Cout, col, K, Wr, relu ? FNN_ACT_RELU : FNN_ACT_NONE, 0,
                           NULL, y, gy, relu ? gz : (T *)gy, gx ? dcol : NULL, dWr, gb,
                           accumulate);
    S(conv_reorder)(Cout, Cin, k, gW, dWr, 0);
    if (!gx) return;
    int nt = S(conv_seq_threads)(B, Lout, K);
    FNN_PAR_FOR(nt, i, B, {
        S(conv_col2im)(Cin, L, k, stride, dil, pl, Lout, dcol + i * (int64_t)Lout * K,
                       gx + i * (int64_t)L * Cin);
    });
}
