"""Gradient-check helpers: central finite differences, the oracle of every float64
gradient check, and the accumulate=True check of parameter gradients."""
import numpy as np


def numeric_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing arr in place (restored)."""
    g = np.zeros(arr.shape, np.float64)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def assert_backward_accumulates(module, grad, rtol, atol):
    """module.backward(grad, accumulate=True) after backward(grad) doubles every
    parameter gradient; returns the gradients of one backward."""
    module.backward(grad)
    once = [p.grad.copy() for p in module.parameters()]
    module.backward(grad, accumulate=True)
    for p, a in zip(module.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * a, rtol=rtol, atol=atol)
    return once
