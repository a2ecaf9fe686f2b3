"""The GRU: one step, a whole sequence as one autograd node, and a bidirectional encoder.

The GRU follows PyTorch's equations (gates in the order r, z, n; the reset gate
multiplies ``h W_hn + b_hn``, so one matrix product serves all three gates)::

    r = sigmoid(x W_xr + b_xr + h W_hr + b_hr)
    z = sigmoid(x W_xz + b_xz + h W_hz + b_hz)
    n = tanh(x W_xn + b_xn + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

For speed, a whole GRU layer over a sequence is ONE autograd node (``gru_layer``) and a
single decoder step is one node (``gru_cell``); their backward passes are the hand-derived
back-propagation through time written out in ``_step_backward``, checked against finite
differences in the tests.
"""

from __future__ import annotations

import math

import numpy as np

from ._kernels import sigmoid, sigmoid_backward, tanh_backward
from .masks import padding_mask
from .init import uniform
from .nn import Module
from .tensor import Tensor, concatenate, node

__all__ = ["gru_layer", "gru_cell", "GRUCell", "BiGRUEncoder"]


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)


def _step_forward(gx, h, W_h, b_h):
    """One GRU step on arrays; gx = x W_x + b_x (B, 3H). Returns h' and what backward needs."""
    H = h.shape[-1]
    a = h @ W_h + b_h  # (B, 3H)
    rz = sigmoid(gx[:, : 2 * H] + a[:, : 2 * H])  # (B, 2H)
    r, z = rz[:, :H], rz[:, H:]
    a_n = a[:, 2 * H :]
    n = np.tanh(gx[:, 2 * H :] + r * a_n)
    return n + z * (h - n), (h, rz, n, a_n)


def _step_backward(g, saved, W_h, dgx, da):
    """Back-propagate dL/dh' = g through one step; fill dgx, da (B, 3H) and return dL/dh.

    With a = h W_h + b_h and gx = x W_x + b_x, the step is r, z = sigmoid(gx_rz + a_rz),
    n = tanh(gx_n + r * a_n), h' = n + z (h - n). The chain rule gives, one line each:

        dn = g (1 - z)             dz = g (h - n)             dh (direct) = g z
        dpre_n = dn (1 - n^2)      ->  dgx_n = dpre_n,  da_n = dpre_n * r,  dr = dpre_n * a_n
        dpre_rz = [dr, dz] * rz (1 - rz)   ->  dgx_rz = da_rz = dpre_rz
        dh = g z + da W_h^T        (and dW_h = h^T da, dW_x = x^T dgx, summed over steps)
    """
    h, rz, n, a_n = saved
    H = h.shape[-1]
    r, z = rz[:, :H], rz[:, H:]
    dpre_n = tanh_backward(g * (1.0 - z), n)
    drz = sigmoid_backward(np.concatenate([dpre_n * a_n, g * (h - n)], axis=1), rz)  # (B, 2H)
    dgx[:, : 2 * H] = drz
    dgx[:, 2 * H :] = dpre_n
    da[:, : 2 * H] = drz
    da[:, 2 * H :] = dpre_n * r  # n's pre-activation sees a_n through r
    return g * z + da @ W_h.T


def _reversal(mask):
    """Index that reverses each row's real (leading) tokens and leaves the padding in place."""
    B, T = mask.shape
    lengths = mask.sum(axis=1)
    t = np.arange(T)
    rev = np.where(mask, lengths[:, None] - 1 - t, t)  # (B, T); mask is right-padded
    return np.arange(B)[:, None], rev


def _check_mask(mask, B, T):
    mask = np.asarray(mask)
    ok = mask.dtype == np.bool_ and mask.shape == (B, T)
    if ok:
        lengths = mask.sum(axis=1)
        ok = lengths.min() >= 1 and bool((mask == padding_mask(lengths, T)[:, 0]).all())
    if not ok:
        raise ValueError(
            f"mask must be boolean of shape {(B, T)} with each row True on its first length >= 1 "
            f"tokens (right padding), got dtype {mask.dtype} shape {mask.shape}; "
            "build it as padding_mask(lengths, T)[:, 0]."
        )
    return mask


def gru_layer(x, h0, W_x, W_h, b_x, b_h, mask=None, reverse=False):
    """Run a GRU over a whole sequence as one autograd node.

    Parameters
    ----------
    x : Tensor or ndarray of shape (B, T, d_in)
    h0 : Tensor or ndarray of shape (B, H), or None for zeros
    W_x : Tensor of shape (d_in, 3H)
    W_h : Tensor of shape (H, 3H)
    b_x, b_h : Tensor of shape (3H,)
        Gates in the order r, z, n.
    mask : ndarray of bool, shape (B, T), optional
        True on real tokens, right-padded. At padding the state is carried unchanged,
        so ``states[:, -1]`` is each row's state after its last real token.
    reverse : bool, default False
        Read each row's real tokens from last to first (the backward half of a
        bidirectional encoder); ``states[:, t]`` is then the state after reading
        tokens ``t..L-1``.

    Returns
    -------
    Tensor of shape (B, T, H)
        The state after each token.

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> gru_layer(np.ones((2, 5, 3)), None, cell.W_x, cell.W_h, cell.b_x, cell.b_h).shape
    (2, 5, 4)

    See Also
    --------
    GRUCell : holds the weights and reads a batch with it.
    """
    X = _data(x)
    Wx, Wh, bx, bh = _data(W_x), _data(W_h), _data(b_x), _data(b_h)
    if X.ndim != 3 or X.shape[-1] != Wx.shape[0]:
        raise ValueError(
            f"x must have shape (B, T, d_in) with d_in = {Wx.shape[0]} (the rows of W_x), got {X.shape}."
        )
    B, T, _ = X.shape
    H = Wh.shape[0]
    h = np.zeros((B, H)) if h0 is None else _data(h0)
    if h.shape != (B, H):
        raise ValueError(f"h0 must have shape (B, H) = {(B, H)}, got {h.shape}.")
    if mask is not None:
        mask = _check_mask(mask, B, T)
    order = None
    if reverse:
        order = (slice(None), slice(None, None, -1)) if mask is None else _reversal(mask)
        X = X[order]
        if mask is not None:
            mask = mask[order]
    # Time-major arrays make every step's slice contiguous.
    Xt = X.transpose(1, 0, 2)  # (T, B, d_in)
    GX = Xt @ Wx + bx  # (T, B, 3H): the input's share of every gate, for all steps at once
    states = np.empty((T, B, H))
    saved = []
    for t in range(T):
        h_new, s = _step_forward(GX[t], h, Wh, bh)
        if mask is not None:
            h_new = np.where(mask[:, t, None], h_new, h)  # padding carries the state
        saved.append(s)
        states[t] = h = h_new
    out = states.transpose(1, 0, 2)  # (B, T, H)
    if reverse:
        out = out[order]

    def backward(g):
        G = (g[order] if reverse else g).transpose(1, 0, 2)  # (T, B, H)
        dGX, dA = np.empty((T, B, 3 * H)), np.empty((T, B, 3 * H))
        dh = np.zeros((B, H))
        for t in range(T - 1, -1, -1):
            gt = G[t] + dh
            if mask is None:
                dh = _step_backward(gt, saved[t], Wh, dGX[t], dA[t])
            else:
                m = mask[:, t, None]
                dh = _step_backward(gt * m, saved[t], Wh, dGX[t], dA[t]) + gt * ~m
        H_prev = np.stack([s[0] for s in saved])  # (T, B, H)
        dx = (dGX @ Wx.T).transpose(1, 0, 2)  # (B, T, d_in)
        return (dx[order] if reverse else dx, dh,
                Xt.reshape(-1, X.shape[-1]).T @ dGX.reshape(-1, 3 * H),  # dW_x
                H_prev.reshape(-1, H).T @ dA.reshape(-1, 3 * H),  # dW_h
                dGX.sum(axis=(0, 1)), dA.sum(axis=(0, 1)))

    return node(out, (x, h0, W_x, W_h, b_x, b_h), backward, "gru_layer")


def gru_cell(inputs, h, W_x, W_h, b_x, b_h):
    """One GRU step as one autograd node; ``inputs`` are concatenated along the last axis.

    Parameters
    ----------
    inputs : list of Tensor or ndarray, shapes (B, d_1), (B, d_2), ...
        With ``d_1 + d_2 + ... = d_in`` (the decoder passes ``[E y_{i-1}, c_i]``).
    h : Tensor or ndarray of shape (B, H)
    W_x, W_h, b_x, b_h : Tensor
        As for :func:`gru_layer`.

    Returns
    -------
    Tensor of shape (B, H)

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> gru_cell([np.ones((2, 1)), np.ones((2, 2))], np.zeros((2, 4)),
    ...          cell.W_x, cell.W_h, cell.b_x, cell.b_h).shape
    (2, 4)

    See Also
    --------
    gru_layer : the whole sequence in one node.
    """
    xs = [_data(x) for x in inputs]
    X = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=-1)  # (B, d_in)
    Wx, Wh, hd = _data(W_x), _data(W_h), _data(h)
    if X.ndim != 2 or X.shape[-1] != Wx.shape[0] or hd.shape != (X.shape[0], Wh.shape[0]):
        raise ValueError(
            f"gru_cell needs inputs of total shape (B, {Wx.shape[0]}) and h of shape (B, {Wh.shape[0]}), "
            f"got {X.shape} and {hd.shape}."
        )
    h_new, saved = _step_forward(X @ Wx + _data(b_x), hd, Wh, _data(b_h))
    widths = np.cumsum([x.shape[-1] for x in xs])[:-1]

    def backward(g):
        B, H = hd.shape
        dgx, da = np.empty((B, 3 * H)), np.empty((B, 3 * H))
        dh = _step_backward(g, saved, Wh, dgx, da)
        return np.split(dgx @ Wx.T, widths, axis=-1) + [
            dh, X.T @ dgx, hd.T @ da, dgx.sum(axis=0), da.sum(axis=0)]

    return node(h_new, (*inputs, h, W_x, W_h, b_x, b_h), backward, "gru_cell")


class GRUCell(Module):
    """A GRU's weights: ``W_x`` (d_in, 3H), ``W_h`` (H, 3H), ``b_x``, ``b_h`` (3H,), gates r, z, n.

    Initialised uniform on ±1/sqrt(H), as PyTorch does. Call it for one step, or use
    :meth:`sequence` to run it over a whole sequence.

    Parameters
    ----------
    d_in, hidden : int
    rng : numpy.random.Generator

    Examples
    --------
    >>> cell = GRUCell(3, 4, rng=np.random.default_rng(0))
    >>> h = cell(np.ones((2, 3)), np.zeros((2, 4)))
    >>> h.shape, cell.sequence(np.ones((2, 6, 3))).shape
    ((2, 4), (2, 6, 4))

    See Also
    --------
    Chapter 1, *The bottleneck problem*, introduces the recurrent encoder.
    """

    def __init__(self, d_in, hidden, *, rng):
        bound = 1.0 / math.sqrt(hidden)
        self.W_x = uniform(rng, (d_in, 3 * hidden), bound)
        self.W_h = uniform(rng, (hidden, 3 * hidden), bound)
        self.b_x = uniform(rng, (3 * hidden,), bound)
        self.b_h = uniform(rng, (3 * hidden,), bound)

    def forward(self, x, h):
        """x : (B, d_in) or a list of parts to concatenate; h : (B, H) -> Tensor (B, H)."""
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        return gru_cell(inputs, h, self.W_x, self.W_h, self.b_x, self.b_h)

    def sequence(self, x, h0=None, mask=None, reverse=False):
        """Run over x (B, T, d_in); see :func:`gru_layer`. Returns Tensor (B, T, H)."""
        return gru_layer(x, h0, self.W_x, self.W_h, self.b_x, self.b_h, mask=mask, reverse=reverse)


class BiGRUEncoder(Module):
    """A bidirectional GRU: ``h_j = [h_fwd_j; h_bwd_j]``, each direction of width ``hidden``.

    Examples
    --------
    >>> enc = BiGRUEncoder(3, 4, rng=np.random.default_rng(0))
    >>> h, summary = enc(np.ones((2, 5, 3)))
    >>> h.shape, summary.shape
    ((2, 5, 8), (2, 8))

    See Also
    --------
    attnbook.seq2seq.Seq2Seq : encodes its source with it.
    """

    def __init__(self, d_in, hidden, *, rng):
        self.fwd = GRUCell(d_in, hidden, rng=rng)
        self.bwd = GRUCell(d_in, hidden, rng=rng)

    def forward(self, x, mask=None):
        """x : (B, T, d_in); mask : (B, T) bool, right-padded, optional.

        Returns
        -------
        h : Tensor of shape (B, T, 2 * hidden)
            The annotation of every source word.
        summary : Tensor of shape (B, 2 * hidden)
            ``[h_fwd_T; h_bwd_1]``: each direction's state after reading the whole sentence.
        """
        h_fwd = self.fwd.sequence(x, mask=mask)  # (B, T, H)
        h_bwd = self.bwd.sequence(x, mask=mask, reverse=True)  # (B, T, H)
        summary = concatenate([h_fwd[:, -1], h_bwd[:, 0]], axis=-1)  # (B, 2H)
        return concatenate([h_fwd, h_bwd], axis=-1), summary
