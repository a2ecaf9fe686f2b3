"""Closed vocabularies: words to integer ids and back, with the special tokens every task shares.

Every vocabulary in the book reserves the same four ids, so batching code never needs to
know which task it is batching: ``PAD = 0`` fills short sequences, ``BOS = 1`` starts a
decoder, ``EOS = 2`` ends a sequence, ``SEP = 3`` separates question from answer in
decoder-only tasks. The ids are defined in ``attnbook.tokens`` and re-exported here.
Vocabularies are closed (a function of the task's grammar, never of a sample), so there is
no unknown-word token: an unknown word is an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from attnbook.tokens import BOS, EOS, PAD, SEP, SPECIALS

__all__ = ["Vocab", "PAD", "BOS", "EOS", "SEP", "SPECIALS"]


@dataclass(frozen=True)
class Vocab:
    """A closed vocabulary: the four special tokens, then the task's words in a fixed order.

    Parameters
    ----------
    words : tuple of str
        The ordinary words in id order: ``words[i]`` gets id ``4 + i``. Use
        :meth:`Vocab.from_words` to build one from any iterable in a deterministic order.

    Attributes
    ----------
    PAD, BOS, EOS, SEP : int
        The special ids 0, 1, 2, 3, the same in every vocabulary.

    Raises
    ------
    ValueError
        If a word is not a non-empty string, repeats, or is one of the special tokens.

    Examples
    --------
    >>> vocab = Vocab.from_words("the cat sat on the mat".split())
    >>> len(vocab)
    9
    >>> vocab.encode(["the", "cat"]).tolist()
    [8, 4]
    >>> vocab.decode([1, 8, 4, 2, 5])
    ['the', 'cat']

    See Also
    --------
    attnbook.tokens : the special ids every vocabulary starts with.
    """

    words: tuple[str, ...]
    _index: dict = field(init=False, repr=False, compare=False)

    PAD: ClassVar[int] = PAD
    BOS: ClassVar[int] = BOS
    EOS: ClassVar[int] = EOS
    SEP: ClassVar[int] = SEP

    def __post_init__(self):
        if isinstance(self.words, str):
            raise ValueError(
                f"Vocab got the string {self.words!r} as its words; pass a sequence of words, "
                "e.g. Vocab.from_words(text.split())"
            )
        words = tuple(self.words)
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValueError(f"Vocab words must be non-empty strings, got {w!r}; convert tokens with str()")
            if w in SPECIALS:
                raise ValueError(
                    f"Vocab word {w!r} is a special token, which every Vocab already has at ids 0-3; "
                    "leave it out of the words"
                )
        if len(set(words)) != len(words):
            dupes = sorted({w for w in words if words.count(w) > 1})
            raise ValueError(f"Vocab words repeat: {dupes}; use Vocab.from_words to deduplicate")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(SPECIALS + words)})

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Vocab:
        """Build a vocabulary from any iterable of words, deduplicated and sorted.

        Sorting makes the ids independent of sampling order and of set iteration order
        (which changes between Python processes), so two builds always agree.

        Parameters
        ----------
        words : iterable of str
            Words, with repeats allowed; special tokens are not allowed.

        Returns
        -------
        Vocab
            ``len(set(words)) + 4`` tokens.

        Raises
        ------
        ValueError
            If a word is not a non-empty string or is a special token.

        Examples
        --------
        >>> Vocab.from_words(["dog", "cat", "dog"]).tokens
        ('<pad>', '<bos>', '<eos>', '<sep>', 'cat', 'dog')

        See Also
        --------
        Chapter 1, *The bottleneck problem*, builds the book's vocabularies this way.
        """
        if isinstance(words, str):
            raise ValueError(f"Vocab.from_words got the string {words!r}; pass a list of words, e.g. text.split()")
        words = list(words)
        bad = [w for w in words if not isinstance(w, str)]
        if bad:
            raise ValueError(f"Vocab.from_words needs strings, got {bad[:3]!r}; convert tokens with str()")
        return cls(tuple(sorted(set(words))))

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order, the four specials first and then the words."""
        return SPECIALS + self.words

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.words)

    def __contains__(self, word) -> bool:
        return word in self._index

    def encode(self, words: Iterable[str]) -> np.ndarray:
        """Map words to ids.

        Parameters
        ----------
        words : sequence of str of length T
            Words of this vocabulary; special tokens such as ``"<eos>"`` are allowed.

        Returns
        -------
        ndarray of int64 of shape (T,)

        Raises
        ------
        ValueError
            If ``words`` is a single string or contains a word outside the vocabulary.

        Examples
        --------
        >>> Vocab(("a", "b")).encode(["b", "a", "<eos>"]).tolist()
        [5, 4, 2]

        See Also
        --------
        Chapter 1, *The bottleneck problem*, encodes its sentences with it.
        """
        if isinstance(words, str):
            raise ValueError(f"encode got the string {words!r}; pass a list of words, e.g. {words!r}.split()")
        words = list(words)
        unknown = [w for w in words if w not in self._index]
        if unknown:
            raise ValueError(
                f"encode: {unknown[:5]!r} not in this closed vocabulary of {len(self)} tokens; "
                "encode only words of the task's grammar (see vocab.tokens)"
            )
        return np.array([self._index[w] for w in words], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        """Map ids back to words, stopping at the first EOS and dropping BOS and PAD.

        Parameters
        ----------
        ids : array_like of int of shape (T,)

        Returns
        -------
        list of str
            The words before the first EOS; ``SEP`` is kept as ``"<sep>"``.

        Raises
        ------
        ValueError
            If ``ids`` is not one-dimensional, not integer, or holds an id outside
            ``[0, len(vocab))``.

        Examples
        --------
        >>> Vocab(("a", "b")).decode([1, 4, 0, 5, 2, 4])
        ['a', 'b']

        See Also
        --------
        Chapter 4, *Learning to align and translate*, decodes greedy translations with it.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(
                f"decode needs a 1-D integer array of ids, got shape {ids.shape} dtype {ids.dtype}; "
                "decode one sequence at a time, e.g. [vocab.decode(row) for row in batch]"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(
                f"decode: ids must lie in [0, {len(self)}), got min {ids.min()} max {ids.max()}; "
                "decode with the vocabulary the ids came from"
            )
        tokens = self.tokens
        out = []
        for i in ids.tolist():
            if i == EOS:
                break
            if i not in (BOS, PAD):
                out.append(tokens[i])
        return out
