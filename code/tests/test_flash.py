"""flash_attention: the output and the gradients of scaled_dot_product_attention, block by block."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import (
    Tensor,
    causal_mask,
    flash_attention,
    gradcheck,
    padding_mask,
    scaled_dot_product_attention,
)

seeds = st.integers(0, 2**32 - 1)
# Square tiles, rectangular ones and ones larger than the sequence; most do not divide T.
block_sizes = st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 9), st.integers(1, 9)),
                        st.just((64, 64)))
MASK_KINDS = ["none", "random", "causal", "padding", "keys_only"]


@st.composite
def attention_inputs(draw, max_T=16):
    """q, k, v and a mask whose batch shapes differ but broadcast (as the docstring allows).

    Each of q, k, v keeps a random suffix of a common batch shape, with random axes set to
    1; the mask broadcasts to the scores of shape (broadcast of q, k, v) + (T_q, T_k).
    """
    rng = np.random.default_rng(draw(seeds))
    full = draw(st.lists(st.integers(1, 3), max_size=3))

    def part(of):
        n = draw(st.integers(0, len(of)))
        return tuple(draw(st.sampled_from([b, 1])) for b in of[len(of) - n:])

    kind = draw(st.sampled_from(MASK_KINDS))
    T_q, T_k = draw(st.integers(1, max_T)), draw(st.integers(1, max_T))
    if kind == "causal":
        T_k = max(T_k, T_q)  # causal_mask aligns the queries to the last keys
    d_k, d_v = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    shape_q, shape_k, shape_v = part(full), part(full), part(full)
    q = 3 * rng.standard_normal(shape_q + (T_q, d_k))  # large scores exercise the rescaling
    k = 3 * rng.standard_normal(shape_k + (T_k, d_k))
    v = rng.standard_normal(shape_v + (T_k, d_v))
    batch = np.broadcast_shapes(shape_q, shape_k, shape_v)
    mask = None
    if kind == "random":
        mask = rng.random(part(list(batch)) + (T_q, T_k)) < 0.3
    elif kind == "causal":
        mask = causal_mask(T_q, T_k)
    elif kind == "padding" and batch:
        lengths = rng.integers(1, T_k + 1, size=batch[-1])
        mask = padding_mask(lengths, T_k)  # (B, 1, T_k) against (..., B, T_q, T_k)
    elif kind == "keys_only":
        mask = rng.random(T_k) < 0.3
    if mask is not None:
        mask = np.array(mask)
        rows = mask.reshape(-1, mask.shape[-1])
        rows[np.arange(len(rows)), rng.integers(T_k, size=len(rows))] = True  # a key per query
    return q, k, v, mask


def broadcast_all(q, k, v, mask):
    """The same inputs with every batch dimension spelled out (the reference's inputs)."""
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    full = [np.broadcast_to(x, batch + x.shape[-2:]).copy() for x in (q, k, v)]
    if mask is not None:
        mask = np.broadcast_to(mask, batch + (q.shape[-2], k.shape[-2])).copy()
    return (*full, mask)


def grads_of(attend, q, k, v, w, wanted=(True, True, True)):
    """Gradients of sum(attend(q, k, v) * w) for the inputs in ``wanted`` (None for the rest)."""
    ts = [Tensor(x, requires_grad=want) for x, want in zip((q, k, v), wanted)]
    out = attend(*ts)
    (out * w).sum().backward()
    return out.data, [t.grad for t in ts]


@given(attention_inputs(), block_sizes)
def test_flash_equals_sdpa(inputs, block_size):
    q, k, v, mask = inputs
    out = flash_attention(q, k, v, mask=mask, block_size=block_size)
    ref, _ = scaled_dot_product_attention(*broadcast_all(q, k, v, mask)[:3],
                                          mask=broadcast_all(q, k, v, mask)[3])
    assert isinstance(out, np.ndarray) and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


wanted_inputs = st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(any)


@given(attention_inputs(), block_sizes, wanted_inputs, seeds)
def test_flash_gradients_equal_sdpa_gradients(inputs, block_size, wanted, seed):
    """The fused backward against autograd through the plain computation, same shapes."""
    q, k, v, mask = inputs
    w = np.random.default_rng(seed).standard_normal(
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]) + (q.shape[-2], v.shape[-1]))
    out, grads = grads_of(lambda *ts: flash_attention(*ts, mask=mask, block_size=block_size),
                          q, k, v, w, wanted)
    ref, ref_grads = grads_of(lambda *ts: scaled_dot_product_attention(*ts, mask=mask)[0],
                              q, k, v, w, wanted)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    for x, g, g_ref, want in zip((q, k, v), grads, ref_grads, wanted):
        if not want:
            assert g is None
            continue
        assert g.shape == x.shape
        np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("block_size", [1, 2, 3, (2, 5), (4, 3), 64])
def test_flash_gradcheck(rng, block_size):
    """Finite differences, with broadcast batches, a mask over the batch and T % block != 0."""
    q = rng.standard_normal((2, 1, 7, 3))
    k = rng.standard_normal((3, 9, 3))
    v = rng.standard_normal((1, 9, 2))
    mask = rng.random((3, 7, 9)) < 0.5
    mask[..., 0] = True
    mask &= causal_mask(7, 9) | (rng.random((7, 9)) < 0.3)
    w = rng.standard_normal((2, 3, 7, 2))
    assert gradcheck(lambda a, b, c: (flash_attention(a, b, c, mask=mask, block_size=block_size)
                                      * w).sum(), q, k, v)


def test_flash_gradcheck_with_one_input_needing_a_gradient(rng):
    q, k, v = rng.standard_normal((3, 2, 6, 3))
    k_const, v_const = Tensor(k), v  # a constant Tensor and an ndarray
    assert gradcheck(lambda a: flash_attention(a, k_const, v_const, block_size=4).sum(), q)


def test_flash_on_constant_tensors_records_nothing(rng):
    q, k, v = rng.standard_normal((3, 5, 2))
    out = flash_attention(Tensor(q), k, v, block_size=2)
    assert isinstance(out, Tensor) and not out.requires_grad
    ref, _ = scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out.data, ref, rtol=1e-12)


def test_flash_issue_broadcast_case(rng):
    """q, k of shape (T, d), a batched v (2, T, d), a mask (2, T_q, T_k): both paths."""
    q, k = rng.standard_normal((2, 6, 4))
    v = rng.standard_normal((2, 6, 3))
    mask = rng.random((2, 6, 6)) < 0.5
    mask[..., 0] = True
    ref, _ = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=mask)
    np.testing.assert_allclose(flash_attention(q, k, v, mask=mask, block_size=4), ref.data,
                               rtol=1e-12)
    np.testing.assert_allclose(flash_attention(Tensor(q), k, v, mask=mask, block_size=4).data,
                               ref.data, rtol=1e-12)


def test_flash_grouped_query_attention(rng):
    """Keys (B, H_kv, 1, T, d) shared by the G query heads (B, H_kv, G, T, d) of each group."""
    B, H_kv, G, T, d = 2, 2, 3, 11, 4
    q = rng.standard_normal((B, H_kv, G, T, d))
    k, v = rng.standard_normal((2, B, H_kv, 1, T, d))
    mask = causal_mask(T)
    w = rng.standard_normal((B, H_kv, G, T, d))
    out, (dq, dk, dv) = grads_of(
        lambda *ts: flash_attention(*ts, mask=mask, block_size=(4, 3)), q, k, v, w)
    # Reference: every query head gets its own copy of its group's keys and values.
    k_rep, v_rep = (np.repeat(x, G, axis=2) for x in (k, v))
    ref, (dq_ref, dk_rep, dv_rep) = grads_of(
        lambda *ts: scaled_dot_product_attention(*ts, mask=mask)[0], q, k_rep, v_rep, w)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_allclose(dq, dq_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dk, dk_rep.sum(axis=2, keepdims=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dv, dv_rep.sum(axis=2, keepdims=True), rtol=1e-10, atol=1e-12)


def test_flash_matches_torch(rng):
    """Output and gradients against PyTorch's fused attention (an independent reference)."""
    torch = pytest.importorskip("torch")
    q = rng.standard_normal((2, 3, 37, 8))
    k, v = rng.standard_normal((2, 1, 3, 45, 8))
    mask = (rng.random((2, 1, 37, 45)) < 0.4) | causal_mask(37, 45)
    w = rng.standard_normal((2, 3, 37, 8))
    out, grads = grads_of(lambda *ts: flash_attention(*ts, mask=mask, block_size=(16, 10)),
                          q, k, v, w)
    ts = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    ref = torch.nn.functional.scaled_dot_product_attention(
        *(t.expand(2, 3, -1, -1) for t in ts), attn_mask=torch.from_numpy(mask))
    (ref * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_flash_handles_rows_whose_first_blocks_are_all_masked(rng):
    """A query that sees no key in the first key blocks must not produce NaN."""
    q, k, v = rng.standard_normal((3, 8, 4))
    mask = np.zeros((8, 8), bool)
    mask[:, 7] = True  # only the last key, which sits in the last block
    mask[0, 2] = True
    w = rng.standard_normal((8, 4))
    out, grads = grads_of(lambda *ts: flash_attention(*ts, mask=mask, block_size=3), q, k, v, w)
    ref, ref_grads = grads_of(lambda *ts: scaled_dot_product_attention(*ts, mask=mask)[0],
                              q, k, v, w)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    for g, g_ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_flash_keeps_float32(rng):
    q, k, v = (rng.standard_normal((2, 70, 8)).astype(np.float32) for _ in range(3))
    out = flash_attention(q, k, v, mask=causal_mask(70), block_size=16)
    assert out.dtype == np.float32
    ref, _ = scaled_dot_product_attention(*(a.astype(np.float64) for a in (q, k, v)),
                                          mask=causal_mask(70))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@given(st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=6), seeds, block_sizes)
def test_flash_is_stable_when_query_rows_have_very_different_scales(log_scales, seed, block_size):
    # Each query row is scaled by 10**s, so rows' scores differ by up to ~1e6: the running
    # maximum must be taken per row. A maximum over the whole tile (mutation testing,
    # MUTATION.md) makes exp underflow to 0 in the small rows and returns NaN.
    rng = np.random.default_rng(seed)
    T_k, d = 7, 4
    q = rng.standard_normal((len(log_scales), d)) * 10.0 ** np.array(log_scales)[:, None]
    k, v = rng.standard_normal((T_k, d)), rng.standard_normal((T_k, 3))
    out = flash_attention(q, k, v, block_size=block_size)
    ref, _ = scaled_dot_product_attention(q, k, v)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-12)


def peak_bytes(f):
    """Peak bytes that NumPy allocates (it reports to tracemalloc) while ``f`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        f()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_flash_never_forms_the_full_score_matrix(rng):
    T, d = 1024, 16
    q, k, v = rng.standard_normal((3, T, d))
    full_scores = T * T * 8  # bytes of a float64 T x T matrix
    mask = causal_mask(T)  # the caller's (boolean) mask is not part of the count
    peak_plain = peak_bytes(lambda: scaled_dot_product_attention(q, k, v))
    assert peak_plain >= full_scores  # the measurement sees NumPy's allocations
    for kwargs in ({}, {"mask": mask}, {"block_size": 64}):
        assert peak_bytes(lambda: flash_attention(q, k, v, **kwargs)) < full_scores / 8


def training_peak(attend, T, rng, d=64):
    """Peak bytes of forward and backward through ``attend`` on Tensors, float64."""
    q, k, v = (Tensor(x, requires_grad=True) for x in rng.standard_normal((3, T, d)))
    w = rng.standard_normal((T, d))
    return peak_bytes(lambda: (attend(q, k, v) * w).sum().backward())


def test_flash_training_memory_is_linear_in_T(rng):
    """Backward keeps O and L, not the tiles: a fraction of plain attention's training peak.

    Measured (d = 64, default tiles): 12.4 % of plain attention's peak at T = 1024 and
    6.6 % at T = 2048; doubling T doubles flash's peak and quadruples plain's.
    """
    flash = {T: training_peak(flash_attention, T, rng) for T in (512, 1024, 2048)}
    plain = training_peak(lambda *ts: scaled_dot_product_attention(*ts)[0], 1024, rng)
    assert plain >= 3 * 1024**2 * 8  # scores, weights and their gradient are all T x T
    assert flash[1024] < 0.2 * plain
    assert flash[1024] / flash[512] < 2.5 and flash[2048] / flash[1024] < 2.5  # quadratic: ~4


def test_flash_errors(rng):
    q, k, v = rng.standard_normal((3, 4, 2))
    with pytest.raises(ValueError, match="block_size must be a positive integer, got 0"):
        flash_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="block_size must be a positive integer, got -2"):
        flash_attention(q, k, v, block_size=(4, -2))
    with pytest.raises(ValueError, match=r"or a pair \(B_r, B_c\) of them, got \(1, 2, 3\)"):
        flash_attention(q, k, v, block_size=(1, 2, 3))
    mask = causal_mask(4)
    mask[2] = False
    with pytest.raises(ValueError, match=r"leaves query row 2 with every key masked"):
        flash_attention(q, k, v, mask=mask)
    with pytest.raises(ValueError, match=r"q has width d_k=2 .* k has width 1"):
        flash_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match=r"k has T_k=4 keys .* v has 3 values"):
        flash_attention(q, k, v[:3])
    with pytest.raises(ValueError, match=r"the batch dimensions .* do not broadcast"):
        flash_attention(q[None].repeat(2, 0), k[None].repeat(3, 0), v)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4, 4\) does not broadcast"):
        flash_attention(q, k, v[None].repeat(2, 0), mask=np.ones((3, 4, 4), bool))
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"q \(shape \(4, 2\)\) contains nan at index \(0, 0\)"):
        flash_attention(bad, k, v)
    with pytest.raises(ValueError, match="mask must be a boolean ndarray"):
        flash_attention(q, k, v, mask=np.ones((4, 4)))
