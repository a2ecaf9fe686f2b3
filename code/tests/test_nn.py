"""Layers: parameter discovery, saving and loading, initialisers, and gradients of every module."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import Tensor, causal_mask, gradcheck, multi_head_attention, no_grad, padding_mask
from attnbook.init import fan_in_uniform, normal, uniform, xavier_uniform
from attnbook.kvcache import KVCache
from attnbook.nn import Embedding, FeedForward, LayerNorm, Linear, Module, MultiHeadAttention


class Two(Module):
    def __init__(self, rng):
        self.first = Linear(2, 3, rng=rng)
        self.blocks = [Linear(3, 3, rng=rng), Linear(3, 1, rng=rng, bias=False)]
        self.scale = Tensor([1.0], requires_grad=True)
        self.constant = Tensor([5.0])  # not trainable: not a parameter

    def forward(self, x):
        return self.blocks[1](self.blocks[0](self.first(x)).tanh()) * self.scale


def test_named_parameters_in_definition_order(rng):
    names = [n for n, _ in Two(rng).named_parameters()]
    assert names == ["first.W", "first.b", "blocks.0.W", "blocks.0.b", "blocks.1.W", "scale"]
    assert Two(rng).num_parameters() == 6 + 3 + 9 + 3 + 3 + 1


def test_state_dict_round_trip_and_copies(rng):
    a, b = Two(rng), Two(rng)
    state = a.state_dict()
    state["first.W"][0, 0] = 123.0  # a copy: editing it leaves the model alone
    assert a.first.W.data[0, 0] != 123.0
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((4, 2))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_errors(rng):
    model = Two(rng)
    state = model.state_dict()
    del state["scale"]
    with pytest.raises(ValueError, match="missing \\['scale'\\]"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["first.W"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="first.W has shape \\(2, 3\\) but the state holds \\(3, 3\\)"):
        model.load_state_dict(state)


def test_zero_grad(rng):
    model = Two(rng)
    model(np.ones((1, 2))).sum().backward()
    params = model.parameters()
    assert params and all(p.grad is not None for p in params)
    model.zero_grad()
    assert all(p.grad is None for p in params)


def test_initialisers_respect_their_bounds_and_rng(rng):
    assert np.abs(fan_in_uniform(rng, (400, 10)).data).max() <= 1 / 20
    assert np.abs(xavier_uniform(rng, (30, 70)).data).max() <= np.sqrt(6 / 100)
    assert abs(normal(rng, (20000,), 0.5).data.std() - 0.5) < 0.02
    a = uniform(np.random.default_rng(3), (5,), 1.0).data
    b = uniform(np.random.default_rng(3), (5,), 1.0).data
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="rng must be a numpy Generator"):
        uniform(3, (2,), 1.0)


# ------------------------------------------------------------------- gradient checks


def test_linear_gradients(rng):
    layer = Linear(3, 2, rng=rng)
    x = Tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    w = rng.standard_normal((2, 4, 2))
    assert gradcheck(lambda x, W, b: (layer(x) * w).sum(), x, layer.W, layer.b)


def test_embedding_gradients_accumulate_repeated_ids(rng):
    emb = Embedding(5, 3, rng=rng)
    ids = np.array([[1, 2, 1], [4, 1, 0]])
    w = rng.standard_normal((2, 3, 3))
    assert gradcheck(lambda W: (emb(ids) * w).sum(), emb.W)
    emb.W.grad = None
    (emb(ids) * w).sum().backward()
    np.testing.assert_allclose(emb.W.grad[1], w[0, 0] + w[0, 2] + w[1, 1])
    np.testing.assert_array_equal(emb.W.grad[3], 0.0)


def test_embedding_rejects_bad_ids(rng):
    emb = Embedding(5, 3, rng=rng)
    with pytest.raises(ValueError, match="in \\[0, 5\\)"):
        emb(np.array([0, 5]))
    with pytest.raises(ValueError, match="integer ids"):
        emb(np.array([0.0, 1.0]))


def test_layer_norm_and_feed_forward_gradients(rng):
    norm = LayerNorm(4)
    norm.gamma.data[:] = rng.standard_normal(4)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = rng.standard_normal((2, 3, 4))
    assert gradcheck(lambda x, g, b: (norm(x) * w).sum(), x, norm.gamma, norm.beta)
    ffn = FeedForward(4, 6, rng=rng)
    assert gradcheck(lambda x, *p: (ffn(x) * w).sum(), x, *ffn.parameters())


# ------------------------------------------------------------ multi-head attention


def rope_reference(x, positions, base=10000.0):
    """RoPE by complex multiplication: the pair (x_2i, x_2i+1) is x_2i + i x_2i+1, turned by p theta_i."""
    d = x.shape[-1]
    z = x[..., 0::2] + 1j * x[..., 1::2]  # (..., T, d/2)
    theta = base ** (-np.arange(0, d, 2) / d)
    z = z * np.exp(1j * np.asarray(positions, dtype=float)[:, None] * theta)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def reference_mha(query, key, value, p, n_heads, n_kv_heads, mask=None, positions=None):
    """Head by head from the definitions: query head h reads key/value head h // (n_heads / n_kv_heads)."""
    Q, K, V = query @ p["W_q"] + p["b_q"], key @ p["W_k"] + p["b_k"], value @ p["W_v"] + p["b_v"]
    d_head, d_v_head, group = Q.shape[-1] // n_heads, V.shape[-1] // n_kv_heads, n_heads // n_kv_heads
    heads = []
    for h in range(n_heads):
        j = h // group
        q, k = Q[..., h * d_head:(h + 1) * d_head], K[..., j * d_head:(j + 1) * d_head]
        v = V[..., j * d_v_head:(j + 1) * d_v_head]
        if positions is not None:
            q, k = rope_reference(q, positions), rope_reference(k, positions)
        s = q @ np.swapaxes(k, -1, -2) / np.sqrt(d_head)
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        heads.append(w / w.sum(-1, keepdims=True) @ v)
    return np.concatenate(heads, -1) @ p["W_o"] + p["b_o"]


def random_mha(rng, n_kv_heads=None, rope=False, d_model=8, n_heads=4):
    """A module with random, non-zero biases (zeros would hide a dropped bias)."""
    mha = MultiHeadAttention(d_model, n_heads, n_kv_heads, rng=rng, rope=rope)
    for b in (mha.b_q, mha.b_k, mha.b_v, mha.b_o):
        b.data[:] = rng.standard_normal(b.shape)
    return mha


def weights_of(mha):
    return {name: p.data for name, p in mha.named_parameters()}


def function_of(mha, query, key, value, **kw):
    """multi_head_attention called by hand with the module's weights."""
    return multi_head_attention(query, key, value, mha.W_q, mha.W_k, mha.W_v, mha.W_o, mha.n_heads,
                                b_q=mha.b_q, b_k=mha.b_k, b_v=mha.b_v, b_o=mha.b_o,
                                n_kv_heads=mha.n_kv_heads, rope_base=mha.rope_base, **kw)


kv_heads = st.sampled_from([4, 2, 1])  # of 4 query heads: multi-head, grouped-query, multi-query
seeds = st.integers(0, 2**32 - 1)


@given(seeds, kv_heads, st.booleans())
def test_module_and_function_agree_with_the_definition_without_a_cache(seed, n_kv_heads, rope):
    """Plain (cross-attention with padding) and RoPE (causal self-attention) paths."""
    rng = np.random.default_rng(seed)
    mha = random_mha(rng, n_kv_heads, rope=rope)
    x, memory = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
    if rope:
        key, mask, positions = x, causal_mask(3), np.arange(3)
    else:
        key, mask, positions = memory, padding_mask([5, 2], 5), None
    out, weights = mha(x, key, key, mask=mask)
    ref = reference_mha(x, key, key, weights_of(mha), 4, n_kv_heads, mask=mask, positions=positions)
    np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-12)
    by_hand, by_hand_w = function_of(mha, x, key, key, mask=mask, positions=positions)
    np.testing.assert_array_equal(out.data, by_hand.data)
    np.testing.assert_array_equal(mha.weights, by_hand_w.data)


@given(seeds, kv_heads, st.booleans(), st.integers(1, 6), st.integers(1, 3))
def test_module_and_function_with_a_cache_equal_full_attention(seed, n_kv_heads, rope, T, chunk):
    """Feeding the tokens chunk by chunk through a cache (with and without RoPE) changes nothing."""
    rng = np.random.default_rng(seed)
    mha = random_mha(rng, n_kv_heads, rope=rope)
    x = rng.standard_normal((2, T, 8))
    ref = reference_mha(x, x, x, weights_of(mha), 4, n_kv_heads, mask=causal_mask(T),
                        positions=np.arange(T) if rope else None)
    with no_grad():
        cache, by_hand_cache, outs = KVCache(), KVCache(), []
        for start in range(0, T, chunk):
            piece = x[:, start:start + chunk]
            n = piece.shape[1]
            mask = causal_mask(n, start + n)
            out, _ = mha(piece, piece, piece, mask=mask, cache=cache)  # RoPE positions follow the cache
            by_hand, _ = function_of(mha, piece, piece, piece, mask=mask, cache=by_hand_cache,
                                     positions=np.arange(start, start + n) if rope else None)
            np.testing.assert_array_equal(out.data, by_hand.data)
            outs.append(out.data)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), ref, rtol=1e-10, atol=1e-12)
    assert len(cache) == T and cache.k.shape == (2, n_kv_heads, T, 2)  # only the key/value heads


@given(seeds, kv_heads, st.integers(1, 4))
def test_static_cache_is_filled_once_and_reused(seed, n_kv_heads, T):
    rng = np.random.default_rng(seed)
    mha = random_mha(rng, n_kv_heads)
    x, memory = rng.standard_normal((2, T, 8)), rng.standard_normal((2, 5, 8))
    mask = padding_mask([5, 3], 5)
    ref = reference_mha(x, memory, memory, weights_of(mha), 4, n_kv_heads, mask=mask)
    with no_grad():
        cache, by_hand_cache = KVCache(static=True), KVCache(static=True)
        for t in range(T):
            key = memory if t == 0 else None  # once filled, the memory is not needed (or projected)
            out, _ = mha(x[:, t:t + 1], key, key, mask=mask, cache=cache)
            by_hand, _ = function_of(mha, x[:, t:t + 1], key, key, mask=mask, cache=by_hand_cache)
            np.testing.assert_array_equal(out.data, by_hand.data)
            np.testing.assert_allclose(out.data, ref[:, t:t + 1], rtol=1e-10, atol=1e-12)
            assert len(cache) == 5
    assert len(cache.select(np.array([1, 1, 0]))) == 5


def test_static_cache_ignores_a_different_memory(rng):
    mha = random_mha(rng)
    q, memory = rng.standard_normal((1, 1, 8)), rng.standard_normal((1, 3, 8))
    cache = KVCache(static=True)
    with no_grad():
        first, _ = mha(q, memory, memory, cache=cache)
        again, _ = mha(q, np.zeros((1, 3, 8)), np.zeros((1, 3, 8)), cache=cache)
    np.testing.assert_array_equal(first.data, again.data)


@pytest.mark.parametrize("n_kv_heads", [2, 1])
@pytest.mark.parametrize("rope", [False, True])
def test_multi_head_attention_gradients(rng, rope, n_kv_heads):
    mha = random_mha(rng, n_kv_heads, rope=rope, d_model=4, n_heads=2)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    m = Tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    w = rng.standard_normal((2, 3, 4))
    mask = np.array([[[True, True, True, False, False]], [[True] * 5]])  # (B, 1, T_k) padding
    if rope:  # self-attention: RoPE needs the queries' and keys' positions
        mask = causal_mask(3)
        assert gradcheck(lambda x, *p: (mha(x, x, x, mask=mask)[0] * w).sum(), x, *mha.parameters())
    else:
        assert gradcheck(lambda x, m, *p: (mha(x, m, m, mask=mask)[0] * w).sum(), x, m, *mha.parameters())


def test_module_masks_follow_the_function_rule(rng):
    """Padding (B, 1, T_k) and per-head (B, H, T_q, T_k) masks, with and without a cache."""
    mha = random_mha(rng)
    x = rng.standard_normal((2, 5, 8))
    per_head = rng.random((2, 4, 5, 5)) < 0.6
    per_head[..., 0] = True
    for mask in (np.array([[[True] * 5], [[True, True, False, False, False]]]), per_head):
        plain, _ = mha(x, x, x, mask=mask)
        with no_grad():
            cached, _ = mha(x, x, x, mask=mask, cache=KVCache())
        np.testing.assert_array_equal(cached.data, plain.data)


def test_rope_needs_self_attention(rng):
    mha = MultiHeadAttention(4, 2, rng=rng, rope=True)
    with pytest.raises(ValueError, match="RoPE rotates queries and keys of the same tokens"):
        mha(np.ones((1, 2, 4)), np.ones((1, 3, 4)), np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="a static cache holds cross-attention keys"):
        mha(np.ones((1, 2, 4)), np.ones((1, 2, 4)), np.ones((1, 2, 4)), cache=KVCache(static=True))
    with pytest.raises(ValueError, match="built with rope=False"):
        MultiHeadAttention(4, 2, rng=rng)(np.ones((1, 2, 4)), np.ones((1, 2, 4)), np.ones((1, 2, 4)),
                                          positions=np.arange(2))


def test_mha_rejects_indivisible_heads(rng):
    with pytest.raises(ValueError, match="not divisible by n_heads=3"):
        MultiHeadAttention(8, 3, rng=rng)
    with pytest.raises(ValueError, match="n_kv_heads=3 does not divide n_heads=4"):
        MultiHeadAttention(8, 4, 3, rng=rng)
    with pytest.raises(ValueError, match="n_kv_heads=0 does not divide"):
        MultiHeadAttention(8, 4, 0, rng=rng)


def test_grouped_query_module_shapes_and_parameter_count(rng):
    full, grouped, single = (MultiHeadAttention(8, 4, h, rng=rng) for h in (None, 2, 1))
    assert full.W_k.shape == (8, 8) and grouped.W_k.shape == (8, 4) and single.W_v.shape == (8, 2)
    assert grouped.b_k.shape == (4,) and single.b_v.shape == (2,)
    # W_q, W_o and their biases: 2 * (64 + 8); W_k, W_v and theirs: 2 * (8 + 1) * n_kv_heads * d_head
    for mha, h in ((full, 4), (grouped, 2), (single, 1)):
        assert mha.num_parameters() == 2 * (64 + 8) + 2 * 9 * h * 2
