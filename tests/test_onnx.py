"""fn.export_onnx: every exportable layer, run by onnxruntime, matches fastnn.

Skipped without onnx/onnxruntime, except in CI (FASTNN_REQUIRE_OPTIONAL=1), where
a missing one is an error."""
import importlib
import os
import sys

import numpy as np
import pytest

import fastnn as fn

BATCHES = (1, 3, 64)


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("FASTNN_REQUIRE_OPTIONAL") == "1":
            raise RuntimeError(f"FASTNN_REQUIRE_OPTIONAL=1 but {name} is missing: "
                               "pip install 'fastnn[onnx]'") from None
        pytest.skip(f"{name} not installed (pip install 'fastnn[onnx]')")


@pytest.fixture(scope="module")
def onnx():
    return _optional("onnx")


@pytest.fixture(scope="module")
def ort():
    return _optional("onnxruntime")


@pytest.fixture
def run(onnx, ort, tmp_path):
    """run(model, x, **export_kwargs) -> onnxruntime's output for x."""
    def _run(model, x, **kwargs):
        path = tmp_path / "model.onnx"
        if isinstance(model[0] if isinstance(model, fn.Sequential) else model, fn.Flatten):
            kwargs.setdefault("input_shape", x.shape[1:])
        fn.export_onnx(model, path, **kwargs)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(["output"], {"input": x})[0]
    return _run


# name -> (model factory(dtype), input factory(rng, n, dtype))
def _feats(k):
    return lambda rng, n, dtype: rng.normal(0, 2, (n, k)).astype(dtype)


LAYERS = {
    "linear": (lambda dt: fn.Sequential(fn.Linear(6, 4), dtype=dt), _feats(6)),
    "linear_nobias": (lambda dt: fn.Sequential(fn.Linear(6, 4, bias=False), dtype=dt), _feats(6)),
    "relu": (lambda dt: fn.Sequential(fn.ReLU(), dtype=dt), _feats(5)),
    "leaky_relu": (lambda dt: fn.Sequential(fn.LeakyReLU(0.2), dtype=dt), _feats(5)),
    "sigmoid": (lambda dt: fn.Sequential(fn.Sigmoid(), dtype=dt), _feats(5)),
    "tanh": (lambda dt: fn.Sequential(fn.Tanh(), dtype=dt), _feats(5)),
    "gelu": (lambda dt: fn.Sequential(fn.GELU(), dtype=dt), _feats(5)),
    "gelu_tanh": (lambda dt: fn.Sequential(fn.GELU(approximate="tanh"), dtype=dt), _feats(5)),
    "softmax": (lambda dt: fn.Sequential(fn.Softmax(), dtype=dt), _feats(5)),
    "softmax_dim1": (lambda dt: fn.Sequential(fn.Softmax(dim=1), dtype=dt), _feats(5)),
    "dropout": (lambda dt: fn.Sequential(fn.Dropout(0.5), dtype=dt), _feats(5)),
    "layernorm": (lambda dt: fn.Sequential(fn.LayerNorm(7, eps=1e-3), dtype=dt), _feats(7)),
    "layernorm_noaffine": (lambda dt: fn.Sequential(fn.LayerNorm(7, elementwise_affine=False),
                                                    dtype=dt), _feats(7)),
    "flatten": (lambda dt: fn.Sequential(fn.Flatten(), dtype=dt),
                lambda rng, n, dtype: rng.normal(size=(n, 2, 3)).astype(dtype)),
    "embedding": (lambda dt: fn.Sequential(fn.Embedding(11, 3), dtype=dt),
                  lambda rng, n, dtype: rng.integers(0, 11, (n, 4))),
    # activations behind a Linear run fused inside fastnn: the graph has them separately
    **{f"linear_{name}": (lambda dt, a=act: fn.Sequential(fn.Linear(6, 5), a(), dtype=dt), _feats(6))
       for name, act in [("relu", fn.ReLU), ("leaky_relu", lambda: fn.LeakyReLU(0.1)),
                         ("sigmoid", fn.Sigmoid), ("tanh", fn.Tanh), ("gelu", fn.GELU),
                         ("gelu_tanh", lambda: fn.GELU("tanh")), ("softmax", fn.Softmax)]},
    "embedding_mlp": (lambda dt: fn.Sequential(fn.Embedding(20, 4), fn.Flatten(), fn.Linear(12, 8),
                                               fn.Tanh(), fn.Linear(8, 20), dtype=dt),
                      lambda rng, n, dtype: rng.integers(0, 20, (n, 3))),
}


def _perturb(model):
    """Move every weight off its initial value (LayerNorm's start at exactly 1 and 0)."""
    rng = np.random.default_rng(2)
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.2, p.shape).astype(p.dtype)


def _reference(model, x):
    model.eval()
    return model.predict(x) if isinstance(model, fn.Sequential) else model(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_fastnn_float32(run, name):
    make, data = LAYERS[name]
    fn.seed(1)
    model = make("float32")
    model.train()  # the export is the eval-mode graph whatever the mode
    _perturb(model)
    rng = np.random.default_rng(3)
    for n in BATCHES:
        x = data(rng, n, np.float32)
        got = run(model, x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, _reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_fastnn_float64(run, name):
    make, data = LAYERS[name]
    fn.seed(1)
    model = make("float64")
    _perturb(model)
    rng = np.random.default_rng(3)
    # onnxruntime has no float64 erf: exact GELU's erf runs in float32 (abs. error < 1e-7)
    tol = 1e-6 if name in ("gelu", "linear_gelu") else 1e-11
    for n in BATCHES:
        x = data(rng, n, np.float64)
        got = run(model, x)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, _reference(model, x), rtol=tol, atol=tol)


def _mlp(dtype="float32"):
    fn.seed(0)
    return fn.Sequential(fn.Linear(20, 64), fn.ReLU(), fn.Dropout(0.1), fn.LayerNorm(64),
                         fn.Linear(64, 32), fn.GELU(), fn.Linear(32, 32), fn.LeakyReLU(0.05),
                         fn.Linear(32, 16), fn.Tanh(), fn.Linear(16, 10), fn.Softmax(),
                         dtype=dtype)


@pytest.mark.parametrize("opset", [13, 17, 18, 20])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_matches_predict(run, opset, dtype):
    model = _mlp(dtype)
    _perturb(model)
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == "float32" else 1e-6  # float64: erf in float32 (see above)
    for n in (1, 2, 16, 257, 1100):  # beyond predict's 1024 batch too
        x = rng.normal(size=(n, 20)).astype(dtype)
        np.testing.assert_allclose(run(model, x, opset=opset), model.predict(x),
                                   rtol=tol, atol=tol)


def test_trained_classifier_agrees_on_every_label(run):
    X, y = fn.datasets.load_digits()
    X = np.asarray(X, np.float32)
    fn.seed(0)
    model = fn.Sequential(fn.Linear(X.shape[1], 32), fn.ReLU(), fn.Linear(32, int(y.max()) + 1))
    fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2)).fit(
        X, y, epochs=3, batch_size=64, progress=False, seed=0)
    got = run(model, X)
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5, atol=1e-4)
    assert (got.argmax(1) == model.predict(X).argmax(1)).mean() > 0.999


def test_graph_interface(onnx, tmp_path):
    model = _mlp("float64")
    proto = fn.export_onnx(model, tmp_path / "m.onnx")
    loaded = onnx.load(str(tmp_path / "m.onnx"))
    assert loaded == proto
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.producer_name == "fastnn" and loaded.producer_version == fn.__version__
    (inp,), (out,) = loaded.graph.input, loaded.graph.output
    assert (inp.name, out.name) == ("input", "output")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 20]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    assert loaded.opset_import[0].version == 17
    # weights under their state-dict names, bit for bit
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(weights[k], v)
    ops = [n.op_type for n in loaded.graph.node]
    assert ops[:3] == ["Gemm", "Relu", "ReduceMean"] and "Dropout" not in ops
    ops = [n.op_type for n in fn.export_onnx(_mlp(), tmp_path / "m.onnx").graph.node]
    assert ops[:3] == ["Gemm", "Relu", "LayerNormalization"]
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temp file left


def test_batch_dim_name_and_fixed_size(onnx, ort, tmp_path):
    model = fn.Sequential(fn.Linear(3, 2))
    proto = fn.export_onnx(model, tmp_path / "a.onnx", batch_dim="N")
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    proto = fn.export_onnx(model, tmp_path / "b.onnx", batch_dim=4)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    sess = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x), atol=1e-6)
    with pytest.raises(Exception):
        sess.run(None, {"input": np.ones((5, 3), np.float32)})


def test_opset20_uses_gelu_op(onnx, tmp_path):
    model = fn.Sequential(fn.Linear(4, 4), fn.GELU(), fn.Linear(4, 4), fn.GELU("tanh"))
    ops = [n.op_type for n in fn.export_onnx(model, tmp_path / "m.onnx", opset=20).graph.node]
    assert ops.count("Gelu") == 2 and "Erf" not in ops
    ops = [n.op_type for n in fn.export_onnx(model, tmp_path / "m.onnx").graph.node]
    assert "Gelu" not in ops and "Erf" in ops


def test_export_keeps_mode_and_weights(onnx, tmp_path):
    model = _mlp()
    before = model.state_dict()
    model.train()
    fn.export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    model.eval()
    fn.export_onnx(model, tmp_path / "m.onnx")
    assert not model.training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_single_layer_model(run):
    fn.seed(0)
    layer = fn.Linear(5, 3)
    x = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
    np.testing.assert_allclose(run(layer, x), layer(x), rtol=1e-5, atol=1e-6)


# --- errors ------------------------------------------------------------------------

class Doubler(fn.Module):
    def _forward(self, x):
        self._out = 2 * x
        return self._out

    def _backward(self, grad, accumulate, need_input_grad):
        return 2 * grad


class MyLinear(fn.Linear):
    pass


def test_unsupported_layer_is_named(onnx, tmp_path):
    model = fn.Sequential(fn.Linear(3, 4), fn.ReLU(), Doubler())
    with pytest.raises(TypeError, match=r"layer '2' \(Doubler\) cannot be exported.*Supported"):
        fn.export_onnx(model, tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)  # nothing written
    nested = fn.Sequential(fn.Linear(3, 4), fn.Sequential(fn.ReLU(), MyLinear(4, 2)))
    with pytest.raises(TypeError, match=r"layer '1\.1' \(MyLinear\).*subclass of Linear"):
        fn.export_onnx(nested, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"the model \(Doubler\)"):
        fn.export_onnx(Doubler(), tmp_path / "m.onnx")


def test_bad_arguments(onnx, tmp_path):
    model = fn.Sequential(fn.Linear(3, 4))
    with pytest.raises(TypeError, match="model must be a fastnn Module"):
        fn.export_onnx(object(), tmp_path / "m.onnx")
    for opset in (12, 10_000, 17.0, True):
        with pytest.raises(ValueError, match="opset"):
            fn.export_onnx(model, tmp_path / "m.onnx", opset=opset)
    for bad in ("", 0, -1, None, True):
        with pytest.raises(ValueError, match="batch_dim"):
            fn.export_onnx(model, tmp_path / "m.onnx", batch_dim=bad)
    with pytest.raises(ValueError, match=r"rank is not fixed.*layer '0' is a Flatten.*input_shape"):
        fn.export_onnx(fn.Sequential(fn.Flatten(), fn.Linear(6, 2)), tmp_path / "m.onnx")
    for bad in (3, (0, 2), ("a",), (2.0,)):
        with pytest.raises(ValueError, match="input_shape"):
            fn.export_onnx(model, tmp_path / "m.onnx", input_shape=bad)
    with pytest.raises(ValueError, match=r"layer '1' \(Embedding\) must be the first"):
        fn.export_onnx(fn.Sequential(fn.Linear(3, 4), fn.Embedding(4, 2)), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\) expects 5 input features.*produces 4"):
        fn.export_onnx(fn.Sequential(fn.Linear(3, 4), fn.ReLU(), fn.Linear(5, 2)),
                       tmp_path / "m.onnx")


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"fastnn\[onnx\]"):
        fn.export_onnx(fn.Sequential(fn.Linear(3, 4)), tmp_path / "m.onnx")


def test_import_does_not_load_onnx():
    import subprocess
    code = "import sys, fastnn; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
