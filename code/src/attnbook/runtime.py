"""How the machine runs the book's code: BLAS threads, and the one way to time a call.

Every timing the book prints comes from :func:`timing` (or :func:`timings`, for several
calls measured side by side). A result states its clock and the number of BLAS threads it
ran on, and keeps every repeat so the spread can be shown next to the best time. While it
times, the BLAS library (and any OpenMP pool) is pinned to ``threads`` threads with
threadpoolctl, so "one thread" is true in a reader's notebook as well as in the book's build,
whatever the environment variables say.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["blas_threads", "Timing", "timing", "timings", "CLOCKS"]

#: The clocks :func:`timing` can read. "cpu" is the CPU time of this process (other programs
#: holding the processor do not count), "wall" the elapsed time (they do).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}

_CLOCK_NAMES = {"cpu": "CPU time", "wall": "wall-clock time"}


def blas_threads():
    """The number of threads NumPy's BLAS uses right now.

    Read from the loaded BLAS libraries through threadpoolctl (the largest pool if there are
    several); 1 if NumPy has no threaded BLAS.

    Returns
    -------
    int

    Examples
    --------
    >>> from threadpoolctl import threadpool_limits
    >>> with threadpool_limits(1):
    ...     blas_threads()
    1

    See Also
    --------
    timing : pins the count while it measures.
    attnbook.cache.cache_key : includes it, since the thread count changes training
        trajectories.
    """
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(counts, default=1)


def _format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


@dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed function, one entry per repeat, and how they were taken.

    Attributes
    ----------
    times : tuple of float, length ``repeat``
        Seconds per call in each repeat (a repeat's time divided by ``number``).
    number : int
        Calls per repeat.
    clock : str
        "cpu" or "wall" (see :data:`CLOCKS`).
    threads : int
        BLAS threads while timing, read back from the library (not just requested).

    Examples
    --------
    >>> t = Timing(times=(3e-3, 1e-3, 2e-3), number=10, clock="cpu", threads=1)
    >>> t.best, t.median, t.worst
    (0.001, 0.002, 0.003)
    >>> str(t)
    '1 ms (best of 3; median 2 ms, range 1-3 ms; CPU time, 1 BLAS thread)'

    See Also
    --------
    timing : makes one.
    """

    times: tuple
    number: int
    clock: str
    threads: int

    @property
    def best(self):
        """The shortest time per call, the least disturbed repeat."""
        return min(self.times)

    @property
    def median(self):
        """The median time per call over the repeats."""
        return statistics.median(self.times)

    @property
    def worst(self):
        """The longest time per call."""
        return max(self.times)

    @property
    def spread(self):
        """``worst - best``, in seconds per call: how much the repeats disagree."""
        return self.worst - self.best

    def faster_than(self, other):
        """Whether this timing is faster than ``other`` beyond the spread of their repeats.

        The book's rule for a difference in time: ``True`` only if this timing's slowest
        repeat is shorter than the other's fastest. When the two ranges (fastest to slowest
        repeat) overlap, neither ``a.faster_than(b)`` nor ``b.faster_than(a)`` holds, and the
        book calls the two about the same.

        Parameters
        ----------
        other : Timing
            Taken with the same clock, ideally in the same :func:`timings` call, so that the
            repeats of the two are interleaved.

        Returns
        -------
        bool
            ``self.worst < other.best``.

        Raises
        ------
        ValueError
            If ``other`` is not a :class:`Timing` or was taken with another clock.

        Examples
        --------
        >>> fast = Timing(times=(1.0e-3, 1.2e-3, 1.1e-3), number=10, clock="cpu", threads=1)
        >>> slow = Timing(times=(1.3e-3, 1.5e-3, 1.4e-3), number=10, clock="cpu", threads=1)
        >>> near = Timing(times=(1.15e-3, 1.3e-3, 1.25e-3), number=10, clock="cpu", threads=1)
        >>> fast.faster_than(slow), slow.faster_than(fast)
        (True, False)
        >>> fast.faster_than(near), near.faster_than(fast)  # the ranges overlap: no difference
        (False, False)
        """
        if not isinstance(other, Timing):
            raise ValueError(f"faster_than compares two Timing results (from timings()), got "
                             f"{type(other).__name__}; time both functions in one timings() call")
        if other.clock != self.clock:
            raise ValueError(f"cannot compare a {self.clock} timing with a {other.clock} timing; "
                             "time both with the same clock, in one timings() call")
        return self.worst < other.best

    def __str__(self):
        low, high = _format_seconds(self.best), _format_seconds(self.worst)
        if low.split()[1] == high.split()[1]:  # one unit: "1-3 ms"
            low = low.split()[0]
        plural = "" if self.threads == 1 else "s"
        return (f"{_format_seconds(self.best)} (best of {len(self.times)}; median "
                f"{_format_seconds(self.median)}, range {low}-{high}; "
                f"{_CLOCK_NAMES[self.clock]}, {self.threads} BLAS thread{plural})")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _run(fn, number, clock):
    """Seconds for ``number`` calls of ``fn``, with the garbage collector paused."""
    was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection would land on whichever call triggers it
    try:
        start = clock()
        for _ in range(number):
            fn()
        return clock() - start
    finally:
        if was_enabled:
            gc.enable()


def _calibrate(fn, clock, min_seconds):
    """The smallest number of calls (1, 2, 5, 10, 20, ...) that lasts ``min_seconds``."""
    number = 1
    while True:
        for factor in (1, 2, 5):
            n = number * factor
            if _run(fn, n, clock) >= min_seconds:
                return n
        number *= 10


def timings(fns, *, repeat=5, number=None, clock="cpu", threads=1, min_seconds=0.01):
    """Time several calls side by side: repeat ``r`` of each runs before repeat ``r + 1`` of any.

    Interleaving the repeats exposes every function to the same disturbances (other
    programs, frequency changes), so ratios between the results are fairer than those of
    separate measurements.

    Parameters
    ----------
    fns : mapping of str to callable
        Functions of no arguments; ``functools.partial`` or a lambda binds the inputs.
    repeat : int, default 5
        Measurements per function.
    number : int, optional
        Calls per measurement. By default the smallest of 1, 2, 5, 10, 20, ... whose calls
        last ``min_seconds``; finding it also warms each function up.
    clock : {"cpu", "wall"}, default "cpu"
        CPU time of this process, or elapsed time (see :data:`CLOCKS`).
    threads : int or None, default 1
        BLAS (and OpenMP) threads while timing; None leaves the current setting.
    min_seconds : float, default 0.01
        Shortest measurement when ``number`` is chosen automatically.

    Returns
    -------
    dict of str to Timing
        In the order of ``fns``.

    Raises
    ------
    ValueError
        If ``fns`` is empty or holds something that is not callable, ``repeat``, ``number``
        or ``threads`` is not a positive integer, or ``clock`` is unknown.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((64, 64))
    >>> result = timings({"x @ x": lambda: x @ x, "x + x": lambda: x + x}, repeat=3)
    >>> list(result), result["x @ x"].threads, result["x @ x"].clock
    (['x @ x', 'x + x'], 1, 'cpu')

    See Also
    --------
    timing : one function.
    Chapter 2, *Alignment scores*, times the scores side by side.
    """
    if not isinstance(fns, Mapping) or not fns:
        raise ValueError("fns must be a non-empty dict of name -> function of no arguments.")
    for name, fn in fns.items():
        if not callable(fn):
            raise ValueError(f"fns[{name!r}] is a {type(fn).__name__}, not a function; wrap the "
                             "call in a lambda or functools.partial.")
    repeat = _positive_int(repeat, "repeat")
    if number is not None:
        number = _positive_int(number, "number")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}.")
    if threads is not None:
        threads = _positive_int(threads, "threads")
    if not min_seconds > 0:
        raise ValueError(f"min_seconds must be positive, got {min_seconds!r}.")
    read = CLOCKS[clock]
    limits = threadpool_limits(limits=threads) if threads is not None else nullcontext()
    with limits:
        actual = blas_threads()
        numbers = {name: number or _calibrate(fn, read, min_seconds) for name, fn in fns.items()}
        times = {name: [] for name in fns}
        for _ in range(repeat):
            for name, fn in fns.items():
                times[name].append(_run(fn, numbers[name], read) / numbers[name])
    return {name: Timing(tuple(times[name]), numbers[name], clock, actual) for name in fns}


def timing(fn, *, repeat=5, number=None, clock="cpu", threads=1, min_seconds=0.01):
    """Time ``fn()``: ``repeat`` measurements of ``number`` calls each, on ``threads`` BLAS threads.

    Parameters
    ----------
    fn : callable
        A function of no arguments.
    repeat, number, clock, threads, min_seconds
        As in :func:`timings`.

    Returns
    -------
    Timing
        Its ``best`` is the usual figure to report; print it whole to show the spread,
        the clock and the thread count.

    Raises
    ------
    ValueError
        As :func:`timings`.

    Examples
    --------
    >>> t = timing(lambda: sum(range(1000)), repeat=3)
    >>> len(t.times), t.clock, t.threads
    (3, 'cpu', 1)
    >>> t.best <= t.median <= t.worst
    True

    See Also
    --------
    timings : several functions, measured side by side.
    Chapter 9, *The cost of attention*, times attention with it.
    """
    return timings({"fn": fn}, repeat=repeat, number=number, clock=clock, threads=threads,
                   min_seconds=min_seconds)["fn"]
