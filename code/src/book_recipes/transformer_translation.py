"""The Transformer translation recipe of Part II: the encoder-decoder of chapter 8.

Chapter 8 trains it and chapter 6 reads its heads, both through :func:`attnbook.cache.cached`,
so it is trained once per build.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbook.batching import make_batch
from attnbook.losses import cross_entropy
from attnbook.optim import Adam, warmup_linear
from attnbook.tasks import SRC_VOCAB, TGT_VOCAB, make_dataset
from attnbook.train import fit
from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig

__all__ = ["TransformerTranslationRun", "train_transformer_translation"]


@dataclass(frozen=True)
class TransformerTranslationRun:
    """Everything that decides the book's Transformer translator (chapters 6 and 8).

    Examples
    --------
    >>> run = TransformerTranslationRun()
    >>> run.d_model, run.n_heads, run.norm, run.steps
    (64, 4, 'post', 700)

    See Also
    --------
    train_transformer_translation : trains it.
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
    max_words: int = 20  # training sentences have 2 to max_words words
    positions: str = "sinusoidal"  # the paper's; "alibi" or "rope" for chapter 8's comparison
    dropout: float = 0.0  # the paper's base model uses 0.1; chapter 8 measures both
    seed: int = 0


def train_transformer_translation(run):
    """Train the Transformer translator on fresh toy sentences of 2 to ``run.max_words`` words.

    Parameters
    ----------
    run : TransformerTranslationRun

    Returns
    -------
    model : attnbook.transformer.EncoderDecoderTransformer
    history : attnbook.train.History

    Examples
    --------
    >>> run = TransformerTranslationRun(d_model=8, n_heads=2, d_ff=8, n_layers=1, steps=2,
    ...                                 warmup=1, batch=4)
    >>> model, history = train_transformer_translation(run)
    >>> len(history.losses), model.config.d_model
    (2, 8)

    See Also
    --------
    attnbook.cache.cached : trains it once per build.
    Chapter 8, *The Transformer*, explains the recipe.
    """
    rng_init, rng_data = np.random.default_rng(run.seed).spawn(2)
    config = TransformerConfig(
        vocab=len(SRC_VOCAB), tgt_vocab=len(TGT_VOCAB), d_model=run.d_model,
        n_heads=run.n_heads, d_ff=run.d_ff, n_layers=run.n_layers, norm=run.norm,
        positions=run.positions, dropout=run.dropout)
    model = EncoderDecoderTransformer(config, rng=rng_init)

    def batches():
        while True:  # fresh sentences; the sources of one batch have one length
            length = int(rng_data.integers(2, run.max_words + 1))
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
