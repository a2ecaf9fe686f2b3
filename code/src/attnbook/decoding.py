"""Turning a trained model into output sequences: greedy decoding and beam search.

Every model of the book offers the same three methods, which is all these functions use:

* ``logits, state = model.start(src, src_mask=None, bos=BOS, use_cache=True)`` encodes
  the input (or reads a language model's prompt) and returns the logits of the first
  output word;
* ``logits, state = model.step(state, y)`` feeds the chosen words ``y`` (B,) and returns
  the logits of the next ones;
* ``state = model.select(state, index)`` keeps, repeats or reorders batch rows.

``state.attention`` is the attention over the source that produced the last logits
(B, T_src), or None. Transformers keep a key/value cache (``use_cache=True``) and give
the same results as recomputing the whole prefix at every step (``use_cache=False``).
Decoding runs under ``no_grad()`` and in evaluation mode (dropout off; the model's
modes are restored afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nn import evaluating
from .softmax import log_softmax
from .tokens import BOS, EOS, PAD
from .tensor import no_grad

__all__ = ["Decoded", "greedy_decode", "beam_search"]


@dataclass(frozen=True)
class Decoded:
    """Decoded sequences, one per input row.

    Attributes
    ----------
    tokens : list of ndarray of int64
        The output words, without BOS and EOS.
    log_probs : ndarray of shape (B,)
        Sum of the log-probabilities of the chosen words (EOS included when emitted).
    scores : ndarray of shape (B,)
        What the search ranked by: ``log_probs`` for greedy decoding, the length-normalised
        score for beam search.
    attention : list of ndarray of shape (len(tokens[b]), T_src), or None
        For each output word, the attention over the source that produced it.
    finished : ndarray of bool, shape (B,)
        Whether EOS was emitted within ``max_len``.

    Examples
    --------
    >>> Decoded([np.array([5, 6])], np.array([-0.5]), np.array([-0.5]), None, np.array([True])).tokens
    [array([5, 6])]

    See Also
    --------
    greedy_decode, beam_search : return it.
    """

    tokens: list
    log_probs: np.ndarray
    scores: np.ndarray
    attention: list | None
    finished: np.ndarray


def _check(max_len, name="max_len"):
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"{name} must be a positive integer, got {max_len!r}.")


def greedy_decode(model, src, max_len, *, src_mask=None, bos=BOS, eos=EOS, use_cache=True):
    """Choose the most probable word at every step until EOS or ``max_len`` words.

    Parameters
    ----------
    model : Seq2Seq, EncoderDecoderTransformer or CausalLM
    src : ndarray of int, shape (B, T_src)
        Source sentences (for a language model: prompts of equal length).
    max_len : int
        Most output words per row (EOS included).
    src_mask : ndarray of bool, shape (B, T_src) or (B, 1, T_src), optional
        True on real source tokens (right padding).
    bos, eos : int
        Start and end ids.
    use_cache : bool, default True
        Transformers: reuse cached keys and values (False recomputes, for comparison).

    Returns
    -------
    Decoded

    Raises
    ------
    ValueError
        If ``max_len`` is not a positive integer.

    Examples
    --------
    >>> from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
    >>> model = Seq2Seq(Seq2SeqConfig(src_vocab=10, tgt_vocab=10), rng=np.random.default_rng(0))
    >>> out = greedy_decode(model, np.array([[4, 5, 6]]), max_len=5)
    >>> len(out.tokens[0]) <= 5, out.attention[0].shape[1]
    (True, 3)

    See Also
    --------
    beam_search : keeps several hypotheses.
    Chapter 4, *Learning to align and translate*, translates with it.
    """
    _check(max_len)
    with no_grad(), evaluating(model):
        logits, state = model.start(np.asarray(src), src_mask=src_mask, bos=bos, use_cache=use_cache)
        B = logits.shape[0]
        out = np.full((B, max_len), PAD, dtype=np.int64)
        lengths = np.full(B, max_len)
        done = np.zeros(B, dtype=bool)
        total = np.zeros(B)
        attention = []
        for t in range(max_len):
            logp = log_softmax(logits, axis=-1)  # (B, V)
            y = logp.argmax(axis=-1)
            total += np.where(done, 0.0, logp[np.arange(B), y])
            out[:, t] = y
            attention.append(state.attention)
            ended = ~done & (y == eos)
            lengths[ended] = t
            done |= ended
            if done.all() or t == max_len - 1:
                break
            logits, state = model.step(state, y)
    att = None if attention[0] is None else np.stack(attention, axis=1)  # (B, t, T_src)
    return Decoded([out[b, : lengths[b]] for b in range(B)], total, total.copy(),
                   None if att is None else [att[b, : lengths[b]] for b in range(B)], done)


def _best_reachable(log_prob, n_min, n_max, length_penalty):
    """The highest score a live hypothesis can still reach: an upper bound, exact for the penalty.

    A hypothesis of log-probability ``log_prob`` (<= 0) that ends at length ``n`` in
    ``[n_min, n_max]`` has log-probability at most ``log_prob`` (every word adds a term <= 0), so
    its score is at most ``log_prob / n**length_penalty``. ``n**length_penalty`` is monotone in
    ``n`` for every real ``length_penalty``, so the largest of these lies at an end of the range.
    """
    return max(log_prob / n_min ** length_penalty, log_prob / n_max ** length_penalty)


def beam_search(model, src, beam_size, max_len, *, src_mask=None, length_penalty=1.0, bos=BOS,
                eos=EOS, use_cache=True):
    """Keep the ``beam_size`` best partial outputs at every step; return the best finished one.

    A hypothesis ends when it emits EOS. Finished hypotheses are ranked by
    ``log_prob / length**length_penalty`` (length counts EOS): 0 ranks by the raw
    log-probability, which favours short outputs; 1 by the mean log-probability per word. This
    is the length normalisation that Wu et al. (2016, GNMT, section 7) start from, dividing by
    ``length**alpha``, before they replace it by ``((5 + length) / 6)**alpha``; there is no
    coverage penalty.

    At every step each of the ``beam_size`` live hypotheses is extended by every word; the
    extensions by EOS that rank among the best join the row's finished hypotheses (the best
    ``beam_size`` are kept) and the ``beam_size`` best other extensions stay live. A row's
    search stops only when it holds ``beam_size`` finished hypotheses and no live one can still
    beat the worst of them: a live hypothesis of log-probability ``s`` and ``t`` words can end
    at no more than ``max(s / (t + 1)**length_penalty, s / max_len**length_penalty)``, since
    further words only lower ``s`` and the penalty is monotone in the length. The bound is
    exact, so the result is the one a search run to ``max_len`` would return (the principle of
    the stopping criterion of Huang, Zhao and Ma, 2017, "When to finish? Optimal beam search
    for neural text generation (modulo beam size)", stated there for the raw log-probability,
    applied here to the normalised score). Stopping at the ``beam_size``-th finished hypothesis
    instead is a search error: a live hypothesis can still end with a better score.

    Rows that finish none within ``max_len`` return their best unfinished one. With
    ``beam_size=1`` the search follows greedy decoding until greedy decoding ends; it then
    returns greedy decoding's output unless the best continuation that does not end there
    finishes with a higher score, so its score is never below that of greedy decoding's output
    under the same length normalisation.

    Parameters
    ----------
    model : Seq2Seq, EncoderDecoderTransformer or CausalLM
    src : ndarray of int, shape (B, T_src)
    beam_size : int
    max_len : int
        Most output words per row (EOS included).
    src_mask : ndarray of bool, shape (B, T_src) or (B, 1, T_src), optional
    length_penalty : float, default 1.0
        The exponent ``alpha`` of the length, any finite number.
    bos, eos : int
    use_cache : bool, default True

    Returns
    -------
    Decoded
        ``scores`` holds the length-normalised scores.

    Raises
    ------
    ValueError
        If ``beam_size`` or ``max_len`` is not a positive integer, or ``length_penalty`` is not
        a finite number.

    Examples
    --------
    >>> from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
    >>> model = Seq2Seq(Seq2SeqConfig(src_vocab=10, tgt_vocab=10), rng=np.random.default_rng(0))
    >>> src = np.array([[4, 5, 6]])
    >>> beam = beam_search(model, src, beam_size=3, max_len=5)
    >>> len(beam.tokens[0]) <= 5, beam.attention[0].shape[1]
    (True, 3)

    See Also
    --------
    greedy_decode : one hypothesis, no second thoughts.
    Chapter 4, *Learning to align and translate*, compares the two.
    """
    _check(beam_size, "beam_size")
    _check(max_len)
    if (isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float, np.number))
            or not np.isfinite(length_penalty)):
        raise ValueError(f"length_penalty must be a finite number (1.0 ranks by the mean "
                         f"log-probability per word), got {length_penalty!r}.")
    K, alpha = int(beam_size), float(length_penalty)
    with no_grad(), evaluating(model):
        logits, state = model.start(np.asarray(src), src_mask=src_mask, bos=bos, use_cache=use_cache)
        B, V = logits.shape
        rows = np.repeat(np.arange(B), K)  # row b * K + k holds beam k of input b
        state = model.select(state, rows)
        logp = log_softmax(logits, axis=-1)[rows]  # (B K, V)
        scores = np.full((B, K), -np.inf)
        scores[:, 0] = 0.0  # all beams start as copies: expand only the first
        tokens = np.zeros((B, K, 0), dtype=np.int64)
        track = state.attention is not None
        att = np.zeros((B, K, 0, state.attention.shape[-1])) if track else None
        finished = [[] for _ in range(B)]  # the best K of (score, log_prob, tokens, attention)
        stopped = np.zeros(B, dtype=bool)  # rows whose search is over
        for t in range(max_len):
            step_att = state.attention.reshape(B, K, 1, -1) if track else None
            cand = (scores[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
            order = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * K]  # best first
            keep_k = np.zeros((B, K), dtype=np.int64)
            keep_y = np.full((B, K), eos, dtype=np.int64)
            new_scores = np.full((B, K), -np.inf)
            for b in np.flatnonzero(~stopped):
                n_alive = 0
                for c in order[b]:
                    k, y = divmod(int(c), V)
                    s = cand[b, c]
                    if s == -np.inf or n_alive == K:
                        break
                    if y == eos:  # length t + 1 counts the EOS
                        hyp = (s / (t + 1) ** alpha, s, tokens[b, k], att[b, k] if track else None)
                        if len(finished[b]) < K:
                            finished[b].append(hyp)
                        else:  # replace the worst kept one if this one is better
                            worst = min(range(K), key=lambda i: finished[b][i][0])
                            if hyp[0] > finished[b][worst][0]:
                                finished[b][worst] = hyp
                    else:
                        keep_k[b, n_alive], keep_y[b, n_alive], new_scores[b, n_alive] = k, y, s
                        n_alive += 1
            parents = (np.arange(B)[:, None], keep_k)  # (B, K) beams that survive
            tokens = np.concatenate([tokens[parents], keep_y[:, :, None]], axis=2)  # (B, K, t + 1)
            if track:
                att = np.concatenate([att[parents], step_att[parents]], axis=2)  # (B, K, t + 1, T_src)
            scores = new_scores
            if t == max_len - 1:
                break
            for b in np.flatnonzero(~stopped):  # live hypotheses have t + 1 words
                best_live = scores[b].max()
                stopped[b] = best_live == -np.inf or (
                    len(finished[b]) == K and min(h[0] for h in finished[b])
                    >= _best_reachable(best_live, t + 2, max_len, alpha))
            if stopped.all():
                break
            state = model.select(state, (parents[0] * K + keep_k).reshape(-1))
            logits, state = model.step(state, keep_y.reshape(-1))
            logp = log_softmax(logits, axis=-1)
        done = np.array([len(f) > 0 for f in finished])
        for b in np.flatnonzero(~done):  # nothing ended within max_len: rank the open beams
            for k in np.flatnonzero(np.isfinite(scores[b])):
                s = scores[b, k]
                finished[b].append((s / tokens.shape[2] ** alpha, s, tokens[b, k],
                                    att[b, k] if track else None))
        best = [max(f, key=lambda h: h[0]) for f in finished]
    return Decoded([h[2] for h in best], np.array([h[1] for h in best]), np.array([h[0] for h in best]),
                   [h[3] for h in best] if track else None, done)
