/* Kernel bodies, templated on FNN_T (float or double) and FNN_S (name suffix).
 * Included twice by kernels.c. Hot loops are split from their OpenMP drivers so
 * that each loop gets its own CPU-dispatched clones (FNN_CLONES). */
#define T FNN_T
#define S FNN_S

/* ------------------------------------------------------------------ BLAS */
void S(fnn_gemm)(int ta, int tb, int M, int N, int K, T alpha, const T *A, int lda,
                 const T *B, int ldb, T beta, T *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  /* BLAS would scale C by beta; do the same without a call */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(int64_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(int64_t)i * ldc + j];
        return;
    }
    if (M == 1) {
        /* One output row: y(1xN) = a(1xK) op(B). op(B) row-major is a column-major
         * matrix whose transpose we need, hence the flipped trans flag. */
        char t = tb ? 'T' : 'N';
        int m = tb ? K : N, n = tb ? N : K, inc = ta ? lda : 1, one = 1;
        SELF_GEMV(&t, &m, &n, &alpha, (T *)B, &ldb, (T *)A, &inc, &beta, C, &one);
        return;
    }
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
    char tA = ta ? 'T' : 'N', tB = tb ? 'T' : 'N';
    SELF_GEMM(&tB, &tA, &N, &M, &K, &alpha, (T *)B, &ldb, (T *)A, &lda, &beta, C, &ldc);
}

/* ----------------------------------------------------------- activations */
static inline T S(sigmoid1)(T z)
{
    /* exp(-|z|) <= 1 never overflows; branch-free so the loop vectorizes */
    T e = EXP(-(z >= 0 ? z : -z)), r = (T)1 / ((T)1 + e);
    return z >= 0 ? r : e * r;
}

static inline T S(gelu1)(T z) { return (T)0.5 * z * ((T)1 + ERF(z * (T)M_SQRT1_2)); }
static inline T S(dgelu1)(T z)
{
    T cdf = (T)0.5 * ((T)1 + ERF(z * (T)M_SQRT1_2));
    T pdf = EXP((T)-0.5 * z * z) * (T)(0.5 * M_2_SQRTPI * M_SQRT1_2);
    return cdf + z * pdf;
}
#define GELU_K ((T)0.7978845608028654) /* sqrt(2/pi) */
#define GELU_C ((T)0.044715)
static inline T S(gelut1)(T z) { return (T)0.5 * z * ((T)1 + TANH(GELU_K * (z + GELU_C * z * z * z))); }
static inline T S(dgelut1)(T z)
{
    T t = TANH(GELU_K * (z + GELU_C * z * z * z));
    return (T)0.5 * ((T)1 + t) + (T)0.5 * z * ((T)1 - t * t) * GELU_K * ((T)1 + (T)3 * GELU_C * z * z);
}

/* y = act(x) over a contiguous range; y may alias x. */
FNN_CLONES static void S(act_range)(int act, T slope, int64_t n, const T *x, T *y)
{
    int64_t i;
    switch (act) {
    case FNN_ACT_RELU: for (i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0; break;
    case FNN_ACT_LEAKY: for (i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : slope * x[i]; break;
    case FNN_ACT_SIGMOID: for (i = 0; i < n; i++) y[i] = S(sigmoid1)(x[i]); break;
    case FNN_ACT_TANH: for (i = 0; i < n; i++) y[i] = TANH(x[i]); break;
    case FNN_ACT_GELU: for (i = 0; i < n; i++) y[i] = S(gelu1)(x[i]); break;
    case FNN_ACT_GELU_TANH: for (i = 0; i < n; i++) y[i] = S(gelut1)(x[i]); break;
    default: if (y != x) for (i = 0; i < n; i++) y[i] = x[i];
    }
}

/* gx = gy * act'(x), using the output y where it is cheaper; gx may alias gy. */
FNN_CLONES static void S(dact_range)(int act, T slope, int64_t n, const T *x, const T *y,
                                     const T *gy, T *gx)
{
    int64_t i;
    switch (act) {
    case FNN_ACT_RELU: for (i = 0; i < n; i++) gx[i] = y[i] > 0 ? gy[i] : 0; break;
    case FNN_ACT_LEAKY: for (i = 0; i < n; i++) gx[i] = y[i] > 0 ? gy[i] : slope * gy[i]; break;
    case FNN_ACT_SIGMOID: for (i = 0; i < n; i++) gx[i] = gy[i] * y[i] * ((T)1 - y[i]); break;
    case FNN_ACT_TANH: for (i = 0; i < n; i++) gx[i] = gy[i] * ((T)1 - y[i] * y[i]); break;
    case FNN_ACT_GELU: for (i = 0; i < n; i++) gx[i] = gy[i] * S(dgelu1)(x[i]); break;
    case FNN_ACT_GELU_TANH: for (i = 0; i < n; i++) gx[i] = gy[i] * S(dgelut1)(x[i]); break;
    default: if (gx != gy) for (i = 0; i < n; i++) gx[i] = gy[i];
    }
}

void S(fnn_act_forward)(int act, T slope, int64_t n, const T *x, T *y)
{
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 8), n, fnn_chunk, lo, len, {
        S(act_range)(act, slope, len, x + lo, y + lo);
    });
}

void S(fnn_act_backward)(int act, T slope, int64_t n, const T *x, const T *y, const T *gy, T *gx)
{
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 8), n, fnn_chunk, lo, len, {
        S(dact_range)(act, slope, len, x ? x + lo : NULL, y ? y + lo : NULL, gy + lo, gx + lo);
    });
}

/* --------------------------------------------------------- GEMM blocks */
/* Block [lo, hi) along rows (dim 0) or columns (dim 1) of C = op(A) op(B) + beta C. */
static void S(gemm_block)(int dim, int lo, int hi, int ta, int tb, int M, int N, int K,
                          const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc)
{
    if (hi <= lo) return;
    if (dim == 0)
        S(fnn_gemm)(ta, tb, hi - lo, N, K, 1, ta ? A + lo : A + (int64_t)lo * lda, lda, B, ldb,
                    beta, C + (int64_t)lo * ldc, ldc);
    else
        S(fnn_gemm)(ta, tb, M, hi - lo, K, 1, A, lda, tb ? B + (int64_t)lo * ldb : B + lo, ldb,
                    beta, C + lo, ldc);
}

void S(fnn_gemm_split)(int nt, int dim, int parts, int ta, int tb, int M, int N, int K,
                       const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc)
{
    if (parts < 2) { S(fnn_gemm)(ta, tb, M, N, K, 1, A, lda, B, ldb, beta, C, ldc); return; }
    FNN_PAR_FOR(nt < parts ? nt : parts, t, parts, {
        int lo, hi;
        fnn_block(dim, parts, t, M, N, &lo, &hi);
        S(gemm_block)(dim, lo, hi, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    });
}

/* Check and time the cuts of one shape on synthetic data: values in [-1, 1)
 * whose K-sums round differently in almost any other order. Everything here
 * runs on the calling thread: timing each block alone is what a cut costs each
 * thread, free of the scheduling noise of a parallel run (on a busy machine a
 * fork can wait a whole time slice). Rows are tried first (they kept the bits
 * on every kernel set tried); columns only when rows cannot be used. */
static fnn_plan S(plan_measure)(int want, int ta, int tb, int M, int N, int K, int lda, int ldb,
                                int ldc)
{
    fnn_plan best = {0, 1};
    int64_t na = (int64_t)(ta ? K : M) * lda, nb = (int64_t)(tb ? N : K) * ldb,
            nc = (int64_t)M * ldc;
    T *A = (T *)malloc(sizeof(T) * (size_t)(na + nb + 2 * nc));
    if (!A) return best;
    T *B = A + na, *C0 = B + nb, *C1 = C0 + nc;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < na + nb; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        A[i] = (T)((double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
    /* A tiny call first: a process's first BLAS call sets up buffers. Then the
     * cut, then one call: any warm-up left counts against the cut. */
    memset(C0, 0, sizeof(T) * (size_t)nc);
    memset(C1, 0xff, sizeof(T) * (size_t)nc);   /* NaNs: a block left out shows */
    S(fnn_gemm)(ta, tb, M < 2 ? M : 2, N < 2 ? N : 2, K < 8 ? K : 8, 1, A, lda, B, ldb, 0, C1, ldc);
    double t_one = -1, t_cut;
    for (int d = 0; d < 2 && best.parts == 1; d++) {
        if (!fnn_cut_ok(d, want, M, N)) continue;
        memset(C1, 0xff, sizeof(T) * (size_t)nc);
        t_cut = 0;
        for (int t = 0; t < want; t++) {
            int lo, hi;
            fnn_block(d, want, t, M, N, &lo, &hi);
            double t0 = fnn_now();
            S(gemm_block)(d, lo, hi, ta, tb, M, N, K, A, lda, B, ldb, 0, C1, ldc);
            t0 = fnn_now() - t0;
            if (t0 > t_cut) t_cut = t0;
        }
        if (t_one < 0) {   /* the reference, once */
            t_one = fnn_now();
            S(fnn_gemm)(ta, tb, M, N, K, 1, A, lda, B, ldb, 0, C0, ldc);
            t_one = fnn_now() - t_one;
        }
        int same = 1;
        for (int i = 0; i < M && same; i++)
            same = !memcmp(C0 + (int64_t)i * ldc, C1 + (int64_t)i * ldc, sizeof(T) * (size_t)N);
        /* The slowest block bounds the cut's time; it must save a quarter at
         * least, or one call on one thread is as good (blocks of the wrong
         * shape can cost more than the whole: 2.8x was measured on a Zen 1). */
        if (same && t_cut <= 0.75 * t_one) {
            best.dim = d;
            best.parts = want;
        }
    }
    free(A);
    return best;
}

/* The cut of C = op(A) op(B) for `want` threads (see fnn_plan in kernels.c). */
static fnn_plan S(gemm_plan)(int want, double macs, int ta, int tb, int M, int N, int K, int lda,
                             int ldb, int ldc)
{
    fnn_plan plan = {0, 1};
    if (fnn_force_dim >= 0) {
        if (fnn_force_dim < 2 && fnn_cut_ok(fnn_force_dim, fnn_force_parts, M, N)) {
            plan.dim = fnn_force_dim;
            plan.parts = fnn_force_parts;
        }
        return plan;
    }
    if (want < 2 || !fnn_gemm_big(macs)) return plan;
    int key[10] = {(int)sizeof(T), ta, tb, M, N, K, lda, ldb, ldc, want};
    int found;
#ifdef _OPENMP
#pragma omp critical(fnn_plan)
#endif
    {
        found = fnn_plan_find(key, &plan);
        if (!found) {
            plan = S(plan_measure)(want, ta, tb, M, N, K, lda, ldb, ldc);
            fnn_plan_add(key, plan);
        }
    }
    return plan;
}

/* -------------------------------------------------------------- linear */
/* Y[r0:r1, c0:c1] = act(X W^T + b) for one block: GEMM then bias+activation while hot. */
FNN_CLONES static void S(bias_act_rows)(int rows, int cols, int ld, const T *b, int act, T slope,
                                        T *Z, T *Y)
{
    for (int r = 0; r < rows; r++) {
        T *y = Y + (int64_t)r * ld;
        if (b) for (int j = 0; j < cols; j++) y[j] += b[j];
        if (act == FNN_ACT_NONE) continue;
        if (Z) { T *z = Z + (int64_t)r * ld; for (int j = 0; j < cols; j++) z[j] = y[j]; }
        S(act_range)(act, slope, cols, y, y);
    }
}

void S(fnn_linear_forward)(int n, int in, int out, const T *X, int ldx, const T *W, const T *b,
                           int act, T slope, T *Z, T *Y)
{
    /* A few rows make the product a memory-bound pass over W: count it by W's
     * size then, since two cores stream W twice as fast as one. */
    double work = n <= 4 ? 4.0 * in * out : (double)n * in * out;
    fnn_plan p = S(gemm_plan)(fnn_parts_threads(fnn_threads), work, 0, 1, n, out, in, ldx, in, out);
    /* Each block gets its bias and activation while it is still in cache. */
    FNN_PAR_FOR(fnn_parts_threads(p.parts), t, p.parts, {
        int lo, hi;
        fnn_block(p.dim, p.parts, t, n, out, &lo, &hi);
        if (hi > lo) {
            S(gemm_block)(p.dim, lo, hi, 0, 1, n, out, in, X, ldx, W, in, 0, Y, out);
            int r0 = p.dim ? 0 : lo, c0 = p.dim ? lo : 0;
            int64_t off = (int64_t)r0 * out + c0;
            S(bias_act_rows)(p.dim ? n : hi - lo, p.dim ? hi - lo : out, out, b ? b + c0 : NULL,
                             act, slope, Z ? Z + off : NULL, Y + off);
        }
    });
}

/* Columns [c0, c1) of dZ = dY * act', and their bias gradient, in one pass. The
 * column sums run over rows in order, so db does not depend on the thread count. */
FNN_CLONES static void S(dact_bias_cols)(int n, int out, int c0, int c1, int act, T slope,
                                         const T *Z, const T *Y, const T *dY, T *dZ, T *db,
                                         int accumulate)
{
    int w = c1 - c0;
    if (w <= 0) return;
    if (db && !accumulate) for (int j = c0; j < c1; j++) db[j] = 0;
    for (int r = 0; r < n; r++) {
        int64_t o = (int64_t)r * out + c0;
        if (act != FNN_ACT_NONE || dZ != dY)
            S(dact_range)(act, slope, w, Z ? Z + o : NULL, Y + o, dY + o, dZ + o);
        if (db) { const T *g = dZ + o; T *d = db + c0; for (int j = 0; j < w; j++) d[j] += g[j]; }
    }
}

void S(fnn_linear_backward)(int n, int in, int out, const T *X, int ldx, const T *W, int act,
                            T slope, const T *Z, const T *Y, const T *dY, T *dZ, T *dX, T *dW,
                            T *db, int accumulate)
{
    if (db || act != FNN_ACT_NONE || dZ != dY) {
        int ntc = fnn_threads_for((double)n * out * 8);
        int cs = (int)fnn_chunk_aligned(out, ntc);
        FNN_PAR_FOR(ntc, t, ntc, {
            int c0 = (int)t * cs, c1 = c0 + cs < out ? c0 + cs : out;
            S(dact_bias_cols)(n, out, c0, c1, act, slope, Z, Y, dY, dZ, db, accumulate);
        });
    } else {
        dZ = (T *)dY;
    }
    T beta = accumulate ? 1 : 0;
    /* dW = dZ^T X and dX = dZ W have the same size, so with dX wanted two
     * threads first share the two whole products; each is cut only for the
     * threads beyond that. Neither is ever cut along its K-sum. */
    double macs = (double)n * in * out;
    int nt = fnn_parts_threads(fnn_threads), nprod = dX ? 2 : 1;
    int want = fnn_gemm_big(macs) ? nt / nprod : 1;
    fnn_plan pw = S(gemm_plan)(want, macs, 1, 0, out, in, n, out, ldx, in);
    fnn_plan px = {0, 0};
    if (dX) px = S(gemm_plan)(want, macs, 0, 0, n, in, out, out, in, in);
    int tasks = pw.parts + px.parts;
    FNN_PAR_FOR(fnn_gemm_big(macs) ? fnn_parts_threads(tasks) : 1, t, tasks, {
        int lo, hi;
        if (t < pw.parts) {
            fnn_block(pw.dim, pw.parts, t, out, in, &lo, &hi);
            S(gemm_block)(pw.dim, lo, hi, 1, 0, out, in, n, dZ, out, X, ldx, beta, dW, in);
        } else {
            fnn_block(px.dim, px.parts, t - pw.parts, n, in, &lo, &hi);
            S(gemm_block)(px.dim, lo, hi, 0, 0, n, in, out, dZ, out, W, in, 0, dX, in);
        }
    });
}

/* ------------------------------------------------------------- softmax */
FNN_CLONES static void S(softmax_rows)(int r0, int r1, int C, const T *x, T *y)
{
    for (int r = r0; r < r1; r++) {
        const T *a = x + (int64_t)r * C;
        T *o = y + (int64_t)r * C;
        T mx = a[0];
        for (int j = 1; j < C; j++) mx = a[j] > mx ? a[j] : mx;
        double s = 0;
        for (int j = 0; j < C; j++) { o[j] = EXP(a[j] - mx); s += o[j]; }
        T inv = (T)(1.0 / s);
        for (int j = 0; j < C; j++) o[j] *= inv;
    }
}

void S(fnn_softmax_forward)(int n, int C, const T *x, T *y)
{
    int nt = fnn_threads_for((double)n * C * 16);
    int cs = (int)fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, t, nt, {
        int r0 = (int)t * cs, r1 = r0 + cs < n ? r0 + cs : n;
        S(softmax_rows)(r0, r1, C, x, y);
    });
}

FNN_CLONES static void S(softmax_bwd_rows)(int r0, int r1, int C, const T *y, const T *gy, T *gx)
{
    for (int r = r0; r < r1; r++) {
        int64_t o = (int64_t)r * C;
        double dot = 0;
        for (int j = 0; j < C; j++) dot += (double)gy[o + j] * y[o + j];
        for (int j = 0; j < C; j++) gx[o + j] = y[o + j] * (gy[o + j] - (T)dot);
    }
}

void S(fnn_softmax_backward)(int n, int C, const T *y, const T *gy, T *gx)
{
    int nt = fnn_threads_for((double)n * C * 4);
    int cs = (int)fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, t, nt, {
        int r0 = (int)t * cs, r1 = r0 + cs < n ? r0 + cs : n;
        S(softmax_bwd_rows)(r0, r1, C, y, gy, gx);
    });
}

/* --------------------------------------------------------------- losses */
/* Loss sums use FNN_NCHUNK fixed chunks combined in order: the partition depends
 * on the size only, so the total is the same for any thread count. Optional row
 * weights w (one per k consecutive elements; NULL = 1) scale each row's loss and
 * gradient, Keras's sample_weight: the mean stays over all elements. */
#define ROW_W(i) (w ? w[(i) / k] : (T)1)

FNN_CLONES static double S(mse_range)(int64_t lo, int64_t hi, const T *y, const T *t, T *g, T sc,
                                      const T *w, int64_t k)
{
    double s = 0;
    for (int64_t i = lo; i < hi; i++) {
        T d = y[i] - t[i], wi = ROW_W(i);
        s += (double)(wi * d) * d;
        if (g) g[i] = sc * wi * d;
    }
    return s;
}


FNN_CLONES static double S(bce_range)(int64_t lo, int64_t hi, const T *p, const T *t, T *g, T sc,
                                      const T *w, int64_t k)
{
    double s = 0;
    for (int64_t i = lo; i < hi; i++) {
        T lp = LOG(p[i]), l1p = LOG((T)1 - p[i]), wi = ROW_W(i);
        lp = lp > (T)-100 ? lp : (T)-100;    /* PyTorch clamps log at -100 */
        l1p = l1p > (T)-100 ? l1p : (T)-100;
        s -= (double)(wi * (t[i] * lp + ((T)1 - t[i]) * l1p));
        if (g) {
            T den = ((T)1 - p[i]) * p[i];
            den = den > (T)1e-12 ? den : (T)1e-12;
            g[i] = sc * wi * (p[i] - t[i]) / den;
        }
    }
    return s;
}


FNN_CLONES static double S(bcel_range)(int64_t lo, int64_t hi, const T *z, const T *t, T *g, T sc,
                                       const T *w, int64_t k)
{
    double s = 0;
    for (int64_t i = lo; i < hi; i++) {
        T a = z[i] > 0 ? z[i] : -z[i], wi = ROW_W(i);
        /* max(z,0) - z t + log(1 + exp(-|z|)): no overflow for any z */
        s += (double)(wi * ((z[i] > 0 ? z[i] : 0) - z[i] * t[i] + LOG1P(EXP(-a))));
        if (g) g[i] = sc * wi * (S(sigmoid1)(z[i]) - t[i]);
    }
    return s;
}


/* The pointwise losses (FNN_LOSS_MSE, _BCE, _BCE_LOGITS) share one entry point:
 * fixed chunks, partial sums in order. */
double S(fnn_pointwise_loss)(int kind, int64_t N, const T *y, const T *t, T *grad, const T *w,
                             int64_t k)
{
    double part[FNN_NCHUNK];
    int64_t cs = (N + FNN_NCHUNK - 1) / FNN_NCHUNK;
    T sc = (T)((kind == FNN_LOSS_MSE ? 2.0 : 1.0) / (double)N);
    FNN_PAR_FOR(fnn_threads_for((double)N * (kind == FNN_LOSS_MSE ? 4 : 16)), c, FNN_NCHUNK, {
        int64_t lo = c * cs, hi = lo + cs < N ? lo + cs : N;
        part[c] = lo >= hi ? 0
                : kind == FNN_LOSS_MSE ? S(mse_range)(lo, hi, y, t, grad, sc, w, k)
                : kind == FNN_LOSS_BCE ? S(bce_range)(lo, hi, y, t, grad, sc, w, k)
                                       : S(bcel_range)(lo, hi, y, t, grad, sc, w, k);
    });
    return fnn_sum_parts(part) / (double)N;
}

/* Rows [r0, r1) of softmax cross-entropy against q = (1-eps) target + eps/C, where
 * target is one-hot(labels) or probs: loss = lse(z) - sum q z, grad = softmax - q. */
FNN_CLONES static double S(ce_rows)(int r0, int r1, int C, const T *z, const int64_t *labels,
                                    const T *probs, T eps, T *grad, T sc0, const T *w)
{
    double s = 0;
    T u = eps / (T)C, keep = (T)1 - eps;
    for (int r = r0; r < r1; r++) {
        const T *a = z + (int64_t)r * C;
        T mx = a[0], wr = w ? w[r] : (T)1, sc = sc0 * wr;
        for (int j = 1; j < C; j++) mx = a[j] > mx ? a[j] : mx;
        double se = 0, qz = 0;
        for (int j = 0; j < C; j++) se += EXP(a[j] - mx);
        if (labels) {
            double sz = 0;
            if (eps != 0) for (int j = 0; j < C; j++) sz += a[j];
            qz = (double)keep * a[labels[r]] + (double)u * sz;
        } else {
            const T *q = probs + (int64_t)r * C;
            for (int j = 0; j < C; j++) qz += (double)(keep * q[j] + u) * a[j];
        }
        double lse = (double)mx + log(se);
        s += (double)wr * (lse - qz);
        if (grad) {
            T *g = grad + (int64_t)r * C;
            T inv = (T)(1.0 / se);
            if (labels) {
                for (int j = 0; j < C; j++) g[j] = sc * (EXP(a[j] - mx) * inv - u);
                g[labels[r]] -= sc * keep;
            } else {
                const T *q = probs + (int64_t)r * C;
                for (int j = 0; j < C; j++) g[j] = sc * (EXP(a[j] - mx) * inv - (keep * q[j] + u));
            }
        }
    }
    return s;
}

double S(fnn_cross_entropy)(int n, int C, const T *z, const int64_t *labels, const T *probs,
                            T smoothing, T *grad, const T *w)
{
    double part[FNN_NCHUNK];
    int cs = (n + FNN_NCHUNK - 1) / FNN_NCHUNK;
    T sc = (T)(1.0 / (double)n);
    FNN_PAR_FOR(fnn_threads_for((double)n * C * 24), c, FNN_NCHUNK, {
        int r0 = (int)c * cs, r1 = r0 + cs < n ? r0 + cs : n;
        part[c] = r0 < r1 ? S(ce_rows)(r0, r1, C, z, labels, probs, smoothing, grad, sc, w) : 0;
    });
    return fnn_sum_parts(part) / (double)n;
}
#undef ROW_W

/* ------------------------------------------------------------ optimizers */
FNN_CLONES static void S(sgd_range)(int64_t n, T *restrict p, const T *restrict g,
                                    T *restrict buf, T lr, T mom, T damp, T wd, int nesterov,
                                    int first)
{
    if (!buf) {
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        T d = g[i] + wd * p[i];
        T b = first ? d : mom * buf[i] + ((T)1 - damp) * d;
        buf[i] = b;
        p[i] -= lr * (nesterov ? d + mom * b : b);
    }
}

void S(fnn_sgd)(int64_t n, T *p, const T *g, T *buf, T lr, T momentum, T dampening, T wd,
                int nesterov, int first)
{
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 2), n, fnn_chunk_aligned, lo, len, {
        S(sgd_range)(len, p + lo, g + lo, buf ? buf + lo : NULL, lr, momentum, dampening, wd,
                     nesterov, first);
    });
}

/* Adam's and NAdam's common first half at coordinate i: weight decay (decoupled
 * as a factor, or L2 into the gradient) and the two moment averages, in place;
 * the decayed parameter and the gradient come back for the rule's own step. */
static inline void S(adam_moments)(int64_t i, const T *restrict p, const T *restrict g,
                                   T *restrict m, T *restrict v, T decay, T l2, T b1, T b2,
                                   T *pi, T *gi)
{
    T q = p[i] * decay, d = g[i] + l2 * q;
    m[i] = m[i] + ((T)1 - b1) * (d - m[i]);
    v[i] = b2 * v[i] + ((T)1 - b2) * d * d;
    *pi = q;
    *gi = d;
}

FNN_CLONES static void S(adam_range)(int64_t n, T *restrict p, const T *restrict g,
                                     T *restrict m, T *restrict v, T lr, T b1, T b2, T eps,
                                     T wd, int decoupled, T step_size, T bc2_sqrt)
{
    T decay = decoupled ? (T)1 - lr * wd : (T)1, l2 = decoupled ? 0 : wd;
    for (int64_t i = 0; i < n; i++) {
        T pi, gi;
        S(adam_moments)(i, p, g, m, v, decay, l2, b1, b2, &pi, &gi);
        p[i] = pi - step_size * m[i] / (SQRT(v[i]) / bc2_sqrt + eps);
    }
}

void S(fnn_adam)(int64_t n, T *p, const T *g, T *m, T *v, T lr, T beta1, T beta2, T eps, T wd,
                 int decoupled, int64_t step)
{
    /* torch computes the bias corrections in double, then rounds to the dtype */
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    T step_size = (T)((double)lr / bc1), bc2_sqrt = (T)sqrt(bc2);
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 4), n, fnn_chunk_aligned, lo, len, {
        S(adam_range)(len, p + lo, g + lo, m + lo, v + lo, lr, beta1, beta2, eps, wd, decoupled,
                      step_size, bc2_sqrt);
    });
}

FNN_CLONES static void S(rmsprop_range)(int64_t n, T *restrict p, const T *restrict g,
                                        T *restrict sq, T *restrict gavg, T *restrict buf, T lr,
                                        T alpha, T eps, T wd, T mom)
{
    for (int64_t i = 0; i < n; i++) {
        T gi = g[i] + wd * p[i];
        T s = alpha * sq[i] + ((T)1 - alpha) * gi * gi;
        sq[i] = s;
        T avg;
        if (gavg) {
            T ga = gavg[i] + ((T)1 - alpha) * (gi - gavg[i]);
            gavg[i] = ga;
            avg = SQRT(s - ga * ga) + eps;
        } else {
            avg = SQRT(s) + eps;
        }
        if (buf) {
            T b = mom * buf[i] + gi / avg;
            buf[i] = b;
            p[i] -= lr * b;
        } else {
            p[i] -= lr * gi / avg;
        }
    }
}

void S(fnn_rmsprop)(int64_t n, T *p, const T *g, T *sq, T *gavg, T *buf, T lr, T alpha, T eps,
                    T wd, T momentum)
{
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 4), n, fnn_chunk_aligned, lo, len, {
        S(rmsprop_range)(len, p + lo, g + lo, sq + lo, gavg ? gavg + lo : NULL,
                         buf ? buf + lo : NULL, lr, alpha, eps, wd, momentum);
    });
}

FNN_CLONES static void S(adagrad_range)(int64_t n, T *restrict p, const T *restrict g,
                                        T *restrict sum, T clr, T wd, T eps)
{
    for (int64_t i = 0; i < n; i++) {
        T gi = g[i] + wd * p[i];
        T s = sum[i] + gi * gi;
        sum[i] = s;
        p[i] -= clr * gi / (SQRT(s) + eps);
    }
}

void S(fnn_adagrad)(int64_t n, T *p, const T *g, T *sum, T clr, T wd, T eps)
{
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 3), n, fnn_chunk_aligned, lo, len, {
        S(adagrad_range)(len, p + lo, g + lo, sum + lo, clr, wd, eps);
    });
}

/* NAdam with torch's momentum schedule; the two step sizes (gradient and average
 * terms) are computed once per step by the caller, in double like torch. */
FNN_CLONES static void S(nadam_range)(int64_t n, T *restrict p, const T *restrict g,
                                      T *restrict m, T *restrict v, T b1, T b2, T eps, T decay,
                                      T l2, T bc2, T gc, T ac)
{
    for (int64_t i = 0; i < n; i++) {
        T pi, gi;
        S(adam_moments)(i, p, g, m, v, decay, l2, b1, b2, &pi, &gi);
        T denom = SQRT(v[i] / bc2) + eps;
        pi += gc * gi / denom;
        p[i] = pi + ac * m[i] / denom;
    }
}

void S(fnn_nadam)(int64_t n, T *p, const T *g, T *m, T *v, T lr, T beta1, T beta2, T eps, T wd,
                  int decoupled, double bias_correction2, double grad_coef, double avg_coef)
{
    T decay = decoupled ? (T)1 - lr * wd : (T)1, l2 = decoupled ? 0 : wd;
    T bc2 = (T)bias_correction2, gc = (T)grad_coef, ac = (T)avg_coef;
    FNN_PAR_CHUNKS(fnn_threads_for((double)n * 5), n, fnn_chunk_aligned, lo, len, {
        S(nadam_range)(len, p + lo, g + lo, m + lo, v + lo, beta1, beta2, eps, decay, l2, bc2,
                       gc, ac);
    });
}

void S(fnn_update_apply)(const fnn_update *u, int64_t n, T *p, const T *g)
{
    switch (u->kind) {
    case FNN_OPT_SGD: {
        const fnn_sgd_args *a = &u->u.sgd;
        S(fnn_sgd)(n, p, g, (T *)a->momentum_buffer, (T)a->lr, (T)a->momentum, (T)a->dampening,
                   (T)a->weight_decay, a->nesterov, a->first);
        break;
    }
    case FNN_OPT_ADAM: {
        const fnn_adam_args *a = &u->u.adam;
        S(fnn_adam)(n, p, g, (T *)a->exp_avg, (T *)a->exp_avg_sq, (T)a->lr, (T)a->beta1,
                    (T)a->beta2, (T)a->eps, (T)a->weight_decay, a->decoupled, a->step);
        break;
    }
    case FNN_OPT_RMSPROP: {
        const fnn_rmsprop_args *a = &u->u.rmsprop;
        S(fnn_rmsprop)(n, p, g, (T *)a->square_avg, (T *)a->grad_avg, (T *)a->momentum_buffer,
                       (T)a->lr, (T)a->alpha, (T)a->eps, (T)a->weight_decay, (T)a->momentum);
        break;
    }
    case FNN_OPT_ADAGRAD: {
        const fnn_adagrad_args *a = &u->u.adagrad;
        /* torch: clr = lr / (1 + (step - 1) lr_decay), in double */
        double clr = a->lr / (1.0 + (double)(a->step - 1) * a->lr_decay);
        S(fnn_adagrad)(n, p, g, (T *)a->sum, (T)clr, (T)a->weight_decay, (T)a->eps);
        break;
    }
    case FNN_OPT_NADAM: {
        const fnn_nadam_args *a = &u->u.nadam;
        double t = (double)a->step;
        double mu = a->beta1 * (1.0 - 0.5 * pow(0.96, t * a->momentum_decay));
        double mu_next = a->beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * a->momentum_decay));
        double bc2 = 1.0 - pow(a->beta2, t);
        double grad_coef = -a->lr * (1.0 - mu) / (1.0 - a->mu_product);
        double avg_coef = -a->lr * mu_next / (1.0 - a->mu_product * mu_next);
        S(fnn_nadam)(n, p, g, (T *)a->exp_avg, (T *)a->exp_avg_sq, (T)a->lr, (T)a->beta1,
                     (T)a->beta2, (T)a->eps, (T)a->weight_decay, a->decoupled, bc2, grad_coef,
                     avg_coef);
        break;
    }
    }
}

int S(fnn_clip_update)(double max_norm, double *norm, const fnn_update *u, int64_t n, T *p, T *g)
{
    if (max_norm >= 0) {
        double total = sqrt(S(fnn_sumsq)(n, g));
        *norm = total;
        if (!isfinite(total)) return -1;
        double coef = max_norm / (total + 1e-6);
        if (coef < 1.0) S(fnn_scale)(n, g, (T)coef);
    }
    S(fnn_update_apply)(u, n, p, g);
    return 0;
}

FNN_CLONES static double S(sumsq_range)(int64_t n, const T *x)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

double S(fnn_sumsq)(int64_t n, const T *x)
{
    double part[FNN_NCHUNK];
    int64_t cs = (n + FNN_NCHUNK - 1) / FNN_NCHUNK;
    FNN_PAR_FOR(fnn_threads_for((double)n), c, FNN_NCHUNK, {
        int64_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        part[c] = lo < hi ? S(sumsq_range)(hi - lo, x + lo) : 0;
    });
    return fnn_sum_parts(part);
}

FNN_CLONES static void S(scale_range)(int64_t n, T *x, T c)
{
    for (int64_t i = 0; i < n; i++) x[i] *= c;
}

void S(fnn_scale)(int64_t n, T *x, T c)
{
    int nt = fnn_threads_for((double)n);
    int64_t cs = fnn_chunk_aligned(n, nt);
    FNN_PAR_FOR(nt, k, nt, {
        int64_t lo = k * cs, len = lo < n ? (n - lo < cs ? n - lo : cs) : 0;
        S(scale_range)(len, x + lo, c);
    });
}

FNN_CLONES static void S(mul_range)(int64_t n, const T *a, const T *b, T *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void S(fnn_mul)(int64_t n, const T *a, const T *b, T *out)
{
    int nt = fnn_threads_for((double)n);
    int64_t cs = fnn_chunk_aligned(n, nt);
    FNN_PAR_FOR(nt, k, nt, {
        int64_t lo = k * cs, len = lo < n ? (n - lo < cs ? n - lo : cs) : 0;
        S(mul_range)(len, a + lo, b + lo, out + lo);
    });
}

int S(fnn_all_finite)(int64_t n, const T *x)
{
    /* inf and NaN are the values whose exponent bits are all ones; an integer
     * test on the bits vectorizes where a floating-point one would not */
    const UINT_T *u = (const UINT_T *)x;
    UINT_T bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (UINT_T)((u[i] & EXP_MASK) == EXP_MASK);
    return bad == 0;
}

/* ------------------------------------------------------------ layernorm */
FNN_CLONES static void S(ln_rows)(int r0, int r1, int d, const T *x, const T *gamma,
                                  const T *beta, T eps, T *y, T *mean, T *rstd)
{
    for (int r = r0; r < r1; r++) {
        const T *a = x + (int64_t)r * d;
        T *o = y + (int64_t)r * d;
        /* float64 two-pass statistics: float32 running sums drift on wide rows */
        double mu = 0, var = 0;
        for (int j = 0; j < d; j++) mu += a[j];
        mu /= d;
        for (int j = 0; j < d; j++) { double c = a[j] - mu; var += c * c; }
        var /= d;
        T rs = (T)(1.0 / sqrt(var + (double)eps)), m = (T)mu;
        mean[r] = m;
        rstd[r] = rs;
        if (gamma) for (int j = 0; j < d; j++) o[j] = (a[j] - m) * rs * gamma[j] + beta[j];
        else for (int j = 0; j < d; j++) o[j] = (a[j] - m) * rs;
    }
}

void S(fnn_layernorm_forward)(int n, int d, const T *x, const T *gamma, const T *beta, T eps,
                              T *y, T *mean, T *rstd)
{
    int nt = fnn_threads_for((double)n * d * 4);
    int cs = (int)fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, t, nt, {
        int r0 = (int)t * cs, r1 = r0 + cs < n ? r0 + cs : n;
        S(ln_rows)(r0, r1, d, x, gamma, beta, eps, y, mean, rstd);
    });
}

FNN_CLONES static void S(ln_bwd_rows)(int r0, int r1, int d, const T *x, const T *gamma,
                                      const T *mean, const T *rstd, const T *gy, T *gx)
{
    for (int r = r0; r < r1; r++) {
        int64_t o = (int64_t)r * d;
        T m = mean[r], rs = rstd[r];
        double s1 = 0, s2 = 0;
        for (int j = 0; j < d; j++) {
            T dxh = gy[o + j] * (gamma ? gamma[j] : (T)1);
            s1 += dxh;
            s2 += (double)dxh * (double)((x[o + j] - m) * rs);
        }
        T a = (T)(s1 / d), b = (T)(s2 / d);
        for (int j = 0; j < d; j++) {
            T xh = (x[o + j] - m) * rs;
            T dxh = gy[o + j] * (gamma ? gamma[j] : (T)1);
            gx[o + j] = rs * (dxh - a - xh * b);
        }
    }
}

FNN_CLONES static void S(ln_param_cols)(int n, int d, int c0, int c1, const T *x, const T *mean,
                                        const T *rstd, const T *gy, T *gg, T *gb, int accumulate)
{
    if (!accumulate) for (int j = c0; j < c1; j++) { gg[j] = 0; gb[j] = 0; }
    for (int r = 0; r < n; r++) {
        int64_t o = (int64_t)r * d;
        T m = mean[r], rs = rstd[r];
        for (int j = c0; j < c1; j++) {
            gg[j] += gy[o + j] * (x[o + j] - m) * rs;
            gb[j] += gy[o + j];
        }
    }
}

void S(fnn_layernorm_backward)(int n, int d, const T *x, const T *gamma, const T *mean,
                               const T *rstd, const T *gy, T *gx, T *ggamma, T *gbeta,
                               int accumulate)
{
    int nt = fnn_threads_for((double)n * d * 8);
    int cs = (int)fnn_chunk(n, nt);
    int ccs = (int)fnn_chunk_aligned(d, nt);
    FNN_PAR_FOR(nt, t, nt, {
        int r0 = (int)t * cs, r1 = r0 + cs < n ? r0 + cs : n;
        S(ln_bwd_rows)(r0, r1, d, x, gamma, mean, rstd, gy, gx);
        if (ggamma) {
            int c0 = (int)t * ccs, c1 = c0 + ccs < d ? c0 + ccs : d;
            if (c1 > c0) S(ln_param_cols)(n, d, c0, c1, x, mean, rstd, gy, ggamma, gbeta, accumulate);
        }
    });
}

/* ------------------------------------------------------------- dropout */
void S(fnn_dropout_forward)(int64_t n, const T *x, T *y, T *mask, double p, uint64_t seed)
{
    T keep = p < 1 ? (T)(1.0 / (1.0 - p)) : 0;  /* in double, like torch's scale */
    /* keep element i when its 53-bit uniform is >= p */
    uint64_t thresh = (uint64_t)(p * 9007199254740992.0);
    int nt = fnn_threads_for((double)n * 2);
    int64_t cs = fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int64_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        for (int64_t i = lo; i < hi; i++) {
            T k = (fnn_hash64(seed, (uint64_t)i) >> 11) >= thresh ? keep : 0;
            mask[i] = k;
            y[i] = x[i] * k;
        }
    });
}

/* ----------------------------------------------------------- embedding */
void S(fnn_embedding_forward)(int64_t n, int dim, const int64_t *idx, const T *W, T *out)
{
    int nt = fnn_threads_for((double)n * dim);
    int64_t cs = fnn_chunk(n, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int64_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        for (int64_t i = lo; i < hi; i++)
            memcpy(out + i * dim, W + idx[i] * dim, sizeof(T) * (size_t)dim);
    });
}

/* Scatter-add split by embedding columns: every row of gW is summed in index
 * order, so the result is deterministic and independent of the thread count. */
void S(fnn_embedding_backward)(int64_t n, int dim, int64_t num, const int64_t *idx,
                               const T *gout, T *gW, int accumulate)
{
    if (!accumulate) memset(gW, 0, sizeof(T) * (size_t)(num * dim));
    int nt = fnn_threads_for((double)n * dim * 2);
    int cs = (int)fnn_chunk_aligned(dim, nt);
    FNN_PAR_FOR(nt, c, nt, {
        int c0 = (int)c * cs, c1 = c0 + cs < dim ? c0 + cs : dim;
        for (int64_t i = 0; i < n; i++) {
            T *w = gW + idx[i] * dim;
            const T *g = gout + i * dim;
            for (int j = c0; j < c1; j++) w[j] += g[j];
        }
    });
}

/* ------------------------------------------------- compiled dense program */
void S(fnn_dense_forward)(int n, int nl, const fnn_dense *L, const T *X, const fnn_embed *emb,
                          const int64_t *ids)
{
    if (emb) {
        S(fnn_embedding_forward)((int64_t)n * emb->k, emb->dim, ids, (const T *)emb->E,
                                 (T *)emb->X0);
        X = (const T *)emb->X0;
    }
    const T *in = X;
    for (int l = 0; l < nl; l++) {
        const fnn_dense *d = L + l;
        S(fnn_linear_forward)(n, d->n_in, d->n_out, in, d->n_in, (const T *)d->W,
                              (const T *)d->b, d->act, (T)d->slope, (T *)d->Z, (T *)d->Y);
        in = (const T *)d->Y;
    }
}

double S(fnn_dense_forward_backward)(int n, int nl, const fnn_dense *L, const T *X,
                                     const fnn_embed *emb, const int64_t *ids, int loss,
                                     const int64_t *labels, const T *target, T smoothing,
                                     double grad_scale)
{
    S(fnn_dense_forward)(n, nl, L, X, emb, ids);
    if (emb) X = (const T *)emb->X0;
    const fnn_dense *last = L + nl - 1;
    int64_t N = (int64_t)n * last->n_out;
    T *out = (T *)last->Y, *gout = (T *)last->dY;
    double value;
    switch (loss) {
    case FNN_LOSS_CE_LABELS:
        value = S(fnn_cross_entropy)(n, last->n_out, out, labels, NULL, smoothing, gout, NULL); break;
    case FNN_LOSS_CE_PROBS:
        value = S(fnn_cross_entropy)(n, last->n_out, out, NULL, target, smoothing, gout, NULL); break;
    default: value = S(fnn_pointwise_loss)(loss, N, out, target, gout, NULL, 1); break;
    }
    /* A diverged step changes nothing: the caller reports it with the weights
     * and optimizer state as they were before the step. */
    if (!isfinite(value)) return value;
    if (grad_scale != 1.0) S(fnn_scale)(N, gout, (T)grad_scale);
    for (int l = nl - 1; l >= 0; l--) {
        const fnn_dense *d = L + l;
        const T *in = l ? (const T *)L[l - 1].Y : X;
        S(fnn_linear_backward)(n, d->n_in, d->n_out, in, d->n_in, (const T *)d->W, d->act,
                               (T)d->slope, (const T *)d->Z, (const T *)d->Y, (const T *)d->dY,
                               (T *)d->dZ, (T *)d->dX, (T *)d->dW, (T *)d->db, 0);
    }
    if (emb)
        S(fnn_embedding_backward)((int64_t)n * emb->k, emb->dim, emb->num, ids,
                                  (const T *)emb->dX0, (T *)emb->dE, 0);
    return value;
}

double S(fnn_dense_step)(int n, int nl, const fnn_dense *L, const T *X, const fnn_embed *emb,
                         const int64_t *ids, int loss, const int64_t *labels, const T *target,
                         T smoothing, double max_norm, double *norm, const fnn_update *u,
                         int64_t np_, T *p, T *g)
{
    double value = S(fnn_dense_forward_backward)(n, nl, L, X, emb, ids, loss, labels, target,
                                                 smoothing, 1.0);
    if (isfinite(value)) S(fnn_clip_update)(max_norm, norm, u, np_, p, g);
    return value;
}

/* ------------------------------------------------ sequence architectures */
#include "fnn_seq.h"
#include "fnn_rnn.h"
#include "fnn_attn.h"

#undef T
#undef S
