"""The Tensor autograd: values match NumPy, gradients match finite differences."""

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra import numpy as hnp

from attnbook import Tensor, concatenate, gradcheck, no_grad, stack, where
from attnbook.ops import layer_norm as layer_norm_node
from attnbook.tensor import is_grad_enabled, node, requires_grad


def leaf(rng, *shape, positive=False):
    data = rng.standard_normal(shape)
    if positive:
        data = np.abs(data) + 0.5
    return Tensor(data, requires_grad=True)


# ----------------------------------------------------------------- construction


def test_constructor_stores_a_float64_copy():
    source = np.arange(3)
    t = Tensor(source)
    assert t.dtype == np.float64 and t.data.dtype == np.float64
    f = np.ones(2)
    t2 = Tensor(f)
    t2.data += 1
    assert f.tolist() == [1.0, 1.0], "the caller's array must not be aliased"
    assert Tensor(np.float32(2.5)).dtype == np.float64


def test_attributes_and_helpers():
    t = Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.size == 24 and len(t) == 2
    assert t.T.shape == (2, 4, 3)
    np.testing.assert_array_equal(t.T.data, np.swapaxes(t.data, -1, -2))
    assert Tensor([1.0, 2.0]).T.shape == (2,)
    assert t.numpy() is t.data
    assert Tensor([[3.5]]).item() == 3.5
    d = t.detach()
    assert not d.requires_grad and d.data is t.data
    assert "requires_grad=True" in repr(t) and repr(Tensor([1.0])) == "Tensor([1.])"
    assert t.grad is None
    (t * 2.0).sum().backward()
    assert t.grad is not None
    t.zero_grad()
    assert t.grad is None
    assert np.asarray(t) is t.data


# --------------------------------------------------------------------- backward


def test_backward_scalar_default_and_errors():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"one-element tensor.*shape \(2,\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match=r"grad of shape \(2,\), got \(3,\)"):
        (x * 2.0).backward(np.ones(3))
    with pytest.raises(ValueError, match="does not require grad"):
        Tensor([1.0]).sum().backward()
    (x * 2.0).backward(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, -2.0])


def test_leaf_gradients_accumulate_but_intermediates_do_not():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * x  # shared intermediate
    h.sum().backward()
    (h * 3.0).sum().backward()
    # d/dx [sum x^2] + d/dx [3 sum x^2] = 2x + 6x
    np.testing.assert_allclose(x.grad, 8 * x.data)
    np.testing.assert_allclose(h.grad, [3.0, 3.0])


def test_leaf_gradients_are_private_writable_arrays():
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert a.grad is not b.grad
    a.grad *= 0.5  # an optimiser clipping in place must not touch b
    np.testing.assert_array_equal(b.grad, np.ones(3))
    c = Tensor(np.ones((2, 2)), requires_grad=True)
    c.sum().backward()  # the sum's gradient is a read-only broadcast view
    c.grad += 1.0


def test_diamond_graph_counts_every_path():
    x = Tensor([3.0], requires_grad=True)
    y = x * x
    z = y + y * x  # x^2 + x^3
    z.backward()
    np.testing.assert_allclose(x.grad, 2 * 3.0 + 3 * 9.0)


def test_long_chain_needs_no_recursion():
    x = Tensor(np.array([0.5]), requires_grad=True)
    h = x
    n = 3 * sys.getrecursionlimit()
    for _ in range(n):
        h = h * 1.0 + 0.0
    h.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_only_parents_that_need_grad_get_one():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    x = Tensor(np.ones((4, 3)))
    (x @ w).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(w.grad, np.full((3, 2), 4.0))


# ---------------------------------------------------------------------- no_grad


def test_no_grad_records_nothing_and_restores_state():
    w = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        with no_grad():
            pass
        assert not is_grad_enabled()
        y = (w * 2.0 + w).exp().sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y._prev == ()
    with pytest.raises(RuntimeError):
        with no_grad():
            raise RuntimeError("boom")
    assert is_grad_enabled()

    @no_grad()
    def infer(t):
        return t * 2.0

    assert not infer(w).requires_grad and is_grad_enabled()


def test_np_array_copies_and_np_asarray_may_share():
    t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for copy in (np.array(t), np.array(t, copy=True), np.array(t, dtype=np.float32)):
        assert not np.shares_memory(copy, t.data)
        copy[0] = 99.0  # writing into the copy must leave the tensor (a model weight) unchanged
        np.testing.assert_array_equal(t.data, [1.0, 2.0, 3.0])
    assert np.asarray(t) is t.data  # no copy asked for: cheap, read-only use
    assert np.array(t, copy=False) is t.data
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="needs a copy"):
        np.array(t, dtype=np.float32, copy=False)


# ------------------------------------------------------------------------ node


def test_node_records_only_when_some_tensor_parent_needs_a_gradient():
    def refuse(g):
        raise AssertionError("backward must not be recorded here")

    w, c = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0, 4.0])
    for parents in ((c,), (c, np.ones(2)), (c, None, 2.0)):
        out = node(np.ones(2), parents, refuse, "op")
        assert not out.requires_grad and out._prev == () and out._backward is None
    with no_grad():
        out = node(np.ones(2), (w,), refuse, "op")
    assert not out.requires_grad and out._prev == ()
    out = node(np.ones(2), (c, w), lambda g: (None, g), "op")
    assert out.requires_grad and out._prev == (c, w) and out._op == "op"


def test_node_gives_gradients_to_tensor_parents_only():
    w, c = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0, 4.0])
    seen = []

    def backward(g):
        seen.append(g.copy())
        return 10 * g, "an array gets no gradient", None, 3 * g

    out = node(np.ones(2), (w, np.ones(2), None, c), backward, "mixed")
    assert out._prev == (w, c)
    (out * Tensor([1.0, -1.0])).sum().backward()
    np.testing.assert_array_equal(w.grad, [10.0, -10.0])
    assert c.grad is None  # it needs none, although backward returned one
    np.testing.assert_array_equal(seen[0], [1.0, -1.0])


def test_requires_grad():
    assert requires_grad(Tensor([1.0], requires_grad=True))
    assert not requires_grad(Tensor([1.0]))
    assert not requires_grad(np.ones(1)) and not requires_grad(None)


def test_every_operation_is_defined_with_node():
    """The rule "if gradients are off, return a constant" lives in node and nowhere else."""
    import inspect
    from pathlib import Path

    import attnbook
    from attnbook import tensor

    allowed = {"_make", "node", "_as_tensor", "detach", "is_grad_enabled", "__enter__", "__exit__"}
    functions = [f for name, f in vars(tensor).items() if inspect.isfunction(f) and f.__module__ == tensor.__name__]
    functions += [f for f in vars(Tensor).values() if inspect.isfunction(f)]
    for f in functions:
        if f.__name__ in allowed:
            continue
        source = inspect.getsource(f)
        assert "_make(" not in source and "_grad_enabled" not in source, f.__name__
    for path in Path(attnbook.__file__).parent.rglob("*.py"):
        if path.name != "tensor.py":
            text = path.read_text()
            assert "_make" not in text, f"{path.name} reaches into tensor._make: use tensor.node"
            assert "is_grad_enabled()" not in text, f"{path.name} guards a node by hand: use tensor.node"


# --------------------------------------------------------------------- operators


def test_reflected_operators_with_arrays_and_scalars(rng):
    a = leaf(rng, 2, 3)
    arr = rng.standard_normal((2, 3))
    for result, expected in [
        (arr + a, arr + a.data),
        (arr - a, arr - a.data),
        (arr * a, arr * a.data),
        (arr / a, arr / a.data),
        (2.0 - a, 2.0 - a.data),
        (np.float64(2.0) * a, 2.0 * a.data),
        (1.0 / a, 1.0 / a.data),
        (-a, -a.data),
        (a**2, a.data**2),
        (rng.standard_normal((4, 2)) @ a, None),
    ]:
        assert isinstance(result, Tensor)
        if expected is not None:
            np.testing.assert_allclose(result.data, expected)


def test_pow_rejects_tensor_exponent():
    with pytest.raises(TypeError):
        Tensor([2.0]) ** Tensor([2.0])


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (2, 1)), ((), (2, 2)), ((1, 3), (2, 1))],
)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_gradients_with_broadcasting(rng, shape_a, shape_b, op):
    a = leaf(rng, *shape_a)
    b = Tensor(rng.uniform(0.5, 2.0, shape_b) * rng.choice([-1, 1], shape_b), requires_grad=True)
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
    }[op]
    out = fn(a, b)
    np.testing.assert_allclose(out.data, fn(a.data, b.data))
    weights = rng.standard_normal(out.shape)
    assert gradcheck(lambda x, y: (fn(x, y) * weights).sum(), a, b)


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
def test_unbroadcast_property(shapes):
    """d/da sum(a * b) is b summed back to a's shape, whatever the broadcast."""
    shape_a, shape_b = shapes.input_shapes
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal(shape_a), requires_grad=True)
    b = Tensor(rng.standard_normal(shape_b), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    full = np.broadcast_to(b.data, shapes.result_shape)
    expected_a = full.sum(axis=tuple(range(full.ndim - len(shape_a))))
    ones = tuple(i for i, n in enumerate(shape_a) if n == 1)
    expected_a = expected_a.sum(axis=ones, keepdims=True)
    np.testing.assert_allclose(a.grad, expected_a.reshape(shape_a))


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((3,), (3,)),
        ((3,), (3, 2)),
        ((2, 3), (3,)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((2, 3), (5, 3, 4)),
        ((2, 1, 2, 3), (4, 3, 2)),
        ((3,), (2, 3, 4)),
        ((2, 4, 3), (3,)),
    ],
)
def test_matmul_values_and_gradients(rng, shape_a, shape_b):
    a, b = leaf(rng, *shape_a), leaf(rng, *shape_b)
    out = a @ b
    np.testing.assert_allclose(out.data, np.matmul(a.data, b.data))
    weights = rng.standard_normal(out.shape)
    assert gradcheck(lambda x, y: ((x @ y) * weights).sum(), a, b)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_and_mean(rng, axis, keepdims):
    x = leaf(rng, 2, 3, 4)
    np.testing.assert_allclose(x.sum(axis, keepdims).data, x.data.sum(axis, keepdims=keepdims))
    np.testing.assert_allclose(x.mean(axis, keepdims).data, x.data.mean(axis, keepdims=keepdims))
    w = rng.standard_normal(x.data.sum(axis, keepdims=keepdims).shape)
    assert gradcheck(lambda t: (t.sum(axis, keepdims) * w).sum(), x)
    assert gradcheck(lambda t: (t.mean(axis, keepdims) * w).sum(), x)


@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_max_sends_gradient_to_argmax(rng, axis, keepdims):
    x = leaf(rng, 3, 4)
    out = x.max(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, x.data.max(axis=axis, keepdims=keepdims))
    out.sum().backward()
    expected = np.zeros_like(x.data)
    if axis is None:
        expected.reshape(-1)[np.argmax(x.data)] = 1.0
    else:
        np.put_along_axis(expected, np.expand_dims(np.argmax(x.data, axis), axis), 1.0, axis)
    np.testing.assert_array_equal(x.grad, expected)
    w = rng.standard_normal(out.shape)
    assert gradcheck(lambda t: (t.max(axis=axis, keepdims=keepdims) * w).sum(), x)
    with pytest.raises(ValueError, match="one integer axis"):
        x.max(axis=(0, 1))


def test_reshape_transpose_swapaxes(rng):
    x = leaf(rng, 2, 3, 4)
    np.testing.assert_array_equal(x.reshape(6, 4).data, x.data.reshape(6, 4))
    np.testing.assert_array_equal(x.reshape((4, -1)).data, x.data.reshape(4, -1))
    np.testing.assert_array_equal(x.transpose().data, x.data.transpose())
    np.testing.assert_array_equal(x.transpose(1, 2, 0).data, x.data.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.transpose((2, 0, 1)).data, x.data.transpose(2, 0, 1))
    np.testing.assert_array_equal(x.swapaxes(0, 2).data, x.data.swapaxes(0, 2))
    w = rng.standard_normal((4, 2, 3))
    assert gradcheck(lambda t: (t.reshape(4, 2, 3) * w).sum(), x)
    assert gradcheck(lambda t: (t.transpose(2, 0, 1) * w).sum(), x)
    assert gradcheck(lambda t: (t.swapaxes(0, 2).swapaxes(1, 2) * w).sum(), x)
    w_t = rng.standard_normal((2, 4, 3))
    assert gradcheck(lambda t: (t.T * w_t).sum(), x)


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), 1),
        (Ellipsis, slice(0, 3, 2)),
        (0, None, slice(1, None)),
        np.array([0, 2, 0, 0]),  # repeats must accumulate, as in an embedding
        (np.array([[1, 1], [0, 2]]), slice(None)),
        (slice(None), [3, 3, 1]),
        np.array([True, False, True]),
    ],
)
def test_getitem_values_and_gradients(rng, index):
    x = leaf(rng, 3, 4)
    out = x[index]
    np.testing.assert_array_equal(out.data, x.data[index])
    w = rng.standard_normal(out.shape)
    assert gradcheck(lambda t: (t[index] * w).sum(), x)


def test_embedding_lookup_accumulates_repeats():
    table = Tensor(np.zeros((4, 2)), requires_grad=True)
    ids = np.array([[1, 1], [3, 1]])
    table[ids].sum().backward()
    np.testing.assert_array_equal(table.grad, [[0, 0], [3, 3], [0, 0], [1, 1]])
    t2 = Tensor(np.zeros((4, 2)), requires_grad=True)
    t2[Tensor([2.0, 2.0])].sum().backward()
    np.testing.assert_array_equal(t2.grad[2], [2.0, 2.0])


@pytest.mark.parametrize(
    "name, fn, positive",
    [
        ("exp", np.exp, False),
        ("log", np.log, True),
        ("tanh", np.tanh, False),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), False),
        ("relu", lambda x: np.maximum(x, 0), False),
        ("sqrt", np.sqrt, True),
        ("abs", np.abs, False),
    ],
)
def test_elementwise_values_and_gradients(rng, name, fn, positive):
    x = leaf(rng, 3, 4, positive=positive)
    if name in ("relu", "abs"):  # keep finite differences away from the kink at 0
        x.data[np.abs(x.data) < 1e-3] = 0.5
    np.testing.assert_allclose(getattr(x, name)().data, fn(x.data), rtol=1e-12)
    w = rng.standard_normal((3, 4))
    assert gradcheck(lambda t: (getattr(t, name)() * w).sum(), x)


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        y = Tensor([-1000.0, 0.0, 1000.0]).sigmoid().data
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_pow_gradient(rng):
    x = leaf(rng, 3, positive=True)
    for p in (2, 3.0, -1.0, 0.5):
        assert gradcheck(lambda t: (t**p).sum(), x)


# ---------------------------------------------------------------------- fused ops


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax_values_and_gradients(rng, axis):
    x = leaf(rng, 3, 4, 2)
    e = np.exp(x.data - x.data.max(axis, keepdims=True))
    expected = e / e.sum(axis, keepdims=True)
    np.testing.assert_allclose(x.softmax(axis).data, expected)
    np.testing.assert_allclose(x.log_softmax(axis).data, np.log(expected))
    w = rng.standard_normal((3, 4, 2))
    assert gradcheck(lambda t: (t.softmax(axis) * w).sum(), x)
    assert gradcheck(lambda t: (t.log_softmax(axis) * w).sum(), x)


def test_softmax_is_stable_for_huge_inputs():
    x = Tensor([[1000.0, 1000.0], [-1000.0, 0.0]])
    np.testing.assert_allclose(x.softmax().data, [[0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_allclose(x.log_softmax().data[0], np.log([0.5, 0.5]))


def test_masked_softmax_gives_exact_zeros_and_zero_gradient(rng):
    x = leaf(rng, 2, 5)
    mask = np.array([[True, False, True, True, False], [False, False, True, False, False]])
    with np.errstate(all="raise"):
        p = where(mask, x, -np.inf).softmax(-1)
        assert np.all(p.data[~mask] == 0.0)
        np.testing.assert_allclose(p.data.sum(-1), 1.0)
        w = rng.standard_normal((2, 5))
        (p * w).sum().backward()
    assert np.all(np.isfinite(x.grad)) and np.all(x.grad[~mask] == 0.0)
    assert gradcheck(lambda t: (where(mask, t, -np.inf).softmax(-1) * w).sum(), x)


def test_layer_norm_node_values_and_gradients(rng):
    x, gamma, beta = leaf(rng, 2, 3, 5), leaf(rng, 5), leaf(rng, 5)
    y = layer_norm_node(x, gamma, beta, eps=1e-5)
    mu = x.data.mean(-1, keepdims=True)
    var = x.data.var(-1, keepdims=True)
    np.testing.assert_allclose(y.data, (x.data - mu) / np.sqrt(var + 1e-5) * gamma.data + beta.data)
    w = rng.standard_normal((2, 3, 5))
    assert gradcheck(lambda a, g, b: (layer_norm_node(a, g, b) * w).sum(), x, gamma, beta)
    assert gradcheck(lambda a: (layer_norm_node(a) * w).sum(), x)


# ------------------------------------------------------------- module functions


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(rng, axis):
    a, b, c = leaf(rng, 2, 3), leaf(rng, 2, 3), rng.standard_normal((2, 3))
    cat = concatenate([a, b, c], axis=axis)
    np.testing.assert_array_equal(cat.data, np.concatenate([a.data, b.data, c], axis=axis))
    st_ = stack([a, b, c], axis=axis)
    np.testing.assert_array_equal(st_.data, np.stack([a.data, b.data, c], axis=axis))
    w1, w2 = rng.standard_normal(cat.shape), rng.standard_normal(st_.shape)
    assert gradcheck(lambda x, y: (concatenate([x, y, c], axis) * w1).sum(), a, b)
    assert gradcheck(lambda x, y: (stack([x, y, c], axis) * w2).sum(), a, b)
    const = leaf(rng, 2, 3).detach()
    w3 = rng.standard_normal(concatenate([a, const], axis).shape)
    assert gradcheck(lambda x: (concatenate([x, const], axis) * w3).sum(), a)


def test_where_with_broadcasting(rng):
    cond = rng.random((3, 4)) > 0.5
    a, b = leaf(rng, 3, 1), leaf(rng, 4)
    out = where(cond, a, b)
    np.testing.assert_array_equal(out.data, np.where(cond, a.data, b.data))
    w = rng.standard_normal((3, 4))
    assert gradcheck(lambda x, y: (where(cond, x, y) * w).sum(), a, b)
    assert gradcheck(lambda x: (where(cond, 2.0, x) * w).sum(), b)


def test_node_wraps_numpy_scalars():
    t = node(np.float64(2.0), (), None, "x")
    assert isinstance(t.data, np.ndarray) and t.shape == () and not t.requires_grad
    s = node(np.float64(2.0), (Tensor(1.0, requires_grad=True),), lambda g: (g,), "y")
    assert isinstance(s.data, np.ndarray) and s.data.dtype == np.float64 and s.requires_grad


# ---------------------------------------------------------------------- gradcheck


def test_gradcheck_catches_a_wrong_gradient():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)

    def wrong_square(t):
        return node(t.data**2, (t,), lambda g: (g * t.data,), "bad")  # missing factor 2

    with pytest.raises(AssertionError, match=r"input 0 .*index \(2,\)"):
        gradcheck(lambda t: wrong_square(t).sum(), x)
    np.testing.assert_array_equal(x.data, [1.0, 2.0, 3.0])  # restored
    assert x.grad is None


def test_gradcheck_input_errors():
    with pytest.raises(ValueError, match="one-element Tensor"):
        gradcheck(lambda t: t * 2.0, np.ones(2))
    with pytest.raises(ValueError, match="no input with requires_grad"):
        gradcheck(lambda t: t.sum(), Tensor(np.ones(2)))
    assert gradcheck(lambda t: (t * t).sum(), np.array([[1.0, -2.0]]))
