"""Sequence-to-sequence translation with a recurrent encoder and decoder, with or without attention.

The decoder follows Bahdanau et al. (2015): at step i the attention query is the
*previous* decoder state ``s_{i-1}``, the context ``c_i`` is the weighted average of the
encoder states, the GRU reads ``[E y_{i-1}; c_i]``, and the output layer reads
``[s_i; c_i; E y_{i-1}]``. Without attention, a fixed ``c = tanh([h_fwd_T; h_bwd_1] W_c + b_c)``
takes the place of every ``c_i``; all other parts are the same. The encoder and the
decoder's cell are the GRUs of ``attnbook.gru``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import token_ids, values
from ._kernels import softmax_backward, tanh_backward
from .gru import BiGRUEncoder, GRUCell
from .init import fan_in_uniform
from .nn import Embedding, Linear, Module
from .ops import masked_fill
from .scores import cosine_score, dot_score, general_score, scaled_dot_score
from .softmax import softmax
from .tensor import Tensor, concatenate, node, stack
from .tokens import BOS

__all__ = ["Seq2SeqConfig", "Seq2SeqState", "Seq2Seq", "ATTENTION_KINDS"]

#: The values of the ``attention`` field of :class:`Seq2SeqConfig` (none, or one of the scores).
ATTENTION_KINDS = ("none", "additive", "dot", "scaled_dot", "general", "bilinear", "cosine")


def _additive_energy(s, W_q, K_a, w_v):
    """Bahdanau's energies ``e_j = w_v . tanh(s W_q + K_a[j])`` for one decoder step, one node.

    ``K_a = h W_k`` (B, T, d_a) is computed once per sentence; this is
    ``additive_score(s, h, W_q, W_k, w_v)`` without recomputing ``h W_k`` at every step.
    """
    sd, Wq, K, wv = values(s), values(W_q), values(K_a), values(w_v)
    P = np.tanh((sd @ Wq)[:, None, :] + K)  # (B, T, d_a)
    e = P @ wv  # (B, T)

    def backward(g):
        # e = P w_v, P = tanh(U), U = s W_q + K_a:  dU = g w_v (1 - P^2),  dK_a = dU,
        # dq = sum_j dU,  ds = dq W_q^T,  dW_q = s^T dq,  dw_v = sum_{b,j} g P
        dU = tanh_backward(g[:, :, None] * wv, P)  # (B, T, d_a)
        dq = dU.sum(axis=1)  # (B, d_a)
        return dq @ Wq.T, sd.T @ dq, dU, g.reshape(-1) @ P.reshape(-1, P.shape[-1])

    return node(e, (s, W_q, K_a, w_v), backward, "additive_energy")


def _context(e, h, mask=None):
    """``alpha = softmax(e)`` over the keys, ``c = sum_j alpha_j h_j``: one node.

    Returns the context Tensor (B, D) and the weights as an ndarray (B, T) (no gradient).
    """
    ed, hd = values(e), values(h)
    if mask is not None:
        ed = masked_fill(ed, mask)  # -inf: weight 0
    alpha = softmax(ed, axis=-1)  # (B, T)
    c = (alpha[:, None, :] @ hd)[:, 0]  # (B, D)

    def backward(g):
        dalpha = (hd @ g[:, :, None])[:, :, 0]  # (B, T): c = sum_j alpha_j h_j
        # softmax's backward (Chapter 5): de = alpha * (dalpha - sum(dalpha * alpha))
        return softmax_backward(dalpha, alpha), alpha[:, :, None] * g[:, None, :]

    return node(c, (e, h), backward, "context"), alpha


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Sizes of a :class:`Seq2Seq` model; the defaults are the book's (chapters 1, 2 and 4).

    Attributes
    ----------
    src_vocab, tgt_vocab : int
        Vocabulary sizes (``len(SRC_VOCAB)``, ``len(TGT_VOCAB)``).
    attention : str
        One of ``ATTENTION_KINDS``: "none" (fixed context), "additive" (Bahdanau),
        "dot", "scaled_dot", "general" (alias "bilinear") or "cosine".
    d_emb : int
        Word embedding width (both languages).
    d_enc : int
        GRU width per encoder direction; annotations have width 2 * d_enc.
    d_dec : int
        Decoder GRU width.
    d_attn : int
        Hidden width of the additive score.

    Examples
    --------
    >>> Seq2SeqConfig(src_vocab=60, tgt_vocab=70, attention="none").d_enc
    64

    See Also
    --------
    Seq2Seq : the model it describes.
    Chapter 1, *The bottleneck problem*, configures its models with it.
    """

    src_vocab: int
    tgt_vocab: int
    attention: str = "additive"
    d_emb: int = 32
    d_enc: int = 64
    d_dec: int = 64
    d_attn: int = 64

    def __post_init__(self):
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {self.attention!r}.")
        for name in ("src_vocab", "tgt_vocab", "d_emb", "d_enc", "d_dec", "d_attn"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Seq2SeqConfig.{name} must be a positive integer, got {value!r}.")


@dataclass(frozen=True)
class Seq2SeqState:
    """What the decoder carries between steps (all arrays have the batch first).

    ``h`` the annotations (B, T_src, 2 d_enc); ``keys`` the additive score's ``h W_k`` or
    None; ``context`` the fixed context of the "none" model or None; ``s`` the decoder
    state (B, d_dec); ``mask`` (B, T_src) or None; ``attention`` the last step's weights
    (B, T_src) or None.

    Examples
    --------
    >>> model = Seq2Seq(Seq2SeqConfig(src_vocab=10, tgt_vocab=12), rng=np.random.default_rng(0))
    >>> state = model.encode(np.array([[4, 5, 6], [7, 8, 9]]))
    >>> state.h.shape, state.s.shape
    ((2, 3, 128), (2, 64))
    >>> state.select([1, 1, 0]).s.shape  # beam search repeats and reorders rows
    (3, 64)

    See Also
    --------
    Seq2Seq.step : consumes and returns it.
    """

    h: Tensor
    keys: Tensor | None
    context: Tensor | None
    s: Tensor
    mask: np.ndarray | None
    attention: np.ndarray | None = None

    def select(self, index):
        """Keep (or repeat, or reorder) batch rows ``index``; beam search needs it."""
        def pick(x):
            return None if x is None else x[index]
        return Seq2SeqState(pick(self.h), pick(self.keys), pick(self.context), pick(self.s),
                            pick(self.mask), pick(self.attention))


def _token_mask(src_mask):
    """Accept a (B, T) token mask or a (B, 1, T) attention padding mask; return (B, T) or None.

    A mask with nothing masked (an equal-length batch) becomes None: the cheaper path.
    """
    if src_mask is None:
        return None
    src_mask = np.asarray(src_mask)
    src_mask = src_mask[:, 0, :] if src_mask.ndim == 3 else src_mask
    return None if src_mask.dtype == np.bool_ and src_mask.all() else src_mask


class Seq2Seq(Module):
    """A bidirectional-GRU encoder and a GRU decoder, with or without attention.

    Parameters
    ----------
    config : Seq2SeqConfig
    rng : numpy.random.Generator

    Notes
    -----
    Every variant starts the decoder at ``s_0 = tanh([h_fwd_T; h_bwd_1] W_s + b_s)``
    (Bahdanau et al. use ``h_bwd_1`` alone), so the variants differ only in the context.
    The attention query is always the previous decoder state ``s_{i-1}`` (Bahdanau), so
    the score functions can be compared with everything else fixed. Dot-style scores
    ("dot", "scaled_dot", "cosine") need queries as wide as the keys (2 d_enc); when
    ``d_dec`` differs, the query is first projected by a learned ``W_p`` (d_dec, 2 d_enc),
    which makes "dot" the same family as "general" (``s W_p h^T``). Set
    ``d_dec = 2 * d_enc`` for the parameter-free dot score. The cosine score lies in
    [-1, 1] and has no temperature, so its weights cannot become sharp.

    Attributes
    ----------
    attention_weights : ndarray of shape (B, T_dec, T_src) or None
        The weights of the last ``forward`` (None for "none").

    Examples
    --------
    >>> model = Seq2Seq(Seq2SeqConfig(src_vocab=10, tgt_vocab=12), rng=np.random.default_rng(0))
    >>> logits = model(np.array([[4, 5, 6]]), np.array([[1, 7]]))
    >>> logits.shape, model.attention_weights.shape
    ((1, 2, 12), (1, 2, 3))

    See Also
    --------
    Chapter 1, *The bottleneck problem*, trains the "none" model.
    Chapter 4, *Learning to align and translate*, trains the additive model and reads its
    alignments.
    """

    def __init__(self, config, *, rng):
        c = self.config = config
        d_h = 2 * c.d_enc
        self.src_emb = Embedding(c.src_vocab, c.d_emb, rng=rng)
        self.tgt_emb = Embedding(c.tgt_vocab, c.d_emb, rng=rng)
        self.encoder = BiGRUEncoder(c.d_emb, c.d_enc, rng=rng)
        self.init_state = Linear(d_h, c.d_dec, rng=rng)  # s_0 = tanh([h_fwd_T; h_bwd_1] W_s + b_s)
        kind = c.attention
        if kind == "none":
            self.bridge = Linear(d_h, d_h, rng=rng)  # c = tanh([h_fwd_T; h_bwd_1] W_c + b_c)
        elif kind == "additive":
            self.W_q = fan_in_uniform(rng, (c.d_dec, c.d_attn))
            self.W_k = fan_in_uniform(rng, (d_h, c.d_attn))
            self.w_v = fan_in_uniform(rng, (c.d_attn,), fan_in=c.d_attn)
        elif kind in ("general", "bilinear"):
            self.W = fan_in_uniform(rng, (c.d_dec, d_h))
        else:  # dot-style scores need queries as wide as the keys
            self.W_p = fan_in_uniform(rng, (c.d_dec, d_h)) if c.d_dec != d_h else None
        self.decoder = GRUCell(c.d_emb + d_h, c.d_dec, rng=rng)
        self.out = Linear(c.d_dec + d_h + c.d_emb, c.tgt_vocab, rng=rng)
        self.attention_weights = None

    def encode(self, src, src_mask=None):
        """Encode ``src`` (B, T_src) and return the decoder's initial :class:`Seq2SeqState`.

        ``src_mask`` is (B, T_src) or (B, 1, T_src), True on real tokens (right padding).
        """
        src = token_ids(src, "src")
        mask = _token_mask(src_mask)
        h, summary = self.encoder(self.src_emb(src), mask)
        s = self.init_state(summary).tanh()  # (B, d_dec)
        kind = self.config.attention
        keys = h @ self.W_k if kind == "additive" else None  # (B, T_src, d_attn), once per sentence
        context = self.bridge(summary).tanh() if kind == "none" else None  # (B, 2 d_enc)
        return Seq2SeqState(h, keys, context, s, mask)

    def _scores(self, s, state):
        """Energies of the query ``s_{i-1}`` (B, d_dec) against every annotation: (B, T_src)."""
        kind = self.config.attention
        if kind == "additive":
            return _additive_energy(s, self.W_q, state.keys, self.w_v)
        B, T = state.h.shape[:2]
        q = s.reshape(B, 1, -1)  # (B, 1, d_dec): one query per sentence
        if kind in ("general", "bilinear"):
            e = general_score(q, state.h, self.W)
        else:
            if self.W_p is not None:
                q = q @ self.W_p  # (B, 1, 2 d_enc)
            score = {"dot": dot_score, "scaled_dot": scaled_dot_score, "cosine": cosine_score}[kind]
            e = score(q, state.h)
        return e.reshape(B, T)  # (B, 1, T) -> (B, T)

    def _step(self, state, y):
        """One decoder step from embedded previous words y (B, d_emb): returns s_i, c_i, alpha_i."""
        if state.context is not None:
            c, alpha = state.context, None
        else:
            c, alpha = _context(self._scores(state.s, state), state.h, state.mask)
        return self.decoder([y, c], state.s), c, alpha

    def forward(self, src, tgt_in, src_mask=None):
        """Teacher-forced logits: src (B, T_src), tgt_in (B, T_dec) = ``BOS y`` -> (B, T_dec, V)."""
        state = self.encode(src, src_mask)
        tgt_in = token_ids(tgt_in, "tgt_in")
        B, T_dec = tgt_in.shape
        if state.context is not None:
            # The input [E y_{i-1}; c] is known for every step at once: one fused GRU node.
            y = self.tgt_emb(tgt_in)  # (B, T_dec, d_emb)
            C = state.context.reshape(B, 1, -1) * np.ones((1, T_dec, 1))  # (B, T_dec, 2 d_enc)
            S = self.decoder.sequence(concatenate([y, C], axis=-1), h0=state.s)  # (B, T_dec, d_dec)
            self.attention_weights = None
        else:
            ys, ss, cs, alphas = [], [], [], []
            for i in range(T_dec):
                ys.append(self.tgt_emb(tgt_in[:, i]))  # (B, d_emb)
                s, c, alpha = self._step(state, ys[-1])
                state = Seq2SeqState(state.h, state.keys, None, s, state.mask)
                ss.append(s)
                cs.append(c)
                alphas.append(alpha)
            y, S, C = stack(ys, axis=1), stack(ss, axis=1), stack(cs, axis=1)  # (B, T_dec, .)
            self.attention_weights = np.stack(alphas, axis=1)  # (B, T_dec, T_src)
        return self.out(concatenate([S, C, y], axis=-1))  # (B, T_dec, V)

    def start(self, src, src_mask=None, bos=BOS, use_cache=True):
        """Encode and feed ``bos``: returns (logits (B, V) of the first word, state).

        ``use_cache`` is accepted for the decoders' common interface; a recurrent state
        is its own cache.
        """
        state = self.encode(src, src_mask)
        return self.step(state, np.full(state.s.shape[0], bos, dtype=np.int64))

    def step(self, state, y_prev):
        """Decode one word: y_prev (B,) ids -> (logits (B, V) ndarray, next state)."""
        y = self.tgt_emb(np.asarray(y_prev))  # (B, d_emb)
        s, c, alpha = self._step(state, y)
        logits = self.out(concatenate([s, c, y], axis=-1))  # (B, V)
        return logits.data, Seq2SeqState(state.h, state.keys, state.context, s, state.mask, alpha)

    def select(self, state, index):
        """Reorder the batch rows of a decoding state (beam search)."""
        return state.select(index)
