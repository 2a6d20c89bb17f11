"""Timing inside a worker: warm-up, calibration, one timed repeat, and the
Cell that holds one (configuration, implementation) between turns."""
import math
import time

from .configs import SEED, items_per_step, make_data, make_params


def warm(step, steps, seconds, start=0):
    """Run at least `steps` steps and at least `seconds`; returns the next index."""
    t0 = time.perf_counter()
    i = start
    while i < start + steps or time.perf_counter() - t0 < seconds:
        step(i)
        i += 1
    return i


def calibrate(step, repeat_s, start, min_steps=3):
    """Steps per timed repeat, so that one repeat lasts about repeat_s."""
    t0 = time.perf_counter()
    n = 0
    while n < min_steps or time.perf_counter() - t0 < 0.1 * repeat_s:
        step(start + n)
        n += 1
    if getattr(step, "sync", None) is not None:
        step.sync()
    per_step = (time.perf_counter() - t0) / n
    return max(min_steps, int(math.ceil(repeat_s / max(per_step, 1e-7))))


def timed(step, steps, items, cap_s):
    """(items/s, process CPU time / wall time) over `steps` steps (fewer if
    the run exceeds cap_s seconds). CPU/wall near 1 on a 1-thread run shows
    that the implementation really used one core (spinning pools count too).
    A step function with a ``sync`` attribute (asynchronous dispatch) is
    waited for before the clock stops."""
    sync = getattr(step, "sync", None)
    c0 = time.process_time()
    t0 = time.perf_counter()
    done = steps
    for j in range(steps):
        step(j)
        if time.perf_counter() - t0 > cap_s:
            done = j + 1
            break
    if sync is not None:
        sync()
    wall = time.perf_counter() - t0
    return done * items / wall, (time.process_time() - c0) / wall


def head(out, rows=4):
    """The first rows of an output, as JSON-able floats (for the same-start check)."""
    import numpy as np
    return np.asarray(out, dtype=np.float64)[:rows].tolist()


class Cell:
    """One (configuration, implementation) in a worker: built with `build`
    (see impls.builder), warmed up and calibrated on creation; each turn()
    re-warms briefly and times one repeat. With losses=k, records the first k
    training losses or, for inference, the first rows of the output on the
    first batch."""

    def __init__(self, cfg, build, threads, budget, seed=SEED, losses=0):
        self.items = items_per_step(cfg)
        self.step, step_loss = build(cfg, make_params(cfg, seed), make_data(cfg, seed), threads)
        self.method = getattr(self.step, "method", None)
        self.losses = self.outputs = None
        if losses and step_loss is not None:
            if cfg["mode"] == "train":
                self.losses = [float(step_loss(i)) for i in range(losses)]
            else:
                self.outputs = head(step_loss(0))
        i = warm(self.step, budget["warmup_steps"], budget["warmup_s"], start=losses)
        self.steps = calibrate(self.step, budget["repeat_s"], i, budget["min_steps"])
        self.cpu = None

    def turn(self, budget):
        # caches and thread pools, after others ran
        warm(self.step, budget["rewarm_steps"], budget["rewarm_s"])
        rate, self.cpu = timed(self.step, self.steps, self.items, budget["cap_s"])
        return rate
