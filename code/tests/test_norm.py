"""layer_norm: biased variance, eps inside the square root, any leading dimensions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import Tensor, layer_norm

seeds = st.integers(0, 2**32 - 1)


def test_layer_norm_matches_formula(rng):
    x, gamma, beta = rng.standard_normal((2, 3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased: divide by d
    expected = gamma * (x - mu) / np.sqrt(var + 1e-5) + beta
    np.testing.assert_allclose(layer_norm(x, gamma, beta), expected, rtol=1e-12)
    np.testing.assert_allclose(layer_norm(x, gamma, beta, eps=0.5),
                               gamma * (x - mu) / np.sqrt(var + 0.5) + beta, rtol=1e-12)


@given(seeds, st.integers(2, 16), st.floats(0.01, 100.0), st.floats(-100.0, 100.0))
def test_layer_norm_standardises_and_ignores_affine_changes(seed, d, scale, shift):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, d))
    y = layer_norm(x, None, None, eps=1e-300)  # eps negligible even for tiny variances
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-10)
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-8)
    np.testing.assert_allclose(layer_norm(scale * x + shift, None, None, eps=1e-300), y, rtol=1e-6, atol=1e-8)


def test_constant_vectors_stay_finite():
    y = layer_norm(np.full((2, 4), 3.0), np.ones(4), np.arange(4.0))
    np.testing.assert_array_equal(y, np.tile(np.arange(4.0), (2, 1)))


def test_layer_norm_dtypes_and_tensors(rng):
    x = rng.standard_normal((4, 6))
    g, b = rng.standard_normal(6), rng.standard_normal(6)
    y32 = layer_norm(x.astype(np.float32), g.astype(np.float32), b.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, layer_norm(x, g, b), rtol=1e-4, atol=1e-5)
    yt = layer_norm(Tensor(x), g, Tensor(b))
    assert isinstance(yt, Tensor)
    np.testing.assert_allclose(yt.data, layer_norm(x, g, b), rtol=1e-12)
    before = x.copy()
    layer_norm(x, g, b)
    np.testing.assert_array_equal(x, before)


def test_layer_norm_errors(rng):
    x = rng.standard_normal((2, 4))
    with pytest.raises(ValueError, match=r"gamma must have shape \(d,\) = \(4,\) .*got \(3,\)"):
        layer_norm(x, np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"beta must have shape \(d,\) = \(4,\) .*got \(1, 4\)"):
        layer_norm(x, np.ones(4), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="eps must be positive .*got 0"):
        layer_norm(x, None, None, eps=0)
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"x \(shape \(2, 4\)\) contains nan at index \(1, 1\)"):
        layer_norm(bad, None, None)
    with pytest.raises(ValueError, match="0-d"):
        layer_norm(np.float64(1.0), None, None)
