"""attnbook.style.plain_log_ticks: log axes labelled with plain numbers, never powers."""

import matplotlib
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator

from attnbook import style

matplotlib.use("Agg")


def labels(axis, minor=False):
    axis.axes.figure.canvas.draw()
    ticks = axis.get_minorticklabels() if minor else axis.get_majorticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


def test_decades_and_powers_of_two_are_plain_numbers():
    ax = Figure().add_subplot()
    ax.loglog([0.1, 100], [8, 4096])
    ax.set_yscale("log", base=2)
    style.plain_log_ticks(ax)
    x, y = labels(ax.xaxis), labels(ax.yaxis)
    assert {"0.1", "1", "10", "100"} <= set(x), x
    assert {"64", "1024", "4096"} <= set(y), y
    assert not any("^" in t or "e" in t for t in x + y), x + y


def test_minor_labels_are_plain_and_the_same_ticks_are_labelled():
    # Less than a decade: matplotlib labels some minor ticks, as powers (2 x 10^0).
    default, plain = Figure().add_subplot(), Figure().add_subplot()
    for ax in (default, plain):
        ax.semilogy([1, 2], [2, 5])
    style.plain_log_ticks(plain)
    before, after = labels(default.yaxis, minor=True), labels(plain.yaxis, minor=True)
    assert after and all(t.replace(".", "").isdigit() for t in after), after
    assert len(before) == len(after), (before, after)


def test_linear_axes_and_hand_set_labels_are_left_alone():
    ax = Figure().add_subplot()
    ax.semilogx([1, 1000], [0, 1])
    fixed = FixedFormatter(["one", "ten"])
    ax.xaxis.set_major_locator(FixedLocator([1, 10]))
    ax.xaxis.set_major_formatter(fixed)
    linear = ax.yaxis.get_major_formatter()
    assert style.plain_log_ticks(ax) is ax
    assert ax.xaxis.get_major_formatter() is fixed
    assert ax.yaxis.get_major_formatter() is linear


def test_an_unknown_axis_is_refused():
    with pytest.raises(ValueError, match="axis"):
        style.plain_log_ticks(Figure().add_subplot(), axis="z")
