/* Kernel bodies for attention: MultiheadAttention and the transformer block, templated on T/S like
 * fnn_template.h, which includes this file once per dtype. */

/* Self-attention over B sequences of L tokens of width E, H heads of width d = E/H.
 * Token (b, t) is row b*L + t (batch_first) or t*B + b (sequence first) of every
 * (rows, width) array, so neither layout is ever transposed: a head's rows are a
 * strided matrix with leading dimension rs*width, rs = 1 or B.
 *
 * Threads split the B*H (batch, head) pairs; each pair is computed by one thread
 * alone with the same calls whatever the thread count, so the result is bitwise
 * the same for any count. The GEMMs inside run on the calling thread. */
#define FNN_ATTN_BLOCK 64  /* causal row blocks: the masked upper half is never multiplied */

/* Row-block loop limits: with causal, rows [r0, r1) need columns [0, r1) only. */
#define ATTN_BLK(causal, L) ((causal) ? FNN_ATTN_BLOCK : (L))

/* scores (already scaled) -> probabilities, in place, one row at a time: the
 * additive mask, the causal limit and the stable max subtraction in one pass. */
FNN_CLONES static void S(attn_softmax_rows)(int L, const T *mask, int causal, T *P)
{
    for (int i = 0; i < L; i++) {
        T *p = P + (int64_t)i * L;
        int lim = causal ? i + 1 : L;
        const T *m = mask ? mask + (int64_t)i * L : NULL;
        if (m) for (int j = 0; j < lim; j++) p[j] += m[j];
        T mx = -INFINITY;
        for (int j = 0; j < lim; j++) mx = p[j] > mx ? p[j] : mx;
        /* a masked score (-inf) is an exact 0, never exp's smallest value; the exp
         * loop has no reduction in it, so it vectorizes */
        for (int j = 0; j < lim; j++) p[j] = p[j] == -INFINITY ? 0 : EXP(p[j] - mx);
        double s = 0;
        for (int j = 0; j < lim; j++) s += p[j];
        T inv = (T)(1.0 / s);  /* a fully masked row: 0 * inf = NaN, like torch */
        for (int j = 0; j < lim; j++) p[j] *= inv;
        for (int j = lim; j < L; j++) p[j] = 0;
    }
}

/* softmax backward with the score scale: G = scale * P * (dP - rowsum(dP * P)), in place over dP. */
FNN_CLONES static void S(attn_softmax_bwd_rows)(int L, int causal, T scale, const T *P, T *G)
{
    for (int i = 0; i < L; i++) {
        const T *p = P + (int64_t)i * L;
        T *g = G + (int64_t)i * L;
        int lim = causal ? i + 1 : L;
        double dot = 0;
        for (int j = 0; j < lim; j++) dot += (double)g[j] * p[j];
        T dt = (T)dot;
        for (int j = 0; j < lim; j++) g[j] = scale * p[j] * (g[j] - dt);
        for (int j = lim; j < L; j++) g[j] = 0;
    }
}

/* Dropout on the attention weights: D = P * M, M the kept entries' scale 1/(1-p) or 0. */
static void S(attn_drop)(int64_t n, const T *P, const T *M, T *D)
{
    for (int64_t i = 0; i < n; i++) D[i] = P[i] * M[i];
}

/* One (batch, head) pair forward: P = softmax(scale Q K^T + mask), C = P V, or with
 * dropout (M not NULL) D = P * M and C = D V. */
static void S(attn_pair_fwd)(int L, int d, const T *Q, const T *K, const T *V, int ldq,
                             const T *mask, int causal, T scale, T *P, const T *M, T *D, T *C,
                             int ldc)
{
    int blk = ATTN_BLK(causal, L);
    for (int r0 = 0; r0 < L; r0 += blk) {
        int r1 = r0 + blk < L ? r0 + blk : L, nc = causal ? r1 : L;
        S(fnn_gemm)(0, 1, r1 - r0, nc, d, scale, Q + (int64_t)r0 * ldq, ldq, K, ldq, 0,
                    P + (int64_t)r0 * L, L);
    }
    S(attn_softmax_rows)(L, mask, causal, P);
    if (M) {
        S(attn_drop)((int64_t)L * L, P, M, D);
        P = D;
    }
    for (int r0 = 0; r0 < L; r0 += blk) {
        int r1 = r0 + blk < L ? r0 + blk : L, nc = causal ? r1 : L;
        S(fnn_gemm)(0, 0, r1 - r0, d, nc, 1, P + (int64_t)r0 * L, L, V, ldq, 0,
                    C + (int64_t)r0 * ldc, ldc);
    }
}

/* One pair backward from dC: dV = P^T dC, dP = dC V^T, dS (in G), dQ = dS K, dK = dS^T Q;
 * with dropout dV = D^T dC and dP = (dC V^T) * M. */
static void S(attn_pair_bwd)(int L, int d, const T *Q, const T *K, const T *V, int ldq,
                             const T *P, const T *M, const T *D, const T *dC, int ldc,
                             int causal, T scale, T *G, T *dQ, T *dK, T *dV)
{
    int blk = ATTN_BLK(causal, L);
    const T *PV = M ? D : P;
    /* column blocks [c0, c1) of P^T: with causal only rows >= c0 are nonzero */
    for (int c0 = 0; c0 < L; c0 += blk) {
        int c1 = c0 + blk < L ? c0 + blk : L, rs = causal ? c0 : 0;
        S(fnn_gemm)(1, 0, c1 - c0, d, L - rs, 1, PV + (int64_t)rs * L + c0, L,
                    dC + (int64_t)rs * ldc, ldc, 0, dV + (int64_t)c0 * ldq, ldq);
    }
    for (int r0 = 0; r0 < L; r0 += blk) {
        int r1 = r0 + blk < L ? r0 + blk : L, nc = causal ? r1 : L;
        S(fnn_gemm)(0, 1, r1 - r0, nc, d, 1, dC + (int64_t)r0 * ldc, ldc, V, ldq, 0,
                    G + (int64_t)r0 * L, L);
    }
    if (M) S(attn_drop)((int64_t)L * L, G, M, G);
    S(attn_softmax_bwd_rows)(L, causal, scale, P, G);
    for (int r0 = 0; r0 < L; r0 += blk) {
        int r1 = r0 + blk < L ? r0 + blk : L, nc = causal ? r1 : L;
        S(fnn_gemm)(0, 0, r1 - r0, d, nc, 1, G + (int64_t)r0 * L, L, K, ldq, 0,
                    dQ + (int64_t)r0 * ldq, ldq);
    }
    for (int c0 = 0; c0 < L; c0 += blk) {
        int c1 = c0 + blk < L ? c0 + blk : L, rs = causal ? c0 : 0;
        S(fnn_gemm)(1, 0, c1 - c0, d, L - rs, 1, G + (int64_t)rs * L + c0, L,
                    Q + (int64_t)rs * ldq, ldq, 0, dK + (int64_t)c0 * ldq, ldq);
    }
}

static inline int S(attn_threads)(int B, int H, int L, int d)
{
    int nt = fnn_threads_for(4.0 * B * H * (double)L * L * d);
    return nt < B * H ? nt : B * H;
}

void S(fnn_mha_forward)(int B, int L, int E, int H, int batch_first, const T *X, const T *Win,
                        const T *bin, const T *Wout, const T *bout, const T *mask,
                        int64_t mask_stride, int causal, const T *M, T *QKV, T *P, T *D, T *C,
                        T *Y)
{
    int n = B * L, d = E / H, E3 = 3 * E;
    int64_t rs = batch_first ? 1 : B;
    T scale = (T)(1.0 / sqrt((double)d));
    /* the Q, K and V projections of every token: one GEMM */
    S(fnn_linear_forward)(n, E, E3, X, E, Win, bin, FNN_ACT_NONE, 0, NULL, QKV);
    int nt = S(attn_threads)(B, H, L, d);
    FNN_PAR_FOR(nt, pr, (int64_t)B * H, {
        int b = (int)(pr / H), h = (int)(pr % H);
        int64_t base = batch_first ? (int64_t)b * L : b;
        const T *q = QKV + base * E3 + (int64_t)h * d;
        S(attn_pair_fwd)(L, d, q, q + E, q + 2 * E, (int)(rs * E3),
                         mask ? mask + b * mask_stride : NULL, causal, scale, P + pr * L * L,
                         M ? M + pr * L * L : NULL, M ? D + pr * L * L : NULL,
                         C + base * E + (int64_t)h * d, (int)(rs * E));
    });
    S(fnn_linear_forward)(n, E, E, C, E, Wout, bout, FNN_ACT_NONE, 0, NULL, Y);
}

void S(fnn_mha_backward)(int B, int L, int E, int H, int batch_first, const T *X, const T *Win,
                         const T *Wout, const T *QKV, const T *P, const T *M, const T *D,
                         const T *C, const T *dY, int causal, T *dC, T *G, T *dQKV, T *dX,
                         T *dWin, T *dbin, T *dWout, T *dbout, int accumulate)
{
    int n = B * L, d = E / H, E3 = 3 * E;
    int64_t rs = batch_first ? 1 : B;
    T scale = (T)(1.0 / sqrt((double)d));
    /* output projection: dWout, dbout and dC = dY Wout */
    S(fnn_linear_backward)(n, E, E, C, E, Wout, FNN_ACT_NONE, 0, NULL, NULL, dY, (T *)dY, dC,
                           dWout, dbout, accumulate);
    int nt = S(attn_threads)(B, H, L, d);
    FNN_PAR_FOR(nt, pr, (int64_t)B * H, {
        int b = (int)(pr / H), h = (int)(pr % H);
        int64_t base = batch_first ? (int64_t)b * L : b, off = base * E3 + (int64_t)h * d;
        const T *q = QKV + off;
        T *dq = dQKV + off;
        S(attn_pair_bwd)(L, d, q, q + E, q + 2 * E, (int)(rs * E3), P + pr * L * L,
                         M ? M + pr * L * L : NULL, M ? D + pr * L * L : NULL,
                         dC + base * E + (int64_t)h * d, (int)(rs * E), causal, scale,
                         G + pr * L * L, dq, dq + E, dq + 2 * E);
    });
    /* input projection: dWin, dbin and dX = dQKV Win */
    S(fnn_linear_backward)(n, E, E3, X, E, Win, FNN_ACT_NONE, 0, NULL, NULL, dQKV, dQKV, dX,
                           dWin, dbin, accumulate);
}

/* Attention of the last query of each sequence only (the transformer LM reads
 * its last block's output at the last position alone, so the other queries of
 * that block are dead work). q (B, E) is that query, KV (B*L, 2E) every token's
 * keys then values (rows b*L + t); the last query sees every key, so no mask
 * applies. P (B, H, L) keeps the probabilities, C (B, E) the heads' outputs.
 * Each (batch, head) pair is one thread's, so the bits never depend on the count. */
void S(fnn_attn_last_forward)(int B, int L, int E, int H, const T *q, const T *KV, T *P, T *C)
{
    int d = E / H;
    T scale = (T)(1.0 / sqrt((double)d));
    FNN_PAR_FOR(fnn_threads_for(4.0 * B * H * (double)L * d), pr, (int64_t)B * H, {
        int b = (int)(pr / H), h = (int)(pr % H);
        const T *qh = q + (int64_t)b * E + (int64_t)h * d;
        const T *K = KV + (int64_t)b * L * 2 * E + (int64_t)h * d, *Vh = K + E;
        T *p = P + pr * L, *c = C + (int64_t)b * E + (int64_t)h * d;
        T mx = -INFINITY;
        for (int j = 0; j < L; j++) {
            const T *k = K + (int64_t)j * 2 * E;
            T s = 0;
            for (int i = 0; i < d; i++) s += qh[i] * k[i];
            p[j] = s * scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0;
        for (int j = 0; j < L; j++) { p[j] = EXP(p[j] - mx); sum += p[j]; }
        T inv = (T)(1.0 / sum);
        for (int i = 0; i < d; i++) c[i] = 0;
        for (int j = 0; j < L; j++) {
            const T *v = Vh + (int64_t)j * 2 * E;
            p[j] *= inv;
            for (int i = 0; i < d; i++) c[i] += p[j] * v[i];
        }
    });
}

/* Its backward from dC (B, E): dq (B, E) and dKV (B*L, 2E), both written. */
void S(fnn_attn_last_backward)(int B, int L, int E, int H, const T *q, const T *KV, const T *P,
                               const T *dC, T *dq, T *dKV)
{
    int d = E / H;
    T scale = (T)(1.0 / sqrt((double)d));
    FNN_PAR_FOR(fnn_threads_for(8.0 * B * H * (double)L * d), pr, (int64_t)B * H, {
        int b = (int)(pr / H), h = (int)(pr % H);
        int64_t off = (int64_t)b * E + (int64_t)h * d;
        int64_t koff = (int64_t)b * L * 2 * E + (int64_t)h * d;
        const T *qh = q + off, *dc = dC + off, *p = P + pr * L;
        T *dqh = dq + off;
        double dot = 0;
        for (int j = 0; j < L; j++) {  /* dp_j = dc . v_j, then sum_j p_j dp_j */
            const T *v = KV + koff + (int64_t)j * 2 * E + E;
            T s = 0;
            for (int i = 0; i < d; i++) s += dc[i] * v[i];
            dot += (double)s * p[j];
        }
        for (int i = 0; i < d; i++) dqh[i] = 0;
        for (int j = 0; j < L; j++) {
            const T *k = KV + koff + (int64_t)j * 2 * E, *v = k + E;
            T *dk = dKV + koff + (int64_t)j * 2 * E, *dv = dk + E;
            T s = 0;
            for (int i = 0; i < d; i++) s += dc[i] * v[i];
            T ds = scale * p[j] * (s - (T)dot);
            for (int i = 0; i < d; i++) {
                dqh[i] += ds * k[i];
                dk[i] = ds * qh[i];
                dv[i] = p[j] * dc[i];
            }
        }
    });
}

#undef ATTN_BLK
#undef FNN_ATTN_BLOCK
