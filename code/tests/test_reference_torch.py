"""Reference tests against PyTorch (CPU, float64); skipped when torch is not installed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from attnbook import (  # noqa: E402
    Tensor,
    alibi_bias,
    causal_mask,
    flash_attention,
    layer_norm,
    log_softmax,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    softmax,
)


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def test_sdpa_matches_torch_with_bool_mask_and_float_bias(rng):
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 7, 4)), rng.standard_normal((2, 3, 7, 6))
    mask = causal_mask(5, 7)  # True = may attend, as in torch
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flash_attention(q, k, v, mask=mask, block_size=2), ref.numpy(), rtol=1e-10)
    bias = alibi_bias(3, 5, 7)
    out_b, _ = scaled_dot_product_attention(q, k, v, bias=bias)
    ref_b = F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(bias))
    np.testing.assert_allclose(out_b, ref_b.numpy(), rtol=1e-12, atol=1e-14)


def test_sdpa_gradients_match_torch(rng):
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 5))
    mask = padding_mask([6, 2], 6)  # (B, 1, T_k)
    g = rng.standard_normal((2, 4, 5))
    ours = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out, _ = scaled_dot_product_attention(*ours, mask=mask)
    (out * g).sum().backward()
    theirs = [t(a, grad=True) for a in (q, k, v)]
    ref = F.scaled_dot_product_attention(*theirs, attn_mask=torch.from_numpy(mask))
    (ref * t(g)).sum().backward()
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-13)


def torch_mha(rng, E, H):
    module = torch.nn.MultiheadAttention(E, H, batch_first=True, bias=True, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases, so that a mix-up would show
        module.in_proj_bias.copy_(t(0.1 * rng.standard_normal(3 * E)))
        module.out_proj.bias.copy_(t(0.1 * rng.standard_normal(E)))
    return module


def our_weights(module, E):
    """PyTorch computes x @ W.T; ours is x @ W, so every weight is transposed."""
    W_in, b_in = module.in_proj_weight.detach().numpy(), module.in_proj_bias.detach().numpy()
    return dict(
        W_q=W_in[:E].T, W_k=W_in[E : 2 * E].T, W_v=W_in[2 * E :].T,
        W_o=module.out_proj.weight.detach().numpy().T,
        b_q=b_in[:E], b_k=b_in[E : 2 * E], b_v=b_in[2 * E :],
        b_o=module.out_proj.bias.detach().numpy(),
    )


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
def test_multi_head_matches_torch_multihead_attention(rng, mask_kind):
    B, T, S, E, H = 2, 4, 5, 8, 2
    module = torch_mha(rng, E, H)
    W = our_weights(module, E)
    query, memory = rng.standard_normal((B, T, E)), rng.standard_normal((B, S, E))
    kwargs, ours_mask = {}, None
    if mask_kind == "causal":
        ours_mask = causal_mask(T, S)
        kwargs["attn_mask"] = torch.from_numpy(~ours_mask)  # torch: True = may NOT attend
    elif mask_kind == "padding":
        ours_mask = padding_mask([5, 3], S)
        kwargs["key_padding_mask"] = torch.from_numpy(~ours_mask[:, 0])
    out, weights = multi_head_attention(
        query, memory, memory, W["W_q"], W["W_k"], W["W_v"], W["W_o"], H,
        b_q=W["b_q"], b_k=W["b_k"], b_v=W["b_v"], b_o=W["b_o"], mask=ours_mask)
    ref, ref_w = module(t(query), t(memory), t(memory), need_weights=True,
                        average_attn_weights=False, **kwargs)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights, ref_w.detach().numpy(), rtol=1e-10, atol=1e-12)
    _, ref_avg = module(t(query), t(memory), t(memory), need_weights=True, **kwargs)
    np.testing.assert_allclose(weights.mean(axis=1), ref_avg.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_multi_head_gradients_match_torch(rng):
    B, T, E, H = 2, 3, 4, 2
    module = torch_mha(rng, E, H)
    x = rng.standard_normal((B, T, E))
    g = rng.standard_normal((B, T, E))
    W = {n: Tensor(a, requires_grad=True) for n, a in our_weights(module, E).items()}
    xt = Tensor(x, requires_grad=True)
    out, _ = multi_head_attention(xt, xt, xt, W["W_q"], W["W_k"], W["W_v"], W["W_o"], H,
                                  b_q=W["b_q"], b_k=W["b_k"], b_v=W["b_v"], b_o=W["b_o"],
                                  mask=causal_mask(T))
    (out * g).sum().backward()
    x_ref = t(x, grad=True)
    ref, _ = module(x_ref, x_ref, x_ref, attn_mask=torch.from_numpy(~causal_mask(T)))
    (ref * t(g)).sum().backward()
    np.testing.assert_allclose(xt.grad, x_ref.grad.numpy(), rtol=1e-10, atol=1e-13)
    in_grad = module.in_proj_weight.grad.numpy()
    np.testing.assert_allclose(W["W_q"].grad, in_grad[:E].T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W["W_k"].grad, in_grad[E : 2 * E].T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W["W_v"].grad, in_grad[2 * E :].T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W["W_o"].grad, module.out_proj.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
    b_grad = module.in_proj_bias.grad.numpy()
    np.testing.assert_allclose(W["b_q"].grad, b_grad[:E], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W["b_v"].grad, b_grad[2 * E :], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W["b_o"].grad, module.out_proj.bias.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_matches_torch_enable_gqa(rng, n_kv_heads):
    """torch projects, splits heads and calls scaled_dot_product_attention(enable_gqa=True)."""
    B, T, E, H = 2, 5, 8, 4
    d_head, mask = E // H, causal_mask(T)
    x = rng.standard_normal((B, T, E))
    params = {"W_q": (E, E), "W_k": (E, n_kv_heads * d_head), "W_v": (E, n_kv_heads * d_head),
              "W_o": (E, E), "b_q": (E,), "b_k": (n_kv_heads * d_head,), "b_v": (n_kv_heads * d_head,),
              "b_o": (E,)}
    values = {n: rng.standard_normal(s) / 2 for n, s in params.items()}
    g = rng.standard_normal((B, T, E))
    ours = {n: Tensor(a, requires_grad=True) for n, a in values.items()}
    xt = Tensor(x, requires_grad=True)
    out, _ = multi_head_attention(xt, xt, xt, ours["W_q"], ours["W_k"], ours["W_v"], ours["W_o"], H,
                                  b_q=ours["b_q"], b_k=ours["b_k"], b_v=ours["b_v"], b_o=ours["b_o"],
                                  n_kv_heads=n_kv_heads, mask=mask)
    (out * g).sum().backward()
    theirs = {n: t(a, grad=True) for n, a in values.items()}
    x_ref = t(x, grad=True)

    def heads(y, n):  # (B, T, n * d_head) -> (B, n, T, d_head)
        return y.reshape(B, T, n, d_head).transpose(1, 2)

    q = heads(x_ref @ theirs["W_q"] + theirs["b_q"], H)
    k = heads(x_ref @ theirs["W_k"] + theirs["b_k"], n_kv_heads)
    v = heads(x_ref @ theirs["W_v"] + theirs["b_v"], n_kv_heads)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(mask), enable_gqa=True)
    ref = o.transpose(1, 2).reshape(B, T, E) @ theirs["W_o"] + theirs["b_o"]
    (ref * t(g)).sum().backward()
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xt.grad, x_ref.grad.numpy(), rtol=1e-10, atol=1e-12)
    for n in params:
        np.testing.assert_allclose(ours[n].grad, theirs[n].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=n)


def test_sdpa_broadcasts_batches_like_torch(rng):
    """q, k (T, d) shared, v (2, T, d) and a mask (2, T_q, T_k) per batch element (issue 11)."""
    q, k, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((2, 4, 5))
    mask = rng.random((2, 4, 4)) < 0.6
    mask[..., 0] = True
    bias = rng.standard_normal((2, 4, 4))
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    out_b, _ = scaled_dot_product_attention(q, k, v, bias=bias)
    for b in range(2):  # torch's own in-place masking refuses this broadcast: one element at a time
        ref = F.scaled_dot_product_attention(t(q), t(k), t(v[b]), attn_mask=torch.from_numpy(mask[b]))
        np.testing.assert_allclose(out[b], ref.numpy(), rtol=1e-12, atol=1e-14)
        ref_b = F.scaled_dot_product_attention(t(q), t(k), t(v[b]), attn_mask=t(bias[b]))
        np.testing.assert_allclose(out_b[b], ref_b.numpy(), rtol=1e-12, atol=1e-14)


def test_layer_norm_values_and_gradients_match_torch(rng):
    x, gamma, beta = rng.standard_normal((2, 3, 6)), rng.standard_normal(6), rng.standard_normal(6)
    g = rng.standard_normal((2, 3, 6))
    ours = [Tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    y = layer_norm(*ours, eps=1e-5)
    (y * g).sum().backward()
    theirs = [t(a, grad=True) for a in (x, gamma, beta)]
    ref = F.layer_norm(theirs[0], (6,), theirs[1], theirs[2], eps=1e-5)
    (ref * t(g)).sum().backward()
    np.testing.assert_allclose(y.data, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer_norm(x, gamma, beta), ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_softmax_and_log_softmax_match_torch(rng):
    x = 10 * rng.standard_normal((3, 5))
    g = rng.standard_normal((3, 5))
    np.testing.assert_allclose(softmax(x), torch.softmax(t(x), -1).numpy(), rtol=1e-12, atol=1e-300)
    ours = Tensor(x, requires_grad=True)
    (log_softmax(ours) * g).sum().backward()
    theirs = t(x, grad=True)
    ref = torch.log_softmax(theirs, -1)
    (ref * t(g)).sum().backward()
    np.testing.assert_allclose(log_softmax(x), ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)
