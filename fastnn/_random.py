"""The library's random state: ``fn.seed(s)`` makes initialization, shuffling
and dropout reproducible."""
import numpy as np

_rng = np.random.default_rng()


def seed(s):
    """Seed fastnn's generator (weights init, shuffling, dropout masks)."""
    global _rng
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
        raise ValueError(f"seed: s must be a non-negative int, got {s!r}")
    _rng = np.random.default_rng(int(s))


def generator():
    return _rng


def next_seed():
    """A fresh 64-bit seed for a counter-based kernel RNG (dropout)."""
    return int(_rng.integers(0, 2**63 - 1))
