"""Softmax and log-softmax: turning scores into weights that are positive and sum to 1."""

from __future__ import annotations

import numpy as np

from . import ops
from ._checks import as_input, values

__all__ = ["softmax", "log_softmax"]


def _check_logits(x, axis):
    data = values(x)
    if data.ndim == 0:
        raise ValueError("x must have at least one axis to normalise over, got a 0-d array.")
    if np.isfinite(data).all():
        return
    if np.isnan(data).any() or np.isposinf(data).any():
        index = tuple(int(i) for i in np.argwhere(np.isnan(data) | np.isposinf(data))[0])
        raise ValueError(
            f"x (shape {data.shape}) contains {data[index]} at index {index}; softmax needs "
            "finite scores (-inf is allowed and means weight 0). Check the computation "
            "that produced the scores for overflow."
        )
    # Only -inf remains: allowed as a mask, but not for every entry of a slice.
    alive = (data > -np.inf).any(axis=axis)
    if not np.all(alive):
        index = tuple(int(i) for i in np.argwhere(~np.atleast_1d(alive))[0])
        raise ValueError(
            f"x (shape {data.shape}) is -inf everywhere along axis {axis} at index {index} of "
            "the other axes, so the softmax there is undefined; leave at least one finite "
            "score in every slice (every query must keep one key)."
        )


def softmax(x, axis=-1):
    """Exponentiate and normalise along ``axis``: ``exp(x) / sum(exp(x))``.

    Numerically stable for any finite input (the maximum along ``axis`` is subtracted
    first). Entries equal to ``-inf`` get weight exactly 0, which is how masks act.

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., T_k)
        Scores; for attention, softmax runs over the last (key) axis.
    axis : int, default -1
        The axis that sums to 1.

    Returns
    -------
    ndarray or Tensor of the same shape
        Weights in [0, 1] that sum to 1 along ``axis``; same float dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` holds NaN or ``+inf``, or a slice along ``axis`` is entirely ``-inf``.

    Examples
    --------
    >>> softmax(np.array([1.0, 2.0, 3.0])).round(3)
    array([0.09 , 0.245, 0.665])
    >>> softmax(np.array([1000.0, 1000.0, -np.inf]))
    array([0.5, 0.5, 0. ])

    See Also
    --------
    log_softmax : its logarithm, computed stably.
    Chapter 3, *Context vectors*, turns scores into weights with it.
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, derives its gradient
    ``y * (g - sum(g * y))``.
    """
    x = as_input(x, "x")
    _check_logits(x, axis)
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    """Logarithm of the softmax along ``axis``, computed without overflow or log(0).

    ``log_softmax(x) = x - max(x) - log(sum(exp(x - max(x))))``; on Tensors its backward
    pass is fused (``dx = g - softmax(x) * sum(g)``), which the cross-entropy loss uses.

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., n)
        Scores (logits).
    axis : int, default -1
        The axis to normalise over.

    Returns
    -------
    ndarray or Tensor of the same shape
        Log-probabilities (``-inf`` where ``x`` is ``-inf``); same float dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` holds NaN or ``+inf``, or a slice along ``axis`` is entirely ``-inf``.

    Examples
    --------
    >>> log_softmax(np.array([0.0, 0.0])).round(4)
    array([-0.6931, -0.6931])
    >>> float(log_softmax(np.array([-1000.0, 0.0]))[0])
    -1000.0

    See Also
    --------
    softmax : the probabilities themselves.
    """
    x = as_input(x, "x")
    _check_logits(x, axis)
    return ops.log_softmax(x, axis=axis)
