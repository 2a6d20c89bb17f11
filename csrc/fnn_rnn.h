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
 * hs[1:T+1] is the output. GEMM splits come from fnn_gemm_parts (machine and
 * size only) and the gate passes are elementwise, so results do not depend on
 * the thread count. */

/* C (M x N) = A (M x K) Bm (K x N) + beta C, contiguous row-major, split into
 * fixed blocks of rows (or of columns) that the threads share. */
static void S(rnn_mm)(int M, int N, int K, const T *A, const T *Bm, T beta, T *C)
{
    int parts = fnn_gemm_parts((double)M * N * K), nt = fnn_parts_threads(parts);
    if (M >= N) {
        int cs = (int)fnn_chunk(M, parts);
        FNN_PAR_FOR(nt, p, parts, {
            int r0 = (int)p * cs, r1 = r0 + cs < M ? r0 + cs : M;
            if (r1 > r0) S(fnn_gemm)(0, 0, r1 - r0, N, K, 1, A + (int64_t)r0 * K, K, Bm, N, beta,
                                     C + (int64_t)r0 * N, N);
        });
    } else {
        int cs = (int)fnn_chunk_aligned(N, parts);
        FNN_PAR_FOR(nt, p, parts, {
            int c0 = (int)p * cs, c1 = c0 + cs < N ? c0 + cs : N;
            if (c1 > c0) S(fnn_gemm)(0, 0, M, c1 - c0, K, 1, A, K, Bm + c0, N, beta, C + c0, N);
        });
    }
}

/* ------------------------------------------------------------------- GRU */
/* Rows [r0, r1) of one step. g: x W_ih^T + b_ih in, (r, z, n) out; gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(gru_gate_rows)(int r0, int r1, int H, T *g, const T *gh, const T *hp,
                                        T *h)
{
    for (int b = r0; b < r1; b++) {
        T *gr = g + (int64_t)b * 3 * H, *gz = gr + H, *gn = gz + H;
        const T *hr = gh + (int64_t)b * 3 * H, *hz = hr + H, *hn = hz + H;
        const T *p = hp + (int64_t)b * H;
        T *o = h + (int64_t)b * H;
        for (int j = 0; j < H; j++) {
            T r = S(sigmoid1)(gr[j] + hr[j]);
            T z = S(sigmoid1)(gz[j] + hz[j]);
            T n = TANH(gn[j] + r * hn[j]);
            gr[j] = r;
            gz[j] = z;
            gn[j] = n;
            o[j] = ((T)1 - z) * n + z * p[j];
        }
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
        S(fnn_linear_forward)(B, H, 3 * H, hp, H, Whh, bhh, FNN_ACT_NONE, 0, NULL, gh);
        FNN_PAR_FOR(nt, c, nt, {
            int r0 = (int)c * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(gru_gate_rows)(r0, r1, H, g, gh, hp, hs + (t + 1) * BH);
        });
    }
}

/* Rows [r0, r1) of one step backward. dh: the carried gradient of h_t in, of
 * h_{t-1} through z out (the GEMM term is added after). */
FNN_CLONES static void S(gru_gate_bwd_rows)(int r0, int r1, int H, const T *g, const T *gh,
                                            const T *hp, const T *gy, T *dh, T *dgx, T *dgh)
{
    for (int b = r0; b < r1; b++) {
        const T *R = g + (int64_t)b * 3 * H, *Z = R + H, *N = Z + H;
        const T *hn = gh + (int64_t)b * 3 * H + 2 * H;
        const T *p = hp + (int64_t)b * H, *y = gy + (int64_t)b * H;
        T *d = dh + (int64_t)b * H;
        T *xr = dgx + (int64_t)b * 3 * H, *xz = xr + H, *xn = xz + H;
        T *hr = dgh + (int64_t)b * 3 * H, *hz = hr + H, *hnn = hz + H;
        for (int j = 0; j < H; j++) {
            T r = R[j], z = Z[j], n = N[j];
            T dhj = d[j] + y[j];
            T dan = dhj * ((T)1 - z) * ((T)1 - n * n);
            T daz = dhj * (p[j] - n) * z * ((T)1 - z);
            T dar = dan * hn[j] * r * ((T)1 - r);
            xr[j] = dar; hr[j] = dar;
            xz[j] = daz; hz[j] = daz;
            xn[j] = dan; hnn[j] = dan * r;
            d[j] = dhj * z;
        }
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
        S(rnn_mm)(B, H, 3 * H, dgh, Whh, 1, dh);
    }
    int n = Tn * B;
    S(fnn_linear_backward)(n, H, 3 * H, hs, H, Whh, FNN_ACT_NONE, 0, NULL, NULL, dGh, dGh, NULL,
                           dWhh, dbhh, accumulate);
    S(fnn_linear_backward)(n, In, 3 * H, X, In, Wih, FNN_ACT_NONE, 0, NULL, NULL, dGx, dGx, dX,
                           dWih, dbih, accumulate);
}

/* ------------------------------------------------------------------ LSTM */
/* Rows [r0, r1) of one step. g: x W_ih^T + b_ih in, (i, f, g, o) out; gh: h W_hh^T + b_hh. */
FNN_CLONES static void S(lstm_gate_rows)(int r0, int r1, int H, T *g, const T *gh, const T *cp,
                                         T *c, T *h)
{
    for (int b = r0; b < r1; b++) {
        T *gi = g + (int64_t)b * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
        const T *hi = gh + (int64_t)b * 4 * H, *hf = hi + H, *hg = hf + H, *ho = hg + H;
        const T *p = cp + (int64_t)b * H;
        T *cc = c + (int64_t)b * H, *o = h + (int64_t)b * H;
        for (int j = 0; j < H; j++) {
            T i = S(sigmoid1)(gi[j] + hi[j]);
            T f = S(sigmoid1)(gf[j] + hf[j]);
            T u = TANH(gg[j] + hg[j]);
            T q = S(sigmoid1)(go[j] + ho[j]);
            T cn = f * p[j] + i * u;
            gi[j] = i; gf[j] = f; gg[j] = u; go[j] = q;
            cc[j] = cn;
            o[j] = q * TANH(cn);
        }
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
        S(fnn_linear_forward)(B, H, 4 * H, hp, H, Whh, bhh, FNN_ACT_NONE, 0, NULL, gh);
        FNN_PAR_FOR(nt, c, nt, {
            int r0 = (int)c * cs, r1 = r0 + cs < B ? r0 + cs : B;
            S(lstm_gate_rows)(r0, r1, H, g, gh, cp, cs_ + (t + 1) * BH, hs + (t + 1) * BH);
        });
    }
}

/* Rows [r0, r1) of one step backward; dh, dc: carried gradients of h_t, c_t in;
 * dc becomes the gradient of c_{t-1} (dh is then overwritten by the GEMM). */
FNN_CLONES static void S(lstm_gate_bwd_rows)(int r0, int r1, int H, const T *g, const T *cp,
                                             const T *c, const T *gy, const T *dh, T *dc, T *dg)
{
    for (int b = r0; b < r1; b++) {
        const T *Gi = g + (int64_t)b * 4 * H, *Gf = Gi + H, *Gg = Gf + H, *Go = Gg + H;
        const T *p = cp + (int64_t)b * H, *cc = c + (int64_t)b * H, *y = gy + (int64_t)b * H;
        const T *dhb = dh + (int64_t)b * H;
        T *dcb = dc + (int64_t)b * H;
        T *di = dg + (int64_t)b * 4 * H, *df = di + H, *du = df + H, *dq = du + H;
        for (int j = 0; j < H; j++) {
            T i = Gi[j], f = Gf[j], u = Gg[j], q = Go[j];
            T tc = TANH(cc[j]);
            T dhj = dhb[j] + y[j];
            T dcj = dcb[j] + dhj * q * ((T)1 - tc * tc);
            dq[j] = dhj * tc * q * ((T)1 - q);
            di[j] = dcj * u * i * ((T)1 - i);
            df[j] = dcj * p[j] * f * ((T)1 - f);
            du[j] = dcj * i * ((T)1 - u * u);
            dcb[j] = dcj * f;
        }
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
        S(rnn_mm)(B, H, 4 * H, dg, Whh, 0, dh);
    }
    int n = Tn * B;
    S(fnn_linear_backward)(n, H, 4 * H, hs, H, Whh, FNN_ACT_NONE, 0, NULL, NULL, dG, dG, NULL,
                           dWhh, dbhh, accumulate);
    S(fnn_linear_backward)(n, In, 4 * H, X, In, Wih, FNN_ACT_NONE, 0, NULL, NULL, dG, dG, dX,
                           dWih, dbih, accumulate);
}
