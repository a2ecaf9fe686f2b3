"""Keep freed NumPy buffers mapped (glibc only), so that the autograd does not page-fault.

Every autograd step allocates and frees arrays of a few hundred KiB (scores, gradients).
With glibc's default settings such a buffer is mapped fresh from the kernel, or the heap
is trimmed after it is freed, so the next step page-faults the same memory in again; at
the book's sizes that costs as much as the arithmetic (bench/autograd_speed.py). At
``import attnbook``, ``configure`` raises glibc's mmap threshold (to 32 MiB) and trim
threshold (to 256 MiB) with ``mallopt``, as the book's build did through the variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``: a reader's notebook then runs
as fast as the build. Only where memory comes from changes, never a number; the cost is
that up to 256 MiB of freed memory may stay with the process instead of returning to the
system.

It does nothing

* if the environment variable ``ATTNBOOK_NO_MALLOPT`` is set to anything but "" or "0"
  before attnbook is imported (the opt-out),
* for a threshold the user already set through glibc's own variables
  (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES``),
* on any C library other than glibc (macOS, Windows, musl, Pyodide): there is nothing to set.
"""

from __future__ import annotations

import os
import sys

MMAP_THRESHOLD = 32 * 2**20  # bytes: smaller buffers come from the heap (every 64-bit glibc accepts 32 MiB)
TRIM_THRESHOLD = 256 * 2**20  # bytes: free memory kept at the top of the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
OPT_OUT = "ATTNBOOK_NO_MALLOPT"

applied: dict[str, int] = {}  # what configure() set, for tests and for the curious


def _glibc():
    """The C library loaded in this process if it is glibc, else None."""
    if not sys.platform.startswith("linux"):  # macOS, Windows, Pyodide ("emscripten"), ...
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version  # only glibc has it (not musl)
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    version.restype = ctypes.c_char_p
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return libc


def configure(environ=None):
    """Apply the thresholds unless opted out; return what was set (name -> bytes).

    Parameters
    ----------
    environ : mapping, optional
        The environment to consult (default ``os.environ``).

    Returns
    -------
    dict
        ``{"M_MMAP_THRESHOLD": ..., "M_TRIM_THRESHOLD": ...}`` for the settings applied;
        empty if opted out or not on glibc.
    """
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT, "") not in ("", "0"):
        return {}
    libc = _glibc()
    if libc is None:
        return {}
    tunables = environ.get("GLIBC_TUNABLES", "")
    done = {}
    for name, option, value, variable, tunable in (
        ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "mmap_threshold"),
        ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "trim_threshold"),
    ):
        if variable in environ or f"glibc.malloc.{tunable}" in tunables:
            continue  # the user chose; leave it
        if libc.mallopt(option, value) == 1:
            done[name] = value
    applied.update(done)
    return done
