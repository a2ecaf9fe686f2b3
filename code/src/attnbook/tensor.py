"""A micrograd for whole arrays: a float64 ``Tensor`` with reverse-mode autograd.

Each operation computes its result with NumPy and, only when some input needs a
gradient, attaches a small closure ``backward(g) -> grads`` that applies the chain rule
for that one operation (one gradient per parent, ``None`` where a parent needs none).
``Tensor.backward`` visits the graph once in reverse topological order.

Every operation, here and elsewhere in attnbook, is defined the same way: with ``node``,
which records the operation only when gradients are on and some input needs one.
Softmax and log-softmax are *fused*: one node whose backward pass is derived by hand
(Chapter 5), written once in ``attnbook._kernels`` and shared with the ndarray path.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _kernels as _k

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "node", "requires_grad", "concatenate", "stack", "where"]

_grad_enabled = True


def is_grad_enabled():
    """Return whether Tensor operations currently record a graph.

    Returns
    -------
    bool
        False inside a ``with no_grad():`` block, True otherwise.

    Examples
    --------
    >>> with no_grad():
    ...     print(is_grad_enabled())
    False

    See Also
    --------
    no_grad : switches recording off.
    """
    return _grad_enabled


class no_grad:
    """Context manager (and decorator) under which Tensor operations record no graph.

    Results computed inside are constants (``requires_grad=False``), which makes
    inference and step-by-step decoding cheaper. Blocks nest; the previous state is
    restored on exit.

    Examples
    --------
    >>> w = Tensor([1.0, 2.0], requires_grad=True)
    >>> with no_grad():
    ...     y = (w * 3.0).sum()
    >>> y.requires_grad
    False

    See Also
    --------
    Tensor : the array that records the graph.
    Chapter 1, *The bottleneck problem*, evaluates its models with it.
    """

    __slots__ = ("_previous",)

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)

        return wrapper


def _make(data, parents, backward, op):
    """Build a result Tensor without the public constructor's conversion and copy."""
    t = object.__new__(Tensor)
    if type(data) is not np.ndarray:
        data = np.asarray(data, dtype=np.float64)
    t.data = data
    t.grad = None
    if backward is None:
        t.requires_grad = False
        t._prev = ()
        t._backward = None
    else:
        t.requires_grad = True
        t._prev = parents
        t._backward = backward
    t._op = op
    return t


def node(data, parents, backward, op="fused"):
    """Wrap ``data`` as the result of an operation whose backward pass is written by hand.

    This is the one way to add an operation to the autograd, used by every operation in
    attnbook (``+``, ``@``, softmax, layer norm, a whole GRU layer, cross-entropy, ...).
    The forward pass is ordinary NumPy on the parents' values; ``backward`` applies the
    chain rule for this one operation.

    Parameters
    ----------
    data : ndarray or scalar
        The forward result (stored as float64 if it is not already an ndarray).
    parents : sequence
        The operation's inputs, in a fixed order: Tensors, and anything else (ndarrays,
        scalars, None) that takes part but receives no gradient.
    backward : callable
        ``backward(g)`` receives the gradient of the loss with respect to ``data`` (an
        ndarray of ``data``'s shape) and returns one gradient per parent, in the order of
        ``parents``, each of that parent's shape, or None where none is needed. It is
        called only if some Tensor parent requires a gradient; test ``requires_grad(x)``
        inside it to skip gradients nobody needs.
    op : str
        A name for the node (shown by debugging tools).

    Returns
    -------
    Tensor
        A constant (``requires_grad=False``) if recording is off (``no_grad``) or no
        Tensor parent requires a gradient; otherwise a node of the graph.

    Examples
    --------
    The cube, with its derivative ``3 x^2``:

    >>> def cube(x):
    ...     return node(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,), "cube")
    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> cube(x).sum().backward()
    >>> x.grad
    array([ 3., 12.])

    See Also
    --------
    gradcheck : check a hand-written backward pass against finite differences.
    Chapter 3, *Context vectors*, writes the context vector's backward pass with it.
    """
    # The one place that decides whether an operation is recorded.
    if not _grad_enabled:
        return _make(data, (), None, op)
    needed = mixed = False
    for p in parents:
        if isinstance(p, Tensor):
            needed = needed or p.requires_grad
        else:
            mixed = True  # an ndarray, scalar or None takes part: it gets no gradient
    if not needed:
        return _make(data, (), None, op)
    if not mixed:
        return _make(data, tuple(parents), backward, op)
    keep = [isinstance(p, Tensor) for p in parents]

    def tensor_backward(g):
        return [d for d, k in zip(backward(g), keep) if k]

    return _make(data, tuple(p for p in parents if isinstance(p, Tensor)), tensor_backward, op)


def requires_grad(x):
    """True if ``x`` is a Tensor that needs a gradient (use it inside a ``backward``).

    Examples
    --------
    >>> requires_grad(Tensor([1.0], requires_grad=True)), requires_grad(np.ones(2))
    (True, False)

    See Also
    --------
    node : where ``backward`` functions use it.
    """
    return isinstance(x, Tensor) and x.requires_grad


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    return _make(np.asarray(x, dtype=np.float64), (), None, "const")


def _unbroadcast(g, shape):
    """Sum ``g`` down to ``shape``: the adjoint of NumPy broadcasting."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(int(a) % ndim if ndim else 0 for a in axis)


def _needs_advanced_accumulate(index):
    """True if ``index`` holds integer arrays, whose repeated entries must accumulate."""
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if isinstance(item, (list, np.ndarray)):
            if np.asarray(item).dtype != np.bool_:
                return True
    return False


class Tensor:
    """A float64 array that records the operations applied to it, for autograd.

    Parameters
    ----------
    data : array_like
        The values; always stored as a new float64 ndarray (integers are converted, and
        the caller's array is copied so later in-place updates never alias it).
    requires_grad : bool, default False
        Whether ``backward`` should compute ``.grad`` for this tensor.

    Attributes
    ----------
    data : ndarray
        The values.
    grad : ndarray or None
        The gradient of the last ``backward`` root with respect to this tensor; None until
        a backward pass reaches it. Gradients of leaves accumulate over backward calls
        (call ``zero_grad`` between steps); gradients of intermediate results hold the
        latest pass only.
    requires_grad : bool
        Whether gradients flow to this tensor.

    Examples
    --------
    >>> x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([[2., 4.],
           [6., 8.]])

    See Also
    --------
    no_grad : record no graph.
    gradcheck : check these gradients against finite differences.
    Chapter 5, *Queries, keys, values: scaled dot-product attention*, checks its hand-derived
    gradients with it.
    """

    __slots__ = ("data", "grad", "requires_grad", "_prev", "_backward", "_op")
    # Make NumPy hand ``ndarray (op) Tensor`` to our reflected operators.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.array(data, dtype=np.float64)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._prev = ()
        self._backward = None
        self._op = "leaf"

    # ----------------------------------------------------------------- basics
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def T(self):
        """Swap the last two axes (a 0-d or 1-D tensor is returned unchanged)."""
        if self.data.ndim < 2:
            return self
        return self.swapaxes(-1, -2)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        suffix = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}{suffix})"

    def __array__(self, dtype=None, copy=None):
        # NumPy 2's protocol: np.array(t) and np.array(t, copy=True) ask for copy=True and
        # get a new array (writing to it must not edit the tensor); np.asarray(t) asks for
        # copy=None and may share .data. The result is detached from the graph either way.
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data
        if copy is False:
            raise ValueError(
                f"np.asarray(tensor, dtype={np.dtype(dtype)}, copy=False) needs a copy: the "
                f"tensor holds {self.data.dtype}; drop copy=False or the dtype."
            )
        return self.data.astype(dtype)

    def item(self):
        """Return the value of a one-element tensor as a Python float."""
        return self.data.item()

    def numpy(self):
        """Return ``.data`` (the same ndarray, not a copy)."""
        return self.data

    def detach(self):
        """Return a constant Tensor sharing ``.data``, cut from the graph."""
        return _make(self.data, (), None, "detach")

    def zero_grad(self):
        """Forget the accumulated gradient (``.grad = None``)."""
        self.grad = None

    # --------------------------------------------------------------- backward
    def _topological_order(self):
        # Iterative post-order DFS: recursion would overflow on long RNN graphs.
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._prev:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
        return order

    def _accumulate(self, g):
        if self._backward is None:
            # A leaf owns a fresh writable copy, so optimisers may update it in place.
            if self.grad is None:
                self.grad = np.array(g, dtype=np.float64)
            else:
                self.grad += g
        else:
            self.grad = g if self.grad is None else self.grad + g

    def backward(self, grad=None):
        """Compute the gradient of this tensor with respect to every tensor it depends on.

        Parameters
        ----------
        grad : array_like of shape ``self.shape``, optional
            The gradient flowing into this tensor; defaults to 1 for a one-element tensor.

        Raises
        ------
        ValueError
            If the tensor does not require grad, if ``grad`` is omitted for a tensor with
            more than one element, or if ``grad`` has the wrong shape.

        Examples
        --------
        >>> a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> (a * 2.0).sum().backward()
        >>> a.grad
        array([2., 2., 2.])
        """
        if not self.requires_grad:
            raise ValueError(
                "backward() called on a Tensor that does not require grad: create the "
                "inputs with Tensor(..., requires_grad=True) and compute outside no_grad()."
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a one-element tensor, but this one "
                    f"has shape {self.shape}; reduce it first (e.g. .sum()) or pass "
                    f"grad=... of shape {self.shape}."
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=np.float64)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward(grad) needs grad of shape {self.shape}, got {grad.shape}."
                )
        order = self._topological_order()
        for node in order:
            if node._backward is not None:
                node.grad = None
        self._accumulate(grad)
        for node in reversed(order):
            if node._backward is None or node.grad is None:
                continue
            grads = node._backward(node.grad)
            for parent, g in zip(node._prev, grads):
                if g is not None and parent.requires_grad:
                    parent._accumulate(g)

    # ------------------------------------------------------------- arithmetic
    def __add__(self, other):
        other = _as_tensor(other)
        a_shape, b_shape = self.shape, other.shape

        def backward(g):
            return _unbroadcast(g, a_shape), _unbroadcast(g, b_shape)

        return node(self.data + other.data, (self, other), backward, "add")

    def __radd__(self, other):
        return _as_tensor(other).__add__(self)

    def __sub__(self, other):
        other = _as_tensor(other)
        a_shape, b_shape = self.shape, other.shape

        def backward(g):
            return _unbroadcast(g, a_shape), _unbroadcast(-g, b_shape)

        return node(self.data - other.data, (self, other), backward, "sub")

    def __rsub__(self, other):
        return _as_tensor(other).__sub__(self)

    def __mul__(self, other):
        a, b = self, _as_tensor(other)

        def backward(g):
            ga = _unbroadcast(g * b.data, a.shape) if a.requires_grad else None
            gb = _unbroadcast(g * a.data, b.shape) if b.requires_grad else None
            return ga, gb

        return node(a.data * b.data, (a, b), backward, "mul")

    def __rmul__(self, other):
        return _as_tensor(other).__mul__(self)

    def __truediv__(self, other):
        a, b = self, _as_tensor(other)
        out = a.data / b.data

        def backward(g):
            ga = _unbroadcast(g / b.data, a.shape) if a.requires_grad else None
            # d(a/b)/db = -a/b^2 = -out/b
            gb = _unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None
            return ga, gb

        return node(out, (a, b), backward, "div")

    def __rtruediv__(self, other):
        return _as_tensor(other).__truediv__(self)

    def __neg__(self):
        return node(-self.data, (self,), lambda g: (-g,), "neg")

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            return NotImplemented
        p = float(exponent)
        x = self.data
        return node(x**p, (self,), lambda g: (g * p * x ** (p - 1.0),), "pow")

    def __matmul__(self, other):
        a, b = self, _as_tensor(other)

        def backward(g):
            # Treat 1-D operands as a row (left) or a column (right), as np.matmul does.
            A = a.data[None, :] if a.ndim == 1 else a.data
            B = b.data[:, None] if b.ndim == 1 else b.data
            if b.ndim == 1:
                g = g[..., None]
            if a.ndim == 1:
                g = g[..., None, :]
            ga = gb = None
            if a.requires_grad:
                ga = _unbroadcast(np.matmul(g, np.swapaxes(B, -1, -2)), A.shape)
                ga = ga.reshape(a.shape)
            if b.requires_grad:
                if B.ndim == 2 and A.ndim > 2:
                    # x @ W with a shared weight: one big GEMM instead of a batched one.
                    k, m = B.shape
                    gb = A.reshape(-1, k).T @ g.reshape(-1, m)
                else:
                    gb = _unbroadcast(np.matmul(np.swapaxes(A, -1, -2), g), B.shape)
                gb = gb.reshape(b.shape)
            return ga, gb

        return node(np.matmul(a.data, b.data), (a, b), backward, "matmul")

    def __rmatmul__(self, other):
        return _as_tensor(other).__matmul__(self)

    # ------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None: all axes), like ``ndarray.sum``."""
        shape = self.shape
        axes = _normalize_axes(axis, self.ndim)

        def backward(g):
            if not keepdims:
                g = np.expand_dims(g, axes)
            return (np.broadcast_to(g, shape),)

        return node(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (None: all axes), like ``ndarray.mean``."""
        axes = _normalize_axes(axis, self.ndim)
        n = 1
        for a in axes:
            n *= self.shape[a]
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / n)

    def max(self, axis=None, keepdims=False):
        """Maximum over one ``axis`` (or all); the gradient goes to the (first) argmax."""
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Tensor.max takes one integer axis or None, got axis={axis!r}.")
        x = self.data
        if axis is None:
            flat_index = np.argmax(x)
            out = x.reshape(-1)[flat_index]
            if keepdims:
                out = np.reshape(out, (1,) * x.ndim)
        else:
            index = np.expand_dims(np.argmax(x, axis=axis), axis)
            out = np.take_along_axis(x, index, axis=axis)
            if not keepdims:
                out = np.squeeze(out, axis=axis)

        def backward(g):
            grad = np.zeros_like(x)
            if axis is None:
                grad.reshape(-1)[flat_index] = np.reshape(g, ())
            else:
                gk = g if keepdims else np.expand_dims(g, axis)
                np.put_along_axis(grad, index, gk, axis=axis)
            return (grad,)

        return node(out, (self,), backward, "max")

    # ------------------------------------------------------------- reshaping
    def reshape(self, *shape):
        """Return the same values with a new shape (``-1`` allowed), like ``ndarray.reshape``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        return node(self.data.reshape(shape), (self,), lambda g: (g.reshape(old),), "reshape")

    def transpose(self, *axes):
        """Permute axes (no arguments: reverse them), like ``ndarray.transpose``."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim - 1, -1, -1))
        inverse = tuple(np.argsort(axes))
        return node(self.data.transpose(axes), (self,), lambda g: (g.transpose(inverse),), "transpose")

    def swapaxes(self, axis1, axis2):
        """Swap two axes, like ``ndarray.swapaxes``."""
        return node(self.data.swapaxes(axis1, axis2), (self,),
                    lambda g: (g.swapaxes(axis1, axis2),), "swapaxes")

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data.astype(np.intp)
        elif isinstance(index, tuple):
            index = tuple(i.data.astype(np.intp) if isinstance(i, Tensor) else i for i in index)
        shape = self.shape

        def backward(g):
            grad = np.zeros(shape)
            if _needs_advanced_accumulate(index):
                np.add.at(grad, index, g)  # repeated indices (an embedding lookup) add up
            else:
                grad[index] = g
            return (grad,)

        return node(self.data[index], (self,), backward, "getitem")

    # ------------------------------------------------------------ elementwise
    def exp(self):
        """Elementwise ``e**x``."""
        out = np.exp(self.data)
        return node(out, (self,), lambda g: (g * out,), "exp")

    def log(self):
        """Elementwise natural logarithm."""
        x = self.data
        return node(np.log(x), (self,), lambda g: (g / x,), "log")

    def tanh(self):
        """Elementwise hyperbolic tangent."""
        out = np.tanh(self.data)
        return node(out, (self,), lambda g: (_k.tanh_backward(g, out),), "tanh")

    def sigmoid(self):
        """Elementwise logistic function ``1 / (1 + e**-x)`` (never overflows)."""
        out = _k.sigmoid(self.data)
        return node(out, (self,), lambda g: (_k.sigmoid_backward(g, out),), "sigmoid")

    def relu(self):
        """Elementwise ``max(x, 0)`` (gradient 0 at 0)."""
        x = self.data
        return node(np.maximum(x, 0.0), (self,), lambda g: (g * (x > 0),), "relu")

    def sqrt(self):
        """Elementwise square root."""
        out = np.sqrt(self.data)
        return node(out, (self,), lambda g: (g * 0.5 / out,), "sqrt")

    def abs(self):
        """Elementwise absolute value (gradient 0 at 0)."""
        x = self.data
        return node(np.abs(x), (self,), lambda g: (g * np.sign(x),), "abs")

    # ------------------------------------------------------------ fused ops
    def softmax(self, axis=-1):
        """Softmax along ``axis`` as one fused node; ``-inf`` entries get weight 0 and gradient 0."""
        y = _k.softmax(self.data, axis)
        return node(y, (self,), lambda g: (_k.softmax_backward(g, y, axis),), "softmax")

    def log_softmax(self, axis=-1):
        """Log-softmax along ``axis`` as one fused node (stable: shifts by the maximum)."""
        y = _k.log_softmax(self.data, axis)
        return node(y, (self,), lambda g: (_k.log_softmax_backward(g, y, axis),), "log_softmax")


def concatenate(tensors, axis=0):
    """Join Tensors (or arrays) along an existing axis; the result is a Tensor.

    Parameters
    ----------
    tensors : sequence of Tensor or ndarray
        Shapes equal except along ``axis``.
    axis : int, default 0

    Returns
    -------
    Tensor

    Examples
    --------
    >>> concatenate([Tensor([1.0]), Tensor([2.0, 3.0])]).data
    array([1., 2., 3.])

    See Also
    --------
    stack : join along a new axis.
    """
    tensors = [_as_tensor(t) for t in tensors]
    splits = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        return np.split(g, splits, axis=axis)

    out = np.concatenate([t.data for t in tensors], axis=axis)
    return node(out, tensors, backward, "concatenate")


def stack(tensors, axis=0):
    """Join same-shape Tensors (or arrays) along a new axis; the result is a Tensor.

    Parameters
    ----------
    tensors : sequence of Tensor or ndarray, all of the same shape
    axis : int, default 0
        Position of the new axis in the result.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> stack([Tensor([1.0, 2.0]), Tensor([3.0, 4.0])], axis=1).shape
    (2, 2)

    See Also
    --------
    concatenate : join along an existing axis.
    """
    tensors = [_as_tensor(t) for t in tensors]
    out = np.stack([t.data for t in tensors], axis=axis)
    lead = (slice(None),) * (axis % out.ndim)

    def backward(g):
        return [g[lead + (i,)] for i in range(len(tensors))]

    return node(out, tensors, backward, "stack")


def where(cond, a, b):
    """Choose ``a`` where ``cond`` is True and ``b`` elsewhere (with broadcasting).

    Parameters
    ----------
    cond : ndarray of bool
    a, b : Tensor, ndarray or scalar

    Returns
    -------
    Tensor
        Gradients flow to ``a`` where ``cond`` holds and to ``b`` elsewhere.

    Examples
    --------
    >>> where(np.array([True, False]), Tensor([1.0, 2.0]), -np.inf).data
    array([  1., -inf])

    See Also
    --------
    attnbook.ops.masked_fill : masks attention scores with it.
    """
    cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool)
    a, b = _as_tensor(a), _as_tensor(b)

    def backward(g):
        ga = _unbroadcast(np.where(cond, g, 0.0), a.shape) if a.requires_grad else None
        gb = _unbroadcast(np.where(cond, 0.0, g), b.shape) if b.requires_grad else None
        return ga, gb

    return node(np.where(cond, a.data, b.data), (a, b), backward, "where")
