"""fastnn.datasets: the bundled digits and train_test_split."""
import importlib.resources

import numpy as np
import pytest

import fastnn as fn
from fastnn.datasets import load_digits, train_test_split


def test_digits_shapes_dtypes_ranges():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.unique(X * 16), np.arange(17))   # exact multiples of 1/16
    np.testing.assert_array_equal(np.unique(y), np.arange(10))
    assert np.all(np.bincount(y) >= 170)
    assert fn.datasets.load_digits is load_digits


def test_digits_raw_and_bunch():
    Xi, yi = load_digits(as_float=False)
    assert Xi.dtype.kind == "i" and Xi.min() == 0 and Xi.max() == 16
    X, y = load_digits()
    np.testing.assert_array_equal(X, Xi / 16)
    np.testing.assert_array_equal(y, yi)
    b = load_digits(return_X_y=False)
    assert b.data.shape == (1797, 64) and b["target"].shape == (1797,)
    assert b.images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(b.images[5].reshape(-1), X[5])
    assert "Alpaydin" in b.DESCR and "CC BY 4.0" in b.DESCR
    with pytest.raises(AttributeError):
        b.nope


def test_digits_known_first_rows():
    Xi, y = load_digits(as_float=False)
    assert Xi[0, :16].tolist() == [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]
    assert y[:10].tolist() == list(range(10))


def test_digits_returns_independent_copies():
    X, y = load_digits()
    X[:] = 0
    y[:] = 0
    X2, y2 = load_digits()
    assert X2.max() == 1.0 and y2.max() == 9


def test_digits_is_package_data():
    res = importlib.resources.files("fastnn.datasets").joinpath("digits.csv.gz")
    assert res.is_file()
    assert "Alpaydin" in fn.datasets.__doc__ and "CC BY 4.0" in load_digits.__doc__


def test_split_sizes_disjoint_and_complete():
    X = np.arange(100).reshape(50, 2)
    y = np.arange(50)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=1)
    assert len(Xtr) == 40 and len(Xte) == 10
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(50))
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)       # rows stay paired with labels
    np.testing.assert_array_equal(Xte[:, 0] // 2, yte)
    again = train_test_split(X, y, test_size=0.2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (Xtr, Xte, ytr, yte)))
    other = train_test_split(X, y, test_size=0.2, seed=2)
    assert not np.array_equal(other[3], yte)
    assert len(train_test_split(X, y, test_size=7)[1]) == 7
    assert len(train_test_split(X, y, test_size=0.33)[1]) == 17    # rounds up


def test_stratified_split_keeps_proportions():
    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=0, stratify=True)
    assert len(Xte) == 360 and len(Xtr) == 1437
    counts, test_counts = np.bincount(y), np.bincount(yte, minlength=10)
    assert np.all(np.abs(test_counts - counts * 0.2) <= 1)
    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 10)
    rng.shuffle(y)
    _, _, ytr, yte = train_test_split(np.zeros((100, 1)), y, test_size=0.3, stratify=True, seed=3)
    assert np.bincount(yte).tolist() == [27, 3] and np.bincount(ytr).tolist() == [63, 7]
    _, _, _, yte2 = train_test_split(np.zeros((100, 1)), y, test_size=0.3, stratify=True, seed=4)
    assert np.bincount(yte2).tolist() == [27, 3]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(test_size=0.0), ValueError, "test_size"),
    (dict(test_size=1.0), ValueError, "test_size"),
    (dict(test_size=10), ValueError, "test_size"),
    (dict(test_size=0), ValueError, "test_size"),
    (dict(test_size="0.2"), TypeError, "test_size"),
    (dict(stratify="yes"), TypeError, "stratify"),
])
def test_split_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        train_test_split(np.zeros((10, 2)), np.arange(10) % 2, **kwargs)


def test_split_bad_data():
    with pytest.raises(ValueError, match="same number of samples"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 samples of each class"):
        train_test_split(np.zeros((10, 2)), np.array([0] * 9 + [1]), stratify=True)
    with pytest.raises(ValueError, match="2 samples"):
        train_test_split(np.zeros((1, 2)), np.zeros(1))
