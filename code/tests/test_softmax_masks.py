"""softmax, log_softmax, causal_mask and padding_mask."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnbook import Tensor, causal_mask, log_softmax, padding_mask, softmax

finite = st.floats(-1e308, 1e308, allow_nan=False, allow_infinity=False)
rows = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite)


def naive_softmax(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------- softmax


@given(rows)
def test_softmax_is_a_distribution_for_any_finite_input(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings either
        p = softmax(x)
    assert p.shape == x.shape and np.all(np.isfinite(p))
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    # The largest score gets the largest weight.
    np.testing.assert_array_equal(
        np.take_along_axis(p, x.argmax(-1)[..., None], -1)[..., 0], p.max(-1)
    )


@given(hnp.arrays(np.float64, (3, 4), elements=st.floats(-30, 30)), st.floats(-1e3, 1e3))
def test_softmax_matches_definition_and_ignores_shifts(x, c):
    np.testing.assert_allclose(softmax(x), naive_softmax(x), rtol=1e-12)
    np.testing.assert_allclose(softmax(x + c), softmax(x), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_softmax_other_axes(rng, axis):
    x = rng.standard_normal((3, 4, 2))
    np.testing.assert_allclose(softmax(x, axis=axis), naive_softmax(x, axis), rtol=1e-12)
    np.testing.assert_allclose(softmax(x, axis=axis).sum(axis), 1.0)


def test_softmax_gives_masked_entries_exactly_zero(rng):
    x = rng.standard_normal((4, 6))
    keep = rng.random((4, 6)) < 0.5
    keep[:, 0] = True
    assert (~keep).any(), "nothing is masked: the check below would check nothing"
    p = softmax(np.where(keep, x, -np.inf))
    assert np.all(p[~keep] == 0.0)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    expected = naive_softmax(np.where(keep, x, -np.inf))
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_softmax_does_not_modify_its_input(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    softmax(x)
    log_softmax(x)
    np.testing.assert_array_equal(x, before)


def test_softmax_keeps_dtype_and_converts_ints():
    assert softmax(np.ones(3, np.float32)).dtype == np.float32
    assert log_softmax(np.ones(3, np.float32)).dtype == np.float32
    np.testing.assert_allclose(softmax([1, 1]), [0.5, 0.5])
    assert softmax([1, 1]).dtype == np.float64


def test_softmax_on_tensors_returns_tensors(rng):
    x = rng.standard_normal((2, 5))
    t = softmax(Tensor(x))
    assert isinstance(t, Tensor)
    np.testing.assert_allclose(t.data, softmax(x))
    np.testing.assert_allclose(log_softmax(Tensor(x)).data, log_softmax(x))


# ------------------------------------------------------------------ log_softmax


@given(rows)
def test_log_softmax_is_stable_and_normalised(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = log_softmax(x)
    assert np.all(y <= 0)
    np.testing.assert_allclose(np.exp(y).sum(-1), 1.0, rtol=1e-12)


def test_log_softmax_matches_log_of_softmax(rng):
    x = 5 * rng.standard_normal((3, 7))
    np.testing.assert_allclose(log_softmax(x), np.log(naive_softmax(x)), rtol=1e-10, atol=1e-14)
    # Where softmax underflows to 0, log_softmax still has the exact value.
    np.testing.assert_allclose(log_softmax(np.array([-2000.0, 0.0])), [-2000.0, 0.0])


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=4),
                  elements=st.floats(-30, 30)), st.data())
def test_log_softmax_normalises_along_the_axis_it_is_given(x, data):
    # Found by mutation testing (MUTATION.md): dropping ``axis`` from log_softmax passed every
    # test, which used the last axis or compared two paths sharing the same code.
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    for t in (x, Tensor(x)):
        y = log_softmax(t, axis=axis)
        y = y.data if isinstance(y, Tensor) else y
        np.testing.assert_allclose(y, np.log(naive_softmax(x, axis)), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.exp(y).sum(axis), 1.0, rtol=1e-12)


def test_log_softmax_masked_entries_are_minus_infinity():
    y = log_softmax(np.array([[0.0, -np.inf, 0.0]]))
    np.testing.assert_allclose(y, [[np.log(0.5), -np.inf, np.log(0.5)]])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fn", [softmax, log_softmax])
def test_softmax_errors(fn):
    with pytest.raises(ValueError, match=r"contains nan at index \(1,\)"):
        fn(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"contains inf at index \(0, 1\)"):
        fn(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"-inf everywhere along axis -1 at index \(1,\).*one key"):
        fn(np.array([[0.0, -np.inf], [-np.inf, -np.inf]]))
    with pytest.raises(ValueError, match="0-d"):
        fn(np.float64(1.0))
    with pytest.raises(ValueError, match="real numbers"):
        fn(np.array(["a", "b"]))


# ---------------------------------------------------------------------- masks


def test_causal_mask_square_is_lower_triangle():
    np.testing.assert_array_equal(causal_mask(5), np.tril(np.ones((5, 5), bool)))
    assert causal_mask(5).dtype == np.bool_
    np.testing.assert_array_equal(causal_mask(5, 5), causal_mask(5))


@given(st.integers(1, 12), st.integers(0, 12))
def test_causal_mask_aligns_queries_to_the_last_keys(T_q, extra):
    T_k = T_q + extra
    mask = causal_mask(T_q, T_k)
    assert mask.shape == (T_q, T_k)
    i, j = np.indices((T_q, T_k))
    np.testing.assert_array_equal(mask, j <= i + (T_k - T_q))
    np.testing.assert_array_equal(mask.sum(-1), np.arange(T_q) + extra + 1)
    assert mask[-1].all()
    # Decoding with a cache: the last T_q rows of the full square mask.
    np.testing.assert_array_equal(mask, causal_mask(T_k)[-T_q:])


def test_causal_mask_errors():
    with pytest.raises(ValueError, match=r"T_q=3, T_k=2.*first 1 queries would see no key"):
        causal_mask(3, 2)
    with pytest.raises(ValueError, match="T_q must be a positive integer, got 0"):
        causal_mask(0)
    with pytest.raises(ValueError, match="T_k must be a positive integer, got 2.5"):
        causal_mask(2, 2.5)
    with pytest.raises(ValueError, match="T_q must be a positive integer, got True"):
        causal_mask(True)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=5), st.integers(0, 3))
def test_padding_mask_marks_real_tokens(lengths, pad):
    T = max(lengths) + pad
    mask = padding_mask(lengths, T)
    assert mask.shape == (len(lengths), 1, T) and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask[:, 0].sum(-1), lengths)
    for b, n in enumerate(lengths):
        assert mask[b, 0, :n].all() and not mask[b, 0, n:].any()


def test_padding_mask_accepts_numpy_integers():
    np.testing.assert_array_equal(padding_mask(np.array([2], np.int32), 3), [[[True, True, False]]])


def test_padding_mask_errors():
    with pytest.raises(ValueError, match=r"lengths\[1\] = 0 is outside 1..T=4"):
        padding_mask([2, 0], 4)
    with pytest.raises(ValueError, match=r"lengths\[0\] = 5 is outside 1..T=4"):
        padding_mask([5], 4)
    with pytest.raises(ValueError, match="1-D array of integers"):
        padding_mask([[1, 2]], 4)
    with pytest.raises(ValueError, match="1-D array of integers"):
        padding_mask([1.5], 4)
    with pytest.raises(ValueError, match="T must be a positive integer, got -1"):
        padding_mask([1], -1)
