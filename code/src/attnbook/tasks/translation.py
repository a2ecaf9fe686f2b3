"""A toy English-to-French translation task with real words and a known word alignment.

English sentences are clauses joined by "and"; a clause is a subject (a pronoun or a noun
phrase), a past-tense verb, an object for transitive verbs, and up to three prepositional
phrases. The French follows real rules that make alignments reorder and lengths differ:

* determiners agree with gender and number: the -> le / la / les, a -> un / une, and
  le / la elide before a vowel or mute h, written as its own token: "l' oiseau";
* size adjectives (small, big, pretty, young) stay before the noun, all others follow it:
  "the small black cat" -> "le petit chat noir"; adjectives agree in gender and number;
* verbs are in the imparfait and agree with the subject's number; "sat" is the one
  two-word verb, "était assis", whose participle also agrees in gender.

Every target word translates exactly one source word; ``align[j]`` is that source position
(both words of "était assis" align to "sat"). Sentences of an exact length are sampled from
the same grammar conditioned on that length, by splitting the length over the parts of the
parse with the parts' length distributions.
"""

from __future__ import annotations

import bisect
import itertools

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from attnbook.tasks.vocab import Vocab

__all__ = ["TranslationData", "sample_pair", "make_dataset", "translate",
           "SRC_VOCAB", "TGT_VOCAB", "LEXICON", "MAX_LEN"]

#: The longest source sentence, in words, that :func:`sample_pair` makes.
MAX_LEN = 60

# noun -> (English plural, French singular, French plural, gender)
_NOUNS = {
    "cat": ("cats", "chat", "chats", "m"), "dog": ("dogs", "chien", "chiens", "m"),
    "mat": ("mats", "tapis", "tapis", "m"), "house": ("houses", "maison", "maisons", "f"),
    "table": ("tables", "table", "tables", "f"), "bird": ("birds", "oiseau", "oiseaux", "m"),
    "mouse": ("mice", "souris", "souris", "f"), "tree": ("trees", "arbre", "arbres", "m"),
    "car": ("cars", "voiture", "voitures", "f"), "box": ("boxes", "boîte", "boîtes", "f"),
    "chair": ("chairs", "chaise", "chaises", "f"), "bed": ("beds", "lit", "lits", "m"),
    "garden": ("gardens", "jardin", "jardins", "m"), "girl": ("girls", "fille", "filles", "f"),
    "boy": ("boys", "garçon", "garçons", "m"), "man": ("men", "homme", "hommes", "m"),
    "woman": ("women", "femme", "femmes", "f"), "horse": ("horses", "cheval", "chevaux", "m"),
    "cow": ("cows", "vache", "vaches", "f"), "book": ("books", "livre", "livres", "m"),
    "cake": ("cakes", "gâteau", "gâteaux", "m"), "ball": ("balls", "balle", "balles", "f"),
    "door": ("doors", "porte", "portes", "f"), "frog": ("frogs", "grenouille", "grenouilles", "f"),
}
# adjective -> (m. sg., f. sg., m. pl., f. pl.)
_PRE_ADJ = {
    "small": ("petit", "petite", "petits", "petites"), "big": ("grand", "grande", "grands", "grandes"),
    "pretty": ("joli", "jolie", "jolis", "jolies"), "young": ("jeune", "jeune", "jeunes", "jeunes"),
}
_POST_ADJ = {
    "black": ("noir", "noire", "noirs", "noires"), "white": ("blanc", "blanche", "blancs", "blanches"),
    "red": ("rouge", "rouge", "rouges", "rouges"), "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"), "grey": ("gris", "grise", "gris", "grises"),
    "happy": ("content", "contente", "contents", "contentes"),
    "tired": ("fatigué", "fatiguée", "fatigués", "fatiguées"),
}
# verb -> (3rd sg., 3rd pl.) of the imparfait; "sat" adds a participle that agrees
_INTRANSITIVE = {
    "slept": ("dormait", "dormaient"), "sat": ("était", "étaient"), "ran": ("courait", "couraient"),
    "played": ("jouait", "jouaient"), "waited": ("attendait", "attendaient"),
    "sang": ("chantait", "chantaient"), "jumped": ("sautait", "sautaient"),
}
_SAT_PARTICIPLE = ("assis", "assise", "assis", "assises")
_TRANSITIVE = {
    "saw": ("voyait", "voyaient"), "chased": ("chassait", "chassaient"), "ate": ("mangeait", "mangeaient"),
    "liked": ("aimait", "aimaient"), "found": ("trouvait", "trouvaient"),
    "watched": ("regardait", "regardaient"), "followed": ("suivait", "suivaient"),
    "carried": ("portait", "portaient"),
}
_PREPS = {"on": "sur", "under": "sous", "in": "dans", "behind": "derrière", "with": "avec"}
_PRONOUNS = {"he": ("il", "m", False), "she": ("elle", "f", False), "they": ("ils", "m", True)}
_VERBS = {**_INTRANSITIVE, **_TRANSITIVE}
_PLURAL_NOUNS = {v[0]: k for k, v in _NOUNS.items()}
_ELIDING = {"oiseau", "arbre", "homme"}  # vowel or mute h: le/la -> l'
_ANY_NOUN = frozenset(_NOUNS) | frozenset(_PLURAL_NOUNS)  # singular or plural English nouns
_DETERMINERS = frozenset({"the", "a"})


def _agree(forms, gender, plural):
    return forms[2 * plural + (gender == "f")]


def _build_lexicon():
    lex = {"the": ("le", "la", "les", "l'"), "a": ("un", "une"), "and": ("et",)}
    for en, (en_pl, fr_sg, fr_pl, _) in _NOUNS.items():
        lex[en], lex[en_pl] = (fr_sg,), (fr_pl,)
    lex.update({en: tuple(dict.fromkeys(f)) for en, f in {**_PRE_ADJ, **_POST_ADJ}.items()})
    lex.update({en: f for en, f in _VERBS.items()})
    lex["sat"] = _VERBS["sat"] + tuple(dict.fromkeys(_SAT_PARTICIPLE))
    lex.update({en: (fr,) for en, fr in _PREPS.items()})
    lex.update({en: (fr,) for en, (fr, _, _) in _PRONOUNS.items()})
    return MappingProxyType(lex)


LEXICON = _build_lexicon()
"""English word -> every French form it can translate to (read-only)."""
#: The English vocabulary, the special tokens and then every word of :data:`LEXICON`.
SRC_VOCAB = Vocab.from_words(LEXICON)
#: The French vocabulary, the special tokens and then every form :data:`LEXICON` can give.
TGT_VOCAB = Vocab.from_words(f for forms in LEXICON.values() for f in forms)


@dataclass(frozen=True)
class TranslationData:
    """Sentence pairs as id arrays (no BOS/EOS) with their true alignments.

    Attributes
    ----------
    src, tgt : list of ndarray of int64, each of shape (T_src,) and (T_tgt,)
    align : list of ndarray of int64, each of shape (T_tgt,)
        ``align[k][j]`` is the source position that target word ``j`` of pair ``k`` translates.
    src_vocab, tgt_vocab : Vocab
        ``SRC_VOCAB`` and ``TGT_VOCAB``, the same for every sample.

    See Also
    --------
    make_dataset : makes one.
    """

    src: list
    tgt: list
    align: list
    src_vocab: Vocab
    tgt_vocab: Vocab

    def __len__(self):
        return len(self.src)


class _Translator:
    """Translate one parsed English sentence, left to right, into French words and alignment."""

    def __init__(self, words):
        self.words, self.i, self.fr, self.align = words, 0, [], []

    def fail(self, expected):
        got = repr(self.words[self.i]) if self.i < len(self.words) else "the end of the sentence"
        raise ValueError(
            f"translate: expected {expected} at position {self.i} of {' '.join(self.words)!r}, got {got}; "
            "only sentences of the toy grammar translate (see the module docstring)"
        )

    def take(self, table, expected):
        if self.i < len(self.words) and self.words[self.i] in table:
            self.i += 1
            return self.i - 1
        return self.fail(expected)

    def optional(self, table):
        return self.take(table, "") if self.i < len(self.words) and self.words[self.i] in table else None

    def emit(self, word, src_pos):
        self.fr.append(word)
        self.align.append(src_pos)

    def noun_phrase(self):
        det = self.take(_DETERMINERS, "'the' or 'a'")
        pre, post = self.optional(_PRE_ADJ), self.optional(_POST_ADJ)
        noun = self.take(_ANY_NOUN, "a noun")
        plural = self.words[noun] in _PLURAL_NOUNS
        lemma = _PLURAL_NOUNS.get(self.words[noun], self.words[noun])
        _, fr_sg, fr_pl, gender = _NOUNS[lemma]
        fr_noun = fr_pl if plural else fr_sg
        fr_pre = _agree(_PRE_ADJ[self.words[pre]], gender, plural) if pre is not None else None
        if self.words[det] == "a":
            if plural:
                self.i = noun
                self.fail("a singular noun after 'a'")
            self.emit("un" if gender == "m" else "une", det)
        elif plural:
            self.emit("les", det)
        else:
            elides = fr_pre is None and fr_noun in _ELIDING
            self.emit("l'" if elides else "le" if gender == "m" else "la", det)
        if pre is not None:
            self.emit(fr_pre, pre)
        self.emit(fr_noun, noun)
        if post is not None:
            self.emit(_agree(_POST_ADJ[self.words[post]], gender, plural), post)
        return gender, plural

    def clause(self):
        if self.i < len(self.words) and self.words[self.i] in _PRONOUNS:
            fr, gender, plural = _PRONOUNS[self.words[self.i]]
            self.emit(fr, self.i)
            self.i += 1
        else:
            gender, plural = self.noun_phrase()
        verb = self.take(_VERBS, "a past-tense verb")
        self.emit(_VERBS[self.words[verb]][plural], verb)
        if self.words[verb] == "sat":
            self.emit(_agree(_SAT_PARTICIPLE, gender, plural), verb)
        if self.words[verb] in _TRANSITIVE:
            self.noun_phrase()
        for _ in range(3):
            if self.i < len(self.words) and self.words[self.i] in _PREPS:
                self.emit(_PREPS[self.words[self.i]], self.i)
                self.i += 1
                self.noun_phrase()


def translate(words) -> tuple[list[str], np.ndarray]:
    """Translate an English sentence of the toy grammar into French, with its true alignment.

    Parameters
    ----------
    words : sequence of str of length T_src
        The English sentence as words, e.g. ``"the cat sat on the mat".split()``.

    Returns
    -------
    french : list of str of length T_tgt
    alignment : ndarray of int64 of shape (T_tgt,)
        ``alignment[j]`` is the source position that ``french[j]`` translates.

    Raises
    ------
    ValueError
        If a word is outside the language or the sentence does not parse.

    Examples
    --------
    >>> french, alignment = translate("the cat sat on the mat".split())
    >>> " ".join(french)
    'le chat était assis sur le tapis'
    >>> alignment.tolist()
    [0, 1, 2, 2, 3, 4, 5]
    >>> french, alignment = translate("the small black birds saw a white horse".split())
    >>> " ".join(french), alignment.tolist()
    ('les petits oiseaux noirs voyaient un cheval blanc', [0, 1, 3, 2, 4, 5, 7, 6])
    >>> translate("the bird slept and she sat".split())[0]
    ["l'", 'oiseau', 'dormait', 'et', 'elle', 'était', 'assise']

    See Also
    --------
    Chapter 4, *Learning to align and translate*, compares learned attention with this alignment.
    """
    if isinstance(words, str):
        raise ValueError(f"translate got the string {words!r}; pass a list of words, e.g. {words!r}.split()")
    words = list(words)
    unknown = [w for w in words if w not in LEXICON]
    if unknown:
        raise ValueError(
            f"translate: {unknown[:5]!r} not in the toy language; use only words of SRC_VOCAB.words"
        )
    g = _Translator(words)
    g.clause()
    while g.i < len(words) and words[g.i] == "and":
        g.emit("et", g.i)
        g.i += 1
        g.clause()
    if g.i != len(words):
        g.fail("'and' or the end of the sentence (a clause has at most three prepositional phrases)")
    return g.fr, np.array(g.align, dtype=np.int64)


# Structure probabilities; lengths are then conditioned on exactly, so these shape only
# what a sentence of a given length looks like, never how long it is.
_P_PRONOUN, _P_PRE, _P_POST, _P_TRANSITIVE, _P_PLURAL, _P_AND = 0.2, 0.3, 0.4, 0.5, 0.3, 0.35
_P_N_PPS = (0.45, 0.35, 0.15, 0.05)
_NOUN_LIST, _PRE_LIST, _POST_LIST = list(_NOUNS), list(_PRE_ADJ), list(_POST_ADJ)
_INTR_LIST, _TR_LIST, _PREP_LIST, _PRON_LIST = list(_INTRANSITIVE), list(_TRANSITIVE), list(_PREPS), list(_PRONOUNS)


def _dist(probs):
    d = np.zeros(MAX_LEN + 1)
    for length, p in probs.items():
        d[length] = p
    return d


def _conv(a, b):
    return np.convolve(a, b)[: MAX_LEN + 1]


def _powers(d, k_max):
    out = [_dist({0: 1.0})]
    for _ in range(k_max):
        out.append(_conv(out[-1], d))
    return out


_NP_LEN = _dist({2: (1 - _P_PRE) * (1 - _P_POST), 3: _P_PRE * (1 - _P_POST) + (1 - _P_PRE) * _P_POST,
                 4: _P_PRE * _P_POST})
_PP_LEN = np.roll(_NP_LEN, 1)
_SUBJ_LEN = _P_PRONOUN * _dist({1: 1.0}) + (1 - _P_PRONOUN) * _NP_LEN
_VP_LEN = (1 - _P_TRANSITIVE) * _dist({1: 1.0}) + _P_TRANSITIVE * _PP_LEN
_PP_POW = _powers(_PP_LEN, len(_P_N_PPS) - 1)
_PPS_LEN = sum(p * d for p, d in zip(_P_N_PPS, _PP_POW))
_CLAUSE_RESTS = [_conv(_VP_LEN, _PPS_LEN), _PPS_LEN, _dist({0: 1.0})]
_CLAUSE_POW = _powers(_conv(_SUBJ_LEN, _CLAUSE_RESTS[0]), MAX_LEN // 3 + 1)


def _draw(rng, weights):
    """Index i with probability weights[i] / sum(weights): one uniform, no validation overhead.

    Plain Python on a handful of floats: the running sums are added left to right as
    ``np.cumsum`` adds them, and ``bisect_right`` is ``np.searchsorted(..., side="right")``,
    so the index is the same, without NumPy's per-call cost on tiny arrays.
    """
    if isinstance(weights, np.ndarray):
        weights = weights.tolist()
    c = list(itertools.accumulate(weights))
    return bisect.bisect_right(c, rng.random() * c[-1])


def _pick(rng, items):
    return items[int(rng.random() * len(items))]


def _split(rng, parts, rests, total):
    """Lengths of independent parts conditioned on their sum; rests[i] is the law of the parts after i."""
    out = []
    for d, rest in zip(parts, rests):
        m = _draw(rng, d[: total + 1] * rest[total::-1])
        out.append(m)
        total -= m
    return out


def _noun_phrase(rng, n):
    pre = n == 4 or (n == 3 and rng.random() < _P_PRE * (1 - _P_POST) / _NP_LEN[3])
    post = n == 4 or (n == 3 and not pre)
    plural = rng.random() < _P_PLURAL
    words = ["the" if plural or rng.random() < 0.5 else "a"]
    if pre:
        words.append(_pick(rng, _PRE_LIST))
    if post:
        words.append(_pick(rng, _POST_LIST))
    noun = _pick(rng, _NOUN_LIST)
    return words + [_NOUNS[noun][0] if plural else noun]


def _repeat(rng, d, powers, k, total):
    return _split(rng, [d] * k, [powers[k - 1 - i] for i in range(k)], total)


def _clause(rng, n):
    n_subj, n_vp, n_pps = _split(rng, [_SUBJ_LEN, _VP_LEN, _PPS_LEN], _CLAUSE_RESTS, n)
    words = [_pick(rng, _PRON_LIST)] if n_subj == 1 else _noun_phrase(rng, n_subj)
    words += [_pick(rng, _INTR_LIST)] if n_vp == 1 else [_pick(rng, _TR_LIST)] + _noun_phrase(rng, n_vp - 1)
    k = _draw(rng, [p * d[n_pps] for p, d in zip(_P_N_PPS, _PP_POW)])
    for m in _repeat(rng, _PP_LEN, _PP_POW, k, n_pps):
        words += [_pick(rng, _PREP_LIST)] + _noun_phrase(rng, m - 1)
    return words


def _sentence(rng, length):
    weights = [(1 - _P_AND) * _P_AND ** (k - 1) * _CLAUSE_POW[k][length - k + 1]
               for k in range(1, (length + 1) // 3 + 1)]
    k = 1 + _draw(rng, weights)
    clauses = [_clause(rng, m) for m in _repeat(rng, _CLAUSE_POW[1], _CLAUSE_POW, k, length - k + 1)]
    return [w for i, c in enumerate(clauses) for w in (["and"] if i else []) + c]


def _check_lengths(rng, min_len, max_len):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)")
    if not (isinstance(min_len, (int, np.integer)) and isinstance(max_len, (int, np.integer))
            and 2 <= min_len <= max_len <= MAX_LEN):
        raise ValueError(
            f"need integer source lengths 2 <= min_len <= max_len <= {MAX_LEN}, got min_len={min_len!r}, "
            f"max_len={max_len!r}; the shortest sentence is two words ('he slept')"
        )


def sample_pair(rng, min_len=2, max_len=20):
    """Sample one English sentence, its French translation and the true alignment.

    The source length is uniform on ``min_len..max_len``; the sentence is then drawn from the
    grammar conditioned on that length. Set ``min_len == max_len`` for an exact length.

    Parameters
    ----------
    rng : numpy.random.Generator
    min_len, max_len : int
        Source length bounds in words, ``2 <= min_len <= max_len <= MAX_LEN``.

    Returns
    -------
    english : list of str of length T_src
    french : list of str of length T_tgt
    alignment : ndarray of int64 of shape (T_tgt,)
        ``alignment[j]`` is the English position that ``french[j]`` translates.

    Raises
    ------
    ValueError
        If the lengths are out of range or ``rng`` is not a Generator.

    Examples
    --------
    >>> english, french, alignment = sample_pair(np.random.default_rng(2), min_len=6, max_len=6)
    >>> " ".join(english)
    'the black mice watched the chair'
    >>> " ".join(french)
    'les souris noires regardaient la chaise'
    >>> alignment.tolist()
    [0, 2, 1, 3, 4, 5]

    See Also
    --------
    Chapter 1, *The bottleneck problem*, trains on these pairs.
    """
    _check_lengths(rng, min_len, max_len)
    english = _sentence(rng, int(rng.integers(min_len, max_len + 1)))
    french, alignment = translate(english)
    return english, french, alignment


def make_dataset(rng, n, min_len=2, max_len=20) -> TranslationData:
    """Sample ``n`` translation pairs as id arrays, with source lengths uniform on ``min_len..max_len``.

    For an accuracy-against-length plot, call it once per length with ``min_len == max_len``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of pairs, at least 1.
    min_len, max_len : int
        Source length bounds in words, ``2 <= min_len <= max_len <= MAX_LEN``.

    Returns
    -------
    TranslationData
        Ids in ``SRC_VOCAB`` and ``TGT_VOCAB``, without BOS or EOS (batching adds them).

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer, or as for :func:`sample_pair`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> by_length = {L: make_dataset(rng, 200, L, L) for L in (4, 8, 12, 16, 20, 24)}
    >>> sorted({len(s) for s in by_length[12].src})
    [12]
    >>> by_length[12].tgt_vocab is TGT_VOCAB
    True

    See Also
    --------
    Chapter 4, *Learning to align and translate*, plots accuracy against source length with it.
    """
    _check_lengths(rng, min_len, max_len)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of pairs, got {n!r}")
    src, tgt, align = [], [], []
    for _ in range(n):
        english, french, alignment = sample_pair(rng, min_len, max_len)
        src.append(SRC_VOCAB.encode(english))
        tgt.append(TGT_VOCAB.encode(french))
        align.append(alignment)
    return TranslationData(src, tgt, align, SRC_VOCAB, TGT_VOCAB)
