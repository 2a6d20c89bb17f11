# Typed entry points for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses, included into _ops.pyx (one compiled module).

# ------------------------------------------------ cross-entropy, ignore_index
def cross_entropy_ignore(floating[:, ::1] z, const int64_t[::1] labels, long long ignore_index,
                         double smoothing, floating[:, ::1] grad, floating[::1] weight=None):
    """Softmax cross-entropy of logits z against labels, where rows whose label equals
    ignore_index count for nothing (zero gradient) and the mean is over the others
    (NaN when every row is ignored, as torch). Other labels must be in [0, C)."""
    cdef int n = z.shape[0], C = z.shape[1]
    _need(n > 0 and C > 0 and labels.shape[0] == n, "cross_entropy: shapes")
    _need(grad is None or (grad.shape[0] == n and grad.shape[1] == C), "cross_entropy: grad shape")
    cdef Py_ssize_t i
    cdef bint bad = False
    with nogil:
        for i in range(n):
            bad |= labels[i] != ignore_index and (labels[i] < 0 or labels[i] >= C)
    if bad:
        raise ValueError(f"cross_entropy: labels must be in [0, {C}) or equal ignore_index "
                         f"({ignore_index})")
    cdef floating *pg = &grad[0, 0] if grad is not None else NULL
    cdef floating *pw = _row_weights(weight, n, 1)
    cdef double r
    cdef int64_t count = 0
    with nogil:
        r = fnn_cross_entropy_ignore(n, C, &z[0, 0], <int64_t *>&labels[0], ignore_index,
                                     smoothing, pg, pw, &count)
    return r


# ------------------------------------------------------------- EmbeddingBag
BAG_SUM = FNN_BAG_SUM
BAG_MEAN = FNN_BAG_MEAN
BAG_MAX = FNN_BAG_MAX


cdef int64_t *_bag_arg(int mode, const int64_t[:, ::1] arg, Py_ssize_t n, int dim, str where) except? NULL:
    _need(0 <= mode <= FNN_BAG_MAX, f"{where}: mode must be BAG_SUM, BAG_MEAN or BAG_MAX")
    if mode != FNN_BAG_MAX:
        return NULL
    _need(arg is not None and arg.shape[0] == n and arg.shape[1] == dim,
          f"{where}: the max needs arg of shape (n, dim)")
    return <int64_t *>&arg[0, 0]


def embedding_bag_forward(const int64_t[::1] idx, floating[:, ::1] weight, int mode,
                          floating[:, ::1] out, int64_t[:, ::1] arg=None):
    """out[i] = sum, mean or columnwise max (mode BAG_SUM/BAG_MEAN/BAG_MAX) of
    weight[idx[i*bag + j]] over j: idx holds out.shape[0] bags of bag = len(idx) /
    out.shape[0] ids, row-major. For the max, arg (n, dim) receives each entry's id."""
    cdef Py_ssize_t n = out.shape[0]
    cdef int bag = idx.shape[0] // n if n else 0, dim = weight.shape[1]
    _need(out.shape[1] == dim, "embedding_bag_forward: shapes")
    _need(bag > 0 and idx.shape[0] == n * bag,
          "embedding_bag_forward: idx must hold n equal, non-empty bags")
    if n == 0 or dim == 0:
        return
    cdef int64_t *parg = _bag_arg(mode, arg, n, dim, "embedding_bag_forward")
    if not fnn_labels_in_range(n * bag, <int64_t *>&idx[0], weight.shape[0]):
        raise ValueError(f"embedding_bag: indices must be in [0, {weight.shape[0]})")
    with nogil:
        fnn_embedding_bag_forward(n, bag, dim, <int64_t *>&idx[0], &weight[0, 0], mode,
                                  &out[0, 0], parg)


def embedding_bag_backward(const int64_t[::1] idx, floating[:, ::1] gout, int mode,
                           const int64_t[:, ::1] arg, floating[:, ::1] gweight,
                           bint accumulate=False):
    """gweight (+)= gout[i] at every id of bag i (divided by the bag size for the
    mean; for the max, entry (i, c) goes to row arg[i, c] only). idx as in
    embedding_bag_forward; arg is None except for the max."""
    cdef Py_ssize_t n = gout.shape[0]
    cdef int bag = idx.shape[0] // n if n else 0, dim = gweight.shape[1]
    _need(gout.shape[1] == dim, "embedding_bag_backward: shapes")
    _need(bag > 0 and idx.shape[0] == n * bag,
          "embedding_bag_backward: idx must hold n equal, non-empty bags")
    if gweight.shape[0] == 0 or dim == 0:
        return
    cdef int64_t *parg = _bag_arg(mode, arg, n, dim, "embedding_bag_backward") if n else NULL
    if n and not fnn_labels_in_range(n * bag, <int64_t *>&idx[0], gweight.shape[0]):
        raise ValueError(f"embedding_bag: indices must be in [0, {gweight.shape[0]})")
    if parg != NULL and not fnn_labels_in_range(n * dim, parg, gweight.shape[0]):
        raise ValueError(f"embedding_bag: arg must be in [0, {gweight.shape[0]})")
    cdef int64_t *pidx = <int64_t *>&idx[0] if n else NULL
    cdef floating *pg = &gout[0, 0] if n else NULL
    with nogil:
        fnn_embedding_bag_backward(n, bag, dim, gweight.shape[0], pidx, pg, mode, parg,
                                   &gweight[0, 0], accumulate)


# ------------------------------------------------------------------- Conv1d
cdef int _conv_check(Py_ssize_t B, Py_ssize_t Cin, Py_ssize_t L, Py_ssize_t Cout, Py_ssize_t wcin,
                     Py_ssize_t k, int stride, int dilation, int pad_left, int pad_right,
                     Py_ssize_t Lout) except -1:
    _need(wcin == Cin and k > 0, "conv1d: weight must be (out, in, k) with x's channels")
    _need(stride > 0 and dilation > 0 and pad_left >= 0 and pad_right >= 0,
          "conv1d: stride and dilation must be > 0, padding >= 0")
    cdef Py_ssize_t span = L + pad_left + pad_right - dilation * (k - 1) - 1
    _need(span >= 0 and Lout == span // stride + 1,
          "conv1d: output length does not match input length, padding and kernel")
    _need(B > 0 and Cin > 0 and Cout > 0 and L > 0, "conv1d: empty input")
    return 0


def conv1d_forward(floating[:, :, ::1] x, floating[:, :, ::1] w, floating[::1] b, int stride,
                   int dilation, int pad_left, int pad_right, bint relu, floating[:, ::1] wr,
                   floating[:, ::1] col, floating[:, :, ::1] y):
    """Time-major conv1d: y (B, Lout, Cout) = [relu](conv1d(x (B, L, Cin), w (Cout, Cin, k))
    + b), zero padding pad_left/pad_right; wr (Cout, k*Cin) receives w reordered by
    tap and col (B*Lout, k*Cin) the unfolded input (tap j at columns j*Cin..)."""
    cdef Py_ssize_t B = x.shape[0], L = x.shape[1], Cin = x.shape[2]
    cdef Py_ssize_t Cout = w.shape[0], k = w.shape[2], Lout = y.shape[1]
    _conv_check(B, Cin, L, Cout, w.shape[1], k, stride, dilation, pad_left, pad_right, Lout)
    _need(y.shape[0] == B and y.shape[2] == Cout, "conv1d_forward: y shape")
    _need(b is None or b.shape[0] == Cout, "conv1d_forward: bias shape")
    _need(wr.shape[0] == Cout and wr.shape[1] == Cin * k, "conv1d_forward: wr shape")
    _need(col.shape[0] == B * Lout and col.shape[1] == Cin * k, "conv1d_forward: col shape")
    cdef floating *pb = &b[0] if b is not None else NULL
    with nogil:
        fnn_conv1d_forward(B, Cin, L, Cout, k, stride, dilation, pad_left, Lout, &x[0, 0, 0],
                           &w[0, 0, 0], pb, relu, &wr[0, 0], &col[0, 0], &y[0, 0, 0])


def conv1d_backward(floating[:, ::1] wr, floating[:, ::1] col, floating[:, :, ::1] y, bint relu,
                    floating[:, :, ::1] gy, int stride, int dilation, int pad_left,
                    int pad_right, floating[:, :, ::1] gz, floating[:, ::1] dwr,
                    floating[:, ::1] dcol, floating[:, :, ::1] gx, floating[:, :, ::1] gw,
                    floating[::1] gb, bint accumulate=False):
    """From gy (B, Lout, Cout) and the forward's wr, col and y (y and gz, the masked
    gradient, only with relu): gw (+)= gz^T col reordered back to (Cout, Cin, k)
    through the workspace dwr, gb (+)= sums of gz, and gx (B, L, Cin) through dcol
    (workspace shaped like col). gx/dcol and gb may be None (gx and dcol together)."""
    cdef Py_ssize_t B = gy.shape[0], Lout = gy.shape[1], Cout = gw.shape[0]
    cdef Py_ssize_t Cin = gw.shape[1], k = gw.shape[2]
    _need((gx is None) == (dcol is None), "conv1d_backward: gx and dcol go together")
    cdef Py_ssize_t L = gx.shape[1] if gx is not None else 0
    if gx is not None:
        _need(gx.shape[0] == B and gx.shape[2] == Cin, "conv1d_backward: gx shape")
        _conv_check(B, Cin, L, Cout, Cin, k, stride, dilation, pad_left, pad_right, Lout)
        _need(dcol.shape[0] == B * Lout and dcol.shape[1] == Cin * k,
              "conv1d_backward: dcol shape")
    _need(B > 0 and Lout > 0 and gy.shape[2] == Cout, "conv1d_backward: gy shape")
    _need(wr.shape[0] == Cout and wr.shape[1] == Cin * k, "conv1d_backward: wr shape")
    _need(dwr.shape[0] == Cout and dwr.shape[1] == Cin * k, "conv1d_backward: dwr shape")
    _need(col.shape[0] == B * Lout and col.shape[1] == Cin * k, "conv1d_backward: col shape")
    _need(gb is None or gb.shape[0] == Cout, "conv1d_backward: gb shape")
    cdef floating *py = NULL
    cdef floating *pgz = NULL
    if relu:
        _need(y is not None and y.shape[0] == B and y.shape[1] == Lout and y.shape[2] == Cout,
              "conv1d_backward: relu needs y shaped like gy")
        _need(gz is not None and gz.shape[0] == B and gz.shape[1] == Lout and gz.shape[2] == Cout,
              "conv1d_backward: relu needs gz shaped like gy")
        py, pgz = &y[0, 0, 0], &gz[0, 0, 0]
    cdef floating *pgb = &gb[0] if gb is not None else NULL
    cdef floating *pgx = &gx[0, 0, 0] if gx is not None else NULL
    cdef floating *pdc = &dcol[0, 0] if dcol is not None else NULL
    with nogil:
        fnn_conv1d_backward(B, Cin, L, Cout, k, stride, dilation, pad_left, Lout, &wr[0, 0],
                            &col[0, 0], py, relu, &gy[0, 0, 0], pgz, &dwr[0, 0], pdc, pgx,
                            &gw[0, 0, 0], pgb, accumulate)
