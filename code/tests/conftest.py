"""Shared test settings: one hypothesis profile for the whole package suite."""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# deadline=None: the first call of a NumPy routine can be slow and is not a failure.
settings.register_profile(
    "attnbook",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("attnbook")


@pytest.fixture
def rng():
    """A fresh, seeded generator per test, so failures reproduce."""
    return np.random.default_rng(20240607)
