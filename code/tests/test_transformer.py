"""Transformers: blocks against PyTorch, gradients through whole models, causality, padding,
and every positional scheme."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook import Tensor, causal_mask, no_grad
from attnbook.losses import cross_entropy
from attnbook.transformer import (
    NORMS,
    POSITIONS,
    CausalLM,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoderTransformer,
    TransformerConfig,
)


def tiny(**kw):
    return TransformerConfig(**(dict(vocab=7, tgt_vocab=8, d_model=4, n_heads=2, d_ff=6, n_layers=2) | kw))


def spot_check_gradients(loss, params, rng, per_param=2, eps=1e-6):
    """Central differences at a few random entries of EVERY parameter, against autograd."""
    for p in params:
        p.grad = None
    loss().backward()
    for p in params:
        analytic = np.zeros_like(p.data) if p.grad is None else p.grad.copy()
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            with no_grad():
                up = loss().item()
            flat[i] = old - eps
            with no_grad():
                down = loss().item()
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            got = analytic.reshape(-1)[i]
            assert abs(got - numeric) <= 1e-6 + 1e-5 * abs(numeric), (p.shape, i, got, numeric)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("positions", POSITIONS)
def test_encoder_decoder_gradients(rng, norm, positions):
    model = EncoderDecoderTransformer(tiny(norm=norm, positions=positions, n_layers=1), rng=rng)
    src, tgt_in, tgt_out = rng.integers(4, 7, (2, 4)), rng.integers(4, 8, (2, 3)), rng.integers(4, 8, (2, 3))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    spot_check_gradients(lambda: cross_entropy(model(src, tgt_in, src_mask=mask), tgt_out),
                         model.parameters(), rng)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("positions", POSITIONS)
def test_causal_lm_gradients(rng, norm, positions):
    model = CausalLM(tiny(norm=norm, positions=positions, n_layers=1), rng=rng)
    ids = rng.integers(4, 7, (2, 5))
    spot_check_gradients(lambda: cross_entropy(model(ids[:, :-1]), ids[:, 1:]), model.parameters(), rng)


def test_pre_ln_adds_final_norms_and_post_ln_does_not(rng):
    pre = [n for n, _ in EncoderDecoderTransformer(tiny(norm="pre"), rng=rng).named_parameters()]
    post = [n for n, _ in EncoderDecoderTransformer(tiny(norm="post"), rng=rng).named_parameters()]
    assert "enc_norm.gamma" in pre and "dec_norm.gamma" in pre
    assert post and not any(n.startswith(("enc_norm", "dec_norm")) for n in post)
    assert "final_norm.gamma" in [n for n, _ in CausalLM(tiny(norm="pre"), rng=rng).named_parameters()]


@settings(max_examples=20)
@given(st.sampled_from(POSITIONS), st.integers(1, 6), st.integers(0, 10_000))
def test_causality(positions, t, seed):
    """Changing the token at position t changes no logits before t."""
    rng = np.random.default_rng(seed)
    model = CausalLM(tiny(positions=positions), rng=rng)
    ids = rng.integers(4, 7, (1, 7))
    changed = ids.copy()
    changed[0, t] = 4 + (ids[0, t] - 3) % 3
    with no_grad():
        a, b = model(ids).data, model(changed).data
    np.testing.assert_array_equal(a[:, :t], b[:, :t])
    assert not np.allclose(a[:, t:], b[:, t:])


@settings(max_examples=20)
@given(st.sampled_from(POSITIONS), st.integers(1, 3), st.integers(0, 10_000))
def test_source_padding_changes_nothing(positions, n_pad, seed):
    """Masked padding appended to the source leaves every output logit unchanged."""
    rng = np.random.default_rng(seed)
    model = EncoderDecoderTransformer(tiny(positions=positions), rng=rng)
    src, tgt_in = rng.integers(4, 7, (1, 4)), rng.integers(4, 8, (1, 3))
    padded = np.concatenate([src, np.zeros((1, n_pad), dtype=src.dtype)], axis=1)
    mask = np.arange(4 + n_pad) < 4
    with no_grad():
        plain = model(src, tgt_in).data
        with_pad = model(padded, tgt_in, src_mask=mask[None, :]).data
    np.testing.assert_allclose(with_pad, plain, atol=1e-12)


def test_encoder_without_positions_is_permutation_equivariant(rng):
    model = EncoderDecoderTransformer(tiny(positions="none"), rng=rng)
    src = rng.integers(4, 7, (1, 5))
    perm = rng.permutation(5)
    with no_grad():
        np.testing.assert_allclose(model.encode(src[:, perm]).data, model.encode(src).data[:, perm], atol=1e-12)
        with_pos = EncoderDecoderTransformer(tiny(positions="sinusoidal"), rng=rng)
        assert not np.allclose(with_pos.encode(src[:, perm]).data, with_pos.encode(src).data[:, perm])


def test_attention_weights_are_kept_for_plots(rng):
    model = EncoderDecoderTransformer(tiny(), rng=rng)
    model(rng.integers(4, 7, (3, 5)), rng.integers(4, 8, (3, 2)))
    w = model.decoder[1].cross_attn.weights
    assert w.shape == (3, 2, 2, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-14)
    assert (np.triu(model.decoder[0].self_attn.weights[0, 0], 1) == 0).all()


def test_learned_positions_stop_at_max_len(rng):
    model = CausalLM(tiny(positions="learned", max_len=4), rng=rng)
    model(np.array([[4, 5, 6, 4]]))
    with pytest.raises(ValueError, match="learned positions exist only for 0..3"):
        model(np.array([[4, 5, 6, 4, 5]]))


def test_ids_must_be_a_batch(rng):
    with pytest.raises(ValueError, match="ids must be integer token ids of shape \\(B, T\\)"):
        CausalLM(tiny(), rng=rng)(np.array([4, 5, 6]))


def test_config_errors():
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerConfig(vocab=5, norm="sandwich")
    with pytest.raises(ValueError, match="positions must be one of"):
        TransformerConfig(vocab=5, positions="relative")
    with pytest.raises(ValueError, match="not divisible by n_heads=3"):
        TransformerConfig(vocab=5, d_model=8, n_heads=3)
    with pytest.raises(ValueError, match="needs an even width"):
        TransformerConfig(vocab=5, d_model=6, n_heads=2, positions="rope")
    for bad in (3, 0, 2.0):
        with pytest.raises(ValueError, match=r"n_kv_heads must be a positive integer dividing n_heads=4"):
            TransformerConfig(vocab=5, d_model=8, n_heads=4, n_kv_heads=bad)


# ------------------------------------------------------------ grouped-query attention


@pytest.mark.parametrize("positions", ["sinusoidal", "rope", "alibi"])
@pytest.mark.parametrize("n_kv_heads", [2, 1])
def test_grouped_query_models_train_and_decode(rng, positions, n_kv_heads):
    cfg = tiny(d_model=8, n_heads=4, n_kv_heads=n_kv_heads, positions=positions, n_layers=1)
    lm, ed = CausalLM(cfg, rng=rng), EncoderDecoderTransformer(cfg, rng=rng)
    for mha in (lm.blocks[0].attn, ed.decoder[0].self_attn, ed.decoder[0].cross_attn, ed.encoder[0].attn):
        assert mha.n_kv_heads == n_kv_heads and mha.W_k.shape == (8, 2 * n_kv_heads)
    ids = rng.integers(4, 7, (2, 5))
    spot_check_gradients(lambda: cross_entropy(lm(ids[:, :-1]), ids[:, 1:]), lm.parameters(), rng)
    src, tgt = rng.integers(4, 7, (2, 4)), rng.integers(4, 8, (2, 3))
    spot_check_gradients(lambda: cross_entropy(ed(src, tgt), tgt), ed.parameters(), rng)
    with no_grad():
        for model, start in ((lm, ids[:, :2]), (ed, src)):
            logits_c, cached = model.start(start, use_cache=True)
            logits_r, fresh = model.start(start, use_cache=False)
            for t in range(3):
                np.testing.assert_allclose(logits_c, logits_r, rtol=0, atol=1e-12)
                logits_c, cached = model.step(cached, ids[:, t])
                logits_r, fresh = model.step(fresh, ids[:, t])


@pytest.mark.parametrize("dtype_size", [8])
def test_kv_cache_bytes_per_token_scale_with_n_kv_heads(rng, dtype_size):
    """The cache holds n_kv_heads heads: its bytes per token fall by n_heads / n_kv_heads."""
    B, T, T_src = 3, 5, 4
    measured = {}
    for n_kv_heads in (4, 2, 1):
        cfg = tiny(d_model=16, n_heads=4, n_kv_heads=n_kv_heads, n_layers=2)
        d_head = 16 // 4
        expected = cfg.n_layers * 2 * n_kv_heads * d_head * dtype_size
        assert cfg.kv_cache_bytes_per_token() == expected
        lm = CausalLM(cfg, rng=rng)
        _, state = lm.start(rng.integers(4, 7, (B, T)))
        for cache in state.caches:
            assert cache.bytes_per_token == 2 * n_kv_heads * d_head * dtype_size
        assert sum(c.nbytes for c in state.caches) == B * T * expected
        ed = EncoderDecoderTransformer(cfg, rng=rng)
        _, state = ed.start(rng.integers(4, 7, (B, T_src)))
        for _ in range(T - 1):
            _, state = ed.step(state, np.full(B, 4))
        self_caches, cross_caches = zip(*state.caches)
        assert sum(c.nbytes for c in self_caches) == B * T * expected  # per target token
        assert sum(c.nbytes for c in cross_caches) == B * T_src * expected  # per source token
        measured[n_kv_heads] = sum(c.bytes_per_token for c in self_caches)
    assert measured[4] == 2 * measured[2] == 4 * measured[1]
    assert tiny(d_model=16, n_heads=4).kv_cache_bytes_per_token(np.float32) == 2 * 2 * 4 * 4 * 4


# ------------------------------------------------------------------ PyTorch reference


def _copy_mha(torch_mha, mha, torch):
    with torch.no_grad():  # PyTorch computes x @ W.T: transpose our (d_in, d_out) weights
        torch_mha.in_proj_weight.copy_(torch.tensor(np.concatenate([mha.W_q.data.T, mha.W_k.data.T,
                                                                    mha.W_v.data.T])))
        torch_mha.in_proj_bias.copy_(torch.tensor(np.concatenate([mha.b_q.data, mha.b_k.data, mha.b_v.data])))
        torch_mha.out_proj.weight.copy_(torch.tensor(mha.W_o.data.T))
        torch_mha.out_proj.bias.copy_(torch.tensor(mha.b_o.data))


def _copy_common(layer, block, torch, norms):
    with torch.no_grad():
        layer.linear1.weight.copy_(torch.tensor(block.ffn.lin1.W.data.T))
        layer.linear1.bias.copy_(torch.tensor(block.ffn.lin1.b.data))
        layer.linear2.weight.copy_(torch.tensor(block.ffn.lin2.W.data.T))
        layer.linear2.bias.copy_(torch.tensor(block.ffn.lin2.b.data))
        for name in norms:
            getattr(layer, name).weight.copy_(torch.tensor(getattr(block, name).gamma.data))
            getattr(layer, name).bias.copy_(torch.tensor(getattr(block, name).beta.data))


def _randomise(module, rng):
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3


@pytest.mark.parametrize("norm", NORMS)
def test_encoder_block_matches_torch(rng, norm):
    torch = pytest.importorskip("torch")
    cfg = TransformerConfig(vocab=5, d_model=8, n_heads=2, d_ff=16, norm=norm)
    block = EncoderBlock(cfg, rng=rng)
    _randomise(block, rng)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                             norm_first=norm == "pre").double()
    _copy_mha(layer.self_attn, block.attn, torch)
    _copy_common(layer, block, torch, ["norm1", "norm2"])
    x = rng.standard_normal((2, 5, 8))
    w = rng.standard_normal((2, 5, 8))
    xt = torch.tensor(x, requires_grad=True)
    out_t = layer(xt, src_mask=torch.tensor(~causal_mask(5)))  # PyTorch's bool mask: True = blocked
    (out_t * torch.tensor(w)).sum().backward()
    xa = Tensor(x, requires_grad=True)
    out = block(xa, mask=causal_mask(5))
    (out * w).sum().backward()
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(block.attn.W_q.grad, layer.self_attn.in_proj_weight.grad[:8].numpy().T,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_decoder_block_matches_torch(rng, norm):
    torch = pytest.importorskip("torch")
    cfg = TransformerConfig(vocab=5, d_model=8, n_heads=2, d_ff=16, norm=norm)
    block = DecoderBlock(cfg, rng=rng)
    _randomise(block, rng)
    layer = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                             norm_first=norm == "pre").double()
    _copy_mha(layer.self_attn, block.self_attn, torch)
    _copy_mha(layer.multihead_attn, block.cross_attn, torch)
    _copy_common(layer, block, torch, ["norm1", "norm2", "norm3"])
    x, memory = rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 6, 8))
    pad = np.arange(6) < np.array([6, 3])[:, None]  # (B, T_src), True = real
    out_t = layer(torch.tensor(x), torch.tensor(memory), tgt_mask=torch.tensor(~causal_mask(4)),
                  memory_key_padding_mask=torch.tensor(~pad))
    out = block(x, memory, self_mask=causal_mask(4), memory_mask=pad[:, None, :])
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
