"""Shared test settings: one BLAS thread and one hypothesis profile for the whole package suite."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

# One BLAS thread, as the book's build runs (dev.py also sets OPENBLAS_NUM_THREADS=1): the
# CPU-time budgets of the training tests assume it, and a plain `pytest code -n 2` on a
# many-core default would spend CPU time on idle-spinning BLAS threads.
_ONE_BLAS_THREAD = threadpool_limits(limits=1)

# deadline=None: the first call of a NumPy routine can be slow and is not a failure.
settings.register_profile(
    "attnbook",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("attnbook")

# Shared toy models (toy_decoders.py) are imported by name: pytest's importlib mode does not
# put the tests' folder on the path, so this does, here and in the browser's Python.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def rng():
    """A fresh, seeded generator per test, so failures reproduce."""
    return np.random.default_rng(20240607)
