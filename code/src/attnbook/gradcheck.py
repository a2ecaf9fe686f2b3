"""Finite-difference check of autograd gradients, for tests and for book pages."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad

__all__ = ["gradcheck"]


def _scalar(value, where):
    if not isinstance(value, Tensor) or value.size != 1:
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(
            f"gradcheck needs f to return a one-element Tensor {where}, got {shape}; "
            "reduce the output to a scalar, e.g. (f(...) * weights).sum()."
        )
    return value


def gradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4):
    """Compare the autograd gradients of a scalar function with central differences.

    For every element ``x_i`` of every input, the numerical derivative
    ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` must match ``x.grad`` within
    ``atol + rtol * |numerical|``.

    Parameters
    ----------
    f : callable
        ``f(*tensors)`` returning a one-element Tensor. Anything not checked (masks,
        integer sizes) should be closed over rather than passed.
    *inputs : Tensor or array_like
        Points at which to check. Arrays are wrapped as ``Tensor(..., requires_grad=True)``;
        Tensors with ``requires_grad=False`` are passed through unchecked.
    eps : float, default 1e-6
        Finite-difference step.
    atol, rtol : float
        Absolute and relative tolerances.

    Returns
    -------
    bool
        True if every gradient matches.

    Raises
    ------
    AssertionError
        Naming the input and element with the largest violation, with both values.
    ValueError
        If ``f`` does not return a one-element Tensor or no input requires grad.

    Examples
    --------
    >>> x = Tensor([0.5, -1.0, 2.0], requires_grad=True)
    >>> gradcheck(lambda t: (t.tanh() * t).sum(), x)
    True

    See Also
    --------
    Tensor : the autograd it checks.
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, uses it to check the gradients it derives.
    """
    tensors = [x if isinstance(x, Tensor) else Tensor(x, requires_grad=True) for x in inputs]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError(
            "gradcheck found no input with requires_grad=True; pass arrays or "
            "Tensor(..., requires_grad=True)."
        )
    saved = [(t.grad, t.data.copy()) for t in tensors]
    try:
        for t in tensors:
            t.grad = None
        _scalar(f(*tensors), "at the given inputs").backward()
        analytic = [
            np.zeros_like(t.data) if t.grad is None else np.array(t.grad) for t in tensors
        ]
        worst = (-np.inf, None)
        with no_grad():
            for i in checked:
                data = tensors[i].data
                for index in np.ndindex(data.shape):
                    original = data[index]
                    data[index] = original + eps
                    up = _scalar(f(*tensors), "at a perturbed input").item()
                    data[index] = original - eps
                    down = _scalar(f(*tensors), "at a perturbed input").item()
                    data[index] = original
                    numeric = (up - down) / (2.0 * eps)
                    got = analytic[i][index]
                    excess = abs(got - numeric) - (atol + rtol * abs(numeric))
                    if not excess <= 0 and (excess > worst[0] or np.isnan(excess)):
                        worst = (np.inf if np.isnan(excess) else excess, (i, index, got, numeric))
        if worst[1] is not None:
            i, index, got, numeric = worst[1]
            raise AssertionError(
                f"gradient mismatch: input {i} (shape {tensors[i].shape}) at index "
                f"{tuple(int(n) for n in index)}: autograd {float(got)!r} vs finite difference "
                f"{float(numeric)!r} (atol={atol}, rtol={rtol}). This is the worst element."
            )
        return True
    finally:
        for t, (grad, data) in zip(tensors, saved):
            t.grad = grad
            t.data[...] = data
