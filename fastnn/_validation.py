"""Checks on user input, with messages that name the argument, the expected
and the actual value. Kept out of the kernels: they trust what they are given."""
import math
import numbers
import sys

import numpy as np

from ._kernels import _ops

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, name="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dt}")
    return dt


def from_pandas(x, name, allow_missing=False):
    """A pandas DataFrame or Series as a numeric ndarray (anything else is returned
    unchanged). Non-numeric columns and missing values are errors that name the
    columns; nullable dtypes (Int64, Float64, boolean) without NA convert.

    pandas is never imported here: a pandas object can only exist once the user
    has imported it, so ``sys.modules`` tells whether there is anything to check."""
    if type(x) is np.ndarray:  # the hot path: nothing to look up
        return x
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(x, (pd.DataFrame, pd.Series)):
        return x
    frame = isinstance(x, pd.DataFrame)
    dtypes = list(x.dtypes.items()) if frame else [(x.name, x.dtype)]
    numeric = pd.api.types.is_numeric_dtype  # bool and the nullable dtypes included
    bad = [(col, dt) for col, dt in dtypes if not numeric(dt)]
    if bad:
        kinds = ", ".join(sorted({str(dt) for _, dt in bad}))
        hint = "first (e.g. pd.get_dummies, or .cat.codes for labels)"
        if frame:
            raise TypeError(f"{name} has non-numeric columns {[c for c, _ in bad]} "
                            f"(dtype {kinds}); encode them {hint}")
        raise TypeError(f"{name} is a non-numeric Series (dtype {kinds}); encode it {hint}")
    missing = x.isna()
    if not allow_missing and missing.to_numpy().any():
        if frame:
            cols = [c for c, m in missing.any().items() if m]
            raise ValueError(f"{name} has missing values (NaN/NA) in columns {cols}; "
                             "fill or drop them first")
        raise ValueError(f"{name} has missing values (NaN/NA) at {int(missing.sum())} "
                         "positions; fill or drop them first")
    common = np.result_type(*(_numpy_dtype(dt) for _, dt in dtypes)) if dtypes else None
    if common is None or (allow_missing and common.kind != "f" and missing.to_numpy().any()):
        common = np.dtype(np.float64)
    if common.kind == "f":  # NA becomes NaN (only reached when missing values are allowed)
        return x.to_numpy(dtype=common, na_value=np.nan)
    return x.to_numpy(dtype=common)


def _numpy_dtype(dt):
    """The NumPy dtype behind a pandas dtype (Int64 -> int64, Float64 -> float64)."""
    try:
        return np.dtype(getattr(dt, "numpy_dtype", dt))
    except TypeError:  # e.g. a sparse dtype
        return np.dtype(np.float64)


def as_float_array(x, name, dtype, ndim=None, finite=True):
    """x as a C-contiguous array of dtype; real numbers only, no silent reshapes."""
    arr = np.asarray(from_pandas(x, name, allow_missing=not finite))
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    arr = np.require(arr, dtype, "CW")  # C-contiguous; copied if read-only (kernels write-lock buffers)
    if finite and not _ops.all_finite(arr.reshape(-1)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def as_index_array(x, name, high):
    """x as C-contiguous int64 indices in [0, high)."""
    x = from_pandas(x, name)
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must be integers, got dtype {arr.dtype} "
                            "(cast with .astype(int) if these are labels)")
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    arr = np.require(arr, np.int64, "C")  # keeps a 0-d scalar 0-d, so callers can reject it
    if arr.size and not _ops.labels_in_range(arr.reshape(-1), high):
        bad = np.asarray(x).reshape(-1)[((arr < 0) | (arr >= high)).reshape(-1)][0]  # uint64 wraps
        raise ValueError(f"{name} must be in [0, {high}), got {bad}")
    return arr


def check_batch(x, name):
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {x.shape})")


# --- scalars: one vocabulary for every argument check in fastnn. A bool is never
# a number here (True as a count or a rate is a bug, not a 1); the type is a
# TypeError, the value a ValueError, and the message names the argument.

def integer(value, name, minimum=None):
    """``value`` as an int, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{_bound(minimum, None, False, False)}, got "
                        f"{value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int{_bound(minimum, None, False, False)}, "
                         f"got {value!r}")
    return int(value)


def real(value, name, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a finite float in the interval from low to high (either
    bound may be open or absent)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{_bound(low, high, low_open, high_open)}, "
                        f"got {value!r} ({type(value).__name__})")
    v = float(value)
    if (not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low))
            or (high is not None and (v >= high if high_open else v > high))):
        raise ValueError(f"{name} must be a finite number{_bound(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    return v


def _bound(low, high, low_open, high_open):
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def positive_int(value, name):
    return integer(value, name, 1)


def non_negative(value, name):
    return real(value, name, 0.0)
