"""What the benchmarks say about the processor they ran on (shared by the scripts here)."""

from __future__ import annotations


def cpu_model() -> str | None:
    """The processor's name from ``/proc/cpuinfo``, or None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), None)
    except OSError:
        return None
