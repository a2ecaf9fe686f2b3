"""Scaled dot-product attention and multi-head attention, for ndarrays and Tensors alike."""

from __future__ import annotations

import math

import numpy as np

from . import ops
from ._checks import (
    as_input,
    broadcast_batch,
    check_broadcasts_to,
    check_finite,
    check_keys_values,
    check_mask,
    check_ndim,
    check_positive_int,
    check_same_width,
)

__all__ = ["scaled_dot_product_attention", "multi_head_attention", "split_heads", "merge_heads"]

_BIAS_HINT = "give it shape (T_q, T_k) or (n_heads, T_q, T_k), e.g. alibi_bias(...)."


def _attend(q, k, v, mask=None, bias=None):
    """softmax(q k^T / sqrt(d_k) + bias, masked) v, on inputs already validated."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)  # (..., T_q, T_k)
    # ``scores`` is a fresh array, so on the ndarray path it can be updated in place.
    if bias is not None:
        scores = ops.add_into(scores, bias)
    if mask is not None:
        scores = ops.masked_fill(scores, mask, inplace=True)
    weights = ops.softmax(scores, axis=-1, inplace=True)  # (..., T_q, T_k)
    return weights @ v, weights  # (..., T_q, d_v)


def _inputs(tensors, names):
    out = []
    for x, name in zip(tensors, names):
        x = as_input(x, name)
        check_ndim(x, name, 2, f"(..., T, d) for {name}")
        check_finite(x, name)
        out.append(x)
    return out


def _bias(bias, scores_shape):
    bias = as_input(bias, "bias")
    check_finite(bias, "bias")
    check_broadcasts_to(bias, scores_shape, "bias", _BIAS_HINT)
    return bias


def scaled_dot_product_attention(q, k, v, mask=None, bias=None):
    """Attend: ``softmax(q k^T / sqrt(d_k) + bias) v``, with masked keys removed.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
        Queries.
    k : ndarray or Tensor of shape (..., T_k, d_k)
        Keys.
    v : ndarray or Tensor of shape (..., T_k, d_v)
        Values, one per key.
    mask : ndarray of bool, broadcastable to (..., T_q, T_k), optional
        True = the query may attend to the key. Masked keys get weight exactly 0. Every
        query must keep at least one key.
    bias : ndarray or Tensor, broadcastable to (..., T_q, T_k), optional
        Added to the scaled scores before the softmax (ALiBi and relative-position biases).

    Returns
    -------
    out : ndarray or Tensor of shape (..., T_q, d_v)
        Each query's weighted average of the values.
    weights : ndarray or Tensor of shape (..., T_q, T_k)
        The attention weights; each row sums to 1.

    Raises
    ------
    ValueError
        If the query and key widths differ, keys and values differ in number, the batch
        dimensions do not broadcast, an input holds NaN/inf, the mask is not boolean or
        does not broadcast to the scores, a query row has every key masked, or the bias
        does not broadcast to the scores.

    Examples
    --------
    >>> q = np.array([[1.0, 0.0]])
    >>> k = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> v = np.array([[10.0], [20.0]])
    >>> out, weights = scaled_dot_product_attention(q, k, v)
    >>> weights.round(3), out.round(2)
    (array([[0.67, 0.33]]), array([[13.3]]))
    >>> out, weights = scaled_dot_product_attention(q, k, v, mask=np.array([False, True]))
    >>> weights
    array([[0., 1.]])

    See Also
    --------
    multi_head_attention : several of these in parallel on projections.
    flash_attention : the same output, computed block by block.
    Chapter 5, *Queries, keys, values*, derives this.
    """
    q, k, v = _inputs((q, k, v), ("q", "k", "v"))
    check_same_width(q, k)
    check_keys_values(k, v)
    batch = broadcast_batch([q.shape, k.shape, v.shape], ["q", "k", "v"])
    scores_shape = batch + (q.shape[-2], k.shape[-2])
    if mask is not None:
        mask = check_mask(mask, scores_shape)
    if bias is not None:
        bias = _bias(bias, scores_shape)
    return _attend(q, k, v, mask=mask, bias=bias)


def split_heads(x, n_heads):
    """Split the feature axis into heads: (..., T, d) -> (..., n_heads, T, d // n_heads).

    Head ``h`` gets columns ``h * d_head : (h + 1) * d_head``.

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., T, d)
    n_heads : int
        Must divide ``d``.

    Returns
    -------
    ndarray or Tensor of shape (..., n_heads, T, d_head)

    Raises
    ------
    ValueError
        If ``n_heads < 1``, ``d`` is not divisible by ``n_heads``, or ``x`` has fewer
        than 2 dimensions.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(2, 4)  # T = 2 tokens, d = 4
    >>> split_heads(x, 2)[1]  # head 1 holds columns 2:4
    array([[2., 3.],
           [6., 7.]])

    See Also
    --------
    merge_heads : the inverse.
    Chapter 6, *Multi-head attention*, teaches both.
    """
    n_heads = check_positive_int(n_heads, "n_heads")
    x = as_input(x, "x")
    check_ndim(x, "x", 2, "(..., T, d)")
    *lead, T, d = x.shape
    if d % n_heads:
        raise ValueError(
            f"the width d={d} (x of shape {x.shape}) is not divisible by n_heads={n_heads}; "
            "choose n_heads dividing d or a width that is a multiple of n_heads."
        )
    x = x.reshape(*lead, T, n_heads, d // n_heads)  # (..., T, H, d_head)
    return x.swapaxes(-2, -3)  # (..., H, T, d_head)


def merge_heads(x):
    """Concatenate the heads back along the features: (..., H, T, d_head) -> (..., T, H * d_head).

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., n_heads, T, d_head)

    Returns
    -------
    ndarray or Tensor of shape (..., T, n_heads * d_head)

    Raises
    ------
    ValueError
        If ``x`` has fewer than 3 dimensions.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(2, 4)
    >>> bool((merge_heads(split_heads(x, 2)) == x).all())
    True

    See Also
    --------
    split_heads : the inverse.
    Chapter 6, *Multi-head attention*, teaches both.
    """
    x = as_input(x, "x")
    check_ndim(x, "x", 3, "(..., n_heads, T, d_head)")
    *lead, H, T, d_head = x.shape
    x = x.swapaxes(-2, -3)  # (..., T, H, d_head)
    return x.reshape(*lead, T, H * d_head)  # (..., T, d)


def _weight(W, name, d_in, in_name):
    W = as_input(W, name)
    check_finite(W, name)
    if W.ndim != 2 or W.shape[0] != d_in:
        raise ValueError(
            f"{name} must have shape ({d_in}, d_out) to project {in_name} of width {d_in} "
            f"(weights are (d_in, d_out), used as x @ W), got {W.shape}."
        )
    return W


def _bias_vector(b, name, d_out):
    if b is None:
        return None
    b = as_input(b, name)
    check_finite(b, name)
    if b.shape != (d_out,):
        raise ValueError(f"{name} must have shape ({d_out},) to match its weight, got {b.shape}.")
    return b


def _project(x, W, b):
    y = x @ W  # (..., T, d_out)
    return y if b is None else y + b


def _mask_for_heads(mask, single, scores_shape):
    """Validate a mask; give a one-head mask a head axis so that it applies to every head."""
    if 3 <= np.ndim(mask) <= len(single):
        return check_mask(mask, single)[..., None, :, :]  # (..., 1, T_q, T_k)
    return check_mask(mask, scores_shape)


def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, n_heads, *,
                         b_q=None, b_k=None, b_v=None, b_o=None, mask=None, bias=None):
    """Multi-head attention: project, split into heads, attend in each, merge, project.

    ``Q = query W_q + b_q`` (likewise K, V) is split into ``n_heads`` heads of width
    ``d_head = d_model / n_heads`` (head h = columns ``h*d_head:(h+1)*d_head``); each head
    runs scaled dot-product attention; the heads are concatenated and mapped by ``W_o``.

    Parameters
    ----------
    query : ndarray or Tensor of shape (..., T_q, d_q)
    key : ndarray or Tensor of shape (..., T_k, d_kv)
    value : ndarray or Tensor of shape (..., T_k, d_vin)
    W_q : ndarray or Tensor of shape (d_q, d_model)
    W_k : ndarray or Tensor of shape (d_kv, d_model)
    W_v : ndarray or Tensor of shape (d_vin, d_v)
    W_o : ndarray or Tensor of shape (d_v, d_out)
        In a Transformer every width is d_model.
    n_heads : int
        Must divide d_model and d_v.
    b_q, b_k, b_v, b_o : ndarray or Tensor of shape (d_model,), (d_model,), (d_v,), (d_out,), optional
        Biases of the projections.
    mask : ndarray of bool, optional
        True = may attend. Written for one head's scores (..., T_q, T_k) and applied to
        every head: a mask with 3 or more dimensions gets a head axis inserted before its
        last two, so (B, 1, T_k) from ``padding_mask`` and (B, T_q, T_k) both work; a 2-D
        (T_q, T_k) mask such as ``causal_mask`` applies to every batch element and head.
        For a different mask per head, pass all dimensions of the multi-head scores,
        (..., n_heads, T_q, T_k), i.e. ``query.ndim + 1`` dimensions.
    bias : ndarray or Tensor, broadcastable to (..., n_heads, T_q, T_k), optional
        Added to every head's scaled scores, aligned from the right: ``alibi_bias``'s
        (n_heads, T_q, T_k) gives each head its own slope.

    Returns
    -------
    out : ndarray or Tensor of shape (..., T_q, d_out)
    weights : ndarray or Tensor of shape (..., n_heads, T_q, T_k)
        Every head's attention weights.

    Raises
    ------
    ValueError
        If ``n_heads < 1``, d_model or d_v is not divisible by ``n_heads``, a weight or
        bias has the wrong shape, keys and values differ in number, an input holds NaN/inf,
        or the mask/bias is invalid (see :func:`scaled_dot_product_attention`).

    Examples
    --------
    >>> from attnbook import causal_mask
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 5, 8))  # (B, T, d_model)
    >>> W_q, W_k, W_v, W_o = (rng.standard_normal((8, 8)) for _ in range(4))
    >>> out, weights = multi_head_attention(x, x, x, W_q, W_k, W_v, W_o, n_heads=4,
    ...                                     mask=causal_mask(5))
    >>> out.shape, weights.shape
    ((2, 5, 8), (2, 4, 5, 5))

    See Also
    --------
    scaled_dot_product_attention : what each head computes.
    split_heads, merge_heads : the reshapes in between.
    Chapter 6, *Multi-head attention*, builds this step by step.
    """
    n_heads = check_positive_int(n_heads, "n_heads")
    query, key, value = _inputs((query, key, value), ("query", "key", "value"))
    check_keys_values(key, value, "key", "value")
    W_q = _weight(W_q, "W_q", query.shape[-1], "query")
    W_k = _weight(W_k, "W_k", key.shape[-1], "key")
    W_v = _weight(W_v, "W_v", value.shape[-1], "value")
    d_model, d_v = W_q.shape[1], W_v.shape[1]
    if W_k.shape[1] != d_model:
        raise ValueError(
            f"W_q maps to width {d_model} but W_k (shape {W_k.shape}) maps to {W_k.shape[1]}; "
            "queries and keys must be projected to the same width d_model."
        )
    for width, what in ((d_model, "d_model (W_q's output width)"), (d_v, "d_v (W_v's output width)")):
        if width % n_heads:
            raise ValueError(
                f"{what} = {width} is not divisible by n_heads = {n_heads}; choose n_heads "
                f"dividing {width} (each head gets an equal slice of the width)."
            )
    W_o = _weight(W_o, "W_o", d_v, "the merged heads")
    b_q = _bias_vector(b_q, "b_q", d_model)
    b_k = _bias_vector(b_k, "b_k", d_model)
    b_v = _bias_vector(b_v, "b_v", d_v)
    b_o = _bias_vector(b_o, "b_o", W_o.shape[1])

    batch = broadcast_batch([query.shape, key.shape, value.shape], ["query", "key", "value"])
    single = batch + (query.shape[-2], key.shape[-2])  # one head's scores
    scores_shape = batch + (n_heads,) + single[-2:]  # (..., H, T_q, T_k)
    if mask is not None:
        mask = _mask_for_heads(mask, single, scores_shape)
    if bias is not None:
        bias = _bias(bias, scores_shape)

    q = split_heads(_project(query, W_q, b_q), n_heads)  # (..., H, T_q, d_head)
    k = split_heads(_project(key, W_k, b_k), n_heads)  # (..., H, T_k, d_head)
    v = split_heads(_project(value, W_v, b_v), n_heads)  # (..., H, T_k, d_v / H)
    heads, weights = _attend(q, k, v, mask=mask, bias=bias)  # (..., H, T_q, d_v / H)
    out = _project(merge_heads(heads), W_o, b_o)  # (..., T_q, d_out)
    return out, weights
