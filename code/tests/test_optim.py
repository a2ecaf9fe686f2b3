"""Optimisers against steps computed by hand and against PyTorch; clipping; schedules."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from attnbook import Tensor
from attnbook.optim import (
    SGD,
    Adam,
    SCHEDULE_KINDS,
    AdamW,
    Schedule,
    clip_grad_norm,
    constant,
    vaswani,
    warmup_cosine,
    warmup_linear,
)


def param(values, grad):
    p = Tensor(values, requires_grad=True)
    p.grad = np.array(grad, dtype=float)
    return p


def test_adam_two_steps_by_hand():
    p = param([1.0, -2.0], [0.5, -1.0])
    opt = Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    # step 1: m = 0.1 g, v = 0.001 g^2; m_hat = g, v_hat = g^2: move lr * g / (|g| + eps)
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8)], rtol=1e-12)
    p.grad = np.array([1.5, 0.0])
    opt.step()
    m = 0.9 * 0.1 * np.array([0.5, -1.0]) + 0.1 * np.array([1.5, 0.0])  # [0.195, -0.09]
    v = 0.999 * 0.001 * np.array([0.25, 1.0]) + 0.001 * np.array([2.25, 0.0])
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    after_one = np.array([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 / (1.0 + 1e-8)])
    np.testing.assert_allclose(p.data, after_one - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-12)
    assert opt.step_count == 2


def test_adamw_decays_decoupled_and_adam_couples():
    p = param([2.0], [0.0])
    AdamW([p], lr=0.1, weight_decay=0.5).step()
    assert p.data[0] == pytest.approx(2.0 * (1 - 0.05))  # zero gradient: only the decay
    q = param([2.0], [0.0])
    Adam([q], lr=0.1, weight_decay=0.5).step()
    # coupled: the decay enters the gradient (g = 1.0), and Adam's first step moves by lr
    assert q.data[0] == pytest.approx(2.0 - 0.1, rel=1e-7)


def test_sgd_momentum_by_hand():
    p = param([1.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # velocity 1, then 0.9 + 1 = 1.9
    assert p.data[0] == pytest.approx(1.0 - 0.1 - 0.19)


def test_parameters_without_gradient_are_left_alone():
    p, q = param([1.0], [1.0]), Tensor([5.0], requires_grad=True)
    for opt in (SGD([p, q], lr=0.1), Adam([p, q]), AdamW([p, q], weight_decay=0.1)):
        opt.step()
    assert q.data[0] == 5.0


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_matches_torch_over_many_steps(rng, name):
    torch = pytest.importorskip("torch")
    start = rng.standard_normal((3, 4))
    grads = rng.standard_normal((10, 3, 4))
    ours = Tensor(start, requires_grad=True)
    opt = {"Adam": Adam, "AdamW": AdamW}[name]([ours], lr=0.01, weight_decay=0.1)
    theirs = torch.tensor(start, requires_grad=True)
    ref = getattr(torch.optim, name)([theirs], lr=0.01, weight_decay=0.1)
    for g in grads:
        ours.grad = g.copy()
        theirs.grad = torch.tensor(g)
        opt.step()
        ref.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm():
    a, b = param([0.0, 0.0], [3.0, 0.0]), param([0.0], [4.0])
    assert clip_grad_norm([a, b], 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(a.grad, [3.0, 0.0])  # under the bound: untouched
    assert clip_grad_norm([a, b, Tensor([1.0], requires_grad=True)], 1.0) == pytest.approx(5.0)
    norm = math.sqrt(float((a.grad**2).sum() + (b.grad**2).sum()))
    assert norm == pytest.approx(1.0)
    np.testing.assert_allclose(a.grad, [0.6, 0.0])
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm([a], 0.0)
    with pytest.raises(ValueError, match="training diverged"):
        clip_grad_norm([param([0.0], [np.inf])], 1.0)


def test_schedules():
    s = vaswani(512, warmup=4000)
    assert s(1) == pytest.approx(512**-0.5 * 4000**-1.5)
    assert s(4000) == pytest.approx(512**-0.5 * 4000**-0.5)
    assert s(10_000) == pytest.approx(512**-0.5 * 10_000**-0.5)
    assert max(s(t) for t in range(1, 20_000, 50)) <= s(4000) + 1e-15
    s = warmup_linear(1.0, warmup=10, total=110, final=0.1)
    assert [s(5), s(10), s(60), s(110), s(500)] == pytest.approx([0.5, 1.0, 0.55, 0.1, 0.1])
    s = warmup_cosine(1.0, warmup=0, total=100)
    assert [s(1), s(50), s(100)] == pytest.approx([1.0 - (1 - math.cos(math.pi / 100)) / 2, 0.5, 0.0])
    assert constant(3e-3)(1) == constant(3e-3)(10**6) == 3e-3
    with pytest.raises(ValueError, match="count updates from 1"):
        constant(1.0)(0)
    with pytest.raises(ValueError, match="total >= max\\(warmup, 1\\)"):
        warmup_linear(1.0, warmup=10, total=5)
    assert hash(warmup_linear(1.0, 1, 10)) == hash(warmup_linear(1.0, 1, 10))  # usable in a frozen config


@given(st.sampled_from([16, 64, 512]), st.integers(1, 50), st.floats(0.1, 10.0))
@example(16, 1, 1.0)  # the smallest warm-up allowed
def test_vaswani_follows_the_papers_formula_for_any_warmup(d_model, warmup, scale):
    # The formula of Vaswani et al. (2017), eq. (3), written out independently; warmup = 1 (no
    # warm-up at all) is allowed. Mutation testing (MUTATION.md) found ``warmup < 2`` surviving.
    s = vaswani(d_model, warmup=warmup, scale=scale)
    for step in range(1, 3 * warmup + 2):
        expected = scale * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert s(step) == pytest.approx(expected, rel=1e-12)


@given(st.floats(1e-4, 1.0), st.integers(0, 20), st.integers(1, 60), st.floats(0.0, 1e-4),
       st.sampled_from(["warmup_linear", "warmup_cosine"]))
@example(1e-3, 0, 1, 0.0, "warmup_linear")  # the shortest run allowed: total = max(warmup, 1)
def test_warmup_schedules_follow_their_formulas(peak, warmup, decay, final, kind):
    # Independent definitions: linear warm-up peak * t / warmup for t <= warmup, then a linear
    # or half-cosine path from peak to final over the remaining updates, final after total.
    import attnbook.optim as optim

    total = warmup + decay
    s = getattr(optim, kind)(peak, warmup=warmup, total=total, final=final)
    for t in range(1, total + 5):
        if t <= warmup:
            expected = peak * t / warmup
        else:
            p = min(1.0, (t - warmup) / decay)
            shape = p if kind == "warmup_linear" else (1 - math.cos(math.pi * p)) / 2
            expected = peak + (final - peak) * shape
        assert s(t) == pytest.approx(expected, rel=1e-12, abs=1e-15), t
    assert s(total) == pytest.approx(final, abs=1e-15)
    assert getattr(optim, kind)(peak, warmup=warmup, total=total)(total) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("kind", ["bogus", "cosine", "Constant", ""])
def test_schedule_rejects_an_unknown_kind(kind):
    # An unknown kind used to fall through to the cosine formula.
    with pytest.raises(ValueError, match="unknown schedule kind"):
        Schedule(kind, 1.0, warmup=1, total=10)


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_every_schedule_kind_has_its_constructor(kind):
    import attnbook.optim as optim

    args = {"constant": (0.5,), "vaswani": (16, 4)}.get(kind, (0.5, 2, 10))
    made = getattr(optim, kind)(*args)
    assert made.kind == kind and made == Schedule(*dataclasses.astuple(made))


def test_no_parameters_is_an_error():
    with pytest.raises(ValueError, match="got no parameters"):
        Adam([])
