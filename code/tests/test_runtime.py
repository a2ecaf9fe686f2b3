"""The timing helper: its clock, its thread pinning, its side-by-side repeats, its summary."""

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from attnbook import runtime
from attnbook.runtime import Timing, blas_threads, timing, timings


def test_the_cpu_clock_leaves_out_sleeping_and_the_wall_clock_counts_it():
    nap = 0.02
    wall = timing(lambda: time.sleep(nap), repeat=2, number=1, clock="wall")
    cpu = timing(lambda: time.sleep(nap), repeat=2, number=1, clock="cpu")
    assert wall.best >= nap and wall.clock == "wall"
    assert cpu.best < nap / 4 and cpu.clock == "cpu"


def test_blas_is_pinned_while_timing_and_restored_after():
    seen = []

    def record():
        seen.append(blas_threads())

    with threadpool_limits(2):  # a reader's default may be several threads
        before = blas_threads()
        one = timing(record, repeat=2, number=1, threads=1)
        assert blas_threads() == before
        two = timing(record, repeat=2, number=1, threads=2)
        unchanged = timing(record, repeat=1, number=1, threads=None)
    assert seen[:2] == [1, 1] and one.threads == 1
    assert seen[2:4] == [2, 2] and two.threads == 2
    assert unchanged.threads == before == seen[4]


def test_repeats_are_interleaved():
    order = []
    result = timings({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                     repeat=3, number=2)
    assert order == ["a", "a", "b", "b"] * 3
    assert [t.number for t in result.values()] == [2, 2]
    assert all(len(t.times) == 3 for t in result.values())


def test_the_automatic_number_of_calls_lasts_min_seconds_and_times_are_per_call(monkeypatch):
    now = [0.0]  # a fake clock: exact, so the test does not depend on the machine's load
    monkeypatch.setitem(runtime.CLOCKS, "cpu", lambda: now[0])
    calls = []

    def one_millisecond():
        calls.append(None)
        now[0] += 0.001

    t = timing(one_millisecond, repeat=2, clock="cpu", min_seconds=0.004)
    assert t.number == 5  # 1 and 2 calls last less than 4 ms, 5 calls last 5 ms
    assert t.times == pytest.approx((0.001, 0.001))  # per call, not per repeat
    assert len(calls) == 1 + 2 + 5 + 2 * 5  # the calibration counts as warm-up


def test_timing_summary_statistics_and_text():
    t = Timing(times=(0.004, 0.001, 0.002, 0.003), number=1, clock="wall", threads=2)
    assert (t.best, t.median, t.worst, t.spread) == (0.001, 0.0025, 0.004, 0.003)
    text = str(t)
    assert text.startswith("1 ms (best of 4; median 2.5 ms, range 1-4 ms")
    assert "wall-clock time" in text and "2 BLAS threads" in text
    assert "CPU time, 1 BLAS thread)" in str(Timing((2e-6, 3e-3), 1, "cpu", 1))
    assert "range 2 µs-3 ms" in str(Timing((2e-6, 3e-3), 1, "cpu", 1))


times_lists = st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=5)


@given(times_lists, times_lists)
def test_faster_than_needs_ranges_that_do_not_overlap(a_times, b_times):
    a, b = Timing(tuple(a_times), 1, "cpu", 1), Timing(tuple(b_times), 1, "cpu", 1)
    assert not (a.faster_than(b) and b.faster_than(a))
    assert a.faster_than(b) == all(x < y for x in a_times for y in b_times)
    assert not a.faster_than(a)


def test_faster_than_is_false_when_the_ranges_overlap_even_if_the_best_times_differ():
    a = Timing((1.0, 2.0), 1, "cpu", 1)
    b = Timing((1.5, 3.0), 1, "cpu", 1)
    assert a.best < b.best and not a.faster_than(b) and not b.faster_than(a)
    assert Timing((1.0, 1.4), 1, "cpu", 1).faster_than(b)


def test_faster_than_rejects_other_clocks_and_other_types():
    cpu, wall = Timing((1.0,), 1, "cpu", 1), Timing((2.0,), 1, "wall", 1)
    with pytest.raises(ValueError, match="same clock"):
        cpu.faster_than(wall)
    with pytest.raises(ValueError, match="two Timing results"):
        cpu.faster_than(2.0)


def test_timing_measures_real_work():
    x = np.random.default_rng(0).standard_normal((200, 200))
    small, large = timings({"small": lambda: x[:50, :50] @ x[:50, :50], "large": lambda: x @ x},
                           repeat=3).values()
    assert large.best > small.best  # 64 times the multiply-adds


@pytest.mark.parametrize("kwargs, message", [
    ({"repeat": 0}, "repeat must be a positive integer"),
    ({"repeat": 2.5}, "repeat must be a positive integer"),
    ({"number": 0}, "number must be a positive integer"),
    ({"clock": "gpu"}, "clock must be one of"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"min_seconds": 0}, "min_seconds must be positive"),
])
def test_timing_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timing(lambda: None, **kwargs)


def test_timings_rejects_what_it_cannot_call():
    with pytest.raises(ValueError, match="non-empty dict"):
        timings({})
    with pytest.raises(ValueError, match="not a function"):
        timings({"x": 3})


def test_blas_threads_reads_the_library():
    with threadpool_limits(1):
        assert blas_threads() == 1
    assert runtime.blas_threads() >= 1
