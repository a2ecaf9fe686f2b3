"""The key/value cache of incremental decoding: keys and values of earlier positions, per head.

A decoder that produces one token at a time would otherwise project the keys and values
of the whole prefix again at every step. :func:`attnbook.multi_head_attention` appends
the new positions' keys and values to a :class:`KVCache` and attends over all of them.
With grouped-query attention the cache holds ``n_kv_heads`` heads, not ``n_heads``: that
is where its memory goes down.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of earlier positions, per key/value head, for incremental decoding.

    ``k`` and ``v`` are ndarrays of shape (..., n_kv_heads, T_cached, d_head) and
    (..., n_kv_heads, T_cached, d_v_head), or None before the first step. A ``static``
    cache (cross-attention to the encoder's memory) is filled once, by the first call of
    :func:`attnbook.multi_head_attention` that uses it, and then reused as it is: later
    calls neither project the memory again nor append to it. Decoding runs under
    ``no_grad()``: cached keys and values are plain arrays and pass no gradient.

    Parameters
    ----------
    static : bool, default False

    Attributes
    ----------
    k, v : ndarray or None
    static : bool

    Examples
    --------
    >>> cache = KVCache()
    >>> k, v = cache.append(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))
    >>> k, v = cache.append(np.ones((1, 2, 1, 4)), np.ones((1, 2, 1, 4)))
    >>> len(cache), k.shape
    (4, (1, 2, 4, 4))
    >>> cache.bytes_per_token  # 2 heads, keys and values of width 4, float64
    128.0

    See Also
    --------
    attnbook.multi_head_attention : fills and reads it.
    Chapter 8, *The Transformer*, decodes with it.
    """

    __slots__ = ("k", "v", "static")

    def __init__(self, static=False):
        self.k = self.v = None
        self.static = bool(static)

    def __len__(self):
        return 0 if self.k is None else self.k.shape[-2]

    def __repr__(self):
        shape = None if self.k is None else self.k.shape
        return f"KVCache(static={self.static}, keys of shape {shape})"

    def append(self, k, v):
        """Add the new positions' keys and values; return all keys and values so far.

        Parameters
        ----------
        k : ndarray or Tensor of shape (..., n_kv_heads, T_new, d_head)
        v : ndarray or Tensor of shape (..., n_kv_heads, T_new, d_v_head)

        Returns
        -------
        k : ndarray of shape (..., n_kv_heads, T_cached + T_new, d_head)
        v : ndarray of shape (..., n_kv_heads, T_cached + T_new, d_v_head)

        Raises
        ------
        ValueError
            If the cache is static and already filled, keys and values differ in number,
            or the new keys or values do not match the cached ones in every axis but the
            position axis.
        """
        k = k.data if isinstance(k, Tensor) else np.asarray(k)
        v = v.data if isinstance(v, Tensor) else np.asarray(v)
        if self.static and self.k is not None:
            raise ValueError(
                "this static cache is already filled (cross-attention keys are computed once); "
                "reuse it as it is, or make a new KVCache(static=True) for a new source."
            )
        if k.ndim < 3 or v.ndim != k.ndim or k.shape[:-1] != v.shape[:-1]:
            raise ValueError(
                f"keys of shape {k.shape} and values of shape {v.shape} must be "
                "(..., n_kv_heads, T_new, d) with the same leading axes and T_new."
            )
        if self.k is None:
            self.k, self.v = k, v
            return self.k, self.v
        for new, old, what in ((k, self.k, "keys"), (v, self.v, "values")):
            if new.shape[:-2] != old.shape[:-2] or new.shape[-1] != old.shape[-1]:
                raise ValueError(
                    f"the cache holds {what} of shape {old.shape} but the new {what} have shape "
                    f"{new.shape}; they must agree in every axis but the position axis (-2): use one "
                    "cache per layer and per batch of sequences (KVCache.select reorders rows)."
                )
        self.k = np.concatenate([self.k, k], axis=-2)  # (..., H_kv, T_cached + T_new, d_head)
        self.v = np.concatenate([self.v, v], axis=-2)  # (..., H_kv, T_cached + T_new, d_v_head)
        return self.k, self.v

    def select(self, index):
        """A cache holding only batch rows ``index`` (beam search reorders hypotheses).

        Parameters
        ----------
        index : ndarray of int
            Rows of the first (batch) axis, repeated or reordered as needed.

        Returns
        -------
        KVCache
        """
        out = KVCache(self.static)
        if self.k is not None:
            out.k, out.v = self.k[index], self.v[index]
        return out

    @property
    def nbytes(self):
        """Bytes held by the cached keys and values (0 when empty)."""
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes

    @property
    def bytes_per_token(self):
        """Bytes held per cached position of one sequence (0.0 when empty).

        ``n_kv_heads * (d_head + d_v_head) * itemsize``: it does not depend on how many
        positions or sequences are cached, and it shrinks by ``n_heads / n_kv_heads``
        with grouped-query attention.
        """
        if self.k is None or self.k.size == 0:
            return 0.0
        sequences = self.k.size // (self.k.shape[-3] * self.k.shape[-2] * self.k.shape[-1])
        return self.nbytes / (sequences * len(self))
