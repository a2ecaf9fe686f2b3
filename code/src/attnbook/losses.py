"""Cross-entropy and accuracy of next-token predictions, with padding left out.

``cross_entropy`` is one fused autograd node: the forward pass uses the package's stable
``log_softmax``, and the backward pass is the closed form the book derives,
``d loss / d logits = (softmax(logits) - q) * weight``, where ``q`` is the target
distribution (one-hot, or smoothed) and ``weight`` is 1/N on counted positions.
"""

from __future__ import annotations

import numpy as np

from .softmax import log_softmax
from .tensor import Tensor, node

__all__ = ["cross_entropy", "accuracy"]


def _counted(logits, targets, mask, ignore_index, name):
    """Validate the shapes; return targets (int array) and the boolean mask of counted positions."""
    targets = np.asarray(targets)
    shape = logits.shape[:-1]
    if targets.shape != shape or targets.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: targets must be integers of shape {shape} (logits {logits.shape} minus the "
            f"vocabulary axis), got dtype {targets.dtype} shape {targets.shape}."
        )
    counted = np.ones(shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != shape:
            raise ValueError(
                f"{name}: mask must be boolean of shape {shape} (True = counted, e.g. Batch.tgt_mask), "
                f"got dtype {mask.dtype} shape {mask.shape}."
            )
        counted &= mask
    if ignore_index is not None:
        counted &= targets != ignore_index
    if not counted.any():
        raise ValueError(
            f"{name}: no position is counted (mask all False or every target == ignore_index); "
            "check the mask and the padding id."
        )
    V = logits.shape[-1]
    bad = counted & ((targets < 0) | (targets >= V))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: target {targets[index]} at index {index} is outside the vocabulary [0, {V}); "
            "use the vocabulary the model was built with, or mask that position."
        )
    return targets, counted


def cross_entropy(logits, targets, mask=None, ignore_index=None, label_smoothing=0.0):
    """Mean negative log-likelihood of the targets over the counted positions.

    With label smoothing ``eps`` the target distribution is ``(1 - eps) one_hot + eps / V``
    (as in the Transformer paper and ``torch.nn.functional.cross_entropy``).

    Parameters
    ----------
    logits : Tensor or ndarray of shape (..., V)
        Unnormalised scores over the vocabulary.
    targets : ndarray of int, shape (...)
    mask : ndarray of bool, shape (...), optional
        True = counted (padding is False).
    ignore_index : int, optional
        Targets equal to it are not counted (e.g. ``PAD``).
    label_smoothing : float in [0, 1), default 0

    Returns
    -------
    Tensor (0-d) if ``logits`` is a Tensor, else float
        The mean loss in nats per counted token.

    Raises
    ------
    ValueError
        If shapes disagree, no position is counted, a counted target is outside the
        vocabulary, the logits are not finite, or ``label_smoothing`` is outside [0, 1).

    Examples
    --------
    >>> logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    >>> round(cross_entropy(logits, np.array([0, 1])), 4)  # (ln 2 + ln 1.25) / 2
    0.4581
    >>> round(cross_entropy(logits, np.array([0, 1]), mask=np.array([True, False])), 4)
    0.6931

    See Also
    --------
    accuracy : the fraction of counted positions predicted right.
    Chapter 4, *Learning to align and translate*, trains with it.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}; 0.1 is the paper's value.")
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits, dtype=np.float64)
    targets, counted = _counted(data, targets, mask, ignore_index, "cross_entropy")
    logp = log_softmax(data, axis=-1)  # (..., V); rejects NaN and inf
    V = data.shape[-1]
    weight = counted / counted.sum()  # (...): 1/N where counted, else 0
    safe = np.where(counted, targets, 0)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (...)
    nll = -(1.0 - label_smoothing) * picked - (label_smoothing / V) * logp.sum(axis=-1)
    loss = float((weight * nll).sum())
    if not isinstance(logits, Tensor):
        return loss

    def backward(g):
        # d loss / d logits = (softmax - q) * weight, q = (1 - eps) one_hot + eps / V
        d = np.exp(logp)
        d -= label_smoothing / V
        at_target = np.take_along_axis(d, safe[..., None], axis=-1)
        np.put_along_axis(d, safe[..., None], at_target - (1.0 - label_smoothing), axis=-1)
        d *= (g * weight)[..., None]
        return (d,)

    return node(np.array(loss), (logits,), backward, "cross_entropy")


def accuracy(logits, targets, mask=None, ignore_index=None):
    """Fraction of counted positions whose largest logit is the target.

    Parameters
    ----------
    logits : Tensor or ndarray of shape (..., V)
    targets : ndarray of int, shape (...)
    mask : ndarray of bool, shape (...), optional
        True = counted.
    ignore_index : int, optional
        Targets equal to it are not counted.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        As :func:`cross_entropy`.

    Examples
    --------
    >>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]]), np.array([0, 1, 1]))
    0.6666666666666666

    See Also
    --------
    attnbook.metrics.token_accuracy : the same count on decoded sequences.
    """
    data = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    targets, counted = _counted(data, targets, mask, ignore_index, "accuracy")
    return float(((data.argmax(axis=-1) == targets) & counted).sum() / counted.sum())
