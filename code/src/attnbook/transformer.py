"""Small Transformers: encoder and decoder blocks, an encoder-decoder model and a causal language model.

A block reads like its equations. Post-LN (the paper) normalises after each residual
addition, ``x = LN(x + Sublayer(x))``; pre-LN (common practice, easier to train)
normalises the sublayer's input, ``x = x + Sublayer(LN(x))``, and adds one final
LayerNorm after the last block. Positional information is a choice:

* "none": nothing (the causal mask alone breaks the symmetry of a language model);
* "sinusoidal": ``sinusoidal_positions`` added to the embeddings;
* "learned": a trained table of ``max_len`` position vectors added to the embeddings;
* "rope": queries and keys of every self-attention rotated by ``apply_rope``;
* "alibi": ``alibi_bias`` added to every self-attention's scores (in an encoder the
  bias is symmetric, ``-slope * |i - j|``).

Token embeddings are multiplied by ``sqrt(d_model)`` as in the paper (they are
initialised with standard deviation ``d_model**-0.5``, so the product has entries of
unit scale).

Dropout (``TransformerConfig.dropout``, 0 by default) goes where the paper puts it
(Vaswani et al., 2017, section 5.4): on every sublayer's output before it is added to the
residual stream, and on the sums of the embeddings and the positional encodings. With
``n_kv_heads < n_heads`` every attention is grouped-query attention.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ._checks import check_dropout_p, token_ids
from .kvcache import KVCache
from .masks import causal_mask
from .nn import Dropout, Embedding, FeedForward, LayerNorm, Linear, Module, MultiHeadAttention
from .positions import alibi_bias, sinusoidal_positions
from .tokens import BOS
from .tensor import Tensor

__all__ = [
    "TransformerConfig", "EncoderBlock", "DecoderBlock", "EncoderDecoderTransformer", "CausalLM",
    "TransformerState", "POSITIONS", "NORMS",
]

#: The values of the ``positions`` field of :class:`TransformerConfig`.
POSITIONS = ("none", "sinusoidal", "learned", "rope", "alibi")
#: The values of the ``norm`` field of :class:`TransformerConfig`, layer norm after (post) or
#: before (pre) each sublayer.
NORMS = ("post", "pre")


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and choices of a Transformer; the defaults are the book's small models.

    Attributes
    ----------
    vocab : int
        Vocabulary size of a language model, or the source vocabulary of an
        encoder-decoder.
    tgt_vocab : int or None
        Target vocabulary of an encoder-decoder (None: the same as ``vocab``).
    d_model, n_heads, d_ff, n_layers : int
        Width, heads per attention, feed-forward width, blocks per stack.
    n_kv_heads : int or None
        Key/value heads of every attention (grouped-query attention); must divide
        ``n_heads``. None: ``n_heads`` (multi-head attention); 1: multi-query attention.
    norm : {"pre", "post"}
    positions : {"none", "sinusoidal", "learned", "rope", "alibi"}
    max_len : int
        Size of the learned position table (other schemes have no limit).
    rope_base : float
    dropout : float
        Dropout probability in [0, 1) on every sublayer's output and on the embeddings
        plus positions (0: no dropout, and no random numbers drawn).

    Examples
    --------
    >>> TransformerConfig(vocab=60, positions="alibi").d_model
    64

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, compares the position schemes.
    """

    vocab: int
    tgt_vocab: int | None = None
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    norm: str = "pre"
    positions: str = "sinusoidal"
    max_len: int = 512
    rope_base: float = 10000.0
    n_kv_heads: int | None = None
    dropout: float = 0.0

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}.")
        for name in ("vocab", "d_model", "n_heads", "d_ff", "n_layers", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive integer, got {value!r}.")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; choose n_heads "
                "dividing d_model."
            )
        if self.n_kv_heads is not None and (
                not isinstance(self.n_kv_heads, (int, np.integer)) or self.n_kv_heads < 1
                or self.n_heads % self.n_kv_heads):
            raise ValueError(
                f"TransformerConfig.n_kv_heads must be a positive integer dividing n_heads={self.n_heads} "
                f"(or None for n_heads), got {self.n_kv_heads!r}."
            )
        check_dropout_p(self.dropout)
        width = self.d_model // self.n_heads if self.positions == "rope" else self.d_model
        if self.positions in ("sinusoidal", "rope") and width % 2:
            raise ValueError(
                f"positions={self.positions!r} needs an even width (d_model, or d_model / n_heads for "
                f"RoPE), got d_model={self.d_model}, n_heads={self.n_heads}."
            )

    def kv_cache_bytes_per_token(self, dtype=np.float64):
        """Bytes of keys and values cached per token of one sequence, summed over a decoder's layers.

        ``n_layers * 2 * n_kv_heads * d_head * itemsize``: every layer caches a key and a
        value of width ``d_head`` per key/value head. (An encoder-decoder's cross-attention
        caches the same per source token.)

        Parameters
        ----------
        dtype : numpy dtype, default float64

        Returns
        -------
        int

        Examples
        --------
        >>> TransformerConfig(vocab=10, n_heads=4).kv_cache_bytes_per_token()  # 2 * 2 * 4 * 16 * 8
        2048
        >>> TransformerConfig(vocab=10, n_heads=4, n_kv_heads=1).kv_cache_bytes_per_token()
        512

        See Also
        --------
        attnbook.kvcache.KVCache.bytes_per_token : the same, measured on one layer's cache.
        Chapter 9, *The cost of attention*, compares it across n_kv_heads.
        """
        n_kv_heads = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        d_head = self.d_model // self.n_heads
        return self.n_layers * 2 * n_kv_heads * d_head * np.dtype(dtype).itemsize


@functools.lru_cache(maxsize=16)
def _sinusoid_table(T, d):
    table = sinusoidal_positions(T, d)
    table.flags.writeable = False
    return table


def _sinusoids(start, stop, d):
    """Rows start..stop-1 of the sinusoidal table, from a cached table of a power-of-two size."""
    return _sinusoid_table(1 << (stop - 1).bit_length(), d)[start:stop]


class _Positions(Module):
    """Embeds tokens and adds (or prepares) positional information for one stack."""

    def __init__(self, vocab, cfg, rng):
        self.cfg = cfg
        self.tok = Embedding(vocab, cfg.d_model, rng=rng, std=cfg.d_model**-0.5)
        if cfg.positions == "learned":
            self.pos = Embedding(cfg.max_len, cfg.d_model, rng=rng, std=0.02)
        self.drop = Dropout(cfg.dropout, rng=rng)

    def embed(self, ids, offset=0):
        """ids (B, T) at positions offset..offset+T-1 -> (B, T, d_model)."""
        cfg = self.cfg
        T = ids.shape[1]
        x = self.tok(ids) * math.sqrt(cfg.d_model)  # (B, T, d_model)
        if cfg.positions == "sinusoidal":
            x = x + _sinusoids(offset, offset + T, cfg.d_model)
        elif cfg.positions == "learned":
            if offset + T > cfg.max_len:
                raise ValueError(
                    f"learned positions exist only for 0..{cfg.max_len - 1}, but position {offset + T - 1} "
                    "was asked for; build the model with a larger max_len or use another scheme."
                )
            x = x + self.pos(np.arange(offset, offset + T))
        return self.drop(x)  # dropout on the sums of embeddings and positions

    def self_attention(self, T_q, T_k, causal):
        """Mask, bias and positions for a self-attention of T_q new queries over T_k keys."""
        cfg = self.cfg
        mask = causal_mask(T_q, T_k) if causal and T_q > 1 else None
        bias = alibi_bias(cfg.n_heads, T_q, T_k) if cfg.positions == "alibi" else None
        positions = np.arange(T_k - T_q, T_k) if cfg.positions == "rope" else None
        return mask, bias, positions


def _attn(cfg, rng, rope=False):
    return MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, rng=rng, rope=rope,
                              rope_base=cfg.rope_base)


class EncoderBlock(Module):
    """Self-attention then a feed-forward network, each with a residual connection and a LayerNorm.

    With a causal mask this is also the block of a decoder-only language model.

    Examples
    --------
    >>> block = EncoderBlock(TransformerConfig(vocab=10, d_model=8, n_heads=2, d_ff=16),
    ...                      rng=np.random.default_rng(0))
    >>> block(np.ones((2, 5, 8))).shape
    (2, 5, 8)

    See Also
    --------
    Chapter 8, *The Transformer*, assembles it.
    """

    def __init__(self, cfg, *, rng):
        self.attn = _attn(cfg, rng, rope=cfg.positions == "rope")
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, rng=rng)
        self.norm1, self.norm2 = LayerNorm(cfg.d_model), LayerNorm(cfg.d_model)
        self.drop = Dropout(cfg.dropout, rng=rng)  # on each sublayer's output
        self.pre = cfg.norm == "pre"

    def forward(self, x, mask=None, bias=None, positions=None, cache=None):
        """x : (B, T, d_model) -> (B, T, d_model); mask/bias/positions/cache as for MultiHeadAttention."""
        kw = dict(mask=mask, bias=bias, positions=positions, cache=cache)
        drop = self.drop
        if self.pre:
            y = self.norm1(x)
            x = x + drop(self.attn(y, y, y, **kw)[0])
            return x + drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + drop(self.attn(x, x, x, **kw)[0]))
        return self.norm2(x + drop(self.ffn(x)))


class DecoderBlock(Module):
    """Causal self-attention, cross-attention to the encoder's memory, feed-forward; each residual.

    Examples
    --------
    >>> block = DecoderBlock(TransformerConfig(vocab=10, d_model=8, n_heads=2, d_ff=16),
    ...                      rng=np.random.default_rng(0))
    >>> block(np.ones((2, 3, 8)), np.ones((2, 5, 8)), self_mask=causal_mask(3)).shape
    (2, 3, 8)

    See Also
    --------
    Chapter 8, *The Transformer*, assembles it.
    """

    def __init__(self, cfg, *, rng):
        self.self_attn = _attn(cfg, rng, rope=cfg.positions == "rope")
        self.cross_attn = _attn(cfg, rng)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, rng=rng)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(cfg.d_model) for _ in range(3))
        self.drop = Dropout(cfg.dropout, rng=rng)  # on each sublayer's output
        self.pre = cfg.norm == "pre"

    def forward(self, x, memory, self_mask=None, memory_mask=None, bias=None, positions=None,
                caches=(None, None)):
        """x (B, T, d_model), memory (B, T_src, d_model) -> (B, T, d_model).

        ``memory_mask`` is the source padding mask (B, 1, T_src); ``caches`` are the
        self-attention and (static) cross-attention caches when decoding step by step.
        """
        self_kw = dict(mask=self_mask, bias=bias, positions=positions, cache=caches[0])
        cross_kw = dict(mask=memory_mask, cache=caches[1])
        drop = self.drop
        if self.pre:
            y = self.norm1(x)
            x = x + drop(self.self_attn(y, y, y, **self_kw)[0])
            y = self.norm2(x)
            x = x + drop(self.cross_attn(y, memory, memory, **cross_kw)[0])
            return x + drop(self.ffn(self.norm3(x)))
        x = self.norm1(x + drop(self.self_attn(x, x, x, **self_kw)[0]))
        x = self.norm2(x + drop(self.cross_attn(x, memory, memory, **cross_kw)[0]))
        return self.norm3(x + drop(self.ffn(x)))


@dataclass(frozen=True)
class TransformerState:
    """What incremental decoding carries: the tokens so far (B, t), per-layer caches (None to
    recompute from scratch every step), the encoder memory and source mask (encoder-decoder
    only), and the last step's attention over the source (B, T_src), averaged over heads.

    Examples
    --------
    >>> lm = CausalLM(TransformerConfig(vocab=9, d_model=8, n_heads=2, d_ff=8), rng=np.random.default_rng(0))
    >>> logits, state = lm.start(np.array([[4, 5, 6]]))
    >>> state.tokens.shape, len(state.caches[0])
    ((1, 3), 3)

    See Also
    --------
    attnbook.decoding : decodes with it.
    """

    tokens: np.ndarray
    caches: list | None
    memory: np.ndarray | None = None
    memory_mask: np.ndarray | None = None
    attention: np.ndarray | None = None

    def select(self, index):
        """Keep (or repeat, or reorder) batch rows ``index``; beam search needs it."""
        caches = None if self.caches is None else [
            layer.select(index) if isinstance(layer, KVCache) else tuple(c.select(index) for c in layer)
            for layer in self.caches]
        def pick(x):
            return None if x is None else x[index]
        return TransformerState(self.tokens[index], caches, pick(self.memory), pick(self.memory_mask),
                                pick(self.attention))


def _values(x):
    return x.data if isinstance(x, Tensor) else x


def _key_mask(src_mask):
    """A (B, T_src) token mask becomes the (B, 1, T_src) padding mask attention expects."""
    if src_mask is None:
        return None
    src_mask = np.asarray(src_mask)
    return src_mask[:, None, :] if src_mask.ndim == 2 else src_mask


class EncoderDecoderTransformer(Module):
    """The Transformer of "Attention is all you need", small: an encoder stack and a decoder stack.

    Parameters
    ----------
    config : TransformerConfig
        ``vocab`` is the source vocabulary, ``tgt_vocab`` the target one.
    rng : numpy.random.Generator

    Examples
    --------
    >>> cfg = TransformerConfig(vocab=10, tgt_vocab=12, d_model=16, n_heads=2, d_ff=32)
    >>> model = EncoderDecoderTransformer(cfg, rng=np.random.default_rng(0))
    >>> model(np.array([[4, 5, 6]]), np.array([[1, 7]])).shape
    (1, 2, 12)
    >>> model.decoder[0].cross_attn.weights.shape  # (B, n_heads, T_tgt, T_src)
    (1, 2, 2, 3)

    See Also
    --------
    Chapter 8, *The Transformer*, trains it.
    """

    def __init__(self, config, *, rng):
        cfg = self.config = config
        self.src_embed = _Positions(cfg.vocab, cfg, rng)
        self.tgt_embed = _Positions(cfg.tgt_vocab or cfg.vocab, cfg, rng)
        self.encoder = [EncoderBlock(cfg, rng=rng) for _ in range(cfg.n_layers)]
        self.decoder = [DecoderBlock(cfg, rng=rng) for _ in range(cfg.n_layers)]
        if cfg.norm == "pre":
            self.enc_norm, self.dec_norm = LayerNorm(cfg.d_model), LayerNorm(cfg.d_model)
        self.out = Linear(cfg.d_model, cfg.tgt_vocab or cfg.vocab, rng=rng)

    def encode(self, src, src_mask=None):
        """src (B, T_src) ids, src_mask (B, T_src) or (B, 1, T_src) -> memory (B, T_src, d_model)."""
        src = token_ids(src, "src")
        x = self.src_embed.embed(src)
        _, bias, positions = self.src_embed.self_attention(src.shape[1], src.shape[1], causal=False)
        for block in self.encoder:
            x = block(x, mask=_key_mask(src_mask), bias=bias, positions=positions)
        return self.enc_norm(x) if self.config.norm == "pre" else x

    def decode(self, tgt_in, memory, src_mask=None, caches=None, offset=0):
        """tgt_in (B, T) ids at positions offset.. -> logits (B, T, V); caches for step-by-step decoding."""
        tgt_in = token_ids(tgt_in, "tgt_in")
        T = tgt_in.shape[1]
        x = self.tgt_embed.embed(tgt_in, offset)
        mask, bias, positions = self.tgt_embed.self_attention(T, offset + T, causal=True)
        for i, block in enumerate(self.decoder):
            x = block(x, memory, self_mask=mask, memory_mask=_key_mask(src_mask), bias=bias,
                      positions=positions, caches=caches[i] if caches else (None, None))
        return self.out(self.dec_norm(x) if self.config.norm == "pre" else x)

    def forward(self, src, tgt_in, src_mask=None):
        """Teacher-forced logits: src (B, T_src), tgt_in (B, T_tgt) = ``BOS y`` -> (B, T_tgt, V)."""
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def start(self, src, src_mask=None, bos=BOS, use_cache=True):
        """Encode and feed ``bos``: returns (logits (B, V) for the first word, TransformerState).

        With ``use_cache=False`` every later step recomputes the whole prefix.
        """
        memory = _values(self.encode(src, src_mask))
        B = memory.shape[0]
        caches = [(KVCache(), KVCache(static=True)) for _ in self.decoder] if use_cache else None
        state = TransformerState(np.zeros((B, 0), dtype=np.int64), caches, memory, _key_mask(src_mask))
        return self.step(state, np.full(B, bos, dtype=np.int64))

    def step(self, state, y_prev):
        """Feed the previous words y_prev (B,): returns (logits (B, V), the next state)."""
        y_prev = np.asarray(y_prev, dtype=np.int64)
        tokens = np.concatenate([state.tokens, y_prev[:, None]], axis=1)  # (B, t + 1)
        if state.caches is None:
            logits = self.decode(tokens, state.memory, state.memory_mask)
        else:
            logits = self.decode(y_prev[:, None], state.memory, state.memory_mask, state.caches,
                                 offset=state.tokens.shape[1])
        attention = self.decoder[-1].cross_attn.weights[:, :, -1].mean(axis=1)  # (B, T_src)
        return (_values(logits)[:, -1],
                TransformerState(tokens, state.caches, state.memory, state.memory_mask, attention))

    def select(self, state, index):
        """Reorder the batch rows of a decoding state (beam search)."""
        return state.select(index)


class CausalLM(Module):
    """A decoder-only language model: causal self-attention blocks, next-token logits.

    Parameters
    ----------
    config : TransformerConfig
    rng : numpy.random.Generator

    Examples
    --------
    >>> lm = CausalLM(TransformerConfig(vocab=20, d_model=16, n_heads=2, d_ff=32, positions="alibi"),
    ...               rng=np.random.default_rng(0))
    >>> lm(np.array([[4, 5, 6, 7]])).shape
    (1, 4, 20)

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, trains one per positional scheme.
    """

    def __init__(self, config, *, rng):
        cfg = self.config = config
        self.embed = _Positions(cfg.vocab, cfg, rng)
        self.blocks = [EncoderBlock(cfg, rng=rng) for _ in range(cfg.n_layers)]
        if cfg.norm == "pre":
            self.final_norm = LayerNorm(cfg.d_model)
        self.out = Linear(cfg.d_model, cfg.vocab, rng=rng)

    def forward(self, ids, caches=None, offset=0):
        """ids (B, T) at positions offset.. -> logits (B, T, V); caches for step-by-step decoding."""
        ids = token_ids(ids, "ids")
        T = ids.shape[1]
        x = self.embed.embed(ids, offset)
        mask, bias, positions = self.embed.self_attention(T, offset + T, causal=True)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, bias=bias, positions=positions, cache=caches[i] if caches else None)
        return self.out(self.final_norm(x) if self.config.norm == "pre" else x)

    def start(self, prompt, src_mask=None, bos=None, use_cache=True):
        """Read a prompt (B, T_p) of equal lengths: returns (logits (B, V) of the next token, state).

        ``bos`` is ignored (the prompt supplies the first inputs); it is accepted so that
        every model has the same decoding interface.
        """
        prompt = np.asarray(prompt, dtype=np.int64)
        if src_mask is not None and not np.asarray(src_mask).all():
            raise ValueError("CausalLM.start needs prompts of equal length (no padding); group them by length.")
        caches = [KVCache() for _ in self.blocks] if use_cache else None
        logits = self.forward(prompt, caches)
        return _values(logits)[:, -1], TransformerState(prompt, caches)

    def step(self, state, y_prev):
        """Feed the previous tokens y_prev (B,): returns (logits (B, V), the next state)."""
        y_prev = np.asarray(y_prev, dtype=np.int64)
        tokens = np.concatenate([state.tokens, y_prev[:, None]], axis=1)  # (B, t + 1)
        if state.caches is None:
            logits = self.forward(tokens)
        else:
            logits = self.forward(y_prev[:, None], state.caches, offset=state.tokens.shape[1])
        return _values(logits)[:, -1], TransformerState(tokens, state.caches)

    def select(self, state, index):
        """Reorder the batch rows of a decoding state (beam search)."""
        return state.select(index)
