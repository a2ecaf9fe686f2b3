"""Layers that hold trainable weights: a Module base class and the usual layers.

Classes exist only to hold weights; the computation is the package's pure functions
(``layer_norm``, ``multi_head_attention``, ``dropout``, ...). A Module finds its
parameters by walking its attributes in definition order, so ``named_parameters`` and
``state_dict`` are deterministic and a model can be saved and rebuilt by name. Every
Module has a training mode (the default) and an evaluation mode, switched for a whole
model by ``train()`` and ``eval()``; only dropout behaves differently in the two.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._checks import check_dropout_p, check_rng
from .attention import multi_head_attention
from .dropout import dropout
from .init import fan_in_uniform, normal, ones, xavier_uniform, zeros
from .norm import layer_norm
from .tensor import Tensor

__all__ = [
    "Module", "Linear", "Embedding", "LayerNorm", "FeedForward", "MultiHeadAttention", "Dropout",
    "evaluating",
]


class Module:
    """Base class of everything with weights: finds parameters, saves and loads them.

    Parameters are the attributes that are Tensors with ``requires_grad=True``, the
    parameters of attributes that are Modules, and of lists/tuples of Modules; names
    are dotted paths such as ``"blocks.0.attn.W_q"``. Subclasses define ``forward``;
    calling the module calls it.

    ``training`` is True (the default) in training mode and False in evaluation mode;
    ``train()`` and ``eval()`` set it on the module and every submodule.

    Examples
    --------
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
    >>> [name for name, _ in layer.named_parameters()]
    ['W', 'b']
    >>> layer.num_parameters()
    8
    >>> layer.eval().training, layer.train().training
    (False, True)

    See Also
    --------
    Chapter 6, *Multi-head attention*, builds its one-block model from these.
    """

    training = True  # a class default: subclasses need not call Module.__init__

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward().")

    def _children(self):
        """``(name, Module)`` for every attribute that is a Module or a list/tuple of them."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def modules(self):
        """List this module and every submodule, depth first, in attribute-definition order."""
        out = [self]
        for _, child in self._children():
            out += child.modules()
        return out

    def train(self, mode=True):
        """Put the module and every submodule in training mode (``mode=False``: evaluation).

        Returns
        -------
        self
        """
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        """Put the module and every submodule in evaluation mode (dropout off); return self."""
        return self.train(False)

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
    Chapter 6, *Multi-head attention*, projects its embeddings with it.
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
    Chapter 6, *Multi-head attention*, turns the ids of its lookup task into vectors with it.
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
    Chapter 6, *Multi-head attention*, normalises its one-block model with it.
    """

    def __init__(self, d, eps=1e-5):
        self.gamma = ones((d,))
        self.beta = zeros((d,))
        self.eps = eps

    def forward(self, x):
        """x : Tensor of shape (..., d) -> Tensor of shape (..., d)."""
        return layer_norm(x, self.gamma, self.beta, self.eps)


class MultiHeadAttention(Module):
    """Multi-head (or grouped-query) attention with its four projections and their biases.

    ``forward`` is always :func:`attnbook.multi_head_attention` with the module's weights:
    with ``rope=True`` it passes the queries' positions (RoPE), and with a
    :class:`attnbook.kvcache.KVCache` it lets the function append to the cache.

    Parameters
    ----------
    d_model, n_heads : int
        ``n_heads`` must divide ``d_model``; each head has width ``d_head = d_model / n_heads``.
    n_kv_heads : int, optional
        Key/value heads (grouped-query attention), dividing ``n_heads``; ``W_k`` and ``W_v``
        are then (d_model, n_kv_heads * d_head). Default ``n_heads`` (multi-head attention);
        1 is multi-query attention.
    rng : numpy.random.Generator
    rope : bool, default False
        Rotate queries and keys by their positions (self-attention only).
    rope_base : float, default 10000.0

    Attributes
    ----------
    weights : ndarray of shape (..., n_heads, T_q, T_k) or None
        The attention weights of the last call (for plotting).

    Raises
    ------
    ValueError
        If ``n_heads`` does not divide ``d_model`` or ``n_kv_heads`` does not divide ``n_heads``.

    Examples
    --------
    >>> mha = MultiHeadAttention(8, 2, rng=np.random.default_rng(0))
    >>> x = np.ones((3, 5, 8))
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape
    ((3, 5, 8), (3, 2, 5, 5))
    >>> MultiHeadAttention(8, 4, n_kv_heads=1, rng=np.random.default_rng(0)).W_k.shape  # multi-query
    (8, 2)

    See Also
    --------
    Chapter 6, *Multi-head attention*, builds it and counts its parameters.
    """

    def __init__(self, d_model, n_heads, n_kv_heads=None, *, rng, rope=False, rope_base=10000.0):
        if d_model % n_heads:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; choose n_heads dividing d_model."
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(
                f"n_kv_heads={n_kv_heads} does not divide n_heads={n_heads}; choose a divisor of "
                f"n_heads (1 for multi-query attention, n_heads for multi-head attention)."
            )
        d_kv = n_kv_heads * (d_model // n_heads)  # n_kv_heads heads of width d_head
        self.W_q = xavier_uniform(rng, (d_model, d_model))
        self.W_k = xavier_uniform(rng, (d_model, d_kv))
        self.W_v = xavier_uniform(rng, (d_model, d_kv))
        self.W_o = xavier_uniform(rng, (d_model, d_model))
        self.b_q, self.b_k, self.b_v, self.b_o = zeros((d_model,)), zeros((d_kv,)), zeros((d_kv,)), zeros((d_model,))
        self.n_heads, self.n_kv_heads, self.rope, self.rope_base = n_heads, n_kv_heads, rope, rope_base
        self.weights = None

    def forward(self, query, key, value, *, mask=None, bias=None, positions=None, cache=None):
        """Attend from ``query`` (..., T_q, d_model) to ``key``/``value`` (..., T_new, d_model).

        Parameters
        ----------
        mask, bias
            As for :func:`attnbook.multi_head_attention` (a mask of 3 or more dimensions
            gets a head axis before its last two). With a cache they cover all keys.
        positions : ndarray of int, shape (T_q,), optional
            RoPE positions of the queries (and of the new keys); default: they follow the
            cached positions, ``len(cache), ..., len(cache) + T_q - 1``. Only with ``rope=True``.
        cache : KVCache, optional
            Keys/values of earlier positions; the new ones are appended to it (a filled
            static cache is used as it is, and ``key``/``value`` are then ignored).

        Returns
        -------
        out : Tensor or ndarray of shape (..., T_q, d_model)
        weights : Tensor or ndarray of shape (..., n_heads, T_q, T_k)

        Raises
        ------
        ValueError
            If ``positions`` is given to a module built with ``rope=False``, or as for
            :func:`attnbook.multi_head_attention`.
        """
        if self.rope and positions is None:
            start = len(cache) if cache is not None else 0
            positions = np.arange(start, start + np.shape(query)[-2])
        elif not self.rope and positions is not None:
            raise ValueError(
                "positions are RoPE's, but this MultiHeadAttention was built with rope=False; "
                "build it with rope=True, or drop the positions."
            )
        out, weights = multi_head_attention(
            query, key, value, self.W_q, self.W_k, self.W_v, self.W_o, self.n_heads,
            b_q=self.b_q, b_k=self.b_k, b_v=self.b_v, b_o=self.b_o, mask=mask, bias=bias,
            n_kv_heads=self.n_kv_heads, positions=positions, rope_base=self.rope_base, cache=cache)
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


class Dropout(Module):
    """Inverted dropout as a layer: :func:`attnbook.dropout.dropout` in training mode, identity in eval.

    Parameters
    ----------
    p : float
        Probability of zeroing an entry, in [0, 1).
    rng : numpy.random.Generator
        The generator the masks are drawn from (only in training mode with ``p > 0``:
        at ``p = 0`` or in evaluation mode it is never used).

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1) or ``rng`` is not a numpy Generator.

    Examples
    --------
    >>> drop = Dropout(0.5, rng=np.random.default_rng(0))
    >>> drop(np.ones(6))  # kept entries are scaled by 1 / (1 - p)
    array([2., 0., 0., 0., 2., 2.])
    >>> drop.eval()(np.ones(6))
    array([1., 1., 1., 1., 1., 1.])

    See Also
    --------
    attnbook.dropout.dropout : the function it applies.
    Chapter 8, *The Transformer*, puts it where the paper does.
    """

    def __init__(self, p, *, rng):
        check_rng(rng)
        self.p = check_dropout_p(p)
        self.rng = rng

    def forward(self, x):
        """x : ndarray or Tensor of any shape -> the same shape."""
        return dropout(x, self.p, rng=self.rng, training=self.training)


@contextlib.contextmanager
def evaluating(model):
    """Run a block with ``model`` in evaluation mode; restore every submodule's mode after.

    Decoding and evaluation use it, so that dropout is off there and training resumes in
    the mode it was in. Objects that are not Modules (have no modes) are left alone.

    Parameters
    ----------
    model : Module or any object

    Examples
    --------
    >>> drop = Dropout(0.5, rng=np.random.default_rng(0))
    >>> with evaluating(drop):
    ...     print(drop.training)
    False
    >>> drop.training
    True

    See Also
    --------
    Module.eval : switches without restoring.
    Chapter 8, *The Transformer*, evaluates its translators with it.
    """
    if not isinstance(model, Module):
        yield model
        return
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
