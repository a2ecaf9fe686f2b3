"""Positional information: sinusoidal encodings, ALiBi biases and rotary embeddings (RoPE)."""

from __future__ import annotations

import math

import numpy as np

from . import ops
from ._checks import as_input, check_even, check_finite, check_ndim, check_positive_int, values

__all__ = ["sinusoidal_positions", "alibi_slopes", "alibi_bias", "apply_rope"]


def sinusoidal_positions(T, d):
    """The Transformer's sinusoidal position encodings.

    ``PE[p, 2i] = sin(p / 10000**(2i/d))`` and ``PE[p, 2i+1] = cos(p / 10000**(2i/d))``.

    Parameters
    ----------
    T : int
        Number of positions (0 .. T-1).
    d : int
        Width; must be even (sines and cosines come in pairs).

    Returns
    -------
    ndarray of shape (T, d), float64
        Add it to token embeddings of shape (B, T, d); it broadcasts over the batch.

    Raises
    ------
    ValueError
        If ``T`` or ``d`` is not a positive integer or ``d`` is odd.

    Examples
    --------
    >>> sinusoidal_positions(2, 4).round(3)
    array([[0.   , 1.   , 0.   , 1.   ],
           [0.841, 0.54 , 0.01 , 1.   ]])

    See Also
    --------
    apply_rope : rotates queries and keys instead.
    Chapter 7, *Where am I? Positional information*, shows that a shift by k is a fixed rotation.
    """
    T = check_positive_int(T, "T")
    d = check_positive_int(d, "d")
    check_even(d, "d", "each frequency needs a sine and a cosine")
    p = np.arange(T)[:, None]  # (T, 1)
    angle = p / 10000.0 ** (np.arange(0, d, 2) / d)  # (T, d/2)
    pe = np.empty((T, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    return pe


def alibi_slopes(n_heads):
    """ALiBi's per-head slopes (Press et al., 2022).

    For a power of two ``n``, the geometric sequence ``2**(-8/n), 2**(-16/n), ...,
    2**(-8)``. Otherwise, as in the paper's code: the slopes for the largest power of two
    below ``n``, then every other slope of the next power of two, until there are ``n``.

    Parameters
    ----------
    n_heads : int
        Number of heads (>= 1).

    Returns
    -------
    ndarray of shape (n_heads,), float64

    Raises
    ------
    ValueError
        If ``n_heads`` is not a positive integer.

    Examples
    --------
    >>> 1 / alibi_slopes(4)
    array([  4.,  16.,  64., 256.])
    >>> (1 / alibi_slopes(6)).astype(int)
    array([  4,  16,  64, 256,   2,   8])

    See Also
    --------
    alibi_bias : the bias built from them.
    Chapter 7, *Where am I? Positional information*, trains with them.
    """
    n_heads = check_positive_int(n_heads, "n_heads")

    def powers_of_two(n):
        return 2.0 ** (-8.0 * np.arange(1, n + 1) / n)

    closest = 2 ** int(math.floor(math.log2(n_heads)))
    if closest == n_heads:
        return powers_of_two(n_heads)
    extra = powers_of_two(2 * closest)[0::2][: n_heads - closest]
    return np.concatenate([powers_of_two(closest), extra])


def alibi_bias(n_heads, T_q, T_k=None):
    """ALiBi's attention bias ``-slope_h * |i - j|``, one (T_q, T_k) matrix per head.

    Queries are aligned to the last keys (as in ``causal_mask``): query ``i`` sits at
    position ``i + T_k - T_q``. Combine with ``causal_mask`` for a decoder.

    Parameters
    ----------
    n_heads : int
    T_q : int
    T_k : int, optional
        Defaults to ``T_q``.

    Returns
    -------
    ndarray of shape (n_heads, T_q, T_k), float64
        Pass it as ``bias`` to ``multi_head_attention``.

    Raises
    ------
    ValueError
        If a size is not a positive integer.

    Examples
    --------
    >>> alibi_bias(1, 3)[0] * 256
    array([[-0., -1., -2.],
           [-1., -0., -1.],
           [-2., -1., -0.]])

    See Also
    --------
    alibi_slopes : the slopes.
    Chapter 7, *Where am I? Positional information*, extrapolates with it.
    """
    slopes = alibi_slopes(n_heads)
    T_q = check_positive_int(T_q, "T_q")
    T_k = T_q if T_k is None else check_positive_int(T_k, "T_k")
    i = np.arange(T_q)[:, None] + (T_k - T_q)  # (T_q, 1) query positions
    j = np.arange(T_k)[None, :]  # (1, T_k)
    return -slopes[:, None, None] * np.abs(i - j)  # (H, T_q, T_k)


def apply_rope(x, positions=None, base=10000.0):
    """Rotary position embedding (RoFormer): rotate each pair of features by its position.

    The pair ``(x[..., 2i], x[..., 2i+1])`` at position ``p`` is rotated by the angle
    ``p * base**(-2i/d)``. Applied to queries and keys, it makes ``q . k`` depend on the
    positions only through their offset.

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., T, d)
        Queries or keys (per head); ``d`` must be even.
    positions : array_like of shape (T,) or broadcastable to (..., T), optional
        Position of each token; defaults to ``0 .. T-1``.
    base : float, default 10000.0
        Sets the slowest frequency; must be positive.

    Returns
    -------
    ndarray or Tensor of shape (..., T, d)
        Same float dtype as ``x`` on the ndarray path.

    Raises
    ------
    ValueError
        If ``d`` is odd, ``x`` has fewer than 2 dimensions or holds NaN/inf, ``positions``
        does not fit the token axis or is not finite, or ``base`` is not positive.

    Examples
    --------
    >>> apply_rope(np.array([[1.0, 0.0], [1.0, 0.0]]), base=1.0).round(3)  # angles 0 and 1
    array([[1.   , 0.   ],
           [0.54 , 0.841]])

    See Also
    --------
    sinusoidal_positions : the additive alternative.
    Chapter 7, *Where am I? Positional information*, proves the offset property.
    """
    x = as_input(x, "x")
    check_ndim(x, "x", 2, "(..., T, d)")
    check_finite(x, "x")
    T, d = x.shape[-2], x.shape[-1]
    check_even(d, "d", "RoPE rotates pairs of features (x[..., 2i], x[..., 2i+1])")
    if not base > 0:
        raise ValueError(f"base must be positive, got {base!r}; the usual value is 10000.0.")
    positions = np.arange(T) if positions is None else np.asarray(values(positions), dtype=np.float64)
    check_finite(positions, "positions")
    try:
        fits = np.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1]
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"positions of shape {positions.shape} do not fit x of shape {x.shape}; give one "
            f"position per token: shape ({T},) or broadcastable to {x.shape[:-1]}."
        )
    theta = float(base) ** (-np.arange(0, d, 2) / d)  # (d/2,)
    angle = positions[..., None] * theta  # (..., T, d/2)
    dtype = values(x).dtype
    cos, sin = np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each
    rotated = ops.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
    return rotated.reshape(*rotated.shape[:-2], d)  # (..., T, d/2, 2) -> (..., T, d)
