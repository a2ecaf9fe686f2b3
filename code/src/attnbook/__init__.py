"""attnbook: the mathematics of attention as small, tested, differentiable NumPy functions."""

__version__ = "0.1.0"

__all__ = ["__version__"]
