"""Argument checks of the OT area: points, weights (POT's conventions), eps, the eps schedule."""

from __future__ import annotations

import math
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


def _check_reach(reach) -> tuple[float, float] | None:
    """None (balanced), or the KL strengths ``(rho_a, rho_b) = (reach_a**2, reach_b**2)`` from a
    positive ``reach`` or a pair of them; ``inf`` (or None inside a pair) keeps that marginal fixed.
    None when both are fixed: exactly the balanced problem.
    """
    if reach is None:
        return None
    pair = tuple(reach) if isinstance(reach, (tuple, list)) else (reach, reach)
    if len(pair) != 2:
        raise ValueError(f"reach must be None, a positive number or a pair of them, got {reach!r}")
    rhos = []
    for side, r in zip("ab", pair, strict=True):
        if r is None or (isinstance(r, numbers.Real) and not isinstance(r, (bool, np.bool_)) and r == np.inf):
            rhos.append(np.inf)
            continue
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real):
            raise TypeError(f"reach must be None, a positive number or a pair of them, got {reach!r}")
        r = check_real(r, f"reach (side {side})", low=0.0, low_open=True, what="positive (or inf: balanced side)")
        rho = r * r
        if rho == 0.0 or not np.isfinite(rho):
            raise ValueError(f"reach = {r!r}: reach**2 is outside the float64 range")
        rhos.append(rho)
    if rhos[0] == np.inf and rhos[1] == np.inf:
        return None
    return rhos[0], rhos[1]


def _log_weights(log_w, n: int, name: str) -> np.ndarray:
    """Host float64 log-weights: finite or -inf (a zero weight), not all -inf."""
    log_w = as_float_array(_from_sequence(log_w, name), name, finite=False)
    if log_w.ndim != 1 or log_w.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per point), got shape {tuple(log_w.shape)}")
    log_w = np.asarray(to_host(log_w), dtype=np.float64)
    if np.any(np.isnan(log_w)) or np.any(log_w == np.inf):
        raise ValueError(f"{name} contains NaN or +inf (log-weights are finite, or -inf for a zero weight)")
    if np.all(log_w == -np.inf):
        raise ValueError(f"{name} is -inf everywhere; weights must have positive total mass")
    return log_w


def _unit_weights(w, log_w, n: int, name: str) -> tuple[np.ndarray, float, float]:
    """The weights on unit mass, their mass and its log, from weights ``w`` or log-weights
    ``log_w`` (normalized in the log domain: a total mass outside the float64 range is fine;
    weights below 1e-308 of the total count as zero).
    """
    if log_w is None:
        w = _weights(w, n, name)
        s = float(w.sum())
        return (w if s == 1.0 else w / s), s, math.log(s)
    if w is not None:
        raise ValueError(f"pass {name} or log_{name}, not both")
    log_w = _log_weights(log_w, n, f"log_{name}")
    top = float(log_w.max())
    log_mass = top + math.log(float(np.sum(np.exp(log_w - top))))
    unit = np.exp(log_w - log_mass)
    with np.errstate(over="ignore", under="ignore"):
        mass = math.exp(log_mass) if log_mass < 709.0 else math.inf
    return unit / unit.sum(), mass, log_mass
