"""Learning-rate schedulers with PyTorch's semantics, names and defaults.

The torch schedulers are mirrored operation for operation (they are
"chainable": each step rescales the optimizer's current ``group["lr"]``), so a
fastnn schedule reproduces ``torch.optim.lr_scheduler`` bit for bit.  Call
``.step()`` after each optimizer step; the constructor already applies the
epoch-0 learning rate, exactly as torch does.

State dicts are plain JSON-able dicts (python numbers and lists only), so
``fastnn.io`` can store them without pickle.
"""

from __future__ import annotations

import math

from .. import _validation as V

__all__ = ["LRScheduler", "StepLR", "LinearLR", "CosineAnnealingLR", "LinearWarmup"]


# -- argument checks (ValueError/TypeError naming the argument, like the rest of fastnn)

_INT_HYPER = frozenset({"step_size", "total_iters", "T_max", "warmup_steps"})


def _check_optimizer(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, (list, tuple)) or not groups:
        raise TypeError(f"optimizer must have a non-empty list .param_groups, "
                        f"got {type(optimizer).__name__}")
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "lr" not in group:
            raise TypeError(f"optimizer.param_groups[{i}] must be a dict with key 'lr'")
    return optimizer


class LRScheduler:
    """Base class: torch's ``LRScheduler`` protocol (``last_epoch``, ``base_lrs``,
    an initial step to epoch 0, ``get_last_lr``) minus tensors and pickling."""

    # Hyperparameters saved in the state dict, per subclass.
    _hyper: tuple = ()

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        last_epoch = V.integer(last_epoch, "last_epoch", -1)
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in "
                                   f"param_groups[{i}] when resuming a scheduler "
                                   f"with last_epoch={last_epoch}")
        self.base_lrs = [float(g["initial_lr"]) for g in groups]
        self.last_epoch = last_epoch
        # torch: the constructor performs one step (to last_epoch + 1) in
        # "initial" mode, which is how epoch 0's lr gets applied.
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The lr of each param group at the current ``last_epoch``."""
        raise NotImplementedError

    def step(self):
        """Advance one step (call after ``optimizer.step()``) and set the groups' lr."""
        self._step_count += 1
        self.last_epoch += 1
        self._apply(self.get_lr())

    def _apply(self, values):
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = float(lr)
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lr each param group will use at its next update."""
        return list(self._last_lr)

    def _lrs(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        """The schedule's position and hyperparameters (JSON-safe), for checkpoints."""
        d = {"name": type(self).__name__,
             "last_epoch": int(self.last_epoch),
             "step_count": int(self._step_count),
             "base_lrs": [float(x) for x in self.base_lrs],
             "last_lr": [float(x) for x in self._last_lr]}
        for key in self._hyper:
            d[key] = getattr(self, key)
        return d

    def load_state_dict(self, state_dict):
        """Restore the schedule; also writes the saved lrs back into the
        optimizer so resuming does not depend on the order in which optimizer
        and scheduler states are loaded.  A rejected dict changes nothing."""
        self._validate_state(state_dict)
        self._load_state(state_dict)

    def _validate_state(self, state_dict):
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        name = state_dict.get("name")
        if name != type(self).__name__:
            raise ValueError(f"state_dict is for scheduler {name!r}, "
                             f"expected {type(self).__name__!r}")
        required = ("last_epoch", "step_count", "base_lrs", "last_lr") + self._hyper
        missing = [k for k in required if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict is missing keys {missing}")
        n = len(self.optimizer.param_groups)
        for key in ("base_lrs", "last_lr"):
            value = state_dict[key]
            if not isinstance(value, (list, tuple)) or len(value) != n:
                raise ValueError(f"state_dict[{key!r}] must be a list of {n} lrs "
                                 f"(one per param group), got {value!r}")
            for x in value:
                V.real(x, f"state_dict[{key!r}] entry")
        V.integer(state_dict["last_epoch"], "state_dict['last_epoch']", 0)
        V.integer(state_dict["step_count"], "state_dict['step_count']", 0)
        for key in self._hyper:
            if key in _INT_HYPER:
                V.integer(state_dict[key], f"state_dict[{key!r}]", 1)
            else:
                V.real(state_dict[key], f"state_dict[{key!r}]")

    def _load_state(self, state_dict):
        for key in self._hyper:
            value = state_dict[key]
            setattr(self, key, int(value) if key in _INT_HYPER else float(value))
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["step_count"])
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group.setdefault("initial_lr", base)
        self._apply(state_dict["last_lr"])

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` steps (torch.optim.lr_scheduler.StepLR)."""

    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = V.integer(step_size, "step_size", 1)
        self.gamma = V.real(gamma, "gamma")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]


class LinearLR(LRScheduler):
    """Scale the lr by a factor moving linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps (torch.optim.lr_scheduler.LinearLR)."""

    _hyper = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        start_factor = V.real(start_factor, "start_factor")
        end_factor = V.real(end_factor, "end_factor")
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = V.integer(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._lrs()
        # Same expression (and rounding) as torch's chainable form.
        ratio = 1.0 + (self.end_factor - self.start_factor) / (
            self.total_iters * self.start_factor
            + (self.last_epoch - 1) * (self.end_factor - self.start_factor))
        return [lr * ratio for lr in self._lrs()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial lr to ``eta_min`` over ``T_max`` steps,
    continuing as a cosine wave afterwards (torch.optim.lr_scheduler.CosineAnnealingLR).

    Uses torch's recursive form so sequences match torch exactly, including
    beyond ``T_max``.
    """

    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = V.integer(T_max, "T_max", 1)
        self.eta_min = V.real(eta_min, "eta_min")
        if self.eta_min < 0:
            raise ValueError(f"eta_min must be >= 0, got {eta_min!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        e, T, eta = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._lrs()
        if self._step_count == 1 and e > 0:
            return [eta + (base - eta) * (1 + math.cos(e * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [lr + (base - eta) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, self._lrs())]
        return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
                * (lr - eta) + eta for lr in self._lrs()]


class LinearWarmup(LRScheduler):
    """Linear warmup, then hand over to ``after``.

    The k-th optimizer update (k = 1, 2, ...) uses ``lr * k / warmup_steps``
    for k <= warmup_steps (never 0, unlike a warmup starting at epoch 0).
    Update ``warmup_steps + 1`` onwards follows ``after`` from its epoch 0 (so
    a cosine starts at the full lr), or stays at the base lr without ``after``.

    ``after`` must be a fresh scheduler on the same optimizer; it is normally
    built first (``LinearWarmup(opt, 100, after=CosineAnnealingLR(opt, T_max))``),
    which already applied its epoch-0 lr: that value is kept for the handover
    and the warmup lr is re-established here.
    """

    _hyper = ("warmup_steps",)

    def __init__(self, optimizer, warmup_steps, after=None):
        self.warmup_steps = V.integer(warmup_steps, "warmup_steps", 1)
        if after is not None:
            if not isinstance(after, LRScheduler):
                raise TypeError(f"after must be a fastnn scheduler or None, "
                                f"got {type(after).__name__}")
            if after.optimizer is not optimizer:
                raise ValueError("after must be constructed on the same optimizer "
                                 "as the LinearWarmup")
            if after.last_epoch != 0:
                raise ValueError(f"after must be a freshly constructed scheduler "
                                 f"(last_epoch 0), got last_epoch={after.last_epoch}")
        self.after = after
        super().__init__(optimizer, -1)

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        k = self.last_epoch + 1               # index of the next update
        W = self.warmup_steps
        if k <= W:
            # k / W first, so the last warmup update is exactly the base lr.
            self._apply([base * (k / W) for base in self.base_lrs])
        elif self.after is None:
            self._apply(self.base_lrs)
        elif k == W + 1:
            # Restore what `after` set at its epoch 0; its recursion continues from it.
            self._apply(self.after.get_last_lr())
        else:
            self.after.step()
            self._apply(self.after.get_last_lr())

    def get_lr(self):  # pragma: no cover - step() is overridden
        raise NotImplementedError

    def state_dict(self):
        d = super().state_dict()
        d["after"] = None if self.after is None else self.after.state_dict()
        return d

    def _validate_state(self, state_dict):
        super()._validate_state(state_dict)
        inner = state_dict.get("after")
        if (inner is None) != (self.after is None):
            saved = "none" if inner is None else repr(inner.get("name") if isinstance(inner, dict) else inner)
            have = type(self.after).__name__ if self.after is not None else "none"
            raise ValueError(f"state_dict['after'] does not match this LinearWarmup: "
                             f"saved {saved}, have {have}")
        if self.after is not None:
            self.after._validate_state(inner)

    def _load_state(self, state_dict):
        if self.after is not None:
            self.after._load_state(state_dict["after"])
        super()._load_state(state_dict)   # last: the groups get the warmup's lr
