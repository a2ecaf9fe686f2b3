"""Layer normalisation: every token's features rescaled to mean 0 and variance 1."""

from __future__ import annotations

from . import ops
from ._checks import as_input, check_finite

__all__ = ["layer_norm"]


def _scale_or_shift(p, name, d):
    if p is None:
        return None
    p = as_input(p, name)
    check_finite(p, name)
    if p.shape != (d,):
        raise ValueError(
            f"{name} must have shape (d,) = ({d},) to match the last axis of x, got {p.shape}."
        )
    return p


def layer_norm(x, gamma, beta, eps=1e-5):
    """Normalise the last axis, then scale and shift: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    The variance is the biased one (divide by d), and ``eps`` sits inside the square root,
    as in PyTorch's ``layer_norm``. On Tensors the backward pass is one fused node.

    Parameters
    ----------
    x : ndarray or Tensor of shape (..., d)
        One feature vector per token.
    gamma : ndarray or Tensor of shape (d,), or None
        Learned scale (None: 1).
    beta : ndarray or Tensor of shape (d,), or None
        Learned shift (None: 0).
    eps : float, default 1e-5
        Keeps the division finite for constant vectors; must be positive.

    Returns
    -------
    ndarray or Tensor of shape (..., d)
        Same float dtype as ``x`` on the ndarray path.

    Raises
    ------
    ValueError
        If ``x`` is 0-d or holds NaN/inf, ``gamma``/``beta`` are not of shape (d,), or
        ``eps`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0, 3.0]])
    >>> layer_norm(x, np.ones(3), np.zeros(3)).round(4)
    array([[-1.2247,  0.    ,  1.2247]])

    See Also
    --------
    Chapter 8, *The Transformer*, places it (pre-LN) and derives its gradient.
    """
    x = as_input(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have shape (..., d) with at least one axis, got a 0-d array.")
    check_finite(x, "x")
    d = x.shape[-1]
    gamma = _scale_or_shift(gamma, "gamma", d)
    beta = _scale_or_shift(beta, "beta", d)
    if not eps > 0:
        raise ValueError(f"eps must be positive (it keeps 1/sqrt(var + eps) finite), got {eps!r}.")
    return ops.layer_norm(x, gamma, beta, float(eps))
