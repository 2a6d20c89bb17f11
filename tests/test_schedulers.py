"""Schedulers: exact sequences, PyTorch parity, resume via JSON state, argument checks."""

import json
import math
import warnings

import pytest

from fastnn.optim.schedulers import CosineAnnealingLR, LinearLR, LinearWarmup, StepLR


class FakeOpt:
    def __init__(self, lr=0.1, groups=1):
        self.param_groups = [{"lr": lr * (i + 1)} for i in range(groups)]


def run(sched, n):
    """lr used by each of the next n updates (the scheduler steps after each)."""
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr())
        sched.step()
    return out


def close(a, b, rel=1e-12):
    return all(math.isclose(x, y, rel_tol=rel, abs_tol=1e-15) for x, y in zip(a, b))


# ---------------------------------------------------------------- exact values

def test_steplr_sequence_and_groups():
    opt = FakeOpt(0.1, groups=2)
    s = StepLR(opt, step_size=2, gamma=0.5)
    assert s.last_epoch == 0 and opt.param_groups[0]["initial_lr"] == 0.1
    seq = run(s, 7)
    assert [r[0] for r in seq] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    assert [r[1] for r in seq] == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025]
    assert s.last_epoch == 7
    assert opt.param_groups[0]["lr"] == s.get_last_lr()[0] == 0.1 * 0.5 ** 3


def test_linearlr_sequence():
    opt = FakeOpt(0.3)
    s = LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=4)
    want = [0.3 * (0.5 + 0.5 * min(e, 4) / 4) for e in range(8)]
    assert close([r[0] for r in run(s, 8)], want)


def test_cosine_sequence_closed_form():
    opt = FakeOpt(0.1)
    s = CosineAnnealingLR(opt, T_max=6, eta_min=0.01)
    got = [r[0] for r in run(s, 3 * 6 + 1)]
    want = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 6)) / 2 for e in range(19)]
    assert close(got, want)
    assert got[6] == 0.01                   # exactly eta_min at T_max


def test_warmup_then_cosine_exact():
    opt = FakeOpt(0.1)
    s = LinearWarmup(opt, 4, after=CosineAnnealingLR(opt, T_max=4))
    # right after construction: the first update uses base/warmup_steps, never 0
    assert opt.param_groups[0]["lr"] == 0.1 * (1 / 4)
    got = [r[0] for r in run(s, 4 + 9)]
    warm = [0.1 * k / 4 for k in range(1, 5)]
    cos = [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(9)]
    assert close(got, warm + cos)
    assert got[3] == 0.1 and got[4] == 0.1  # last warmup update and cosine epoch 0
    assert got[8] == 0.0                    # cosine epoch 4 = T_max
    assert s.last_epoch == 13 and s.after.last_epoch == 9   # next update: cosine epoch 9


def test_warmup_alone_and_warmup_one():
    opt = FakeOpt(0.2)
    s = LinearWarmup(opt, 3)
    assert close([r[0] for r in run(s, 6)], [0.2 / 3, 0.4 / 3, 0.2, 0.2, 0.2, 0.2])
    opt = FakeOpt(0.2)
    s = LinearWarmup(opt, 1, after=StepLR(opt, step_size=2, gamma=0.1))
    assert close([r[0] for r in run(s, 6)], [0.2, 0.2, 0.2, 0.02, 0.02, 0.002])


def test_warmup_then_linearlr_keeps_after_epoch0():
    # `after` applied its own epoch-0 lr (base * start_factor) when it was built:
    # warmup must ramp to the *base* lr, then hand over that epoch-0 value.
    opt = FakeOpt(1.0)
    s = LinearWarmup(opt, 2, after=LinearLR(opt, start_factor=0.5, total_iters=2))
    assert close([r[0] for r in run(s, 6)], [0.5, 1.0, 0.5, 0.75, 1.0, 1.0])


def test_two_groups_warmup():
    opt = FakeOpt(0.1, groups=2)
    s = LinearWarmup(opt, 2, after=CosineAnnealingLR(opt, T_max=2))
    got = run(s, 5)
    assert close([r[1] for r in got], [2 * r[0] for r in got])
    assert close([r[0] for r in got], [0.05, 0.1, 0.1, 0.05, 0.0])


# ---------------------------------------------------------------- state dicts

@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, step_size=3, gamma=0.5),
    lambda o: LinearLR(o, start_factor=0.1, total_iters=7),
    lambda o: CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    lambda o: LinearWarmup(o, 4),
    lambda o: LinearWarmup(o, 4, after=CosineAnnealingLR(o, T_max=5)),
])
@pytest.mark.parametrize("split", [0, 2, 4, 5, 9])
def test_state_dict_json_round_trip_resumes(make, split):
    ref_opt = FakeOpt(0.1)
    ref = run(make(ref_opt), 20)

    opt = FakeOpt(0.1)
    s = make(opt)
    first = run(s, split)
    state = json.loads(json.dumps(s.state_dict()))     # JSON-storable, no objects

    opt2 = FakeOpt(0.1)                                 # fresh optimizer, default lr
    s2 = make(opt2)
    s2.load_state_dict(state)
    assert s2.last_epoch == split
    assert opt2.param_groups[0]["lr"] == ref[split][0]
    assert first + run(s2, 20 - split) == ref           # bit-identical continuation


def test_load_state_dict_rejects_mismatch_without_changes():
    opt = FakeOpt(0.1)
    cos = CosineAnnealingLR(opt, T_max=5)
    s = LinearWarmup(opt, 3, after=cos)
    run(s, 2)
    before = (s.state_dict(), dict(opt.param_groups[0]))
    with pytest.raises(ValueError):
        s.load_state_dict(StepLR(FakeOpt(), 2).state_dict())
    with pytest.raises(ValueError):
        s.load_state_dict(LinearWarmup(FakeOpt(), 3).state_dict())     # no `after`
    bad = s.state_dict()
    bad["after"]["T_max"] = 0
    with pytest.raises(ValueError):
        s.load_state_dict(bad)
    bad = s.state_dict()
    bad["last_lr"] = [0.1, 0.2]
    with pytest.raises(ValueError):
        s.load_state_dict(bad)
    assert (s.state_dict(), dict(opt.param_groups[0])) == before


# ---------------------------------------------------------------- argument checks

@pytest.mark.parametrize("make, arg", [
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: StepLR(o, step_size=-1), "step_size"),
    (lambda o: StepLR(o, step_size=2, gamma=-0.5), "gamma"),
    (lambda o: LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: LinearLR(o, start_factor=1.5), "start_factor"),
    (lambda o: LinearLR(o, end_factor=-0.1), "end_factor"),
    (lambda o: LinearLR(o, end_factor=1.1), "end_factor"),
    (lambda o: LinearLR(o, total_iters=0), "total_iters"),
    (lambda o: CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=-1.0), "eta_min"),
    (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=float("nan")), "eta_min"),
    (lambda o: LinearWarmup(o, 0), "warmup_steps"),
    (lambda o: LinearWarmup(o, -3), "warmup_steps"),
    (lambda o: LinearWarmup(o, 5, after=CosineAnnealingLR(FakeOpt(), T_max=5)), "after"),
])
def test_bad_arguments_raise_valueerror(make, arg):
    with pytest.raises(ValueError, match=arg):
        make(FakeOpt())


@pytest.mark.parametrize("make, arg", [
    (lambda o: StepLR(o, step_size=2.5), "step_size"),
    (lambda o: CosineAnnealingLR(o, T_max="10"), "T_max"),
    (lambda o: LinearWarmup(o, 1.0), "warmup_steps"),
    (lambda o: LinearWarmup(o, True), "warmup_steps"),
    (lambda o: StepLR(object(), step_size=2), "optimizer"),
])
def test_bad_types_raise_typeerror(make, arg):
    with pytest.raises(TypeError, match=arg):
        make(FakeOpt())


def test_after_must_be_fresh():
    opt = FakeOpt()
    cos = CosineAnnealingLR(opt, T_max=5)
    cos.step()
    with pytest.raises(ValueError, match="after"):
        LinearWarmup(opt, 2, after=cos)


# ---------------------------------------------------------------- PyTorch parity

def _torch_pair(lr):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    return torch, torch.optim.SGD([p], lr=lr)


def _compare(ours, opt_t, theirs, n, rel=1e-12):
    for i in range(n):
        a, b = ours.get_last_lr(), theirs.get_last_lr()
        assert close(a, b, rel), (i, a, b)
        opt_t.step()
        theirs.step()
        ours.step()


@pytest.mark.parametrize("name, kwargs, n", [
    ("StepLR", dict(step_size=3, gamma=0.5), 30),
    ("StepLR", dict(step_size=1), 10),
    ("LinearLR", dict(), 12),
    ("LinearLR", dict(start_factor=0.05, end_factor=0.7, total_iters=40), 60),
    ("CosineAnnealingLR", dict(T_max=10), 30),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01), 3 * 7 + 1),
    ("CosineAnnealingLR", dict(T_max=1000), 3000),
])
def test_matches_torch(name, kwargs, n):
    torch, opt_t = _torch_pair(0.1)
    theirs = getattr(torch.optim.lr_scheduler, name)(opt_t, **kwargs)
    ours = {"StepLR": StepLR, "LinearLR": LinearLR,
            "CosineAnnealingLR": CosineAnnealingLR}[name](FakeOpt(0.1), **kwargs)
    _compare(ours, opt_t, theirs, n)


@pytest.mark.parametrize("W, T", [(2, 10), (4, 4), (10, 50), (100, 300)])
def test_warmup_cosine_matches_torch_sequential(W, T):
    torch, opt_t = _torch_pair(0.1)
    L = torch.optim.lr_scheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = L.SequentialLR(opt_t, [
            L.LinearLR(opt_t, start_factor=1 / W, end_factor=1.0, total_iters=W - 1),
            L.CosineAnnealingLR(opt_t, T_max=T)], milestones=[W])
        opt = FakeOpt(0.1)
        _compare(LinearWarmup(opt, W, after=CosineAnnealingLR(opt, T_max=T)),
                 opt_t, theirs, W + 3 * T)


def test_warmup_matches_torch_lambdalr():
    torch, opt_t = _torch_pair(0.05)
    theirs = torch.optim.lr_scheduler.LambdaLR(opt_t, lambda e: min(1.0, (e + 1) / 7))
    _compare(LinearWarmup(FakeOpt(0.05), 7), opt_t, theirs, 20)
