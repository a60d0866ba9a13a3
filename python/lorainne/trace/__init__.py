"""Randomized trace and spectral-density estimation for matrices known through products."""

from ._estimators import TraceEstimate, spectral_density, trace, trace_function, trace_parametric

__all__ = ["TraceEstimate", "spectral_density", "trace", "trace_function", "trace_parametric"]
