"""Scaled dot-product and multi-head attention: definitions, properties, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import (
    Tensor,
    alibi_bias,
    causal_mask,
    merge_heads,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
    split_heads,
)

seeds = st.integers(0, 2**32 - 1)


def naive_attention(q, k, v, mask=None, bias=None):
    """Row by row, straight from the formula (no broadcasting tricks)."""
    scores = np.einsum("...qd,...kd->...qk", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    return np.einsum("...qk,...kd->...qd", w, v), w


def random_mask(rng, shape):
    mask = rng.random(shape) < 0.6
    mask[..., rng.integers(shape[-1])] = True  # every query keeps a key
    return mask


def mha_weights(rng, d_in, d_model, d_out=None, biases=False):
    d_out = d_model if d_out is None else d_out
    W = {
        "W_q": rng.standard_normal((d_in, d_model)) / np.sqrt(d_in),
        "W_k": rng.standard_normal((d_in, d_model)) / np.sqrt(d_in),
        "W_v": rng.standard_normal((d_in, d_model)) / np.sqrt(d_in),
        "W_o": rng.standard_normal((d_model, d_out)) / np.sqrt(d_model),
    }
    b = {}
    if biases:
        b = {n: 0.1 * rng.standard_normal(s) for n, s in
             [("b_q", d_model), ("b_k", d_model), ("b_v", d_model), ("b_o", d_out)]}
    return W, b


def run_mha(x, W, b, n_heads, **kw):
    return multi_head_attention(x, x, x, W["W_q"], W["W_k"], W["W_v"], W["W_o"], n_heads, **b, **kw)


# -------------------------------------------------- scaled dot-product attention


def test_sdpa_matches_formula(rng):
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 6))
    mask, bias = random_mask(rng, (2, 3, 5)), rng.standard_normal((3, 5))
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    ref_out, ref_w = naive_attention(q, k, v, mask, bias)
    assert out.shape == (2, 3, 6) and w.shape == (2, 3, 5)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    np.testing.assert_allclose(w, ref_w, rtol=1e-12, atol=1e-300)


@given(seeds, st.integers(1, 6), st.integers(1, 7), st.integers(1, 5), st.booleans())
def test_rows_sum_to_one_and_masked_weights_are_exactly_zero(seed, T_q, T_k, d, batched):
    rng = np.random.default_rng(seed)
    lead = (2,) if batched else ()
    q, k, v = (3 * rng.standard_normal(lead + (T, d)) for T in (T_q, T_k, T_k))
    mask = random_mask(rng, lead + (T_q, T_k))
    if T_k > 1:  # mask one more key of one query (one key per query is kept by random_mask)
        kept = np.flatnonzero(mask.reshape(-1, T_k).all(axis=0))[0]
        mask[..., 0, (kept + 1) % T_k] = False
        assert (~mask).any()
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    assert np.all(w[~mask] == 0.0) and np.all(w >= 0)
    np.testing.assert_allclose(out, naive_attention(q, k, v, mask)[0], rtol=1e-10, atol=1e-12)


@given(seeds, st.integers(2, 8))
def test_causality_future_tokens_do_not_change_the_past(seed, T):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, 4))
    W, b = mha_weights(rng, 4, 4)
    t = int(rng.integers(1, T))  # perturb token t; outputs before t must not move
    y = x.copy()
    y[t:] += rng.standard_normal((T - t, 4))
    out_x, _ = run_mha(x, W, b, 2, mask=causal_mask(T))
    out_y, _ = run_mha(y, W, b, 2, mask=causal_mask(T))
    np.testing.assert_array_equal(out_x[:t], out_y[:t])
    assert not np.allclose(out_x[t:], out_y[t:])


@given(seeds, st.integers(1, 6), st.integers(1, 4))
def test_padding_invariance(seed, T, n_pad):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((T, 3)), rng.standard_normal((T, 3)), rng.standard_normal((T, 2))
    out, w = scaled_dot_product_attention(q, k, v)
    k_pad = np.concatenate([k, 100 * rng.standard_normal((n_pad, 3))])
    v_pad = np.concatenate([v, 100 * rng.standard_normal((n_pad, 2))])
    mask = padding_mask([T], T + n_pad)[0]  # (1, T + n_pad)
    out_pad, w_pad = scaled_dot_product_attention(q, k_pad, v_pad, mask=mask)
    np.testing.assert_allclose(out_pad, out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w_pad[:, :T], w, rtol=1e-12)
    assert np.all(w_pad[:, T:] == 0.0)


@given(seeds, st.integers(2, 7))
def test_self_attention_is_permutation_equivariant_until_positions_are_added(seed, T):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, 8))
    W, b = mha_weights(rng, 8, 8, biases=True)
    perm = np.roll(np.arange(T), 1)  # a permutation that moves every token
    out, w = run_mha(x, W, b, 2)
    out_p, w_p = run_mha(x[perm], W, b, 2)
    np.testing.assert_allclose(out_p, out[perm], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w_p, w[:, perm][:, :, perm], rtol=1e-10, atol=1e-12)
    # With positions added, permuting the tokens is no longer just a relabelling.
    pe = sinusoidal_positions(T, 8)
    out_pe, _ = run_mha(x + pe, W, b, 2)
    out_pe_p, _ = run_mha(x[perm] + pe, W, b, 2)
    assert not np.allclose(out_pe_p, out_pe[perm], atol=1e-6)


def test_sdpa_keeps_float32(rng):
    q, k, v = (rng.standard_normal((2, 4, 8)).astype(np.float32) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(4), bias=alibi_bias(1, 4)[0])
    assert out.dtype == np.float32 and w.dtype == np.float32
    ref = naive_attention(*(a.astype(np.float64) for a in (q, k, v)), causal_mask(4), alibi_bias(1, 4)[0])
    np.testing.assert_allclose(out, ref[0], rtol=1e-4, atol=1e-5)


def test_sdpa_does_not_modify_its_inputs(rng):
    q, k, v, bias = (rng.standard_normal((3, 3)) for _ in range(4))
    mask = causal_mask(3)
    copies = [a.copy() for a in (q, k, v, bias, mask)]
    scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    for before, after in zip(copies, (q, k, v, bias, mask)):
        np.testing.assert_array_equal(before, after)


def test_sdpa_on_tensors_returns_tensors(rng):
    q, k, v = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    out, w = scaled_dot_product_attention(Tensor(q), k, v, mask=causal_mask(3))
    assert isinstance(out, Tensor) and isinstance(w, Tensor)
    ref_out, ref_w = scaled_dot_product_attention(q, k, v, mask=causal_mask(3))
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-12)
    np.testing.assert_allclose(w.data, ref_w, rtol=1e-12)


def test_batch_dimensions_broadcast(rng):
    q = rng.standard_normal((2, 1, 3, 4))
    k, v = rng.standard_normal((5, 6, 4)), rng.standard_normal((5, 6, 2))
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 5, 3, 2) and w.shape == (2, 5, 3, 6)
    np.testing.assert_allclose(out[1, 3], naive_attention(q[1, 0], k[3], v[3])[0], rtol=1e-12)


# ------------------------------------------------------------------ multi-head


def test_split_heads_takes_columns_in_order(rng):
    x = rng.standard_normal((2, 5, 12))
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        np.testing.assert_array_equal(heads[:, h], x[..., 4 * h : 4 * (h + 1)])


@given(seeds, st.integers(1, 4), st.integers(1, 4), st.integers(0, 2))
def test_merge_heads_inverts_split_heads(seed, n_heads, d_head, n_lead):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2,) * n_lead + (3, n_heads * d_head))
    np.testing.assert_array_equal(merge_heads(split_heads(x, n_heads)), x)
    h = rng.standard_normal((2,) * n_lead + (n_heads, 3, d_head))
    np.testing.assert_array_equal(split_heads(merge_heads(h), n_heads), h)


def test_one_head_equals_single_head_attention(rng):
    x, y = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 7, 6))
    W, b = mha_weights(rng, 6, 8, d_out=6, biases=True)
    mask = padding_mask([7, 4], 7)
    out, w = multi_head_attention(x, y, y, W["W_q"], W["W_k"], W["W_v"], W["W_o"], 1, **b, mask=mask)
    q, k, v = x @ W["W_q"] + b["b_q"], y @ W["W_k"] + b["b_k"], y @ W["W_v"] + b["b_v"]
    ref, ref_w = scaled_dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(out, ref @ W["W_o"] + b["b_o"], rtol=1e-12)
    np.testing.assert_allclose(w[:, 0], ref_w, rtol=1e-12)


@pytest.mark.parametrize("n_heads", [2, 4])
def test_multi_head_matches_a_loop_over_heads(rng, n_heads):
    x = rng.standard_normal((3, 6, 8))
    W, b = mha_weights(rng, 8, 8, biases=True)
    out, w = run_mha(x, W, b, n_heads, mask=causal_mask(6), bias=alibi_bias(n_heads, 6))
    assert out.shape == (3, 6, 8) and w.shape == (3, n_heads, 6, 6)
    d_head = 8 // n_heads
    Q, K, V = (x @ W[n] + b[bn] for n, bn in (("W_q", "b_q"), ("W_k", "b_k"), ("W_v", "b_v")))
    heads = []
    for h in range(n_heads):
        cols = slice(h * d_head, (h + 1) * d_head)
        o, wh = naive_attention(Q[..., cols], K[..., cols], V[..., cols], causal_mask(6),
                                alibi_bias(n_heads, 6)[h])
        np.testing.assert_allclose(w[:, h], wh, rtol=1e-12, atol=1e-300)
        heads.append(o)
    np.testing.assert_allclose(out, np.concatenate(heads, -1) @ W["W_o"] + b["b_o"], rtol=1e-12)


def test_mask_shapes_for_multi_head(rng):
    B, T, H = 2, 4, 2
    x = rng.standard_normal((B, T, 4))
    W, b = mha_weights(rng, 4, 4)
    full = random_mask(rng, (B, T, T))
    assert not full.all(), "nothing is masked: the check below would check nothing"
    _, w = run_mha(x, W, b, H, mask=full)
    assert np.all(w[~np.broadcast_to(full[:, None], w.shape)] == 0.0)
    # (B, 1, T) padding masks and (T, T) causal masks, and their combination
    pad = padding_mask([4, 2], T)
    _, w_pad = run_mha(x, W, b, H, mask=pad)
    assert np.all(w_pad[1, :, :, 2:] == 0.0) and np.all(w_pad[0] > 0)
    _, w_c = run_mha(x, W, b, H, mask=causal_mask(T))
    np.testing.assert_array_equal(w_c > 0, np.broadcast_to(causal_mask(T), w_c.shape))
    _, w_both = run_mha(x, W, b, H, mask=pad & causal_mask(T))
    np.testing.assert_array_equal(w_both > 0, np.broadcast_to(pad[:, None] & causal_mask(T), w_both.shape))
    # A per-head mask spells out every axis of the multi-head scores.
    per_head = random_mask(rng, (B, H, T, T))
    _, w_h = run_mha(x, W, b, H, mask=per_head)
    np.testing.assert_array_equal(w_h > 0, per_head)
    # Unbatched input: a 3-D mask is per head.
    _, w_u = run_mha(x[0], W, b, H, mask=per_head[0])
    np.testing.assert_array_equal(w_u > 0, per_head[0])


def test_multi_head_keeps_float32_and_accepts_tensors(rng):
    x = rng.standard_normal((2, 3, 4))
    W, b = mha_weights(rng, 4, 4, biases=True)
    W32 = {n: a.astype(np.float32) for n, a in W.items()}
    b32 = {n: a.astype(np.float32) for n, a in b.items()}
    out32, w32 = run_mha(x.astype(np.float32), W32, b32, 2)
    assert out32.dtype == np.float32 and w32.dtype == np.float32
    out, w = run_mha(x, W, b, 2)
    np.testing.assert_allclose(out32, out, rtol=1e-4, atol=1e-5)
    out_t, w_t = run_mha(x, {n: Tensor(a) for n, a in W.items()}, b, 2)
    assert isinstance(out_t, Tensor)
    np.testing.assert_allclose(out_t.data, out, rtol=1e-12)


def test_cross_attention_with_different_widths(rng):
    query, memory = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 7, 6))
    W_q, W_k = rng.standard_normal((5, 8)), rng.standard_normal((6, 8))
    W_v, W_o = rng.standard_normal((6, 4)), rng.standard_normal((4, 9))
    out, w = multi_head_attention(query, memory, memory, W_q, W_k, W_v, W_o, 2)
    assert out.shape == (2, 3, 9) and w.shape == (2, 2, 3, 7)


# ------------------------------------------------------------------- bad input


def test_sdpa_errors(rng):
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 6))
    with pytest.raises(ValueError, match=r"q has width d_k=4 .* k has width 3.*project"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"k has T_k=5 keys .* v has 4 values.*one value per key"):
        scaled_dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match=r"mask must be a boolean ndarray .*got int64"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"mask must be a boolean ndarray .*got Tensor"):
        scaled_dot_product_attention(q, k, v, mask=Tensor(np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not broadcast to the scores of shape \(2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"mask of shape \(7, 3, 5\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((7, 3, 5), bool))
    mask = np.ones((2, 3, 5), bool)
    mask[1, 2] = False
    with pytest.raises(ValueError, match=r"leaves query row 2 of batch index \(1,\) with every key masked.*causal_mask"):
        scaled_dot_product_attention(q, k, v, mask=mask)
    with pytest.raises(ValueError, match=r"leaves every query row of batch index \(0,\)"):
        scaled_dot_product_attention(q, k, v, mask=np.zeros((2, 1, 5), bool))
    for name, arrays in (("q", (q, k, v)), ("k", (q, k, v)), ("v", (q, k, v))):
        bad = [a.copy() for a in arrays]
        index = "qkv".index(name)
        bad[index][1, 0, 2] = np.inf if name != "v" else np.nan
        with pytest.raises(ValueError, match=rf"{name} \(shape .*\) contains (inf|nan) at index \(1, 0, 2\)"):
            scaled_dot_product_attention(*bad)
    with pytest.raises(ValueError, match=r"bias \(shape \(3, 5\)\) contains nan"):
        scaled_dot_product_attention(q, k, v, bias=np.full((3, 5), np.nan))
    with pytest.raises(ValueError, match=r"bias of shape \(4, 3, 5\) does not broadcast to the scores.*alibi_bias"):
        scaled_dot_product_attention(q, k, v, bias=np.zeros((4, 3, 5)))
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., T, d\) for v, got shape \(5,\)"):
        scaled_dot_product_attention(q, k, v[0, :, 0])


def test_multi_head_errors(rng):
    x = rng.standard_normal((2, 3, 8))
    W, b = mha_weights(rng, 8, 8)
    with pytest.raises(ValueError, match=r"d_model \(W_q's output width\) = 8 is not divisible by n_heads = 3"):
        run_mha(x, W, b, 3)
    with pytest.raises(ValueError, match=r"n_heads must be a positive integer, got 0"):
        run_mha(x, W, b, 0)
    with pytest.raises(ValueError, match=r"n_heads must be a positive integer, got 2.0"):
        run_mha(x, W, b, 2.0)
    bad = dict(W, W_q=W["W_q"][:7])
    with pytest.raises(ValueError, match=r"W_q must have shape \(8, d_out\) to project query of width 8.*got \(7, 8\)"):
        run_mha(x, bad, b, 2)
    bad = dict(W, W_k=rng.standard_normal((8, 6)))
    with pytest.raises(ValueError, match=r"W_q maps to width 8 but W_k \(shape \(8, 6\)\) maps to 6"):
        run_mha(x, bad, b, 2)
    bad = dict(W, W_v=rng.standard_normal((8, 6)))
    with pytest.raises(ValueError, match=r"d_v \(W_v's output width\) = 6 is not divisible by n_heads = 4"):
        run_mha(x, bad, b, 4)
    bad = dict(W, W_o=rng.standard_normal((6, 8)))
    with pytest.raises(ValueError, match=r"W_o must have shape \(8, d_out\) to project the merged heads"):
        run_mha(x, bad, b, 2)
    with pytest.raises(ValueError, match=r"b_k must have shape \(8,\) to match its weight, got \(4,\)"):
        run_mha(x, W, {"b_k": np.zeros(4)}, 2)
    with pytest.raises(ValueError, match=r"key has T_k=3 keys .* value has 2 values"):
        multi_head_attention(x, x, x[:, :2], W["W_q"], W["W_k"], W["W_v"], W["W_o"], 2)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\) does not broadcast to the scores of shape \(2, 2, 3, 3\)"):
        run_mha(x, W, b, 2, mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match=r"leaves query row 1 of batch index \(0,\)"):
        run_mha(x, W, b, 2, mask=np.array([[[1, 1, 1], [0, 0, 0], [1, 1, 1]]] * 2, bool))
    with pytest.raises(ValueError, match=r"bias of shape \(3, 3, 3\) does not broadcast to the scores of shape \(2, 2, 3, 3\)"):
        run_mha(x, W, b, 2, bias=alibi_bias(3, 3))
    bad_x = x.copy()
    bad_x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"query \(shape \(2, 3, 8\)\) contains nan"):
        run_mha(bad_x, W, b, 2)
    with pytest.raises(ValueError, match=r"width d=8 .* not divisible by n_heads=3"):
        split_heads(x, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n_heads, T, d_head\), got shape \(3, 8\)"):
        merge_heads(x[0])
