"""Argument checks of the OT area: points, weights (POT's conventions), eps, the eps schedule."""

from __future__ import annotations

import numbers

import numpy as np
from array_api_compat import array_namespace

from .._backend import to_host
from .._validation import as_float_array, check_real


def _from_sequence(v, name: str):
    """A Python list or tuple (POT users pass them) as a NumPy array; other inputs unchanged."""
    if not isinstance(v, (list, tuple)):
        return v
    try:
        return np.asarray(v)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be an array or a list of numbers of one shape, got {v!r:.80}") from err


def _points(x, name: str):
    x = as_float_array(_from_sequence(x, name), name)
    if x.ndim == 1:
        x = array_namespace(x).reshape(x, (x.shape[0], 1))
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of points (n, d) (or 1-D for points on a line), got shape {tuple(x.shape)}"
        )
    return x


def _check_eps(eps) -> float:
    return check_real(eps, "eps", low=0.0, low_open=True, what="a positive finite number")


def _weights(w, n: int, name: str):
    """Host float64 weights (validated), or uniform ones for None or an empty array or list
    (POT's convention: ``a = []`` is uniform).
    """
    w = _from_sequence(w, name)
    if w is None or (getattr(w, "ndim", None) == 1 and w.shape[0] == 0):
        return np.full(n, 1.0 / n)
    w = as_float_array(w, name, finite=False)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per point), got shape {tuple(w.shape)}")
    w = np.asarray(to_host(w), dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(w < 0):
        raise ValueError(f"{name} has negative weights (min {w.min():.3g}); weights must be nonnegative")
    if w.sum() <= 0:
        raise ValueError(f"{name} sums to 0; weights must have positive total mass")
    return w


def _check_eps_scaling(eps_scaling):
    if eps_scaling is None:
        return 0.5
    if eps_scaling is False:
        return None
    what = "None (automatic), False (off) or a ratio in (0, 1)"
    if isinstance(eps_scaling, (bool, np.bool_)) or not isinstance(eps_scaling, numbers.Real):
        raise TypeError(f"eps_scaling must be {what}, got {eps_scaling!r}")
    return check_real(eps_scaling, "eps_scaling", low=0.0, high=1.0, low_open=True, high_open=True, what=what)
