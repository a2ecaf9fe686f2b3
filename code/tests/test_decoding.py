"""Greedy decoding and beam search: a beam of one follows greedy decoding, beams find better
outputs, and the key/value cache gives the same results as recomputing. When beam search may
stop is tested in test_beam_stopping.py."""

import numpy as np
import pytest

from attnbook import no_grad
from attnbook.decoding import beam_search, greedy_decode
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.transformer import POSITIONS, CausalLM, EncoderDecoderTransformer, TransformerConfig
from toy_decoders import LastWord

EOS, A, B = 2, 3, 4


def Chain():
    """A toy model whose next-word probabilities depend on the previous word only.

    After BOS: A 0.6, B 0.4. After A: A 0.36, B 0.34, EOS 0.3. After B: EOS 0.99.
    Greedy follows A forever; the most probable output is "B EOS" (0.396).
    """
    return LastWord({1: {A: 0.6, B: 0.4}, A: {A: 0.36, B: 0.34, EOS: 0.3},
                     B: {EOS: 0.99, A: 0.01}}, vocab=5)


def test_beam_finds_the_better_output_that_greedy_misses():
    src = np.zeros((2, 3), dtype=int)
    greedy = greedy_decode(Chain(), src, max_len=6)
    assert greedy.tokens[0].tolist() == [A] * 6 and not greedy.finished[0]
    beam = beam_search(Chain(), src, beam_size=2, max_len=6)
    assert [t.tolist() for t in beam.tokens] == [[B], [B]]
    np.testing.assert_allclose(beam.log_probs, np.log(0.4 * 0.99))
    np.testing.assert_allclose(beam.scores, np.log(0.4 * 0.99) / 2)  # length 2 counts EOS
    assert beam.finished.all() and beam.attention is None


def test_length_penalty_zero_ranks_by_probability():
    # Three hypotheses finish: "B EOS" (0.396), "A EOS" (0.18), "A A EOS" (0.0648).
    beam = beam_search(Chain(), np.zeros((1, 1), dtype=int), beam_size=3, max_len=5, length_penalty=0.0)
    assert beam.tokens[0].tolist() == [B]


def test_unfinished_rows_return_the_best_open_beam():
    beam = beam_search(Chain(), np.zeros((1, 1), dtype=int), beam_size=1, max_len=3)
    assert beam.tokens[0].tolist() == [A, A, A] and not beam.finished[0]
    np.testing.assert_allclose(beam.log_probs, np.log(0.6 * 0.36 * 0.36))


def models(rng):
    yield Seq2Seq(Seq2SeqConfig(9, 9, d_emb=4, d_enc=4, d_dec=5), rng=rng)
    yield Seq2Seq(Seq2SeqConfig(9, 9, attention="none", d_emb=4, d_enc=4, d_dec=5), rng=rng)
    yield EncoderDecoderTransformer(TransformerConfig(9, d_model=8, n_heads=2, d_ff=16), rng=rng)
    yield CausalLM(TransformerConfig(9, d_model=8, n_heads=2, d_ff=16, positions="rope"), rng=rng)


def test_beam_of_one_is_greedy_on_the_book_models(rng):
    # A beam of one follows greedy decoding until greedy decoding writes EOS, and returns its
    # output unless a continuation past that EOS scores higher (test_beam_stopping.py builds
    # such a case). These untrained models give none, so every model's beam of one must match
    # greedy decoding exactly: words, log-probabilities, attention, and the cache's reordering.
    src = rng.integers(3, 9, (4, 5))
    attention_compared = 0
    for model in models(rng):
        greedy = greedy_decode(model, src, max_len=7)
        beam = beam_search(model, src, beam_size=1, max_len=7)
        for g, b in zip(greedy.tokens, beam.tokens):
            np.testing.assert_array_equal(g, b)
        np.testing.assert_allclose(beam.log_probs, greedy.log_probs, atol=1e-12)
        np.testing.assert_array_equal(beam.finished, greedy.finished)
        if greedy.attention is not None:
            attention_compared += 1
            for g, b in zip(greedy.attention, beam.attention):
                np.testing.assert_allclose(g, b, atol=1e-14)
    assert attention_compared > 0, "no model returned attention weights to compare"


def test_wider_beams_score_at_least_as_well_here(rng):
    src = rng.integers(3, 9, (4, 5))
    model = EncoderDecoderTransformer(TransformerConfig(9, d_model=8, n_heads=2, d_ff=16), rng=rng)
    # An untrained model almost never writes EOS within max_len, so no output would finish and
    # there would be nothing to compare: raise EOS's logit until every row finishes.
    model.out.b.data[EOS] += 0.7
    narrow = beam_search(model, src, beam_size=1, max_len=6, length_penalty=0.0)
    wide = beam_search(model, src, beam_size=4, max_len=6, length_penalty=0.0)
    finished = narrow.finished & wide.finished
    assert finished.sum() >= 3, "too few outputs finish for the comparison to mean anything"
    assert (wide.scores[finished] >= narrow.scores[finished] - 1e-12).all()
    assert (wide.scores[finished] > narrow.scores[finished] + 1e-6).any(), "the wider beam found nothing better"


def test_attention_of_each_output_word(rng):
    model = Seq2Seq(Seq2SeqConfig(9, 9, d_emb=4, d_enc=4, d_dec=5), rng=rng)
    src = rng.integers(3, 9, (3, 6))
    out = greedy_decode(model, src, max_len=4)
    for tokens, att in zip(out.tokens, out.attention):
        assert att.shape == (len(tokens), 6)
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-14)


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("kind", ["encoder-decoder", "lm"])
def test_cache_gives_the_same_logits_as_recomputing(rng, positions, kind):
    cfg = TransformerConfig(9, d_model=8, n_heads=2, d_ff=16, positions=positions, norm="pre")
    model = (EncoderDecoderTransformer if kind == "encoder-decoder" else CausalLM)(cfg, rng=rng)
    src = rng.integers(3, 9, (3, 4))
    feed = rng.integers(3, 9, (3, 6))
    with no_grad():
        logits_c, cached = model.start(src, use_cache=True)
        logits_r, fresh = model.start(src, use_cache=False)
        np.testing.assert_allclose(logits_c, logits_r, atol=1e-12)
        for t in range(6):
            logits_c, cached = model.step(cached, feed[:, t])
            logits_r, fresh = model.step(fresh, feed[:, t])
            np.testing.assert_allclose(logits_c, logits_r, rtol=0, atol=1e-12)
    g1 = greedy_decode(model, src, max_len=8, use_cache=True)
    g2 = greedy_decode(model, src, max_len=8, use_cache=False)
    for a, b in zip(g1.tokens, g2.tokens):
        np.testing.assert_array_equal(a, b)
    b1 = beam_search(model, src, beam_size=3, max_len=6, use_cache=True)
    b2 = beam_search(model, src, beam_size=3, max_len=6, use_cache=False)
    for a, b in zip(b1.tokens, b2.tokens):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        greedy_decode(Chain(), np.zeros((1, 1), dtype=int), max_len=0)
    with pytest.raises(ValueError, match="beam_size must be a positive integer"):
        beam_search(Chain(), np.zeros((1, 1), dtype=int), beam_size=0, max_len=3)
