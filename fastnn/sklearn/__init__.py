"""scikit-learn estimators trained by fastnn: ``MLPClassifier`` and ``MLPRegressor``.

They take :class:`sklearn.neural_network.MLPClassifier`/``MLPRegressor``'s
parameter names and defaults, follow its training procedure (Glorot-uniform
initialization, mini-batches of ``min(200, n_samples)``, per-epoch shuffling,
the ``tol``/``n_iter_no_change`` stopping rule, ``early_stopping`` on a held-out
validation score, ``ConvergenceWarning`` at ``max_iter``) and expose the same
fitted attributes (``coefs_[i]`` shaped ``(n_in, n_out)``, ``intercepts_``,
``loss_curve_``, ...), but every training step is one of fastnn's compiled
steps (``fn.Trainer.step``) and prediction is ``fn.Sequential.predict``.

scikit-learn is an optional dependency: ``import fastnn`` never imports it, and
importing this module without it raises an ImportError that says what to
install. Only dense input is accepted (fastnn has no sparse kernels); the
``'lbfgs'`` solver is not available.

How scikit-learn's objective maps onto fastnn's losses and optimizers
--------------------------------------------------------------------
scikit-learn minimizes, per mini-batch of ``B`` samples,

    data_loss + alpha * sum_i ||coefs_[i]||^2 / (2 * B)

where ``data_loss`` is the mean log-loss (classification) or *half* the mean
squared error (regression), and its data gradient is ``(output - y) / B``.
fastnn's loss gradients are a constant multiple ``c`` of that one: ``c = 1``
for ``CrossEntropyLoss`` (multiclass), ``c = 1/k`` for ``BCEWithLogitsLoss``
over ``k`` logistic outputs (binary: ``k = 1``), ``c = 2/k`` for ``MSELoss``
over ``k`` targets. The estimators therefore train with

* the L2 penalty as ``weight_decay = c * alpha / B`` on the weight matrices
  only (intercepts are not penalized, as in scikit-learn), updated per batch so
  a smaller last batch is penalized like scikit-learn penalizes it;
* ``solver='sgd'``: ``fn.SGD(lr=learning_rate / c, momentum,
  nesterov=nesterovs_momentum)``, which takes exactly scikit-learn's steps
  (torch's momentum form equals scikit-learn's velocity form at constant lr);
* ``solver='adam'``: ``fn.Adam(lr=learning_rate_init, betas=(beta_1, beta_2),
  eps=c * epsilon)``, which takes exactly the steps Adam takes on scikit-learn's
  gradient, except that fastnn (like PyTorch) adds ``epsilon`` after the bias
  correction of the second moment and scikit-learn before it (a difference of
  order ``epsilon`` = 1e-8 in the denominator).

``loss_`` and ``loss_curve_`` are reported in scikit-learn's units (half MSE,
including the L2 term). When ``alpha == 0`` the whole model is one optimizer
parameter group and each step is fastnn's single fused compiled call; with
``alpha > 0`` the weights and intercepts are two groups (different weight
decay), which fastnn steps through its (slower) unfused path.
"""
from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
