"""Layers that hold trainable weights: a Module base class, initialisers, and the usual layers.

Classes exist only to hold weights; the computation is the package's pure functions
(``layer_norm``, ``multi_head_attention``, ...). A Module finds its parameters by walking
its attributes in definition order, so ``named_parameters`` and ``state_dict`` are
deterministic and a model can be saved and rebuilt by name.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import merge_heads, multi_head_attention, scaled_dot_product_attention, split_heads
from .norm import layer_norm
from .positions import apply_rope
from .tensor import Tensor

__all__ = [
    "Module", "Linear", "Embedding", "LayerNorm", "MultiHeadAttention", "FeedForward", "KVCache",
    "uniform", "fan_in_uniform", "xavier_uniform", "normal", "zeros", "ones",
]


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)."
        )


def token_ids(ids, name):
    """Return ``ids`` as a (B, T) integer array, or raise a ValueError naming the shape."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be integer token ids of shape (B, T), got dtype {ids.dtype} shape {ids.shape}; "
            f"for one sequence pass {name}[None, :]."
        )
    return ids


def uniform(rng, shape, bound):
    """A trainable Tensor with entries uniform on ``[-bound, bound]``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    bound : float

    Returns
    -------
    Tensor with ``requires_grad=True``

    Examples
    --------
    >>> w = uniform(np.random.default_rng(0), (2, 3), 0.1)
    >>> w.shape, bool(np.abs(w.data).max() <= 0.1)
    ((2, 3), True)

    Raises
    ------
    ValueError
        If ``rng`` is not a numpy Generator.

    See Also
    --------
    Chapter 4, *Learning to align and translate*, discusses initialisation.
    """
    _check_rng(rng)
    return Tensor(rng.uniform(-bound, bound, size=shape), requires_grad=True)


def fan_in_uniform(rng, shape, fan_in=None):
    """Uniform on ``±1/sqrt(fan_in)`` (PyTorch's default for linear and recurrent layers).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        ``(d_in, d_out)`` for a weight; for a bias pass ``fan_in`` explicitly.
    fan_in : int, optional
        Defaults to ``shape[0]`` (the input width of an ``x @ W`` weight).

    Returns
    -------
    Tensor with ``requires_grad=True``

    Examples
    --------
    >>> fan_in_uniform(np.random.default_rng(0), (4, 2)).shape
    (4, 2)

    See Also
    --------
    Chapter 4, *Learning to align and translate*, discusses initialisation.
    """
    fan_in = shape[0] if fan_in is None else fan_in
    return uniform(rng, shape, 1.0 / math.sqrt(fan_in))


def xavier_uniform(rng, shape):
    """Glorot's uniform initialisation, bound ``sqrt(6 / (d_in + d_out))``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of two ints (d_in, d_out)

    Returns
    -------
    Tensor with ``requires_grad=True``

    Examples
    --------
    >>> xavier_uniform(np.random.default_rng(0), (3, 3)).shape
    (3, 3)

    See Also
    --------
    Chapter 8, *The Transformer*, initialises its projections this way.
    """
    return uniform(rng, shape, math.sqrt(6.0 / (shape[0] + shape[1])))


def normal(rng, shape, std):
    """A trainable Tensor with independent N(0, std^2) entries.

    Examples
    --------
    >>> normal(np.random.default_rng(0), (5,), 0.02).shape
    (5,)

    See Also
    --------
    Embedding : initialised this way.
    """
    _check_rng(rng)
    return Tensor(rng.normal(0.0, std, size=shape), requires_grad=True)


def zeros(shape):
    """A trainable Tensor of zeros (biases, shifts).

    Examples
    --------
    >>> zeros((2,)).data
    array([0., 0.])

    See Also
    --------
    Linear : its bias.
    """
    return Tensor(np.zeros(shape), requires_grad=True)


def ones(shape):
    """A trainable Tensor of ones (layer-norm scales).

    Examples
    --------
    >>> ones((2,)).data
    array([1., 1.])

    See Also
    --------
    LayerNorm : its scale.
    """
    return Tensor(np.ones(shape), requires_grad=True)


class Module:
    """Base class of everything with weights: finds parameters, saves and loads them.

    Parameters are the attributes that are Tensors with ``requires_grad=True``, the
    parameters of attributes that are Modules, and of lists/tuples of Modules; names
    are dotted paths such as ``"blocks.0.attn.W_q"``. Subclasses define ``forward``;
    calling the module calls it.

    Examples
    --------
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
    >>> [name for name, _ in layer.named_parameters()]
    ['W', 'b']
    >>> layer.num_parameters()
    8

    See Also
    --------
    Chapter 4, *Learning to align and translate*, builds its model from these.
    """

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward().")

    def named_parameters(self, prefix=""):
        """List ``(name, Tensor)`` for every parameter, in attribute-definition order."""
        out = []
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                if value.requires_grad:
                    out.append((prefix + name, value))
            elif isinstance(value, Module):
                out += value.named_parameters(prefix + name + ".")
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        out += item.named_parameters(f"{prefix}{name}.{i}.")
        return out

    def parameters(self):
        """List every parameter Tensor (what an optimiser updates)."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        """Total number of trainable numbers."""
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        """Forget every parameter's gradient."""
        for p in self.parameters():
            p.grad = None

    def state_dict(self):
        """Return ``{name: copy of the values}`` for every parameter."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy values from ``state`` (as returned by :meth:`state_dict`) into the parameters.

        Raises
        ------
        ValueError
            If names are missing or unexpected, or a shape differs.
        """
        params = dict(self.named_parameters())
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or extra:
            raise ValueError(
                f"load_state_dict: missing {missing[:5]}, unexpected {extra[:5]}; load a state "
                f"saved from a {type(self).__name__} built with the same configuration."
            )
        for name, p in params.items():
            value = np.asarray(state[name], dtype=np.float64)
            if value.shape != p.shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {p.shape} but the state holds {value.shape}; "
                    "build the model with the configuration the state was saved from."
                )
            p.data[...] = value


class Linear(Module):
    """``y = x @ W + b`` with ``W`` of shape (d_in, d_out), initialised uniform ±1/sqrt(d_in).

    Parameters
    ----------
    d_in, d_out : int
    rng : numpy.random.Generator
    bias : bool, default True

    Examples
    --------
    >>> layer = Linear(4, 3, rng=np.random.default_rng(0))
    >>> layer(np.ones((2, 5, 4))).shape
    (2, 5, 3)

    See Also
    --------
    Chapter 5, *Queries, keys, values*, writes projections as ``X W^Q``.
    """

    def __init__(self, d_in, d_out, *, rng, bias=True):
        self.W = fan_in_uniform(rng, (d_in, d_out))
        self.b = fan_in_uniform(rng, (d_out,), fan_in=d_in) if bias else None

    def forward(self, x):
        """x : ndarray or Tensor of shape (..., d_in) -> Tensor of shape (..., d_out)."""
        y = x @ self.W
        return y if self.b is None else y + self.b


class Embedding(Module):
    """A lookup table: row ``i`` of ``W`` (n, d) is the vector of token ``i``.

    Parameters
    ----------
    n, d : int
        Number of tokens and vector width.
    rng : numpy.random.Generator
    std : float, default 1.0
        Standard deviation of the N(0, std^2) initialisation.

    Examples
    --------
    >>> emb = Embedding(10, 4, rng=np.random.default_rng(0))
    >>> emb(np.array([[1, 2, 2]])).shape
    (1, 3, 4)

    See Also
    --------
    Chapter 1, *The bottleneck problem*, turns word ids into vectors with it.
    """

    def __init__(self, n, d, *, rng, std=1.0):
        self.W = normal(rng, (n, d), std)

    def forward(self, ids):
        """ids : ndarray of int, any shape (...) -> Tensor of shape (..., d).

        Raises
        ------
        ValueError
            If ``ids`` is not integer or holds an id outside ``[0, n)``.
        """
        ids = np.asarray(ids)
        n = self.W.shape[0]
        if ids.dtype.kind not in "iu" or (ids.size and (ids.min() < 0 or ids.max() >= n)):
            raise ValueError(
                f"Embedding of {n} tokens got ids of dtype {ids.dtype} with range "
                f"[{ids.min() if ids.size else '-'}, {ids.max() if ids.size else '-'}]; pass integer ids "
                f"in [0, {n}) from the same vocabulary the model was built with."
            )
        return self.W[ids]


class LayerNorm(Module):
    """Layer normalisation over the last axis with a learned scale ``gamma`` and shift ``beta``.

    Examples
    --------
    >>> norm = LayerNorm(4)
    >>> norm(np.array([[1.0, 2.0, 3.0, 4.0]])).data.mean().round(12)
    np.float64(0.0)

    See Also
    --------
    Chapter 8, *The Transformer*, places it before (pre-LN) or after (post-LN) each sublayer.
    """

    def __init__(self, d, eps=1e-5):
        self.gamma = ones((d,))
        self.beta = zeros((d,))
        self.eps = eps

    def forward(self, x):
        """x : Tensor of shape (..., d) -> Tensor of shape (..., d)."""
        return layer_norm(x, self.gamma, self.beta, self.eps)


class KVCache:
    """Keys and values of earlier positions, per head, for incremental decoding.

    ``k`` and ``v`` are ndarrays of shape (B, H, T_cached, d_head), or None before the
    first step. A ``static`` cache (cross-attention to the encoder's memory) is filled
    once and then reused as it is. Decoding runs under ``no_grad()``: cached keys and
    values are plain arrays and pass no gradient.

    Examples
    --------
    >>> cache = KVCache()
    >>> k, v = cache.append(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))
    >>> k, v = cache.append(np.ones((1, 2, 1, 4)), np.ones((1, 2, 1, 4)))
    >>> len(cache), k.shape
    (4, (1, 2, 4, 4))

    See Also
    --------
    Chapter 9, *The cost of attention*, counts what the cache saves.
    """

    __slots__ = ("k", "v", "static")

    def __init__(self, static=False):
        self.k = self.v = None
        self.static = static

    def __len__(self):
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k, v):
        """Add the new positions' keys and values; return all keys and values so far."""
        k = k.data if isinstance(k, Tensor) else k
        v = v.data if isinstance(v, Tensor) else v
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = np.concatenate([self.k, k], axis=-2)  # (B, H, T_cached + T_new, d_head)
            self.v = np.concatenate([self.v, v], axis=-2)  # (B, H, T_cached + T_new, d_head)
        return self.k, self.v

    def select(self, index):
        """A cache holding only batch rows ``index`` (beam search reorders hypotheses)."""
        out = KVCache(self.static)
        if self.k is not None:
            out.k, out.v = self.k[index], self.v[index]
        return out


class MultiHeadAttention(Module):
    """Multi-head attention with its four projections (d_model, d_model) and biases.

    Without RoPE and without a cache, ``forward`` is exactly
    :func:`attnbook.multi_head_attention`. With ``rope=True`` the queries and keys of each
    head are rotated by :func:`attnbook.apply_rope` after the projection, and with a
    :class:`KVCache` the new positions' keys and values are appended to the cached ones;
    both paths are the same computation spelled with ``split_heads``,
    ``scaled_dot_product_attention`` and ``merge_heads``.

    Parameters
    ----------
    d_model, n_heads : int
    rng : numpy.random.Generator
    rope : bool, default False
        Rotate queries and keys by their positions (self-attention only).
    rope_base : float, default 10000.0

    Attributes
    ----------
    weights : ndarray of shape (..., n_heads, T_q, T_k) or None
        The attention weights of the last call (for plotting).

    Examples
    --------
    >>> mha = MultiHeadAttention(8, 2, rng=np.random.default_rng(0))
    >>> x = np.ones((3, 5, 8))
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape
    ((3, 5, 8), (3, 2, 5, 5))

    See Also
    --------
    Chapter 6, *Multi-head attention*, builds it.
    """

    def __init__(self, d_model, n_heads, *, rng, rope=False, rope_base=10000.0):
        if d_model % n_heads:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; choose n_heads dividing d_model."
            )
        self.W_q, self.W_k, self.W_v, self.W_o = (xavier_uniform(rng, (d_model, d_model)) for _ in range(4))
        self.b_q, self.b_k, self.b_v, self.b_o = (zeros((d_model,)) for _ in range(4))
        self.n_heads, self.rope, self.rope_base = n_heads, rope, rope_base
        self.weights = None

    def forward(self, query, key, value, *, mask=None, bias=None, positions=None, cache=None):
        """Attend from ``query`` (..., T_q, d_model) to ``key``/``value`` (..., T_k, d_model).

        Parameters
        ----------
        mask, bias
            As for :func:`attnbook.multi_head_attention` (a mask of 3 or more dimensions
            gets a head axis before its last two). With a cache they cover all keys.
        positions : ndarray of int, shape (T_q,), optional
            Positions of the queries (and of the new keys) for RoPE; default 0..T_q-1.
        cache : KVCache, optional
            Keys/values of earlier positions; the new ones are appended to it.

        Returns
        -------
        out : Tensor or ndarray of shape (..., T_q, d_model)
        weights : Tensor or ndarray of shape (..., n_heads, T_q, T_k)
        """
        if not self.rope and cache is None:
            out, weights = multi_head_attention(
                query, key, value, self.W_q, self.W_k, self.W_v, self.W_o, self.n_heads,
                b_q=self.b_q, b_k=self.b_k, b_v=self.b_v, b_o=self.b_o, mask=mask, bias=bias)
        else:
            q = split_heads(query @ self.W_q + self.b_q, self.n_heads)  # (..., H, T_q, d_head)
            if cache is not None and cache.static and cache.k is not None:
                k, v = cache.k, cache.v  # the encoder's memory, projected once
            else:
                k = split_heads(key @ self.W_k + self.b_k, self.n_heads)  # (..., H, T_new, d_head)
                v = split_heads(value @ self.W_v + self.b_v, self.n_heads)  # (..., H, T_new, d_head)
                if self.rope:
                    if k.shape[-2] != q.shape[-2]:
                        raise ValueError(
                            f"RoPE rotates queries and keys of the same tokens (self-attention), but got "
                            f"{q.shape[-2]} queries and {k.shape[-2]} new keys; build cross-attention "
                            "with rope=False."
                        )
                    if positions is None:
                        positions = np.arange(q.shape[-2])
                    q = apply_rope(q, positions, self.rope_base)
                    k = apply_rope(k, positions, self.rope_base)
                if cache is not None:
                    k, v = cache.append(k, v)
            if mask is not None and 3 <= mask.ndim <= query.ndim:
                mask = mask[..., None, :, :]  # (..., 1, T_q, T_k): the same for every head
            heads, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
            out = merge_heads(heads) @ self.W_o + self.b_o  # (..., T_q, d_model)
        self.weights = weights.data if isinstance(weights, Tensor) else weights
        return out, weights


class FeedForward(Module):
    """The position-wise network ``relu(x W_1 + b_1) W_2 + b_2``, (d_model -> d_ff -> d_model).

    Examples
    --------
    >>> ffn = FeedForward(4, 16, rng=np.random.default_rng(0))
    >>> ffn(np.ones((2, 3, 4))).shape
    (2, 3, 4)

    See Also
    --------
    Chapter 8, *The Transformer*, uses it in every block.
    """

    def __init__(self, d_model, d_ff, *, rng):
        self.lin1 = Linear(d_model, d_ff, rng=rng)
        self.lin2 = Linear(d_ff, d_model, rng=rng)

    def forward(self, x):
        """x : Tensor of shape (..., d_model) -> Tensor of shape (..., d_model)."""
        h = self.lin1(x)
        h = h.relu() if isinstance(h, Tensor) else np.maximum(h, 0.0)
        return self.lin2(h)
