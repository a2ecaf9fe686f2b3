"""FlashAttention in NumPy: exact attention without the T_q x T_k matrix, forward and backward.

The forward pass (FlashAttention-2's loop order: query blocks outside, key blocks inside)
keeps a running row maximum, a running softmax denominator and an accumulator per query
row. It returns the output ``O`` and each query row's log-sum-exp ``L``; on Tensors these
two are all the autograd node stores. The backward pass recomputes each score tile from
``q``, ``k`` and ``L`` and never holds more than a few tiles either.
"""

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
from .tensor import node, requires_grad

__all__ = ["flash_attention"]


def flash_attention(q, k, v, mask=None, block_size=(128, 512)):
    """Scaled dot-product attention computed block by block, in memory linear in the length.

    The queries are cut into blocks of ``B_r`` rows and the keys into blocks of ``B_c``.
    Each query block visits the key blocks in turn, keeping a running row maximum ``m``,
    a running softmax denominator ``l`` and an accumulator of weighted values, rescaled
    whenever ``m`` grows (the online softmax). The result equals
    :func:`scaled_dot_product_attention`'s ``out`` up to rounding.

    What is stored: besides the output, the forward pass keeps one ``B_r x B_c`` score tile,
    reused for every block pair, and per-row statistics of one query block; it never forms the
    ``T_q x T_k`` scores. On Tensors the result is one autograd node that saves only the
    output ``O`` and each query row's log-sum-exp ``L`` (shape ``(..., T_q, 1)``); its
    backward pass recomputes the score tiles block by block (FlashAttention-2's backward),
    holding two tiles at a time plus the gradients of ``q``, ``k`` and ``v``. Training
    memory therefore grows linearly in the sequence length, as inference memory does.

    Parameters
    ----------
    q : ndarray or Tensor of shape (..., T_q, d_k)
    k : ndarray or Tensor of shape (..., T_k, d_k)
    v : ndarray or Tensor of shape (..., T_k, d_v)
        The batch dimensions (all but the last two) of ``q``, ``k``, ``v`` and ``mask``
        broadcast against each other, e.g. keys ``(B, H_kv, 1, T, d)`` shared by the
        queries ``(B, H_kv, G, T, d)`` of a group (grouped-query attention).
    mask : ndarray of bool, broadcastable to (..., T_q, T_k), optional
        True = may attend; every query must keep at least one key. Tiles that a query block
        cannot see at all (e.g. the future under a causal mask) are skipped, forward and
        backward.
    block_size : int or (int, int), default (128, 512)
        Rows ``B_r`` (queries) and columns ``B_c`` (keys) per tile; an int means a square
        tile. The default tile (512 KiB of float64 scores) amortises the Python loop over
        many flops while staying cache-sized.

    Returns
    -------
    out : ndarray or Tensor of shape (..., T_q, d_v)
        Only the output: the weights are never formed, which is the point. A Tensor if any
        of ``q``, ``k``, ``v`` is one.

    Raises
    ------
    ValueError
        As :func:`scaled_dot_product_attention`, and if ``block_size`` is not a positive
        integer or a pair of them.

    Examples
    --------
    >>> from attnbook import Tensor, causal_mask, scaled_dot_product_attention
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 100, 8))
    >>> out = flash_attention(q, k, v, mask=causal_mask(100), block_size=16)
    >>> reference, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(100))
    >>> bool(np.allclose(out, reference, rtol=1e-12, atol=1e-12))
    True

    On Tensors the gradients are those of the plain computation:

    >>> q_t = Tensor(q, requires_grad=True)
    >>> flash_attention(q_t, k, v, block_size=(16, 32)).sum().backward()
    >>> q_ref = Tensor(q, requires_grad=True)
    >>> scaled_dot_product_attention(q_ref, k, v)[0].sum().backward()
    >>> bool(np.allclose(q_t.grad, q_ref.grad, rtol=1e-10, atol=1e-12))
    True

    See Also
    --------
    scaled_dot_product_attention : the same result, with the full weight matrix.
    Chapter 9, *The cost of attention*, walks through this loop line by line and derives
    its backward pass.
    """
    B_r, B_c = _block_sizes(block_size)
    q, k, v = (as_input(x, name) for x, name in ((q, "q"), (k, "k"), (v, "v")))
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        check_ndim(x, name, 2, f"(..., T, d) for {name}")
        check_finite(x, name)
    check_same_width(q, k)
    check_keys_values(k, v)
    batch = broadcast_batch([q.shape, k.shape, v.shape], ["q", "k", "v"])
    T_q, T_k = q.shape[-2], k.shape[-2]
    if mask is not None:
        mask = check_mask(mask, batch + (T_q, T_k))
        mask = mask.reshape((1,) * (2 - mask.ndim) + mask.shape)  # (..., T_q or 1, T_k or 1)
    tiles = (B_r, B_c)
    out, lse = _forward(values(q), values(k), values(v), mask, tiles)
    if not ops.any_tensor(q, k, v):
        return out

    def backward(g):  # g = dLoss/dO, (..., T_q, d_v)
        return _backward(g, q, k, v, mask, out, lse, tiles)

    # One node: it keeps out and lse (and its inputs), never a tile.
    return node(out, (q, k, v), backward, "flash_attention")


def _block_sizes(block_size):
    """``block_size`` as a pair (B_r, B_c) of positive ints."""
    if isinstance(block_size, (tuple, list)):
        if len(block_size) != 2:
            raise ValueError(
                f"block_size must be a positive integer or a pair (B_r, B_c) of them, got "
                f"{block_size!r}."
            )
        return tuple(check_positive_int(b, "block_size") for b in block_size)
    b = check_positive_int(block_size, "block_size")
    return b, b


def _tile_mask(mask, rows, cols):
    """The mask's tile ``(..., rows, cols)`` (a view), or None if there is no mask."""
    if mask is None:
        return None
    rows = rows if mask.shape[-2] > 1 else slice(None)  # a mask shared by every query
    cols = cols if mask.shape[-1] > 1 else slice(None)
    return mask[..., rows, cols]


def _score_batch(q, k, mask):
    """The batch shape of the score tiles: that of q, k and the mask (not v's)."""
    shapes = [q.shape[:-2], k.shape[:-2]] + ([] if mask is None else [mask.shape[:-2]])
    return np.broadcast_shapes(*shapes)


def _forward(q, k, v, mask, tiles):
    """O = softmax(q k^T / sqrt(d_k), masked) v and L = each row's log-sum-exp, by tiles."""
    (B_r, B_c), scale = tiles, 1.0 / math.sqrt(q.shape[-1])
    (T_q, _), (T_k, d_v) = q.shape[-2:], v.shape[-2:]
    dtype = np.result_type(q, k, v)
    s_batch = _score_batch(q, k, mask)
    out = np.empty(np.broadcast_shapes(s_batch, v.shape[:-2]) + (T_q, d_v), dtype)
    lse = np.empty(s_batch + (T_q, 1), dtype)  # (..., T_q, 1)
    s_buffer = np.empty(s_batch + (min(B_r, T_q), min(B_c, T_k)), dtype)  # the one score tile
    for i in range(0, T_q, B_r):
        rows = slice(i, min(i + B_r, T_q))
        q_i = q[..., rows, :] * scale  # (..., B_r, d_k)
        n_r = q_i.shape[-2]
        m = np.full(s_batch + (n_r, 1), -np.inf, dtype)  # running row maximum
        l = np.zeros(s_batch + (n_r, 1), dtype)  # running sum of exp(s - m)
        acc = np.zeros(out.shape[:-2] + (n_r, d_v), dtype)  # running sum of exp(s - m) v
        for j in range(0, T_k, B_c):
            cols = slice(j, min(j + B_c, T_k))
            keep = _tile_mask(mask, rows, cols)
            if keep is not None and not keep.any():
                continue  # this query block sees none of these keys
            k_j = k[..., cols, :]
            s = np.matmul(q_i, k_j.swapaxes(-1, -2), out=s_buffer[..., :n_r, : k_j.shape[-2]])
            if keep is not None:
                np.copyto(s, -np.inf, where=~keep)
            m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
            m_safe = np.where(m_new == -np.inf, 0.0, m_new)  # a row that saw no key yet
            p = np.exp(np.subtract(s, m_safe, out=s), out=s)  # (..., B_r, B_c), unnormalised
            alpha = np.exp(m - m_safe)  # rescales the sums made under the old maximum
            l *= alpha
            l += p.sum(axis=-1, keepdims=True)
            acc *= alpha
            acc += p @ v[..., cols, :]  # (..., B_r, d_v)
            m = m_new
        np.divide(acc, l, out=out[..., rows, :])
        lse[..., rows, :] = m + np.log(l)
    return out, lse


def _sum_to(g, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, down to ``shape``."""
    if g.shape == shape:
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(a for a, n in enumerate(shape) if n == 1 and g.shape[a] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _backward(g, q, k, v, mask, out, lse, tiles):
    """dq, dk, dv from dO = g, recomputing P = exp(s - L) tile by tile (FlashAttention-2).

    With D = rowsum(dO * O):  dV += P^T dO,  dP = dO V^T,  dS = P * (dP - D),
    dQ += dS K * scale,  dK += dS^T Q * scale.
    """
    want_q, want_k, want_v = (requires_grad(x) for x in (q, k, v))
    q, k, v = values(q), values(k), values(v)
    (B_r, B_c), scale = tiles, 1.0 / math.sqrt(q.shape[-1])
    T_q, T_k = q.shape[-2], k.shape[-2]
    D = np.einsum("...id,...id->...i", g, out)[..., None]  # (..., T_q, 1) = rowsum(dO * O)
    batch = g.shape[:-2]  # every batch dimension: dS has them all
    dq = np.zeros(batch + q.shape[-2:]) if want_q else None
    dk = np.zeros(batch + k.shape[-2:]) if want_k else None
    dv = np.zeros(batch + v.shape[-2:]) if want_v else None
    tile = (min(B_r, T_q), min(B_c, T_k))
    s_buffer = np.empty(_score_batch(q, k, mask) + tile)  # P, recomputed tile by tile
    dp_buffer = np.empty(batch + tile)  # dP, then dS in place
    for j in range(0, T_k, B_c):  # key blocks outside (FlashAttention-2's backward order)
        cols = slice(j, min(j + B_c, T_k))
        k_j, v_j = k[..., cols, :], v[..., cols, :]  # (..., B_c, d_k), (..., B_c, d_v)
        for i in range(0, T_q, B_r):
            rows = slice(i, min(i + B_r, T_q))
            keep = _tile_mask(mask, rows, cols)
            if keep is not None and not keep.any():
                continue  # P = 0 on this tile: it contributes nothing
            q_i = q[..., rows, :] * scale  # (..., B_r, d_k)
            n_r, n_c = q_i.shape[-2], k_j.shape[-2]
            s = np.matmul(q_i, k_j.swapaxes(-1, -2), out=s_buffer[..., :n_r, :n_c])
            if keep is not None:
                np.copyto(s, -np.inf, where=~keep)
            p = np.exp(np.subtract(s, lse[..., rows, :], out=s), out=s)  # (..., B_r, B_c)
            g_i = g[..., rows, :]  # (..., B_r, d_v)
            if want_v:
                dv[..., cols, :] += p.swapaxes(-1, -2) @ g_i  # P^T dO
            if want_q or want_k:
                dp = np.matmul(g_i, v_j.swapaxes(-1, -2), out=dp_buffer[..., :n_r, :n_c])  # dO V^T
                ds = np.multiply(p, np.subtract(dp, D[..., rows, :], out=dp), out=dp)
                if want_q:
                    dq[..., rows, :] += ds @ k_j  # scaled once, below
                if want_k:
                    dk[..., cols, :] += ds.swapaxes(-1, -2) @ q_i  # q_i carries the scale
    if want_q:
        dq *= scale
    return (None if dq is None else _sum_to(dq, q.shape),
            None if dk is None else _sum_to(dk, k.shape),
            None if dv is None else _sum_to(dv, v.shape))
