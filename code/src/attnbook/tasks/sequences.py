"""Copy, reverse and sort: sequence tasks whose true alignment is known by construction.

Sources are strings of symbols drawn uniformly from an alphabet of ``n_symbols``, named
``"0", "1", ...`` and stored at ids ``4, 5, ...`` after the special tokens, so sorting ids
sorts symbols. The alignment says which source position each target position copies:
copy ``i -> i``, reverse ``i -> T-1-i``, sort ``i -> `` the source index of the ``i``-th
smallest symbol, ties broken by position (a stable sort).

For decoder-only models the pair becomes one sequence ``x SEP y EOS``; the model reads it
shifted by one and is scored only on the answer ``y EOS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbook.tasks.vocab import EOS, PAD, SEP, SPECIALS, Vocab

__all__ = ["SequenceData", "sequence_task", "symbol_vocab", "decoder_only", "KINDS"]

#: The tasks :func:`sequence_task` can make.
KINDS = ("copy", "reverse", "sort")


@dataclass(frozen=True)
class SequenceData:
    """Source and target id arrays of a sequence task, with the true alignments.

    Attributes
    ----------
    src, tgt : list of ndarray of int64, each of shape (T,)
        Symbol ids (no BOS, EOS or SEP); target and source have the same length.
    align : list of ndarray of int64, each of shape (T,)
        ``tgt[k] == src[k][align[k]]`` for every pair ``k``.
    vocab : Vocab
        ``symbol_vocab(n_symbols)``, shared by source and target.

    See Also
    --------
    sequence_task : makes one.
    """

    src: list
    tgt: list
    align: list
    vocab: Vocab

    def __len__(self):
        return len(self.src)


def symbol_vocab(n_symbols: int) -> Vocab:
    """The vocabulary of an alphabet of ``n_symbols`` symbols ``"0", "1", ...`` at ids ``4, 5, ...``.

    Parameters
    ----------
    n_symbols : int
        Alphabet size, at least 1.

    Returns
    -------
    Vocab
        ``n_symbols + 4`` tokens, in numeric order (not string order).

    Raises
    ------
    ValueError
        If ``n_symbols`` is not a positive integer.

    Examples
    --------
    >>> symbol_vocab(3).tokens
    ('<pad>', '<bos>', '<eos>', '<sep>', '0', '1', '2')

    See Also
    --------
    sequence_task : builds its data with it.
    """
    if not isinstance(n_symbols, (int, np.integer)) or n_symbols < 1:
        raise ValueError(f"n_symbols must be a positive integer, got {n_symbols!r}")
    return Vocab(tuple(str(s) for s in range(n_symbols)))


def sequence_task(kind, rng, n, min_len=2, max_len=16, n_symbols=10) -> SequenceData:
    """Sample ``n`` pairs of a copy, reverse or sort task with lengths uniform on ``min_len..max_len``.

    Parameters
    ----------
    kind : {"copy", "reverse", "sort"}
    rng : numpy.random.Generator
    n : int
        Number of pairs, at least 1.
    min_len, max_len : int
        Sequence length bounds, ``1 <= min_len <= max_len``.
    n_symbols : int
        Alphabet size, at least 1; symbols repeat within a sequence.

    Returns
    -------
    SequenceData
        With ``tgt[k] == src[k][align[k]]``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, a count or length is out of range, or ``rng`` is not a Generator.

    Examples
    --------
    >>> data = sequence_task("sort", np.random.default_rng(0), n=1, min_len=5, max_len=5, n_symbols=3)
    >>> data.vocab.decode(data.src[0]), data.vocab.decode(data.tgt[0])
    (['2', '1', '1', '0', '0'], ['0', '0', '1', '1', '2'])
    >>> data.align[0].tolist()
    [3, 4, 1, 2, 0]

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, tests length generalisation on copy.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of pairs, got {n!r}")
    if not (isinstance(min_len, (int, np.integer)) and isinstance(max_len, (int, np.integer))
            and 1 <= min_len <= max_len):
        raise ValueError(f"need integer lengths 1 <= min_len <= max_len, got min_len={min_len!r}, max_len={max_len!r}")
    vocab = symbol_vocab(n_symbols)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    symbols = rng.integers(n_symbols, size=int(lengths.sum())) + len(SPECIALS)
    src = np.split(symbols, np.cumsum(lengths)[:-1])
    if kind == "copy":
        align = [np.arange(len(x)) for x in src]
    elif kind == "reverse":
        align = [np.arange(len(x))[::-1].copy() for x in src]
    else:
        align = [np.argsort(x, kind="stable") for x in src]
    tgt = [x[a] for x, a in zip(src, align)]
    return SequenceData(src, tgt, align, vocab)


def decoder_only(src, tgt, sep_id=SEP, eos_id=EOS, pad_id=PAD):
    """Format pairs as ``x SEP y EOS`` for a causal language model, padded into a batch.

    The sequence ``s = x SEP y EOS`` becomes ``inputs = s[:-1]`` and ``targets = s[1:]``;
    the loss mask keeps the positions whose target is ``y`` or ``EOS``, so the model is
    scored on the answer only. Padding goes on the right, where causal attention from real
    tokens never reaches it.

    Parameters
    ----------
    src, tgt : list of array_like of int, each of shape (T_x,) and (T_y,)
        The same number of sources and targets.
    sep_id, eos_id, pad_id : int
        Special ids, by default the shared ``SEP``, ``EOS`` and ``PAD``.

    Returns
    -------
    inputs : ndarray of int64 of shape (B, T)
        ``T = max(T_x + T_y + 1)``; right-padded with ``pad_id``.
    targets : ndarray of int64 of shape (B, T)
        ``inputs`` shifted left by one, ending in ``eos_id``, then padding.
    loss_mask : ndarray of bool of shape (B, T)
        True where the target is counted: positions ``T_x .. T_x + T_y`` of each row.

    Raises
    ------
    ValueError
        If the lists are empty or differ in length, or a sequence is not 1-D integer.

    Examples
    --------
    >>> inputs, targets, loss_mask = decoder_only([np.array([5, 6])], [np.array([5, 6])])
    >>> inputs.tolist()
    [[5, 6, 3, 5, 6]]
    >>> targets.tolist()
    [[6, 3, 5, 6, 2]]
    >>> loss_mask
    array([[False, False,  True,  True,  True]])

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, trains its copy models on this format.
    """
    if not isinstance(src, (list, tuple)) or not isinstance(tgt, (list, tuple)) or len(src) != len(tgt) or not src:
        raise ValueError(
            "decoder_only needs two non-empty lists of equal length (one source and one target per pair), "
            f"got {type(src).__name__} and {type(tgt).__name__}; wrap a single pair as ([x], [y])"
        )
    rows = []
    for k, (x, y) in enumerate(zip(src, tgt)):
        x, y = np.asarray(x), np.asarray(y)
        for name, s in (("src", x), ("tgt", y)):
            if s.ndim != 1 or (s.size and not np.issubdtype(s.dtype, np.integer)):
                raise ValueError(
                    f"decoder_only: {name}[{k}] must be a 1-D integer array, got shape {s.shape} dtype {s.dtype}"
                )
        rows.append((np.concatenate([x, [sep_id], y, [eos_id]]).astype(np.int64), len(x)))
    T = max(len(s) for s, _ in rows) - 1
    inputs = np.full((len(rows), T), pad_id, dtype=np.int64)  # (B, T)
    targets = np.full((len(rows), T), pad_id, dtype=np.int64)  # (B, T)
    loss_mask = np.zeros((len(rows), T), dtype=bool)  # (B, T)
    for b, (s, t_x) in enumerate(rows):
        inputs[b, : len(s) - 1] = s[:-1]
        targets[b, : len(s) - 1] = s[1:]
        loss_mask[b, t_x : len(s) - 1] = True
    return inputs, targets, loss_mask
