"""The fused operations' kernels: each written once, shared by the ndarray and Tensor paths.

The backward kernels are checked on plain arrays against central differences of their
forward kernels (independently of the autograd), every node built on them is checked
through ``attnbook.gradcheck``, and the two paths must agree exactly: they run the same code.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnbook import Tensor, gradcheck, layer_norm, log_softmax, no_grad, softmax
from attnbook import _kernels as K
from attnbook.losses import cross_entropy

finite = st.floats(-30, 30, allow_nan=False)
arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), elements=finite)


def numeric_vjp(f, x, g, eps=1e-6):
    """sum(g * df/dx) by central differences: the gradient of <g, f(x)> with respect to x."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = ((f(up) * g).sum() - (f(down) * g).sum()) / (2 * eps)
    return grad


# Each case: the forward kernel as a function of x alone, and the backward kernel's answer.
def layer_norm_vjp(x, g):
    xhat, rstd = K.layer_norm(x, 1e-5)
    return K.layer_norm_backward(g, xhat, rstd)


BACKWARDS = {
    "sigmoid": (K.sigmoid, lambda x, g: K.sigmoid_backward(g, K.sigmoid(x))),
    "tanh": (np.tanh, lambda x, g: K.tanh_backward(g, np.tanh(x))),
    "softmax": (K.softmax, lambda x, g: K.softmax_backward(g, K.softmax(x))),
    "softmax axis 0": (lambda x: K.softmax(x, 0), lambda x, g: K.softmax_backward(g, K.softmax(x, 0), 0)),
    "log_softmax": (K.log_softmax, lambda x, g: K.log_softmax_backward(g, K.log_softmax(x))),
    "log_softmax axis 0": (lambda x: K.log_softmax(x, 0),
                           lambda x, g: K.log_softmax_backward(g, K.log_softmax(x, 0), 0)),
    "layer_norm": (lambda x: K.layer_norm(x, 1e-5)[0], layer_norm_vjp),
}


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_kernels_match_finite_differences(rng, name):
    forward, backward = BACKWARDS[name]
    x, g = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(backward(x, g), numeric_vjp(forward, x, g), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", BACKWARDS)
@given(x=arrays, seed=st.integers(0, 2**32 - 1))
def test_kernels_never_write_into_their_arguments(name, x, seed):
    forward, backward = BACKWARDS[name]
    g = np.random.default_rng(seed).standard_normal(x.shape)
    x0, g0 = x.copy(), g.copy()
    forward(x)
    backward(x, g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


@given(x=arrays, seed=st.integers(0, 2**32 - 1))
def test_softmax_gradients_sum_to_zero_along_the_axis(x, seed):
    """Shifting every score of a row changes nothing, so no gradient flows along (1, ..., 1)."""
    g = np.random.default_rng(seed).standard_normal(x.shape)
    for dx in (K.softmax_backward(g, K.softmax(x)), K.log_softmax_backward(g, K.log_softmax(x))):
        scale = np.abs(g).sum(axis=-1) + 1.0
        assert np.all(np.abs(dx.sum(axis=-1)) <= 1e-12 * scale)


@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 6)), elements=finite),
       seed=st.integers(0, 2**32 - 1))
def test_layer_norm_gradient_has_zero_mean(x, seed):
    """Adding a constant to a token changes nothing after normalisation."""
    g = np.random.default_rng(seed).standard_normal(x.shape)
    xhat, rstd = K.layer_norm(x, 1e-5)
    dx = K.layer_norm_backward(g, xhat, rstd)
    assert np.all(np.abs(dx.sum(axis=-1)) <= 1e-9 * (1 + np.abs(g).sum(axis=-1) * rstd[..., 0]))


@given(x=arrays)
def test_sigmoid_kernel_is_the_logistic_function_without_overflow(x):
    with np.errstate(over="ignore"):
        reference = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(K.sigmoid(x), reference, rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(K.sigmoid(x * 1e3)))


# -------------------------------------------------------- the two paths run the same code


@given(x=arrays, axis=st.sampled_from([0, -1]))
def test_tensor_and_ndarray_paths_agree_exactly(x, axis):
    t = Tensor(x, requires_grad=True)
    np.testing.assert_array_equal(softmax(t, axis=axis).data, softmax(x, axis=axis))
    np.testing.assert_array_equal(log_softmax(t, axis=axis).data, log_softmax(x, axis=axis))
    np.testing.assert_array_equal(t.sigmoid().data, K.sigmoid(x))
    np.testing.assert_array_equal(t.tanh().data, np.tanh(x))
    d = x.shape[-1]
    gamma, beta = np.linspace(0.5, 2.0, d), np.linspace(-1.0, 1.0, d)
    for args in ((gamma, beta), (None, None), (gamma, None), (None, beta)):
        expected = layer_norm(x, *args)
        np.testing.assert_array_equal(layer_norm(t, *args).data, expected)
        with no_grad():
            np.testing.assert_array_equal(layer_norm(t, *args).data, expected)


def test_layer_norm_node_output_does_not_share_memory_with_what_backward_reads(rng):
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = layer_norm(x, None, None)
    g = rng.standard_normal((3, 4))
    expected_grad = Tensor(x.data, requires_grad=True)
    (layer_norm(expected_grad, None, None) * g).sum().backward()
    y.data[...] = 123.0  # a caller scribbling on the result must not change the gradient
    (y * g).sum().backward()
    np.testing.assert_allclose(x.grad, expected_grad.grad, rtol=1e-12)


# ------------------------------------------------------ every fused node, through gradcheck


def weighted(out, rng):
    return (out * rng.standard_normal(out.shape)).sum()


@pytest.mark.parametrize("axis", [0, -1])
def test_fused_softmax_nodes_gradcheck(rng, axis):
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4))
    assert gradcheck(lambda t: (t.softmax(axis) * w).sum(), x)
    assert gradcheck(lambda t: (t.log_softmax(axis) * w).sum(), x)


def test_fused_elementwise_nodes_gradcheck(rng):
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4))
    assert gradcheck(lambda t: (t.sigmoid() * w).sum(), x)
    assert gradcheck(lambda t: (t.tanh() * w).sum(), x)


@pytest.mark.parametrize("which", ["x", "gamma", "beta", "all"])
def test_layer_norm_node_gradcheck_with_mixed_tensor_and_array_arguments(rng, which):
    """Only the arguments that are Tensors are checked; the others are plain arrays."""
    x, gamma, beta = rng.standard_normal((2, 3, 5)), 1 + rng.standard_normal(5), rng.standard_normal(5)
    w = rng.standard_normal((2, 3, 5))
    args = {"x": x, "gamma": gamma, "beta": beta}
    checked = list(args) if which == "all" else [which]

    def f(*tensors):
        values = dict(args, **dict(zip(checked, tensors)))
        return (layer_norm(values["x"], values["gamma"], values["beta"]) * w).sum()

    assert gradcheck(f, *(args[name] for name in checked))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_node_gradcheck_with_a_mask(rng, eps):
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[True, True, False], [True, False, True]])
    assert gradcheck(lambda t: cross_entropy(t, targets, mask=mask, label_smoothing=eps), logits)
