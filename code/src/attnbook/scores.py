"""Alignment scores: how well each query matches each key, as a (..., T_q, T_k) array.

Each function is written once and runs on ndarrays and on Tensors alike.
"""

from __future__ import annotations

import math

import numpy as np

from . import ops
from ._checks import as_input, broadcast_batch, check_finite, check_ndim, check_same_width

__all__ = ["dot_score", "scaled_dot_score", "general_score", "additive_score", "cosine_score"]


def _queries_keys(q, k, same_width=True):
    q, k = as_input(q, "q"), as_input(k, "k")
    check_ndim(q, "q", 2, "(..., T_q, d_q)")
    check_ndim(k, "k", 2, "(..., T_k, d_k)")
    check_finite(q, "q")
    check_finite(k, "k")
    if same_width:
        check_same_width(q, k)
    broadcast_batch([q.shape, k.shape], ["q", "k"])
    return q, k


def _matrix(W, name, rows, cols_name, ndim=2):
    W = as_input(W, name)
    check_finite(W, name)
    if W.ndim != ndim or W.shape[0] != rows:
        want = f"({rows}, {cols_name})" if ndim == 2 else f"({rows},)"
        raise ValueError(f"{name} must have shape {want}, got {W.shape}.")
    return W


def dot_score(q, k):
    """Dot-product score ``q @ k`` of every query with every key.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
    k : ndarray or Tensor of shape (..., T_k, d_k)

    Returns
    -------
    ndarray or Tensor of shape (..., T_q, T_k)

    Raises
    ------
    ValueError
        If the widths differ, the batch dimensions do not broadcast, an input has fewer
        than 2 dimensions, or holds NaN/inf.

    Examples
    --------
    >>> dot_score(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
    array([[2., 0.]])

    See Also
    --------
    scaled_dot_score : divides by sqrt(d_k).
    Chapter 2, *Alignment scores*, compares it with the others.
    """
    q, k = _queries_keys(q, k)
    return q @ k.swapaxes(-1, -2)  # (..., T_q, T_k)


def scaled_dot_score(q, k):
    """Scaled dot-product score ``q @ k / sqrt(d_k)``.

    The scale keeps the scores' variance near 1 whatever the width, so the softmax does
    not saturate for wide vectors.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
    k : ndarray or Tensor of shape (..., T_k, d_k)

    Returns
    -------
    ndarray or Tensor of shape (..., T_q, T_k)

    Raises
    ------
    ValueError
        As :func:`dot_score`.

    Examples
    --------
    >>> scaled_dot_score(np.ones((1, 4)), np.ones((2, 4)))
    array([[2., 2.]])

    See Also
    --------
    dot_score : the unscaled version.
    Chapter 2, *Alignment scores*, compares it with the other scores.
    """
    q, k = _queries_keys(q, k)
    # Scaling q (T_q x d_k) is cheaper than scaling the scores (T_q x T_k).
    return (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)  # (..., T_q, T_k)


def general_score(q, k, W):
    """Luong's "general" score ``q W k^T``: a learned bilinear form.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_q)
    k : ndarray or Tensor of shape (..., T_k, d_k)
    W : ndarray or Tensor of shape (d_q, d_k)

    Returns
    -------
    ndarray or Tensor of shape (..., T_q, T_k)

    Raises
    ------
    ValueError
        If ``W`` is not (d_q, d_k), the batch dimensions do not broadcast, or an input
        holds NaN/inf.

    Examples
    --------
    >>> general_score(np.ones((1, 2)), np.ones((3, 3)), np.ones((2, 3)))
    array([[6., 6., 6.]])

    See Also
    --------
    dot_score : the special case W = I.
    Chapter 2, *Alignment scores*, introduces it.
    """
    q, k = _queries_keys(q, k, same_width=False)
    W = as_input(W, "W")
    check_finite(W, "W")
    if W.shape != (q.shape[-1], k.shape[-1]):
        raise ValueError(
            f"W must have shape (d_q, d_k) = ({q.shape[-1]}, {k.shape[-1]}) to compare q of "
            f"shape {q.shape} with k of shape {k.shape}, got {W.shape}."
        )
    return (q @ W) @ k.swapaxes(-1, -2)  # (..., T_q, T_k)


def additive_score(q, k, W_q, W_k, w_v):
    """Bahdanau's additive score ``w_v @ tanh(q W_q + k W_k)``: a one-hidden-layer MLP.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_q)
    k : ndarray or Tensor of shape (..., T_k, d_k)
    W_q : ndarray or Tensor of shape (d_q, d_a)
    W_k : ndarray or Tensor of shape (d_k, d_a)
    w_v : ndarray or Tensor of shape (d_a,)

    Returns
    -------
    ndarray or Tensor of shape (..., T_q, T_k)

    Raises
    ------
    ValueError
        If a weight has the wrong shape, the batch dimensions do not broadcast, or an
        input holds NaN/inf.

    Examples
    --------
    >>> q, k = np.zeros((2, 3)), np.ones((4, 5))
    >>> additive_score(q, k, np.ones((3, 6)), np.ones((5, 6)), np.ones(6)).shape
    (2, 4)

    See Also
    --------
    general_score : the multiplicative alternative.
    Chapter 4, *Learning to align and translate*, trains it.
    """
    q, k = _queries_keys(q, k, same_width=False)
    W_q = _matrix(W_q, "W_q", q.shape[-1], "d_a")
    d_a = W_q.shape[1]
    W_k = _matrix(W_k, "W_k", k.shape[-1], "d_a")
    w_v = _matrix(w_v, "w_v", d_a, None, ndim=1)
    if W_k.shape[1] != d_a:
        raise ValueError(
            f"W_q has shape {W_q.shape} and W_k has shape {W_k.shape}: both must map to the "
            "same attention width d_a (their second dimensions must match)."
        )
    qa = q @ W_q  # (..., T_q, d_a)
    ka = k @ W_k  # (..., T_k, d_a)
    qa = qa.reshape(*qa.shape[:-1], 1, d_a)  # (..., T_q, 1, d_a)
    ka = ka.reshape(*ka.shape[:-2], 1, *ka.shape[-2:])  # (..., 1, T_k, d_a)
    return ops.tanh(qa + ka) @ w_v  # (..., T_q, T_k)


def cosine_score(q, k):
    """Cosine similarity ``q @ k / (|q| |k|)``: the dot product without the lengths.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
    k : ndarray or Tensor of shape (..., T_k, d_k)

    Returns
    -------
    ndarray or Tensor of shape (..., T_q, T_k)
        Values in [-1, 1].

    Raises
    ------
    ValueError
        As :func:`dot_score`, and if a query or key is the zero vector (no direction).

    Examples
    --------
    >>> cosine_score(np.array([[3.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 1.0]])).round(4)
    array([[1.    , 0.7071]])

    See Also
    --------
    dot_score : keeps the lengths.
    Chapter 2, *Alignment scores*, compares the two.
    """
    q, k = _queries_keys(q, k)
    for x, name in ((q, "q"), (k, "k")):
        zero = ~np.any(np.asarray(x) != 0, axis=-1)
        if zero.any():
            index = tuple(int(i) for i in np.argwhere(zero)[0])
            raise ValueError(
                f"{name} has a zero vector at index {index} (of shape {x.shape[:-1]}); cosine "
                "similarity needs a direction: drop that vector or use dot_score."
            )
    q_unit = q / ops.sqrt((q * q).sum(axis=-1, keepdims=True))  # (..., T_q, d_k)
    k_unit = k / ops.sqrt((k * k).sum(axis=-1, keepdims=True))  # (..., T_k, d_k)
    return q_unit @ k_unit.swapaxes(-1, -2)  # (..., T_q, T_k)
