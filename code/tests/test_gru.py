"""The GRU: the fused layer and cell nodes against finite differences, PyTorch and the
unfused equations; padding and reversal."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import Tensor, gradcheck
from attnbook.gru import BiGRUEncoder, GRUCell, gru_cell, gru_layer


def leaf(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def gru_reference(x, h, cell):
    """The GRU equations written out plainly, one step, on arrays."""
    H = h.shape[-1]
    Wx, Wh, bx, bh = cell.W_x.data, cell.W_h.data, cell.b_x.data, cell.b_h.data
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    r = sig(x @ Wx[:, :H] + bx[:H] + h @ Wh[:, :H] + bh[:H])
    z = sig(x @ Wx[:, H:2 * H] + bx[H:2 * H] + h @ Wh[:, H:2 * H] + bh[H:2 * H])
    n = np.tanh(x @ Wx[:, 2 * H:] + bx[2 * H:] + r * (h @ Wh[:, 2 * H:] + bh[2 * H:]))
    return (1 - z) * n + z * h


# --------------------------------------------------------------------------- the GRU


def test_gru_cell_matches_the_equations(rng):
    cell = GRUCell(3, 4, rng=rng)
    x, h = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(cell(x, h).data, gru_reference(x, h, cell), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_gru_layer_gradients(rng, reverse, masked):
    cell = GRUCell(3, 4, rng=rng)
    x, h0 = leaf(rng, 2, 5, 3), leaf(rng, 2, 4)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool) if masked else None
    w = rng.standard_normal((2, 5, 4))
    f = lambda x, h0, Wx, Wh, bx, bh: (gru_layer(x, h0, Wx, Wh, bx, bh, mask, reverse) * w).sum()  # noqa: E731
    assert gradcheck(f, x, h0, cell.W_x, cell.W_h, cell.b_x, cell.b_h)


def test_gru_cell_gradients_with_split_inputs(rng):
    cell = GRUCell(3, 4, rng=rng)
    x1, x2, h = leaf(rng, 2, 1), leaf(rng, 2, 2), leaf(rng, 2, 4)
    w = rng.standard_normal((2, 4))
    f = lambda a, b, h, Wx, Wh, bx, bh: (gru_cell([a, b], h, Wx, Wh, bx, bh) * w).sum()  # noqa: E731
    assert gradcheck(f, x1, x2, h, cell.W_x, cell.W_h, cell.b_x, cell.b_h)


def test_gru_layer_equals_stepping_the_cell(rng):
    cell = GRUCell(3, 4, rng=rng)
    x, h = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 4))
    states = cell.sequence(x, h).data
    for t in range(6):
        h = gru_reference(x[:, t], h, cell)
        np.testing.assert_allclose(states[:, t], h, rtol=1e-12, atol=1e-14)


def test_reverse_with_padding_reads_each_sentence_backwards_from_its_own_end(rng):
    cell = GRUCell(3, 4, rng=rng)
    x = rng.standard_normal((2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    states = cell.sequence(x, mask=mask, reverse=True).data
    alone = cell.sequence(x[:1, :3], reverse=True).data  # the short sentence, unpadded
    np.testing.assert_allclose(states[0, :3], alone[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(states[1], cell.sequence(x[1:], reverse=True).data[0], atol=1e-14)


def test_gru_matches_torch(rng):
    torch = pytest.importorskip("torch")
    cell = GRUCell(3, 4, rng=rng)
    ref = torch.nn.GRU(3, 4, batch_first=True).double()
    with torch.no_grad():  # PyTorch stores weights as (3H, d_in), used as x @ W.T
        ref.weight_ih_l0.copy_(torch.tensor(cell.W_x.data.T))
        ref.weight_hh_l0.copy_(torch.tensor(cell.W_h.data.T))
        ref.bias_ih_l0.copy_(torch.tensor(cell.b_x.data))
        ref.bias_hh_l0.copy_(torch.tensor(cell.b_h.data))
    x = rng.standard_normal((2, 7, 3))
    w = rng.standard_normal((2, 7, 4))
    xt = torch.tensor(x, requires_grad=True)
    out, _ = ref(xt)
    (out * torch.tensor(w)).sum().backward()
    xa = Tensor(x, requires_grad=True)
    ours = cell.sequence(xa)
    (ours * w).sum().backward()
    np.testing.assert_allclose(ours.data, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cell.W_h.grad, ref.weight_hh_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cell.b_x.grad, ref.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_bad_padding_mask_is_rejected(rng):
    cell = GRUCell(3, 4, rng=rng)
    with pytest.raises(ValueError, match="right padding"):
        cell.sequence(np.ones((1, 3, 3)), mask=np.array([[True, False, True]]))
    with pytest.raises(ValueError, match="right padding"):
        cell.sequence(np.ones((1, 3, 3)), mask=np.array([[False, False, False]]))


@given(st.integers(1, 5), st.integers(1, 5))
def test_encoder_padding_invariance(len_a, len_b):
    """A sentence's annotations do not depend on the padding added to share a batch."""
    rng = np.random.default_rng(len_a * 10 + len_b)
    enc = BiGRUEncoder(3, 4, rng=rng)
    T = max(len_a, len_b)
    x = rng.standard_normal((2, T, 3))
    mask = np.arange(T) < np.array([len_a, len_b])[:, None]
    h, summary = enc(x, mask)
    for b, L in enumerate((len_a, len_b)):
        h_alone, s_alone = enc(x[b:b + 1, :L])
        np.testing.assert_allclose(h.data[b, :L], h_alone.data[0], atol=1e-13)
        np.testing.assert_allclose(summary.data[b], s_alone.data[0], atol=1e-13)


def test_shape_errors(rng):
    cell = GRUCell(3, 4, rng=rng)
    with pytest.raises(ValueError, match="x must have shape \\(B, T, d_in\\) with d_in = 3"):
        cell.sequence(np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match="h0 must have shape"):
        cell.sequence(np.ones((2, 5, 3)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="gru_cell needs inputs of total shape \\(B, 3\\)"):
        cell(np.ones((2, 2)), np.zeros((2, 4)))
