"""Every differentiable public function, checked against finite differences through Tensor.

Each check weights the output with a fixed random array before summing, so that every
output element contributes a different amount (a plain sum would hide many bugs: the rows
of a softmax always sum to 1, so its gradient under ``.sum()`` is zero).
"""

import numpy as np
import pytest

import attnbook
from attnbook import (
    Tensor,
    additive_score,
    alibi_bias,
    apply_rope,
    causal_mask,
    cosine_score,
    dot_score,
    flash_attention,
    general_score,
    gradcheck,
    layer_norm,
    log_softmax,
    merge_heads,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    scaled_dot_score,
    softmax,
    split_heads,
)


def weighted(out, seed=1):
    """A scalar that depends on every element of ``out`` differently."""
    w = np.random.default_rng(seed).standard_normal(out.shape)
    return (out * w).sum()


def randn(rng, *shape):
    return rng.standard_normal(shape)


# Each case: (name, function of the checked inputs, input shapes). Non-differentiable
# arguments (masks, sizes) are closed over.
MASK = causal_mask(4) & padding_mask([4, 3], 4)  # (2, 4, 4)
MINUS_INF = np.where(MASK[0], 0.0, -np.inf)  # masking as an additive -inf
CASES = [
    ("softmax", lambda x: softmax(x), [(2, 3, 4)]),
    ("softmax axis 0", lambda x: softmax(x, axis=0), [(3, 4)]),
    ("masked softmax", lambda x: softmax(x + MINUS_INF), [(4, 4)]),
    ("log_softmax", lambda x: log_softmax(x), [(2, 5)]),
    ("dot_score", dot_score, [(2, 3, 4), (2, 5, 4)]),
    ("scaled_dot_score", scaled_dot_score, [(3, 4), (2, 5, 4)]),
    ("general_score", general_score, [(3, 2), (4, 3), (2, 3)]),
    ("additive_score", additive_score, [(2, 3, 2), (2, 4, 3), (2, 5), (3, 5), (5,)]),
    ("cosine_score", cosine_score, [(3, 4), (5, 4)]),
    ("sdpa", lambda q, k, v: scaled_dot_product_attention(q, k, v)[0], [(2, 4, 3), (2, 4, 3), (2, 4, 2)]),
    ("sdpa weights, mask and bias",
     lambda q, k, v, b: scaled_dot_product_attention(q, k, v, mask=MASK, bias=b)[1],
     [(2, 4, 3), (2, 4, 3), (2, 4, 2), (4, 4)]),
    ("sdpa masked output", lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=MASK)[0],
     [(2, 4, 3), (2, 4, 3), (2, 4, 2)]),
    ("split_heads", lambda x: split_heads(x, 2), [(2, 3, 4)]),
    ("merge_heads", merge_heads, [(2, 2, 3, 2)]),
    ("layer_norm", lambda x, g, b: layer_norm(x, g, b), [(2, 3, 5), (5,), (5,)]),
    ("layer_norm no affine", lambda x: layer_norm(x, None, None), [(3, 4)]),
    ("apply_rope", lambda x: apply_rope(x, np.array([3, 0, 7])), [(2, 3, 4)]),
    ("flash_attention", lambda q, k, v: flash_attention(q, k, v, mask=MASK, block_size=3),
     [(2, 4, 3), (2, 4, 3), (2, 4, 2)]),
]


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_gradients_of_public_functions(rng, name, fn, shapes):
    inputs = [Tensor(randn(rng, *s), requires_grad=True) for s in shapes]
    assert gradcheck(lambda *ts: weighted(fn(*ts)), *inputs)


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_tensor_and_array_paths_agree(rng, name, fn, shapes):
    arrays = [randn(rng, *s) for s in shapes]
    expected = fn(*arrays)
    got = fn(*(Tensor(a) for a in arrays))
    assert isinstance(got, Tensor) and not isinstance(expected, Tensor)
    np.testing.assert_allclose(got.data, expected, rtol=1e-12, atol=1e-14)


def test_multi_head_attention_gradients_of_every_argument(rng):
    """Cross-attention with biases, a per-batch mask and an ALiBi bias: 11 inputs."""
    shapes = [(2, 3, 4), (2, 4, 5), (2, 4, 5),  # query, key, value
              (4, 4), (5, 4), (5, 6), (6, 3),  # W_q, W_k, W_v, W_o
              (4,), (4,), (6,), (3,)]  # b_q, b_k, b_v, b_o
    mask = padding_mask([4, 2], 4)

    def f(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o):
        out, weights = multi_head_attention(
            query, key, value, W_q, W_k, W_v, W_o, 2, b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o,
            mask=mask, bias=alibi_bias(2, 3, 4))
        return weighted(out) + weighted(weights, seed=2)

    assert gradcheck(f, *(randn(rng, *s) for s in shapes))


@pytest.mark.parametrize("n_kv_heads", [2, 1])
@pytest.mark.parametrize("rope", [False, True])
def test_grouped_query_attention_gradients_of_every_argument(rng, n_kv_heads, rope):
    """4 query heads of width 2 sharing n_kv_heads key/value heads; RoPE on self-attention."""
    T_k = 3 if rope else 5
    shapes = [(2, 3, 4), (2, T_k, 5), (2, T_k, 5),  # query, key, value
              (4, 8), (5, 2 * n_kv_heads), (5, 3 * n_kv_heads), (12, 3),  # W_q, W_k, W_v, W_o
              (8,), (2 * n_kv_heads,), (3 * n_kv_heads,), (3,)]  # b_q, b_k, b_v, b_o
    mask = causal_mask(3, T_k)

    def f(query, key, value, W_q, W_k, W_v, W_o, b_q, b_k, b_v, b_o):
        out, weights = multi_head_attention(
            query, key, value, W_q, W_k, W_v, W_o, 4, b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o,
            n_kv_heads=n_kv_heads, mask=mask, bias=alibi_bias(4, 3, T_k),
            positions=np.arange(3) if rope else None, rope_base=100.0)
        return weighted(out) + weighted(weights, seed=2)

    assert gradcheck(f, *(randn(rng, *s) for s in shapes))


def test_masked_keys_get_zero_gradient_and_no_nan(rng):
    q, k, v = (Tensor(randn(rng, 2, 4, 3), requires_grad=True) for _ in range(3))
    with np.errstate(all="raise"):
        out, w = scaled_dot_product_attention(q, k, v, mask=MASK)
        (weighted(out) + weighted(w)).backward()
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad))
    # Key 3 of batch 1 is padding: nothing flows back to it.
    assert np.all(k.grad[1, 3] == 0.0) and np.all(v.grad[1, 3] == 0.0)


def test_gradcheck_would_catch_a_wrong_softmax_gradient(rng, monkeypatch):
    """The checks above can fail: break the fused softmax backward and see one fail."""
    x = Tensor(randn(rng, 2, 3), requires_grad=True)
    original = Tensor.softmax

    def broken(self, axis=-1):
        out = original(self, axis)
        y = out.data
        out._backward = lambda g: (y * g,)  # forgets the - sum(g * y) term
        return out

    monkeypatch.setattr(Tensor, "softmax", broken)
    with pytest.raises(AssertionError, match="gradient mismatch"):
        gradcheck(lambda t: weighted(softmax(t)), x)


# ------------------------------------------------------------ docstring examples

# The core's modules. Their examples run once, collected by --doctest-modules (test_doctests.py).
MODULES = [f"attnbook.{m}" for m in (
    "tensor", "ops", "gradcheck", "softmax", "masks", "scores", "attention", "norm",
    "positions", "flash")]


def test_every_public_function_has_an_example():
    checked = 0
    for name in attnbook.__all__:
        obj = getattr(attnbook, name)
        if not callable(obj) or getattr(obj, "__module__", "") not in MODULES:
            continue
        checked += 1
        doc = obj.__doc__ or ""
        assert ">>>" in doc, f"{name} has no doctested example"
        # Its See Also and the chapter it names: tests/test_api.py (which reads book/).
    assert checked >= 20, f"only {checked} public functions matched MODULES: is the filter right?"
