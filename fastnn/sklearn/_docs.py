"""numpydoc pieces the estimators share: filled into several methods' and both
classes' docstrings instead of written out in each."""


# numpydoc entries documented alike by several methods, filled in by _shared_doc
_DOC_ENTRIES = {
    "X": """Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.""",
    "fitted": """Returns
        -------
        self : object
            The trained estimator.""",
}


def _shared_doc(method):
    """Fill method's docstring's {X} (the Parameters section down to the input data X)
    and {fitted} (the Returns section of fit and partial_fit); kept as is under -OO."""
    if method.__doc__:
        method.__doc__ = method.__doc__.format(**_DOC_ENTRIES)
    return method


_PARAMS_DOC = """
    Parameters
    ----------
{loss}    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers: f(x) = x, 1 / (1 + exp(-x)), tanh(x)
        or max(0, x).

    solver : {'adam', 'sgd'}, default='adam'
        'adam' is fastnn's Adam (Kingma and Ba), 'sgd' its stochastic gradient
        descent with optional (Nesterov) momentum. scikit-learn's 'lbfgs' is not
        available and raises a ValueError.

    alpha : float, default=0.0001
        Strength of the L2 penalty ``alpha * ||W||^2 / (2 * batch_size)`` on the
        weight matrices (not the intercepts), exactly as in scikit-learn; it is
        applied as per-batch weight decay on the weights only.

    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``. Larger values are
        clipped to n_samples with a warning.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning-rate schedule, used with solver='sgd' only (as in scikit-learn):
        'invscaling' uses ``learning_rate_init / (t + 1) ** power_t`` after each
        epoch (t samples seen); 'adaptive' divides the rate by 5 instead of
        stopping when the loss stops improving, and stops below 1e-6.

    learning_rate_init : float, default=0.001
        The initial learning rate.

    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule (solver='sgd' only).

    max_iter : int, default=200
        Maximum number of epochs (passes over the training data). Reaching it
        without converging emits ``sklearn.exceptions.ConvergenceWarning``.

    shuffle : bool, default=True
        Whether to shuffle the samples in each epoch.

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization, the shuffling, the early-stopping split
        and the dropout masks. An int makes fit reproducible.

    tol : float, default=1e-4
        Training stops when the loss (or, with early_stopping, the validation
        score) has not improved by at least tol for n_iter_no_change
        consecutive epochs.

    verbose : bool, default=False
        Print the loss after each epoch.

    warm_start : bool, default=False
        Reuse the previous solution as initialization for the next fit (the
        optimizer state is reset on each fit, as in scikit-learn).

    momentum : float, default=0.9
        Momentum of the 'sgd' solver, in [0, 1].

    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (solver='sgd' with momentum > 0).

    early_stopping : bool, default=False
        Hold out validation_fraction of the training data (stratified for
        binary classification, as in scikit-learn) and stop when its score (accuracy or R^2) has not improved
        by tol for n_iter_no_change epochs; the best weights are restored.

    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.

    beta_1 : float, default=0.9
        Exponential decay rate of Adam's first-moment estimates, in [0, 1).

    beta_2 : float, default=0.999
        Exponential decay rate of Adam's second-moment estimates, in [0, 1).

    epsilon : float, default=1e-8
        Adam's numerical-stability constant.

    n_iter_no_change : int, default=10
        Number of epochs without a tol improvement before stopping.

    dropout : float, default=0.0
        fastnn addition: inverted-dropout probability after each hidden
        activation during training (0 disables it).

    n_threads : int or None, default=None
        fastnn addition: threads for fastnn's kernels during fit and predict
        (restored afterwards); None keeps ``fastnn.get_num_threads()``.

    dtype : {'float32', 'float64'}, default='float32'
        fastnn addition: floating-point type of the weights and of the
        computation.
"""

_ATTRS_DOC = """
    loss_ : float
        The loss at the end of the last epoch, in scikit-learn's units (mean
        log-loss or half mean squared error, plus the L2 term).

    best_loss_ : float or None
        The minimum of loss_curve_; None when early_stopping is on.

    loss_curve_ : list of float
        The loss after each epoch.

    validation_scores_ : list of float or None
        The validation score after each epoch (early_stopping only, else None).

    best_validation_score_ : float or None
        The best validation score (early_stopping only, else None).

    t_ : int
        Number of training samples seen by the solver.

    coefs_ : list of ndarray, length n_layers - 1
        coefs_[i] is the weight matrix from layer i to layer i + 1, shape
        (n_units_i, n_units_i+1): fastnn's Linear weight transposed (a copy).

    intercepts_ : list of ndarray, length n_layers - 1
        intercepts_[i] is the bias vector of layer i + 1.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit (only when X is a DataFrame with string
        column names).

    n_iter_ : int
        Number of epochs the solver ran in the last call to fit/partial_fit.

    n_layers_ : int
        Number of layers, counting input and output.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation.
"""
