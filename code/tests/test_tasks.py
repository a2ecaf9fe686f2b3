"""Tests of attnbook.tasks: vocabularies, toy translation, copy/reverse/sort, the toy-English corpus."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.tasks import (
    BOS,
    EOS,
    GRAMMAR_VOCAB,
    LEXICON,
    MAX_LEN,
    PAD,
    SEP,
    SRC_VOCAB,
    TGT_VOCAB,
    Vocab,
    decoder_only,
    grammar_corpus,
    lm_windows,
    make_dataset,
    sample_pair,
    sequence_task,
    symbol_vocab,
    translate,
)
from attnbook.tasks import translation

seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------- vocabulary


def test_vocab_specials_and_round_trip():
    vocab = Vocab.from_words("the cat sat on the mat".split())
    assert (vocab.PAD, vocab.BOS, vocab.EOS, vocab.SEP) == (PAD, BOS, EOS, SEP) == (0, 1, 2, 3)
    assert vocab.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<sep>")
    words = "the mat sat on the cat".split()
    ids = vocab.encode(words)
    assert ids.dtype == np.int64 and ids.min() >= 4
    assert vocab.decode(ids) == words


def test_vocab_decode_stops_at_eos_and_drops_bos_pad_but_keeps_sep():
    vocab = Vocab(("x", "y"))
    assert vocab.decode([BOS, 4, PAD, SEP, 5, EOS, 4, 5]) == ["x", "<sep>", "y"]
    assert vocab.decode(np.array([EOS, 4])) == []
    assert vocab.decode([]) == []


def test_vocab_from_words_is_order_independent_and_sorted():
    a = Vocab.from_words(["dog", "cat", "bird", "cat"])
    b = Vocab.from_words({"bird", "dog", "cat"})
    assert a == b and hash(a) == hash(b)
    assert a.words == ("bird", "cat", "dog") and len(a) == 7
    assert "cat" in a and "<eos>" in a and "cow" not in a


@pytest.mark.parametrize(
    "call",
    [
        lambda: Vocab(("a", "a")),
        lambda: Vocab(("a", "<eos>")),
        lambda: Vocab(("a", "")),
        lambda: Vocab("abc"),
        lambda: Vocab.from_words("the cat"),
        lambda: Vocab.from_words([1, 2]),
        lambda: Vocab(("a",)).encode(["b"]),
        lambda: Vocab(("a",)).encode("a"),
        lambda: Vocab(("a",)).decode([5]),
        lambda: Vocab(("a",)).decode([[4]]),
        lambda: Vocab(("a",)).decode([4.0]),
    ],
)
def test_vocab_rejects_bad_input(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------- translation

WORKED = [
    ("the cat sat on the mat", "le chat était assis sur le tapis", [0, 1, 2, 2, 3, 4, 5]),
    ("the small black birds saw a white horse", "les petits oiseaux noirs voyaient un cheval blanc",
     [0, 1, 3, 2, 4, 5, 7, 6]),
    ("the bird slept and she sat", "l' oiseau dormait et elle était assise", [0, 1, 2, 3, 4, 5, 5]),
    ("the small bird slept", "le petit oiseau dormait", [0, 1, 2, 3]),  # no elision before "petit"
    ("the man ate the cake", "l' homme mangeait le gâteau", [0, 1, 2, 3, 4]),  # mute h elides
    ("a man sat", "un homme était assis", [0, 1, 2, 2]),
    ("the happy mouse sat", "la souris contente était assise", [0, 2, 1, 3, 3]),
    ("the young women sat on the red chairs", "les jeunes femmes étaient assises sur les chaises rouges",
     [0, 1, 2, 3, 3, 4, 5, 7, 6]),
    ("they ran", "ils couraient", [0, 1]),
    ("he played with the white cows in the garden behind a tree",
     "il jouait avec les vaches blanches dans le jardin derrière un arbre", [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]),
    ("the mice chased a grey cat", "les souris chassaient un chat gris", [0, 1, 2, 3, 5, 4]),
]


@pytest.mark.parametrize("english, french, alignment", WORKED)
def test_translate_worked_examples(english, french, alignment):
    got_french, got_alignment = translate(english.split())
    assert " ".join(got_french) == french
    assert got_alignment.tolist() == alignment


@pytest.mark.parametrize(
    "english",
    [
        "the cat slept quickly",  # unknown word
        "a cats slept",  # "a" with a plural noun
        "the cat",  # no verb
        "cat slept",  # no determiner
        "the cat slept the dog",  # intransitive verb with an object
        "the dog chased",  # transitive verb without an object
        "the cat saw he",  # pronoun object
        "the black small cat slept",  # adjectives in the wrong order
        "he slept on a mat on a mat on a mat on a mat",  # four prepositional phrases
        "he slept and",
        "",
    ],
)
def test_translate_rejects_sentences_outside_the_language(english):
    with pytest.raises(ValueError):
        translate(english.split())


def test_translate_rejects_a_bare_string():
    with pytest.raises(ValueError, match="split"):
        translate("the cat sat on the mat")


def _undo_adjective_swaps(src_words, alignment):
    """Source order recovered from the alignment: merge the two words of "sat", swap noun/adjective back."""
    order = [a for j, a in enumerate(alignment) if j == 0 or a != alignment[j - 1]]
    for j in range(len(order) - 1):
        if order[j] > order[j + 1]:
            assert order[j] == order[j + 1] + 1, "only adjacent words may swap"
            assert src_words[order[j]] in translation._PLURAL_NOUNS.keys() | translation._NOUNS.keys()
            assert src_words[order[j + 1]] in translation._POST_ADJ
            order[j], order[j + 1] = order[j + 1], order[j]
    return order


@settings(max_examples=30, deadline=None)
@given(seed=seeds, bounds=st.tuples(st.integers(2, 30), st.integers(0, 12)))
def test_sampled_pairs_agree_with_their_alignment(seed, bounds):
    min_len, max_len = bounds[0], min(bounds[0] + bounds[1], MAX_LEN)
    data = make_dataset(np.random.default_rng(seed), 20, min_len, max_len)
    assert len(data) == 20 and data.src_vocab is SRC_VOCAB and data.tgt_vocab is TGT_VOCAB
    for src, tgt, align in zip(data.src, data.tgt, data.align):
        assert min_len <= len(src) <= max_len
        assert src.min() >= 4 and src.max() < len(SRC_VOCAB)  # closed, no special tokens
        assert tgt.min() >= 4 and tgt.max() < len(TGT_VOCAB)
        assert align.shape == tgt.shape and align.dtype == np.int64
        src_words, tgt_words = SRC_VOCAB.decode(src), TGT_VOCAB.decode(tgt)
        # each target word is a dictionary translation of the source word it aligns to
        assert all(tgt_words[j] in LEXICON[src_words[a]] for j, a in enumerate(align))
        # every source word is translated, once, except "sat" -> "était assis"
        counts = Counter(align.tolist())
        assert sorted(counts) == list(range(len(src)))
        assert all(counts[i] == (2 if w == "sat" else 1) for i, w in enumerate(src_words))
        assert _undo_adjective_swaps(src_words, align.tolist()) == list(range(len(src)))


@pytest.mark.parametrize("length", [2, 3, 4, 8, 24, MAX_LEN])
def test_exact_length_sampling(length):
    data = make_dataset(np.random.default_rng(length), 40, length, length)
    assert {len(s) for s in data.src} == {length}
    assert len(data) == 40


def test_length_conditioning_matches_the_grammar():
    # A 4-word sentence is either "det noun-with-one-adjective intransitive" or
    # "pronoun transitive det noun" (a prepositional phrase needs 3 more words). Their
    # grammar probabilities fix P(pronoun subject | length 4); the sampler's convolution
    # machinery is not used here.
    t = translation
    np3 = t._P_PRE * (1 - t._P_POST) + (1 - t._P_PRE) * t._P_POST
    np2 = (1 - t._P_PRE) * (1 - t._P_POST)
    pronoun = t._P_PRONOUN * t._P_TRANSITIVE * np2
    noun_phrase = (1 - t._P_PRONOUN) * (1 - t._P_TRANSITIVE) * np3
    expected = pronoun / (pronoun + noun_phrase)
    rng = np.random.default_rng(0)
    n = 4000
    hits = sum(sample_pair(rng, 4, 4)[0][0] in ("he", "she", "they") for _ in range(n))
    assert abs(hits / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_source_lengths_are_uniform_and_vocabularies_are_fully_used():
    data = make_dataset(np.random.default_rng(7), 3000, 2, 20)
    counts = np.bincount([len(s) for s in data.src], minlength=21)[2:]
    assert counts.min() > 0.6 * 3000 / 19 and counts.max() < 1.4 * 3000 / 19
    src_used = {i for s in data.src for i in s.tolist()}
    tgt_used = {i for t in data.tgt for i in t.tolist()}
    assert src_used == set(range(4, len(SRC_VOCAB)))  # no dead words in the vocabulary
    assert tgt_used == set(range(4, len(TGT_VOCAB)))


def test_translation_data_is_a_pure_function_of_the_seed():
    a, b, c = (make_dataset(np.random.default_rng(s), 30, 2, 20) for s in (1, 1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a.src + a.tgt + a.align, b.src + b.tgt + b.align))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a.src, c.src))


@pytest.mark.parametrize(
    "kwargs", [dict(min_len=1, max_len=5), dict(min_len=5, max_len=4), dict(min_len=2, max_len=MAX_LEN + 1),
               dict(min_len=2.0, max_len=5)]
)
def test_sample_pair_rejects_bad_lengths(kwargs):
    with pytest.raises(ValueError):
        sample_pair(np.random.default_rng(0), **kwargs)


def test_sampling_rejects_bad_rng_and_n():
    with pytest.raises(ValueError, match="default_rng"):
        sample_pair(np.random.RandomState(0))
    with pytest.raises(ValueError):
        make_dataset(np.random.default_rng(0), 0)


# ---------------------------------------------------------------- copy, reverse, sort


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["copy", "reverse", "sort"]), seed=seeds, min_len=st.integers(1, 8),
       extra=st.integers(0, 8), n_symbols=st.integers(1, 12))
def test_sequence_task_targets_follow_their_alignment(kind, seed, min_len, extra, n_symbols):
    data = sequence_task(kind, np.random.default_rng(seed), 15, min_len, min_len + extra, n_symbols)
    assert len(data) == 15 and len(data.vocab) == n_symbols + 4
    for src, tgt, align in zip(data.src, data.tgt, data.align):
        T = len(src)
        assert min_len <= T <= min_len + extra
        assert src.min() >= 4 and src.max() < 4 + n_symbols
        np.testing.assert_array_equal(tgt, src[align])
        assert sorted(align.tolist()) == list(range(T))
        if kind == "copy":
            assert align.tolist() == list(range(T))
        elif kind == "reverse":
            assert align.tolist() == list(range(T - 1, -1, -1))
        else:
            assert np.all(np.diff(tgt) >= 0)
            tied = np.diff(tgt) == 0
            assert np.all(np.diff(align)[tied] > 0)  # stable: equal symbols keep source order


def test_sort_alignment_worked_example():
    # src "2 1 1 0 0": the zeros sit at 3, 4, the ones at 1, 2, the two at 0
    data = sequence_task("sort", np.random.default_rng(0), n=1, min_len=5, max_len=5, n_symbols=3)
    assert data.vocab.decode(data.src[0]) == ["2", "1", "1", "0", "0"]
    assert data.align[0].tolist() == [3, 4, 1, 2, 0]


def test_symbol_vocab_is_numeric_order():
    vocab = symbol_vocab(12)
    assert vocab.words[:3] == ("0", "1", "2") and vocab.words[-1] == "11"
    assert vocab.encode(["10"]).tolist() == [14]


@pytest.mark.parametrize(
    "args", [("shuffle", 3, 2, 5, 4), ("copy", 0, 2, 5, 4), ("copy", 3, 0, 5, 4), ("copy", 3, 6, 5, 4),
             ("copy", 3, 2, 5, 0)]
)
def test_sequence_task_rejects_bad_arguments(args):
    kind, n, min_len, max_len, n_symbols = args
    with pytest.raises(ValueError):
        sequence_task(kind, np.random.default_rng(0), n, min_len, max_len, n_symbols)


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_decoder_only_format_and_loss_mask(seed):
    data = sequence_task("copy", np.random.default_rng(seed), 6, 1, 9, 5)
    inputs, targets, loss_mask = decoder_only(data.src, data.tgt)
    B, T = inputs.shape
    assert targets.shape == loss_mask.shape == (B, T) and loss_mask.dtype == bool
    assert T == max(2 * len(x) + 1 for x in data.src)
    for b, (x, y) in enumerate(zip(data.src, data.tgt)):
        n = len(x) + len(y) + 1
        np.testing.assert_array_equal(inputs[b, :n], np.concatenate([x, [SEP], y]))
        np.testing.assert_array_equal(targets[b, : n - 1], inputs[b, 1:n])  # next-token targets
        assert targets[b, n - 1] == EOS
        assert np.all(inputs[b, n:] == PAD) and np.all(targets[b, n:] == PAD)
        np.testing.assert_array_equal(targets[b][loss_mask[b]], np.concatenate([y, [EOS]]))  # answer only
        assert loss_mask[b].sum() == len(y) + 1 and not loss_mask[b, n:].any()


def test_decoder_only_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(\[x\], \[y\]\)"):
        decoder_only(np.array([5, 6]), np.array([5, 6]))
    with pytest.raises(ValueError):
        decoder_only([[5]], [[5], [6]])
    with pytest.raises(ValueError):
        decoder_only([np.array([[5]])], [np.array([5])])


# ---------------------------------------------------------------- toy-English corpus

_GRAMMAR_NOUNS = {"cat", "dog", "bird", "mouse", "fox", "girl", "boy", "man", "woman", "horse"}
_GRAMMAR_PLURALS = {"cats", "dogs", "birds", "mice", "foxes", "girls", "boys", "men", "women", "horses"}
_SG_VERBS = {"sleeps", "runs", "sings", "waits", "sees", "chases", "likes", "follows"}
_PL_VERBS = {"sleep", "run", "sing", "wait", "see", "chase", "like", "follow"}
_TRANSITIVE = {"sees", "chases", "likes", "follows", "see", "chase", "like", "follow"}
_PREPOSITIONS = {"on", "under", "near", "behind"}
_ADJECTIVES = {"small", "big", "black", "white", "happy", "lazy"}


def _parse_sentence(words):
    """Recursive-descent parser of the documented grammar, checking agreement.

    Returns, per clause, whether the noun just before the verb has the other number than
    the subject (an "attractor" that a model looking only one word back would follow).
    """
    i = 0

    def noun_phrase():
        nonlocal i
        det = words[i]
        i += 1 + (words[i + 1] in _ADJECTIVES)
        noun = words[i]
        plural = noun in _GRAMMAR_PLURALS
        assert plural or noun in _GRAMMAR_NOUNS, words
        assert det == "the" or det == ("some" if plural else "a"), words
        i += 1
        return plural

    def clause():
        nonlocal i
        plural = noun_phrase()
        if words[i] == "and":
            i += 1
            noun_phrase()
            plural = True
        elif words[i] in _PREPOSITIONS:
            i += 1
            noun_phrase()
        verb = words[i]
        assert verb in (_PL_VERBS if plural else _SG_VERBS), words  # agreement with the subject
        attractor = words[i - 1] in (_GRAMMAR_NOUNS if plural else _GRAMMAR_PLURALS)
        i += 1
        if verb in _TRANSITIVE:
            noun_phrase()
        if words[i] in _PREPOSITIONS:
            i += 1
            noun_phrase()
        return attractor

    attractors = [clause()]
    if words[i] == "and":
        i += 1
        attractors.append(clause())
    assert words[i:] == ["."], words
    return attractors


def test_grammar_corpus_is_grammatical_with_agreement():
    ids, vocab = grammar_corpus(np.random.default_rng(3), 20_000)
    assert vocab is GRAMMAR_VOCAB and 45 <= len(vocab.words) <= 55
    words = vocab.decode(ids)
    ends = [k for k, w in enumerate(words) if w == "."]
    sentences = [words[a + 1 : b + 1] for a, b in zip([-1] + ends, ends)]
    assert len(sentences) > 1000
    attractors = [a for sentence in sentences for a in _parse_sentence(sentence)]
    assert sum(attractors) > 0.05 * len(attractors)  # long-range agreement is common
    assert set(ids.tolist()) == set(range(4, len(vocab)))  # every word type occurs


def test_grammar_corpus_length_and_determinism():
    a, _ = grammar_corpus(np.random.default_rng(5), 1234)
    b, _ = grammar_corpus(np.random.default_rng(5), 1234)
    c, _ = grammar_corpus(np.random.default_rng(6), 1234)
    assert a.shape == (1234,) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        grammar_corpus(np.random.default_rng(0), 0)
    with pytest.raises(ValueError):
        grammar_corpus(0, 10)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(2, 200), L=st.integers(1, 40))
def test_lm_windows_tile_the_stream(N, L):
    ids = np.arange(N) * 3 + 7
    if N < L + 1:
        with pytest.raises(ValueError):
            lm_windows(ids, L)
        return
    x, y = lm_windows(ids, L)
    assert x.shape == y.shape == ((N - 1) // L, L)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal(y.ravel(), ids[1 : 1 + y.size])  # every target scored once
    np.testing.assert_array_equal(x.ravel(), ids[: x.size])


def test_lm_windows_random_training_windows():
    ids, _ = grammar_corpus(np.random.default_rng(0), 500)
    x, y = lm_windows(ids, 16, rng=np.random.default_rng(1), n=64)
    x2, _ = lm_windows(ids, 16, rng=np.random.default_rng(1), n=64)
    assert x.shape == y.shape == (64, 16)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    text = ids.tolist()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        start = next(s for s in range(len(text) - 16) if text[s : s + 16] == row_x and text[s + 16] == row_y[-1])
        assert 0 <= start <= len(text) - 17
    assert len({tuple(r) for r in x.tolist()}) > 50  # random offsets, not one window repeated


@pytest.mark.parametrize(
    "args, kwargs",
    [((np.arange(10), 0), {}), ((np.arange(10.0), 3), {}), ((np.arange(10).reshape(2, 5), 2), {}),
     ((np.arange(10), 3), {"n": 4}), ((np.arange(10), 3), {"rng": np.random.default_rng(0)})],
)
def test_lm_windows_rejects_bad_input(args, kwargs):
    with pytest.raises(ValueError):
        lm_windows(*args, **kwargs)
