"""The book's training recipes: the code of its experiments, apart from the attnbook library.

A recipe is a frozen configuration and a function that builds, trains and scores a model
from it; chapters pass both to :func:`attnbook.cache.cached`, which fingerprints the
function, so editing one recipe retrains only that recipe's models (and editing a recipe
never changes attnbook). attnbook never imports this package.

- :class:`RNNTranslationRun`, :func:`rnn_translation_run`, :func:`train_rnn_translation`:
  the recurrent encoder-decoder of Part I (chapters 1, 2, 4 and 8).
- :class:`TransformerTranslationRun`, :func:`train_transformer_translation`: the
  encoder-decoder Transformer of Part II (chapters 6 and 8).
"""

from .rnn_translation import TEST_LENGTHS, RNNTranslationRun, rnn_translation_run, train_rnn_translation
from .transformer_translation import TransformerTranslationRun, train_transformer_translation

__all__ = [
    "TEST_LENGTHS", "RNNTranslationRun", "rnn_translation_run", "train_rnn_translation",
    "TransformerTranslationRun", "train_transformer_translation",
]
