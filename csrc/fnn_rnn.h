/* Kernel bodies for the recurrent layers: GRU and LSTM, templated on T/S like
 * fnn_template.h, which includes this file once per dtype.
 *
 * One layer, one direction, time-major. The input projection of all steps is one
 * GEMM (fnn_linear_forward over T*B rows); the weight gradients (dW_ih, dW_hh, the
 * biases) and dX are single GEMMs over all steps at the end. The hidden states
 * are kept as hs (T+1, B, H) with hs[0] = h0, so hs[0:T] is the stacked h_{t-1}
 * that dW_hh needs and hs[1:T+1] is the output.
 *
 * The recurrence (per step h W_hh^T + b_hh and the gate pass forward; the gate
 * backward and dG W_hh backward) runs in one OpenMP region over the whole time
 * loop, each thread owning a block of hidden units and one barrier per step. Its
 * products are our own small kernel over W_hh packed once per call (rnn_pack_*),
 * not BLAS: a BLAS call re-packs all of W_hh (768 KB for a GRU at H=256) every
 * step, and a BLAS product cut into column blocks does not keep one call's bits
 * (OpenBLAS Haswell sgemm). Each thread packs the panels it alone reads. Here every output element is one sum over k in a fixed order,
 * whichever thread computes it, so results do not depend on the thread count. */

/* ------------------------------------------------------- the step products */
/* A panel is RNN_NR consecutive output columns of a packed matrix, stored k-major
 * (K rows of RNN_NR values), zero-padded past the last column. */
typedef T S(vec) __attribute__((vector_size(32)));
#define RNN_VL ((int)(32 / sizeof(T)))
#define RNN_NR (2 * RNN_VL)

/* Unaligned vector moves, as memcpy (no vector passed by value: a plain function
 * would change the ABI between the clones). */
#define RNN_LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define RNN_STORE(p, v) memcpy((p), &(v), sizeof(v))

/* Start of the sums of one output row: C itself (beta), init (one panel row) or 0. */
static inline void S(rnn_start)(const T *c, int nc, const T *init, int beta, S(vec) *a)
{
    T tmp[RNN_NR] = {0};
    if (beta) memcpy(tmp, c, (size_t)nc * sizeof(T));
    else if (init) memcpy(tmp, init, sizeof tmp);
    RNN_LOAD(a[0], tmp);
    RNN_LOAD(a[1], tmp + RNN_VL);
}

static inline void S(rnn_store)(T *c, int nc, const S(vec) *a)
{
    if (nc == RNN_NR) {
        RNN_STORE(c, a[0]);
        RNN_STORE(c + RNN_VL, a[1]);
        return;
    }
    T tmp[RNN_NR];
    RNN_STORE(tmp, a[0]);
    RNN_STORE(tmp + RNN_VL, a[1]);
    memcpy(c, tmp, (size_t)nc * sizeof(T));
}

/* C[b][0:nc] = start + sum_k A[b][k] P[k][0:nc] for b < M, k = 0, 1, ..., K-1 in
 * that order (four rows at a time: eight independent vector sums hide the FMA
 * latency). */
FNN_CLONES static void S(rnn_panel)(int M, int K, const T *A, int64_t lda, const T *P,
                                    const T *init, int beta, T *C, int64_t ldc, int nc)
{
    int b = 0;
    for (; b + 4 <= M; b += 4) {
        const T *a0 = A + b * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        S(vec) s[4][2];
        for (int r = 0; r < 4; r++) S(rnn_start)(C + (b + r) * ldc, nc, init, beta, s[r]);
        for (int k = 0; k < K; k++) {
            S(vec) w0, w1;
            RNN_LOAD(w0, P + (int64_t)k * RNN_NR);
            RNN_LOAD(w1, P + (int64_t)k * RNN_NR + RNN_VL);
            s[0][0] += a0[k] * w0; s[0][1] += a0[k] * w1;
            s[1][0] += a1[k] * w0; s[1][1] += a1[k] * w1;
            s[2][0] += a2[k] * w0; s[2][1] += a2[k] * w1;
            s[3][0] += a3[k] * w0; s[3][1] += a3[k] * w1;
        }
        for (int r = 0; r < 4; r++) S(rnn_store)(C + (b + r) * ldc, nc, s[r]);
    }
    for (; b < M; b++) {
        const T *a0 = A + b * lda;
        S(vec) s[2];
        S(rnn_start)(C + b * ldc, nc, init, beta, s);
        for (int k = 0; k < K; k++) {
            S(vec) w0, w1;
            RNN_LOAD(w0, P + (int64_t)k * RNN_NR);
            RNN_LOAD(w1, P + (int64_t)k * RNN_NR + RNN_VL);
            s[0] += a0[k] * w0;
            s[1] += a0[k] * w1;
        }
        S(rnn_store)(C + b * ldc, nc, s);
    }
}

static inline int S(rnn_panels)(int H) { return (H + RNN_NR - 1) / RNN_NR; }

/* Forward pack: panel p * G + g holds units [p NR, p NR + NR) of gate g, W_hh^T's
 * H rows then b_hh's row (zeros without bias): (P G, H + 1, NR). Each thread packs
 * the panels [p0, p1) it alone reads, so packing needs no barrier. */
static void S(rnn_pack_fwd)(int G, int H, const T *Whh, const T *bhh, T *wp, int p0, int p1)
{
    for (int p = p0; p < p1; p++)
        for (int g = 0; g < G; g++) {
            T *q = wp + (int64_t)(p * G + g) * (H + 1) * RNN_NR;
            for (int c = 0; c < RNN_NR; c++) {
                int u = p * RNN_NR + c;
                const T *row = Whh + ((int64_t)g * H + u) * H;
                for (int k = 0; k < H; k++) q[(int64_t)k * RNN_NR + c] = u < H ? row[k] : 0;
                q[(int64_t)H * RNN_NR + c] = u < H && bhh ? bhh[g * H + u] : 0;
            }
        }
}

/* Backward pack: panel p holds columns [p NR, p NR + NR) of W_hh: (P, G H, NR);
 * panels [p0, p1), as forward. */
static void S(rnn_pack_bwd)(int G, int H, const T *Whh, T *wp, int p0, int p1)
{
    int GH = G * H;
    for (int p = p0; p < p1; p++) {
        T *q = wp + (int64_t)p * GH * RNN_NR;
        for (int n = 0; n < GH; n++)
            for (int c = 0; c < RNN_NR; c++) {
                int u = p * RNN_NR + c;
                q[(int64_t)n * RNN_NR + c] = u < H ? Whh[(int64_t)n * H + u] : 0;
            }
    }
}

/* This thread's share of one forward step: gh[:, g H + u] = h W_hh^T + b_hh for
 * every gate g and the units u of panels [p0, p1). */
static void S(rnn_step_fwd)(int G, int B, int H, int p0, int p1, const T *hp, const T *wp, T *gh)
{
    for (int p = p0; p < p1; p++) {
        int nc = H - p * RNN_NR < RNN_NR ? H - p * RNN_NR : RNN_NR;
        for (int g = 0; g < G; g++) {
            const T *q = wp + (int64_t)(p * G + g) * (H + 1) * RNN_NR;
            S(rnn_panel)(B, H, hp, H, q, q + (int64_t)H * RNN_NR, 0,
                         gh + (int64_t)g * H + p * RNN_NR, (int64_t)G * H, nc);
        }
    }
}

/* This thread's share of one backward step: dh[:, u] (+)= dG W_hh for the units of
 * panels [p0, p1). */
static void S(rnn_step_bwd)(int G, int B, int H, int p0, int p1, const T *dg, const T *wp,
                            int beta, T *dh)
{
    for (int p = p0; p < p1; p++) {
        int nc = H - p * RNN_NR < RNN_NR ? H - p * RNN_NR : RNN_NR;
        S(rnn_panel)(B, G * H, dg, (int64_t)G * H, wp + (int64_t)p * G * H * RNN_NR, NULL, beta,
                     dh + p * RNN_NR, H, nc);
    }
}

/* Threads for the time loop (at most one per panel). */
static inline int S(rnn_threads)(int Tn, int B, int G, int H)
{
    int nt = fnn_threads_for((double)Tn * B * G * H * H * FNN_GEMM_PER_FLOP), P = S(rnn_panels)(H);
    return nt < P ? nt : P;
}

#ifdef _OPENMP
#define RNN_BARRIER(nth) do { if ((nth) > 1) { _Pragma("omp barrier") } } while (0)
/* Run CALL (which sees i, nth) on nt threads, or once serially (a serial call never
 * enters OpenMP, so a forked child cannot hang). */
#define RNN_REGION(nt, CALL)                                                          \
    do {                                                                              \
        int rnn_nt_ = (nt);                                                           \
        if (rnn_nt_ > 1) {                                                            \
            fnn_pool_started = 1;                                                     \
            _Pragma("omp parallel num_threads(rnn_nt_)")                              \
            {                                                                         \
                int i = omp_get_thread_num(), nth = omp_get_num_threads();            \
                CALL;                                                                 \
            }                                                                         \
        } else {                                                                      \
            int i = 0, nth = 1;                                                       \
            CALL;                                                                     \
        }                                                                             \
    } while (0)
#else
#define RNN_BARRIER(nth) ((void)(nth))
#define RNN_REGION(nt, CALL) do { int i = 0, nth = 1; (void)(nt); CALL; } while (0)
#endif

/* ------------------------------------------------------------------- GRU */
/* Units [u0, u1) of every row of one step. g: x W_ih^T + b_ih in, (r, z, n) out;
 * gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(gru_gate_units)(int B, int H, int u0, int u1, T *g, const T *gh,
                                         const T *hp, T *h)
{
    int64_t n = u1 - u0;
    for (int b = 0; b < B; b++) {
        T *restrict gr = g + (int64_t)b * 3 * H + u0, *restrict gz = gr + H, *restrict gn = gz + H;
        const T *restrict hr = gh + (int64_t)b * 3 * H + u0, *restrict hz = hr + H, *restrict hn = hz + H;
        const T *restrict p = hp + (int64_t)b * H + u0;
        T *restrict o = h + (int64_t)b * H + u0;
        /* one simple loop per gate: each vectorizes (one fused loop did not, gcc 12) */
        for (int64_t j = 0; j < n; j++) gr[j] = S(sigmoid1)(gr[j] + hr[j]);
        for (int64_t j = 0; j < n; j++) gz[j] = S(sigmoid1)(gz[j] + hz[j]);
        for (int64_t j = 0; j < n; j++) gn[j] = TANH(gn[j] + gr[j] * hn[j]);
        for (int64_t j = 0; j < n; j++) o[j] = ((T)1 - gz[j]) * gn[j] + gz[j] * p[j];
    }
}

/* Units [u0, u1) of every row of one step backward. dh: the carried gradient of
 * h_t in, of h_{t-1} through z out (the product term is added after). */
FNN_CLONES static void S(gru_gate_bwd_units)(int B, int H, int u0, int u1, const T *g,
                                             const T *gh, const T *hp, const T *gy, T *dh,
                                             T *dgx, T *dgh)
{
    int64_t n = u1 - u0;
    for (int b = 0; b < B; b++) {
        const T *restrict R = g + (int64_t)b * 3 * H + u0, *restrict Z = R + H, *restrict N = Z + H;
        const T *restrict hn = gh + (int64_t)b * 3 * H + 2 * H + u0;
        const T *restrict p = hp + (int64_t)b * H + u0, *restrict y = gy + (int64_t)b * H + u0;
        T *restrict d = dh + (int64_t)b * H + u0;
        T *restrict xr = dgx + (int64_t)b * 3 * H + u0, *restrict xz = xr + H, *restrict xn = xz + H;
        T *restrict hr = dgh + (int64_t)b * 3 * H + u0, *restrict hz = hr + H, *restrict hnn = hz + H;
        for (int64_t j = 0; j < n; j++) d[j] += y[j];  /* the gradient of h_t */
        for (int64_t j = 0; j < n; j++) xn[j] = d[j] * ((T)1 - Z[j]) * ((T)1 - N[j] * N[j]);
        for (int64_t j = 0; j < n; j++) xz[j] = d[j] * (p[j] - N[j]) * Z[j] * ((T)1 - Z[j]);
        for (int64_t j = 0; j < n; j++) xr[j] = xn[j] * hn[j] * R[j] * ((T)1 - R[j]);
        for (int64_t j = 0; j < n; j++) { hr[j] = xr[j]; hz[j] = xz[j]; hnn[j] = xn[j] * R[j]; }
        for (int64_t j = 0; j < n; j++) d[j] *= Z[j];
    }
}

/* ------------------------------------------------------------------ LSTM */
/* Units [u0, u1) of every row of one step. g: x W_ih^T + b_ih in, (i, f, g, o) out;
 * gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(lstm_gate_units)(int B, int H, int u0, int u1, T *g, const T *gh,
                                          const T *cp, T *c, T *h)
{
    int64_t n = u1 - u0;
    for (int b = 0; b < B; b++) {
        T *restrict gi = g + (int64_t)b * 4 * H + u0, *restrict gf = gi + H, *restrict gg = gf + H, *restrict go = gg + H;
        const T *restrict hi = gh + (int64_t)b * 4 * H + u0, *restrict hf = hi + H, *restrict hg = hf + H, *restrict ho = hg + H;
        const T *restrict p = cp + (int64_t)b * H + u0;
        T *restrict cc = c + (int64_t)b * H + u0, *restrict o = h + (int64_t)b * H + u0;
        for (int64_t j = 0; j < n; j++) gi[j] = S(sigmoid1)(gi[j] + hi[j]);
        for (int64_t j = 0; j < n; j++) gf[j] = S(sigmoid1)(gf[j] + hf[j]);
        for (int64_t j = 0; j < n; j++) gg[j] = TANH(gg[j] + hg[j]);
        for (int64_t j = 0; j < n; j++) go[j] = S(sigmoid1)(go[j] + ho[j]);
        for (int64_t j = 0; j < n; j++) cc[j] = gf[j] * p[j] + gi[j] * gg[j];
        for (int64_t j = 0; j < n; j++) o[j] = go[j] * TANH(cc[j]);
    }
}

/* Units [u0, u1) of every row of one step backward; dh, dc: carried gradients of
 * h_t, c_t in; dc becomes the gradient of c_{t-1} (dh is then overwritten by the
 * product). */
FNN_CLONES static void S(lstm_gate_bwd_units)(int B, int H, int u0, int u1, const T *g,
                                              const T *cp, const T *c, const T *gy, const T *dh,
                                              T *dc, T *dg)
{
    int64_t n = u1 - u0;
    for (int b = 0; b < B; b++) {
        const T *restrict Gi = g + (int64_t)b * 4 * H + u0, *restrict Gf = Gi + H, *restrict Gg = Gf + H, *restrict Go = Gg + H;
        const T *restrict p = cp + (int64_t)b * H + u0, *restrict cc = c + (int64_t)b * H + u0;
        const T *restrict y = gy + (int64_t)b * H + u0;
        const T *dhb = dh + (int64_t)b * H + u0;
        T *restrict dcb = dc + (int64_t)b * H + u0;
        T *restrict di = dg + (int64_t)b * 4 * H + u0, *restrict df = di + H, *restrict du = df + H, *restrict dq = du + H;
        for (int64_t j = 0; j < n; j++) dq[j] = TANH(cc[j]);  /* tanh(c_t), then do */
        for (int64_t j = 0; j < n; j++)
            dcb[j] += (dhb[j] + y[j]) * Go[j] * ((T)1 - dq[j] * dq[j]);
        for (int64_t j = 0; j < n; j++) dq[j] = (dhb[j] + y[j]) * dq[j] * Go[j] * ((T)1 - Go[j]);
        for (int64_t j = 0; j < n; j++) di[j] = dcb[j] * Gg[j] * Gi[j] * ((T)1 - Gi[j]);
        for (int64_t j = 0; j < n; j++) df[j] = dcb[j] * p[j] * Gf[j] * ((T)1 - Gf[j]);
        for (int64_t j = 0; j < n; j++) du[j] = dcb[j] * Gi[j] * ((T)1 - Gg[j] * Gg[j]);
        for (int64_t j = 0; j < n; j++) dcb[j] *= Gf[j];
    }
}

/* ------------------------------------------------------- the time loops */
/* One GRU (cs == NULL, 3 gates) or LSTM (cs given, 4 gates) layer: the cells
 * differ only in their gate passes; the thread's share of W_hh, its packing and
 * the time loop with one barrier per step are the same. */
#define RNN_GATES(cs) ((cs) ? 4 : 3)

/* Thread i's panels [p0, p1) and their units [u0, u1). */
typedef struct { int p0, p1, u0, u1; } S(rnn_part);
static inline S(rnn_part) S(rnn_share)(int H, int i, int nth)
{
    int P = S(rnn_panels)(H);
    S(rnn_part) r;
    r.p0 = (int)((int64_t)P * i / nth);
    r.p1 = (int)((int64_t)P * (i + 1) / nth);
    r.u0 = r.p0 * RNN_NR;
    r.u1 = r.p1 * RNN_NR < H ? r.p1 * RNN_NR : H;
    return r;
}

/* gh: the GRU keeps every step's h W_hh^T + b_hh (Tn*B, 3H) for backward; the
 * LSTM reuses one step's (B, 4H). */
static void S(rnn_steps_fwd)(int Tn, int B, int H, int i, int nth, const T *Whh, const T *bhh,
                             T *wp, T *hs, T *cs, T *G, T *gh)
{
    int ng = RNN_GATES(cs);
    int64_t BH = (int64_t)B * H, BG = BH * ng, ghs = cs ? 0 : BG;
    S(rnn_part) r = S(rnn_share)(H, i, nth);
    S(rnn_pack_fwd)(ng, H, Whh, bhh, wp, r.p0, r.p1);
    for (int t = 0; t < Tn; t++) {
        T *ght = gh + t * ghs;
        S(rnn_step_fwd)(ng, B, H, r.p0, r.p1, hs + t * BH, wp, ght);
        if (cs)
            S(lstm_gate_units)(B, H, r.u0, r.u1, G + t * BG, ght, cs + t * BH, cs + (t + 1) * BH,
                               hs + (t + 1) * BH);
        else
            S(gru_gate_units)(B, H, r.u0, r.u1, G + t * BG, ght, hs + t * BH, hs + (t + 1) * BH);
        RNN_BARRIER(nth);
    }
}

void S(fnn_rnn_forward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                        const T *bih, const T *bhh, T *hs, T *cs, T *G, T *gh, T *wp)
{
    int ng = RNN_GATES(cs);
    if (X) S(fnn_linear_forward)(Tn * B, In, ng * H, X, In, Wih, bih, FNN_ACT_NONE, 0, NULL, G);
    RNN_REGION(S(rnn_threads)(Tn, B, ng, H),
               S(rnn_steps_fwd)(Tn, B, H, i, nth, Whh, bhh, wp, hs, cs, G, gh));
}

/* The GRU's dh carries through its gate pass and gets dG W_hh added; the LSTM
 * carries dc and its dh is the product alone. */
static void S(rnn_steps_bwd)(int Tn, int B, int H, int i, int nth, const T *Whh, T *wp,
                             const T *hs, const T *cs, const T *G, const T *Gh, const T *dY,
                             T *dh, T *dc, T *dGx, T *dGh)
{
    int ng = RNN_GATES(cs);
    int64_t BH = (int64_t)B * H, BG = BH * ng;
    S(rnn_part) r = S(rnn_share)(H, i, nth);
    S(rnn_pack_bwd)(ng, H, Whh, wp, r.p0, r.p1);
    for (int t = Tn - 1; t >= 0; t--) {
        if (cs)
            S(lstm_gate_bwd_units)(B, H, r.u0, r.u1, G + t * BG, cs + t * BH, cs + (t + 1) * BH,
                                   dY + t * BH, dh, dc, dGh + t * BG);
        else
            S(gru_gate_bwd_units)(B, H, r.u0, r.u1, G + t * BG, Gh + t * BG, hs + t * BH,
                                  dY + t * BH, dh, dGx + t * BG, dGh + t * BG);
        RNN_BARRIER(nth);  /* the product reads every unit's dG */
        S(rnn_step_bwd)(ng, B, H, r.p0, r.p1, dGh + t * BG, wp, !cs, dh);
    }
}

/* After the time loop: dW_hh, db_hh from the n = T*B stacked h_{t-1} and the
 * recurrent gate gradients dGh; dW_ih, db_ih, dX from the inputs and dGx (left
 * to the caller when X is NULL). One product each over all steps. */
static void S(rnn_weight_grads)(int n, int In, int H, int G, const T *X, const T *Wih,
                                const T *Whh, const T *hs, T *dGh, T *dGx, T *dX, T *dWih,
                                T *dWhh, T *dbih, T *dbhh, int accumulate)
{
    S(fnn_linear_backward)(n, H, G * H, hs, H, Whh, FNN_ACT_NONE, 0, NULL, NULL, dGh, dGh, NULL,
                           dWhh, dbhh, accumulate);
    if (X)
        S(fnn_linear_backward)(n, In, G * H, X, In, Wih, FNN_ACT_NONE, 0, NULL, NULL, dGx, dGx,
                               dX, dWih, dbih, accumulate);
}

void S(fnn_rnn_backward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                         const T *hs, const T *cs, const T *G, const T *Gh, const T *dY, T *dh,
                         T *dc, T *dGx, T *dGh, T *dX, T *dWih, T *dWhh, T *dbih, T *dbhh,
                         T *wp, int accumulate)
{
    int ng = RNN_GATES(cs);
    RNN_REGION(S(rnn_threads)(Tn, B, ng, H),
               S(rnn_steps_bwd)(Tn, B, H, i, nth, Whh, wp, hs, cs, G, Gh, dY, dh, dc, dGx, dGh));
    S(rnn_weight_grads)(Tn * B, In, H, ng, X, Wih, Whh, hs, dGh, dGx, dX, dWih, dWhh, dbih, dbhh,
                        accumulate);
}

#undef RNN_VL
#undef RNN_NR
#undef RNN_LOAD
#undef RNN_STORE
#undef RNN_BARRIER
#undef RNN_REGION
#undef RNN_GATES
