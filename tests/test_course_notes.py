"""The course notes' exercise and demo are reproduced digit for digit on the built pages.

The reference numbers are computed here exactly as the notes compute them (same sizes, same
legacy global seeds, same order of draws); each must appear on its chapter's page, to six
decimals or more, agreeing to the last printed digit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import HTML

NUMBER = re.compile(r"-?\d+\.(\d+)")


def printed_numbers(page: str) -> list[tuple[float, int]]:
    """Every decimal number printed on a page, with its count of decimals."""
    path = HTML / "book" / f"{page}.html"
    if not path.exists():
        pytest.fail(f"{path} is missing: is the chapter in _toc.yml and the book built?")
    text = path.read_text(encoding="utf-8")
    return [(float(m.group(0)), len(m.group(1))) for m in NUMBER.finditer(text)]


def assert_printed(expected: np.ndarray, page: str) -> None:
    found = printed_numbers(page)
    missing = [
        x for x in np.ravel(expected)
        # NumPy drops trailing zeros (0.199790 prints as 0.19979): a shorter number still
        # counts when it is the value to six decimals.
        if not any(abs(value - x) <= 0.5 * 10.0 ** -max(decimals, 6) + 1e-12
                   for value, decimals in found)
    ]
    assert not missing, f"{page} does not print these values of the notes' setup: {missing}"


def notes_exercise():
    """The alignment/attention exercise: hidden 16, attention 10, length 5, seed 42."""
    hidden_size, attention_size, input_length = 16, 10, 5
    state = np.random.get_state()
    try:
        np.random.seed(42)
        encoder_states = np.random.randn(input_length, hidden_size)
        decoder_state = np.random.randn(1, hidden_size)
        layer_1 = np.random.randn(2 * hidden_size, attention_size)
        layer_2 = np.random.randn(attention_size, 1)
    finally:
        np.random.set_state(state)
    inputs = np.concatenate((encoder_states, decoder_state.repeat(input_length, axis=0)), axis=1)
    scores = np.tanh(inputs @ layer_1) @ layer_2  # (5, 1)
    weights = np.exp(scores - scores.max(axis=0)) / np.exp(scores - scores.max(axis=0)).sum(axis=0)
    context = (encoder_states * weights).sum(axis=0)
    return scores, weights, context


def notes_demo():
    """The scaled dot-product demo: seed 0, Q (3, 4), K (5, 4), V (5, 6)."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        Q = np.random.randn(3, 4)
        K = np.random.randn(5, 4)
        V = np.random.randn(5, 6)
    finally:
        np.random.set_state(state)
    scores = Q @ K.T / np.sqrt(Q.shape[-1])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights, weights @ V


def test_the_reference_is_the_notes_setup():
    # The published first values of the exercise, as a guard on this file's own procedure.
    scores, weights, context = notes_exercise()
    assert scores.shape == (5, 1) and context.shape == (16,)
    assert abs(scores[0, 0] - 4.35790943) < 1e-8
    assert abs(context[0] + 0.63514569) < 1e-8


def test_chapter_2_prints_the_exercise_scores():
    scores, _, _ = notes_exercise()
    assert_printed(scores, "02-alignment-scores")


def test_chapter_3_prints_the_exercise_weights_and_context():
    _, weights, context = notes_exercise()
    assert_printed(weights, "03-context-vectors")
    assert_printed(context, "03-context-vectors")


def test_chapter_5_prints_the_demo_weights_and_output():
    weights, out = notes_demo()
    assert_printed(weights, "05-scaled-dot-product")
    assert_printed(out, "05-scaled-dot-product")
