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


_CHUNK = 1 << 16  # draws per call: bounded float64 scratch however large the layer


def uniform_(out, low, high):
    """Fill ``out`` in place with U(low, high) draws, in the order one
    ``uniform(low, high, out.shape)`` call would make them, without the
    full-size float64 temporary (a 4096x4096 float32 layer would otherwise
    peak at 3x its own size)."""
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        flat[i:i + _CHUNK] = _rng.uniform(low, high, min(_CHUNK, flat.size - i))
    return out


def normal_(out):
    """Fill ``out`` in place with standard normal draws (see uniform_)."""
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        flat[i:i + _CHUNK] = _rng.standard_normal(min(_CHUNK, flat.size - i))
    return out
