# Included by _ops.pyx: DenseProgram, a dense stack's forward, backward and whole
# training step as single calls over preplanned layer structs.
cdef class DenseProgram:
    """A whole dense stack compiled for one batch size: the training step and the
    forward pass each run as one C call, over workspaces allocated here once.

    specs: one (W, b, dW, db, act, slope) per layer, W of shape (out, in); the
    arrays must stay alive and in place (they are the model's flat-buffer views).
    embedding: optional (E, dE, k): the input is then int64 ids (n, k), looked up
    in E (num, dim) and concatenated, so the first layer takes k*dim features."""

    cdef fnn_dense *layers
    cdef fnn_embed emb
    cdef bint has_emb
    cdef readonly int nl, n, n_in, n_out, output_act
    cdef int typenum
    cdef bint f64  # the dtype, for the dense kernels' shims
    cdef object arrays
    cdef readonly object output

    def __cinit__(self, list specs, int n, object dtype, embedding=None):
        self.layers = NULL
        dt = np.dtype(dtype)
        if dt != np.float32 and dt != np.float64:
            raise TypeError("DenseProgram: dtype must be float32 or float64")
        if not specs or n <= 0:
            raise ValueError("DenseProgram: needs layers and a positive batch size")
        self.f64 = dt == np.float64
        self.typenum = cnp.NPY_FLOAT64 if self.f64 else cnp.NPY_FLOAT32
        self.nl, self.n = len(specs), n
        self.layers = <fnn_dense *>malloc(sizeof(fnn_dense) * self.nl)
        if self.layers == NULL:
            raise MemoryError()
        self.arrays = []
        cdef int l = 0, width
        cdef int prev_out = -1
        for W, b, dW, db, act, slope in specs:
            out, width = W.shape
            for name, arr, shape in (("W", W, (out, width)), ("dW", dW, (out, width)),
                                     ("b", b, (out,)), ("db", db, (out,))):
                if arr is None and name in ("b", "db"):
                    continue
                if (not isinstance(arr, np.ndarray) or arr.dtype != dt or arr.shape != shape
                        or not arr.flags.c_contiguous):
                    raise ValueError(f"DenseProgram: layer {l} {name} must be a C-contiguous "
                                     f"{dt} array of shape {shape}")
            if (b is None) != (db is None):
                raise ValueError("DenseProgram: b and db go together")
            if l and width != prev_out:
                raise ValueError(f"DenseProgram: layer {l} takes {width} features, "
                                 f"the previous layer gives {prev_out}")
            Y = np.empty((n, out), dt)
            dY = np.empty((n, out), dt)
            Z = np.empty((n, out), dt) if act >= FNN_ACT_GELU else None
            dZ = np.empty((n, out), dt) if act != FNN_ACT_NONE else dY
            self.arrays.extend([W, b, dW, db, Y, dY, Z, dZ])
            self.layers[l].n_in, self.layers[l].n_out = width, out
            self.layers[l].act, self.layers[l].slope = act, slope
            self.layers[l].W, self.layers[l].b = _ptr(W), _ptr(b)
            self.layers[l].dW, self.layers[l].db = _ptr(dW), _ptr(db)
            self.layers[l].Z, self.layers[l].Y = _ptr(Z), _ptr(Y)
            self.layers[l].dY, self.layers[l].dZ = _ptr(dY), _ptr(dZ)
            self.layers[l].dX = self.layers[l - 1].dY if l else NULL
            prev_out = out
            self.output = Y
            l += 1
        self.n_in = self.layers[0].n_in
        self.n_out = prev_out
        self.output_act = self.layers[self.nl - 1].act
        self.has_emb = embedding is not None
        if self.has_emb:
            E, dE, k = embedding
            if (not isinstance(E, np.ndarray) or E.dtype != dt or E.ndim != 2
                    or not E.flags.c_contiguous or not isinstance(dE, np.ndarray)
                    or dE.shape != E.shape or dE.dtype != dt or not dE.flags.c_contiguous):
                raise ValueError("DenseProgram: embedding tables must be C-contiguous 2-D arrays")
            if k <= 0 or k * E.shape[1] != self.n_in:
                raise ValueError(f"DenseProgram: {k} ids of dim {E.shape[1]} do not give the "
                                 f"first layer's {self.n_in} features")
            X0 = np.empty((n, self.n_in), dt)
            dX0 = np.empty((n, self.n_in), dt)
            self.arrays.extend([E, dE, X0, dX0])
            self.emb.num, self.emb.dim, self.emb.k = E.shape[0], E.shape[1], k
            self.emb.E, self.emb.dE = _ptr(E), _ptr(dE)
            self.emb.X0, self.emb.dX0 = _ptr(X0), _ptr(dX0)
            self.layers[0].dX = self.emb.dX0
            self.n_in = k

    def __dealloc__(self):
        free(self.layers)

    def accepts(self, x):
        """True when x is a finite C-contiguous (n, in) batch of the program's dtype
        (with an embedding: int64 ids (n, k), all in range)."""
        if self.has_emb:
            return (_is_batch(x, cnp.NPY_INT64, self.n, self.n_in) and
                    bool(fnn_labels_in_range(<int64_t>self.n * self.n_in, <int64_t *>_ptr(x),
                                             self.emb.num)))
        if not _is_batch(x, self.typenum, self.n, self.n_in):
            return False
        return bool(fnn_all_finite(self.f64, <int64_t>self.n * self.n_in, _ptr(x)))

    cdef inline bint _input_ok(self, x):
        return _is_batch(x, cnp.NPY_INT64 if self.has_emb else self.typenum, self.n, self.n_in)

    def forward(self, x):
        """The output workspace after a forward pass (caller checked x with accepts)."""
        if not self._input_ok(x):
            raise ValueError("DenseProgram.forward: x does not match the program")
        cdef void *px = NULL if self.has_emb else _ptr(x)
        cdef int64_t *ids = <int64_t *>_ptr(x) if self.has_emb else NULL
        cdef fnn_embed *emb = &self.emb if self.has_emb else NULL
        with nogil:
            fnn_dense_forward(self.f64, self.n, self.nl, self.layers, px, emb, ids)
        return self.output

    def target_ok(self, y, int loss):
        """Fast acceptance test for targets; anything else takes the checked path."""
        cdef cnp.ndarray arr
        cdef Py_ssize_t i, j, size, C = self.n_out
        cdef double lo, hi, tol, row
        if loss == FNN_LOSS_CE_LABELS:
            if not _is_batch(y, cnp.NPY_INT64, self.n, 0):
                return False
            return bool(fnn_labels_in_range(self.n, <int64_t *>_ptr(y), self.n_out))
        if not _is_batch(y, self.typenum, self.n, self.n_out):
            return False
        arr = <cnp.ndarray>y
        size = <Py_ssize_t>self.n * self.n_out
        if loss == FNN_LOSS_MSE:
            return bool(fnn_all_finite(self.f64, size, cnp.PyArray_DATA(arr)))
        # BCE targets in [0, 1]; CE probabilities non-negative with rows summing to 1
        # (the tolerance of CrossEntropyLoss's own check)
        tol = 1e-8 + 1e-5 if self.f64 else 1e-4 + 1e-5
        for i in range(self.n):
            row = 0.0
            for j in range(C):
                if self.f64:
                    lo = (<double *>cnp.PyArray_DATA(arr))[i * C + j]
                else:
                    lo = (<float *>cnp.PyArray_DATA(arr))[i * C + j]
                if not (lo >= 0 and (lo <= 1 or loss == FNN_LOSS_CE_PROBS)):
                    return False
                row += lo
            if loss == FNN_LOSS_CE_PROBS and not (-tol <= row - 1.0 <= tol):
                return False
        return True

    cdef void _check_step(self, x, cnp.ndarray p, cnp.ndarray g) except *:
        if not (self._input_ok(x)
                and cnp.PyArray_TYPE(p) == self.typenum and cnp.PyArray_TYPE(g) == self.typenum
                and cnp.PyArray_IS_C_CONTIGUOUS(p) and cnp.PyArray_IS_C_CONTIGUOUS(g)
                and cnp.PyArray_SIZE(p) == cnp.PyArray_SIZE(g)):
            raise ValueError("DenseProgram: arrays do not match the program")

    def step(self, x, y, int loss, double smoothing, double max_norm, Update update,
             cnp.ndarray p, cnp.ndarray g):
        """One training step (inputs already accepted): forward, loss, backward,
        clip (max_norm >= 0) and the optimizer's update of the flat buffer p with
        gradients g. Returns (loss, grad norm or -1); a non-finite loss or norm
        returns before the update."""
        self._check_step(x, p, g)
        update._matches(p)
        cdef int64_t np_ = cnp.PyArray_SIZE(p)
        cdef double norm = -1.0, value
        cdef void *px = NULL if self.has_emb else _ptr(x)
        cdef int64_t *ids = <int64_t *>_ptr(x) if self.has_emb else NULL
        cdef fnn_embed *emb = &self.emb if self.has_emb else NULL
        cdef void *py = _ptr(y)
        cdef void *pp = _ptr(p)
        cdef void *pg = _ptr(g)
        cdef int64_t *labels = <int64_t *>py if loss == FNN_LOSS_CE_LABELS else NULL
        with nogil:
            value = fnn_dense_step(self.f64, self.n, self.nl, self.layers, px, emb, ids, loss,
                                   labels, py, smoothing, max_norm, &norm, &update.u, np_, pp, pg)
        return value, norm

    def forward_backward(self, x, y, int loss, double smoothing, double grad_scale):
        """The step's first half (forward, loss, backward into the model's gradient
        buffer, the loss gradient scaled by grad_scale), for callers that reduce
        gradients across processes before Update.apply. Returns the loss."""
        if not self._input_ok(x):
            raise ValueError("DenseProgram: x does not match the program")
        cdef double value
        cdef void *px = NULL if self.has_emb else _ptr(x)
        cdef int64_t *ids = <int64_t *>_ptr(x) if self.has_emb else NULL
        cdef fnn_embed *emb = &self.emb if self.has_emb else NULL
        cdef void *py = _ptr(y)
        cdef int64_t *labels = <int64_t *>py if loss == FNN_LOSS_CE_LABELS else NULL
        with nogil:
            value = fnn_dense_forward_backward(self.f64, self.n, self.nl, self.layers, px, emb,
                                               ids, loss, labels, py, smoothing, grad_scale)
        return value
