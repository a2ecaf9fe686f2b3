"""Data for the book's trained models: vocabularies, translation pairs, sequence tasks, a toy corpus.

Everything here is a pure function of an ``rng``; vocabularies are fixed by each task's
grammar, so training and test data always agree on ids.
"""

from attnbook.tasks.grammar import GRAMMAR_VOCAB, grammar_corpus, lm_windows
from attnbook.tasks.sequences import KINDS, SequenceData, decoder_only, sequence_task, symbol_vocab
from attnbook.tasks.translation import (
    LEXICON,
    MAX_LEN,
    SRC_VOCAB,
    TGT_VOCAB,
    TranslationData,
    make_dataset,
    sample_pair,
    translate,
)
from attnbook.tasks.vocab import BOS, EOS, PAD, SEP, SPECIALS, Vocab

__all__ = [
    "Vocab", "PAD", "BOS", "EOS", "SEP", "SPECIALS",
    "TranslationData", "sample_pair", "make_dataset", "translate",
    "SRC_VOCAB", "TGT_VOCAB", "LEXICON", "MAX_LEN",
    "SequenceData", "sequence_task", "symbol_vocab", "decoder_only", "KINDS",
    "grammar_corpus", "lm_windows", "GRAMMAR_VOCAB",
]
