"""Layers: parameter discovery, saving and loading, initialisers, and gradients of every module."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnbook import Tensor, causal_mask, gradcheck, multi_head_attention, no_grad
from attnbook.nn import (
    Embedding,
    FeedForward,
    KVCache,
    LayerNorm,
    Linear,
    Module,
    MultiHeadAttention,
    fan_in_uniform,
    normal,
    uniform,
    xavier_uniform,
)


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


@pytest.mark.parametrize("rope", [False, True])
def test_multi_head_attention_gradients(rng, rope):
    mha = MultiHeadAttention(4, 2, rng=rng, rope=rope)
    for b in (mha.b_q, mha.b_k, mha.b_v, mha.b_o):
        b.data[:] = rng.standard_normal(4) * 0.1
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    m = Tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    w = rng.standard_normal((2, 3, 4))
    mask = np.array([[[True, True, True, False, False]], [[True] * 5]])  # (B, 1, T_k) padding
    if rope:  # self-attention: RoPE needs the queries' and keys' positions
        mask = causal_mask(3)
        assert gradcheck(lambda x, *p: (mha(x, x, x, mask=mask)[0] * w).sum(), x, *mha.parameters())
    else:
        assert gradcheck(lambda x, m, *p: (mha(x, m, m, mask=mask)[0] * w).sum(), x, m, *mha.parameters())


def test_rope_needs_self_attention(rng):
    mha = MultiHeadAttention(4, 2, rng=rng, rope=True)
    with pytest.raises(ValueError, match="RoPE rotates queries and keys of the same tokens"):
        mha(np.ones((1, 2, 4)), np.ones((1, 3, 4)), np.ones((1, 3, 4)))


def test_module_is_the_function(rng):
    """Without RoPE or a cache the module is multi_head_attention with its weights; the
    composed path (used with a cache) computes the same."""
    mha = MultiHeadAttention(8, 4, rng=rng)
    x = rng.standard_normal((2, 5, 8))
    out, weights = mha(x, x, x, mask=causal_mask(5))
    ref, ref_w = multi_head_attention(x, x, x, mha.W_q.data, mha.W_k.data, mha.W_v.data, mha.W_o.data, 4,
                                      mask=causal_mask(5))
    np.testing.assert_allclose(out.data, ref, atol=1e-14)
    np.testing.assert_array_equal(mha.weights, weights.data)
    with no_grad():
        cached, _ = mha(x, x, x, mask=causal_mask(5), cache=KVCache())
    np.testing.assert_allclose(cached.data, ref, atol=1e-13)
    # Padding (B, 1, T_k) and per-head (B, H, T_q, T_k) masks follow the function's rule too.
    per_head = rng.random((2, 4, 5, 5)) < 0.6
    per_head[..., 0] = True
    for mask in (np.array([[[True] * 5], [[True, True, False, False, False]]]), per_head):
        plain, _ = mha(x, x, x, mask=mask)
        with no_grad():
            composed, _ = mha(x, x, x, mask=mask, cache=KVCache())
        np.testing.assert_allclose(composed.data, plain.data, atol=1e-13)


@given(st.integers(1, 6), st.integers(1, 3))
def test_cache_step_by_step_equals_full_attention(T, chunk):
    rng = np.random.default_rng(T * 7 + chunk)
    for rope in (False, True):
        mha = MultiHeadAttention(8, 2, rng=rng, rope=rope)
        x = rng.standard_normal((2, T, 8))
        with no_grad():
            full, _ = mha(x, x, x, mask=causal_mask(T))
            cache, outs = KVCache(), []
            for start in range(0, T, chunk):
                piece = x[:, start:start + chunk]
                n = piece.shape[1]
                out, _ = mha(piece, piece, piece, mask=causal_mask(n, start + n), cache=cache,
                             positions=np.arange(start, start + n))
                outs.append(out.data)
        np.testing.assert_allclose(np.concatenate(outs, axis=1), full.data, atol=1e-12)
        assert len(cache) == T


def test_static_cache_projects_the_memory_once(rng):
    mha = MultiHeadAttention(4, 2, rng=rng)
    q, memory = rng.standard_normal((1, 1, 4)), rng.standard_normal((1, 3, 4))
    cache = KVCache(static=True)
    with no_grad():
        first, _ = mha(q, memory, memory, cache=cache)
        again, _ = mha(q, np.zeros((1, 3, 4)), np.zeros((1, 3, 4)), cache=cache)  # memory ignored now
    np.testing.assert_array_equal(first.data, again.data)
    assert len(cache) == 3 and len(cache.select(np.array([0, 0]))) == 3


def test_mha_rejects_indivisible_heads(rng):
    with pytest.raises(ValueError, match="not divisible by n_heads=3"):
        MultiHeadAttention(8, 3, rng=rng)
