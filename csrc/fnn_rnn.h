/* Kernel bodies for the recurrent layers: GRU and LSTM, templated on T/S like
 * fnn_template.h, which includes this file once per dtype.
 *
 * One layer, one direction, time-major. The input projection of all steps is one
 * GEMM (fnn_linear_forward over T*B rows); each step is then one GEMM h W_hh^T
 * (+ b_hh) and one fused, elementwise gate pass. Backward through time runs a
 * fused gate backward per step and one GEMM dG_t W_hh for the carried state
 * gradient; the weight gradients (dW_ih, dW_hh, the biases) and dX are single
 * GEMMs over all steps at the end. The hidden states are kept as hs (T+1, B, H)
 * with hs[0] = h0, so hs[0:T] is the stacked h_{t-1} that dW_hh needs and
 * hs[1:T+1] is the output.
 *
 * Threads: the whole-sequence GEMMs go through fnn_linear_forward/backward,
 * which cut them only where the cut keeps one call's bits (gemm_plan); the per-step GEMMs are
 * one BLAS call each on the calling thread (splitting a 64x768x256 step product
 * in two cost 1.6x on one thread here, and the recurrence is serial anyway); the
 * gate passes split the batch rows among the threads and are elementwise. So
 * results do not depend on the thread count. b_hh is added inside the gate pass. */

/* ------------------------------------------------------------------- GRU */
/* Rows [r0, r1) of one step. g: x W_ih^T + b_ih in, (r, z, n) out; gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(gru_gate_rows)(int r0, int r1, int H, T *g, T *gh, const T *bhh,
                                        const T *hp, T *h)
{
    if (bhh)  /* b_hh first, outside the restrict-qualified block below */
        for (int b = r0; b < r1; b++) {
            T *q = gh + (int64_t)b * 3 * H;
            for (int j = 0; j < 3 * H; j++) q[j] += bhh[j];
        }
    for (int b = r0; b < r1; b++) {
        T *restrict gr = g + (int64_t)b * 3 * H, *restrict gz = gr + H, *restrict gn = gz + H;
        T *restrict hr = gh + (int64_t)b * 3 * H, *restrict hz = hr + H, *restrict hn = hz + H;
        const T *restrict p = hp + (int64_t)b * H;
        T *restrict o = h + (int64_t)b * H;
        /* one simple loop per gate: each vectorizes (one fused loop did not, gcc 12) */
        for (int64_t j = 0; j < H; j++) gr[j] = S(sigmoid1)(gr[j] + hr[j]);
        for (int64_t j = 0; j < H; j++) gz[j] = S(sigmoid1)(gz[j] + hz[j]);
        for (int64_t j = 0; j < H; j++) gn[j] = TANH(gn[j] + gr[j] * hn[j]);
        for (int64_t j = 0; j < H; j++) o[j] = ((T)1 - gz[j]) * gn[j] + gz[j] * p[j];
    }
}

void S(fnn_gru_forward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                        const T *bih, const T *bhh, T *hs, T *G, T *Gh)
{
    int64_t BH = (int64_t)B * H, BG = (int64_t)B * 3 * H;
    S(fnn_linear_forward)(Tn * B, In, 3 * H, X, In, Wih, bih, FNN_ACT_NONE, 0, NULL, G);
    int nt = fnn_threads_for((double)BH * 40);
    int cs = (int)fnn_chunk(B, nt);
    for (int t = 0; t < Tn; t++) {
        const T *hp = hs + t * BH;
        T *g = G + t * BG, *gh = Gh + t * BG;
        S(fnn_gemm)(0, 1, B, 3 * H, H, 1, hp, H, Whh, H, 0, gh, 3 * H);
        FNN_PAR_FOR(nt, c, nt, {
            int r0 = (int)c * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(gru_gate_rows)(r0, r1, H, g, gh, bhh, hp, hs + (t + 1) * BH);
        });
    }
}

/* Rows [r0, r1) of one step backward. dh: the carried gradient of h_t in, of
 * h_{t-1} through z out (the GEMM term is added after). */
FNN_CLONES static void S(gru_gate_bwd_rows)(int r0, int r1, int H, const T *g, const T *gh,
                                            const T *hp, const T *gy, T *dh, T *dgx, T *dgh)
{
    for (int b = r0; b < r1; b++) {
        const T *restrict R = g + (int64_t)b * 3 * H, *restrict Z = R + H, *restrict N = Z + H;
        const T *restrict hn = gh + (int64_t)b * 3 * H + 2 * H;
        const T *restrict p = hp + (int64_t)b * H, *restrict y = gy + (int64_t)b * H;
        T *restrict d = dh + (int64_t)b * H;
        T *restrict xr = dgx + (int64_t)b * 3 * H, *restrict xz = xr + H, *restrict xn = xz + H;
        T *restrict hr = dgh + (int64_t)b * 3 * H, *restrict hz = hr + H, *restrict hnn = hz + H;
        for (int64_t j = 0; j < H; j++) d[j] += y[j];  /* the gradient of h_t */
        for (int64_t j = 0; j < H; j++) xn[j] = d[j] * ((T)1 - Z[j]) * ((T)1 - N[j] * N[j]);
        for (int64_t j = 0; j < H; j++) xz[j] = d[j] * (p[j] - N[j]) * Z[j] * ((T)1 - Z[j]);
        for (int64_t j = 0; j < H; j++) xr[j] = xn[j] * hn[j] * R[j] * ((T)1 - R[j]);
        for (int64_t j = 0; j < H; j++) { hr[j] = xr[j]; hz[j] = xz[j]; hnn[j] = xn[j] * R[j]; }
        for (int64_t j = 0; j < H; j++) d[j] *= Z[j];
    }
}

void S(fnn_gru_backward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                         const T *hs, const T *G, const T *Gh, const T *dY, T *dh, T *dGx,
                         T *dGh, T *dX, T *dWih, T *dWhh, T *dbih, T *dbhh, int accumulate)
{
    int64_t BH = (int64_t)B * H, BG = (int64_t)B * 3 * H;
    int nt = fnn_threads_for((double)BH * 16);
    int cs = (int)fnn_chunk(B, nt);
    for (int t = Tn - 1; t >= 0; t--) {
        const T *g = G + t * BG, *gh = Gh + t * BG, *hp = hs + t * BH, *gy = dY + t * BH;
        T *dgx = dGx + t * BG, *dgh = dGh + t * BG;
        FNN_PAR_FOR(nt, c, nt, {
            int r0 = (int)c * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(gru_gate_bwd_rows)(r0, r1, H, g, gh, hp, gy, dh, dgx, dgh);
        });
        S(fnn_gemm)(0, 0, B, H, 3 * H, 1, dgh, 3 * H, Whh, H, 1, dh, H);
    }
    int n = Tn * B;
    S(fnn_linear_backward)(n, H, 3 * H, hs, H, Whh, FNN_ACT_NONE, 0, NULL, NULL, dGh, dGh, NULL,
                           dWhh, dbhh, accumulate);
    S(fnn_linear_backward)(n, In, 3 * H, X, In, Wih, FNN_ACT_NONE, 0, NULL, NULL, dGx, dGx, dX,
                           dWih, dbih, accumulate);
}

/* ------------------------------------------------------------------ LSTM */
/* Rows [r0, r1) of one step. g: x W_ih^T + b_ih in, (i, f, g, o) out; gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(lstm_gate_rows)(int r0, int r1, int H, T *g, T *gh, const T *bhh,
                                         const T *cp, T *c, T *h)
{
    if (bhh)  /* b_hh first, outside the restrict-qualified block below */
        for (int b = r0; b < r1; b++) {
            T *q = gh + (int64_t)b * 4 * H;
            for (int j = 0; j < 4 * H; j++) q[j] += bhh[j];
        }
    for (int b = r0; b < r1; b++) {
        T *restrict gi = g + (int64_t)b * 4 * H, *restrict gf = gi + H, *restrict gg = gf + H, *restrict go = gg + H;
        T *restrict hi = gh + (int64_t)b * 4 * H, *restrict hf = hi + H, *restrict hg = hf + H, *restrict ho = hg + H;
        const T *restrict p = cp + (int64_t)b * H;
        T *restrict cc = c + (int64_t)b * H, *restrict o = h + (int64_t)b * H;
        for (int64_t j = 0; j < H; j++) gi[j] = S(sigmoid1)(gi[j] + hi[j]);
        for (int64_t j = 0; j < H; j++) gf[j] = S(sigmoid1)(gf[j] + hf[j]);
        for (int64_t j = 0; j < H; j++) gg[j] = TANH(gg[j] + hg[j]);
        for (int64_t j = 0; j < H; j++) go[j] = S(sigmoid1)(go[j] + ho[j]);
        for (int64_t j = 0; j < H; j++) cc[j] = gf[j] * p[j] + gi[j] * gg[j];
        for (int64_t j = 0; j < H; j++) o[j] = go[j] * TANH(cc[j]);
    }
}

void S(fnn_lstm_forward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                         const T *bih, const T *bhh, T *hs, T *cs_, T *G, T *gh)
{
    int64_t BH = (int64_t)B * H, BG = (int64_t)B * 4 * H;
    S(fnn_linear_forward)(Tn * B, In, 4 * H, X, In, Wih, bih, FNN_ACT_NONE, 0, NULL, G);
    int nt = fnn_threads_for((double)BH * 60);
    int cs = (int)fnn_chunk(B, nt);
    for (int t = 0; t < Tn; t++) {
        const T *hp = hs + t * BH, *cp = cs_ + t * BH;
        T *g = G + t * BG;
        S(fnn_gemm)(0, 1, B, 4 * H, H, 1, hp, H, Whh, H, 0, gh, 4 * H);
        FNN_PAR_FOR(nt, c, nt, {
            int r0 = (int)c * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(lstm_gate_rows)(r0, r1, H, g, gh, bhh, cp, cs_ + (t + 1) * BH, hs + (t + 1) * BH);
        });
    }
}

/* Rows [r0, r1) of one step backward; dh, dc: carried gradients of h_t, c_t in;
 * dc becomes the gradient of c_{t-1} (dh is then overwritten by the GEMM). */
FNN_CLONES static void S(lstm_gate_bwd_rows)(int r0, int r1, int H, const T *g, const T *cp,
                                             const T *c, const T *gy, const T *dh, T *dc, T *dg)
{
    for (int b = r0; b < r1; b++) {
        const T *restrict Gi = g + (int64_t)b * 4 * H, *restrict Gf = Gi + H, *restrict Gg = Gf + H, *restrict Go = Gg + H;
        const T *restrict p = cp + (int64_t)b * H, *restrict cc = c + (int64_t)b * H, *restrict y = gy + (int64_t)b * H;
        const T *dhb = dh + (int64_t)b * H;
        T *restrict dcb = dc + (int64_t)b * H;
        T *restrict di = dg + (int64_t)b * 4 * H, *restrict df = di + H, *restrict du = df + H, *restrict dq = du + H;
        for (int64_t j = 0; j < H; j++) dq[j] = TANH(cc[j]);  /* tanh(c_t), then do */
        for (int64_t j = 0; j < H; j++)
            dcb[j] += (dhb[j] + y[j]) * Go[j] * ((T)1 - dq[j] * dq[j]);
        for (int64_t j = 0; j < H; j++) dq[j] = (dhb[j] + y[j]) * dq[j] * Go[j] * ((T)1 - Go[j]);
        for (int64_t j = 0; j < H; j++) di[j] = dcb[j] * Gg[j] * Gi[j] * ((T)1 - Gi[j]);
        for (int64_t j = 0; j < H; j++) df[j] = dcb[j] * p[j] * Gf[j] * ((T)1 - Gf[j]);
        for (int64_t j = 0; j < H; j++) du[j] = dcb[j] * Gi[j] * ((T)1 - Gg[j] * Gg[j]);
        for (int64_t j = 0; j < H; j++) dcb[j] *= Gf[j];
    }
}

void S(fnn_lstm_backward)(int Tn, int B, int In, int H, const T *X, const T *Wih, const T *Whh,
                          const T *hs, const T *cs_, const T *G, const T *dY, T *dh, T *dc,
                          T *dG, T *dX, T *dWih, T *dWhh, T *dbih, T *dbhh, int accumulate)
{
    int64_t BH = (int64_t)B * H, BG = (int64_t)B * 4 * H;
    int nt = fnn_threads_for((double)BH * 40);
    int cs = (int)fnn_chunk(B, nt);
    for (int t = Tn - 1; t >= 0; t--) {
        const T *g = G + t * BG, *cp = cs_ + t * BH, *c = cs_ + (t + 1) * BH, *gy = dY + t * BH;
        T *dg = dG + t * BG;
        FNN_PAR_FOR(nt, k, nt, {
            int r0 = (int)k * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(lstm_gate_bwd_rows)(r0, r1, H, g, cp, c, gy, dh, dc, dg);
        });
        S(fnn_gemm)(0, 0, B, H, 4 * H, 1, dg, 4 * H, Whh, H, 0, dh, H);
    }
    int n = Tn * B;
    S(fnn_linear_backward)(n, H, 4 * H, hs, H, Whh, FNN_ACT_NONE, 0, NULL, NULL, dG, dG, NULL,
                           dWhh, dbhh, accumulate);
    S(fnn_linear_backward)(n, In, 4 * H, X, In, Wih, FNN_ACT_NONE, 0, NULL, NULL, dG, dG, dX,
                           dWih, dbih, accumulate);
}
