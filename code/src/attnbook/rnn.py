"""Recurrent encoder-decoder models: a GRU, a bidirectional encoder, and Seq2Seq with a choice of attention.

The GRU follows PyTorch's equations (gates in the order r, z, n; the reset gate
multiplies ``h W_hn + b_hn``, so one matrix product serves all three gates)::

    r = sigmoid(x W_xr + b_xr + h W_hr + b_hr)
    z = sigmoid(x W_xz + b_xz + h W_hz + b_hz)
    n = tanh(x W_xn + b_xn + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

For speed, a whole GRU layer over a sequence is ONE autograd node (``gru_layer``) and a
single decoder step is one node (``gru_cell``); their backward passes are the hand-derived
back-propagation through time written out in ``_step_backward``, checked against finite
differences in the tests.

The decoder follows Bahdanau et al. (2015): at step i the attention query is the
*previous* decoder state ``s_{i-1}``, the context ``c_i`` is the weighted average of the
encoder states, the GRU reads ``[E y_{i-1}; c_i]``, and the output layer reads
``[s_i; c_i; E y_{i-1}]``. Without attention, a fixed ``c = tanh([h_fwd_T; h_bwd_1] W_c + b_c)``
takes the place of every ``c_i``; all other parts are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import tensor as _t
from ._checks import token_ids
from .init import fan_in_uniform, uniform
from .nn import Embedding, Linear, Module
from .scores import cosine_score, dot_score, general_score, scaled_dot_score
from .softmax import softmax
from .tasks.vocab import BOS
from .tensor import Tensor, concatenate, stack

__all__ = ["gru_layer", "gru_cell", "GRUCell", "BiGRUEncoder", "Seq2SeqConfig", "Seq2Seq", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("none", "additive", "dot", "scaled_dot", "general", "bilinear", "cosine")


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)


def _sigmoid(x):
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)).
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _step_forward(gx, h, W_h, b_h):
    """One GRU step on arrays; gx = x W_x + b_x (B, 3H). Returns h' and what backward needs."""
    H = h.shape[-1]
    a = h @ W_h + b_h  # (B, 3H)
    rz = _sigmoid(gx[:, : 2 * H] + a[:, : 2 * H])  # (B, 2H)
    r, z = rz[:, :H], rz[:, H:]
    a_n = a[:, 2 * H :]
    n = np.tanh(gx[:, 2 * H :] + r * a_n)
    return n + z * (h - n), (h, rz, n, a_n)


def _step_backward(g, saved, W_h, dgx, da):
    """Back-propagate dL/dh' = g through one step; fill dgx, da (B, 3H) and return dL/dh.

    With a = h W_h + b_h and gx = x W_x + b_x, the step is r, z = sigmoid(gx_rz + a_rz),
    n = tanh(gx_n + r * a_n), h' = n + z (h - n). The chain rule gives, one line each:

        dn = g (1 - z)             dz = g (h - n)             dh (direct) = g z
        dpre_n = dn (1 - n^2)      ->  dgx_n = dpre_n,  da_n = dpre_n * r,  dr = dpre_n * a_n
        dpre_rz = [dr, dz] * rz (1 - rz)   ->  dgx_rz = da_rz = dpre_rz
        dh = g z + da W_h^T        (and dW_h = h^T da, dW_x = x^T dgx, summed over steps)
    """
    h, rz, n, a_n = saved
    H = h.shape[-1]
    r, z = rz[:, :H], rz[:, H:]
    dpre_n = g * (1.0 - z) * (1.0 - n * n)
    drz = np.concatenate([dpre_n * a_n, g * (h - n)], axis=1) * rz * (1.0 - rz)  # (B, 2H)
    dgx[:, : 2 * H] = drz
    dgx[:, 2 * H :] = dpre_n
    da[:, : 2 * H] = drz
    da[:, 2 * H :] = dpre_n * r  # n's pre-activation sees a_n through r
    return g * z + da @ W_h.T


def _reversal(mask):
    """Index that reverses each row's real (leading) tokens and leaves the padding in place."""
    B, T = mask.shape
    lengths = mask.sum(axis=1)
    t = np.arange(T)
    rev = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return np.arange(B)[:, None], rev


def _check_mask(mask, B, T):
    mask = np.asarray(mask)
    ok = mask.dtype == np.bool_ and mask.shape == (B, T)
    if ok:
        lengths = mask.sum(axis=1)
        ok = lengths.min() >= 1 and bool((mask == (np.arange(T) < lengths[:, None])).all())
    if not ok:
        raise ValueError(
            f"mask must be boolean of shape {(B, T)} with each row True on its first length >= 1 "
            f"tokens (right padding), got dtype {mask.dtype} shape {mask.shape}; "
            "build it as np.arange(T) < lengths[:, None]."
        )
    return mask


def _node(out, parents, backward, op):
    """The result Tensor; ``backward(g)`` returns one gradient per parent (arrays get none)."""
    tensors = tuple(p for p in parents if isinstance(p, Tensor))
    if not (_t.is_grad_enabled() and any(p.requires_grad for p in tensors)):
        return _t._make(out, (), None, op)

    def tensor_backward(g):
        return [d for d, p in zip(backward(g), parents) if isinstance(p, Tensor)]

    return _t._make(out, tensors, tensor_backward, op)


def gru_layer(x, h0, W_x, W_h, b_x, b_h, mask=None, reverse=False):
    """Run a GRU over a whole sequence as one autograd node.

    Parameters
    ----------
    x : Tensor or ndarray of shape (B, T, d_in)
    h0 : Tensor or ndarray of shape (B, H), or None for zeros
    W_x : Tensor of shape (d_in, 3H)
    W_h : Tensor of shape (H, 3H)
    b_x, b_h : Tensor of shape (3H,)
        Gates in the order r, z, n.
    mask : ndarray of bool, shape (B, T), optional
        True on real tokens, right-padded. At padding the state is carried unchanged,
        so ``states[:, -1]`` is each row's state after its last real token.
    reverse : bool, default False
        Read each row's real tokens from last to first (the backward half of a
        bidirectional encoder); ``states[:, t]`` is then the state after reading
        tokens ``t..L-1``.

    Returns
    -------
    Tensor of shape (B, T, H)
        The state after each token.

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> gru_layer(np.ones((2, 5, 3)), None, cell.W_x, cell.W_h, cell.b_x, cell.b_h).shape
    (2, 5, 4)

    See Also
    --------
    Chapter 1, *The bottleneck problem*, reads sentences with it.
    """
    X = _data(x)
    Wx, Wh, bx, bh = _data(W_x), _data(W_h), _data(b_x), _data(b_h)
    if X.ndim != 3 or X.shape[-1] != Wx.shape[0]:
        raise ValueError(
            f"x must have shape (B, T, d_in) with d_in = {Wx.shape[0]} (the rows of W_x), got {X.shape}."
        )
    B, T, _ = X.shape
    H = Wh.shape[0]
    h = np.zeros((B, H)) if h0 is None else _data(h0)
    if h.shape != (B, H):
        raise ValueError(f"h0 must have shape (B, H) = {(B, H)}, got {h.shape}.")
    if mask is not None:
        mask = _check_mask(mask, B, T)
    order = None
    if reverse:
        order = (slice(None), slice(None, None, -1)) if mask is None else _reversal(mask)
        X = X[order]
        if mask is not None:
            mask = mask[order]
    # Time-major arrays make every step's slice contiguous.
    Xt = X.transpose(1, 0, 2)  # (T, B, d_in)
    GX = Xt @ Wx + bx  # (T, B, 3H): the input's share of every gate, for all steps at once
    states = np.empty((T, B, H))
    saved = []
    for t in range(T):
        h_new, s = _step_forward(GX[t], h, Wh, bh)
        if mask is not None:
            h_new = np.where(mask[:, t, None], h_new, h)  # padding carries the state
        saved.append(s)
        states[t] = h = h_new
    out = states.transpose(1, 0, 2)  # (B, T, H)
    if reverse:
        out = out[order]

    def backward(g):
        G = (g[order] if reverse else g).transpose(1, 0, 2)  # (T, B, H)
        dGX, dA = np.empty((T, B, 3 * H)), np.empty((T, B, 3 * H))
        dh = np.zeros((B, H))
        for t in range(T - 1, -1, -1):
            gt = G[t] + dh
            if mask is None:
                dh = _step_backward(gt, saved[t], Wh, dGX[t], dA[t])
            else:
                m = mask[:, t, None]
                dh = _step_backward(gt * m, saved[t], Wh, dGX[t], dA[t]) + gt * ~m
        H_prev = np.stack([s[0] for s in saved])  # (T, B, H)
        dx = (dGX @ Wx.T).transpose(1, 0, 2)  # (B, T, d_in)
        return (dx[order] if reverse else dx, dh,
                Xt.reshape(-1, X.shape[-1]).T @ dGX.reshape(-1, 3 * H),  # dW_x
                H_prev.reshape(-1, H).T @ dA.reshape(-1, 3 * H),  # dW_h
                dGX.sum(axis=(0, 1)), dA.sum(axis=(0, 1)))

    return _node(out, (x, h0, W_x, W_h, b_x, b_h), backward, "gru_layer")


def gru_cell(inputs, h, W_x, W_h, b_x, b_h):
    """One GRU step as one autograd node; ``inputs`` are concatenated along the last axis.

    Parameters
    ----------
    inputs : list of Tensor or ndarray, shapes (B, d_1), (B, d_2), ...
        With ``d_1 + d_2 + ... = d_in`` (the decoder passes ``[E y_{i-1}, c_i]``).
    h : Tensor or ndarray of shape (B, H)
    W_x, W_h, b_x, b_h : Tensor
        As for :func:`gru_layer`.

    Returns
    -------
    Tensor of shape (B, H)

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> gru_cell([np.ones((2, 1)), np.ones((2, 2))], np.zeros((2, 4)),
    ...          cell.W_x, cell.W_h, cell.b_x, cell.b_h).shape
    (2, 4)

    See Also
    --------
    Chapter 4, *Learning to align and translate*, steps its decoder with it.
    """
    xs = [_data(x) for x in inputs]
    X = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=-1)  # (B, d_in)
    Wx, Wh, hd = _data(W_x), _data(W_h), _data(h)
    if X.ndim != 2 or X.shape[-1] != Wx.shape[0] or hd.shape != (X.shape[0], Wh.shape[0]):
        raise ValueError(
            f"gru_cell needs inputs of total shape (B, {Wx.shape[0]}) and h of shape (B, {Wh.shape[0]}), "
            f"got {X.shape} and {hd.shape}."
        )
    h_new, saved = _step_forward(X @ Wx + _data(b_x), hd, Wh, _data(b_h))
    widths = np.cumsum([x.shape[-1] for x in xs])[:-1]

    def backward(g):
        B, H = hd.shape
        dgx, da = np.empty((B, 3 * H)), np.empty((B, 3 * H))
        dh = _step_backward(g, saved, Wh, dgx, da)
        return np.split(dgx @ Wx.T, widths, axis=-1) + [
            dh, X.T @ dgx, hd.T @ da, dgx.sum(axis=0), da.sum(axis=0)]

    return _node(h_new, tuple(inputs) + (h, W_x, W_h, b_x, b_h), backward, "gru_cell")


def _additive_energy(s, W_q, K_a, w_v):
    """Bahdanau's energies ``e_j = w_v . tanh(s W_q + K_a[j])`` for one decoder step, one node.

    ``K_a = h W_k`` (B, T, d_a) is computed once per sentence; this is
    ``additive_score(s, h, W_q, W_k, w_v)`` without recomputing ``h W_k`` at every step.
    """
    sd, Wq, K, wv = _data(s), _data(W_q), _data(K_a), _data(w_v)
    P = np.tanh((sd @ Wq)[:, None, :] + K)  # (B, T, d_a)
    e = P @ wv  # (B, T)

    def backward(g):
        # e = P w_v, P = tanh(U), U = s W_q + K_a:  dU = g w_v (1 - P^2),  dK_a = dU,
        # dq = sum_j dU,  ds = dq W_q^T,  dW_q = s^T dq,  dw_v = sum_{b,j} g P
        dU = g[:, :, None] * wv * (1.0 - P * P)  # (B, T, d_a)
        dq = dU.sum(axis=1)  # (B, d_a)
        return dq @ Wq.T, sd.T @ dq, dU, g.reshape(-1) @ P.reshape(-1, P.shape[-1])

    return _node(e, (s, W_q, K_a, w_v), backward, "additive_energy")


def _context(e, h, mask=None):
    """``alpha = softmax(e)`` over the keys, ``c = sum_j alpha_j h_j``: one node.

    Returns the context Tensor (B, D) and the weights as an ndarray (B, T) (no gradient).
    """
    ed, hd = _data(e), _data(h)
    if mask is not None:
        ed = np.where(mask, ed, -np.inf)
    alpha = softmax(ed, axis=-1)  # (B, T)
    c = (alpha[:, None, :] @ hd)[:, 0]  # (B, D)

    def backward(g):
        dalpha = (hd @ g[:, :, None])[:, :, 0]  # (B, T)
        # softmax backward: de = alpha * (dalpha - sum(dalpha * alpha))
        de = alpha * (dalpha - (dalpha * alpha).sum(axis=-1, keepdims=True))
        return de, alpha[:, :, None] * g[:, None, :]

    return _node(c, (e, h), backward, "context"), alpha


class GRUCell(Module):
    """A GRU's weights: ``W_x`` (d_in, 3H), ``W_h`` (H, 3H), ``b_x``, ``b_h`` (3H,), gates r, z, n.

    Initialised uniform on ±1/sqrt(H), as PyTorch does. Call it for one step, or use
    :meth:`sequence` to run it over a whole sequence.

    Parameters
    ----------
    d_in, hidden : int
    rng : numpy.random.Generator

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> h = cell(np.ones((2, 3)), np.zeros((2, 4)))
    >>> h.shape, cell.sequence(np.ones((2, 6, 3))).shape
    ((2, 4), (2, 6, 4))

    See Also
    --------
    Chapter 1, *The bottleneck problem*, introduces the recurrent encoder.
    """

    def __init__(self, d_in, hidden, *, rng):
        bound = 1.0 / math.sqrt(hidden)
        self.W_x = uniform(rng, (d_in, 3 * hidden), bound)
        self.W_h = uniform(rng, (hidden, 3 * hidden), bound)
        self.b_x = uniform(rng, (3 * hidden,), bound)
        self.b_h = uniform(rng, (3 * hidden,), bound)

    def forward(self, x, h):
        """x : (B, d_in) or a list of parts to concatenate; h : (B, H) -> Tensor (B, H)."""
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        return gru_cell(inputs, h, self.W_x, self.W_h, self.b_x, self.b_h)

    def sequence(self, x, h0=None, mask=None, reverse=False):
        """Run over x (B, T, d_in); see :func:`gru_layer`. Returns Tensor (B, T, H)."""
        return gru_layer(x, h0, self.W_x, self.W_h, self.b_x, self.b_h, mask=mask, reverse=reverse)


class BiGRUEncoder(Module):
    """A bidirectional GRU: ``h_j = [h_fwd_j; h_bwd_j]``, each direction of width ``hidden``.

    Examples
    --------
    >>> enc = BiGRUEncoder(3, 4, rng=np.random.default_rng(0))
    >>> h, summary = enc(np.ones((2, 5, 3)))
    >>> h.shape, summary.shape
    ((2, 5, 8), (2, 8))

    See Also
    --------
    Chapter 4, *Learning to align and translate*, explains why both directions help.
    """

    def __init__(self, d_in, hidden, *, rng):
        self.fwd = GRUCell(d_in, hidden, rng=rng)
        self.bwd = GRUCell(d_in, hidden, rng=rng)

    def forward(self, x, mask=None):
        """x : (B, T, d_in); mask : (B, T) bool, right-padded, optional.

        Returns
        -------
        h : Tensor of shape (B, T, 2 * hidden)
            The annotation of every source word.
        summary : Tensor of shape (B, 2 * hidden)
            ``[h_fwd_T; h_bwd_1]``: each direction's state after reading the whole sentence.
        """
        h_fwd = self.fwd.sequence(x, mask=mask)  # (B, T, H)
        h_bwd = self.bwd.sequence(x, mask=mask, reverse=True)  # (B, T, H)
        summary = concatenate([h_fwd[:, -1], h_bwd[:, 0]], axis=-1)  # (B, 2H)
        return concatenate([h_fwd, h_bwd], axis=-1), summary


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
    Chapter 1, *The bottleneck problem*, trains the "none" model; Chapter 2, *Alignment
    scores*, compares the scores; Chapter 4, *Learning to align and translate*, trains
    the additive model and reads its alignments.
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
