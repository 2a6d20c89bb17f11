"""MLPClassifier and MLPRegressor: scikit-learn's interface over _BaseMLP."""
# _base first: without scikit-learn it raises the ImportError that names the extra
from ._base import _BaseMLP, _validate_data
from ._docs import _ATTRS_DOC, _PARAMS_DOC, _shared_doc

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier trained by fastnn.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier` (solvers 'adam'
    and 'sgd'): it minimizes the log-loss plus an L2 penalty with mini-batch
    stochastic optimization. Multiclass targets get a softmax output trained
    with ``fn.CrossEntropyLoss``; binary and multilabel targets get logistic
    outputs (one per label) trained with ``fn.BCEWithLogitsLoss``.
    """ + _PARAMS_DOC.replace("{loss}", "") + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
    """ + _ATTRS_DOC + """
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnn.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _is_classifier = True

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _scales(self):
        """(c, s): fastnn's gradient is c times scikit-learn's; its loss value times
        s is scikit-learn's."""
        if self._label_binarizer.y_type_ == "multiclass":
            return 1.0, 1.0
        k = self.n_outputs_
        return 1.0 / k, float(k)

    def _loss_fn(self):
        if self._label_binarizer.y_type_ == "multiclass":
            return CrossEntropyLoss()
        return BCEWithLogitsLoss()

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                              reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _targets(self, y):
        """Binarized y (n, k) -> what the fastnn loss takes: int64 labels for
        CrossEntropyLoss, floats of the model's dtype for BCEWithLogitsLoss."""
        if self._label_binarizer.y_type_ == "multiclass":
            return np.ascontiguousarray(y.argmax(axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=np.dtype(self.dtype))

    def _validation_targets(self, y):
        if y.dtype == np.int64 and y.ndim == 1:
            return self.classes_[y]
        return self._label_binarizer.inverse_transform(y)

    def _score_model(self, X, y):
        pred = self._predict_output(self._forward(X, check_input=False))
        return accuracy_score(y, pred)

    def _proba(self, out):
        if self.out_activation_ == "softmax":
            out = out - out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
            return out
        return 0.5 * (1.0 + np.tanh(0.5 * out))  # stable logistic

    def _predict_output(self, out):
        """Class labels from the network's outputs."""
        proba = self._proba(out)
        if self.n_outputs_ == 1:
            proba = proba.ravel()
        return self._label_binarizer.inverse_transform(proba)

    @_shared_doc
    def predict_proba(self, X):
        """Probability estimates.

        {X}

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The probability of each class, classes ordered as in ``classes_``
            (softmax of the outputs; for binary targets ``[1 - p, p]`` with p the
            logistic output; for multilabel targets each label's probability).
        """
        proba = self._proba(self._forward(X))
        if self.n_outputs_ == 1 and self.out_activation_ == "logistic":
            p = proba.ravel()
            return np.vstack([1 - p, p]).T
        return proba

    def predict_log_proba(self, X):
        """The logarithm of ``predict_proba(X)``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    @_shared_doc
    def partial_fit(self, X, y, classes=None):
        """Update the model with one epoch over the given data.

        {X}

        y : array-like of shape (n_samples,)
            The target values.

        classes : array of shape (n_classes,), default=None
            All the classes across calls to partial_fit (e.g. ``np.unique(y_all)``).
            Required on the first call, optional afterwards; y need not
            contain all of them.

        {fitted}
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on the last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor trained by fastnn.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor` (solvers 'adam'
    and 'sgd'): it minimizes half the mean squared error plus an L2 penalty with
    mini-batch stochastic optimization; the output layer is linear and several
    targets are fitted at once when y is 2-D. Training uses ``fn.MSELoss``.
    """ + _PARAMS_DOC.replace("{loss}", """    loss : {'squared_error'}, default='squared_error'
        The loss: half the mean squared error (scikit-learn's 'poisson' is
        not available and raises a ValueError).

""") + """
    Attributes
    ----------""" + _ATTRS_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1); y = X.ravel() ** 2
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=500,
    ...                    random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    """

    _is_classifier = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 dropout=0.0, n_threads=None, dtype="float32"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            dropout=dropout, n_threads=n_threads, dtype=dtype)
        self.loss = loss

    def _check_params(self):
        if self.loss != "squared_error":
            raise ValueError("The 'loss' parameter of MLPRegressor must be 'squared_error' "
                             f"(fastnn has no Poisson output). Got {self.loss!r} instead.")
        return super()._check_params()

    def _out_activation(self):
        return "identity"

    def _scales(self):
        return 2.0 / self.n_outputs_, 0.5

    def _loss_fn(self):
        return MSELoss()

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True,
                              dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _targets(self, y):
        return np.ascontiguousarray(y, dtype=np.dtype(self.dtype))

    def _validation_targets(self, y):
        return y

    def _score_model(self, X, y):
        pred = self._forward(X, check_input=False)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred)

    def _predict_output(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    @_shared_doc
    def partial_fit(self, X, y):
        """Update the model with one epoch over the given data.

        {X}

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        {fitted}
        """
        return self._fit(X, y, incremental=True)
