"""Tests of attnbook.metrics: token accuracy, exact match, corpus BLEU, alignment accuracy."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from attnbook.metrics import alignment_accuracy, corpus_bleu, exact_match, token_accuracy
from attnbook.tensor import Tensor

# ---------------------------------------------------------------- token accuracy and exact match


def test_token_accuracy_on_arrays_with_and_without_mask():
    pred = np.array([[5, 6, 2, 0], [7, 7, 7, 2]])
    ref = np.array([[5, 9, 2, 0], [7, 7, 7, 7]])
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    assert token_accuracy(pred, ref) == 6 / 8
    assert token_accuracy(pred, ref, mask) == 5 / 7  # the padded position is not counted


def test_token_accuracy_on_lists_counts_missing_as_wrong_and_ignores_extra():
    # ref lengths 3 + 2 + 1 = 6 tokens; correct: 2 (third missing) + 1 (second wrong) + 1 (extras ignored)
    preds = [[5, 6], [5, 8], [9, 4, 4, 4]]
    refs = [[5, 6, 7], [5, 9], [9]]
    assert token_accuracy(preds, refs) == pytest.approx(4 / 6)
    assert token_accuracy([np.array([1, 2])], [np.array([1, 2])]) == 1.0


@pytest.mark.parametrize(
    "args",
    [
        (np.array([1, 2]), np.array([1, 2, 3])),  # shapes differ
        (np.array([1, 2]), np.array([1, 2]), np.array([1, 1])),  # mask not boolean
        (np.array([1, 2]), np.array([1, 2]), np.array([False, False])),  # nothing counted
        ([[1]], [[1]], np.array([True])),  # mask with lists
        ([[1], [2]], [[1]]),  # different numbers of sequences
        ([1, 2], [1, 2]),  # a bare sequence instead of a list of sequences
        ([[]], [[]]),  # no reference tokens
    ],
)
def test_token_accuracy_rejects_bad_input(args):
    with pytest.raises(ValueError):
        token_accuracy(*args)


def test_exact_match_counts_wrong_lengths_as_wrong():
    assert exact_match([[5, 6], [5, 6, 7], [5]], [[5, 6], [5, 6], [5, 6]]) == pytest.approx(1 / 3)
    assert exact_match(np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]) == 1.0
    assert exact_match([["le", "chat"]], [["le", "chien"]]) == 0.0
    with pytest.raises(ValueError):
        exact_match([], [])
    with pytest.raises(ValueError):
        exact_match(["le chat"], ["le chat"])


# ---------------------------------------------------------------- BLEU worked examples


def test_bleu_perfect_match_is_one():
    refs = ["the cat sat on the mat".split(), "le chat noir dormait".split()]
    assert corpus_bleu(refs, refs) == 1.0


def test_bleu_clipping_example_from_papineni_et_al():
    # Papineni et al. (2002), section 2.1: "the" occurs 7 times in the candidate but at most
    # twice in the reference, so the modified unigram precision is 2/7 (c = 7 > r = 6: no penalty).
    hyp = "the the the the the the the".split()
    ref = "the cat is on the mat".split()
    assert corpus_bleu([hyp], [ref], max_n=1) == pytest.approx(2 / 7)


def test_bleu_hand_computed_four_gram_example():
    # hyp: the cat sat on the mat / ref: the cat sat on a mat (c = r = 6, brevity penalty 1)
    # 1-grams: the(2, clipped to 1) cat sat on mat -> 5/6
    # 2-grams: the-cat cat-sat sat-on match, on-the the-mat do not -> 3/5
    # 3-grams: the-cat-sat cat-sat-on match of 4 -> 2/4;  4-grams: the-cat-sat-on of 3 -> 1/3
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** (1/4)
    hyp, ref = "the cat sat on the mat".split(), "the cat sat on a mat".split()
    assert corpus_bleu([hyp], [ref]) == pytest.approx(12 ** -0.25, rel=1e-12)


def test_bleu_brevity_penalty():
    # hyp "the cat" (c = 2) against a 6-word reference: every n-gram matches, so BLEU is the
    # brevity penalty exp(1 - r / c) = exp(1 - 6 / 2) = exp(-2)
    hyp, ref = "the cat".split(), "the cat sat on the mat".split()
    assert corpus_bleu([hyp], [ref], max_n=2) == pytest.approx(math.exp(-2), rel=1e-12)
    # one extra word: no brevity penalty, precisions 6/7, 5/6, 4/5, 3/4 -> (3/7) ** (1/4)
    assert corpus_bleu([ref + ["today"]], [ref]) == pytest.approx((3 / 7) ** 0.25, rel=1e-12)


def test_bleu_sums_counts_over_the_corpus():
    # pair 1: "a b" vs "a b" -> 1-grams 2/2, 2-grams 1/1 (sentence BLEU 1)
    # pair 2: "a c" vs "a b" -> 1-grams 1/2, 2-grams 0/1 (sentence BLEU 0)
    # corpus: 1-grams 3/4, 2-grams 1/2 -> sqrt(3/8), not the mean 0.5 of the sentence scores
    hyps, refs = [["a", "b"], ["a", "c"]], [["a", "b"], ["a", "b"]]
    assert corpus_bleu(hyps, refs, max_n=2) == pytest.approx(math.sqrt(3 / 8), rel=1e-12)
    assert corpus_bleu(hyps[1:], refs[1:], max_n=2) == 0.0


def test_bleu_smoothing_adds_one_above_unigrams():
    # "the cat" vs "the dog": 1-grams 1/2, 2-grams 0/1 -> 0 unsmoothed; smoothed (0+1)/(1+1) = 1/2
    hyp, ref = [["the", "cat"]], [["the", "dog"]]
    assert corpus_bleu(hyp, ref, max_n=2) == 0.0
    assert corpus_bleu(hyp, ref, max_n=2, smooth=True) == pytest.approx(0.5, rel=1e-12)
    assert corpus_bleu([["x"]], [["y"]], smooth=True) == 0.0  # no unigram match stays zero


def test_bleu_accepts_int_tokens_and_arrays_like_strings():
    words_h, words_r = "le chat noir dormait sur le tapis".split(), "le chat noir dormait sous le tapis".split()
    index = {w: i for i, w in enumerate(sorted(set(words_h + words_r)))}
    ids_h = np.array([index[w] for w in words_h])
    ids_r = [index[w] for w in words_r]
    assert corpus_bleu([ids_h], [ids_r]) == corpus_bleu([words_h], [words_r]) > 0


def test_bleu_empty_hypotheses_score_zero():
    assert corpus_bleu([[]], [["a", "b"]]) == 0.0


@pytest.mark.parametrize(
    "args, kwargs",
    [(([], []), {}), (([["a"]], [["a"], ["b"]]), {}), ((["a b"], ["a b"]), {}), (([["a"]], [["a"]]), {"max_n": 0}),
     (([[["a"]]], [["a"]]), {})],
)
def test_bleu_rejects_bad_input(args, kwargs):
    with pytest.raises(ValueError):
        corpus_bleu(*args, **kwargs)


# ---------------------------------------------------------------- BLEU properties

tokens = st.lists(st.integers(0, 5), min_size=0, max_size=12)
corpora = st.lists(st.tuples(tokens, tokens), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(corpus=corpora, smooth=st.booleans(), max_n=st.integers(1, 4))
def test_bleu_is_in_unit_interval_and_order_free(corpus, smooth, max_n):
    hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
    score = corpus_bleu(hyps, refs, max_n=max_n, smooth=smooth)
    assert 0.0 <= score <= 1.0 + 1e-12
    assert corpus_bleu(hyps[::-1], refs[::-1], max_n=max_n, smooth=smooth) == pytest.approx(score, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(refs=st.lists(tokens, min_size=1, max_size=6), max_n=st.integers(1, 4))
def test_bleu_of_identical_corpora_is_one(refs, max_n):
    if max(map(len, refs)) < max_n:  # no n-gram of the top order exists: precision undefined, BLEU 0
        assert corpus_bleu(refs, refs, max_n=max_n) == 0.0
    else:
        assert corpus_bleu(refs, refs, max_n=max_n) == pytest.approx(1.0, rel=1e-12)


long_tokens = st.lists(st.integers(0, 4), min_size=4, max_size=14)


@settings(max_examples=60, deadline=None)
@given(corpus=st.lists(st.tuples(long_tokens, long_tokens), min_size=1, max_size=6), smooth=st.booleans())
@example(corpus=[([0, 0, 0, 0], [1, 1, 1, 1])], smooth=True)  # no unigram matches: zero, smoothed or not
def test_bleu_matches_nltk(corpus, smooth):
    from nltk.translate import bleu_score  # a test requirement: missing is an error, not a skip

    hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
    # NLTK counts at least one n-gram per hypothesis; with every hypothesis >= 4 tokens the
    # definitions coincide. Unsmoothed NLTK skips zero precisions instead of returning 0.
    ours = corpus_bleu(hyps, refs, smooth=smooth)
    smoothing = bleu_score.SmoothingFunction().method2 if smooth else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = bleu_score.corpus_bleu([[r] for r in refs], hyps, smoothing_function=smoothing)
    if ours > 0:
        assert ours == pytest.approx(theirs, rel=1e-9)
    else:
        # Zero only when some n-gram order matches nothing at all; with smoothing (NLTK's method2,
        # which smooths the orders 2 to 4 but not the unigrams) only when no unigram matches,
        # and then NLTK's score is zero too.
        matches = [sum(bleu_score.modified_precision([r], h, n).numerator
                       for h, r in zip(hyps, refs)) for n in range(1, 5)]
        assert 0 in matches
        if smooth:
            assert matches[0] == 0 and theirs == 0


# ---------------------------------------------------------------- alignment accuracy


def test_alignment_accuracy_worked_example_and_one_hot():
    weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.8, 0.1]])
    assert alignment_accuracy(weights, np.array([0, 2, 2])) == pytest.approx(2 / 3)
    truth = np.array([2, 0, 1, 1])
    assert alignment_accuracy(np.eye(3)[truth], truth) == 1.0
    assert alignment_accuracy(np.eye(3)[truth], (truth + 1) % 3) == 0.0


def test_alignment_accuracy_reads_the_values_of_an_autograd_tensor():
    weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    truth = np.array([0, 1])
    assert alignment_accuracy(Tensor(weights), truth) == alignment_accuracy(weights, truth) == 0.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 4), T_tgt=st.integers(1, 6), T_src=st.integers(1, 6))
def test_alignment_accuracy_batched_is_the_mean_over_counted_positions(seed, B, T_tgt, T_src):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(T_src), size=(B, T_tgt))  # (B, T_tgt, T_src)
    truth = rng.integers(T_src, size=(B, T_tgt))
    mask = rng.random((B, T_tgt)) < 0.7
    mask[0, 0] = True
    truth_padded = np.where(mask, truth, -1)  # padded positions may hold anything
    hits = [weights[b, t].argmax() == truth[b, t] for b in range(B) for t in range(T_tgt) if mask[b, t]]
    assert alignment_accuracy(weights, truth_padded, mask) == pytest.approx(np.mean(hits))
    assert 0.0 <= alignment_accuracy(weights, truth) <= 1.0


@pytest.mark.parametrize(
    "weights, truth, mask",
    [
        (np.ones((3, 4)) / 4, np.zeros(4, dtype=int), None),  # T_tgt mismatch (e.g. an EOS row)
        (np.ones(4) / 4, np.zeros(1, dtype=int), None),  # not (..., T_tgt, T_src)
        (np.ones((2, 3)) / 3, np.array([0, 3]), None),  # position outside the source
        (np.ones((2, 3)) / 3, np.array([0.0, 1.0]), None),  # not integer
        (np.ones((2, 3)) / 3, np.array([0, 1]), np.array([False, False])),  # nothing counted
        (np.ones((2, 3)) / 3, np.array([0, 1]), np.array([1, 0])),  # mask not boolean
    ],
)
def test_alignment_accuracy_rejects_bad_input(weights, truth, mask):
    with pytest.raises(ValueError):
        alignment_accuracy(weights, truth, mask)
