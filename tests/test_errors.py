"""Bad input raises ValueError/TypeError naming the argument; bad hyperparameters
are rejected like PyTorch does; and a rejected call changes nothing (weights,
optimizer state, hyperparameters)."""
import numpy as np
import pytest

import fastnn as fn

ERR = (ValueError, TypeError)


def make_model(dtype="float32", seed=0):
    fn.seed(seed)
    return fn.Sequential(fn.Linear(4, 8), fn.ReLU(), fn.Linear(8, 3), dtype=dtype)


def snapshot(model, opt=None):
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    ostate = None
    if opt is not None:
        sd = opt.state_dict()
        ostate = ({i: {k: np.array(v, copy=True) for k, v in e.items()} for i, e in sd["state"].items()},
                  [{k: v for k, v in g.items()} for g in sd["param_groups"]])
    return weights, ostate


def assert_unchanged(before, model, opt=None):
    weights, ostate = before
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, weights[k], err_msg=k)
    if opt is not None:
        sd = opt.state_dict()
        assert sd["param_groups"] == ostate[1]
        assert sd["state"].keys() == ostate[0].keys()
        for i, entry in sd["state"].items():
            assert entry.keys() == ostate[0][i].keys()
            for k, v in entry.items():
                np.testing.assert_array_equal(v, ostate[0][i][k], err_msg=f"{i}/{k}")


# ============================================================= model inputs
X_GOOD = np.random.default_rng(0).standard_normal((5, 4))


def _with(value, where=(1, 2)):
    x = X_GOOD.copy()
    x[where] = value
    return x


BAD_X = {
    "wrong_features": (np.zeros((5, 3)), ValueError, r"x.*\(batch, 4\).*\(5, 3\)"),
    "too_many_features": (np.zeros((5, 5)), ValueError, r"x.*4"),
    "one_dim": (np.zeros(4), ValueError, r"x"),
    "three_dim": (np.zeros((5, 4, 1)), ValueError, r"x"),
    "scalar": (np.float64(1.0), ValueError, r"x"),
    "nan": (_with(np.nan), ValueError, r"x.*(NaN|nan)"),
    "inf": (_with(np.inf), ValueError, r"x.*(inf)"),
    "neg_inf": (_with(-np.inf), ValueError, r"x.*(inf)"),
    "overflow_to_inf_in_float32": (_with(1e300), ValueError, r"x.*(inf)"),
    "empty_batch": (np.zeros((0, 4)), ValueError, r"x.*empty"),
    "complex": (X_GOOD.astype(complex), TypeError, r"x.*complex"),
    "object": (X_GOOD.astype(object), TypeError, r"x.*object"),
    "str": (X_GOOD.astype(str), TypeError, r"x"),
    "bytes": (np.array([[b"a"] * 4] * 5), TypeError, r"x"),
    "datetime": (np.zeros((5, 4), "datetime64[s]"), TypeError, r"x"),
    "ragged": ([[1.0, 2.0, 3.0, 4.0], [1.0]], ERR, r"."),
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(BAD_X))
def test_model_rejects_bad_x(case, dtype):
    x, exc, pattern = BAD_X[case]
    if case == "overflow_to_inf_in_float32" and dtype == "float64":
        pytest.skip("1e300 is finite in float64")
    model = make_model(dtype)
    for call in (model, model.predict, model[0]):
        with pytest.raises(exc, match=pattern):
            call(x)


def test_model_accepts_int_and_bool_input():
    model = make_model("float64")
    xi = np.arange(20).reshape(5, 4)
    np.testing.assert_allclose(model(xi), model(xi.astype(float)))
    xb = xi % 2 == 0
    np.testing.assert_allclose(model(xb), model(xb.astype(float)))


def test_backward_checks():
    model = make_model("float64")
    with pytest.raises(RuntimeError, match="before forward"):
        fn.Linear(2, 2).backward(np.zeros((1, 2)))
    model(X_GOOD)
    with pytest.raises(ValueError, match=r"grad.*\(5, 3\)"):
        model.backward(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"grad.*\(5, 3\)"):
        model.backward(np.zeros(15))
    with pytest.raises(ValueError, match="grad.*(NaN|inf)"):
        model.backward(np.full((5, 3), np.nan))
    with pytest.raises(TypeError, match="grad"):
        model.backward(np.zeros((5, 3), complex))


def test_embedding_rejects_bad_ids():
    emb = fn.Embedding(5, 2)
    for bad in (np.array([0, 5]), np.array([-1, 0]), np.array([[1, 2], [3, 7]])):
        with pytest.raises(ValueError, match=r"x.*\[0, 5\)"):
            emb(bad)
    with pytest.raises(TypeError, match="x.*integer"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="x"):
        emb(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="x"):
        emb(np.zeros(0, int))


# =================================================================== losses
N = 6
OUT = np.random.default_rng(1).standard_normal((N, 3))
PROB_OUT = 1 / (1 + np.exp(-OUT))


def _nan_at(a, value=np.nan):
    a = np.array(a, dtype=float)
    a.flat[2] = value
    return a


LOSS_CASES = {
    # (loss, output, target, exception, pattern)
    "mse_n_vs_n1": (fn.MSELoss(), OUT[:, :1], OUT[:, 0], ValueError, r"target.*\(6, 1\).*\(6,\)"),
    "mse_n1_vs_n": (fn.MSELoss(), OUT[:, 0], OUT[:, :1], ValueError, r"target.*\(6,\).*\(6, 1\)"),
    "mse_shape": (fn.MSELoss(), OUT, OUT[:, :2], ValueError, r"target"),
    "mse_transposed": (fn.MSELoss(), OUT, OUT.T, ValueError, r"target"),
    "mse_output_nan": (fn.MSELoss(), _nan_at(OUT), OUT, ValueError, r"output.*(NaN|inf)"),
    "mse_output_inf": (fn.MSELoss(), _nan_at(OUT, np.inf), OUT, ValueError, r"output.*(NaN|inf)"),
    "mse_target_nan": (fn.MSELoss(), OUT, _nan_at(OUT), ValueError, r"target.*(NaN|inf)"),
    "mse_target_inf": (fn.MSELoss(), OUT, _nan_at(OUT, -np.inf), ValueError, r"target.*(NaN|inf)"),
    "mse_empty": (fn.MSELoss(), np.zeros((0, 3)), np.zeros((0, 3)), ValueError, r"output.*empty"),
    "mse_complex_target": (fn.MSELoss(), OUT, OUT.astype(complex), TypeError, r"target.*complex"),
    "mse_str_target": (fn.MSELoss(), OUT, OUT.astype(str), TypeError, r"target"),
    "mse_object_output": (fn.MSELoss(), OUT.astype(object), OUT, TypeError, r"output"),
    "mse_complex_output": (fn.MSELoss(), OUT.astype(complex), OUT, TypeError, r"output"),
    "bce_n_vs_n1": (fn.BCELoss(), PROB_OUT[:, :1], np.ones(N), ValueError, r"target.*\(6, 1\)"),
    "bce_output_range": (fn.BCELoss(), OUT, np.ones((N, 3)), ValueError, r"output.*\[0, 1\]"),
    "bce_target_range": (fn.BCELoss(), PROB_OUT, np.full((N, 3), 2.0), ValueError, r"target.*\[0, 1\]"),
    "bce_target_negative": (fn.BCELoss(), PROB_OUT, -np.ones((N, 3)), ValueError, r"target"),
    "bce_output_nan": (fn.BCELoss(), _nan_at(PROB_OUT), np.ones((N, 3)), ValueError, r"output"),
    "bcel_n_vs_n1": (fn.BCEWithLogitsLoss(), OUT[:, :1], np.ones(N), ValueError, r"target.*\(6, 1\)"),
    "bcel_target_range": (fn.BCEWithLogitsLoss(), OUT, np.full((N, 3), 1.5), ValueError, r"target"),
    "bcel_target_nan": (fn.BCEWithLogitsLoss(), OUT, _nan_at(np.ones((N, 3))), ValueError, r"target"),
    "bcel_empty": (fn.BCEWithLogitsLoss(), np.zeros((0, 1)), np.zeros((0, 1)), ValueError, r"output"),
    "ce_label_too_big": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 3, 0, 1, 2]), ValueError,
                         r"target.*\[0, 3\).*3"),
    "ce_label_minus_one": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, -1, 0, 1, 2]), ValueError,
                           r"target.*\[0, 3\).*-1"),
    "ce_label_huge": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 2**62, 0, 1, 2]), ValueError,
                      r"target"),
    "ce_uint_too_big": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 9, 0, 1, 2], np.uint8),
                        ValueError, r"target.*got 9"),
    "ce_uint64_wraps": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 2**64 - 1, 0, 1, 2], np.uint64),
                        ValueError, r"target.*got 18446744073709551615"),
    "ce_list_labels": (fn.CrossEntropyLoss(), OUT, [0, 1, 5, 0, 1, 2], ValueError, r"target.*got 5"),
    "ce_float_labels": (fn.CrossEntropyLoss(), OUT, np.array([0.0, 1, 2, 0, 1, 2]), ERR,
                        r"target.*integer"),
    "ce_float_labels_n1": (fn.CrossEntropyLoss(), OUT, np.array([[0.0], [1], [2], [0], [1], [2]]),
                           ERR, r"target"),
    "ce_labels_n1": (fn.CrossEntropyLoss(), OUT, np.array([[0], [1], [2], [0], [1], [2]]),
                     ValueError, r"target.*\(6,\)"),
    "ce_labels_wrong_length": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 2]), ValueError,
                               r"target.*\(6,\)"),
    "ce_bool_labels": (fn.CrossEntropyLoss(), OUT, np.ones(N, bool), ERR, r"target"),
    "ce_str_labels": (fn.CrossEntropyLoss(), OUT, np.array(list("abcabc")), TypeError, r"target"),
    "ce_object_labels": (fn.CrossEntropyLoss(), OUT, np.array([0, 1, 2, 0, 1, None]), TypeError,
                         r"target"),
    "ce_complex_target": (fn.CrossEntropyLoss(), OUT, np.eye(3)[[0, 1, 2, 0, 1, 2]].astype(complex),
                          TypeError, r"target"),
    "ce_probs_not_normalized": (fn.CrossEntropyLoss(), OUT, np.full((N, 3), 0.5), ValueError,
                                r"target.*sum"),
    "ce_probs_negative": (fn.CrossEntropyLoss(), OUT, np.tile([1.5, -0.5, 0.0], (N, 1)), ValueError,
                          r"target.*negative"),
    "ce_probs_nan": (fn.CrossEntropyLoss(), OUT, _nan_at(np.full((N, 3), 1 / 3)), ValueError,
                     r"target"),
    "ce_probs_shape": (fn.CrossEntropyLoss(), OUT, np.full((N, 4), 0.25), ValueError,
                       r"target.*\(6, 3\)"),
    "ce_output_1d": (fn.CrossEntropyLoss(), OUT[:, 0], np.zeros(N, int), ValueError, r"output"),
    "ce_output_nan": (fn.CrossEntropyLoss(), _nan_at(OUT), np.zeros(N, int), ValueError, r"output"),
    "ce_empty": (fn.CrossEntropyLoss(), np.zeros((0, 3)), np.zeros(0, int), ValueError, r"output"),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_rejects(case):
    loss_fn, out, target, exc, pattern = LOSS_CASES[case]
    with pytest.raises(exc, match=pattern):
        loss_fn(out, target)


def test_rejected_loss_keeps_previous_gradient():
    loss_fn = fn.MSELoss()
    loss_fn(OUT, OUT * 0)
    g = loss_fn.backward().copy()
    with pytest.raises(ValueError):
        loss_fn(OUT, OUT[:, 0])
    np.testing.assert_array_equal(loss_fn.backward(), g)


def test_loss_backward_before_call():
    with pytest.raises(RuntimeError):
        fn.MSELoss().backward()


# ====================================================== hyperparameter checks
def _params():
    return make_model().parameters()


HYPER = {
    "sgd_negative_lr": (lambda: fn.SGD(_params(), lr=-0.1), "lr"),
    "sgd_nan_lr": (lambda: fn.SGD(_params(), lr=float("nan")), "lr"),
    "sgd_negative_momentum": (lambda: fn.SGD(_params(), lr=0.1, momentum=-0.5), "momentum"),
    "sgd_negative_wd": (lambda: fn.SGD(_params(), lr=0.1, weight_decay=-1e-3), "weight_decay"),
    "sgd_nesterov_no_momentum": (lambda: fn.SGD(_params(), lr=0.1, nesterov=True), "[Nn]esterov"),
    "sgd_nesterov_dampening": (lambda: fn.SGD(_params(), lr=0.1, momentum=0.9, dampening=0.1,
                                              nesterov=True), "[Nn]esterov"),
    "adam_negative_lr": (lambda: fn.Adam(_params(), lr=-1e-3), "lr"),
    "adam_beta1_one": (lambda: fn.Adam(_params(), betas=(1.0, 0.999)), "beta"),
    "adam_beta1_negative": (lambda: fn.Adam(_params(), betas=(-0.1, 0.999)), "beta"),
    "adam_beta2_one": (lambda: fn.Adam(_params(), betas=(0.9, 1.0)), "beta"),
    "adam_beta2_big": (lambda: fn.Adam(_params(), betas=(0.9, 1.5)), "beta"),
    "adam_betas_not_pair": (lambda: fn.Adam(_params(), betas=(0.9,)), "beta"),
    "adam_negative_eps": (lambda: fn.Adam(_params(), eps=-1e-8), "eps"),
    "adam_negative_wd": (lambda: fn.Adam(_params(), weight_decay=-0.1), "weight_decay"),
    "adamw_negative_lr": (lambda: fn.AdamW(_params(), lr=-1.0), "lr"),
    "adamw_beta_one": (lambda: fn.AdamW(_params(), betas=(0.9, 1.0)), "beta"),
    "adamw_negative_eps": (lambda: fn.AdamW(_params(), eps=-1.0), "eps"),
    "rmsprop_negative_lr": (lambda: fn.RMSprop(_params(), lr=-0.01), "lr"),
    "rmsprop_negative_eps": (lambda: fn.RMSprop(_params(), eps=-1e-8), "eps"),
    "rmsprop_negative_alpha": (lambda: fn.RMSprop(_params(), alpha=-0.5), "alpha"),
    "rmsprop_negative_momentum": (lambda: fn.RMSprop(_params(), momentum=-0.5), "momentum"),
    "rmsprop_negative_wd": (lambda: fn.RMSprop(_params(), weight_decay=-0.5), "weight_decay"),
    "optimizer_no_params": (lambda: fn.Adam([]), "empty|param"),
    "optimizer_duplicate_params": (lambda: fn.SGD(_params() * 2, lr=0.1), "more than one|param"),
    "dropout_negative": (lambda: fn.Dropout(-0.1), r"p.*\[0, 1\]"),
    "dropout_above_one": (lambda: fn.Dropout(1.1), r"p.*\[0, 1\]"),
    "dropout_nan": (lambda: fn.Dropout(float("nan")), "p"),
    "sequential_float16": (lambda: fn.Sequential(fn.Linear(2, 2), dtype="float16"), "dtype"),
    "sequential_int32": (lambda: fn.Sequential(fn.Linear(2, 2), dtype="int32"), "dtype"),
    "sequential_complex": (lambda: fn.Sequential(fn.Linear(2, 2), dtype="complex128"), "dtype"),
    "sequential_nonsense_dtype": (lambda: fn.Sequential(fn.Linear(2, 2), dtype="banana"), "dtype"),
    "sequential_np_float16": (lambda: fn.Sequential(fn.Linear(2, 2), dtype=np.float16), "dtype"),
    "sequential_not_module": (lambda: fn.Sequential(fn.Linear(2, 2), lambda x: x), "argument 1"),
    "sequential_empty": (lambda: fn.Sequential(), "at least one"),
    "linear_zero_in": (lambda: fn.Linear(0, 3), "in_features"),
    "linear_float_out": (lambda: fn.Linear(3, 2.5), "out_features"),
    "linear_dtype": (lambda: fn.Linear(3, 2, dtype="int64"), "dtype"),
    "layernorm_eps": (lambda: fn.LayerNorm(4, eps=-1.0), "eps"),
    "layernorm_shape": (lambda: fn.LayerNorm(0), "normalized_shape"),
    "embedding_zero": (lambda: fn.Embedding(0, 3), "num_embeddings"),
    "gelu_approximate": (lambda: fn.GELU(approximate="fast"), "approximate"),
    "label_smoothing_negative": (lambda: fn.CrossEntropyLoss(label_smoothing=-0.1), "label_smoothing"),
    "label_smoothing_above_one": (lambda: fn.CrossEntropyLoss(label_smoothing=1.5), "label_smoothing"),
    "clip_negative": (lambda: fn.clip_grad_norm(_params(), -1.0), "max_norm"),
    "seed_negative": (lambda: fn.seed(-1), "seed"),
    "seed_float": (lambda: fn.seed(1.5), "seed"),
    "threads_zero": (lambda: fn.set_num_threads(0), "n"),
}


@pytest.mark.parametrize("case", list(HYPER))
def test_hyperparameter_validation(case):
    make, pattern = HYPER[case]
    with pytest.raises(ERR, match=pattern):
        make()


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.float64,
                                   np.dtype("float32")])
def test_sequential_accepts_float_dtypes(dtype):
    model = fn.Sequential(fn.Linear(2, 2), dtype=dtype)
    assert model.dtype == np.dtype(dtype)
    assert all(p.dtype == np.dtype(dtype) for p in model.parameters())


def test_boundary_hyperparameters_are_valid():
    fn.SGD(_params(), lr=0.0)
    fn.Adam(_params(), betas=(0.0, 0.0), eps=0.0)
    fn.Dropout(0.0)
    fn.Dropout(1.0)
    fn.RMSprop(_params(), alpha=0.0, eps=0.0)
    fn.CrossEntropyLoss(label_smoothing=1.0)


def test_invalid_lr_written_into_param_groups_is_rejected_at_step():
    model = make_model()
    ps = model.parameters()
    opt = fn.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.5}], lr=0.1, momentum=0.9)
    for p in ps:
        p.grad[...] = 1.0
    opt.step()
    before = snapshot(model, opt)
    opt.param_groups[1]["lr"] = -1.0  # the second group: the first must not move either
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    opt.param_groups[1]["lr"] = 0.5
    assert_unchanged(before, model, opt)


# ============================================== rejected calls change nothing
def _trained(opt_name="adam", dtype="float32"):
    model = make_model(dtype)
    opts = {
        "adam": lambda p: fn.Adam(p, lr=1e-2),
        "sgd": lambda p: fn.SGD(p, lr=0.1, momentum=0.9),
        "rmsprop": lambda p: fn.RMSprop(p, momentum=0.5, centered=True),
    }
    opt = opts[opt_name](model.parameters())
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
    rng = np.random.default_rng(2)
    for _ in range(3):
        trainer.step(rng.standard_normal((8, 4)), rng.integers(0, 3, 8))
    return model, opt, trainer


BAD_STEPS = {
    "label_too_big": (np.zeros((4, 4)), np.array([0, 1, 3, 2]), ValueError, "target"),
    "label_minus_one": (np.zeros((4, 4)), np.array([0, -1, 1, 2]), ValueError, "target"),
    "float_labels": (np.zeros((4, 4)), np.array([0.0, 1.0, 1.0, 2.0]), ERR, "target"),
    "labels_n1": (np.zeros((4, 4)), np.array([[0], [1], [1], [2]]), ValueError, "target"),
    "bad_probs": (np.zeros((4, 4)), np.full((4, 3), 0.5), ValueError, "target"),
    "nan_x": (np.full((4, 4), np.nan), np.array([0, 1, 1, 2]), ValueError, "x"),
    "wrong_features": (np.zeros((4, 5)), np.array([0, 1, 1, 2]), ValueError, "x"),
    "length_mismatch": (np.zeros((4, 4)), np.array([0, 1, 1]), ValueError, "y|target"),
    "empty_batch": (np.zeros((0, 4)), np.zeros(0, int), ValueError, "x"),
    "str_labels": (np.zeros((4, 4)), np.array(list("abca")), TypeError, "target"),
}


@pytest.mark.parametrize("opt_name", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("case", list(BAD_STEPS))
def test_rejected_trainer_step_changes_nothing(case, opt_name):
    model, opt, trainer = _trained(opt_name)
    x, y, exc, pattern = BAD_STEPS[case]
    before = snapshot(model, opt)
    with pytest.raises(exc, match=pattern):
        trainer.step(x, y)
    assert_unchanged(before, model, opt)
    # and training continues normally afterwards, from the same state
    trainer.step(np.ones((4, 4)), np.array([0, 1, 2, 0]))


def test_rejected_trainer_step_with_fresh_optimizer_creates_no_state():
    model = make_model()
    opt = fn.Adam(model.parameters())
    trainer = fn.Trainer(model, fn.CrossEntropyLoss(), opt)
    before = snapshot(model, opt)
    with pytest.raises(ValueError):
        trainer.step(np.zeros((2, 4)), np.array([0, 7]))
    assert_unchanged(before, model, opt)
    assert opt.state_dict()["state"] == {}


def test_rejected_trainer_step_does_not_advance_scheduler():
    model, opt, trainer = _trained("sgd")
    sched = fn.StepLR(opt, step_size=1, gamma=0.5)
    trainer.scheduler = sched
    lr = opt.param_groups[0]["lr"]
    with pytest.raises(ValueError):
        trainer.step(np.zeros((2, 4)), np.array([0, -1]))
    assert opt.param_groups[0]["lr"] == lr


# ------------------------------------------------------------ load_state_dict
def test_model_load_state_dict_wrong_shape_changes_nothing():
    model = make_model()
    before = snapshot(model)
    sd = {k: v + 1 for k, v in model.state_dict().items()}
    sd["2.weight"] = np.zeros((3, 7), np.float32)  # last layer wrong: earlier keys must not land
    with pytest.raises(ValueError, match=r"2\.weight.*\(3, 7\).*\(3, 8\)"):
        model.load_state_dict(sd)
    assert_unchanged(before, model)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "nan", "complex", "str", "not_dict",
                                     "transposed"])
def test_model_load_state_dict_rejects(problem):
    model = make_model()
    before = snapshot(model)
    sd = {k: v + 1 for k, v in model.state_dict().items()}
    pattern = "."
    if problem == "missing":
        del sd["2.bias"]
        pattern = r"2\.bias"
    elif problem == "unexpected":
        sd["4.weight"] = np.zeros((2, 2))
        pattern = r"4\.weight"
    elif problem == "nan":
        sd["2.bias"] = np.array([0.0, np.nan, 0.0])
        pattern = r"2\.bias.*(NaN|inf)"
    elif problem == "complex":
        sd["2.bias"] = np.zeros(3, complex)
        pattern = r"2\.bias"
    elif problem == "str":
        sd["2.bias"] = np.array(["a", "b", "c"])
        pattern = r"2\.bias"
    elif problem == "not_dict":
        sd = list(sd.items())
        pattern = "dict"
    elif problem == "transposed":
        sd["0.weight"] = sd["0.weight"].T.copy()
        pattern = r"0\.weight"
    with pytest.raises(ERR, match=pattern):
        model.load_state_dict(sd)
    assert_unchanged(before, model)


def test_model_load_state_dict_non_strict_missing_key():
    model = make_model()
    sd = model.state_dict()
    new = {"0.bias": sd["0.bias"] + 1}
    model.load_state_dict(new, strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.bias"], sd["0.bias"] + 1)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], sd["0.weight"])


def test_state_dict_is_a_copy():
    model = make_model()
    sd = model.state_dict()
    sd["0.weight"][...] = 123.0
    assert not (model.state_dict()["0.weight"] == 123.0).any()
    new = {k: v * 0 + 1 for k, v in sd.items()}
    model.load_state_dict(new)
    new["0.weight"][...] = 7.0  # loading copies in: later edits to the dict do not leak
    assert (model.state_dict()["0.weight"] == 1).all()


# --------------------------------------------------- optimizer load_state_dict
@pytest.mark.parametrize("opt_name", ["adam", "sgd", "rmsprop"])
def test_optimizer_load_mismatched_group_size_changes_nothing(opt_name):
    model, opt, _ = _trained(opt_name)
    saved = opt.state_dict()
    # an optimizer over fewer parameters (two groups sized differently)
    other_model, other_opt, _ = _trained(opt_name)
    ps = other_model.parameters()
    cls = type(other_opt)
    small = cls([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.01)
    before = snapshot(other_model, small)
    with pytest.raises(ValueError, match="param group"):
        small.load_state_dict(saved)
    assert_unchanged(before, other_model, small)
    # same number of groups but a different number of params in the group
    fewer = cls(ps[:3], lr=0.01)
    before = snapshot(other_model, fewer)
    with pytest.raises(ValueError, match=r"param group 0.*4.*3|params"):
        fewer.load_state_dict(saved)
    assert_unchanged(before, other_model, fewer)


@pytest.mark.parametrize("problem", ["state_shape", "bad_lr", "bad_betas", "unknown_state",
                                     "state_nan", "not_a_dict", "mixed_steps"])
def test_optimizer_load_bad_state_changes_nothing(problem):
    model, opt, _ = _trained("adam")
    saved = opt.state_dict()
    target_model, target, trainer = _trained("adam")
    trainer.step(np.ones((8, 4)), np.zeros(8, int))  # different state from `saved`
    before = snapshot(target_model, target)
    bad = {"state": {i: dict(e) for i, e in saved["state"].items()},
           "param_groups": [dict(g) for g in saved["param_groups"]]}
    last = max(bad["state"])
    if problem == "state_shape":
        bad["state"][last]["exp_avg"] = np.zeros(7)
    elif problem == "bad_lr":
        bad["param_groups"][0]["lr"] = -1.0
    elif problem == "bad_betas":
        bad["param_groups"][0]["betas"] = (0.9, 1.0)
    elif problem == "unknown_state":
        bad["state"][last]["momentum_buffer"] = bad["state"][last]["exp_avg"]
    elif problem == "state_nan":
        bad["state"][last]["exp_avg_sq"] = np.full_like(bad["state"][last]["exp_avg_sq"], np.nan)
    elif problem == "not_a_dict":
        bad = [1, 2, 3]
    elif problem == "mixed_steps":
        bad["state"][last]["step"] = 99.0
    with pytest.raises(ValueError):
        target.load_state_dict(bad)
    assert_unchanged(before, target_model, target)


def test_optimizer_state_dict_is_a_copy():
    model, opt, trainer = _trained("adam")
    saved = opt.state_dict()
    copy = {i: {k: np.array(v, copy=True) for k, v in e.items()} for i, e in saved["state"].items()}
    saved["param_groups"][0]["lr"] = 99.0
    trainer.step(np.ones((4, 4)), np.zeros(4, int))
    assert opt.param_groups[0]["lr"] != 99.0
    for i, e in saved["state"].items():
        for k, v in e.items():
            np.testing.assert_array_equal(v, copy[i][k])
