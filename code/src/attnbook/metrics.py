"""How well a model translates or copies: token accuracy, exact match, corpus BLEU, alignment accuracy.

Definitions used throughout the book:

* **token accuracy** over lists of sequences compares position by position up to each
  reference's length; a missing prediction position counts as wrong, extra predicted tokens
  are ignored (exact match punishes them). It is a corpus-level (micro) average: correct
  tokens over reference tokens.
* **exact match** is the fraction of predictions equal to their reference, length included.
* **corpus BLEU** (Papineni et al., 2002) with one reference per hypothesis: n-gram counts
  clipped by the reference counts and summed over the corpus, the geometric mean of the
  n-gram precisions for n = 1..max_n, times the brevity penalty ``exp(1 - r / c)`` when the
  corpus hypothesis length c is below the reference length r.
* **alignment accuracy** is the fraction of target positions whose largest attention weight
  falls on the true source position.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

__all__ = ["token_accuracy", "exact_match", "corpus_bleu", "alignment_accuracy"]


def _sequences(seqs, name):
    if isinstance(seqs, (str, bytes)) or not hasattr(seqs, "__len__"):
        raise ValueError(f"{name} must be a list of token sequences, got {type(seqs).__name__}")
    out = []
    for k, s in enumerate(seqs):
        if isinstance(s, str):
            raise ValueError(f"{name}[{k}] is the string {s!r}; pass tokens, e.g. {s!r}.split()")
        a = np.asarray(s)
        if a.ndim != 1:
            raise ValueError(
                f"{name}[{k}] must be a 1-D sequence of tokens, got shape {a.shape}; "
                "pass a list of sequences (wrap a single sequence as [seq])"
            )
        out.append(a.tolist())
    return out


def _paired(preds, refs, names):
    preds, refs = _sequences(preds, names[0]), _sequences(refs, names[1])
    if len(preds) != len(refs) or not refs:
        raise ValueError(
            f"{names[0]} and {names[1]} must be non-empty and of equal length, got {len(preds)} and {len(refs)}; "
            "pair each prediction with its reference"
        )
    return preds, refs


def token_accuracy(pred, ref, mask=None) -> float:
    """Fraction of reference tokens predicted correctly.

    Parameters
    ----------
    pred, ref : ndarray of int of shape (..., T), or lists of 1-D sequences
        Arrays of one shape are compared elementwise (``mask`` selects the counted
        positions). Lists of sequences are compared position by position up to each
        reference's length: missing predictions are wrong, extra ones are ignored.
    mask : ndarray of bool of shape (..., T), optional
        Arrays only: True = counted (e.g. ``Batch.tgt_mask``).

    Returns
    -------
    float
        Correct over counted tokens, in [0, 1].

    Raises
    ------
    ValueError
        If shapes differ, a mask is given with lists, or nothing is counted.

    Examples
    --------
    >>> token_accuracy(np.array([[5, 6, 2]]), np.array([[5, 7, 2]]))
    0.6666666666666666
    >>> token_accuracy([[5, 6], [5]], [[5, 6, 7], [5, 9]])  # 3 of 5 reference tokens
    0.6

    See Also
    --------
    Chapter 1, *The bottleneck problem*, plots it against source length.
    """
    if isinstance(pred, np.ndarray) and isinstance(ref, np.ndarray):
        if pred.shape != ref.shape:
            raise ValueError(
                f"token_accuracy: pred shape {pred.shape} != ref shape {ref.shape}; pad both to one "
                "shape or pass lists of sequences"
            )
        counted = np.ones(ref.shape, dtype=bool) if mask is None else np.asarray(mask)
        if counted.dtype != bool or counted.shape != ref.shape:
            raise ValueError(
                f"token_accuracy: mask must be boolean of shape {ref.shape}, got {counted.dtype} {counted.shape}"
            )
        total = int(counted.sum())
        if total == 0:
            raise ValueError("token_accuracy: no position is counted (empty input or all-False mask)")
        return float(((pred == ref) & counted).sum() / total)
    if mask is not None:
        raise ValueError("token_accuracy: mask applies to arrays only; with lists the reference lengths decide")
    preds, refs = _paired(pred, ref, ("pred", "ref"))
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("token_accuracy: the references hold no tokens")
    return sum(sum(p == r for p, r in zip(p_seq, r_seq)) for p_seq, r_seq in zip(preds, refs)) / total


def exact_match(preds, refs) -> float:
    """Fraction of predicted sequences identical to their reference (a wrong length is wrong).

    Parameters
    ----------
    preds, refs : lists of 1-D sequences of tokens
        One reference per prediction; rows of a 2-D array work too.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If the lists are empty, differ in length, or hold non-sequences.

    Examples
    --------
    >>> exact_match([[5, 6], [5, 6, 7]], [[5, 6], [5, 6]])
    0.5

    See Also
    --------
    Chapter 4, *Learning to align and translate*, scores whole translations with it.
    """
    preds, refs = _paired(preds, refs, ("preds", "refs"))
    return sum(p == r for p, r in zip(preds, refs)) / len(refs)


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n=4, smooth=False) -> float:
    """Corpus BLEU of Papineni et al. (2002) with one reference per hypothesis, in [0, 1].

    For each n, matches are hypothesis n-grams clipped by their count in the reference,
    summed over the corpus, and divided by the corpus's hypothesis n-gram count. BLEU is the
    geometric mean of these precisions times the brevity penalty ``min(1, exp(1 - r / c))``
    with r, c the total reference and hypothesis lengths. A precision of zero makes BLEU
    zero; ``smooth=True`` instead adds one to the numerator and denominator of every n > 1
    precision (Lin and Och, 2004; NLTK's ``method2``).

    Parameters
    ----------
    hypotheses, references : lists of sequences of tokens (str or int)
        One reference per hypothesis.
    max_n : int
        Longest n-gram, at least 1.
    smooth : bool
        Add-one smoothing of the n > 1 precisions.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the lists are empty or differ in length, a sequence is a bare string, or
        ``max_n`` is not a positive integer.

    Examples
    --------
    >>> ref = "the cat sat on a mat".split()
    >>> round(corpus_bleu(["the cat sat on the mat".split()], [ref]), 6)  # (5/6 * 3/5 * 2/4 * 1/3) ** (1/4)
    0.537285
    >>> corpus_bleu([ref], [ref])
    1.0

    See Also
    --------
    Chapter 4, *Learning to align and translate*, scores translations with it.
    """
    if not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise ValueError(f"max_n must be a positive integer, got {max_n!r}")
    hyps, refs = _paired(hypotheses, references, ("hypotheses", "references"))
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    if c == 0:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        matches = total = 0
        for h, ref in zip(hyps, refs):
            h_counts, r_counts = _ngrams(h, n), _ngrams(ref, n)
            matches += sum(min(k, r_counts[g]) for g, k in h_counts.items())
            total += max(len(h) - n + 1, 0)
        if smooth and n > 1:
            matches, total = matches + 1, total + 1
        if matches == 0:
            return 0.0
        log_precision += math.log(matches / total) / max_n
    brevity = min(0.0, 1.0 - r / c)
    return math.exp(log_precision + brevity)


def alignment_accuracy(weights, true_alignment, mask=None) -> float:
    """Fraction of target positions whose argmax attention weight is on the true source position.

    Parameters
    ----------
    weights : ndarray or Tensor of shape (..., T_tgt, T_src)
        Attention weights, one row per target position (ties go to the first source position).
    true_alignment : ndarray of int of shape (..., T_tgt)
        The source position each target word translates.
    mask : ndarray of bool of shape (..., T_tgt), optional
        True = counted; padded positions may hold any alignment value.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If shapes disagree, a counted alignment lies outside ``[0, T_src)``, or nothing is counted.

    Examples
    --------
    >>> weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.8, 0.1]])
    >>> alignment_accuracy(weights, np.array([0, 2, 2]))
    0.6666666666666666

    See Also
    --------
    Chapter 4, *Learning to align and translate*, measures how often attention finds the right word.
    """
    if not isinstance(weights, np.ndarray) and isinstance(getattr(weights, "data", None), np.ndarray):
        weights = weights.data  # an autograd Tensor: only its values matter here
    weights, true_alignment = np.asarray(weights), np.asarray(true_alignment)
    if weights.ndim < 2 or true_alignment.shape != weights.shape[:-1]:
        raise ValueError(
            f"alignment_accuracy: weights {weights.shape} must be (..., T_tgt, T_src) and true_alignment "
            f"{true_alignment.shape} must be (..., T_tgt) = {weights.shape[:-1]}; drop the EOS row with "
            "weights[..., :T_tgt, :] if the decoder made one more step"
        )
    if not np.issubdtype(true_alignment.dtype, np.integer):
        raise ValueError(f"true_alignment must hold integer positions, got dtype {true_alignment.dtype}")
    counted = np.ones(true_alignment.shape, dtype=bool) if mask is None else np.asarray(mask)
    if counted.dtype != bool or counted.shape != true_alignment.shape:
        raise ValueError(
            f"alignment_accuracy: mask must be boolean of shape {true_alignment.shape}, "
            f"got {counted.dtype} {counted.shape}"
        )
    if not counted.any():
        raise ValueError("alignment_accuracy: no target position is counted (empty input or all-False mask)")
    T_src = weights.shape[-1]
    a = true_alignment[counted]
    if a.min() < 0 or a.max() >= T_src:
        raise ValueError(
            f"alignment_accuracy: counted true_alignment values must lie in [0, {T_src}), got {a.min()}..{a.max()}; "
            "mask out padded positions"
        )
    hits = weights.argmax(axis=-1) == true_alignment  # (..., T_tgt)
    return float(hits[counted].mean())
