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


@st.composite
def batch_shapes(draw, of=None):
    """A batch shape and a version of it for one input: leading axes dropped, others set to 1.

    ``batch_shapes(of=shape)`` only draws versions of ``shape`` (for masks and biases,
    which may not enlarge the scores). Different inputs drawn from one full shape
    broadcast together: that is how q, k, v, mask and bias get different but compatible
    batch shapes.
    """
    full = of if of is not None else draw(st.lists(st.integers(2, 3), max_size=2).map(tuple))
    kept = full[draw(st.integers(0, len(full))):]
    return tuple(n if draw(st.booleans()) else 1 for n in kept)


@st.composite
def attention_batches(draw):
    """Batch shapes of q, k, v (any compatible three) and of a mask and a bias that fit them."""
    full = draw(st.lists(st.integers(2, 3), max_size=2).map(tuple))
    q, k, v = (draw(batch_shapes(of=full)) for _ in range(3))
    scores = np.broadcast_shapes(q, k, v)
    return q, k, v, draw(batch_shapes(of=scores)), draw(batch_shapes(of=scores))


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


@given(seeds, st.integers(1, 6), st.integers(1, 7), st.integers(1, 5), attention_batches(), st.booleans())
def test_rows_sum_to_one_and_masked_weights_are_exactly_zero(seed, T_q, T_k, d, batches, with_bias):
    """q, k, v, mask and bias with different but compatible batch shapes, on both paths."""
    rng = np.random.default_rng(seed)
    q_b, k_b, v_b, mask_b, bias_b = batches
    q, k, v = (3 * rng.standard_normal(b + (T, d)) for b, T in ((q_b, T_q), (k_b, T_k), (v_b, T_k)))
    mask = random_mask(rng, mask_b + (T_q, T_k))
    if T_k > 1:  # mask one more key of one query (random_mask keeps one key for every query)
        kept = np.flatnonzero(mask.reshape(-1, T_k).all(axis=0))[0]
        mask[..., 0, (kept + 1) % T_k] = False
        assert (~mask).any()
    bias = rng.standard_normal(bias_b + (T_q, T_k)) if with_bias else None
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    # The output has every input's batch axes; the weights those of q, k, mask and bias.
    assert out.shape == np.broadcast_shapes(q_b, k_b, v_b) + (T_q, d)
    assert w.shape == np.broadcast_shapes(q_b, k_b, mask_b, bias_b if with_bias else ()) + (T_q, T_k)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    assert np.all(w[~np.broadcast_to(mask, w.shape)] == 0.0) and np.all(w >= 0)
    ref_out, ref_w = naive_attention(q, k, v, mask, bias)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    out_t, w_t = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=mask,
                                              bias=None if bias is None else Tensor(bias))
    np.testing.assert_allclose(out_t.data, out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w_t.data, w, rtol=1e-12, atol=1e-300)


def test_mask_and_bias_may_carry_the_batch_axes(rng):
    """The case of issue 11: q, k (T, d), v (2, T, d) and a mask (2, T_q, T_k) (and a bias)."""
    q, k, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((2, 4, 3))
    mask, bias = random_mask(rng, (2, 4, 4)), rng.standard_normal((2, 4, 4))
    for kw in (dict(mask=mask), dict(bias=bias), dict(mask=mask, bias=bias)):
        out, w = scaled_dot_product_attention(q, k, v, **kw)
        out_t, w_t = scaled_dot_product_attention(Tensor(q), k, v, **kw)
        ref_out, ref_w = naive_attention(q, k, v, kw.get("mask"), kw.get("bias"))
        np.testing.assert_allclose(out, ref_out, rtol=1e-12)
        np.testing.assert_allclose(out_t.data, out, rtol=1e-12)
        np.testing.assert_allclose(w, ref_w, rtol=1e-12, atol=1e-300)


@st.composite
def nested_batches(draw, n):
    """A batch shape and n shapes that broadcast to it without enlarging it."""
    full = draw(batch_shapes())
    return (full,) + tuple(draw(batch_shapes(of=full)) for _ in range(n))


@given(seeds, st.integers(2, 8), nested_batches(2), st.sampled_from([2, 1]))
def test_causality_future_tokens_do_not_change_the_past(seed, T, batches, n_kv_heads):
    """Batched tokens with a mask and a bias of their own batch shapes, any n_kv_heads."""
    rng = np.random.default_rng(seed)
    x_b, mask_b, bias_b = batches
    x = rng.standard_normal(x_b + (T, 4))
    W, b = mha_weights(rng, 4, 4, biases=True)
    W["W_k"], W["W_v"], b["b_k"], b["b_v"] = (a[..., : 2 * n_kv_heads] for a in (W["W_k"], W["W_v"], b["b_k"], b["b_v"]))
    mask = np.broadcast_to(causal_mask(T), mask_b + (T, T))
    bias = rng.standard_normal(bias_b + (2, T, T))
    t = int(rng.integers(1, T))  # perturb token t; outputs before t must not move
    y = x.copy()
    y[..., t:, :] += rng.standard_normal(x_b + (T - t, 4))
    out_x, _ = run_mha(x, W, b, 2, mask=mask, bias=bias, n_kv_heads=n_kv_heads)
    out_y, _ = run_mha(y, W, b, 2, mask=mask, bias=bias, n_kv_heads=n_kv_heads)
    np.testing.assert_array_equal(out_x[..., :t, :], out_y[..., :t, :])
    assert not np.allclose(out_x[..., t:, :], out_y[..., t:, :])


@given(seeds, st.integers(1, 6), st.integers(1, 4), attention_batches())
def test_padding_invariance(seed, T, n_pad, batches):
    """Padded keys and values change nothing; q, k, v and the mask have their own batch shapes."""
    rng = np.random.default_rng(seed)
    q_b, k_b, v_b, mask_b, _ = batches
    q, k, v = rng.standard_normal(q_b + (T, 3)), rng.standard_normal(k_b + (T, 3)), rng.standard_normal(v_b + (T, 2))
    out, w = scaled_dot_product_attention(q, k, v)
    k_pad = np.concatenate([k, 100 * rng.standard_normal(k_b + (n_pad, 3))], axis=-2)
    v_pad = np.concatenate([v, 100 * rng.standard_normal(v_b + (n_pad, 2))], axis=-2)
    mask = np.broadcast_to(padding_mask([T], T + n_pad)[0], mask_b + (1, T + n_pad))
    out_pad, w_pad = scaled_dot_product_attention(q, k_pad, v_pad, mask=mask)
    np.testing.assert_allclose(out_pad, out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w_pad[..., :T], np.broadcast_to(w, w_pad[..., :T].shape), rtol=1e-12)
    assert np.all(w_pad[..., T:] == 0.0)


@given(seeds, st.integers(2, 7), batch_shapes(), st.sampled_from([2, 1]))
def test_self_attention_is_permutation_equivariant_until_positions_are_added(seed, T, x_b, n_kv_heads):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_b + (T, 8))
    W, b = mha_weights(rng, 8, 8, biases=True)
    W["W_k"], W["W_v"], b["b_k"], b["b_v"] = (a[..., : 4 * n_kv_heads] for a in (W["W_k"], W["W_v"], b["b_k"], b["b_v"]))
    perm = np.roll(np.arange(T), 1)  # a permutation that moves every token
    out, w = run_mha(x, W, b, 2, n_kv_heads=n_kv_heads)
    out_p, w_p = run_mha(x[..., perm, :], W, b, 2, n_kv_heads=n_kv_heads)
    np.testing.assert_allclose(out_p, out[..., perm, :], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w_p, w[..., perm, :][..., perm], rtol=1e-10, atol=1e-12)
    # With positions added, permuting the tokens is no longer just a relabelling.
    pe = sinusoidal_positions(T, 8)
    out_pe, _ = run_mha(x + pe, W, b, 2, n_kv_heads=n_kv_heads)
    out_pe_p, _ = run_mha(x[..., perm, :] + pe, W, b, 2, n_kv_heads=n_kv_heads)
    assert not np.allclose(out_pe_p, out_pe[..., perm, :], atol=1e-6)


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


def repeat_kv_heads(W, n_kv_heads, group):
    """Columns of key/value head j repeated for each of the ``group`` query heads that share it."""
    d_head = W.shape[-1] // n_kv_heads
    W = W.reshape(*W.shape[:-1], n_kv_heads, 1, d_head)
    return np.repeat(W, group, axis=-2).reshape(*W.shape[:-3], n_kv_heads * group * d_head)


def reference_heads(query, key, value, W, b, n_heads, n_kv_heads, mask, bias, per_head_mask=False):
    """A loop over query heads with naive attention; head h reads key/value head h // group."""
    Q, K, V = (x @ W[n] + b.get(bn, 0.0) for x, n, bn in
               ((query, "W_q", "b_q"), (key, "W_k", "b_k"), (value, "W_v", "b_v")))
    group, d_head, d_v_head = n_heads // n_kv_heads, Q.shape[-1] // n_heads, V.shape[-1] // n_kv_heads
    heads, weights = [], []
    for h in range(n_heads):
        j = h // group
        b_h = None if bias is None else bias[..., h if bias.shape[-3] > 1 else 0, :, :]
        m_h = mask[..., h, :, :] if per_head_mask else mask
        o, w = naive_attention(Q[..., h * d_head:(h + 1) * d_head], K[..., j * d_head:(j + 1) * d_head],
                               V[..., j * d_v_head:(j + 1) * d_v_head], m_h, b_h)
        heads.append(o)
        weights.append(w)
    return np.concatenate(heads, -1) @ W["W_o"] + b.get("b_o", 0.0), weights


@given(seeds, st.sampled_from([(4, 4), (4, 2), (4, 1), (2, 2), (2, 1)]), attention_batches(),
       st.integers(1, 4), st.integers(1, 5), st.sampled_from(["none", "shared", "per head"]), st.booleans())
def test_multi_head_with_broadcast_batches_matches_a_loop_over_heads(seed, heads, batches, T_q, T_k,
                                                                    mask_kind, with_bias):
    """Query, key, value, mask and bias of different but compatible batch shapes, any n_kv_heads."""
    rng = np.random.default_rng(seed)
    n_heads, n_kv_heads = heads
    q_b, k_b, v_b, mask_b, bias_b = batches
    d_head = 2
    W, b = mha_weights(rng, 5, n_heads * d_head, d_out=3, biases=True)
    for n in ("W_k", "W_v"):
        W[n] = W[n][:, : n_kv_heads * d_head]
    for n in ("b_k", "b_v"):
        b[n] = b[n][: n_kv_heads * d_head]
    query = rng.standard_normal(q_b + (T_q, 5))
    key, value = rng.standard_normal(k_b + (T_k, 5)), rng.standard_normal(v_b + (T_k, 5))
    mask = None
    if mask_kind == "shared":  # one mask for every head: gets a head axis
        mask = random_mask(rng, mask_b + (T_q, T_k))
    elif mask_kind == "per head":  # every axis of the multi-head scores, batch axes of size 1 allowed
        batch = np.broadcast_shapes(q_b, k_b, v_b)
        mask = random_mask(rng, tuple(n if rng.random() < 0.5 else 1 for n in batch) + (n_heads, T_q, T_k))
    bias = rng.standard_normal(bias_b + (n_heads, T_q, T_k)) if with_bias else None
    out, w = multi_head_attention(query, key, value, W["W_q"], W["W_k"], W["W_v"], W["W_o"], n_heads,
                                  n_kv_heads=n_kv_heads, mask=mask, bias=bias, **b)
    ref, ref_w = reference_heads(query, key, value, W, b, n_heads, n_kv_heads, mask, bias,
                                 per_head_mask=mask_kind == "per head")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    for h in range(n_heads):
        np.testing.assert_allclose(w[..., h, :, :], np.broadcast_to(ref_w[h], w[..., h, :, :].shape),
                                   rtol=1e-10, atol=1e-300)
    out_t, _ = multi_head_attention(Tensor(query), key, value, *(Tensor(W[n]) for n in ("W_q", "W_k", "W_v", "W_o")),
                                    n_heads, n_kv_heads=n_kv_heads, mask=mask, bias=bias, **b)
    np.testing.assert_allclose(out_t.data, out, rtol=1e-12, atol=1e-14)


@given(seeds, st.sampled_from([(4, 2), (4, 1), (6, 3), (6, 2), (3, 1)]), st.integers(1, 4),
       st.integers(1, 5), st.booleans())
def test_grouped_query_equals_multi_head_with_repeated_key_value_weights(seed, heads, T_q, T_k, causal):
    """GQA is multi-head attention whose key/value heads are copies within each group."""
    rng = np.random.default_rng(seed)
    n_heads, n_kv_heads = heads
    group, d_head = n_heads // n_kv_heads, 2
    W, b = mha_weights(rng, 6, n_heads * d_head, biases=True)
    for n in ("W_k", "W_v", "b_k", "b_v"):
        source = W if n in W else b
        source[n] = source[n][..., : n_kv_heads * d_head]
    full_W = dict(W, W_k=repeat_kv_heads(W["W_k"], n_kv_heads, group),
                  W_v=repeat_kv_heads(W["W_v"], n_kv_heads, group))
    full_b = dict(b, b_k=repeat_kv_heads(b["b_k"], n_kv_heads, group),
                  b_v=repeat_kv_heads(b["b_v"], n_kv_heads, group))
    query, memory = rng.standard_normal((2, T_q, 6)), rng.standard_normal((2, T_k, 6))
    mask = causal_mask(T_q, T_k) if causal and T_k >= T_q else None
    bias = alibi_bias(n_heads, T_q, T_k)
    gqa, gqa_w = multi_head_attention(query, memory, memory, *W.values(), n_heads, n_kv_heads=n_kv_heads,
                                      mask=mask, bias=bias, **b)
    mha, mha_w = multi_head_attention(query, memory, memory, *full_W.values(), n_heads, mask=mask,
                                      bias=bias, **full_b)
    # Equal up to rounding: BLAS may sum a projection to fewer columns in another order.
    np.testing.assert_allclose(gqa, mha, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gqa_w, mha_w, rtol=1e-13, atol=1e-300)


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


def test_cache_errors_leave_the_cache_unchanged(rng):
    from attnbook.kvcache import KVCache

    x = rng.standard_normal((2, 3, 8))
    W, b = mha_weights(rng, 8, 8)
    cache = KVCache()
    run_mha(x, W, b, 2, cache=cache, mask=causal_mask(3))
    k_before = cache.k.copy()
    with pytest.raises(ValueError, match=r"mask of shape \(1, 3\) does not broadcast to the scores of shape \(2, 2, 1, 4\)"):
        run_mha(x[:, :1], W, b, 2, cache=cache, mask=np.ones((1, 3), bool))  # 4 keys with the cached 3
    with pytest.raises(ValueError, match=r"the cache holds keys of shape \(2, 2, 3, 4\) but the new keys have shape \(1, 2, 1, 4\)"):
        run_mha(x[:1, :1], W, b, 2, cache=cache)
    np.testing.assert_array_equal(cache.k, k_before)
    static = KVCache(static=True)
    multi_head_attention(x, x, x, *W.values(), 2, cache=static)
    with pytest.raises(ValueError, match=r"static cache holds keys of 2 heads of width 4, but this attention has n_kv_heads=1"):
        multi_head_attention(x, None, None, W["W_q"], W["W_k"][:, :4], W["W_v"][:, :4], W["W_o"][:4], 2,
                             n_kv_heads=1, cache=static)
    with pytest.raises(ValueError, match=r"already filled"):
        static.append(static.k, static.v)


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
    with pytest.raises(ValueError, match=r"W_k \(shape \(8, 6\)\) maps to width 6, but the keys need "
                                         r"n_kv_heads \* d_head = 2 \* 4 = 8 columns"):
        run_mha(x, bad, b, 2)
    with pytest.raises(ValueError, match=r"W_k \(shape \(8, 8\)\) maps to width 8, but the keys need "
                                         r"n_kv_heads \* d_head = 1 \* 4 = 4 columns"):
        run_mha(x, W, b, 2, n_kv_heads=1)
    with pytest.raises(ValueError, match=r"n_kv_heads = 3 does not divide n_heads = 4.*1 for multi-query"):
        run_mha(x, W, b, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match=r"n_kv_heads must be a positive integer, got 0"):
        run_mha(x, W, b, 4, n_kv_heads=0)
    bad = dict(W, W_v=rng.standard_normal((8, 6)))
    with pytest.raises(ValueError, match=r"d_v \(W_v's output width\) = 6 is not divisible by n_kv_heads = 4"):
        run_mha(x, bad, b, 4)
    with pytest.raises(ValueError, match=r"W_o must have shape \(4, d_out\) to project the merged heads"):
        run_mha(x, dict(W, W_k=W["W_k"][:, :2], W_v=W["W_v"][:, :1]), b, 4, n_kv_heads=1)
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
    with pytest.raises(ValueError, match=r"RoPE rotates queries and keys of the same tokens .* 3 queries and 2 new keys"):
        multi_head_attention(x, x[:, :2], x[:, :2], *W.values(), 2, positions=np.arange(3))
    with pytest.raises(ValueError, match=r"positions of shape \(4,\) do not fit"):
        run_mha(x, W, b, 2, positions=np.arange(4))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n_heads, T, d_head\), got shape \(3, 8\)"):
        merge_heads(x[0])
