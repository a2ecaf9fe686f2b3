"""Batches for sequence-to-sequence training: equal-length buckets, padding and masks.

The trap this module exists for: a bidirectional recurrent encoder reads a right-padded
sentence backwards *starting with the padding*, so the backward states of every real word
of a short sentence have been run through pad tokens first. Attention then looks worse on
short inputs for no reason the reader can see. Masking the attention does not help, because
the damage is inside the encoder states. :func:`bucket_batches` avoids it by putting only
sentences of the same source length in a batch, so the source is never padded.

Masks follow the house convention everywhere: True means "real token, may attend, counted".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbook.masks import padding_mask
from attnbook.tokens import BOS, EOS, PAD

__all__ = ["bucket_batches", "pad", "make_batch", "Batch"]


def bucket_batches(lengths, batch_size, rng):
    """Group example indices into batches whose examples all have the same source length.

    Each length's indices are shuffled and cut into batches of ``batch_size`` (the last one
    of a length may be smaller); the batches are then shuffled, so lengths are mixed over
    training steps while every single batch is padding-free.

    Parameters
    ----------
    lengths : array_like of int of shape (N,)
        Source length of each example.
    batch_size : int
        Largest batch, at least 1.
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray of int64
        Every index ``0..N-1`` exactly once, in batches of equal ``lengths``.

    Raises
    ------
    ValueError
        If ``lengths`` is not a 1-D integer array, ``batch_size`` is not a positive
        integer, or ``rng`` is not a Generator.

    Examples
    --------
    >>> lengths = np.array([3, 5, 3, 3, 5])
    >>> batches = bucket_batches(lengths, batch_size=2, rng=np.random.default_rng(0))
    >>> [b.tolist() for b in batches]
    [[3, 0], [4, 1], [2]]
    >>> [lengths[b].tolist() for b in batches]
    [[3, 3], [5, 5], [3]]

    See Also
    --------
    Chapter 4, *Learning to align and translate*, trains its bidirectional encoder on these batches.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(
            f"lengths must be a 1-D integer array, got shape {lengths.shape} dtype {lengths.dtype}; "
            "pass [len(s) for s in data.src]"
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)")
    batches = []
    for length in np.unique(lengths):
        idx = rng.permutation(np.flatnonzero(lengths == length))
        batches += [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad(seqs, pad_id=PAD):
    """Stack 1-D id sequences of different lengths into one right-padded array.

    Parameters
    ----------
    seqs : list of array_like of int, each of shape (T_b,)
    pad_id : int
        Fill value, by default the shared ``PAD = 0``.

    Returns
    -------
    ids : ndarray of int64 of shape (B, T)
        ``T = max(T_b)``; row ``b`` holds ``seqs[b]`` then ``pad_id``.
    lengths : ndarray of int64 of shape (B,)

    Raises
    ------
    ValueError
        If ``seqs`` is empty or not a list, or a sequence is not 1-D integer.

    Examples
    --------
    >>> ids, lengths = pad([[5, 6, 7], [8]])
    >>> ids.tolist(), ids.shape
    ([[5, 6, 7], [8, 0, 0]], (2, 3))
    >>> lengths.tolist()
    [3, 1]

    See Also
    --------
    Chapter 2, *Alignment scores*, pads its sentences with it.
    """
    if not isinstance(seqs, (list, tuple)) or not seqs:
        raise ValueError(
            f"pad needs a non-empty list of 1-D sequences, got {type(seqs).__name__} of length "
            f"{len(seqs) if hasattr(seqs, '__len__') else '?'}; for one sequence pass [seq]"
        )
    arrays = [np.asarray(s) for s in seqs]
    for b, s in enumerate(arrays):
        # issubclass on the scalar type is np.issubdtype(s.dtype, np.integer) without its per-call cost
        if s.ndim != 1 or (s.size and not issubclass(s.dtype.type, np.integer)):
            raise ValueError(f"pad: seqs[{b}] must be a 1-D integer array, got shape {s.shape} dtype {s.dtype}")
    lengths = np.array([len(s) for s in arrays], dtype=np.int64)
    ids = np.full((len(arrays), lengths.max()), pad_id, dtype=np.int64)  # (B, T)
    for b, s in enumerate(arrays):
        ids[b, : len(s)] = s
    return ids, lengths


@dataclass(frozen=True)
class Batch:
    """One padded sequence-to-sequence batch; every mask is True on real tokens.

    Attributes
    ----------
    src : ndarray of int64 of shape (B, T_src)
    src_lengths : ndarray of int64 of shape (B,)
    src_mask : ndarray of bool of shape (B, 1, T_src)
        True = real source token, may be attended to; broadcasts over scores ``(B, T_q, T_k)``.
    tgt_in : ndarray of int64 of shape (B, T_dec)
        Decoder input ``BOS y``, with ``T_dec = max(T_tgt) + 1``.
    tgt_out : ndarray of int64 of shape (B, T_dec)
        Decoder target ``y EOS``: ``tgt_out[:, i]`` is predicted from ``tgt_in[:, :i + 1]``.
    tgt_mask : ndarray of bool of shape (B, T_dec)
        True = this step counts in the loss.
    tgt_lengths : ndarray of int64 of shape (B,)
        Decoder steps per example, ``T_tgt + 1``.

    See Also
    --------
    make_batch : builds one.
    """

    src: np.ndarray
    src_lengths: np.ndarray
    src_mask: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_mask: np.ndarray
    tgt_lengths: np.ndarray


def make_batch(src, tgt, bos_id=BOS, eos_id=EOS, pad_id=PAD):
    """Pad source and target sequences and build the decoder's shifted input, target and masks.

    Parameters
    ----------
    src : list of array_like of int, each of shape (T_src,)
        Source ids without BOS/EOS.
    tgt : list of array_like of int, each of shape (T_tgt,)
        Target ids without BOS/EOS, one per source.
    bos_id, eos_id, pad_id : int
        Special ids, by default the shared ``BOS``, ``EOS`` and ``PAD``.

    Returns
    -------
    Batch

    Raises
    ------
    ValueError
        If the lists are empty or differ in length, a sequence is not 1-D integer, or a
        source is empty (a decoder could attend to nothing).

    Examples
    --------
    >>> batch = make_batch([[7, 8, 9], [7, 9]], [[5, 6], [6]])
    >>> batch.tgt_in.tolist()
    [[1, 5, 6], [1, 6, 0]]
    >>> batch.tgt_out.tolist()
    [[5, 6, 2], [6, 2, 0]]
    >>> batch.tgt_mask
    array([[ True,  True,  True],
           [ True,  True, False]])
    >>> batch.src_mask.shape
    (2, 1, 3)

    See Also
    --------
    bucket_batches : chooses which examples go together.
    Chapter 4, *Learning to align and translate*, trains on these batches.
    """
    if not isinstance(src, (list, tuple)) or not isinstance(tgt, (list, tuple)) or len(src) != len(tgt):
        raise ValueError(
            f"make_batch needs a list of sources and a list of targets of equal length, got "
            f"{type(src).__name__} and {type(tgt).__name__}; select them as [data.src[i] for i in idx]"
        )
    src_ids, src_lengths = pad(src, pad_id)
    tgt_ids, tgt_lengths = pad(tgt, pad_id)
    B, T_tgt = tgt_ids.shape
    tgt_in = np.concatenate([np.full((B, 1), bos_id), tgt_ids], axis=1)  # (B, T_tgt + 1)
    tgt_out = np.concatenate([tgt_ids, np.full((B, 1), pad_id)], axis=1)  # (B, T_tgt + 1)
    tgt_out[np.arange(B), tgt_lengths] = eos_id
    tgt_mask = padding_mask(tgt_lengths + 1, T_tgt + 1)[:, 0]  # (B, T_tgt + 1): words and EOS
    src_mask = padding_mask(src_lengths, src_ids.shape[1])  # (B, 1, T_src)
    return Batch(src_ids, src_lengths, src_mask, tgt_in, tgt_out, tgt_mask, tgt_lengths + 1)
