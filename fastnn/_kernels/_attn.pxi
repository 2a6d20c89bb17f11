# Typed entry points for attention: MultiheadAttention and the transformer block, included into _ops.pyx (one compiled module).

cdef inline bint _same4(floating[:, :, :, ::1] a, floating[:, :, :, ::1] b):
    return (a is not None and a.shape[0] == b.shape[0] and a.shape[1] == b.shape[1]
            and a.shape[2] == b.shape[2] and a.shape[3] == b.shape[3])


cdef inline bint _same3(floating[:, :, ::1] a, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2):
    return a is not None and a.shape[0] == d0 and a.shape[1] == d1 and a.shape[2] == d2


def mha_forward(floating[:, :, ::1] x, floating[:, ::1] w_in, floating[::1] b_in,
                floating[:, ::1] w_out, floating[::1] b_out, floating[:, ::1] mask,
                int num_heads, bint causal, bint batch_first, floating[:, :, ::1] qkv,
                floating[:, :, :, ::1] attn, floating[:, :, ::1] ctx, floating[:, :, ::1] y,
                floating[:, :, :, ::1] drop=None, floating[:, :, :, ::1] dattn=None):
    """Self-attention (torch.nn.MultiheadAttention with query = key = value).

    x, ctx, y: (B, L, E) when batch_first else (L, B, E); qkv: x's layout with 3E;
    w_in (3E, E), b_in (3E) or None, w_out (E, E), b_out (E) or None; mask (L, L)
    additive (-inf: not allowed), or (B*L, L) one per sequence, or None; attn (B, H, L, L)
    receives the attention probabilities (kept for mha_backward); ctx the heads' outputs
    before out_proj. Dropout on the weights: drop (like attn) holds each weight's scale
    (1/(1-p) or 0) and dattn receives attn * drop, which multiplies the values."""
    cdef Py_ssize_t d0 = x.shape[0], d1 = x.shape[1], E = x.shape[2]
    cdef int B = d0 if batch_first else d1, L = d1 if batch_first else d0, H = num_heads
    _need(H > 0 and E % H == 0, "mha_forward: num_heads must divide the embedding width")
    _need(w_in.shape[0] == 3 * E and w_in.shape[1] == E and w_out.shape[0] == E
          and w_out.shape[1] == E, "mha_forward: weight shapes do not match")
    _need(b_in is None or b_in.shape[0] == 3 * E, "mha_forward: b_in shape")
    _need(b_out is None or b_out.shape[0] == E, "mha_forward: b_out shape")
    _need(mask is None or ((mask.shape[0] == L or mask.shape[0] == B * L) and mask.shape[1] == L),
          "mha_forward: mask shape")
    _need(_same3(qkv, d0, d1, 3 * E) and _same3(ctx, d0, d1, E) and _same3(y, d0, d1, E),
          "mha_forward: output shapes do not match")
    _need(attn.shape[0] == B and attn.shape[1] == H and attn.shape[2] == L and attn.shape[3] == L,
          "mha_forward: attn shape")
    _need((drop is None) == (dattn is None), "mha_forward: drop and dattn go together")
    _need(drop is None or (_same4(drop, attn) and _same4(dattn, attn)),
          "mha_forward: drop/dattn shape")
    if B == 0 or L == 0 or E == 0:
        return
    cdef floating *pdr = &drop[0, 0, 0, 0] if drop is not None else NULL
    cdef floating *pda = &dattn[0, 0, 0, 0] if dattn is not None else NULL
    cdef floating *pbi = &b_in[0] if b_in is not None else NULL
    cdef floating *pbo = &b_out[0] if b_out is not None else NULL
    cdef floating *pm = &mask[0, 0] if mask is not None else NULL
    cdef int64_t mstride = <int64_t>L * L if mask is not None and mask.shape[0] != L else 0
    with nogil:
        fnn_mha_forward(B, L, E, H, batch_first, &x[0, 0, 0], &w_in[0, 0], pbi, &w_out[0, 0],
                        pbo, pm, mstride, causal, pdr, &qkv[0, 0, 0], &attn[0, 0, 0, 0], pda,
                        &ctx[0, 0, 0], &y[0, 0, 0])


def mha_backward(floating[:, :, ::1] x, floating[:, ::1] w_in, floating[:, ::1] w_out,
                 floating[:, :, ::1] qkv, floating[:, :, :, ::1] attn, floating[:, :, ::1] ctx,
                 floating[:, :, ::1] gy, int num_heads, bint causal, bint batch_first,
                 floating[:, :, ::1] gctx, floating[:, :, :, ::1] gs, floating[:, :, ::1] gqkv,
                 floating[:, :, ::1] gx, floating[:, ::1] gw_in, floating[::1] gb_in,
                 floating[:, ::1] gw_out, floating[::1] gb_out, bint accumulate=False,
                 floating[:, :, :, ::1] drop=None, floating[:, :, :, ::1] dattn=None):
    """The backward of mha_forward from gy: workspaces gctx (like ctx), gs (like attn)
    and gqkv (like qkv); gx (like x, or None); parameter gradients written, or added
    with accumulate (gb_in/gb_out None without biases); drop/dattn as the forward had."""
    cdef Py_ssize_t d0 = x.shape[0], d1 = x.shape[1], E = x.shape[2]
    cdef int B = d0 if batch_first else d1, L = d1 if batch_first else d0, H = num_heads
    _need(H > 0 and E % H == 0, "mha_backward: num_heads must divide the embedding width")
    _need(w_in.shape[0] == 3 * E and w_in.shape[1] == E and w_out.shape[0] == E
          and w_out.shape[1] == E and gw_in.shape[0] == 3 * E and gw_in.shape[1] == E
          and gw_out.shape[0] == E and gw_out.shape[1] == E,
          "mha_backward: weight shapes do not match")
    _need(gb_in is None or gb_in.shape[0] == 3 * E, "mha_backward: gb_in shape")
    _need(gb_out is None or gb_out.shape[0] == E, "mha_backward: gb_out shape")
    _need(_same3(qkv, d0, d1, 3 * E) and _same3(ctx, d0, d1, E) and _same3(gy, d0, d1, E)
          and _same3(gctx, d0, d1, E) and _same3(gqkv, d0, d1, 3 * E)
          and (gx is None or _same3(gx, d0, d1, E)), "mha_backward: shapes do not match")
    _need(attn.shape[0] == B and attn.shape[1] == H and attn.shape[2] == L and attn.shape[3] == L
          and gs.shape[0] == B and gs.shape[1] == H and gs.shape[2] == L and gs.shape[3] == L,
          "mha_backward: attn/gs shape")
    _need((drop is None) == (dattn is None), "mha_backward: drop and dattn go together")
    _need(drop is None or (_same4(drop, attn) and _same4(dattn, attn)),
          "mha_backward: drop/dattn shape")
    if B == 0 or L == 0 or E == 0:
        return
    cdef floating *pdr = &drop[0, 0, 0, 0] if drop is not None else NULL
    cdef floating *pda = &dattn[0, 0, 0, 0] if dattn is not None else NULL
    cdef floating *pgx = &gx[0, 0, 0] if gx is not None else NULL
    cdef floating *pgbi = &gb_in[0] if gb_in is not None else NULL
    cdef floating *pgbo = &gb_out[0] if gb_out is not None else NULL
    with nogil:
        fnn_mha_backward(B, L, E, H, batch_first, &x[0, 0, 0], &w_in[0, 0], &w_out[0, 0],
                         &qkv[0, 0, 0], &attn[0, 0, 0, 0], pdr, pda, &ctx[0, 0, 0],
                         &gy[0, 0, 0], causal, &gctx[0, 0, 0], &gs[0, 0, 0, 0], &gqkv[0, 0, 0],
                         pgx, &gw_in[0, 0], pgbi, &gw_out[0, 0], pgbo, accumulate)


def attn_last_forward(floating[:, ::1] q, floating[:, :, ::1] kv, int num_heads,
                      floating[:, :, ::1] attn, floating[:, ::1] ctx):
    """Attention of the last query of each sequence: q (B, E), kv (B, L, 2E) the keys
    then values of every token, attn (B, H, L) receives the probabilities, ctx (B, E)
    the heads' outputs. No mask: the last query sees every key."""
    cdef int B = kv.shape[0], L = kv.shape[1], E = q.shape[1], H = num_heads
    _need(H > 0 and E % H == 0, "attn_last_forward: num_heads must divide the embedding width")
    _need(q.shape[0] == B and kv.shape[2] == 2 * E and ctx.shape[0] == B and ctx.shape[1] == E,
          "attn_last_forward: shapes do not match")
    _need(attn.shape[0] == B and attn.shape[1] == H and attn.shape[2] == L,
          "attn_last_forward: attn shape")
    if B == 0 or L == 0 or E == 0:
        return
    with nogil:
        fnn_attn_last_forward(B, L, E, H, &q[0, 0], &kv[0, 0, 0], &attn[0, 0, 0], &ctx[0, 0])


def attn_last_backward(floating[:, ::1] q, floating[:, :, ::1] kv, floating[:, :, ::1] attn,
                       floating[:, ::1] gctx, int num_heads, floating[:, ::1] gq,
                       floating[:, :, ::1] gkv):
    """The backward of attn_last_forward from gctx (B, E): gq like q, gkv like kv (written)."""
    cdef int B = kv.shape[0], L = kv.shape[1], E = q.shape[1], H = num_heads
    _need(H > 0 and E % H == 0, "attn_last_backward: num_heads must divide the embedding width")
    _need(q.shape[0] == B and kv.shape[2] == 2 * E and gctx.shape[0] == B
          and gctx.shape[1] == E and gq.shape[0] == B and gq.shape[1] == E
          and gkv.shape[0] == B and gkv.shape[1] == L and gkv.shape[2] == 2 * E,
          "attn_last_backward: shapes do not match")
    _need(attn.shape[0] == B and attn.shape[1] == H and attn.shape[2] == L,
          "attn_last_backward: attn shape")
    if B == 0 or L == 0 or E == 0:
        return
    with nogil:
        fnn_attn_last_backward(B, L, E, H, &q[0, 0], &kv[0, 0, 0], &attn[0, 0, 0], &gctx[0, 0],
                               &gq[0, 0], &gkv[0, 0, 0])
