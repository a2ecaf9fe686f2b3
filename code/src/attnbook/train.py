"""The training loop.

``fit`` runs a fixed number of updates and returns a :class:`History` of what happened.
:func:`attnbook.cache.cached` trains a model once per build with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .nn import evaluating
from .optim import clip_grad_norm
from .tensor import no_grad

__all__ = ["History", "fit"]


@dataclass
class History:
    """What happened during training.

    Attributes
    ----------
    losses : list of float
        The training loss at every update.
    lrs : list of float
        The learning rate used at every update.
    grad_norms : list of float
        The global gradient norm before clipping (empty when not clipping).
    eval_steps : list of int
        Updates after which ``eval_fn`` ran.
    metrics : dict of str to list of float
        One list per metric returned by ``eval_fn``, aligned with ``eval_steps``.
    seconds : float
        Wall-clock training time (evaluation included).

    Examples
    --------
    >>> History(losses=[2.0, 1.0]).to_json()[:22]
    '{"losses": [2.0, 1.0],'

    See Also
    --------
    fit : fills it.
    """

    losses: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self):
        """The history as a JSON string."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        """Rebuild a history saved with :meth:`to_json`."""
        return cls(**json.loads(text))


def _batch_stream(batches):
    """Yield batches forever: a sequence is cycled, an iterator is read until it ends."""
    while True:
        n = 0
        for batch in batches:
            n += 1
            yield batch
        if n == 0 or iter(batches) is batches:
            return


def fit(model, batches, loss_fn, optimizer, steps, *, schedule=None, clip=None, eval_fn=None,
        eval_every=None):
    """Train ``model`` for ``steps`` updates.

    Each update: forget the gradients, ``loss = loss_fn(model, batch)``, back-propagate,
    clip the global gradient norm to ``clip``, set the learning rate from ``schedule``,
    and take an optimiser step.

    Parameters
    ----------
    model : Module
    batches : iterable
        Anything ``loss_fn`` understands. A list (or other re-iterable) is cycled; an
        iterator or generator must yield at least ``steps`` batches.
    loss_fn : callable
        ``loss_fn(model, batch)`` returns a one-element Tensor.
    optimizer : SGD, Adam or AdamW
    steps : int
        Number of updates.
    schedule : callable, optional
        Learning rate of the 1-based update number (see ``attnbook.optim``); None keeps
        the optimiser's ``lr``.
    clip : float, optional
        Global gradient-norm bound.
    eval_fn : callable, optional
        ``eval_fn(model)`` returns a dict of floats; it runs under ``no_grad()`` and in
        evaluation mode (``attnbook.nn.evaluating``) every ``eval_every`` updates and after
        the last one.
    eval_every : int, optional

    Returns
    -------
    History

    Raises
    ------
    ValueError
        If ``steps`` is not positive, the batches run out, or the loss is not finite
        (the message names the update; lower the learning rate or clip).

    Examples
    --------
    >>> from attnbook import Tensor
    >>> from attnbook.nn import Linear
    >>> from attnbook.optim import SGD
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 3)); y = x @ np.array([[1.0], [-2.0], [0.5]])
    >>> model = Linear(3, 1, rng=rng)
    >>> loss = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()
    >>> history = fit(model, [(x, y)], loss, SGD(model.parameters(), lr=0.1), steps=200)
    >>> history.losses[-1] < 1e-6
    True

    See Also
    --------
    attnbook.cache.cached : train once per build.
    Chapter 6, *Multi-head attention*, trains its one-block model with it.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    params = model.parameters()
    history = History()
    stream = _batch_stream(batches)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        try:
            batch = next(stream)
        except StopIteration:
            raise ValueError(
                f"the batches ran out after {step - 1} of {steps} updates; pass a list (it is "
                "cycled) or a generator that yields batches forever."
            ) from None
        for p in params:
            p.grad = None
        loss = loss_fn(model, batch)
        value = float(loss.item())
        if not math.isfinite(value):
            raise ValueError(
                f"the loss is {value} at update {step}: training diverged; lower the learning "
                "rate, add warm-up, or clip the gradient norm."
            )
        loss.backward()
        if clip is not None:
            history.grad_norms.append(clip_grad_norm(params, clip))
        if schedule is not None:
            optimizer.lr = schedule(step)
        optimizer.step()
        history.losses.append(value)
        history.lrs.append(float(optimizer.lr))
        if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
            with no_grad(), evaluating(model):
                results = eval_fn(model)
            history.eval_steps.append(step)
            for name, v in results.items():
                history.metrics.setdefault(name, []).append(float(v))
    history.seconds = time.perf_counter() - start
    return history
