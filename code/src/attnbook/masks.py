"""Boolean attention masks. True means "this query may attend to this key"."""

from __future__ import annotations

import numpy as np

from ._checks import check_positive_int

__all__ = ["causal_mask", "padding_mask"]


def causal_mask(T_q, T_k=None):
    """Mask that lets each query see only keys at or before its own position.

    Queries are aligned to the *last* keys, as when decoding with a cache of earlier
    keys: query ``i`` sits at position ``i + (T_k - T_q)`` and may attend to keys
    ``j <= i + (T_k - T_q)``. With ``T_k == T_q`` this is the lower triangle.

    Parameters
    ----------
    T_q : int
        Number of queries (>= 1).
    T_k : int, optional
        Number of keys (>= T_q); defaults to ``T_q``.

    Returns
    -------
    ndarray of bool, shape (T_q, T_k)
        True where the query may attend.

    Raises
    ------
    ValueError
        If a length is not a positive integer, or ``T_k < T_q`` (the first queries would
        have no key at all).

    Examples
    --------
    >>> causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    >>> causal_mask(1, 4).astype(int)  # one new token attends to the whole cache
    array([[1, 1, 1, 1]])

    See Also
    --------
    padding_mask : hides padding keys.
    Chapter 8, *The Transformer*, uses it in the decoder's self-attention.
    """
    T_q = check_positive_int(T_q, "T_q")
    T_k = T_q if T_k is None else check_positive_int(T_k, "T_k")
    if T_k < T_q:
        raise ValueError(
            f"causal_mask(T_q={T_q}, T_k={T_k}) aligns queries to the last keys, so with "
            f"fewer keys than queries the first {T_q - T_k} queries would see no key; "
            "pass T_k >= T_q (include the queries' own positions among the keys)."
        )
    i = np.arange(T_q)[:, None]  # (T_q, 1)
    j = np.arange(T_k)[None, :]  # (1, T_k)
    return j <= i + (T_k - T_q)


def padding_mask(lengths, T):
    """Mask that hides the padding keys at the end of shorter sequences in a batch.

    Parameters
    ----------
    lengths : array_like of int, shape (B,)
        True length of each sequence, each in ``1..T``.
    T : int
        Padded length (the key axis).

    Returns
    -------
    ndarray of bool, shape (B, 1, T)
        ``mask[b, 0, j]`` is True for the real tokens ``j < lengths[b]``. The size-1 axis
        broadcasts over the queries of scores shaped (B, T_q, T).

    Raises
    ------
    ValueError
        If ``T`` is not a positive integer, ``lengths`` is not a 1-D array of integers, or
        a length is outside ``1..T``.

    Examples
    --------
    >>> padding_mask([3, 1], 4).astype(int)
    array([[[1, 1, 1, 0]],
    <BLANKLINE>
           [[1, 0, 0, 0]]])

    See Also
    --------
    causal_mask : hides future keys.
    Chapter 8, *The Transformer*, batches sentences of different lengths with it.
    """
    T = check_positive_int(T, "T")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise ValueError(
            f"lengths must be a 1-D array of integers (one per sequence), got shape "
            f"{lengths.shape} and dtype {lengths.dtype}; e.g. padding_mask([5, 3], T=5)."
        )
    bad = (lengths < 1) | (lengths > T)
    if bad.any():
        b = int(np.argmax(bad))
        raise ValueError(
            f"lengths[{b}] = {int(lengths[b])} is outside 1..T={T}; every sequence needs "
            "at least one real token and no more than T; drop empty sequences or raise T."
        )
    return (np.arange(T)[None, :] < lengths[:, None])[:, None, :]  # (B, 1, T)
