"""attnbook: the mathematics of attention as small, tested, differentiable NumPy functions.

Every function works on plain ndarrays (fast, for figures) and on attnbook's own
autograd ``Tensor`` (for training), with one body of code for both.

On glibc (Linux), importing attnbook raises two thresholds of the C library's allocator so
that the autograd's freed arrays stay mapped instead of being faulted in again at every step
(1.7 to 2.3 times as fast in bench/autograd_speed.py; no number changes). Set the environment
variable ``ATTNBOOK_NO_MALLOPT=1`` before the import to keep glibc's defaults.
"""

__version__ = "0.1.0"

# Keep freed buffers mapped on glibc (faster autograd; numbers unchanged). Opt out with
# ATTNBOOK_NO_MALLOPT=1; see attnbook/_malloc.py.
from . import _malloc

_malloc.configure()

from .attention import merge_heads, multi_head_attention, scaled_dot_product_attention, split_heads
from .flash import flash_attention
from .gradcheck import gradcheck
from .masks import causal_mask, padding_mask
from .norm import layer_norm
from .positions import alibi_bias, alibi_slopes, apply_rope, sinusoidal_positions
from .scores import additive_score, cosine_score, dot_score, general_score, scaled_dot_score
from .softmax import log_softmax, softmax
from .tensor import Tensor, concatenate, no_grad, stack, where

# The training stack and the data the book trains on, as submodules: attnbook.nn, attnbook.gru, ...
# (The book's training recipes are not part of the package: see the book_recipes package.)
from . import (batching, cache, decoding, dropout, gru, init, kvcache, losses, metrics, nn, optim,
               runtime, seq2seq, style, tasks, tokens, train, transformer)

__all__ = [
    "__version__",
    # autograd
    "Tensor", "no_grad", "concatenate", "stack", "where", "gradcheck",
    # softmax and masks
    "softmax", "log_softmax", "causal_mask", "padding_mask",
    # scores
    "dot_score", "scaled_dot_score", "general_score", "additive_score", "cosine_score",
    # attention
    "scaled_dot_product_attention", "multi_head_attention", "split_heads", "merge_heads",
    "flash_attention",
    # normalisation and positions
    "layer_norm", "sinusoidal_positions", "alibi_slopes", "alibi_bias", "apply_rope",
]
