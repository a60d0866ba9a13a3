"""Checks run once at the public boundary. Each error names the argument and the value received."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ._backend import is_linear_operator, is_scipy_sparse


def describe_dtype(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


def float_dtype_of(x: Any, name: str):
    """The working float dtype of ``x``: float32/float64 kept, integers and bool promoted to
    float64. Other dtypes raise ``TypeError`` naming the argument and the dtype.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if is_scipy_sparse(x) or is_linear_operator(x) or isinstance(x, np.ndarray):
        kind = np.dtype(dtype).kind if dtype is not None else "O"
        if kind == "f" and np.dtype(dtype).itemsize in (4, 8):
            return np.dtype(dtype)
        if kind in "iub":
            return np.dtype(np.float64)
        raise TypeError(
            f"{name} has unsupported dtype {describe_dtype(dtype)}: "
            "use float32 or float64 (integers are promoted to float64)"
        )
    xp = array_namespace(x)
    if dtype == xp.float32 or dtype == xp.float64:
        return dtype
    if xp.isdtype(dtype, ("integral", "bool")):
        return xp.float64
    raise TypeError(
        f"{name} has unsupported dtype {describe_dtype(dtype)}: "
        "use float32 or float64 (integers are promoted to float64)"
    )


def as_float_array(x: Any, name: str, *, ndim: int | None = None, finite: bool = True):
    """Return ``x`` as a float32/float64 array of its own library (never modified in place:
    promotion copies), after checking ``ndim``, emptiness and finiteness.
    """
    dtype = float_dtype_of(x, name)
    xp = array_namespace(x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got an array of shape {tuple(x.shape)}")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    if finite and not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_option(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_n_threads(n_threads: Any) -> int | None:
    if n_threads is None:
        return None
    return check_int(n_threads, "n_threads", low=1)


def check_tol(tol: Any, name: str = "tol") -> float | None:
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 < float(tol) < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {tol!r}")
    return float(tol)


def check_random_state(random_state: Any) -> np.random.Generator:
    """None, an int seed, a ``np.random.Generator`` or a ``np.random.RandomState``."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and (isinstance(random_state, bool) or random_state < 0):
            raise ValueError(f"random_state must be a nonnegative integer seed, got {random_state!r}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Derive a Generator from the legacy state so the caller's stream advances.
        return np.random.default_rng(random_state.randint(0, 2**63 - 1, dtype=np.int64))
    raise TypeError(
        f"random_state must be None, an int, a numpy Generator or RandomState, got {type(random_state).__name__}"
    )
