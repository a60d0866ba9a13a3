"""The run machinery shared by every ALS-family loop of ``tensor/`` (CP dense and sparse, Tucker,
NMF): argument checks, starts (SVD, random, a given CPTensor), the run state, the stopping rule,
per-sweep reporting (verbose logging, callback) and the convergence warnings.

Imported one way: ``_cp``, ``_sparse``, ``_tucker`` and ``_nmf`` import this module, which
imports none of them (only ``_guard``, ``_structures`` and ``_xp``).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype
from .._validation import as_float_array, check_real, check_tol
from .._warnings import ConvergenceWarning
from . import _xp
from ._guard import times_power_of_two
from ._jennrich import jennrich
from ._structures import CPTensor, _as_cp_pair, edge_mode_product, mode_product, unfold

logger = logging.getLogger("lorainne")

INITS = ("svd", "random", "jennrich")
SPARSE_INITS = ("svd", "random")  # Jennrich needs the dense tensor

# Stop codes of the Rust loops (``cp_als``, ``cp_als_sparse``).
RUST_STATUS = {0: "max_iter", 1: "converged", 2: "stalled"}


# --------------------------------------------------------------------------- checks


def check_tensor(X, name: str = "X"):
    """A float32/float64 array of order >= 2 (integers promoted to float64), finite, non-empty."""
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"{name} must be an array or a SparseTensor, got {type(X).__name__}")
    if isinstance(X, np.ndarray) and X.dtype.kind == "O":
        raise TypeError(f"{name} has unsupported dtype object: use float32 or float64")
    if len(X.shape) < 2:
        raise ValueError(f"{name} must have at least 2 modes, got an array of shape {tuple(X.shape)}")
    return as_float_array(X, name, sparse_hint=", or a lorainne.SparseTensor of its nonzeros")


def check_nonnegative_real(value: Any, name: str) -> float:
    return check_real(value, name, low=0.0, what="a finite number >= 0")


def check_tol0(tol: Any) -> float:
    return check_tol(tol, allow_zero=True)


def check_mask(mask, X, xp):
    if mask is None:
        return None
    if not hasattr(mask, "shape") or tuple(mask.shape) != tuple(X.shape):
        shape = tuple(getattr(mask, "shape", ()))
        raise ValueError(f"mask must have the shape of X {tuple(X.shape)}, got {shape}")
    mxp = array_namespace(mask)
    if mask.dtype != mxp.bool:
        if isinstance(mask, np.ndarray) and mask.dtype.kind in "iuf" and np.all((mask == 0) | (mask == 1)):
            mask = mask.astype(bool)
        else:
            raise TypeError(f"mask must be a boolean array (True = observed), got dtype {mask.dtype}")
    if mxp is not xp:
        mask = xp.asarray(mask, device=device(X))
    if not bool(xp.any(mask)):
        raise ValueError("mask observes no entry of X")
    return mask


def check_callback(callback) -> Callable | None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (state, rel_error) -> bool, got {type(callback).__name__}")
    return callback


def machine_eps(dtype) -> float:
    return float(np.finfo(numpy_dtype(dtype)).eps)


# --------------------------------------------------------------------------- starts


def gaussian(xp, rng, shape, dtype, like):
    """Standard normal entries drawn on the host by ``rng``, moved to ``like``'s device."""
    block = rng.standard_normal(shape).astype(numpy_dtype(dtype), copy=False)
    return xp.asarray(block, device=device(like))


def sketched_left_vectors(
    X, mode: int, k: int, rng, *, rust: bool = False, n_threads: int | None = None, oversample: int = 10
):
    """The ``k`` leading left singular vectors and values of ``X_(mode)`` (see :func:`svd_init`)."""
    xp = array_namespace(X)
    size = X.shape[mode]
    rest = 1
    for n, s in enumerate(X.shape):
        if n != mode:
            rest *= int(s)
    width = min(k + oversample, size, rest)
    where = device(X)
    sketch = [
        gaussian(xp, rng, (s, width), X.dtype, X) if n != mode else xp.zeros((s, width), dtype=X.dtype, device=where)
        for n, s in enumerate(X.shape)
    ]
    if rust:
        Y = core().mttkrp(np.ascontiguousarray(X), [np.ascontiguousarray(f) for f in sketch], mode, n_threads)
    else:
        Y = _xp.mttkrp(xp, X, sketch, mode)
    Q, _ = xp.linalg.qr(Y)
    projected = edge_mode_product(X, Q.T, mode, n_threads) if rust else mode_product(X, Q.T, mode)
    B = unfold(projected, mode)  # (width, rest)
    w, V = xp.linalg.eigh(B @ B.T)
    U = Q @ xp.flip(V[:, -k:], axis=1)
    return U, xp.sqrt(xp.clip(xp.flip(w[-k:], axis=0), min=0.0))


def svd_init(X, rank: int, rng, nonnegative: bool = False, n_threads: int | None = None, rust: bool = False) -> list:
    """Leading left singular vectors of each Kolda-Bader unfolding ``X_(n)``, by a randomized
    range finder whose test matrix is a Khatri-Rao product of Gaussian matrices (Halko et al.
    2011 with a structured sketch): ``Y = X_(n) (G_{N-1} kr ... kr G_0)`` is one MTTKRP (one pass
    over X, no unfolded copy, the Rust kernel on NumPy input), ``Q = qr(Y)`` with ``rank + 10``
    columns, then the SVD of ``Q^T X_(n)`` through its small Gram matrix (one more pass). Two
    passes per mode instead of the 5 full products and the unfolded copy of a dense randomized
    SVD. Mode 0 is scaled by the singular values so the start has the tensor's scale; columns
    beyond the rank of an unfolding are Gaussian.
    """
    xp = array_namespace(X)
    total = 1
    for s in X.shape:
        total *= int(s)
    nonzero = bool(xp.any(X != 0))
    factors = []
    for mode, size in enumerate(X.shape):
        rest = total // size
        k = min(rank, size, rest)
        if nonzero:
            U, singular = sketched_left_vectors(X, mode, k, rng, rust=rust, n_threads=n_threads)
            if mode == 0:
                U = U * singular[None, :]
        else:
            U = xp.zeros((size, k), dtype=X.dtype, device=device(X))
        if k < rank:
            extra = gaussian(xp, rng, (size, rank - k), X.dtype, X) / math.sqrt(size)
            U = xp.concat([U, extra], axis=1)
        factors.append(xp.abs(U) if nonnegative else U)
    return factors


def random_init(X, rank: int, rng, nonnegative: bool = False) -> list:
    xp = array_namespace(X)
    factors = [gaussian(xp, rng, (size, rank), X.dtype, X) for size in X.shape]
    return [xp.abs(f) for f in factors] if nonnegative else factors


def given_init(init, X, rank: int, nonnegative: bool) -> list:
    """A CPTensor or ``(weights, factors)`` start, checked against X and copied to its library,
    device and dtype. X only needs ``shape``, ``ndim``, ``dtype``, a device and an array namespace.
    """
    weights, factors = _as_cp_pair(init, "init")
    xp = array_namespace(X)
    if len(factors) != X.ndim:
        raise ValueError(f"init has {len(factors)} factors, X has {X.ndim} modes")
    out = []
    for n, f in enumerate(factors):
        if tuple(f.shape) != (X.shape[n], rank):
            raise ValueError(f"init factor {n} must have shape ({X.shape[n]}, {rank}), got {tuple(f.shape)}")
        f = xp.asarray(f, device=device(X))
        f = xp.astype(f, X.dtype, copy=True)  # never modify the caller's factors
        if not bool(xp.all(xp.isfinite(f))):
            raise ValueError(f"init factor {n} contains NaN or infinity")
        if nonnegative and bool(xp.any(f < 0)):
            raise ValueError(f"init factor {n} has negative entries, but nonnegative=True")
        out.append(f)
    weights = xp.astype(xp.asarray(weights, device=device(X)), X.dtype)
    # Like tensorly's initialize_cp: the weights are pulled into the last factor.
    out[-1] = out[-1] * weights[None, :]
    return out


def initial_factors(
    X, rank: int, init, rng, nonnegative: bool, n_threads: int | None = None, rust: bool = False
) -> list:
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or a CPTensor, got {init!r}")
        if init == "svd":
            return svd_init(X, rank, rng, nonnegative, n_threads, rust)
        if init == "jennrich":
            return given_init(jennrich(X, rank, random_state=rng), X, rank, nonnegative)
        return random_init(X, rank, rng, nonnegative)
    return given_init(init, X, rank, nonnegative)


# --------------------------------------------------------------------------- run state, stopping rule


class Run:
    """The outcome of one ALS run: factors (weights folded in), errors, the stop reason
    ("max_iter", "converged", "stalled" or "callback").
    """

    def __init__(self, factors, errors, status):
        self.factors, self.errors, self.status = factors, errors, status

    @property
    def final_error(self) -> float:
        return self.errors[-1] if self.errors else math.inf


def stop_state(errors: list[float], degenerate: bool, tol: float, floor: float, eps: float) -> str | None:
    """The stopping rule shared with the Rust loop: None (go on), "converged" or "stalled".

    With ``tol > 0``: converged when the relative error is below ``floor`` (an exact fit, at the
    resolution of the cheap fit formula), or when it changed by less than ``tol`` between the last
    two sweeps (``tol`` raised to ``4 eps / error``, the resolution of that formula) -- unless the
    model is rank-deficient (a stalled start: collapsed or zero components), which stops as
    "stalled" and is never reported as converged.
    """
    if tol <= 0 or not errors:
        return None
    error = errors[-1]
    if error <= floor:
        return "converged"
    if len(errors) >= 2 and abs(errors[-2] - error) < max(tol, 4.0 * eps / error):
        return "stalled" if degenerate else "converged"
    return None


def error_floor(eps: float) -> float:
    return 3.0 * math.sqrt(eps)


class StopRule:
    """:func:`stop_state` bound to a tolerance and to the resolution of a dtype."""

    def __init__(self, tol: float, dtype):
        self.tol = tol
        self.eps = machine_eps(dtype)
        self.floor = error_floor(self.eps)

    def __call__(self, errors: list[float], degenerate: bool) -> str | None:
        return stop_state(errors, degenerate, self.tol, self.floor, self.eps)


def report(callback, verbose, factors, errors, xp) -> bool:
    """Log and call the callback after a sweep; True means the callback asked to stop."""
    if verbose:
        logger.info("cp: sweep %d, relative error %.6g", len(errors), errors[-1])
    if callback is None:
        return False
    ones = xp.ones((factors[0].shape[1],), dtype=factors[0].dtype, device=device(factors[0]))
    state = CPTensor(ones, list(factors), n_iter=len(errors), errors=errors)
    return bool(callback(state, errors[-1]))


def report_start(callback, factors, error: float) -> bool:
    """The callback on the start (``n_iter == 0``), as tensorly's ``parafac``; True means stop."""
    xp = array_namespace(factors[0])
    ones = xp.ones((factors[0].shape[1],), dtype=factors[0].dtype, device=device(factors[0]))
    return bool(callback(CPTensor(ones, list(factors), n_iter=0, errors=[]), error))


def unscaled_callback(callback, exponent: int):
    """The callback seeing the model at the caller's scale when the data was divided by
    ``2**exponent`` (see ``_guard``).
    """
    if callback is None or exponent == 0:
        return callback

    def wrapped(state, error):
        weights = times_power_of_two(state.weights, exponent)
        return callback(CPTensor(weights, state.factors, n_iter=state.n_iter, errors=state.errors), error)

    return wrapped


def end_of_sweep(stop: StopRule, degenerate: bool, callback, verbose, factors, errors, xp) -> str | None:
    """After a CP-family sweep: report, then the stop status ("callback" first), or None to go on."""
    if report(callback, verbose, factors, errors, xp):
        return "callback"
    return stop(errors, bool(degenerate))


def warn_unconverged(run: Run, tol: float, name: str, n_iter_max: int, stacklevel: int) -> None:
    """The ConvergenceWarning of a stalled run, or of one that reached ``n_iter_max`` with
    ``tol > 0``. ``stacklevel`` as ``warnings.warn`` would take it in the caller.
    """
    if run.status == "stalled":
        warnings.warn(
            f"{name}: stalled after {len(run.errors)} sweeps at relative error {run.final_error:.4g}: the model is "
            "rank-deficient (collapsed or zero components, typical of a degenerate start); try init='svd', another "
            "random_state, or a smaller rank",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )
    elif run.status == "max_iter" and tol > 0 and n_iter_max > 0:
        if len(run.errors) >= 2:
            change = f"still changing by {abs(run.errors[-2] - run.errors[-1]):.3g}"
        else:
            change = "after a single sweep"
        warnings.warn(
            f"{name}: reached n_iter_max={n_iter_max} with relative error {run.final_error:.4g} "
            f"({change}; tol={tol:g})",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


def finish(
    run: Run, tol: float, name: str, n_iter_max: int, stacklevel: int = 3, *, normalize: bool = True, exponent: int = 0
) -> CPTensor:
    """Warn (``stacklevel`` as ``warnings.warn`` would take it here: 3 = the caller of the caller of
    ``finish``, the user), then the CPTensor: normalized (unit columns, weights sorted) or, with
    ``normalize=False``, the factors as the sweeps left them with unit weights. ``exponent``: the
    data was divided by ``2**exponent`` (see ``_guard``); the model is multiplied back.
    """
    warn_unconverged(run, tol, name, n_iter_max, stacklevel=stacklevel)
    xp = array_namespace(run.factors[0])
    ones = xp.ones((run.factors[0].shape[1],), dtype=run.factors[0].dtype, device=device(run.factors[0]))
    factors = list(run.factors)
    result = CPTensor(ones, factors, n_iter=len(run.errors), errors=run.errors, converged=run.status == "converged")
    if normalize:
        result = result.normalize()
        result.weights = times_power_of_two(result.weights, exponent)
    else:
        result.factors[-1] = times_power_of_two(result.factors[-1], exponent)
    return result


def start_error(X, factors, norm_x_sq: float, product=None, mask=None) -> float:
    """Relative error of the start (the error tensorly's ``parafac`` passes to its callback before
    the first sweep): from the last mode's MTTKRP and the Gram matrices (no reconstruction), or on
    the observed entries with a mask. ``product(factors, mode)`` replaces the dense MTTKRP.
    """
    xp = array_namespace(factors[0])
    if mask is not None:
        model = CPTensor(None, factors).to_tensor()
        residual = float(xp.linalg.vector_norm(xp.where(mask, X - model, xp.zeros_like(X))))
        return residual / math.sqrt(norm_x_sq) if norm_x_sq > 0 else residual
    last = len(factors) - 1
    M = _xp.mttkrp(xp, X, factors, last) if product is None else product(factors, last)
    grams = [f.T @ f for f in factors]
    V = _xp.gram_hadamard(xp, grams, last, factors[0])
    result = _xp.SweepResult(float(xp.sum(M * factors[last])), float(xp.sum(V * grams[last])), False)
    return _xp.relative_error(norm_x_sq, result)


def check_fixed_modes(fixed_modes, ndim: int) -> tuple[int, ...]:
    """The modes of tensorly's ``fixed_modes``: modes whose factor keeps its start. The last mode cannot be
    fixed (the error formula and the placement of the weights need it updated).
    """
    if fixed_modes is None:
        return ()
    if isinstance(fixed_modes, (str, bytes)) or not hasattr(fixed_modes, "__iter__"):
        raise TypeError(f"fixed_modes must be a sequence of mode indices, got {fixed_modes!r}")
    modes = []
    for m in fixed_modes:
        if isinstance(m, (bool, np.bool_)) or not isinstance(m, numbers.Integral):
            raise TypeError(f"fixed_modes must hold integers, got {fixed_modes!r}")
        if not 0 <= int(m) < ndim - 1:
            raise ValueError(
                f"fixed_modes entries must be in [0, {ndim - 1}) (the last mode, {ndim - 1}, is always updated: "
                f"move the mode to fix with np.moveaxis), got {fixed_modes!r}"
            )
        modes.append(int(m))
    return tuple(sorted(set(modes)))
