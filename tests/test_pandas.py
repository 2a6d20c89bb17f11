"""pandas DataFrames and Series wherever arrays go: model(x), predict, Trainer
step/fit/evaluate, losses' targets; named errors for non-numeric columns and
missing values. Skipped without pandas (CI installs it)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn

try:
    import pandas as pd
except ImportError:
    if os.environ.get("FASTNN_REQUIRE_OPTIONAL") == "1":
        raise RuntimeError("FASTNN_REQUIRE_OPTIONAL=1 but pandas is missing: "
                           "pip install 'fastnn[pandas]'") from None
    pytest.skip("pandas not installed (pip install 'fastnn[pandas]')", allow_module_level=True)


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    df = pd.DataFrame({"age": X[:, 0], "income": X[:, 1], "score": X[:, 2]},
                      index=rng.permutation(n) + 100)  # an index that is not 0..n-1
    labels = pd.Series((X[:, 0] + X[:, 1] > 0).astype(np.int64), index=df.index, name="label")
    return df, labels


def _classifier(dtype="float32"):
    fn.seed(0)
    return fn.Sequential(fn.Linear(3, 8), fn.ReLU(), fn.Linear(8, 2), dtype=dtype)


def _trainer(model, loss=None):
    return fn.Trainer(model, loss or fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_predict_match_numpy(dtype):
    df, _ = _frame()
    model = _classifier(dtype)
    X = df.to_numpy()
    np.testing.assert_array_equal(model(df), model(X))
    np.testing.assert_array_equal(model.predict(df), model.predict(X))
    np.testing.assert_array_equal(model.predict(df, batch_size=7), model.predict(X))
    assert model.predict(df).dtype == dtype


def test_fit_evaluate_step_match_numpy():
    df, y = _frame()
    vdf, vy = _frame(15, seed=1)
    runs = []
    for X, t, Xv, tv, w in [(df, y, vdf, vy, pd.Series(np.linspace(0.5, 1.5, len(df)))),
                            (df.to_numpy(), y.to_numpy(), vdf.to_numpy(), vy.to_numpy(),
                             np.linspace(0.5, 1.5, len(df)))]:
        model = _classifier()
        trainer = _trainer(model)
        hist = trainer.fit(X, t, epochs=3, batch_size=8, validation_data=(Xv, tv), seed=0,
                           progress=False, sample_weight=w).history
        step = trainer.step(X[:8] if isinstance(X, np.ndarray) else X.iloc[:8],
                            t[:8] if isinstance(t, np.ndarray) else t.iloc[:8])
        runs.append((hist, trainer.evaluate(Xv, tv), step, model.state_dict()))
    (h1, e1, s1, w1), (h2, e2, s2, w2) = runs
    assert h1 == h2 and e1 == e2 and s1 == s2
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k])


def test_validation_split_and_regression_frame_targets():
    df, _ = _frame()
    target = pd.DataFrame({"y": 2 * df["age"] - df["score"]})  # (n, 1), like the output
    fn.seed(0)
    model = fn.Sequential(fn.Linear(3, 1))
    trainer = _trainer(model, fn.MSELoss())
    hist = trainer.fit(df, target, epochs=20, batch_size=8, validation_split=0.25, seed=0,
                       progress=False).history
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert set(trainer.evaluate(df, target)) == {"loss"}
    with pytest.raises(ValueError, match="output's shape"):  # a Series is (n,), not (n, 1)
        trainer.step(df, target["y"])


def test_losses_take_pandas_targets():
    df, y = _frame(6)
    out = _classifier()(df)
    ce = fn.CrossEntropyLoss()
    assert ce(out, y) == ce(out, y.to_numpy())
    probs = pd.DataFrame(np.full((6, 2), 0.5), columns=["p0", "p1"])
    assert ce(out, probs) == ce(out, probs.to_numpy())
    mse = fn.MSELoss()
    assert mse(out, probs) == mse(out, probs.to_numpy())
    bce = fn.BCEWithLogitsLoss()
    flags = pd.DataFrame({"a": [True, False] * 3, "b": [False] * 6})  # bool columns are numbers
    assert bce(out, flags) == bce(out, flags.to_numpy(dtype=float))


def test_embedding_ids_from_a_frame():
    fn.seed(0)
    model = fn.Sequential(fn.Embedding(10, 2), fn.Flatten(), fn.Linear(4, 3))
    ids = pd.DataFrame({"first": [1, 2, 9], "second": pd.array([0, 5, 3], dtype="Int64")})
    np.testing.assert_array_equal(model.predict(ids), model.predict(np.array([[1, 0], [2, 5], [9, 3]])))
    with pytest.raises(TypeError, match="integers"):
        model.predict(ids.astype(float))


def test_feature_count_is_checked():
    df, _ = _frame()
    with pytest.raises(ValueError, match=r"shape \(batch, 3\).*, got \(40, 4\)"):
        _classifier()(df.assign(extra=1.0))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\).*, got \(40, 2\)"):
        _trainer(_classifier()).fit(df[["age", "income"]], _frame()[1], progress=False)


def test_non_numeric_columns_are_named():
    df, y = _frame()
    df = df.assign(city=["Paris", "Oslo"] * 20, day=pd.Timestamp("2026-01-01"))
    model = _classifier()
    msg = r"x has non-numeric columns \['city', 'day'\] \(dtype .*\); encode them first"
    with pytest.raises(TypeError, match=msg):
        model(df)
    with pytest.raises(TypeError, match=msg):
        model.predict(df)
    with pytest.raises(TypeError, match=msg):
        _trainer(model).fit(df, y, progress=False)
    with pytest.raises(TypeError, match=msg):
        _trainer(model).step(df, y)
    with pytest.raises(TypeError, match=r"x has non-numeric columns \['kind'\] \(dtype category\)"):
        model(pd.DataFrame({"a": [1.0], "b": [2.0], "kind": pd.Categorical(["u"])}))
    out = model(df[["age", "income", "score"]])
    with pytest.raises(TypeError, match=r"target is a non-numeric Series .*encode it first"):
        fn.MSELoss()(out[:, :1].ravel(), pd.Series(["a", "b"] * 20))
    with pytest.raises(TypeError, match=r"target has non-numeric columns \['t'\]"):
        _trainer(fn.Sequential(fn.Linear(3, 1)), fn.MSELoss()).step(
            df[["age", "income", "score"]], pd.DataFrame({"t": ["a"] * 40}))


def test_nullable_dtypes_convert_without_missing_values():
    df, y = _frame()
    nullable = df.astype({"age": "Float64", "income": "Float64"}).assign(
        score=pd.array(np.arange(40), dtype="Int64"))
    plain = nullable.astype({"age": float, "income": float, "score": np.int64})
    model = _classifier()
    np.testing.assert_array_equal(model(nullable), model(plain))
    np.testing.assert_array_equal(model.predict(nullable), model.predict(plain))
    ce = fn.CrossEntropyLoss()
    out = model(plain)
    assert ce(out, y.astype("Int64")) == ce(out, y)
    t1 = _trainer(_classifier())
    t2 = _trainer(_classifier())
    assert t1.step(nullable, y.astype("Int64")) == t2.step(plain, y)


def test_missing_values_are_named():
    df, y = _frame()
    model = _classifier()
    with_na = df.astype({"income": "Float64"})
    with_na.loc[with_na.index[3], "income"] = pd.NA
    msg = r"x has missing values \(NaN/NA\) in columns \['income'\]; fill or drop them first"
    with pytest.raises(ValueError, match=msg):
        model(with_na)
    with pytest.raises(ValueError, match=msg):
        _trainer(model).fit(with_na, y, progress=False)
    nan = df.copy()
    nan.iloc[0, 2] = np.nan  # a plain float NaN is named the same way
    with pytest.raises(ValueError, match=r"x has missing values \(NaN/NA\) in columns \['score'\]"):
        model.predict(nan)
    ids = pd.DataFrame({"a": pd.array([1, None], dtype="Int64")})
    with pytest.raises(ValueError, match=r"x has missing values"):
        fn.Sequential(fn.Embedding(3, 2))(ids)
    target = pd.DataFrame({"t": pd.array([0.5, None] * 20, dtype="Float64")})
    with pytest.raises(ValueError, match=r"target has missing values \(NaN/NA\) in columns \['t'\]"):
        fn.MSELoss()(np.zeros((40, 1)), target)
    with pytest.raises(ValueError, match=r"target has missing values \(NaN/NA\) at 1 positions"):
        fn.MSELoss()(np.zeros(2), pd.Series([1.0, None], dtype="Float64"))


def test_importing_fastnn_does_not_import_pandas():
    code = "import sys, fastnn; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_class_labels_are_named():
    labels = pd.Series([0, 1, None, 1], dtype="Int64")
    with pytest.raises(ValueError, match="missing values"):
        fn.CrossEntropyLoss()(np.zeros((4, 2)), labels)
