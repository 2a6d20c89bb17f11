"""Small datasets bundled with fastnn, and a train/test split helper.

``digits.csv.gz`` is the test set of the UCI "Optical Recognition of
Handwritten Digits" data (E. Alpaydin and C. Kaynak, 1998; UCI Machine
Learning Repository, https://doi.org/10.24432/C50P49, licensed CC BY 4.0):
1797 images of 8x8 pixels, each pixel a count 0..16 of set bits in a 4x4
block of a 32x32 bitmap, followed by the digit 0..9. It is the same data as
scikit-learn's ``load_digits``.
"""
import functools
import gzip
import importlib.resources
import numbers

import numpy as np

__all__ = ["load_digits", "train_test_split"]

_DIGITS_SHAPE = (1797, 65)


class Bunch(dict):
    """A dict whose keys are also attributes (``d.data``, ``d.target``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@functools.lru_cache(maxsize=1)
def _digits_raw():
    resource = importlib.resources.files(__name__).joinpath("digits.csv.gz")
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.shape != _DIGITS_SHAPE or table.min() < 0 or table[:, :64].max() > 16 \
            or table[:, 64].max() > 9:
        raise RuntimeError(f"the bundled digits.csv.gz is damaged (shape {table.shape}); "
                           "reinstall fastnn")
    table.setflags(write=False)
    return table


def load_digits(return_X_y=True, as_float=True):
    """The 8x8 handwritten digits: X (1797, 64) and y (1797,) int64 labels 0..9.

    ``as_float=True`` gives float32 pixels scaled to [0, 1] (divided by 16);
    ``as_float=False`` the raw int64 counts 0..16. With ``return_X_y=False``
    a dict-like ``Bunch`` with ``data``, ``target``, ``images`` (1797, 8, 8),
    ``target_names`` and ``DESCR``.

    Source: UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak
    1998), CC BY 4.0.
    """
    table = _digits_raw()
    X = table[:, :64].astype(np.float32) / np.float32(16) if as_float else table[:, :64].copy()
    y = table[:, 64].copy()
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, images=X.reshape(-1, 8, 8), target_names=np.arange(10),
                 DESCR=__doc__)


def _n_test(test_size, n):
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a sample count, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        count = int(test_size)
        if not 1 <= count < n:
            raise ValueError(f"test_size={count} must be between 1 and {n - 1} samples")
        return count
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    count = int(np.ceil(test_size * n))   # like scikit-learn: the test set rounds up
    if not 1 <= count < n:
        raise ValueError(f"test_size={test_size} leaves an empty split of {n} samples")
    return count


def _stratified(y, n_test, rng):
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"stratify needs at least 2 samples of each class in y; class "
                         f"{classes[counts.argmin()]!r} has {counts.min()}")
    # Largest-remainder apportionment: per-class test counts summing to n_test.
    exact = counts * (n_test / len(y))
    take = np.floor(exact).astype(np.int64)
    rest = n_test - take.sum()
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))   # ties broken at random
    take[order[:rest]] += 1
    take = np.minimum(take, counts - 1)   # every class keeps a training sample
    test = []
    for c, k in enumerate(take):
        members = np.flatnonzero(inverse == c)
        test.append(rng.choice(members, size=int(k), replace=False))
    test = np.concatenate(test)
    mask = np.zeros(len(y), bool)
    mask[test] = True
    return rng.permutation(np.flatnonzero(~mask)), rng.permutation(test)


def train_test_split(X, y, test_size=0.2, seed=0, stratify=False):
    """Shuffle and split into ``X_train, X_test, y_train, y_test``.

    ``test_size`` is a fraction (rounded up, like scikit-learn) or a count;
    ``stratify=True`` keeps each class's share of ``y`` in both parts.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays of samples, got a scalar")
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X and y must have the same number of samples, got {n} and {y.shape[0]}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be True or False, got {stratify!r}")
    n_test = _n_test(test_size, n)
    rng = np.random.default_rng(seed)
    if stratify:
        if y.ndim != 1:
            raise ValueError(f"stratify needs 1-D class labels y, got shape {y.shape}")
        train, test = _stratified(y, n_test, rng)
    else:
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], y[train], y[test]
