"""Optimizers with torch.optim's update rules, param_groups and state dicts.

Each param group's parameters are updated in as few kernel calls as possible:
when they are consecutive pieces of a model's flat buffer (the usual case) the
whole group is one fused pass over contiguous memory."""

import numpy as np

from .. import _validation as V
from .._kernels import _ops
from ..nn.parameter import Parameter, flat_span


class _Segment:
    """A contiguous run of parameters updated by one kernel call, with its state."""

    __slots__ = ("params", "data", "grad", "state", "offsets")

    def __init__(self, params):
        self.params = params
        self._view()
        self.state = {}
        self.offsets = np.cumsum([0] + [p.size for p in params]).tolist()

    def _view(self):
        span = flat_span(self.params)
        if span is not None:
            flat, lo, hi = span
            self.data, self.grad = flat.data[lo:hi], flat.grad[lo:hi]
        else:  # a single parameter (its arrays are contiguous)
            (p,) = self.params
            self.data, self.grad = p.data.reshape(-1), p.grad.reshape(-1)

    # data and grad are views of the parameters' memory: pickled as a
    # reference to the parameters and rebuilt on first use after unpickling.
    def __getstate__(self):
        return {"params": self.params, "state": self.state, "offsets": self.offsets}

    def __setstate__(self, state):
        self.params, self.state, self.offsets = state["params"], state["state"], state["offsets"]

    def __getattr__(self, name):  # only reached for data/grad not yet rebuilt
        if name in ("data", "grad"):
            self._view()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def buffer(self, name):
        """Zero-initialized state array, allocated on first use like torch's state."""
        buf = self.state.get(name)
        if buf is None:
            buf = self.state[name] = np.zeros_like(self.data)
        return buf

    def view(self, name, i):
        return self.state[name][self.offsets[i]:self.offsets[i + 1]].reshape(self.params[i].shape)


def _segments(params):
    if flat_span(params) is not None:
        return [_Segment(params)]
    return [_Segment([p]) for p in params]


def _check_betas(b):
    if not isinstance(b, (tuple, list)) or len(b) != 2:
        raise ValueError(f"Invalid betas: {b!r} (expected a pair)")
    V.real(b[0], "beta parameter at index 0", 0.0, 1.0, high_open=True)
    V.real(b[1], "beta parameter at index 1", 0.0, 1.0, high_open=True)


class Optimizer:
    """param_groups (dicts with 'params' and hyperparameters) + state + step().

    A subclass is its update rule: ``_validate`` checks a group's
    hyperparameters and ``_compiled`` returns the rule's compiled update for one
    segment (``_ops.*_update``: hyperparameters and state buffers). The same
    update runs in ``step`` and inside a compiled training step."""

    state_names = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._segs = []
        self._steps = []
        self._checked = []  # per group: the hyperparameters last validated
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        """Add a dict with "params" and any hyperparameters (the rest from defaults), as torch."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a param group must be a dict with a 'params' list")
        params = list(group["params"])
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer params must be fastnn Parameters, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._validate(full)
        full["params"] = params
        self.param_groups.append(full)
        self._segs.append(_segments(params))
        self._steps.append(0)
        self._checked.append(None)

    non_negative = ()  # the hyperparameters that must be finite numbers >= 0

    def _validate(self, group):
        """Check a group's hyperparameters (ValueError/TypeError naming the bad one)."""
        for name in self.non_negative:
            V.real(group[name], name, 0.0)

    def _compiled(self, seg, group, step):
        """This rule's update of segment ``seg`` at ``step`` (an ``_ops.Update``)."""
        raise NotImplementedError

    def _check_group(self, gi):
        # lr and the other hyperparameters are writable between steps: check what
        # changed, without re-checking an unchanged group every step
        group = self.param_groups[gi]
        key = tuple(group[k] for k in self.defaults)
        if key != self._checked[gi]:
            self._validate(group)
            self._checked[gi] = key

    # --- the compiled training step's view of the optimizer -------------------
    def _flat_segment(self, params):
        """The segment when this optimizer has one group whose parameters are
        exactly ``params``, contiguous in one flat buffer; else None."""
        if len(self._segs) == 1 and len(self._segs[0]) == 1 and self._segs[0][0].params == params \
                and flat_span(params) is not None:
            return self._segs[0][0]
        return None

    def _begin_step(self, gi=0):
        """Validate group gi, count a step and return its compiled update of the
        group's only segment; ``_cancel_step`` takes it back if it did not happen."""
        self._check_group(gi)
        seg = self._segs[gi][0]
        self._before = set(seg.state)
        self._steps[gi] += 1
        return self._compiled(seg, self.param_groups[gi], self._steps[gi])

    def _cancel_step(self, gi=0):
        self._steps[gi] -= 1
        seg = self._segs[gi][0]
        for name in set(seg.state) - self._before:  # state first made by this step
            del seg.state[name]

    def zero_grad(self, set_to_none=False):
        """Zero the gradients of every parameter this optimizer updates."""
        for segs in self._segs:
            for seg in segs:
                seg.grad.fill(0)

    def step(self):
        """Apply one update to every parameter from its ``grad`` (the rule in the class docstring)."""
        for gi in range(len(self.param_groups)):  # check every group before updating any
            self._check_group(gi)
        for gi, group in enumerate(self.param_groups):
            self._steps[gi] += 1
            for seg in self._segs[gi]:
                self._compiled(seg, group, self._steps[gi]).apply(seg.data, seg.grad)

    # --- state dicts (torch's layout: params numbered across groups) ------------
    def state_dict(self):
        """{"state": {index: {"step", buffers...}}, "param_groups": [...]}, torch's layout."""
        state, groups, index = {}, [], 0
        for gi, group in enumerate(self.param_groups):
            ids = []
            for seg in self._segs[gi]:
                for i in range(len(seg.params)):
                    if seg.state or self._steps[gi]:
                        entry = {"step": float(self._steps[gi])}
                        entry.update({name: seg.view(name, i).copy() for name in seg.state})
                        state[index] = entry
                    ids.append(index)
                    index += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state from a :meth:`state_dict` (torch's
        layout). Everything is checked first: a rejected state_dict raises
        ValueError and leaves the optimizer as it was."""
        self._apply_staged(self._stage(state_dict))

    def _stage(self, state_dict):
        """Check ``state_dict`` against this optimizer and return what
        :meth:`_apply_staged` writes; writes nothing. Checkpoint loading calls
        the two halves apart, so a whole file is checked before any object changes."""
        try:
            groups, state = state_dict["param_groups"], state_dict["state"]
        except (TypeError, KeyError):
            raise ValueError("optimizer state_dict must have 'state' and 'param_groups'") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state_dict has {len(groups)} param groups, "
                             f"expected {len(self.param_groups)}")
        state = {int(k): v for k, v in state.items()}
        plan = []
        for gi, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {gi} has {len(saved['params'])} params in the "
                                 f"state_dict, expected {len(group['params'])}")
            hyper = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            self._validate(hyper)
            steps, arrays, j = set(), [], 0
            for seg in self._segs[gi]:
                for i, p in enumerate(seg.params):
                    entry = state.get(saved["params"][j])
                    j += 1
                    if entry is None:
                        steps.add(0)
                        continue
                    steps.add(int(entry.get("step", 0)))
                    for name, value in entry.items():
                        if name == "step":
                            continue
                        if name not in self.state_names:
                            raise ValueError(f"unexpected optimizer state {name!r} for "
                                             f"{type(self).__name__}")
                        value = np.asarray(value)
                        if value.shape != p.shape:
                            raise ValueError(f"optimizer state {name!r} of param {saved['params'][j - 1]}"
                                             f" has shape {value.shape}, expected {p.shape}")
                        arrays.append((seg, name, i, V.as_float_array(value, name, p.dtype)))
            if len(steps) > 1:
                raise ValueError(f"param group {gi}: params have different step counts {sorted(steps)}")
            plan.append((gi, hyper, steps.pop() if steps else 0, arrays))
        return plan

    def _apply_staged(self, plan):
        """Write what :meth:`_stage` checked; cannot fail."""
        for gi, hyper, step, arrays in plan:
            self.param_groups[gi].update({k: v for k, v in hyper.items() if k != "params"})
            self._steps[gi] = step
            for seg in self._segs[gi]:
                seg.state.clear()
            for seg, name, i, value in arrays:
                seg.buffer(name)
                seg.view(name, i)[...] = value

    def __repr__(self):
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent (torch.optim.SGD). Per coordinate:

        g <- g + weight_decay * p
        b <- g (first step),  b <- momentum * b + (1 - dampening) * g (after)
        p <- p - lr * (g + momentum * b if nesterov else b)   (b = g without momentum)

    Arguments: params (list of Parameters or param-group dicts), lr=1e-3,
    momentum=0, dampening=0, weight_decay=0, nesterov=False (needs momentum > 0
    and dampening = 0). State: ``momentum_buffer``."""

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    non_negative = ("lr", "momentum", "dampening", "weight_decay")

    def _validate(self, g):
        super()._validate(g)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _compiled(self, seg, g, step):
        first = "momentum_buffer" not in seg.state
        buf = seg.buffer("momentum_buffer") if g["momentum"] != 0 else None
        return _ops.sgd_update(g["lr"], g["momentum"], g["dampening"], g["weight_decay"],
                               bool(g["nesterov"]), first, buf)


class Adam(Optimizer):
    """Adam (torch.optim.Adam). Per coordinate, step t counted from 1:

        g <- g + weight_decay * p                      (L2 in the gradient)
        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Arguments: params, lr=1e-3, betas=(0.9, 0.999) (each in [0, 1)), eps=1e-8,
    weight_decay=0. State: ``exp_avg`` (m), ``exp_avg_sq`` (v)."""

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    non_negative = ("lr", "eps", "weight_decay")

    def _validate(self, g):
        super()._validate(g)
        _check_betas(g["betas"])

    def _compiled(self, seg, g, step):
        b1, b2 = g["betas"]
        return _ops.adam_update(g["lr"], b1, b2, g["eps"], g["weight_decay"], self.decoupled,
                                step, seg.buffer("exp_avg"), seg.buffer("exp_avg_sq"))


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam with decoupled weight decay, applied as
    p <- p * (1 - lr * weight_decay) before the Adam step (no L2 in the
    gradient). Arguments as Adam, but weight_decay=1e-2."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop). Per coordinate:

        g <- g + weight_decay * p;   s <- alpha s + (1 - alpha) g^2
        d <- sqrt(s - a^2) + eps with a <- alpha a + (1 - alpha) g if centered,
             else sqrt(s) + eps
        p <- p - lr * g / d,  or with momentum: b <- momentum b + g / d; p <- p - lr b

    Arguments: params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False. State: ``square_avg``, ``grad_avg``, ``momentum_buffer``."""

    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    non_negative = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def _compiled(self, seg, g, step):
        return _ops.rmsprop_update(g["lr"], g["alpha"], g["eps"], g["weight_decay"], g["momentum"],
                                   seg.buffer("square_avg"),
                                   seg.buffer("grad_avg") if g["centered"] else None,
                                   seg.buffer("momentum_buffer") if g["momentum"] > 0 else None)


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad): per coordinate, with step t counted from 1,

        g <- g + weight_decay * p;   sum <- sum + g^2
        p <- p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)

    Arguments and defaults as torch: lr=1e-2, lr_decay=0, weight_decay=0,
    initial_accumulator_value=0, eps=1e-10. State: ``sum``."""

    state_names = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        V.real(initial_accumulator_value, "initial_accumulator_value", 0.0)
        self.initial_accumulator_value = float(initial_accumulator_value)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      eps=eps))

    non_negative = ("lr", "lr_decay", "weight_decay", "eps")

    def _compiled(self, seg, g, step):
        if "sum" not in seg.state:  # torch fills it at construction; same values
            seg.buffer("sum").fill(self.initial_accumulator_value)
        return _ops.adagrad_update(g["lr"], g["lr_decay"], g["weight_decay"], g["eps"], step,
                                   seg.state["sum"])


class NAdam(Optimizer):
    """NAdam (torch.optim.NAdam): Adam with Nesterov momentum and torch's momentum
    schedule mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)); with
    m, v Adam's averages and prod_t = mu_1 ... mu_t,

        p <- p - lr (1 - mu_t) / (1 - prod_t) * g / d
               - lr mu_{t+1} / (1 - prod_t mu_{t+1}) * m / d,
        d = sqrt(v / (1 - beta2^t)) + eps.

    weight_decay is L2 in the gradient, or decoupled (AdamW-style) with
    decoupled_weight_decay=True. Defaults as torch: lr=2e-3, betas=(0.9, 0.999),
    eps=1e-8, weight_decay=0, momentum_decay=4e-3. The product of the mu_t is
    kept in float32, as torch keeps it, and recomputed from the step count after
    a load (torch stores it; equal while betas and momentum_decay are unchanged)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=bool(decoupled_weight_decay)))
        self._mu_products = {}  # id(segment) -> (step, product of mu_1..mu_step)

    non_negative = ("lr", "eps", "weight_decay", "momentum_decay")

    def _validate(self, g):
        super()._validate(g)
        _check_betas(g["betas"])

    def _apply_staged(self, plan):
        super()._apply_staged(plan)
        self._mu_products.clear()  # betas or steps may have changed

    def _mu_product(self, seg, g, step):
        b1, md = g["betas"][0], g["momentum_decay"]
        done, prod = self._mu_products.get(id(seg), (0, np.float32(1.0)))
        if done >= step:
            done, prod = 0, np.float32(1.0)
        for t in range(done + 1, step + 1):
            prod = np.float32(prod * np.float32(b1 * (1.0 - 0.5 * 0.96 ** (t * md))))
        self._mu_products[id(seg)] = (step, prod)
        return float(prod)

    def _compiled(self, seg, g, step):
        b1, b2 = g["betas"]
        return _ops.nadam_update(g["lr"], b1, b2, g["eps"], g["weight_decay"], g["momentum_decay"],
                                 self._mu_product(seg, g, step), g["decoupled_weight_decay"], step,
                                 seg.buffer("exp_avg"), seg.buffer("exp_avg_sq"))


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients so their global L2 norm is at most max_norm; returns the
    norm before clipping (torch.nn.utils.clip_grad_norm_)."""
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    params = list(parameters)
    max_norm = V.real(max_norm, "max_norm", 0.0)
    if norm_type != 2 and norm_type != 2.0:
        raise ValueError(f"clip_grad_norm: only norm_type=2 is supported, got {norm_type!r}")
    if not params:
        return 0.0
    grads = [seg.grad for seg in _segments(params)]
    total = float(np.sqrt(sum(_ops.sumsq(g) for g in grads)))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"the total gradient norm is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            _ops.scale(g, coef)
    return total
