"""Sinusoidal encodings, ALiBi and RoPE: definitions and the properties chapter 7 proves."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import (
    Tensor,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

seeds = st.integers(0, 2**32 - 1)
even_widths = st.integers(1, 8).map(lambda n: 2 * n)


# ------------------------------------------------------------------- sinusoids


def test_sinusoids_match_the_definition():
    T, d = 7, 6
    pe = sinusoidal_positions(T, d)
    assert pe.shape == (T, d) and pe.dtype == np.float64
    for p in range(T):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert pe[p, 2 * i] == pytest.approx(math.sin(angle), abs=1e-15)
            assert pe[p, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-15)
    np.testing.assert_array_equal(pe[0], np.tile([0.0, 1.0], d // 2))


def rotation_for_shift(k, d):
    """Block-diagonal R_k with R_k @ PE[p] = PE[p + k]; built without looking at p."""
    R = np.zeros((d, d))
    for i in range(d // 2):
        a = k / 10000 ** (2 * i / d)
        R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]
    return R


@given(st.integers(0, 50), even_widths)
def test_a_shift_is_a_fixed_rotation(k, d):
    T = 40
    pe = sinusoidal_positions(T + k, d)
    R = rotation_for_shift(k, d)
    np.testing.assert_allclose(pe[k:], pe[:T] @ R.T, atol=1e-12)  # every p at once
    np.testing.assert_allclose(R @ R.T, np.eye(d), atol=1e-14)
    # The dot product of two encodings depends only on their distance.
    np.testing.assert_allclose(pe[k:] @ pe[k:].T, pe[:T] @ pe[:T].T, atol=1e-10)


def test_sinusoid_errors():
    with pytest.raises(ValueError, match=r"d must be even .*sine and a cosine.*got d=5"):
        sinusoidal_positions(4, 5)
    with pytest.raises(ValueError, match="T must be a positive integer, got 0"):
        sinusoidal_positions(0, 4)
    with pytest.raises(ValueError, match="d must be a positive integer, got -2"):
        sinusoidal_positions(3, -2)


# ----------------------------------------------------------------------- ALiBi


def official_slopes(n):
    """The rule as written in the ALiBi authors' code (ofirpress/attention_with_linear_biases)."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + official_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_match_the_paper():
    np.testing.assert_allclose(alibi_slopes(8), [1 / 2 ** i for i in range(1, 9)], rtol=1e-15)
    np.testing.assert_allclose(alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8], rtol=1e-15)
    np.testing.assert_allclose(alibi_slopes(1), [1 / 256])
    np.testing.assert_allclose(alibi_slopes(16)[:2], [2 ** -0.5, 1 / 2])


@given(st.integers(1, 70))
def test_alibi_slopes_follow_the_official_rule(n):
    slopes = alibi_slopes(n)
    assert slopes.shape == (n,) and len(set(slopes)) == n
    np.testing.assert_allclose(slopes, official_slopes(n), rtol=1e-12)


@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 5))
def test_alibi_bias_depends_on_distance_only(n_heads, T_q, extra):
    T_k = T_q + extra
    bias = alibi_bias(n_heads, T_q, T_k)
    assert bias.shape == (n_heads, T_q, T_k)
    np.testing.assert_array_equal(bias[:, 1:, 1:], bias[:, :-1, :-1])  # constant along diagonals
    i, j = np.indices((T_q, T_k))
    np.testing.assert_allclose(bias, -alibi_slopes(n_heads)[:, None, None] * np.abs(i + extra - j))
    assert np.all(bias[:, np.arange(T_q), np.arange(T_q) + extra] == 0)  # a query's own key
    # Queries aligned to the last keys: a decoding step is the last rows of the full bias.
    np.testing.assert_array_equal(bias, alibi_bias(n_heads, T_k)[:, T_k - T_q :])


def test_alibi_errors():
    with pytest.raises(ValueError, match="n_heads must be a positive integer, got 0"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match="T_k must be a positive integer, got 0"):
        alibi_bias(2, 3, 0)


# ------------------------------------------------------------------------ RoPE


def test_rope_rotates_each_pair_by_its_angle(rng):
    T, d = 5, 6
    x = rng.standard_normal((T, d))
    y = apply_rope(x)
    for p in range(T):
        for i in range(d // 2):
            a = p * 10000 ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            np.testing.assert_allclose(
                y[p, 2 * i : 2 * i + 2],
                [c * x[p, 2 * i] - s * x[p, 2 * i + 1], s * x[p, 2 * i] + c * x[p, 2 * i + 1]],
                rtol=1e-12, atol=1e-15,
            )
    np.testing.assert_array_equal(y[0], x[0])  # position 0 is not rotated
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)


@given(seeds, even_widths, st.integers(0, 100), st.integers(-30, 30), st.integers(1, 100))
def test_rope_scores_depend_on_the_offset_only(seed, d, p, offset, shift):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((1, d)), rng.standard_normal((1, d))
    def score(p_q, p_k):
        return (apply_rope(q, [p_q]) @ apply_rope(k, [p_k]).T).item()
    assert score(p, p + offset) == pytest.approx(score(p + shift, p + shift + offset), abs=1e-9)


def test_rope_attention_is_invariant_to_shifting_all_positions(rng):
    q, k, v = rng.standard_normal((3, 2, 6, 8))
    pos = np.arange(6)
    _, w = scaled_dot_product_attention(apply_rope(q, pos), apply_rope(k, pos), v)
    _, w_shifted = scaled_dot_product_attention(apply_rope(q, pos + 37), apply_rope(k, pos + 37), v)
    np.testing.assert_allclose(w_shifted, w, rtol=1e-10)
    _, w_plain = scaled_dot_product_attention(q, k, v)
    assert not np.allclose(w_plain, w)


def test_rope_positions_and_shapes(rng):
    x = rng.standard_normal((2, 3, 4, 6))  # (B, H, T, d_head)
    np.testing.assert_array_equal(apply_rope(x), apply_rope(x, np.arange(4)))
    per_batch = np.array([[0, 1, 2, 3], [5, 6, 7, 8]])[:, None, :]  # (B, 1, T)
    y = apply_rope(x, per_batch)
    np.testing.assert_allclose(y[1], apply_rope(x[1], np.arange(5, 9)), rtol=1e-12)
    np.testing.assert_allclose(apply_rope(x, Tensor(np.arange(4.0))), apply_rope(x), rtol=1e-15)
    assert apply_rope(x.astype(np.float32)).dtype == np.float32
    t = apply_rope(Tensor(x))
    assert isinstance(t, Tensor)
    np.testing.assert_allclose(t.data, apply_rope(x), rtol=1e-12)
    a, b = x[0, 0, 1, :2]  # position 1, one pair, base 1: rotated by exactly 1 radian
    np.testing.assert_allclose(apply_rope(x[..., :2], base=1.0)[0, 0, 1],
                               [math.cos(1) * a - math.sin(1) * b, math.sin(1) * a + math.cos(1) * b])


def test_rope_errors(rng):
    x = rng.standard_normal((4, 6))
    with pytest.raises(ValueError, match=r"d must be even because RoPE rotates pairs.*got d=5"):
        apply_rope(x[:, :5])
    with pytest.raises(ValueError, match=r"positions of shape \(3,\) do not fit x of shape \(4, 6\).*shape \(4,\)"):
        apply_rope(x, np.arange(3))
    with pytest.raises(ValueError, match=r"positions \(shape \(4,\)\) contains nan"):
        apply_rope(x, [0, 1, np.nan, 3])
    with pytest.raises(ValueError, match="base must be positive, got 0"):
        apply_rope(x, base=0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., T, d\), got shape \(6,\)"):
        apply_rope(x[0])
    bad = x.copy()
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match=r"x \(shape \(4, 6\)\) contains inf at index \(2, 3\)"):
        apply_rope(bad)
