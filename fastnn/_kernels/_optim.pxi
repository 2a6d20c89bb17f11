# Included by _ops.pyx: the optimizer updates (one Update per step, built by the
# optimizer class that owns the rule) and their one-call forms for the tests.
cdef class Update:
    """One optimizer update: its rule, this step's named hyperparameters and its
    state buffers (fnn_update in csrc/fnn.h). Built by the optimizer class that
    owns the rule (its ``_compiled``), applied by ``apply`` or inside a dense
    program's one-call step."""

    cdef fnn_update u
    cdef readonly int kind
    cdef tuple state  # the buffers behind the pointers in u, kept alive

    cdef void _hold(self, tuple state):
        self.state = state
        self.kind = self.u.kind

    cdef bint _matches(self, cnp.ndarray p) except -1:
        """The state buffers fit parameters p (same dtype and size, C-contiguous)."""
        for s in self.state:
            if s is not None and not _is_batch(s, cnp.PyArray_TYPE(p), cnp.PyArray_SIZE(p), 0):
                raise ValueError("Update: a state buffer does not match the parameters")
        return True

    def apply(self, floating[::1] p, floating[::1] g, double max_norm=-1.0):
        """Clip g to max_norm (when >= 0) and update p in place. Returns the norm
        before clipping (-1 without clipping); a non-finite norm returns it and
        leaves p and the state untouched."""
        cdef Py_ssize_t n = p.shape[0]
        _need(g.shape[0] == n, "Update.apply: p and g differ in size")
        self._matches(np.asarray(p))
        cdef double norm = -1.0
        if n == 0:
            return norm
        with nogil:
            fnn_clip_update(max_norm, &norm, &self.u, n, &p[0], &g[0])
        return norm


def sgd_update(double lr, double momentum, double dampening, double weight_decay,
               bint nesterov, bint first, momentum_buffer):
    """SGD (torch.optim.SGD): momentum_buffer is None without momentum."""
    cdef Update up = Update.__new__(Update)
    up.u.kind = FNN_OPT_SGD
    up.u.u.sgd.lr, up.u.u.sgd.momentum, up.u.u.sgd.dampening = lr, momentum, dampening
    up.u.u.sgd.weight_decay, up.u.u.sgd.nesterov, up.u.u.sgd.first = weight_decay, nesterov, first
    up.u.u.sgd.momentum_buffer = _ptr(momentum_buffer)
    up._hold((momentum_buffer,))
    return up


def adam_update(double lr, double beta1, double beta2, double eps, double weight_decay,
                bint decoupled, long long step, exp_avg, exp_avg_sq):
    """Adam (decoupled=False: L2 in the gradient) or AdamW; step counts from 1."""
    _need(step >= 1 and exp_avg is not None and exp_avg_sq is not None, "adam_update: state")
    cdef Update up = Update.__new__(Update)
    up.u.kind = FNN_OPT_ADAM
    up.u.u.adam.lr, up.u.u.adam.beta1, up.u.u.adam.beta2, up.u.u.adam.eps = lr, beta1, beta2, eps
    up.u.u.adam.weight_decay, up.u.u.adam.decoupled, up.u.u.adam.step = weight_decay, decoupled, step
    up.u.u.adam.exp_avg, up.u.u.adam.exp_avg_sq = _ptr(exp_avg), _ptr(exp_avg_sq)
    up._hold((exp_avg, exp_avg_sq))
    return up


def rmsprop_update(double lr, double alpha, double eps, double weight_decay, double momentum,
                   square_avg, grad_avg, momentum_buffer):
    """RMSprop; grad_avg only when centered, momentum_buffer only with momentum."""
    _need(square_avg is not None, "rmsprop_update: square_avg is required")
    cdef Update up = Update.__new__(Update)
    up.u.kind = FNN_OPT_RMSPROP
    up.u.u.rmsprop.lr, up.u.u.rmsprop.alpha, up.u.u.rmsprop.eps = lr, alpha, eps
    up.u.u.rmsprop.weight_decay, up.u.u.rmsprop.momentum = weight_decay, momentum
    up.u.u.rmsprop.square_avg, up.u.u.rmsprop.grad_avg = _ptr(square_avg), _ptr(grad_avg)
    up.u.u.rmsprop.momentum_buffer = _ptr(momentum_buffer)
    up._hold((square_avg, grad_avg, momentum_buffer))
    return up


def adagrad_update(double lr, double lr_decay, double weight_decay, double eps, long long step,
                   sum):
    """Adagrad (torch.optim.Adagrad); step counts from 1."""
    _need(step >= 1 and sum is not None, "adagrad_update: state")
    cdef Update up = Update.__new__(Update)
    up.u.kind = FNN_OPT_ADAGRAD
    up.u.u.adagrad.lr, up.u.u.adagrad.lr_decay, up.u.u.adagrad.eps = lr, lr_decay, eps
    up.u.u.adagrad.weight_decay, up.u.u.adagrad.step = weight_decay, step
    up.u.u.adagrad.sum = _ptr(sum)
    up._hold((sum,))
    return up


def nadam_update(double lr, double beta1, double beta2, double eps, double weight_decay,
                 double momentum_decay, double mu_product, bint decoupled, long long step,
                 exp_avg, exp_avg_sq):
    """NAdam (torch.optim.NAdam); mu_product already includes this step's mu."""
    _need(step >= 1 and exp_avg is not None and exp_avg_sq is not None, "nadam_update: state")
    cdef Update up = Update.__new__(Update)
    up.u.kind = FNN_OPT_NADAM
    up.u.u.nadam.lr, up.u.u.nadam.beta1, up.u.u.nadam.beta2, up.u.u.nadam.eps = lr, beta1, beta2, eps
    up.u.u.nadam.weight_decay, up.u.u.nadam.momentum_decay = weight_decay, momentum_decay
    up.u.u.nadam.mu_product, up.u.u.nadam.decoupled, up.u.u.nadam.step = mu_product, decoupled, step
    up.u.u.nadam.exp_avg, up.u.u.nadam.exp_avg_sq = _ptr(exp_avg), _ptr(exp_avg_sq)
    up._hold((exp_avg, exp_avg_sq))
    return up


# The kernels one by one, as the tests call them against their NumPy twins.
def sgd(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    sgd_update(lr, momentum, dampening, weight_decay, nesterov, first, buf).apply(p, g)


def adam(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    adam_update(lr, beta1, beta2, eps, weight_decay, decoupled, step, m, v).apply(p, g)


def rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    rmsprop_update(lr, alpha, eps, weight_decay, momentum, square_avg, grad_avg, buf).apply(p, g)


def adagrad(p, g, sum, lr, lr_decay, weight_decay, eps, step):
    adagrad_update(lr, lr_decay, weight_decay, eps, step, sum).apply(p, g)


def nadam(p, g, m, v, lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product,
          decoupled, step):
    nadam_update(lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product, decoupled,
                 step, m, v).apply(p, g)
