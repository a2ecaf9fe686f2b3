"""The book's two translation recipes, shared by the chapters that train or reuse them.

A recipe is a frozen configuration and a function that builds, trains and scores a model from
it. Chapters pass both to :func:`attnbook.train.cached`, so a model trained by one chapter is
reused, not retrained, by every later chapter that asks for the same configuration.

- :class:`TranslationRun` and :func:`train_translation`: the recurrent encoder-decoder of
  Part I, with or without attention (chapters 1, 2 and 4; chapter 8 compares against it).
- :class:`TranslatorRun` and :func:`train_translator`: the encoder-decoder Transformer of
  Part II (chapters 6 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batching import bucket_batches, make_batch
from .decoding import greedy_decode
from .losses import cross_entropy
from .metrics import alignment_accuracy, corpus_bleu, exact_match, token_accuracy
from .optim import Adam, warmup_linear
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tasks import SRC_VOCAB, TGT_VOCAB, make_dataset
from .train import fit
from .transformer import EncoderDecoderTransformer, TransformerConfig

__all__ = [
    "TEST_LENGTHS", "TranslationRun", "train_translation", "translation_run",
    "TranslatorRun", "train_translator",
]

#: Source lengths at which every translation model is scored.
TEST_LENGTHS = (4, 8, 12, 16, 20, 24)


@dataclass(frozen=True)
class TranslationRun:
    """Everything that decides a trained recurrent translation model and its scores.

    Examples
    --------
    >>> run = translation_run("additive", d=64, seed=0)
    >>> run.model.attention, run.steps, run.max_len
    ('additive', 700, 20)

    See Also
    --------
    train_translation : trains and scores it.
    Chapter 1, *The bottleneck problem*, explains the recipe; chapter 4 reuses it.
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


def translation_run(attention, d, seed, **changes):
    """The recipe for one recurrent model: attention kind, GRU width ``d``, seed.

    Parameters
    ----------
    attention : str
        One of :data:`attnbook.seq2seq.ATTENTION_KINDS` ("none", "additive", ...).
    d : int
        Width of each encoder direction and of the decoder.
    seed : int
        Seed of the data, the initial weights and the batch order.
    **changes
        Fields of :class:`TranslationRun` to change (``max_len=10``, say).

    Returns
    -------
    TranslationRun

    Raises
    ------
    ValueError
        If ``d`` is not a positive integer or a field name is unknown.
    """
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer width, got {d!r}")
    unknown = set(changes) - set(TranslationRun.__dataclass_fields__)
    if unknown:
        raise ValueError(f"TranslationRun has no field(s) {sorted(unknown)}; "
                         f"choose from {sorted(TranslationRun.__dataclass_fields__)}")
    config = Seq2SeqConfig(len(SRC_VOCAB), len(TGT_VOCAB),
                           attention=attention, d_enc=int(d), d_dec=int(d))
    return TranslationRun(config, seed=seed, **changes)


def train_translation(run):
    """Train one recurrent model on the toy task; score it at every test length.

    Parameters
    ----------
    run : TranslationRun

    Returns
    -------
    model : attnbook.seq2seq.Seq2Seq
    history : attnbook.train.History
        Its ``metrics`` hold ``token_accuracy_L``, ``exact_match_L``, ``bleu_L`` (greedy
        decoding) and, with attention, ``alignment_accuracy_L`` for each L in TEST_LENGTHS.
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
        for L in TEST_LENGTHS:
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
                  clip=run.clip, eval_fn=evaluate)
    return model, history


@dataclass(frozen=True)
class TranslatorRun:
    """Everything that decides the book's Transformer translator (chapters 6 and 8).

    See Also
    --------
    train_translator : trains it.
    Chapter 8, *The Transformer*, explains the recipe; chapter 6 reads its heads.
    """

    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    norm: str = "post"  # the paper's placement
    steps: int = 700
    batch: int = 32
    peak: float = 3e-3  # Adam's largest rate: linear warm-up, then linear decay to zero
    warmup: int = 100
    label_smoothing: float = 0.1
    clip: float = 1.0  # global gradient-norm bound
    seed: int = 0


def train_translator(run):
    """Train the Transformer translator on fresh toy sentences of 2 to 20 words.

    Parameters
    ----------
    run : TranslatorRun

    Returns
    -------
    model : attnbook.transformer.EncoderDecoderTransformer
    history : attnbook.train.History
    """
    rng_init, rng_data = np.random.default_rng(run.seed).spawn(2)
    config = TransformerConfig(
        vocab=len(SRC_VOCAB), tgt_vocab=len(TGT_VOCAB), d_model=run.d_model,
        n_heads=run.n_heads, d_ff=run.d_ff, n_layers=run.n_layers, norm=run.norm,
        positions="sinusoidal")
    model = EncoderDecoderTransformer(config, rng=rng_init)

    def batches():
        while True:  # fresh sentences; the sources of one batch have one length
            length = int(rng_data.integers(2, 21))
            data = make_dataset(rng_data, run.batch, length, length)
            yield make_batch(data.src, data.tgt)

    def loss_fn(model, batch):
        logits = model(batch.src, batch.tgt_in, batch.src_mask)  # (B, T_dec, V)
        return cross_entropy(logits, batch.tgt_out, mask=batch.tgt_mask,
                             label_smoothing=run.label_smoothing)

    adam = Adam(model.parameters(), lr=run.peak, betas=(0.9, 0.98), eps=1e-9)
    schedule = warmup_linear(run.peak, run.warmup, run.steps)
    history = fit(model, batches(), loss_fn, adam, run.steps, schedule=schedule,
                  clip=run.clip)
    return model, history
