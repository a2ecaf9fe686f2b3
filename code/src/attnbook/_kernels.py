"""The arithmetic of the fused operations, written once, on plain ndarrays.

Every fused operation of attnbook (sigmoid, tanh, softmax, log-softmax, layer norm) is a
forward kernel here and, next to it, the backward kernel the book derives. Both paths of
the package call these same functions: the ndarray path calls the forward kernel alone,
the Tensor path wraps it in a ``tensor.node`` whose backward calls the backward kernel.
So the two paths cannot drift apart, and a fused node built elsewhere (a GRU step,
attention's context in a recurrent decoder) reuses the same backward instead of re-deriving it.

Conventions: a backward kernel takes ``g`` (the gradient of the loss with respect to the
forward result) and what the forward pass returned, and returns the gradient with respect
to the input, written as the formula the book derives. Kernels never write into their
arguments (``g`` may be shared by several nodes); ``softmax(x, out=x)`` reuses an array
the caller owns. Nothing here validates its inputs or knows about Tensors: the public
functions validate, ``tensor.node`` records.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigmoid", "sigmoid_backward", "tanh_backward", "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward", "layer_norm", "layer_norm_backward",
]


def sigmoid(x):
    """``1 / (1 + e^-x)`` in its tanh form, which never overflows (``exp(-x)`` would)."""
    y = np.tanh(0.5 * x)
    y *= 0.5
    y += 0.5
    return y


def sigmoid_backward(g, y):
    """dx = g * y * (1 - y), with ``y = sigmoid(x)``."""
    return g * y * (1.0 - y)


def tanh_backward(g, y):
    """dx = g * (1 - y^2), with ``y = tanh(x)``."""
    return g * (1.0 - y * y)


def softmax(x, axis=-1, out=None):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``; ``-inf`` entries give exactly 0.

    Shifting by the maximum makes every exponent <= 0: no overflow. (The shift itself can
    overflow to -inf for scores ~1e308 apart; exp(-inf) = 0 is right then.) ``out=x``
    overwrites an ``x`` the caller owns.
    """
    with np.errstate(over="ignore"):
        y = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    np.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


def softmax_backward(g, y, axis=-1):
    """dx = y * (g - sum(g * y)), with ``y = softmax(x)`` (Chapter 5 derives it)."""
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """``x - max - log(sum(exp(x - max)))`` along ``axis``: no overflow, no log(0)."""
    with np.errstate(over="ignore"):
        y = x - x.max(axis=axis, keepdims=True)
    y -= np.log(np.exp(y).sum(axis=axis, keepdims=True))
    return y


def log_softmax_backward(g, y, axis=-1):
    """dx = g - softmax(x) * sum(g), with ``y = log_softmax(x)`` (so softmax = exp(y))."""
    return g - np.exp(y) * g.sum(axis=axis, keepdims=True)


def layer_norm(x, eps):
    """Normalise the last axis: ``xhat = (x - mean) / sqrt(var + eps)``, var biased.

    Returns ``xhat`` and ``rstd = 1 / sqrt(var + eps)`` of shape (..., 1), which the
    backward pass needs. The caller scales and shifts.
    """
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    xc *= rstd  # xhat, in the buffer of x - mean
    return xc, rstd


def layer_norm_backward(dxhat, xhat, rstd):
    """dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps) (Chapter 8)."""
    return rstd * (dxhat
                   - dxhat.mean(axis=-1, keepdims=True)
                   - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
