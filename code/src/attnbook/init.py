"""Initialisers: trainable Tensors filled with random or constant values.

Every random initialiser takes ``rng: numpy.random.Generator`` and draws from it only,
so a model built twice from the same seed has the same weights.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_rng
from .tensor import Tensor

__all__ = ["uniform", "fan_in_uniform", "xavier_uniform", "normal", "zeros", "ones"]


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

    Raises
    ------
    ValueError
        If ``rng`` is not a numpy Generator.

    Examples
    --------
    >>> w = uniform(np.random.default_rng(0), (2, 3), 0.1)
    >>> w.shape, bool(np.abs(w.data).max() <= 0.1)
    ((2, 3), True)

    See Also
    --------
    fan_in_uniform : the bound set from the layer's size.
    """
    check_rng(rng)
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
    attnbook.nn.Linear : initialised this way.
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
    fan_in_uniform : the bound from the input size alone.
    """
    return uniform(rng, shape, math.sqrt(6.0 / (shape[0] + shape[1])))


def normal(rng, shape, std):
    """A trainable Tensor with independent N(0, std^2) entries.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    std : float
        Standard deviation.

    Returns
    -------
    Tensor of shape ``shape`` with ``requires_grad=True``

    Raises
    ------
    ValueError
        If ``rng`` is not a numpy Generator.

    Examples
    --------
    >>> normal(np.random.default_rng(0), (5,), 0.02).shape
    (5,)

    See Also
    --------
    attnbook.nn.Embedding : initialised this way.
    """
    check_rng(rng)
    return Tensor(rng.normal(0.0, std, size=shape), requires_grad=True)


def zeros(shape):
    """A trainable Tensor of zeros (biases, shifts).

    Parameters
    ----------
    shape : tuple of int

    Returns
    -------
    Tensor of shape ``shape`` with ``requires_grad=True``

    Examples
    --------
    >>> zeros((2,)).data
    array([0., 0.])

    See Also
    --------
    attnbook.nn.Linear : its bias.
    """
    return Tensor(np.zeros(shape), requires_grad=True)


def ones(shape):
    """A trainable Tensor of ones (layer-norm scales).

    Parameters
    ----------
    shape : tuple of int

    Returns
    -------
    Tensor of shape ``shape`` with ``requires_grad=True``

    Examples
    --------
    >>> ones((2,)).data
    array([1., 1.])

    See Also
    --------
    attnbook.nn.LayerNorm : its scale.
    """
    return Tensor(np.ones(shape), requires_grad=True)
