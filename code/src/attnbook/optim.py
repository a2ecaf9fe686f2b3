"""Optimisers (SGD with momentum, Adam, AdamW), global-norm clipping, learning-rate schedules.

Every optimiser keeps its state in plain attributes (``step_count``, ``m``, ``v``,
``velocity``) that a page can print, and updates the parameters' ``.data`` in place.
A schedule is a small frozen dataclass called with the 1-based update number, so it can
sit inside a training configuration (and its hash).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SGD", "Adam", "AdamW", "clip_grad_norm", "Schedule",
    "constant", "vaswani", "warmup_linear", "warmup_cosine", "SCHEDULE_KINDS",
]

#: The kinds of :class:`Schedule`, one per constructor function of the same name.
SCHEDULE_KINDS = ("constant", "vaswani", "warmup_linear", "warmup_cosine")


def _params(params):
    params = list(params)
    if not params:
        raise ValueError("the optimiser got no parameters; pass model.parameters().")
    return params


class SGD:
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    ``velocity = momentum * velocity + grad (+ weight_decay * p)``; ``p -= lr * velocity``
    (PyTorch's convention).

    Parameters
    ----------
    params : list of Tensor
    lr : float
    momentum : float, default 0
    weight_decay : float, default 0

    Examples
    --------
    >>> from attnbook import Tensor
    >>> p = Tensor([1.0], requires_grad=True)
    >>> p.grad = np.array([2.0])
    >>> SGD([p], lr=0.1).step()
    >>> p.data
    array([0.8])

    See Also
    --------
    Adam : the optimiser the book trains with.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params, self.lr = _params(params), lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [np.zeros_like(p.data) for p in self.params]
        self.step_count = 0

    def zero_grad(self):
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient."""
        self.step_count += 1
        for p, vel in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                vel *= self.momentum
                vel += g
                g = vel
            p.data -= self.lr * g


class Adam:
    """Adam (Kingma and Ba) with bias correction; ``weight_decay`` adds ``wd * p`` to the gradient.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.

    Parameters
    ----------
    params : list of Tensor
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0

    Examples
    --------
    >>> from attnbook import Tensor
    >>> p = Tensor([1.0], requires_grad=True)
    >>> p.grad = np.array([0.5])
    >>> Adam([p], lr=0.1).step()  # the first step moves by about lr
    >>> p.data.round(6)
    array([0.9])

    See Also
    --------
    AdamW : decoupled weight decay.
    Chapter 4, *Learning to align and translate*, trains with it.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params, self.lr = _params(params), lr
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        # The moments of all parameters live in two flat arrays; m[i] and v[i] are views of
        # them in the shape of parameter i. A step then updates every parameter's moments
        # with a dozen NumPy calls instead of a dozen per parameter (the same arithmetic,
        # element by element, so the same numbers).
        sizes = [p.data.size for p in self.params]
        self._ends = np.cumsum(sizes).tolist()
        # Each parameter's stretch of the flat moments, computed once.
        self._slices = [slice(a, b) for a, b in zip([0] + self._ends[:-1], self._ends)]
        self._m_flat, self._v_flat = np.zeros(self._ends[-1]), np.zeros(self._ends[-1])
        self.step_count = 0

    @property
    def m(self):
        """The first moments, one array per parameter (views of the flat state)."""
        return self._views(self._m_flat)

    @property
    def v(self):
        """The second moments, one array per parameter (views of the flat state)."""
        return self._views(self._v_flat)

    def _views(self, flat):
        """Split a flat array into one view per parameter, in the parameter's shape."""
        return [flat[where].reshape(p.data.shape) for p, where in zip(self.params, self._slices)]

    def zero_grad(self):
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient."""
        self.step_count += 1
        b1, b2 = self.betas
        t = self.step_count
        # Both bias corrections folded into one step size.
        step_size = self.lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        eps = self.eps * math.sqrt(1.0 - b2**t)
        if self.weight_decay and self.decoupled:
            for p in self.params:
                if p.grad is not None:
                    p.data *= 1.0 - self.lr * self.weight_decay
        if all(p.grad is not None for p in self.params):
            # Every parameter has a gradient (the usual case): one update of the flat moments.
            g = np.concatenate([self._gradient(p).reshape(-1) for p in self.params])
            updates = self._views(self._update(self._m_flat, self._v_flat, g, step_size, eps))
        else:  # parameter by parameter, on its (1-D) stretch of the flat moments
            updates = [None if p.grad is None else self._update(
                self._m_flat[where], self._v_flat[where], self._gradient(p).reshape(-1), step_size,
                eps,
            ).reshape(p.data.shape) for p, where in zip(self.params, self._slices)]
        for p, u in zip(self.params, updates):
            if u is not None:
                p.data -= u

    def _gradient(self, p):
        """The gradient Adam's moments see: with coupled weight decay, ``grad + wd * p``."""
        if self.weight_decay and not self.decoupled:
            return p.grad + self.weight_decay * p.data
        return p.grad

    def _update(self, m, v, g, step_size, eps):
        """Update the moments m, v in place with gradient g; return the step to subtract.

        ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, step ``step_size m / (sqrt(v) + eps)``,
        computed in one scratch array ``t`` (products written as ``g^2 (1 - b2)`` are the same
        numbers: IEEE multiplication commutes).
        """
        b1, b2 = self.betas
        t = (1.0 - b1) * g
        m *= b1
        m += t
        np.multiply(g, g, out=t)
        t *= 1.0 - b2
        v *= b2
        v += t
        np.sqrt(v, out=t)
        t += eps
        step = step_size * m
        step /= t
        return step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): ``p *= 1 - lr * wd`` before the Adam step.

    Parameters
    ----------
    params : list of Tensor
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0.01

    Examples
    --------
    >>> from attnbook import Tensor
    >>> p = Tensor([1.0], requires_grad=True)
    >>> p.grad = np.array([0.0])
    >>> AdamW([p], lr=0.1, weight_decay=0.5).step()  # zero gradient: only the decay acts
    >>> p.data
    array([0.95])

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, trains its language models with it.
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    params : list of Tensor
        Parameters without a gradient are skipped.
    max_norm : float
        Positive.

    Returns
    -------
    float
        The global norm *before* clipping (worth logging: spikes show instability).

    Raises
    ------
    ValueError
        If ``max_norm`` is not positive or a gradient is not finite.

    Examples
    --------
    >>> from attnbook import Tensor
    >>> p = Tensor([0.0, 0.0], requires_grad=True)
    >>> p.grad = np.array([3.0, 4.0])
    >>> clip_grad_norm([p], 1.0)
    5.0
    >>> p.grad
    array([0.6, 0.8])

    See Also
    --------
    attnbook.train.fit : clips every step with it.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}; 1.0 is a common choice.")
    grads = [p.grad for p in params if p.grad is not None]
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if not math.isfinite(norm):
        raise ValueError(
            f"the gradient norm is {norm}: training diverged; lower the learning rate or clip earlier."
        )
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads:
            g *= scale
    return norm


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: call it with the 1-based update number to get the rate.

    Build one with :func:`constant`, :func:`vaswani`, :func:`warmup_linear` or
    :func:`warmup_cosine`. ``peak`` is the largest rate, reached at update ``warmup``.

    Examples
    --------
    >>> Schedule("warmup_linear", peak=1.0, warmup=2, total=4)(1)
    0.5

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`SCHEDULE_KINDS`.

    See Also
    --------
    constant, vaswani, warmup_linear, warmup_cosine : the schedules by name.
    """

    kind: str
    peak: float
    warmup: int = 0
    total: int = 0
    final: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; choose one of {SCHEDULE_KINDS} "
                             "(or build the schedule with the function of that name).")

    def __call__(self, step):
        if step < 1:
            raise ValueError(f"schedules count updates from 1, got step={step}.")
        if self.kind == "constant":
            return self.peak
        if step <= self.warmup:
            return self.peak * step / self.warmup
        if self.kind == "vaswani":
            return self.peak * math.sqrt(self.warmup / step)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.kind == "warmup_linear":
            return self.peak + (self.final - self.peak) * progress
        # warmup_cosine, the only kind left (__post_init__ checked the kind)
        return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_schedule(peak, warmup, total=None):
    if not peak > 0 or warmup < 0 or (total is not None and total < max(warmup, 1)):
        raise ValueError(
            f"need peak > 0, warmup >= 0 and total >= max(warmup, 1), got peak={peak}, warmup={warmup}, "
            f"total={total}; total is the number of updates of the whole run."
        )


def constant(lr):
    """The same rate at every update.

    Examples
    --------
    >>> constant(3e-3)(1000)
    0.003

    See Also
    --------
    warmup_linear : the schedule the chapters train with.
    """
    _check_schedule(lr, 0)
    return Schedule("constant", lr)


def vaswani(d_model, warmup=4000, scale=1.0):
    """The Transformer paper's ``scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``.

    Linear warm-up for ``warmup`` updates, then decay as the inverse square root.

    Examples
    --------
    >>> s = vaswani(512, warmup=4000)
    >>> round(s(4000), 6), round(s(16000) / s(4000), 6)
    (0.000699, 0.5)

    See Also
    --------
    Chapter 8, *The Transformer*, plots it.
    """
    if warmup < 1:
        raise ValueError(f"vaswani needs warmup >= 1, got {warmup}.")
    peak = scale * d_model**-0.5 * warmup**-0.5
    _check_schedule(peak, warmup)
    return Schedule("vaswani", peak, warmup)


def warmup_linear(peak, warmup, total, final=0.0):
    """Linear warm-up to ``peak`` over ``warmup`` updates, then linear decay to ``final`` at ``total``.

    Examples
    --------
    >>> s = warmup_linear(2e-3, warmup=200, total=1500)
    >>> s(100), s(200), s(1500)
    (0.001, 0.002, 0.0)

    See Also
    --------
    Chapter 7, *Where am I? Positional information*, trains its language models with it.
    """
    _check_schedule(peak, warmup, total)
    return Schedule("warmup_linear", peak, warmup, total, final)


def warmup_cosine(peak, warmup, total, final=0.0):
    """Linear warm-up to ``peak``, then half a cosine down to ``final`` at ``total``.

    Examples
    --------
    >>> s = warmup_cosine(1.0, warmup=10, total=110)
    >>> s(10), round(s(60), 6), s(110)
    (1.0, 0.5, 0.0)

    See Also
    --------
    vaswani : the paper's schedule.
    """
    _check_schedule(peak, warmup, total)
    return Schedule("warmup_cosine", peak, warmup, total, final)
