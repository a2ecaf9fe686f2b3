"""The few primitives whose ndarray and Tensor forms differ.

Everything else in attnbook is written once, with ``@``, ``*``, ``+``, ``.reshape``,
``.swapaxes``, ``.sum`` (spelled the same on both) and the functions here, each of which
checks ``isinstance(x, Tensor)``. If any input is a Tensor, the result is a Tensor.
Nothing here validates its inputs; the public functions do that.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as _k
from . import tensor as _t
from ._checks import values
from .tensor import Tensor

__all__ = [
    "is_tensor", "any_tensor", "swapaxes", "exp", "log", "tanh", "sqrt", "concatenate",
    "stack", "add_into", "masked_fill", "softmax", "log_softmax", "layer_norm",
]


def is_tensor(x):
    """True for an attnbook Tensor.

    See Also
    --------
    any_tensor : the same question for several arguments.
    """
    return isinstance(x, Tensor)


def any_tensor(*xs):
    """True if any argument is a Tensor (the result must then be a Tensor).

    See Also
    --------
    is_tensor : for one argument.
    """
    return any(isinstance(x, Tensor) for x in xs)


def swapaxes(x, axis1, axis2):
    """Swap two axes (a view on ndarrays).

    See Also
    --------
    attnbook.split_heads : moves the head axis with it.
    Chapter 6, *Multi-head attention*, uses it to split and merge heads.
    """
    return x.swapaxes(axis1, axis2)


def exp(x):
    """Elementwise exponential.

    See Also
    --------
    log : its inverse.
    """
    return x.exp() if isinstance(x, Tensor) else np.exp(x)


def log(x):
    """Elementwise natural logarithm.

    See Also
    --------
    exp : its inverse.
    """
    return x.log() if isinstance(x, Tensor) else np.log(x)


def tanh(x):
    """Elementwise hyperbolic tangent.

    See Also
    --------
    attnbook.additive_score : applies it to the projected sum.
    """
    return x.tanh() if isinstance(x, Tensor) else np.tanh(x)


def sqrt(x):
    """Elementwise square root.

    See Also
    --------
    attnbook.scaled_dot_score : divides by ``sqrt(d_k)``.
    """
    return x.sqrt() if isinstance(x, Tensor) else np.sqrt(x)


def concatenate(xs, axis=0):
    """Join along an existing axis.

    See Also
    --------
    attnbook.concatenate : the Tensor form it calls.
    """
    xs = list(xs)
    return _t.concatenate(xs, axis) if any_tensor(*xs) else np.concatenate(xs, axis=axis)


def stack(xs, axis=0):
    """Join along a new axis.

    See Also
    --------
    attnbook.stack : the Tensor form it calls.
    """
    xs = list(xs)
    return _t.stack(xs, axis) if any_tensor(*xs) else np.stack(xs, axis=axis)


def add_into(x, y):
    """``x + y`` in ``x``'s float dtype, with broadcasting.

    When both are ndarrays and the sum has ``x``'s shape, it is written into ``x`` (which
    must be a fresh array the caller owns); when ``y`` adds batch axes, into a new array.

    See Also
    --------
    attnbook.scaled_dot_product_attention : adds its bias with it.
    """
    if any_tensor(x, y):
        return x + y
    shape = np.broadcast_shapes(x.shape, np.shape(y))
    out = x if shape == x.shape else np.empty(shape, dtype=x.dtype)
    np.add(x, y, out=out, casting="same_kind")
    return out


def masked_fill(scores, mask, inplace=False):
    """Put ``-inf`` where ``mask`` is False, so the softmax gives those keys weight 0.

    ``inplace=True`` overwrites an ndarray ``scores`` (only for arrays the caller owns)
    when the mask does not add batch axes to it; otherwise the result is a new array of
    the broadcast shape.

    See Also
    --------
    attnbook.where : the Tensor form it calls.
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, on the numerics of masking.
    """
    if isinstance(scores, Tensor):
        return _t.where(mask, scores, -np.inf)
    if inplace and np.broadcast_shapes(scores.shape, np.shape(mask)) == scores.shape:
        np.copyto(scores, -np.inf, where=~mask)
        return scores
    return np.where(mask, scores, -np.inf).astype(scores.dtype, copy=False)


def softmax(x, axis=-1, inplace=False):
    """Stable softmax; ``inplace=True`` reuses an ndarray ``x`` the caller owns.

    See Also
    --------
    attnbook.softmax : the public function, which validates its input.
    """
    if isinstance(x, Tensor):
        return x.softmax(axis)
    return _k.softmax(x, axis, out=x if inplace else None)


def log_softmax(x, axis=-1):
    """Stable log-softmax: ``x - max - log(sum(exp(x - max)))``.

    See Also
    --------
    attnbook.log_softmax : the public function, which validates its input.
    """
    if isinstance(x, Tensor):
        return x.log_softmax(axis)
    return _k.log_softmax(x, axis)


def layer_norm(x, gamma=None, beta=None, eps=1e-5):
    """Normalise the last axis to mean 0 and variance 1, then scale and shift; one node on Tensors.

    See Also
    --------
    attnbook.layer_norm : the public function, which validates its input.
    Chapter 8, *The Transformer*, shows this code and checks its backward pass.
    """
    xhat, rstd = _k.layer_norm(values(x), eps)  # (..., d), (..., 1)
    tensors = any_tensor(x, gamma, beta)
    y = xhat.copy() if tensors else xhat  # backward reads xhat: the node's value gets its own
    if gamma is not None:
        y *= values(gamma)
    if beta is not None:
        y += values(beta)
    if not tensors:
        return y
    lead = tuple(range(y.ndim - 1))  # gamma and beta (d,) are shared by every token

    def backward(g):
        dxhat = g if gamma is None else g * values(gamma)
        dx = _k.layer_norm_backward(dxhat, xhat, rstd) if _t.requires_grad(x) else None
        dgamma = (g * xhat).sum(axis=lead) if _t.requires_grad(gamma) else None
        dbeta = g.sum(axis=lead) if _t.requires_grad(beta) else None
        return dx, dgamma, dbeta

    return _t.node(y, (x, gamma, beta), backward, "layer_norm")
