"""Dropout (Srivastava et al., 2014): zero random entries while training, rescale the rest."""

from __future__ import annotations

import numpy as np

from ._checks import as_input, check_dropout_p, check_rng, values
from .tensor import Tensor, node

__all__ = ["dropout"]


def dropout(x, p, *, rng, training=True):
    """Inverted dropout: zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    The scaling keeps every entry's expectation, ``E[dropout(x)] = x``, so nothing has to
    change at evaluation time, where dropout is the identity. The backward pass multiplies
    the gradient by the same mask and scale as the forward pass.

    Parameters
    ----------
    x : ndarray or Tensor of any shape
    p : float
        Probability of zeroing an entry, in [0, 1).
    rng : numpy.random.Generator
        The mask is drawn from it: ``x.size`` uniform numbers per call in training mode
        with ``p > 0``, none otherwise.
    training : bool, default True
        False (evaluation) returns ``x`` unchanged, as does ``p = 0``.

    Returns
    -------
    ndarray or Tensor of the shape of ``x``
        ``x`` itself when not training or ``p = 0``; otherwise a new array (same float
        dtype) or Tensor.

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1), ``rng`` is not a numpy Generator, or ``x`` is not real.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> dropout(np.ones(8), 0.5, rng=rng)  # kept entries become 1 / (1 - 0.5) = 2
    array([2., 0., 0., 0., 2., 2., 2., 2.])
    >>> dropout(np.ones(3), 0.5, rng=rng, training=False)
    array([1., 1., 1.])

    See Also
    --------
    attnbook.nn.Dropout : the layer, switched off by ``eval()``.
    Chapter 8, *The Transformer*, explains dropout and measures it.
    """
    p = check_dropout_p(p)
    check_rng(rng)
    if not training or p == 0.0:
        return x
    x = as_input(x, "x")
    data = values(x)
    keep = rng.random(data.shape) >= p  # (...) True = kept, with probability 1 - p
    factor = (keep * (1.0 / (1.0 - p))).astype(data.dtype)  # (...) 0 or 1 / (1 - p)
    out = data * factor
    if isinstance(x, Tensor):
        return node(out, (x,), lambda g: (g * factor,), "dropout")
    return out
