"""A toy-English corpus for language modelling, with agreement that reaches across phrases.

Sentences end with a ``"."`` token and follow this grammar (51 word types)::

    sentence := clause ["and" clause] "."
    clause   := subject verb-phrase
    subject  := np [pp] | np "and" np          (coordinated subjects are plural)
    np       := det [adjective] noun           ("a" only singular, "some" only plural)
    vp       := intransitive [pp] | transitive np [pp]
    pp       := preposition np

The verb agrees with the number of its subject, which can sit several words back behind a
prepositional phrase whose noun has the other number ("the cat near the dogs sleeps"), so
a model needs more than the last few tokens to predict it.
"""

from __future__ import annotations

import numpy as np

from attnbook.tasks.vocab import Vocab

__all__ = ["grammar_corpus", "lm_windows", "GRAMMAR_VOCAB"]

_NOUNS = {"cat": "cats", "dog": "dogs", "bird": "birds", "mouse": "mice", "fox": "foxes",
          "girl": "girls", "boy": "boys", "man": "men", "woman": "women", "horse": "horses"}
_ADJECTIVES = ("small", "big", "black", "white", "happy", "lazy")
# verb -> (singular, plural) present-tense forms
_INTRANSITIVE = (("sleeps", "sleep"), ("runs", "run"), ("sings", "sing"), ("waits", "wait"))
_TRANSITIVE = (("sees", "see"), ("chases", "chase"), ("likes", "like"), ("follows", "follow"))
_PREPOSITIONS = ("on", "under", "near", "behind")
_DETERMINERS = {False: ("the", "a"), True: ("the", "some")}
_NOUN_FORMS = (tuple(_NOUNS), tuple(_NOUNS.values()))
_P_PLURAL, _P_ADJ, _P_SUBJ_PP, _P_SUBJ_AND, _P_TRANSITIVE, _P_VP_PP, _P_CLAUSE_AND = (
    0.5, 0.3, 0.25, 0.15, 0.5, 0.3, 0.2)

#: The vocabulary of :func:`grammar_corpus` (special tokens, nouns, adjectives, prepositions).
GRAMMAR_VOCAB = Vocab.from_words(
    [w for pair in _NOUNS.items() for w in pair] + list(_ADJECTIVES) + list(_PREPOSITIONS)
    + [w for pair in _INTRANSITIVE + _TRANSITIVE for w in pair] + ["the", "a", "some", "and", "."]
)


def _pick(u, items):
    return items[int(u() * len(items))]


def _noun_phrase(u):
    plural = u() < _P_PLURAL
    words = [_pick(u, _DETERMINERS[plural])]
    if u() < _P_ADJ:
        words.append(_pick(u, _ADJECTIVES))
    return words + [_pick(u, _NOUN_FORMS[plural])], plural


def _clause(u):
    words, plural = _noun_phrase(u)
    r = u()
    if r < _P_SUBJ_AND:
        words += ["and"] + _noun_phrase(u)[0]
        plural = True
    elif r < _P_SUBJ_AND + _P_SUBJ_PP:
        words += [_pick(u, _PREPOSITIONS)] + _noun_phrase(u)[0]
    if u() < _P_TRANSITIVE:
        words += [_pick(u, _TRANSITIVE)[plural]] + _noun_phrase(u)[0]
    else:
        words.append(_pick(u, _INTRANSITIVE)[plural])
    if u() < _P_VP_PP:
        words += [_pick(u, _PREPOSITIONS)] + _noun_phrase(u)[0]
    return words


def _sentence(u):
    words = _clause(u)
    if u() < _P_CLAUSE_AND:
        words += ["and"] + _clause(u)
    return words + ["."]


def grammar_corpus(rng, n_tokens):
    """Generate a toy-English corpus of exactly ``n_tokens`` token ids.

    Sentences are drawn independently and concatenated, each ending in ``"."``; the last
    one is cut at ``n_tokens``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_tokens : int
        Corpus length, at least 1.

    Returns
    -------
    ids : ndarray of int64 of shape (n_tokens,)
        Ids in ``GRAMMAR_VOCAB`` (no special tokens).
    vocab : Vocab
        ``GRAMMAR_VOCAB``, the same for every corpus.

    Raises
    ------
    ValueError
        If ``n_tokens`` is not a positive integer or ``rng`` is not a Generator.

    Examples
    --------
    >>> ids, vocab = grammar_corpus(np.random.default_rng(0), 16)
    >>> " ".join(vocab.decode(ids))
    'the small woman sings . the cat follows the cat near a horse . a mouse'

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, trains its positional language models on it.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)")
    if not isinstance(n_tokens, (int, np.integer)) or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive integer, got {n_tokens!r}")
    # Uniforms drawn in blocks: one Python call per decision instead of one Generator call.
    block = iter(())

    def u():
        nonlocal block
        try:
            return next(block)
        except StopIteration:
            block = iter(rng.random(4096).tolist())
            return next(block)

    words = []
    while len(words) < n_tokens:
        words += _sentence(u)
    return GRAMMAR_VOCAB.encode(words[:n_tokens]), GRAMMAR_VOCAB


def lm_windows(ids, L, rng=None, n=None):
    """Cut a token stream into (input, target) windows of ``L`` tokens for a causal LM.

    Each window holds ``L + 1`` consecutive tokens: the first ``L`` are the input, the last
    ``L`` the target. Without ``rng`` the windows start every ``L`` tokens, so the targets
    tile the stream without overlap and every token after the first is scored once
    (evaluation); with ``rng`` and ``n``, ``n`` windows start at uniform random offsets
    (training).

    Parameters
    ----------
    ids : ndarray of int of shape (N,)
        The token stream, with ``N >= L + 1``.
    L : int
        Window (context) length, at least 1.
    rng : numpy.random.Generator, optional
        Give together with ``n`` for random windows.
    n : int, optional
        Number of random windows.

    Returns
    -------
    x : ndarray of int64 of shape (n_windows, L)
    y : ndarray of int64 of shape (n_windows, L)
        ``y[:, :-1] == x[:, 1:]``; ``n_windows = (N - 1) // L`` without ``rng``.

    Raises
    ------
    ValueError
        If ``ids`` is not a 1-D integer array longer than ``L``, ``L`` is not a positive
        integer, or only one of ``rng`` and ``n`` is given.

    Examples
    --------
    >>> x, y = lm_windows(np.arange(10), 3)
    >>> x.tolist()
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    >>> y.tolist()
    [[1, 2, 3], [4, 5, 6], [7, 8, 9]]

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, evaluates perplexity at several lengths with it.
    """
    ids = np.asarray(ids)
    if not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"L must be a positive integer window length, got {L!r}")
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) < L + 1:
        raise ValueError(
            f"lm_windows needs a 1-D integer array of at least L + 1 = {L + 1} tokens, got shape {ids.shape} "
            f"dtype {ids.dtype}; generate a longer corpus or use a smaller L"
        )
    if (rng is None) != (n is None):
        raise ValueError("give both rng and n for random training windows, or neither for evaluation windows")
    if rng is None:
        starts = np.arange((len(ids) - 1) // L) * L
    else:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer number of windows, got {n!r}")
        starts = rng.integers(0, len(ids) - L, size=n)
    windows = ids[starts[:, None] + np.arange(L + 1)].astype(np.int64)  # (n_windows, L + 1)
    return windows[:, :-1], windows[:, 1:]
