"""fastnn.sklearn: scikit-learn's estimator checks, step-for-step agreement with
sklearn.neural_network, and the things scikit-learn users rely on (Pipeline,
GridSearchCV in worker processes, clone, pickle, DataFrames, partial_fit).

scikit-learn is optional: without it this module is skipped, except under
FASTNN_REQUIRE_OPTIONAL=1 (CI), where a missing scikit-learn (or pandas) is an
error rather than a silent skip."""
import copy
import importlib.util
import os
import pickle
import subprocess
import tempfile
import sys
import warnings

import numpy as np
import pytest

_REQUIRE = os.environ.get("FASTNN_REQUIRE_OPTIONAL") == "1"
if importlib.util.find_spec("sklearn") is None:
    if _REQUIRE:
        raise RuntimeError("FASTNN_REQUIRE_OPTIONAL=1 but scikit-learn is missing: "
                           'pip install "fastnn[sklearn]"')
    pytest.skip("scikit-learn is not installed", allow_module_level=True)
if _REQUIRE and importlib.util.find_spec("pandas") is None:
    raise RuntimeError("FASTNN_REQUIRE_OPTIONAL=1 but pandas is missing: install the ci extra")

import sklearn.neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn as fn  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402



@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


# --- scikit-learn's own estimator checks ---------------------------------------
# The check parameters scikit-learn uses for its own MLPs (max_iter=100).
_CHECKED = [MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0),
            MLPClassifier(max_iter=100, random_state=0, dtype="float64"),
            MLPRegressor(max_iter=100, random_state=0, dtype="float64")]


def _expected_failed_checks(estimator):
    if estimator.dtype == "float32":
        reason = ("float32 computation: a row's prediction depends on the batch it is computed "
                  "in at the 1-ulp level (BLAS sgemm vs sgemv blocking, ~2.4e-7 relative), "
                  "below the check's rtol=1e-7; the float64 instances pass it")
        return {"check_methods_subset_invariance": reason}
    return {}


_XFAIL_BY_HAND = False
try:
    _with_checks = parametrize_with_checks(_CHECKED, expected_failed_checks=_expected_failed_checks)
except TypeError:  # scikit-learn < 1.6 has no expected_failed_checks
    _with_checks = parametrize_with_checks(_CHECKED)
    _XFAIL_BY_HAND = True


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@_with_checks
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if _XFAIL_BY_HAND and name in _expected_failed_checks(estimator):
        pytest.xfail(_expected_failed_checks(estimator)[name])
    with fn_threads(1):
        check(estimator)


class fn_threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = fn.get_num_threads()
        fn.set_num_threads(self.n)

    def __exit__(self, *exc):
        fn.set_num_threads(self.old)


# --- optional dependency discipline --------------------------------------------
def _run(code):
    # from another folder, so the installed fastnn is imported (not the source tree)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120)


def test_import_fastnn_does_not_import_sklearn():
    r = _run("import sys, fastnn; assert 'sklearn' not in sys.modules, 'sklearn imported'")
    assert r.returncode == 0, r.stderr


def test_missing_sklearn_gives_clear_import_error():
    r = _run("import sys; sys.modules['sklearn'] = None\n"
             "try:\n    import fastnn.sklearn\n"
             "except ImportError as e:\n    print(e)\nelse:\n    print('no error')")
    assert r.returncode == 0, r.stderr
    assert 'pip install "fastnn[sklearn]"' in r.stdout


# --- the same training as scikit-learn ----------------------------------------------
def _data(kind):
    rng = np.random.RandomState(0)
    if kind == "multiclass":
        X, y = load_iris(return_X_y=True)
        return (X - X.mean(0)) / X.std(0), y
    if kind == "binary":
        X, y = load_iris(return_X_y=True)
        return (X - X.mean(0)) / X.std(0), np.where(y == 1, "yes", "no")
    if kind == "multilabel":
        return make_multilabel_classification(n_samples=150, n_features=6, n_classes=3,
                                              random_state=0)
    X, y = make_regression(n_samples=150, n_features=5, n_targets=2, random_state=0)
    y = y / 100 + rng.normal(0, 0.01, y.shape)
    return X, (y[:, 0] if kind == "regression" else y)


_KINDS = ["multiclass", "binary", "multilabel", "regression", "multioutput"]
_SGD_CONFIGS = [
    dict(),
    dict(alpha=0.1, batch_size=64, momentum=0.5, nesterovs_momentum=False),
    dict(learning_rate="invscaling", learning_rate_init=0.05, batch_size=40),
    dict(learning_rate="adaptive", tol=0.1, n_iter_no_change=2, learning_rate_init=0.01,
         batch_size=50),
    dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
         learning_rate_init=0.01, batch_size=32, activation="relu"),
]


def _pair(kind, **kw):
    X, y = _data(kind)
    ours = MLPClassifier if kind in ("multiclass", "binary", "multilabel") else MLPRegressor
    theirs = sknn.MLPClassifier if ours is MLPClassifier else sknn.MLPRegressor
    kw = {"hidden_layer_sizes": (7, 5), "activation": "tanh", "random_state": 0,
          "max_iter": 30, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(dtype="float64", **kw).fit(X, y)
        b = theirs(**kw).fit(X, y)
    return a, b, X


@pytest.mark.parametrize("kind", _KINDS)
@pytest.mark.parametrize("config", range(len(_SGD_CONFIGS)))
def test_sgd_takes_sklearns_steps(kind, config):
    """solver='sgd' in float64: the same weights, losses and stopping epoch as
    sklearn.neural_network to rounding (L2 mapping, momentum, schedules,
    shuffling, early stopping)."""
    a, b, X = _pair(kind, solver="sgd", **_SGD_CONFIGS[config])
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10, atol=1e-10)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert ca.shape == cb.shape
        np.testing.assert_allclose(ca, cb, rtol=1e-9, atol=1e-10)
    assert a.best_loss_ == pytest.approx(b.best_loss_) if b.best_loss_ is not None \
        else a.best_loss_ is None
    if b.validation_scores_ is not None:
        np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
        assert a.best_validation_score_ == pytest.approx(b.best_validation_score_)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-10) if a.out_activation_ == "identity" \
        else np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert (a.n_outputs_, a.n_layers_, a.out_activation_) == \
        (b.n_outputs_, b.n_layers_, b.out_activation_)
    if hasattr(b, "classes_"):
        np.testing.assert_array_equal(a.classes_, b.classes_)
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", _KINDS)
def test_adam_tracks_sklearn(kind):
    """Adam differs from scikit-learn's only in where epsilon enters the bias
    correction, so the loss curves agree to ~1e-6."""
    a, b, _ = _pair(kind, alpha=0.1, batch_size=64)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-4)


# --- convergence -------------------------------------------------------------------
def test_convergence_warning_and_tol_stop(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        est = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert est.loss_ == est.loss_curve_[-1] and est.best_loss_ == min(est.loss_curve_)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = MLPClassifier((8,), max_iter=500, tol=1.0, n_iter_no_change=2,
                            random_state=0).fit(X, y)
    # the first epoch sets best_loss_; then n_iter_no_change + 1 epochs without a
    # 1.0 improvement stop it, as in scikit-learn
    assert est.n_iter_ == 4
    ref = sknn.MLPClassifier((8,), max_iter=500, tol=1.0, n_iter_no_change=2,
                             random_state=0).fit(X, y)
    assert ref.n_iter_ == est.n_iter_


def test_early_stopping_restores_best(iris):
    X, y = iris
    est = MLPClassifier((16,), early_stopping=True, n_iter_no_change=5, max_iter=300,
                        random_state=0, learning_rate_init=0.01).fit(X, y)
    assert est.best_loss_ is None and len(est.validation_scores_) == est.n_iter_ < 300
    assert est.best_validation_score_ == max(est.validation_scores_)
    with pytest.raises(ValueError, match="early_stopping"):
        est.partial_fit(X, y)


# --- errors --------------------------------------------------------------------------
def test_lbfgs_and_poisson_are_clear_errors(iris):
    X, y = iris
    with pytest.raises(ValueError, match="lbfgs.*not available"):
        MLPClassifier(solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="squared_error"):
        MLPRegressor(loss="poisson").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(10, 0)).fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(X, y)


# --- prediction ------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_proba_shapes(iris):
    X, y = iris
    binary = MLPClassifier((8,), max_iter=50, random_state=0).fit(X, y == 2)
    p = binary.predict_proba(X)
    assert p.shape == (150, 2) and binary.n_outputs_ == 1 and binary.coefs_[-1].shape == (8, 1)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(binary.predict(X), binary.classes_[p.argmax(1)])
    np.testing.assert_allclose(binary.predict_log_proba(X), np.log(p))
    Xm, ym = make_multilabel_classification(n_samples=100, n_classes=4, random_state=0)
    multi = MLPClassifier((8,), max_iter=50, random_state=0).fit(Xm, ym)
    assert multi.predict(Xm).shape == ym.shape and multi.predict_proba(Xm).shape == ym.shape
    assert multi.score(Xm, ym) > 0.0


def test_coefs_layout(iris):
    X, y = iris
    est = MLPClassifier((9, 4), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert [c.shape for c in est.coefs_] == [(4, 9), (9, 4), (4, 3)]
    assert [b.shape for b in est.intercepts_] == [(9,), (4,), (3,)]
    assert est.coefs_[0].dtype == np.float32 and est.n_features_in_ == 4
    # the forward pass in scikit-learn's layout gives the same logits
    h = np.maximum(X @ est.coefs_[0] + est.intercepts_[0], 0)
    h = np.maximum(h @ est.coefs_[1] + est.intercepts_[1], 0)
    logits = h @ est.coefs_[2] + est.intercepts_[2]
    np.testing.assert_array_equal(est.predict(X), est.classes_[logits.argmax(1)])


# --- partial_fit / warm_start ----------------------------------------------------------
def test_partial_fit(iris):
    X, y = iris
    est = MLPClassifier((8,), random_state=0, batch_size=16, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    est.partial_fit(X[:50], y[:50], classes=[0, 1, 2])  # the first 50 are all class 0
    assert list(est.classes_) == [0, 1, 2] and est.n_iter_ == 1
    for _ in range(30):
        est.partial_fit(X, y)
    assert len(est.loss_curve_) == 31 and est.score(X, y) > 0.8
    # an interrupted sequence of partial_fits continues exactly after a pickle round trip
    a = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    b = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    yr = X[:, 0] * 2 - X[:, 1]
    for _ in range(3):
        a.partial_fit(X, yr)
    b.partial_fit(X, yr)
    b = pickle.loads(pickle.dumps(b))
    b.partial_fit(X, yr)
    b.partial_fit(X, yr)
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)


def test_warm_start_continues(iris):
    X, y = iris
    est = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        first = [c.copy() for c in est.coefs_]
        est.fit(X, y)
    assert len(est.loss_curve_) == 10 and est.n_iter_ == 5
    assert not np.array_equal(first[0], est.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        est.fit(X[y < 2], y[y < 2])


# --- scikit-learn integration ------------------------------------------------------------
def test_clone_pickle_deepcopy(iris):
    X, y = iris
    est = MLPClassifier((8,), max_iter=50, random_state=0, n_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    proba = est.predict_proba(X)
    for copied in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        np.testing.assert_array_equal(copied.predict_proba(X), proba)
        assert copied.loss_curve_ == est.loss_curve_
        for ca, cb in zip(copied.coefs_, est.coefs_):
            np.testing.assert_array_equal(ca, cb)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coefs_")
    # pickling a never-fitted and a just-unpickled estimator works too
    pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(fresh))))


def test_pipeline_and_gridsearch_in_worker_processes(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0,
                                                         learning_rate_init=0.01, n_threads=1))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.85
    assert grid.score(X, y) > 0.9
    # the fitted search (fastnn model inside) survives pickling
    again = pickle.loads(pickle.dumps(grid))
    np.testing.assert_array_equal(again.predict(X), grid.predict(X))


def test_dataframe_input(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(df, pd.Series(y.astype(float)))
    assert list(est.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        plain = est.predict(X)
    np.testing.assert_array_equal(est.predict(df), plain)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df.rename(columns={"a": "z"}))


def test_threads_restored_and_dropout_reproducible(iris):
    X, y = iris
    before = fn.get_num_threads()
    state = fn._random.generator().bit_generator.state
    kw = dict(hidden_layer_sizes=(16,), dropout=0.2, max_iter=20, random_state=3, n_threads=1,
              batch_size=16, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y)
        c = MLPClassifier(**{**kw, "dropout": 0.0}).fit(X, y)
    assert fn.get_num_threads() == before
    assert fn._random.generator().bit_generator.state == state  # fastnn's global RNG untouched
    assert a.loss_curve_ == b.loss_curve_ and a.loss_curve_ != c.loss_curve_
    assert a.score(X, y) > 0.8
