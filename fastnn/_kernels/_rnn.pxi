# Typed entry points for the recurrent layers: GRU and LSTM, included into _ops.pyx (one compiled module).
# Time-major arrays: x (T, B, I); hs, cs (T+1, B, H) with hs[0] = h0 (cs[0] = c0) as
# inputs; gates g (T, B, G*H); wp a 1-D workspace of rnn_pack_size(G, H)
# values for the packed W_hh. x None: g already holds layer 0's input projection
# (forward), and backward leaves the input side (gw_ih, gb_ih, gx) to the caller.
# The Python layer owns validation of user input.

cdef inline bint _is3(floating[:, :, ::1] a, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2):
    return a.shape[0] == d0 and a.shape[1] == d1 and a.shape[2] == d2


cdef inline bint _is2(floating[:, ::1] a, Py_ssize_t d0, Py_ssize_t d1):
    return a.shape[0] == d0 and a.shape[1] == d1


def rnn_pack_size(int G, int H):
    """Values in the packed-W_hh workspace of a layer with G gates and H units."""
    return G * (H + 1) * ((H + 15) // 16 * 16)


cdef inline void _rnn_shapes(str name, int G, floating[:, :, ::1] x, floating[:, ::1] w_ih,
                             floating[:, ::1] w_hh, floating[::1] b_ih, floating[::1] b_hh,
                             floating[:, :, ::1] hs, floating[::1] wp) except *:
    cdef Py_ssize_t Tn = hs.shape[0] - 1, B = hs.shape[1], I = w_ih.shape[1], H = w_hh.shape[1]
    _need(wp.shape[0] == rnn_pack_size(G, H), f"{name}: wp must have rnn_pack_size(G, H) values")
    _need(x is None or _is3(x, Tn, B, I), f"{name}: x must be (T, B, I), hs (T+1, B, H)")
    _need(_is2(w_ih, G * H, I) and _is2(w_hh, G * H, H), f"{name}: weight shapes")
    _need(b_ih is None or b_ih.shape[0] == G * H, f"{name}: b_ih shape")
    _need(b_hh is None or b_hh.shape[0] == G * H, f"{name}: b_hh shape")
    _need(hs.shape[2] == H, f"{name}: hs must be (T+1, B, H)")


def gru_forward(x_in, floating[:, ::1] w_ih, floating[:, ::1] w_hh,
                floating[::1] b_ih, floating[::1] b_hh, floating[:, :, ::1] hs,
                floating[:, :, ::1] g, floating[:, :, ::1] gh, floating[::1] wp):
    """One GRU layer: hs[t+1] = GRUCell(x[t], hs[t]); g gets (r, z, n), gh h W_hh^T + b_hh."""
    cdef floating[:, :, ::1] x = x_in  # x_in untyped: the dtype comes from w_ih (x may be None)
    cdef int Tn = hs.shape[0] - 1, B = hs.shape[1], I = w_ih.shape[1], H = w_hh.shape[1]
    _rnn_shapes("gru_forward", 3, x, w_ih, w_hh, b_ih, b_hh, hs, wp)
    _need(_is3(g, Tn, B, 3 * H) and _is3(gh, Tn, B, 3 * H), "gru_forward: gate shapes")
    if Tn == 0 or B == 0 or H == 0 or I == 0:
        return
    cdef floating *px = &x[0, 0, 0] if x is not None else NULL
    cdef floating *pbi = &b_ih[0] if b_ih is not None else NULL
    cdef floating *pbh = &b_hh[0] if b_hh is not None else NULL
    with nogil:
        fnn_rnn_forward(Tn, B, I, H, px, &w_ih[0, 0], &w_hh[0, 0], pbi, pbh, &hs[0, 0, 0],
                        NULL, &g[0, 0, 0], &gh[0, 0, 0], &wp[0])


def gru_backward(x_in, floating[:, ::1] w_ih, floating[:, ::1] w_hh,
                 floating[:, :, ::1] hs, floating[:, :, ::1] g, floating[:, :, ::1] gh,
                 floating[:, :, ::1] gy, floating[:, ::1] dh, floating[:, :, ::1] dgx,
                 floating[:, :, ::1] dgh, floating[:, :, ::1] gx, floating[:, ::1] gw_ih,
                 floating[:, ::1] gw_hh, floating[::1] gb_ih, floating[::1] gb_hh,
                 floating[::1] wp, bint accumulate=False):
    """Backward through time from gy (grad of hs[1:]) and dh (grad of h_n in, of h0 out).
    dgx, dgh are workspaces; gx and the bias grads may be None."""
    cdef floating[:, :, ::1] x = x_in  # x_in untyped: the dtype comes from w_ih (x may be None)
    cdef int Tn = hs.shape[0] - 1, B = hs.shape[1], I = w_ih.shape[1], H = w_hh.shape[1]
    _rnn_shapes("gru_backward", 3, x, w_ih, w_hh, gb_ih, gb_hh, hs, wp)
    _need(_is3(g, Tn, B, 3 * H) and _is3(gh, Tn, B, 3 * H) and _is3(dgx, Tn, B, 3 * H)
          and _is3(dgh, Tn, B, 3 * H), "gru_backward: gate shapes")
    _need(_is3(gy, Tn, B, H) and _is2(dh, B, H), "gru_backward: gy/dh shapes")
    _need(gx is None or _is3(gx, Tn, B, I), "gru_backward: gx shape")
    _need((x is None or _is2(gw_ih, 3 * H, I)) and _is2(gw_hh, 3 * H, H),
          "gru_backward: weight grad shapes")
    if Tn == 0 or B == 0 or H == 0 or I == 0:
        return
    cdef floating *px = &x[0, 0, 0] if x is not None else NULL
    cdef floating *pgx = &gx[0, 0, 0] if gx is not None and x is not None else NULL
    cdef floating *pgw = &gw_ih[0, 0] if x is not None else NULL
    cdef floating *pbi = &gb_ih[0] if gb_ih is not None and x is not None else NULL
    cdef floating *pbh = &gb_hh[0] if gb_hh is not None else NULL
    with nogil:
        fnn_rnn_backward(Tn, B, I, H, px, &w_ih[0, 0], &w_hh[0, 0], &hs[0, 0, 0], NULL,
                         &g[0, 0, 0], &gh[0, 0, 0], &gy[0, 0, 0], &dh[0, 0], NULL, &dgx[0, 0, 0],
                         &dgh[0, 0, 0], pgx, pgw, &gw_hh[0, 0], pbi, pbh, &wp[0], accumulate)


def lstm_forward(x_in, floating[:, ::1] w_ih, floating[:, ::1] w_hh,
                 floating[::1] b_ih, floating[::1] b_hh, floating[:, :, ::1] hs,
                 floating[:, :, ::1] cs, floating[:, :, ::1] g, floating[:, ::1] gh,
                 floating[::1] wp):
    """One LSTM layer: (hs[t+1], cs[t+1]) = LSTMCell(x[t], (hs[t], cs[t])); g gets (i, f, g, o);
    gh (B, 4H) is a workspace."""
    cdef floating[:, :, ::1] x = x_in  # x_in untyped: the dtype comes from w_ih (x may be None)
    cdef int Tn = hs.shape[0] - 1, B = hs.shape[1], I = w_ih.shape[1], H = w_hh.shape[1]
    _rnn_shapes("lstm_forward", 4, x, w_ih, w_hh, b_ih, b_hh, hs, wp)
    _need(_is3(cs, Tn + 1, B, H), "lstm_forward: cs must be (T+1, B, H)")
    _need(_is3(g, Tn, B, 4 * H) and _is2(gh, B, 4 * H), "lstm_forward: gate shapes")
    if Tn == 0 or B == 0 or H == 0 or I == 0:
        return
    cdef floating *px = &x[0, 0, 0] if x is not None else NULL
    cdef floating *pbi = &b_ih[0] if b_ih is not None else NULL
    cdef floating *pbh = &b_hh[0] if b_hh is not None else NULL
    with nogil:
        fnn_rnn_forward(Tn, B, I, H, px, &w_ih[0, 0], &w_hh[0, 0], pbi, pbh, &hs[0, 0, 0],
                        &cs[0, 0, 0], &g[0, 0, 0], &gh[0, 0], &wp[0])


def lstm_backward(x_in, floating[:, ::1] w_ih, floating[:, ::1] w_hh,
                  floating[:, :, ::1] hs, floating[:, :, ::1] cs, floating[:, :, ::1] g,
                  floating[:, :, ::1] gy, floating[:, ::1] dh, floating[:, ::1] dc,
                  floating[:, :, ::1] dg, floating[:, :, ::1] gx, floating[:, ::1] gw_ih,
                  floating[:, ::1] gw_hh, floating[::1] gb_ih, floating[::1] gb_hh,
                  floating[::1] wp, bint accumulate=False):
    """Backward through time from gy (grad of hs[1:]), dh, dc (grads of h_n, c_n in, of
    h0, c0 out). dg is a workspace; gx and the bias grads may be None."""
    cdef floating[:, :, ::1] x = x_in  # x_in untyped: the dtype comes from w_ih (x may be None)
    cdef int Tn = hs.shape[0] - 1, B = hs.shape[1], I = w_ih.shape[1], H = w_hh.shape[1]
    _rnn_shapes("lstm_backward", 4, x, w_ih, w_hh, gb_ih, gb_hh, hs, wp)
    _need(_is3(cs, Tn + 1, B, H), "lstm_backward: cs must be (T+1, B, H)")
    _need(_is3(g, Tn, B, 4 * H) and _is3(dg, Tn, B, 4 * H), "lstm_backward: gate shapes")
    _need(_is3(gy, Tn, B, H) and _is2(dh, B, H) and _is2(dc, B, H),
          "lstm_backward: gy/dh/dc shapes")
    _need(gx is None or _is3(gx, Tn, B, I), "lstm_backward: gx shape")
    _need((x is None or _is2(gw_ih, 4 * H, I)) and _is2(gw_hh, 4 * H, H),
          "lstm_backward: weight grad shapes")
    if Tn == 0 or B == 0 or H == 0 or I == 0:
        return
    cdef floating *px = &x[0, 0, 0] if x is not None else NULL
    cdef floating *pgx = &gx[0, 0, 0] if gx is not None and x is not None else NULL
    cdef floating *pgw = &gw_ih[0, 0] if x is not None else NULL
    cdef floating *pbi = &gb_ih[0] if gb_ih is not None and x is not None else NULL
    cdef floating *pbh = &gb_hh[0] if gb_hh is not None else NULL
    with nogil:
        fnn_rnn_backward(Tn, B, I, H, px, &w_ih[0, 0], &w_hh[0, 0], &hs[0, 0, 0], &cs[0, 0, 0],
                         &g[0, 0, 0], NULL, &gy[0, 0, 0], &dh[0, 0], &dc[0, 0], &dg[0, 0, 0],
                         &dg[0, 0, 0], pgx, pgw, &gw_hh[0, 0], pbi, pbh, &wp[0], accumulate)
