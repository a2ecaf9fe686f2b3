"""Cross-entropy and accuracy: values by hand, gradients, PyTorch, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnbook import Tensor, gradcheck
from attnbook.losses import accuracy, cross_entropy


def by_hand(logits, targets, counted, eps=0.0):
    V = logits.shape[-1]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = np.full(logits.shape, eps / V)
    np.put_along_axis(q, targets[..., None], (1 - eps) + eps / V, axis=-1)
    return float((-(q * logp).sum(-1))[counted].mean())


@given(hnp.arrays(np.float64, (3, 4, 5), elements=st.floats(-20, 20)), st.floats(0, 0.5))
def test_value_matches_the_definition(logits, eps):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, (3, 4))
    mask = rng.random((3, 4)) < 0.7
    mask[0, 0] = True
    got = cross_entropy(logits, targets, mask=mask, label_smoothing=eps)
    assert got == pytest.approx(by_hand(logits, targets, mask, eps), rel=1e-12, abs=1e-12)


def test_ignore_index_is_a_mask(rng):
    logits = rng.standard_normal((2, 5, 6))
    targets = rng.integers(1, 6, (2, 5))
    targets[0, 3:] = 0
    assert cross_entropy(logits, targets, ignore_index=0) == pytest.approx(
        cross_entropy(logits, targets, mask=targets != 0), rel=1e-14)


def test_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    assert cross_entropy(logits, np.array([0])) == pytest.approx(0.0, abs=1e-12)
    assert cross_entropy(logits, np.array([2])) == pytest.approx(2000.0)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradient(rng, eps):
    logits = Tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[True, True, False], [True, False, True]])
    assert gradcheck(lambda x: cross_entropy(x, targets, mask=mask, label_smoothing=eps) * 3.0, logits)
    logits.grad = None
    cross_entropy(logits, targets, mask=mask).backward()
    assert (logits.grad[0, 2] == 0).all() and (logits.grad[1, 1] == 0).all()


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((4, 7, 9))
    targets = rng.integers(0, 9, (4, 7))
    targets[:, -2:] = 0
    ours = Tensor(logits, requires_grad=True)
    loss = cross_entropy(ours, targets, ignore_index=0, label_smoothing=0.1)
    loss.backward()
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, 9), torch.tensor(targets).reshape(-1), ignore_index=0,
                                            label_smoothing=0.1)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(ours.grad, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_accuracy(rng):
    logits = np.array([[[3.0, 1.0], [0.0, 2.0], [5.0, 1.0]]])
    targets = np.array([[0, 0, 1]])
    assert accuracy(logits, targets) == pytest.approx(1 / 3)
    assert accuracy(Tensor(logits), targets, mask=np.array([[True, False, False]])) == 1.0


def test_errors(rng):
    logits = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match="targets must be integers of shape \\(2, 3\\)"):
        cross_entropy(logits, np.zeros((2, 4), dtype=int))
    with pytest.raises(ValueError, match="outside the vocabulary \\[0, 4\\)"):
        cross_entropy(logits, np.full((2, 3), 4))
    with pytest.raises(ValueError, match="no position is counted"):
        cross_entropy(logits, np.zeros((2, 3), dtype=int), ignore_index=0)
    with pytest.raises(ValueError, match="mask must be boolean of shape \\(2, 3\\)"):
        cross_entropy(logits, np.zeros((2, 3), dtype=int), mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match="label_smoothing must lie in \\[0, 1\\)"):
        cross_entropy(logits, np.zeros((2, 3), dtype=int), label_smoothing=1.0)
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="nan"):
        cross_entropy(bad, np.zeros((2, 3), dtype=int))


def test_cross_entropy_on_float32_arrays_is_computed_in_float64(rng):
    # A float32 ndarray is converted (np.asarray(..., float64)) before the loss: the same value
    # as for the float64 copy, to float64 precision, and the independent definition
    # -mean(log softmax[target]). Mutation testing (MUTATION.md) found the conversion removable.
    logits = (4 * rng.standard_normal((3, 5, 7))).astype(np.float32)
    targets = rng.integers(0, 7, (3, 5))
    wide = logits.astype(np.float64)
    log_p = wide - np.log(np.exp(wide).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, targets[..., None], -1).mean()
    loss = cross_entropy(logits, targets)
    assert loss == pytest.approx(expected, rel=1e-13)
    assert loss == cross_entropy(wide, targets)
