"""The alignment scores of chapter 2, on ndarrays and Tensors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import (
    Tensor,
    additive_score,
    cosine_score,
    dot_score,
    general_score,
    scaled_dot_score,
)

seeds = st.integers(0, 2**32 - 1)


def test_dot_and_scaled_dot_match_einsum(rng):
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    expected = np.einsum("bqd,bkd->bqk", q, k)
    np.testing.assert_allclose(dot_score(q, k), expected, rtol=1e-12)
    np.testing.assert_allclose(scaled_dot_score(q, k), expected / 2.0, rtol=1e-12)


def test_general_score_is_a_bilinear_form(rng):
    q, k, W = rng.standard_normal((3, 4)), rng.standard_normal((5, 6)), rng.standard_normal((4, 6))
    np.testing.assert_allclose(general_score(q, k, W), np.einsum("qa,ab,kb->qk", q, W, k))
    k4 = rng.standard_normal((5, 4))
    np.testing.assert_allclose(general_score(q, k4, np.eye(4)), dot_score(q, k4), rtol=1e-12)


def test_additive_score_matches_its_definition(rng):
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 6))
    W_q, W_k, w_v = rng.standard_normal((4, 7)), rng.standard_normal((6, 7)), rng.standard_normal(7)
    got = additive_score(q, k, W_q, W_k, w_v)
    assert got.shape == (2, 3, 5)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                expected = w_v @ np.tanh(q[b, i] @ W_q + k[b, j] @ W_k)
                np.testing.assert_allclose(got[b, i, j], expected, rtol=1e-12)


@given(seeds, st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_cosine_score_ignores_lengths(seed, a, b):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    c = cosine_score(q, k)
    assert np.all(np.abs(c) <= 1 + 1e-12)
    np.testing.assert_allclose(cosine_score(a * q, b * k), c, rtol=1e-10, atol=1e-12)
    unit_q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    unit_k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    np.testing.assert_allclose(c, unit_q @ unit_k.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(cosine_score(q, q)), 1.0)


@st.composite
def batch_pair(draw):
    """Batch shapes of q and k: different (axes dropped or set to 1) but compatible."""
    full = draw(st.lists(st.integers(2, 3), max_size=2).map(tuple))

    def version():
        kept = full[draw(st.integers(0, len(full))):]
        return tuple(n if draw(st.booleans()) else 1 for n in kept)

    return version(), version()


@given(seeds, batch_pair(), st.integers(1, 4), st.integers(1, 4))
def test_every_score_broadcasts_batches_like_a_loop(seed, batches, T_q, T_k):
    """Each batch element of a broadcast call equals the unbatched call on that element."""
    rng = np.random.default_rng(seed)
    q_b, k_b = batches
    q, k = rng.standard_normal(q_b + (T_q, 4)), rng.standard_normal(k_b + (T_k, 4))
    W, W_k, w_v = rng.standard_normal((4, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    scores = [dot_score, scaled_dot_score, cosine_score, lambda a, b: general_score(a, b, W),
              lambda a, b: additive_score(a, b, W[:, :3], W_k, w_v)]
    full = np.broadcast_shapes(q_b, k_b)
    q_full, k_full = np.broadcast_to(q, full + q.shape[-2:]), np.broadcast_to(k, full + k.shape[-2:])
    for fn in scores:
        got = fn(q, k)
        assert got.shape == full + (T_q, T_k)
        for index in np.ndindex(*full):
            np.testing.assert_allclose(got[index], fn(q_full[index], k_full[index]), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fn(Tensor(q), Tensor(k)).data, got, rtol=1e-12, atol=1e-14)


def test_dot_score_grows_with_length_but_cosine_does_not(rng):
    q, k = rng.standard_normal((1, 8)), rng.standard_normal((1, 8))
    np.testing.assert_allclose(dot_score(3 * q, k), 3 * dot_score(q, k))
    np.testing.assert_allclose(cosine_score(3 * q, k), cosine_score(q, k))


def test_scaling_keeps_score_variance_near_one(rng):
    """Chapter 5's argument: q . k has variance d_k; dividing by sqrt(d_k) makes it 1."""
    d_k = 256
    q, k = rng.standard_normal((200, d_k)), rng.standard_normal((200, d_k))
    assert 200 < dot_score(q, k).var() < 320
    assert 0.85 < scaled_dot_score(q, k).var() < 1.15


def test_batch_dimensions_broadcast(rng):
    q, k = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 6, 4))
    s = scaled_dot_score(q, k)
    assert s.shape == (2, 5, 3, 6)
    np.testing.assert_allclose(s[1, 4], q[1, 0] @ k[4].T / 2.0, rtol=1e-12)
    W_q, W_k, w_v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    assert additive_score(q, k, W_q, W_k, w_v).shape == (2, 5, 3, 6)


@pytest.mark.parametrize("name", ["dot", "scaled", "general", "additive", "cosine"])
def test_scores_keep_float32_and_accept_tensors(rng, name):
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    W, W_k, w_v = rng.standard_normal((4, 4)), rng.standard_normal((4, 4)), rng.standard_normal(4)
    fn = {
        "dot": dot_score,
        "scaled": scaled_dot_score,
        "general": lambda a, b: general_score(a, b, W),
        "additive": lambda a, b: additive_score(a, b, W, W_k, w_v),
        "cosine": cosine_score,
    }[name]
    if name in ("general", "additive"):
        W, W_k, w_v = W.astype(np.float32), W_k.astype(np.float32), w_v.astype(np.float32)
    expected = fn(q, k)
    got32 = fn(q.astype(np.float32), k.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5)
    got = fn(Tensor(q), k)
    assert isinstance(got, Tensor)
    np.testing.assert_allclose(got.data, expected, rtol=1e-6)


def test_score_errors(rng):
    q, k = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match=r"q has width d_k=4 \(shape \(3, 4\)\) but k has width 3"):
        dot_score(q, k[:, :3])
    with pytest.raises(ValueError, match=r"q must have shape \(\.\.\., T_q, d_q\), got shape \(4,\).*q\[None, :\]"):
        scaled_dot_score(q[0], k)
    bad = q.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"q \(shape \(3, 4\)\) contains nan at index \(1, 2\)"):
        dot_score(bad, k)
    bad_k = k.copy()
    bad_k[0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"k \(shape \(5, 4\)\) contains -inf.*boolean mask"):
        cosine_score(q, bad_k)
    with pytest.raises(ValueError, match=r"batch dimensions.*q \(2, 3, 4\), k \(3, 5, 4\)"):
        dot_score(np.ones((2, 3, 4)), np.ones((3, 5, 4)))
    with pytest.raises(ValueError, match=r"W must have shape \(d_q, d_k\) = \(4, 6\)"):
        general_score(q, rng.standard_normal((5, 6)), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"W must have shape \(d_q, d_k\) = \(4, 4\).*got \(3, 4\)"):
        general_score(q, k, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"same attention width d_a"):
        additive_score(q, k, np.ones((4, 3)), np.ones((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match=r"w_v must have shape \(3,\), got \(2,\)"):
        additive_score(q, k, np.ones((4, 3)), np.ones((4, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"W_k must have shape \(4, d_a\)"):
        additive_score(q, k, np.ones((4, 3)), np.ones((2, 3)), np.ones(3))
    zero = k.copy()
    zero[2] = 0.0
    with pytest.raises(ValueError, match=r"k has a zero vector at index \(2,\).*dot_score"):
        cosine_score(q, zero)
