"""FlashAttention's algorithm in NumPy: exact attention without the T_q x T_k matrix."""

from __future__ import annotations

import math

import numpy as np

from . import ops
from ._checks import (
    as_input,
    broadcast_batch,
    check_finite,
    check_keys_values,
    check_mask,
    check_ndim,
    check_positive_int,
    check_same_width,
    values,
)

__all__ = ["flash_attention"]


def flash_attention(q, k, v, mask=None, block_size=64):
    """Scaled dot-product attention computed block by block with an online softmax.

    The queries are cut into blocks; each query block visits the key/value blocks in
    turn and keeps only a running row maximum ``m``, a running softmax denominator ``l``
    and an accumulator of weighted values, rescaling both when ``m`` grows. At most a
    ``block_size x block_size`` piece of the scores exists at any time; the result equals
    :func:`scaled_dot_product_attention`'s ``out`` up to rounding.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
    k : ndarray or Tensor of shape (..., T_k, d_k)
    v : ndarray or Tensor of shape (..., T_k, d_v)
    mask : ndarray of bool, broadcastable to (..., T_q, T_k), optional
        True = may attend; every query must keep at least one key. Key blocks that a
        query block cannot see at all (e.g. the future under a causal mask) are skipped.
    block_size : int, default 64
        Rows and columns per block (64 x 64 float64 scores is 32 KiB, cache-sized).

    Returns
    -------
    out : ndarray or Tensor of shape (..., T_q, d_v)
        Only the output: the weights are never formed, which is the point.

    Raises
    ------
    ValueError
        As :func:`scaled_dot_product_attention`, and if ``block_size`` is not a positive
        integer.

    Examples
    --------
    >>> from attnbook import causal_mask, scaled_dot_product_attention
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 100, 8))
    >>> out = flash_attention(q, k, v, mask=causal_mask(100), block_size=16)
    >>> reference, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(100))
    >>> bool(np.allclose(out, reference, rtol=1e-12, atol=1e-12))
    True

    See Also
    --------
    scaled_dot_product_attention : the same result, with the full weight matrix.
    Chapter 9, *The cost of attention*, walks through this loop line by line.
    """
    block_size = check_positive_int(block_size, "block_size")
    q, k, v = (as_input(x, name) for x, name in ((q, "q"), (k, "k"), (v, "v")))
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        check_ndim(x, name, 2, f"(..., T, d) for {name}")
        check_finite(x, name)
    check_same_width(q, k)
    check_keys_values(k, v)
    batch = broadcast_batch([q.shape, k.shape, v.shape], ["q", "k", "v"])
    (T_q, d_k), (T_k, d_v) = q.shape[-2:], v.shape[-2:]
    if mask is not None:
        mask = check_mask(mask, batch + (T_q, T_k))
        mask = mask.reshape((1,) * (2 - mask.ndim) + mask.shape)  # at least 2-D
        mask = np.broadcast_to(mask, mask.shape[:-2] + (T_q, T_k))  # a view
    dtype = np.result_type(*(values(x).dtype for x in (q, k, v)))

    scale = 1.0 / math.sqrt(d_k)
    key_blocks = [(s, k[..., s : s + block_size, :], v[..., s : s + block_size, :])
                  for s in range(0, T_k, block_size)]
    out_blocks = []
    for i in range(0, T_q, block_size):
        q_i = q[..., i : i + block_size, :] * scale  # (..., Bq, d_k): one block scaled
        Bq = q_i.shape[-2]
        m = np.full(batch + (Bq, 1), -np.inf, dtype=dtype)  # running row maximum
        l = np.zeros(batch + (Bq, 1), dtype=dtype)  # running sum of exp(s - m)
        acc = np.zeros(batch + (Bq, d_v), dtype=dtype)  # running sum of exp(s - m) v
        for j, k_j, v_j in key_blocks:
            s = q_i @ k_j.swapaxes(-1, -2)  # (..., Bq, Bk): the only scores held
            if mask is not None:
                keep = mask[..., i : i + Bq, j : j + k_j.shape[-2]]
                if not keep.any():
                    continue  # this query block sees none of these keys
                s = ops.masked_fill(s, keep, inplace=True)
            # m is only a shift that cancels in acc / l, so it needs no gradient.
            m_new = np.maximum(m, values(s).max(axis=-1, keepdims=True))
            m_safe = np.where(m_new == -np.inf, 0.0, m_new)  # a row that saw no key yet
            p = ops.exp(s - m_safe)  # (..., Bq, Bk), unnormalised weights
            alpha = np.exp(m - m_safe)  # rescales the sums made under the old maximum
            l = l * alpha + p.sum(axis=-1, keepdims=True)
            acc = acc * alpha + p @ v_j  # (..., Bq, d_v)
            m = m_new
        out_blocks.append(acc / l)
    return ops.concatenate(out_blocks, axis=-2)  # (..., T_q, d_v)
