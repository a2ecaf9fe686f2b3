"""When beam search may stop: never while a live hypothesis can still beat the kept finished ones.

Three independent checks: a case worked out by hand where stopping at the ``beam_size``-th
finished hypothesis returns a worse output, an exhaustive enumeration of every output on a
tiny vocabulary, and a plain reference beam search that never stops early.
"""

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.decoding import beam_search, greedy_decode
from toy_decoders import LastWord

EOS, A, B, C = 2, 3, 4, 5


# By hand, beam of 2, length penalty 1 (score = log-probability per word, EOS counted):
# step 1: "EOS" finishes with log 0.5 = -0.693; "A" (0.3) and "B" (0.2) stay live.
# step 2: candidates "A C" 0.18, "A EOS" 0.12, "B C" 0.11, "B EOS" 0.09: "A EOS" finishes
#   (log 0.12 / 2 = -1.060), "A C" and "B C" stay live. Two hypotheses have finished.
# step 3: "A C EOS" finishes with log(0.18 * 0.99) / 3 = -0.575, better than "EOS".
HAND = LastWord({1: {EOS: 0.5, A: 0.3, B: 0.2}, A: {EOS: 0.4, C: 0.6}, B: {EOS: 0.45, C: 0.55},
                 C: {EOS: 0.99, A: 0.01}})


def test_search_goes_on_after_beam_size_hypotheses_finished():
    beam = beam_search(HAND, np.zeros((1, 1), dtype=int), beam_size=2, max_len=6)
    # Stopping after step 2 would return the empty output with score log 0.5 = -0.693.
    assert beam.tokens[0].tolist() == [A, C]
    np.testing.assert_allclose(beam.log_probs, [np.log(0.18 * 0.99)])
    np.testing.assert_allclose(beam.scores, [np.log(0.18 * 0.99) / 3])
    assert beam.scores[0] > np.log(0.5) and beam.finished.all()


def test_beam_of_one_goes_on_after_greedy_ends():
    # Greedy writes EOS first (0.4, score -0.916); "A EOS" has log(0.35 * 0.99) / 2 = -0.530.
    model = LastWord({1: {EOS: 0.4, A: 0.35, B: 0.25}, A: {EOS: 0.99, B: 0.01}})
    src = np.zeros((1, 1), dtype=int)
    assert greedy_decode(model, src, max_len=5).tokens[0].tolist() == []
    beam = beam_search(model, src, beam_size=1, max_len=5)
    assert beam.tokens[0].tolist() == [A]
    np.testing.assert_allclose(beam.scores, [np.log(0.35 * 0.99) / 2])


def test_the_bound_lets_the_search_stop_early():
    # After step 3 the kept finished hypotheses are "A C EOS" (-0.575) and "EOS" (-0.693); the
    # best live one, "A C A" (log 0.0018 = -6.32, 3 words), can end at length 4 to 6 and so
    # reach at most max(-6.32 / 4, -6.32 / 6) = -1.05 < -0.693: the search stops there, and
    # the model is stepped twice (after steps 1 and 2), not five times.
    calls = []

    class Counting(LastWord):
        def step(self, state, y):
            calls.append(len(y))
            return super().step(state, y)

    model = Counting(HAND.table)
    beam = beam_search(model, np.zeros((1, 1), dtype=int), beam_size=2, max_len=6)
    assert beam.tokens[0].tolist() == [A, C]
    assert len(calls) == 2, "the model was stepped after no live hypothesis could win"


def test_a_live_hypothesis_can_catch_up_by_growing_longer():
    # Beam of one. Step 1: "EOS" finishes with log 0.7 = -0.357; "A" (log 0.3 = -1.204) stays
    # live. Divided by its next length, 2, "A" would score -0.602, below -0.357, but every word
    # after it is almost certain: "A B C D EOS" scores (-1.204 - 4e-4) / 5 = -0.241. A bound
    # that divides by the current length (not by the longest possible, max_len) stops too early.
    D = 6
    model = LastWord({1: {EOS: 0.7, A: 0.3}, A: {B: 0.9999, EOS: 1e-4}, B: {C: 0.9999, EOS: 1e-4},
                      C: {D: 0.9999, EOS: 1e-4}, D: {EOS: 0.9999, A: 1e-4}}, vocab=7)
    beam = beam_search(model, np.zeros((1, 1), dtype=int), beam_size=1, max_len=6)
    assert beam.tokens[0].tolist() == [A, B, C, D]
    np.testing.assert_allclose(beam.scores, [np.log(0.3 * 0.9999**4) / 5])


@dataclass(frozen=True)
class PrefixState:
    rows: tuple          # which input row each beam row belongs to
    prefixes: tuple      # the words written so far, per beam row
    attention: None = None


class PrefixModel:
    """Random next-word distributions that depend on the input row and the whole prefix.

    Vocabulary: EOS and ``n_words`` words; the distribution after a prefix is drawn from a
    generator seeded by (seed, row, length, prefix), so it is the same however it is reached.
    """

    def __init__(self, seed, n_words, eos=0, scale=2.0):
        self.seed, self.vocab, self.eos, self.scale = seed, n_words + 1, eos, scale

    def log_probs(self, row, prefix):
        rng = np.random.default_rng([self.seed, row, len(prefix), *prefix])
        z = self.scale * rng.standard_normal(self.vocab)  # (V,)
        return z - np.log(np.exp(z - z.max()).sum()) - z.max()

    def logits(self, state):
        return np.stack([self.log_probs(r, p) for r, p in zip(state.rows, state.prefixes)])

    def start(self, src, src_mask=None, bos=1, use_cache=True):
        state = PrefixState(tuple(range(len(src))), ((),) * len(src))
        return self.logits(state), state

    def step(self, state, y):
        state = PrefixState(state.rows, tuple(p + (int(w),) for p, w in zip(state.prefixes, y)))
        return self.logits(state), state

    def select(self, state, index):
        return PrefixState(tuple(state.rows[i] for i in index), tuple(state.prefixes[i] for i in index))


def exhaustive_best(model, row, max_len, alpha):
    """Score every output that ends within max_len; return (score, log_prob, tokens) of the best."""
    words = [y for y in range(model.vocab) if y != model.eos]
    best = None
    for n in range(1, max_len + 1):  # n counts the EOS
        for prefix in itertools.product(words, repeat=n - 1):
            log_prob = sum(model.log_probs(row, prefix[:i])[w] for i, w in enumerate(prefix))
            log_prob += model.log_probs(row, prefix)[model.eos]
            if best is None or log_prob / n ** alpha > best[0]:
                best = (log_prob / n ** alpha, log_prob, list(prefix))
    return best


def reference_beam(model, row, beam_size, max_len, alpha):
    """A plain beam search that runs to max_len and keeps every finished hypothesis.

    Same pruning as the package: the candidates best first; an EOS candidate that ranks above
    the beam_size-th live one finishes; the best beam_size others stay live.
    Returns (best, finished) with best = (score, log_prob, tokens, finished?).
    """
    live, finished = [((), 0.0)], []
    for t in range(max_len):
        cands = [(s + lp, k, y) for k, (prefix, s) in enumerate(live)
                 for y, lp in enumerate(model.log_probs(row, prefix))]
        cands.sort(key=lambda c: -c[0])  # stable: ties keep (beam, word) order
        new_live = []
        for s, k, y in cands:
            if len(new_live) == beam_size:
                break
            if y == model.eos:
                finished.append((s / (t + 1) ** alpha, s, list(live[k][0]), True))
            else:
                new_live.append((live[k][0] + (y,), s))
        live = new_live
    pool = finished or [(s / max_len ** alpha, s, list(p), False) for p, s in live]
    return max(pool, key=lambda h: h[0]), finished


def normalised(out, alpha):
    """Each output's log-probability over its length (EOS counted) to the power alpha."""
    lengths = np.array([len(t) for t in out.tokens]) + out.finished
    return out.log_probs / lengths ** alpha


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_words=st.integers(1, 2), max_len=st.integers(1, 4),
       alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5]))
def test_a_beam_as_wide_as_all_outputs_finds_the_best_one(seed, n_words, max_len, alpha):
    model = PrefixModel(seed, n_words)
    V = model.vocab
    beam = beam_search(model, np.zeros((2, 1), dtype=int), beam_size=V ** max_len, max_len=max_len,
                       length_penalty=alpha, eos=model.eos)
    for row in range(2):
        score, log_prob, tokens = exhaustive_best(model, row, max_len, alpha)
        assert beam.tokens[row].tolist() == tokens
        np.testing.assert_allclose(beam.scores[row], score, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(beam.log_probs[row], log_prob, rtol=1e-12, atol=1e-12)
        assert beam.finished[row]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_words=st.integers(1, 4), beam_size=st.integers(1, 4),
       max_len=st.integers(1, 7), alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5]),
       scale=st.sampled_from([0.5, 2.0, 5.0]))
def test_stopping_early_returns_what_running_to_max_len_returns(seed, n_words, beam_size, max_len,
                                                                alpha, scale):
    model = PrefixModel(seed, n_words, scale=scale)
    src = np.zeros((3, 1), dtype=int)
    beam = beam_search(model, src, beam_size=beam_size, max_len=max_len, length_penalty=alpha,
                       eos=model.eos)
    greedy = greedy_decode(model, src, max_len=max_len, eos=model.eos)
    np.testing.assert_allclose(beam.scores, normalised(beam, alpha), rtol=1e-12, atol=1e-12)
    for row in range(3):
        (score, log_prob, tokens, ended), finished = reference_beam(model, row, beam_size, max_len, alpha)
        assert beam.tokens[row].tolist() == tokens
        np.testing.assert_allclose(beam.scores[row], score, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(beam.log_probs[row], log_prob, rtol=1e-12, atol=1e-12)
        assert beam.finished[row] == ended
        # Whenever greedy decoding's finished output is among the beam's finished hypotheses,
        # the beam returns nothing worse under the same normalisation.
        if greedy.finished[row] and any(h[2] == greedy.tokens[row].tolist() for h in finished):
            assert beam.scores[row] >= normalised(greedy, alpha)[row] - 1e-12


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_words=st.integers(1, 4), max_len=st.integers(1, 7),
       alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5]), scale=st.sampled_from([0.5, 2.0, 5.0]))
def test_a_beam_of_one_is_greedy_until_greedy_ends_and_never_scores_below_it(seed, n_words, max_len,
                                                                            alpha, scale):
    model = PrefixModel(seed, n_words, scale=scale)
    src = np.zeros((3, 1), dtype=int)
    one = beam_search(model, src, beam_size=1, max_len=max_len, length_penalty=alpha, eos=model.eos)
    greedy = greedy_decode(model, src, max_len=max_len, eos=model.eos)
    assert (one.scores >= normalised(greedy, alpha) - 1e-12).all()
    for row in range(3):
        g, b = greedy.tokens[row].tolist(), one.tokens[row].tolist()
        if b != g:  # only after greedy decoding ended, by a continuation that scores higher
            assert greedy.finished[row] and b[: len(g)] == g and len(b) > len(g)
            assert one.scores[row] > normalised(greedy, alpha)[row]


def test_length_penalty_must_be_a_finite_number():
    for bad in (np.nan, np.inf, "1", True):
        with pytest.raises(ValueError, match="length_penalty must be a finite number"):
            beam_search(HAND, np.zeros((1, 1), dtype=int), beam_size=2, max_len=3, length_penalty=bad)
