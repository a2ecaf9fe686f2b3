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
from .positions import apply_rope

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
        The attention weights; each row sums to 1. Their batch axes are those of ``q``,
        ``k``, ``mask`` and ``bias`` broadcast together (``v`` does not change them).

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
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, derives this.
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

    Head ``i`` gets columns ``i * d_head : (i + 1) * d_head`` (counting heads from 0).

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


def _kv_heads(n_heads, n_kv_heads):
    if n_kv_heads is None:
        return n_heads
    n_kv_heads = check_positive_int(n_kv_heads, "n_kv_heads")
    if n_heads % n_kv_heads:
        raise ValueError(
            f"n_kv_heads = {n_kv_heads} does not divide n_heads = {n_heads}; each key/value head "
            f"serves a group of n_heads / n_kv_heads query heads: choose a divisor of {n_heads} "
            "(1 for multi-query attention, n_heads for multi-head attention)."
        )
    return n_kv_heads


def _check_cache_heads(cache, n_kv_heads, d_head):
    H_kv, d = cache.k.shape[-3], cache.k.shape[-1]
    if (H_kv, d) != (n_kv_heads, d_head):
        raise ValueError(
            f"the static cache holds keys of {H_kv} heads of width {d}, but this attention has "
            f"n_kv_heads={n_kv_heads} of width d_head={d_head}; give every layer its own cache."
        )


def _grouped(x, n_kv_heads):
    """A mask or bias broadcastable to (..., H, T_q, T_k) -> broadcastable to (..., H_kv, G, T_q, T_k)."""
    if x is None or x.ndim < 3:
        return x  # (T_q, T_k): the same for every head
    *lead, H, T_q, T_k = x.shape
    if H == 1:
        return x.reshape(*lead, 1, 1, T_q, T_k)
    return x.reshape(*lead, n_kv_heads, H // n_kv_heads, T_q, T_k)


def _attend_grouped(q, k, v, mask, bias):
    """Attention of H query heads over H_kv key/value heads, each shared by G = H / H_kv heads.

    q (..., H, T_q, d_head), k (..., H_kv, T_k, d_head), v (..., H_kv, T_k, d_v_head).
    Query head h reads key/value head h // G. The G query heads of a group get an axis of
    their own and the keys and values a size-1 axis there, so the matrix products broadcast
    each key/value head over its group without copying it.
    """
    *lead_q, H, T_q, d_head = q.shape
    H_kv = k.shape[-3]
    q = q.reshape(*lead_q, H_kv, H // H_kv, T_q, d_head)  # (..., H_kv, G, T_q, d_head)
    k = k.reshape(*k.shape[:-2], 1, *k.shape[-2:])  # (..., H_kv, 1, T_k, d_head)
    v = v.reshape(*v.shape[:-2], 1, *v.shape[-2:])  # (..., H_kv, 1, T_k, d_v_head)
    heads, weights = _attend(q, k, v, mask=_grouped(mask, H_kv), bias=_grouped(bias, H_kv))
    heads = heads.reshape(*heads.shape[:-4], H, T_q, heads.shape[-1])  # (..., H, T_q, d_v_head)
    weights = weights.reshape(*weights.shape[:-4], H, T_q, weights.shape[-1])  # (..., H, T_q, T_k)
    return heads, weights


def multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, n_heads, *,
                         b_q=None, b_k=None, b_v=None, b_o=None, mask=None, bias=None,
                         n_kv_heads=None, positions=None, rope_base=10000.0, cache=None):
    """Multi-head attention: project, split into heads, attend in each, merge, project.

    ``Q = query W_q + b_q`` (likewise K, V) is split into heads of width
    ``d_head = d_model / n_heads`` (head i, counted from 0, = columns ``i*d_head:(i+1)*d_head``); each query
    head runs scaled dot-product attention; the heads are concatenated and mapped by ``W_o``.

    Grouped-query attention: with ``n_kv_heads`` key/value heads (dividing ``n_heads``),
    ``W_k`` and ``W_v`` map to ``n_kv_heads`` heads only, and query head ``i`` attends with
    key/value head ``i // (n_heads / n_kv_heads)``. ``n_kv_heads = 1`` is multi-query
    attention; ``n_kv_heads = n_heads`` (the default) is multi-head attention.

    RoPE: with ``positions``, the queries and the new keys of every head are rotated by
    :func:`attnbook.apply_rope` after the projection (self-attention: they are the same
    tokens). A key/value ``cache`` keeps the keys and values of earlier positions (see
    ``attnbook.kvcache.KVCache``): the new ones are appended and every query attends
    over all of them; a static cache is filled by its first call and then used as it is.

    Parameters
    ----------
    query : ndarray or Tensor of shape (..., T_q, d_q)
    key : ndarray or Tensor of shape (..., T_new, d_kv)
        The new keys' tokens (T_new = T_k without a cache). Not used, and may be None,
        once a static cache is filled.
    value : ndarray or Tensor of shape (..., T_new, d_vin)
        Like ``key``.
    W_q : ndarray or Tensor of shape (d_q, d_model)
    W_k : ndarray or Tensor of shape (d_kv, n_kv_heads * d_head)
    W_v : ndarray or Tensor of shape (d_vin, n_kv_heads * d_v_head)
    W_o : ndarray or Tensor of shape (n_heads * d_v_head, d_out)
        In a Transformer every width is d_model, and d_v_head = d_head.
    n_heads : int
        Number of query heads; must divide d_model.
    b_q, b_k, b_v, b_o : ndarray or Tensor, optional
        Biases of the projections, of W_q's, W_k's, W_v's and W_o's output width.
    mask : ndarray of bool, optional
        True = may attend. Written for one head's scores (..., T_q, T_k) and applied to
        every head: a mask with 3 or more dimensions gets a head axis inserted before its
        last two, so (B, 1, T_k) from ``padding_mask`` and (B, T_q, T_k) both work; a 2-D
        (T_q, T_k) mask such as ``causal_mask`` applies to every batch element and head.
        For a different mask per head, pass all dimensions of the multi-head scores,
        (..., n_heads, T_q, T_k), i.e. ``query.ndim + 1`` dimensions. With a cache, T_k
        counts the cached keys too.
    bias : ndarray or Tensor, broadcastable to (..., n_heads, T_q, T_k), optional
        Added to every head's scaled scores, aligned from the right: ``alibi_bias``'s
        (n_heads, T_q, T_k) gives each head its own slope.
    n_kv_heads : int, optional
        Number of key/value heads; must divide ``n_heads``. Default: ``n_heads``.
    positions : array_like of shape (T_q,), optional
        Positions of the queries and of the new keys; given, both are rotated by RoPE.
    rope_base : float, default 10000.0
        RoPE's base (used only with ``positions``).
    cache : KVCache, optional
        Keys and values of earlier positions, per key/value head; updated in place.

    Returns
    -------
    out : ndarray or Tensor of shape (..., T_q, d_out)
    weights : ndarray or Tensor of shape (..., n_heads, T_q, T_k)
        Every query head's attention weights.

    Raises
    ------
    ValueError
        If ``n_heads < 1``, ``n_kv_heads`` does not divide it, a width is not divisible by
        the number of heads, a weight or bias has the wrong shape, keys and values differ
        in number, an input holds NaN/inf, the mask/bias is invalid (see
        :func:`scaled_dot_product_attention`), RoPE gets a number of new keys different
        from the queries' or a static cache, or a cache does not fit.

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

    Grouped-query attention: 4 query heads of width 2 share 2 key/value heads, so
    ``W_k`` and ``W_v`` map to 2 * 2 = 4 columns:

    >>> W_k, W_v = rng.standard_normal((8, 4)), rng.standard_normal((8, 4))
    >>> out, weights = multi_head_attention(x, x, x, W_q, W_k, W_v, W_o, n_heads=4,
    ...                                     n_kv_heads=2, positions=np.arange(5))
    >>> out.shape, weights.shape
    ((2, 5, 8), (2, 4, 5, 5))

    See Also
    --------
    scaled_dot_product_attention : what each head computes.
    split_heads, merge_heads : the reshapes in between.
    Chapter 6, *Multi-head attention*, builds this step by step.
    Chapter 7, *Where am I? Positional information*, adds RoPE.
    Chapter 8, *The Transformer*, builds its blocks on it.
    Chapter 9, *The cost of attention*, shares key/value heads (``n_kv_heads``).
    """
    n_heads = check_positive_int(n_heads, "n_heads")
    n_kv_heads = _kv_heads(n_heads, n_kv_heads)
    reuse = cache is not None and cache.static and cache.k is not None  # a filled static cache
    (query,) = _inputs((query,), ("query",))
    W_q = _weight(W_q, "W_q", query.shape[-1], "query")
    d_model = W_q.shape[1]
    if d_model % n_heads:
        raise ValueError(
            f"d_model (W_q's output width) = {d_model} is not divisible by n_heads = {n_heads}; "
            f"choose n_heads dividing {d_model} (each head gets an equal slice of the width)."
        )
    d_head = d_model // n_heads
    if positions is not None and cache is not None and cache.static:
        raise ValueError(
            "RoPE rotates queries and keys of the same tokens (self-attention), but a static cache "
            "holds cross-attention keys; build cross-attention without RoPE (positions=None)."
        )
    if reuse:  # the keys and values were projected when the cache was filled
        _check_cache_heads(cache, n_kv_heads, d_head)
        d_v_head, T_k = cache.v.shape[-1], len(cache)
        shapes, names = [query.shape, cache.k.shape[:-3] + (T_k, d_head)], ["query", "cached keys"]
    else:
        key, value = _inputs((key, value), ("key", "value"))
        check_keys_values(key, value, "key", "value")
        W_k = _weight(W_k, "W_k", key.shape[-1], "key")
        W_v = _weight(W_v, "W_v", value.shape[-1], "value")
        if W_k.shape[1] != n_kv_heads * d_head:
            raise ValueError(
                f"W_k (shape {W_k.shape}) maps to width {W_k.shape[1]}, but the keys need "
                f"n_kv_heads * d_head = {n_kv_heads} * {d_head} = {n_kv_heads * d_head} columns "
                f"(d_head = W_q's width {d_model} / n_heads {n_heads}): queries and keys are "
                "compared head by head."
            )
        if W_v.shape[1] % n_kv_heads:
            raise ValueError(
                f"d_v (W_v's output width) = {W_v.shape[1]} is not divisible by n_kv_heads = "
                f"{n_kv_heads}; choose a width that gives each key/value head an equal slice."
            )
        d_v_head = W_v.shape[1] // n_kv_heads
        b_k = _bias_vector(b_k, "b_k", W_k.shape[1])
        b_v = _bias_vector(b_v, "b_v", W_v.shape[1])
        T_new = key.shape[-2]
        T_k = T_new + (len(cache) if cache is not None else 0)
        shapes, names = [query.shape, key.shape, value.shape], ["query", "key", "value"]
        if positions is not None and T_new != query.shape[-2]:
            raise ValueError(
                f"RoPE rotates queries and keys of the same tokens (self-attention), but got "
                f"{query.shape[-2]} queries and {T_new} new keys; build cross-attention without "
                "RoPE (positions=None)."
            )
    W_o = _weight(W_o, "W_o", n_heads * d_v_head, "the merged heads")
    b_q = _bias_vector(b_q, "b_q", d_model)
    b_o = _bias_vector(b_o, "b_o", W_o.shape[1])

    batch = broadcast_batch(shapes, names)
    single = batch + (query.shape[-2], T_k)  # one head's scores
    scores_shape = batch + (n_heads,) + single[-2:]  # (..., H, T_q, T_k)
    if mask is not None:
        mask = _mask_for_heads(mask, single, scores_shape)
    if bias is not None:
        bias = _bias(bias, scores_shape)

    q = split_heads(_project(query, W_q, b_q), n_heads)  # (..., H, T_q, d_head)
    if positions is not None:
        q = apply_rope(q, positions, rope_base)
    if reuse:
        k, v = cache.k, cache.v  # (..., H_kv, T_k, d_head), (..., H_kv, T_k, d_v_head)
    else:
        k = split_heads(_project(key, W_k, b_k), n_kv_heads)  # (..., H_kv, T_new, d_head)
        v = split_heads(_project(value, W_v, b_v), n_kv_heads)  # (..., H_kv, T_new, d_v_head)
        if positions is not None:
            k = apply_rope(k, positions, rope_base)
        if cache is not None:
            k, v = cache.append(k, v)  # (..., H_kv, T_k, ...): earlier positions first
    heads, weights = _attend_grouped(q, k, v, mask, bias)  # (..., H, T_q, d_v_head)
    out = _project(merge_heads(heads), W_o, b_o)  # (..., T_q, d_out)
    return out, weights
