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
/* The t range [lo, hi) of output positions whose tap at offset off = j*dil - pl
 * reads inside x (0 <= t*stride + off < L). */
static inline void S(conv_taps)(int L, int Lout, int stride, int off, int *lo, int *hi)
{
    int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int b = L - 1 - off < 0 ? 0 : (L - 1 - off) / stride + 1;
    a = a < Lout ? a : Lout;
    b = b < Lout ? b : Lout;
    *lo = a;
    *hi = b > a ? b : a;
}

/* col[(c k + j), t] = x[c, t stride + j dil - pl], zero outside x. */
static void S(conv_im2col)(int Cin, int L, int k, int stride, int dil, int pl, int Lout,
                           const T *x, T *col)
{
    for (int c = 0; c < Cin; c++) {
        const T *xc = x + (int64_t)c * L;
        for (int j = 0; j < k; j++) {
            T *row = col + ((int64_t)c * k + j) * Lout;
            int off = j * dil - pl, lo, hi;
            S(conv_taps)(L, Lout, stride, off, &lo, &hi);
            for (int t = 0; t < lo; t++) row[t] = 0;
            if (stride == 1) {
                if (hi > lo) memcpy(row + lo, xc + lo + off, sizeof(T) * (size_t)(hi - lo));
            } else {
                for (int t = lo; t < hi; t++) row[t] = xc[(int64_t)t * stride + off];
            }
            for (int t = hi; t < Lout; t++) row[t] = 0;
        }
    }
}

/* gx[c, :] = sum over taps j (in order) of dcol rows folded back; gx overwritten. */
static void S(conv_col2im)(int Cin, int L, int k, int stride, int dil, int pl, int Lout,
                           const T *dcol, T *gx)
{
    memset(gx, 0, sizeof(T) * (size_t)Cin * (size_t)L);
    for (int c = 0; c < Cin; c++) {
        T *gc = gx + (int64_t)c * L;
        for (int j = 0; j < k; j++) {
            const T *row = dcol + ((int64_t)c * k + j) * Lout;
            int off = j * dil - pl, lo, hi;
            S(conv_taps)(L, Lout, stride, off, &lo, &hi);
            for (int t = lo; t < hi; t++) gc[(int64_t)t * stride + off] += row[t];
        }
    }
}

FNN_CLONES static void S(conv_bias_rows)(int Cout, int Lout, const T *b, T *y)
{
    for (int o = 0; o < Cout; o++) {
        T bo = b[o], *yo = y + (int64_t)o * Lout;
        for (int t = 0; t < Lout; t++) yo[t] += bo;
    }
}

/* Work per batch element in multiply-adds; threads go over the batch, each element
 * computed by the same calls whatever the split. */
static inline int S(conv_batch_threads)(int B, double macs_per_item)
{
    int nt = fnn_threads_for((double)B * macs_per_item / FNN_GEMM_PER_FLOP);
    return nt < B ? nt : B;
}

void S(fnn_conv1d_forward)(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl,
                           int Lout, const T *x, const T *W, const T *b, T *col, T *y)
{
    int K = Cin * k;
    int nt = S(conv_batch_threads)(B, (double)Cout * K * Lout + (double)K * Lout);
    int64_t cs = fnn_chunk(B, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int64_t lo = c * cs, hi = lo + cs < B ? lo + cs : B;
        for (int64_t i = lo; i < hi; i++) {
            T *ci = col + i * K * Lout, *yi = y + i * Cout * Lout;
            S(conv_im2col)(Cin, L, k, stride, dil, pl, Lout, x + i * Cin * L, ci);
            S(fnn_gemm)(0, 0, Cout, Lout, K, 1, W, K, ci, Lout, 0, yi, Lout);
            if (b) S(conv_bias_rows)(Cout, Lout, b, yi);
        }
    });
}

void S(fnn_conv1d_backward)(int B, int Cin, int L, int Cout, int k, int stride, int dil, int pl,
                            int Lout, const T *W, const T *col, const T *gy, T *dcol, T *gx,
                            T *gW, T *gb, int accumulate)
{
    int K = Cin * k;
    int64_t ystride = (int64_t)Cout * Lout, cstride = (int64_t)K * Lout;
    /* bias: one output channel per iteration, batch and time in order, float64 sums */
    if (gb) {
        int nt = fnn_threads_for((double)B * Cout * Lout);
        FNN_PAR_FOR(nt, o, Cout, {
            double s = 0;
            for (int i = 0; i < B; i++) {
                const T *g = gy + i * ystride + o * Lout;
                for (int t = 0; t < Lout; t++) s += g[t];
            }
            gb[o] = accumulate ? gb[o] + (T)s : (T)s;
        });
    }
    /* weights: fixed blocks of gW (rows or columns, by size only), each summed over
     * the batch in order by GEMMs with beta = 1 */
    int parts = fnn_fixed_blocks((double)B * Cout * K * Lout), nt = fnn_parts_threads(parts);
    int wrows = Cout >= K;
    int wcs = (int)(wrows ? fnn_chunk(Cout, parts) : fnn_chunk_aligned(K, parts));
    FNN_PAR_FOR(nt, p, parts, {
        int lo = (int)p * wcs, hi = lo + wcs;
        if (wrows) {
            hi = hi < Cout ? hi : Cout;
            for (int i = 0; hi > lo && i < B; i++)
                S(fnn_gemm)(0, 1, hi - lo, K, Lout, 1, gy + i * ystride + (int64_t)lo * Lout, Lout,
                            col + i * cstride, Lout, (i || accumulate) ? 1 : 0,
                            gW + (int64_t)lo * K, K);
        } else {
            hi = hi < K ? hi : K;
            for (int i = 0; hi > lo && i < B; i++)
                S(fnn_gemm)(0, 1, Cout, hi - lo, Lout, 1, gy + i * ystride, Lout,
                            col + i * cstride + (int64_t)lo * Lout, Lout, (i || accumulate) ? 1 : 0,
                            gW + lo, K);
        }
    });
    if (!gx) return;
    int ntx = S(conv_batch_threads)(B, (double)Cout * K * Lout + (double)K * Lout);
    int64_t cs = fnn_chunk(B, ntx);
    FNN_PAR_FOR(ntx, c, ntx, {
        int64_t lo = c * cs, hi = lo + cs < B ? lo + cs : B;
        for (int64_t i = lo; i < hi; i++) {
            T *di = dcol + i * cstride;
            S(fnn_gemm)(1, 0, K, Lout, Cout, 1, W, K, gy + i * ystride, Lout, 0, di, Lout);
            S(conv_col2im)(Cin, L, k, stride, dil, pl, Lout, di, gx + i * (int64_t)Cin * L);
        }
    });
}
