"""flash_attention: the same output as scaled_dot_product_attention, block by block."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import (
    Tensor,
    causal_mask,
    flash_attention,
    padding_mask,
    scaled_dot_product_attention,
)

seeds = st.integers(0, 2**32 - 1)


@given(
    seeds,
    st.integers(1, 20),  # T_q
    st.integers(0, 20),  # extra keys
    st.integers(1, 6),  # d_k
    st.integers(1, 5),  # d_v
    st.integers(1, 9),  # block_size
    st.sampled_from(["none", "random", "causal", "padding", "keys_only"]),
    st.booleans(),
)
def test_flash_equals_sdpa(seed, T_q, extra, d_k, d_v, block_size, mask_kind, batched):
    rng = np.random.default_rng(seed)
    T_k = T_q + extra
    lead = (2, 1) if batched else ()
    q = 4 * rng.standard_normal(lead + (T_q, d_k))  # large scores exercise the rescaling
    k = 4 * rng.standard_normal(lead[:1] + (T_k, d_k)) if batched else 4 * rng.standard_normal((T_k, d_k))
    v = rng.standard_normal((T_k, d_v))
    mask = {
        "none": None,
        "causal": causal_mask(T_q, T_k),
        "padding": padding_mask(rng.integers(1, T_k + 1, size=2), T_k)[:, None] if batched else None,
        "keys_only": rng.random(T_k) < 0.3,
        "random": rng.random(lead + (T_q, T_k)) < 0.3,
    }[mask_kind]
    if mask is not None and mask.dtype == bool:
        mask = mask.copy() if mask.flags.writeable else np.array(mask)
        mask[..., rng.integers(T_k)] = True  # every query keeps a key
    out = flash_attention(q, k, v, mask=mask, block_size=block_size)
    ref, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_flash_handles_rows_whose_first_blocks_are_all_masked(rng):
    """A query that sees no key in the first key blocks must not produce NaN."""
    q, k, v = rng.standard_normal((3, 8, 4))
    mask = np.zeros((8, 8), bool)
    mask[:, 7] = True  # only the last key, which sits in the last block
    mask[0, 2] = True
    out = flash_attention(q, k, v, mask=mask, block_size=3)
    ref, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_flash_keeps_float32(rng):
    q, k, v = (rng.standard_normal((2, 70, 8)).astype(np.float32) for _ in range(3))
    out = flash_attention(q, k, v, mask=causal_mask(70), block_size=16)
    assert out.dtype == np.float32
    ref, _ = scaled_dot_product_attention(*(a.astype(np.float64) for a in (q, k, v)), mask=causal_mask(70))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_flash_on_tensors_has_the_same_gradients_as_sdpa(rng):
    q, k, v = rng.standard_normal((3, 2, 7, 4))
    mask = causal_mask(7)
    w = rng.standard_normal((2, 7, 4))
    grads = []
    for attend in (lambda a, b, c: flash_attention(a, b, c, mask=mask, block_size=3),
                   lambda a, b, c: scaled_dot_product_attention(a, b, c, mask=mask)[0]):
        ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        out = attend(*ts)
        assert isinstance(out, Tensor)
        (out * w).sum().backward()
        grads.append([t.grad for t in ts])
    for g_flash, g_ref in zip(*grads):
        np.testing.assert_allclose(g_flash, g_ref, rtol=1e-10, atol=1e-12)


def test_flash_never_forms_the_full_score_matrix(rng):
    T, d = 1024, 16
    q, k, v = rng.standard_normal((3, T, d))
    full_scores = T * T * 8  # bytes of a float64 T x T matrix
    mask = causal_mask(T)  # the caller's (boolean) mask is not part of the count
    tracemalloc.start()
    try:
        scaled_dot_product_attention(q, k, v)
        _, peak_plain = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        flash_attention(q, k, v, mask=mask, block_size=64)
        _, peak_flash = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        flash_attention(q, k, v, block_size=64)
        _, peak_unmasked = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_plain >= full_scores  # the measurement sees NumPy's allocations
    assert peak_flash < full_scores / 8 and peak_unmasked < full_scores / 8


def test_flash_errors(rng):
    q, k, v = rng.standard_normal((3, 4, 2))
    with pytest.raises(ValueError, match="block_size must be a positive integer, got 0"):
        flash_attention(q, k, v, block_size=0)
    mask = causal_mask(4)
    mask[2] = False
    with pytest.raises(ValueError, match=r"leaves query row 2 with every key masked"):
        flash_attention(q, k, v, mask=mask)
    with pytest.raises(ValueError, match=r"q has width d_k=2 .* k has width 1"):
        flash_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match=r"k has T_k=4 keys .* v has 3 values"):
        flash_attention(q, k, v[:3])
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"q \(shape \(4, 2\)\) contains nan at index \(0, 0\)"):
        flash_attention(bad, k, v)
    with pytest.raises(ValueError, match="mask must be a boolean ndarray"):
        flash_attention(q, k, v, mask=np.ones((4, 4)))
