"""The recurrent translation recipe of Part I: a GRU encoder-decoder, with or without attention.

Chapters 1 and 4 train it on the toy English-to-French task, chapter 2 at a smaller size with
five alignment scores, and chapter 8 compares the Transformer against it. Every chapter builds
its configuration with :func:`rnn_translation_run` and passes it, with
:func:`train_rnn_translation`, to :func:`attnbook.cache.cached`, so a model trained by one
chapter is reused, not retrained, by every later chapter that asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbook.batching import bucket_batches, make_batch
from attnbook.decoding import greedy_decode
from attnbook.losses import cross_entropy
from attnbook.metrics import alignment_accuracy, corpus_bleu, exact_match, token_accuracy
from attnbook.optim import Adam, warmup_linear
from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
from attnbook.tasks import SRC_VOCAB, TGT_VOCAB, make_dataset
from attnbook.train import fit

__all__ = ["TEST_LENGTHS", "RNNTranslationRun", "rnn_translation_run", "train_rnn_translation"]

#: Source lengths at which every translation model is scored.
TEST_LENGTHS = (4, 8, 12, 16, 20, 24)


@dataclass(frozen=True)
class RNNTranslationRun:
    """Everything that decides a trained recurrent translation model and its scores.

    Build it with :func:`rnn_translation_run`, so that two chapters asking for the same
    model spell its configuration the same way.

    Examples
    --------
    >>> run = rnn_translation_run("additive", d=64, seed=0)
    >>> run.model.attention, run.steps, run.max_len
    ('additive', 700, 20)

    See Also
    --------
    train_rnn_translation : trains and scores it.
    Chapter 1, *The bottleneck problem*, explains the recipe; chapters 2, 4 and 8 reuse it.
    """

    model: Seq2SeqConfig
    seed: int
    steps: int = 700
    batch_size: int = 32
    lr: float = 6e-3  # Adam's peak rate, decayed linearly to zero
    clip: float = 1.0  # bound on the global gradient norm
    n_train: int = 8000
    min_len: int = 2
    max_len: int = 20
    test_seed: int = 2015  # the same held-out sentences for every model
    n_test: int = 200  # sentences per test length
    test_lengths: tuple = TEST_LENGTHS  # () skips the scoring (chapter 2 scores its own way)


def rnn_translation_run(attention, d, seed, *, d_dec=None, **changes):
    """The recipe for one recurrent model: attention kind, GRU width ``d``, seed.

    Parameters
    ----------
    attention : str
        One of :data:`attnbook.seq2seq.ATTENTION_KINDS` ("none", "additive", ...).
    d : int
        Width of each encoder direction (and of the decoder, unless ``d_dec`` is given).
    seed : int
        Seed of the data, the initial weights and the batch order.
    d_dec : int, optional
        Width of the decoder; ``2 * d`` makes it as wide as the encoder's annotations.
    **changes
        Fields of :class:`RNNTranslationRun` to change (``max_len=10``, say).

    Returns
    -------
    RNNTranslationRun

    Raises
    ------
    ValueError
        If ``d`` or ``d_dec`` is not a positive integer or a field name is unknown.

    Examples
    --------
    >>> run = rnn_translation_run("dot", 32, seed=1, d_dec=64, max_len=8)
    >>> run.model.d_enc, run.model.d_dec, run.max_len
    (32, 64, 8)

    See Also
    --------
    train_rnn_translation : trains and scores the model.
    Chapter 1, *The bottleneck problem*, explains the recipe.
    """
    d_dec = d if d_dec is None else d_dec
    for name, value in (("d", d), ("d_dec", d_dec)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer width, got {value!r}")
    changeable = set(RNNTranslationRun.__dataclass_fields__) - {"model", "seed"}
    unknown = set(changes) - changeable
    if unknown:
        raise ValueError(f"RNNTranslationRun has no field(s) {sorted(unknown)} to change; choose "
                         f"from {sorted(changeable)} (the model's widths come from d and d_dec)")
    config = Seq2SeqConfig(len(SRC_VOCAB), len(TGT_VOCAB),
                           attention=attention, d_enc=int(d), d_dec=int(d_dec))
    return RNNTranslationRun(config, seed=seed, **changes)


def train_rnn_translation(run):
    """Train one recurrent model on the toy task; score it at every test length.

    Parameters
    ----------
    run : RNNTranslationRun

    Returns
    -------
    model : attnbook.seq2seq.Seq2Seq
    history : attnbook.train.History
        Its ``metrics`` hold ``token_accuracy_L``, ``exact_match_L``, ``bleu_L`` (greedy
        decoding) and, with attention, ``alignment_accuracy_L`` for each L in
        ``run.test_lengths``.

    Examples
    --------
    >>> run = rnn_translation_run("additive", 8, seed=0, steps=2, n_train=64, test_lengths=(4,))
    >>> model, history = train_rnn_translation(run)
    >>> len(history.losses), sorted(history.metrics)[:2]
    (2, ['alignment_accuracy_4', 'bleu_4'])

    See Also
    --------
    attnbook.cache.cached : trains it once per build.
    Chapter 1, *The bottleneck problem*, explains the recipe.
    """
    rng = np.random.default_rng(run.seed)
    data = make_dataset(rng, run.n_train, run.min_len, run.max_len)
    lengths = np.array([len(s) for s in data.src])

    def batches():  # reshuffled every pass; one source length per batch
        while True:
            for idx in bucket_batches(lengths, run.batch_size, rng):
                yield make_batch([data.src[i] for i in idx],
                                 [data.tgt[i] for i in idx])

    def loss_fn(model, batch):
        logits = model(batch.src, batch.tgt_in)  # (B, T_dec, V)
        return cross_entropy(logits, batch.tgt_out, mask=batch.tgt_mask)

    def evaluate(model):
        test_rng, scores = np.random.default_rng(run.test_seed), {}
        for L in run.test_lengths:
            test = make_dataset(test_rng, run.n_test, L, L)
            src = np.stack(test.src)  # (n_test, L)
            out = greedy_decode(model, src, max_len=2 * L + 10)
            hyps = [t.tolist() for t in out.tokens]
            refs = [t.tolist() for t in test.tgt]
            scores[f"token_accuracy_{L}"] = token_accuracy(hyps, refs)
            scores[f"exact_match_{L}"] = exact_match(hyps, refs)
            scores[f"bleu_{L}"] = corpus_bleu(hyps, refs)
            if model.config.attention == "none":
                continue
            # Where the model looks while it is fed the reference words.
            batch = make_batch(test.src, test.tgt)
            model(batch.src, batch.tgt_in)
            weights = model.attention_weights  # (n_test, T_dec, L)
            steps = np.arange(weights.shape[1])
            words = steps < batch.tgt_lengths[:, None] - 1  # not EOS or PAD
            true = np.zeros(words.shape, dtype=np.int64)  # (n_test, T_dec)
            for b, a in enumerate(test.align):
                true[b, : len(a)] = a
            scores[f"alignment_accuracy_{L}"] = alignment_accuracy(
                weights, true, mask=words)
        return scores

    model = Seq2Seq(run.model, rng=rng)
    optimizer = Adam(model.parameters(), lr=run.lr)
    history = fit(model, batches(), loss_fn, optimizer, run.steps,
                  schedule=warmup_linear(run.lr, 0, run.steps),
                  clip=run.clip, eval_fn=evaluate if run.test_lengths else None)
    return model, history
