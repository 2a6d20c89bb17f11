"""The estimators' shared implementation: parameters, validation, the model,
the training loop in scikit-learn's procedure, prediction."""
import contextlib
import numbers
import warnings

try:
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastnn.sklearn needs scikit-learn, which is an optional dependency: "
        'pip install "fastnn[sklearn]"  (or: pip install "scikit-learn>=1.3")') from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.3 - 1.5
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

import numpy as np

from .. import _random
from .._threading import get_num_threads, set_num_threads
from ..nn.activations import ReLU, Sigmoid, Tanh
from ..nn.layers import Dropout, Linear
from ..nn.sequential import Sequential
from ..optim.optimizers import SGD, Adam
from ..train.trainer import Trainer

_ACTIVATIONS = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
# The model, trainer and optimizer are caches rebuilt from plain arrays: they
# are never pickled, deep-copied or compared.
_LIVE = ("_model", "_trainer", "_optimizer")


@contextlib.contextmanager
def _num_threads(n):
    """fastnn's thread count set to n for the block (None: leave it), restored after."""
    if n is None:
        yield
        return
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


@contextlib.contextmanager
def _fastnn_rng(random_state):
    """fastnn's global generator (dropout masks) seeded from random_state for the
    block, restored after, so fit is reproducible without touching fn.seed."""
    old = _random._rng
    _random._rng = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    try:
        yield
    finally:
        _random._rng = old


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v


from ._docs import _shared_doc


class _BaseMLP(BaseEstimator):
    """Shared implementation; use MLPClassifier or MLPRegressor."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 dropout=0.0, n_threads=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.n_threads = n_threads
        self.dtype = dtype

    # --- parameter checks (at fit time, as scikit-learn does) -----------------
    def _check_params(self):
        def bad(name, expected):
            return ValueError(f"The '{name}' parameter of {type(self).__name__} must be "
                              f"{expected}. Got {getattr(self, name)!r} instead.")

        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(_is_int(h) and h > 0 for h in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}.")
        if self.activation not in _ACTIVATIONS:
            raise bad("activation", "a str among {'identity', 'logistic', 'tanh', 'relu'}")
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not available in fastnn.sklearn: fastnn trains "
                             "with mini-batch stochastic solvers only; use solver='adam' or "
                             "solver='sgd' (or sklearn.neural_network for L-BFGS).")
        if self.solver not in ("adam", "sgd"):
            raise bad("solver", "a str among {'adam', 'sgd'}")
        if not (_is_real(self.alpha) and self.alpha >= 0):
            raise bad("alpha", "a float in the range [0, inf)")
        if not (self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise bad("batch_size", "'auto' or an int in the range [1, inf)")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise bad("learning_rate", "a str among {'constant', 'invscaling', 'adaptive'}")
        if not (_is_real(self.learning_rate_init) and self.learning_rate_init > 0):
            raise bad("learning_rate_init", "a float in the range (0, inf)")
        if not (_is_real(self.power_t) and self.power_t >= 0):
            raise bad("power_t", "a float in the range [0, inf)")
        if not (_is_int(self.max_iter) and self.max_iter >= 1):
            raise bad("max_iter", "an int in the range [1, inf)")
        if not (_is_real(self.tol) and self.tol >= 0):
            raise bad("tol", "a float in the range [0, inf)")
        if not (_is_real(self.momentum) and 0 <= self.momentum <= 1):
            raise bad("momentum", "a float in the range [0, 1]")
        if not (_is_real(self.validation_fraction) and 0 <= self.validation_fraction < 1):
            raise bad("validation_fraction", "a float in the range [0, 1)")
        for name in ("beta_1", "beta_2"):
            if not (_is_real(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                raise bad(name, "a float in the range [0, 1)")
        if not (_is_real(self.epsilon) and self.epsilon > 0):
            raise bad("epsilon", "a float in the range (0, inf)")
        n = self.n_iter_no_change
        if not ((_is_int(n) and n >= 1) or n == np.inf):
            raise bad("n_iter_no_change", "an int in the range [1, inf) or inf")
        if not (_is_real(self.dropout) and 0 <= self.dropout < 1):
            raise bad("dropout", "a float in the range [0, 1)")
        if not (self.n_threads is None or (_is_int(self.n_threads) and self.n_threads >= 1)):
            raise bad("n_threads", "None or an int in the range [1, inf)")
        try:
            ok = np.dtype(self.dtype) in (np.float32, np.float64)
        except TypeError:
            ok = False
        if not ok:
            raise bad("dtype", "'float32' or 'float64'")
        return sizes

    # --- the fastnn model (a cache of coefs_/intercepts_) ----------------------
    def _build_model(self):
        sizes = [self.n_features_in_] + [c.shape[1] for c in self.coefs_]
        act = _ACTIVATIONS[self.activation]
        layers = []
        # Linear's own initialization is overwritten below: draw it from a private
        # generator so building a model leaves fn.seed's stream alone
        with _fastnn_rng(np.random.RandomState(0)):
            for i in range(len(sizes) - 1):
                layers.append(Linear(sizes[i], sizes[i + 1]))
                if i < len(sizes) - 2:
                    if act is not None:
                        layers.append(act())
                    if self.dropout > 0:
                        layers.append(Dropout(self.dropout))
        model = Sequential(*layers, dtype=self.dtype)
        named = model.named_parameters()
        self._weights = [p for name, p in named if name.endswith("weight")]
        self._biases = [p for name, p in named if name.endswith("bias")]
        for p, c in zip(self._weights, self.coefs_):
            p.data[...] = c.T
        for p, b in zip(self._biases, self.intercepts_):
            p.data[...] = b
        model.eval()
        return model

    def _get_model(self):
        model = self.__dict__.get("_model")
        if model is None:
            model = self._model = self._build_model()
        return model

    def _sync_coefs(self):
        """coefs_/intercepts_ (scikit-learn's layout) from the model's weights."""
        self.coefs_ = [np.array(p.data.T) for p in self._weights]
        self.intercepts_ = [p.data.copy() for p in self._biases]

    def _init_coefs(self, layer_units, dtype):
        """Glorot-uniform initialization drawn exactly as scikit-learn draws it."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                               .astype(dtype))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out)
                                    .astype(dtype))

    def _make_optimizer(self, model):
        """The fastnn optimizer taking scikit-learn's steps (see the module docstring)."""
        c = self._grad_scale
        if self.alpha > 0:
            params = [{"params": self._weights, "weight_decay": 0.0},
                      {"params": self._biases, "weight_decay": 0.0}]
        else:
            params = model.parameters()
        if self.solver == "adam":
            return Adam(params, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                        eps=c * self.epsilon)
        return SGD(params, lr=self.learning_rate_init / c, momentum=self.momentum,
                   nesterov=bool(self.nesterovs_momentum and self.momentum > 0))

    def _set_lr(self, lr):
        """Set the learning rate (scikit-learn's units). For SGD with momentum the
        buffers are rescaled by old/new lr: scikit-learn keeps a velocity
        v = momentum * v - lr * g, torch's rule a buffer b = momentum * b + g with
        step lr * b, and the two agree across an lr change only if b = -v / lr."""
        opt = self._optimizer
        new = lr if self.solver == "adam" else lr / self._grad_scale
        old = opt.param_groups[0]["lr"]
        if self.solver == "sgd" and self.momentum > 0 and new != old:
            state = opt.state_dict()
            if any("momentum_buffer" in entry for entry in state["state"].values()):
                for entry in state["state"].values():
                    if "momentum_buffer" in entry:
                        entry["momentum_buffer"] *= old / new
                for group in state["param_groups"]:
                    group["lr"] = new
                opt.load_state_dict(state)
        for group in opt.param_groups:
            group["lr"] = new

    def _get_trainer(self):
        trainer = self.__dict__.get("_trainer")
        if trainer is None:
            model = self._get_model()
            self._optimizer = self._make_optimizer(model)
            state = self.__dict__.get("_optimizer_state")
            if state is not None:
                self._optimizer.load_state_dict(state)
            trainer = self._trainer = Trainer(model, self._loss_fn(), self._optimizer)
        return trainer

    # --- pickling (and deepcopy): plain arrays only ------------------------------
    def __getstate__(self):
        """The estimator's state without the fastnn model, trainer and optimizer:
        the weights travel as coefs_/intercepts_ and the optimizer's state as its
        state_dict; the model is rebuilt from them on first use."""
        state = super().__getstate__()
        state = {k: v for k, v in state.items() if k not in _LIVE + ("_weights", "_biases")}
        opt = self.__dict__.get("_optimizer")
        if opt is not None:
            state["_optimizer_state"] = opt.state_dict()
        return state

    # --- training ----------------------------------------------------------------
    def _fit(self, X, y, incremental):
        sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = np.dtype(self.dtype)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, dtype)
        elif self.coefs_[-1].shape[1] != self.n_outputs_ or \
                [c.shape[1] for c in self.coefs_[:-1]] != sizes:
            raise ValueError("warm_start/partial_fit: the network's shape changed since the "
                             f"last fit (hidden sizes {[c.shape[1] for c in self.coefs_[:-1]]}, "
                             f"{self.coefs_[-1].shape[1]} outputs); refit from scratch")
        self._grad_scale, self._loss_scale = self._scales()
        with _num_threads(self.n_threads):
            self._fit_stochastic(np.ascontiguousarray(X, dtype=dtype), self._targets(y),
                                 incremental)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _initialize(self, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._init_coefs(layer_units, dtype)
        for name in _LIVE + ("_optimizer_state",):
            self.__dict__.pop(name, None)
        self._model = self._build_model()
        self._best_state = None
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit_stochastic(self, X, y, incremental):
        model = self._get_model()
        if not incremental or self.__dict__.get("_trainer") is None:
            # a fresh optimizer for every fit (scikit-learn's rule); partial_fit keeps it
            if not incremental:
                for name in ("_trainer", "_optimizer", "_optimizer_state"):
                    self.__dict__.pop(name, None)
            self._get_trainer()
            if not incremental:
                self._lr = self.learning_rate_init
        if not hasattr(self, "_lr"):
            self._lr = self.learning_rate_init
        trainer = self._trainer
        rng = self._random_state
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # scikit-learn stratifies only single-output (binary) classification
            stratify = y if (self._is_classifier and self.n_outputs_ == 1) else None
            X, X_val, y, y_val = train_test_split(X, y, random_state=rng,
                                                  test_size=self.validation_fraction,
                                                  stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._validation_targets(y_val)
        else:
            X_val = y_val = None
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        self._set_lr(self._lr)
        penalize = self.alpha > 0
        wgroup = self._optimizer.param_groups[0]
        xb_full = np.empty((batch_size, X.shape[1]), X.dtype)
        yb_full = np.empty((batch_size,) + y.shape[1:], y.dtype)
        rng_ctx = _fastnn_rng(rng) if self.dropout > 0 else contextlib.nullcontext()
        try:
            with rng_ctx:
                self.n_iter_ = 0
                order = np.arange(n) if self.shuffle else None
                for _ in range(self.max_iter):
                    if self.shuffle:  # scikit-learn shuffles the previous order
                        order = order[rng.permutation(n)]
                    accumulated = 0.0
                    model.train()
                    for start in range(0, n, batch_size):
                        stop = min(start + batch_size, n)
                        b = stop - start
                        xb, yb = xb_full[:b], yb_full[:b]
                        if order is None:
                            xb[...] = X[start:stop]
                            yb[...] = y[start:stop]
                        else:
                            idx = order[start:stop]
                            np.take(X, idx, axis=0, out=xb)
                            np.take(y, idx, axis=0, out=yb)
                        l2 = 0.0
                        if penalize:
                            l2 = sum(float(np.dot(w, w)) for w in
                                     (p.data.reshape(-1) for p in self._weights))
                            wgroup["weight_decay"] = self._grad_scale * self.alpha / b
                        value = trainer.step(xb, yb) * self._loss_scale
                        accumulated += value * b + 0.5 * self.alpha * l2
                    model.eval()
                    self.n_iter_ += 1
                    self.loss_ = accumulated / n
                    self.t_ += n
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                    self._update_no_improvement_count(early_stopping, X_val, y_val)
                    if self.solver == "sgd" and self.learning_rate == "invscaling":
                        self._lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
                        self._set_lr(self._lr)
                    if self._no_improvement_count > self.n_iter_no_change:
                        if early_stopping:
                            msg = ("Validation score did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                        else:
                            msg = ("Training loss did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                        if self._trigger_stopping(msg):
                            break
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                      "the optimization hasn't converged yet." % self.max_iter,
                                      ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            model.eval()
        if early_stopping and self._best_state is not None:
            model.load_state_dict(self._best_state)
        self._sync_coefs()

    def _trigger_stopping(self, msg):
        if self.solver == "sgd" and self.learning_rate == "adaptive":
            if self._lr > 1e-6:
                self._lr /= 5.0
                self._set_lr(self._lr)
                if self.verbose:
                    print(msg + " Setting learning rate to %f" % self._lr)
                return False
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        if self.verbose:
            print(msg + " Stopping.")
        return True

    def _update_no_improvement_count(self, early_stopping, X_val, y_val):
        if early_stopping:
            score = self._score_model(X_val, y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self._model.state_dict()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # --- prediction ----------------------------------------------------------------
    def _forward(self, X, check_input=True):
        """The network's raw outputs (logits for classifiers), float64."""
        check_is_fitted(self)
        if check_input:
            X = _validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        model = self._get_model()
        X = np.ascontiguousarray(X, dtype=model.dtype)
        with _num_threads(self.n_threads):
            out = model.predict(X)
        return out.astype(np.float64)

    @_shared_doc
    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data (dense; a pandas DataFrame records ``feature_names_in_``).

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).

        {fitted}
        """
        return self._fit(X, y, incremental=False)

    @_shared_doc
    def predict(self, X):
        """Predict using the multi-layer perceptron.

        {X}

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values (MLPRegressor) or classes (MLPClassifier; an
            indicator matrix for multilabel targets).
        """
        return self._predict_output(self._forward(X))
