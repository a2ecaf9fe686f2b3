"""Input validation shared by the public functions.

Every check raises ValueError with a message that names the offending shapes or values
and says what to do about them. The checks are cheap (one pass over each input at most).
"""

from __future__ import annotations

import numbers

import numpy as np

from .tensor import Tensor


def as_input(x, name):
    """Return ``x`` as a Tensor (unchanged) or a float ndarray (float dtypes kept, ints -> float64)."""
    if isinstance(x, Tensor):
        return x
    x = np.asarray(x)
    if x.dtype.kind == "f":
        return x
    if x.dtype.kind in "biu":
        return x.astype(np.float64)
    raise ValueError(
        f"{name} must hold real numbers, got dtype {x.dtype}; pass a float ndarray or a Tensor."
    )


def values(x):
    """The ndarray behind ``x`` (``x.data`` for a Tensor)."""
    return x.data if isinstance(x, Tensor) else x


def check_finite(x, name):
    """Reject NaN and infinities, naming the first offending element."""
    data = values(x)
    if not np.isfinite(data).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
        raise ValueError(
            f"{name} (shape {data.shape}) contains {data[index]} at index {index}; the inputs "
            "must be finite. Check the computation that produced them for overflow or "
            "division by zero (to remove keys, pass a boolean mask instead of -inf)."
        )


def check_ndim(x, name, min_ndim, layout):
    """Require at least ``min_ndim`` dimensions; ``layout`` is the documented shape."""
    if x.ndim < min_ndim:
        hint = f" (for a single row use {name}[None, :])" if min_ndim == 2 and x.ndim == 1 else ""
        raise ValueError(f"{name} must have shape {layout}, got shape {x.shape}{hint}.")


def check_positive_int(value, name):
    """Require an integer >= 1 and return it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_even(value, name, why):
    """Require an even width; ``why`` says which pairs need it."""
    if value % 2:
        raise ValueError(
            f"{name} must be even because {why}, got {name}={value}; use an even width "
            f"(e.g. {value + 1})."
        )


def broadcast_batch(shapes, names):
    """The broadcast of the leading (batch) dimensions, with a readable error."""
    try:
        return np.broadcast_shapes(*(s[:-2] for s in shapes))
    except ValueError:
        listing = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(
            f"the batch dimensions (all but the last two) do not broadcast: {listing}; give "
            "them equal leading dimensions or size-1 axes."
        ) from None


def check_same_width(q, k, name_q="q", name_k="k"):
    """Queries and keys are compared by a dot product, so their widths must match."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{name_q} has width d_k={q.shape[-1]} (shape {q.shape}) but {name_k} has width "
            f"{k.shape[-1]} (shape {k.shape}); a dot product needs equal widths: project both "
            "to a common d_k (e.g. with W_q and W_k) or use general_score/additive_score."
        )


def check_keys_values(k, v, name_k="k", name_v="v"):
    """Every key needs exactly one value."""
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{name_k} has T_k={k.shape[-2]} keys (shape {k.shape}) but {name_v} has "
            f"{v.shape[-2]} values (shape {v.shape}); pass one value per key."
        )


def check_broadcasts_to(x, target, name, hint):
    """Require ``x`` to broadcast to ``target`` without enlarging it."""
    try:
        ok = np.broadcast_shapes(x.shape, target) == tuple(target)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {x.shape} does not broadcast to the scores of shape "
            f"{tuple(target)} (..., T_q, T_k); {hint}"
        )


def check_mask(mask, scores_shape):
    """Validate a boolean mask (True = may attend) against the scores; return it as an ndarray."""
    if isinstance(mask, Tensor) or np.asarray(mask).dtype != np.bool_:
        dtype = "Tensor" if isinstance(mask, Tensor) else np.asarray(mask).dtype
        raise ValueError(
            f"mask must be a boolean ndarray (True = may attend), got {dtype}; build it with "
            "causal_mask / padding_mask or a comparison such as np.arange(T) < length."
        )
    mask = np.asarray(mask)
    check_broadcasts_to(
        mask, scores_shape, "mask",
        "give it shape (T_q, T_k), (B, 1, T_k) (padding) or (B, T_q, T_k).",
    )
    check_rows_attend(mask)
    return mask


def check_rows_attend(mask):
    """Every query row must keep at least one key: a softmax over no keys is undefined."""
    if mask.ndim == 0:
        keeps = mask
    else:
        keeps = mask.any(axis=-1)
    if np.all(keeps):
        return
    bad = tuple(int(i) for i in np.argwhere(~np.atleast_1d(keeps))[0])
    if mask.ndim >= 2 and mask.shape[-2] != 1:
        where_ = f"query row {bad[-1]}" + (f" of batch index {bad[:-1]}" if bad[:-1] else "")
    else:
        where_ = "every query row" + (f" of batch index {bad[:-1]}" if bad[:-1] else "")
    raise ValueError(
        f"mask (shape {mask.shape}) leaves {where_} with every key masked, and a softmax "
        "over no keys is undefined. Give every query at least one key: check that "
        "causal_mask(T_q, T_k) and padding_mask(lengths, T) match the queries and keys "
        "(causal_mask aligns queries to the last keys) and that no length is 0."
    )


def check_rng(rng):
    """Require a numpy Generator (every random function of attnbook takes one)."""
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


def check_dropout_p(p):
    """Require a dropout probability in [0, 1) and return it as float."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(
            f"the dropout probability p must be a number in [0, 1), got {p!r}; p = 0 keeps every "
            "entry, and p = 1 would drop them all (nothing to rescale)."
        )
    return float(p)
