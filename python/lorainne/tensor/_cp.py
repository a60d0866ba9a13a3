"""CP decomposition by alternating least squares (ALS), nonnegative CP by HALS, regularized and
masked (incomplete) CP.

``cp`` validates once, picks a backend (:func:`lorainne._backend.resolve`) and runs either the
Rust sweep loop (``lorainne._core.cp_als``: dense NumPy float32/float64, plain or ridge ALS) or
the xp reference (``_xp.py``: every option, any array-API library).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype, resolve
from .._validation import as_float_array, check_int, check_n_threads, check_random_state
from .._warnings import ConvergenceWarning
from . import _xp
from ._structures import CPTensor, _as_cp_pair, unfold

logger = logging.getLogger("lorainne")

INITS = ("svd", "random")


# --------------------------------------------------------------------------- validation


def check_tensor(X, name: str = "X"):
    """A float32/float64 array of order >= 2 (integers promoted to float64), finite, non-empty."""
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"{name} must be an array or a SparseTensor, got {type(X).__name__}")
    if isinstance(X, np.ndarray) and X.dtype.kind == "O":
        raise TypeError(f"{name} has unsupported dtype object: use float32 or float64")
    if len(X.shape) < 2:
        raise ValueError(f"{name} must have at least 2 modes, got an array of shape {tuple(X.shape)}")
    return as_float_array(X, name)


def check_nonnegative_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_tol0(tol: Any) -> float:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= float(tol) < 1):
        raise ValueError(f"tol must be a number in [0, 1) (0 runs exactly n_iter_max iterations), got {tol!r}")
    return float(tol)


def check_mask(mask, X, xp):
    if mask is None:
        return None
    if not hasattr(mask, "shape") or tuple(mask.shape) != tuple(X.shape):
        raise ValueError(f"mask must have the shape of X {tuple(X.shape)}, got {tuple(getattr(mask, 'shape', ()))}")
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


def _eps(dtype) -> float:
    return float(np.finfo(numpy_dtype(dtype)).eps)


# --------------------------------------------------------------------------- initialization


def _gaussian(xp, rng, shape, dtype, like):
    block = rng.standard_normal(shape).astype(numpy_dtype(dtype), copy=False)
    return xp.asarray(block, device=device(like))


def sketched_left_vectors(X, mode: int, k: int, rng, *, rust: bool = False, n_threads: int | None = None, oversample: int = 10):
    """The ``k`` leading left singular vectors and values of ``X_(mode)`` (see :func:`svd_init`)."""
    from ._structures import edge_mode_product, mode_product

    xp = array_namespace(X)
    size = X.shape[mode]
    rest = 1
    for n, s in enumerate(X.shape):
        if n != mode:
            rest *= int(s)
    width = min(k + oversample, size, rest)
    sketch = [
        _gaussian(xp, rng, (s, width), X.dtype, X) if n != mode else xp.zeros((s, width), dtype=X.dtype, device=device(X))
        for n, s in enumerate(X.shape)
    ]
    if rust:
        Y = core().mttkrp(np.ascontiguousarray(X), [np.ascontiguousarray(f) for f in sketch], mode, n_threads)
    else:
        Y = _xp.mttkrp(xp, X, sketch, mode)
    Q, _ = xp.linalg.qr(Y)
    B = unfold(edge_mode_product(X, Q.T, mode, n_threads) if rust else mode_product(X, Q.T, mode), mode)  # (width, rest)
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
    beyond the rank of an unfolding are Gaussian."""
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
            extra = _gaussian(xp, rng, (size, rank - k), X.dtype, X) / math.sqrt(size)
            U = xp.concat([U, extra], axis=1)
        factors.append(xp.abs(U) if nonnegative else U)
    return factors


def random_init(X, rank: int, rng, nonnegative: bool = False) -> list:
    xp = array_namespace(X)
    factors = [_gaussian(xp, rng, (size, rank), X.dtype, X) for size in X.shape]
    return [xp.abs(f) for f in factors] if nonnegative else factors


def _given_init(init, X, rank: int, nonnegative: bool) -> list:
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


def initial_factors(X, rank: int, init, rng, nonnegative: bool, n_threads: int | None = None, rust: bool = False) -> list:
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or a CPTensor, got {init!r}")
        return svd_init(X, rank, rng, nonnegative, n_threads, rust) if init == "svd" else random_init(X, rank, rng, nonnegative)
    return _given_init(init, X, rank, nonnegative)


# --------------------------------------------------------------------------- the ALS loop


class _Run:
    """The outcome of one ALS run: factors (weights folded in), errors, the stop reason."""

    def __init__(self, factors, errors, status):
        self.factors, self.errors, self.status = factors, errors, status

    @property
    def final_error(self) -> float:
        return self.errors[-1] if self.errors else math.inf


def _report(callback, verbose, factors, errors, xp) -> bool:
    """Log and call the callback after a sweep; True means the callback asked to stop."""
    if verbose:
        logger.info("cp: sweep %d, relative error %.6g", len(errors), errors[-1])
    if callback is None:
        return False
    state = CPTensor(xp.ones((factors[0].shape[1],), dtype=factors[0].dtype, device=device(factors[0])), list(factors), n_iter=len(errors), errors=errors)
    return bool(callback(state, errors[-1]))


def als_xp(X, factors, *, n_iter_max, tol, l2, l1, nonnegative, mask, callback, verbose, rust_sweep=None) -> _Run:
    """The xp reference loop (every option). ``rust_sweep(data, factors) -> (factors, degenerate,
    error)`` replaces the sweep by the Rust one (the masked case on NumPy: EM imputation here,
    the sweeps in Rust)."""
    xp = array_namespace(X)
    eps = _eps(X.dtype)
    floor = _xp.error_floor(eps)
    factors = list(factors)
    grams = [f.T @ f for f in factors]
    errors: list[float] = []
    if mask is not None:
        observed = xp.where(mask, X, xp.zeros_like(X))
        norm_x_sq = float(xp.linalg.vector_norm(observed)) ** 2
        count = float(xp.sum(xp.astype(mask, X.dtype)))
        mean = float(xp.sum(observed)) / count
        data = xp.where(mask, X, xp.full(X.shape, mean, dtype=X.dtype, device=device(X)))
    else:
        data = X
        norm_x_sq = float(xp.linalg.vector_norm(X)) ** 2
    status = "max_iter"
    for _ in range(n_iter_max):
        if rust_sweep is not None:
            factors, degenerate = rust_sweep(data, factors)
            result = _xp.SweepResult(0.0, 0.0, degenerate)
        else:
            result = _xp.sweep(xp, data, factors, grams, l2=l2, l1=l1, nonnegative=nonnegative)
        if mask is not None:
            model = CPTensor(None, factors).to_tensor()
            residual = xp.where(mask, X - model, xp.zeros_like(X))
            error = float(xp.linalg.vector_norm(residual))
            errors.append(error / math.sqrt(norm_x_sq) if norm_x_sq > 0 else error)
            data = xp.where(mask, X, model)
        else:
            errors.append(_xp.relative_error(norm_x_sq, result))
        if (l2 or l1) and rust_sweep is None:  # the Rust sweep balances itself
            _xp.balance(xp, factors, grams, l2, l1)
        if _report(callback, verbose, factors, errors, xp):
            status = "callback"
            break
        state = _xp.stop_state(errors, result.degenerate, tol, floor, eps)
        if state is not None:
            status = state
            break
    return _Run(factors, errors, status)


_STATUS = {0: "max_iter", 1: "converged", 2: "stalled"}


def _rust_sweep(l2, l1, nonnegative, n_threads):
    """One Rust sweep on NumPy data (for the EM loop of masked CP)."""

    def run(data, factors):
        factors, _, _, degenerate = core().cp_als(
            np.ascontiguousarray(data), [np.ascontiguousarray(f) for f in factors], n_iter_max=1, tol=-1.0, l2_reg=l2, n_threads=n_threads, norm_x_sq=1.0, nonnegative=nonnegative, l1_reg=l1
        )
        return list(factors), bool(degenerate)

    return run


def als_rust(X, factors, *, n_iter_max, tol, l2, l1=0.0, nonnegative=False, callback, verbose, n_threads) -> _Run:
    """The Rust loop (dense NumPy: ALS, or HALS for nonnegative / l1). With a callback or
    verbose logging the loop is driven from here one sweep at a time (same stopping rule)."""
    X = np.ascontiguousarray(X)
    factors = [np.ascontiguousarray(f) for f in factors]

    def kernel(X, factors, n_iter, tol, l2, n_threads, norm_x_sq=None):
        return core().cp_als(X, factors, n_iter_max=n_iter, tol=tol, l2_reg=l2, n_threads=n_threads, norm_x_sq=norm_x_sq, nonnegative=nonnegative, l1_reg=l1)

    if callback is None and not verbose:
        factors, errors, status, _ = kernel(X, factors, n_iter_max, tol, l2, n_threads)
        return _Run(list(factors), [float(e) for e in errors], _STATUS[status])
    eps = _eps(X.dtype)
    floor = _xp.error_floor(eps)
    errors: list[float] = []
    status = "max_iter"
    norm_x_sq = float(np.dot(X.reshape(-1).astype(np.float64, copy=False), X.reshape(-1).astype(np.float64, copy=False)))
    for _ in range(n_iter_max):
        factors, one, _, degenerate = kernel(X, factors, 1, -1.0, l2, n_threads, norm_x_sq)
        factors = list(factors)
        errors.append(float(one[0]))
        if _report(callback, verbose, factors, errors, array_namespace(X)):
            status = "callback"
            break
        state = _xp.stop_state(errors, bool(degenerate), tol, floor, eps)
        if state is not None:
            status = state
            break
    return _Run(factors, errors, status)


# --------------------------------------------------------------------------- public


def cp(
    X,
    rank: int,
    *,
    init="svd",
    n_iter_max: int = 100,
    tol: float = 1e-8,
    nonnegative: bool = False,
    l2_reg: float = 0.0,
    l1_reg: float = 0.0,
    mask=None,
    n_init: int = 1,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: int = 0,
    callback: Callable | None = None,
) -> CPTensor:
    """CP (CANDECOMP/PARAFAC) decomposition by alternating least squares.

    Fits ``X ~ sum_r w_r a_0[:, r] o a_1[:, r] o ... o a_{N-1}[:, r]``. Each sweep updates the
    factors in mode order 0..N-1, each by the exact least-squares solution
    ``A_n = X_(n) K_n pinv(V_n)`` where ``X_(n) K_n`` is the MTTKRP (``X_(n)`` the Kolda-Bader
    mode-n unfolding, ``K_n`` the Khatri-Rao product of the other factors, neither ever formed)
    and ``V_n`` the Hadamard product of the other factors' Gram matrices. From the same start and
    without regularization the iterates are those of tensorly's ``parafac``.

    The relative error ``||X - model||_F / ||X||_F`` is computed after every sweep from the last
    MTTKRP and the Gram matrices (``||X||^2 - 2 <M_{N-1}, A_{N-1}> + sum(V * G_{N-1})``: no
    reconstruction). The loop stops when it changed by less than ``tol`` between two sweeps (the
    tolerance is raised to ``4 eps / error``, the resolution of that formula, which only matters
    in float32), or when the error is below ``3 sqrt(eps)`` (an exact fit).

    Parameters
    ----------
    X : array of order N >= 2, or SparseTensor
        float32 or float64 (integers are promoted to float64); NumPy, CuPy, torch, ... Not modified.
    rank : int
        Number of components R >= 1 (may exceed a mode's size).
    init : {"svd", "random"} or CPTensor, default "svd"
        "svd": the leading left singular vectors of each unfolding, by a randomized range finder
        with a Khatri-Rao-structured Gaussian sketch (two passes over X per mode, no unfolded
        copy; uses ``random_state``); columns beyond an unfolding's rank are Gaussian. "random": Gaussian
        factors. A CPTensor (or ``(weights, factors)``) is used as given (weights pulled into
        the last factor).
    n_iter_max : int, default 100
        Maximum number of sweeps.
    tol : float, default 1e-8
        Stopping tolerance on the change of the relative error; 0 runs exactly ``n_iter_max``
        sweeps.
    nonnegative : bool, default False
        Nonnegative factors by HALS column updates. X must have no negative entries.
    l2_reg, l1_reg : float, default 0
        Ridge penalty ``l2_reg/2 sum_n ||A_n||^2`` and sparsity penalty ``l1_reg sum_n |A_n|_1``
        (the l1 case uses column (HALS-type) updates with soft thresholding). After each sweep the
        columns of each component are rescaled so the penalty is equal across modes (the model is
        unchanged; the penalty is then smallest for that model).
    mask : boolean array of X's shape, optional
        True where X is observed. Missing entries are imputed by EM: each sweep fits the tensor
        completed with the current model. The error is measured on the observed entries.
    n_init : int, default 1
        Number of runs; the first starts from ``init``, the others from random starts. The run
        with the smallest final error is returned.
    random_state : None, int, numpy Generator or RandomState
        Seed of the randomized SVD and of random starts (drawn on the host).
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
        "auto": the Rust sweeps for NumPy input and SparseTensor (with ``mask``, the EM
        imputation between Rust sweeps runs in NumPy), the xp reference for other array
        libraries.
    n_threads : int, optional
        Threads of the Rust kernels (default: all cores).
    verbose : int, default 0
        Log each sweep's error at INFO level on the ``lorainne`` logger.
    callback : callable, optional
        ``callback(state: CPTensor, rel_error: float) -> bool`` after each sweep; True stops.

    Returns
    -------
    CPTensor
        Unit-norm columns with the scales in ``weights`` (sorted decreasing), in X's array library
        and dtype; ``n_iter``, ``errors`` (one per sweep) and ``converged`` set. Warns
        :class:`lorainne.ConvergenceWarning` when ``n_iter_max`` is reached with ``tol > 0``, or
        when the run stalled (the model became rank-deficient, e.g. collapsed or zero columns
        from a degenerate start): ``converged`` is then False.

    Raises
    ------
    ValueError
        NaN/Inf in X, order < 2, empty X, rank < 1, an unknown init or backend, an init or mask
        of the wrong shape, negative penalties or tol, negative entries with ``nonnegative=True``.
    TypeError
        Complex, object or float16 dtypes; a non-boolean mask; a callback that is not callable.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import cp, factor_match_score
    >>> rng = np.random.default_rng(0)
    >>> true = [rng.standard_normal((n, 3)) for n in (20, 15, 10)]
    >>> X = np.einsum("ir,jr,kr->ijk", *true)
    >>> model = cp(X, 3, random_state=0)
    >>> model.converged, model.errors[-1] < 1e-6
    (True, True)
    >>> factor_match_score(model, (None, true)) > 0.9999
    True
    """
    from ._sparse import SparseTensor, cp_sparse

    rank = check_int(rank, "rank", low=1)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_tol0(tol)
    l2 = check_nonnegative_real(l2_reg, "l2_reg")
    l1 = check_nonnegative_real(l1_reg, "l1_reg")
    n_init = check_int(n_init, "n_init", low=1)
    n_threads = check_n_threads(n_threads)
    verbose = check_int(verbose, "verbose", low=0)
    callback = check_callback(callback)
    if not isinstance(nonnegative, (bool, np.bool_)):
        raise TypeError(f"nonnegative must be a bool, got {nonnegative!r}")
    rng = check_random_state(random_state)
    if isinstance(X, SparseTensor):
        if mask is not None:
            raise ValueError("mask is not supported with a SparseTensor: its missing entries are zeros")
        return cp_sparse(X, rank, init=init, n_iter_max=n_iter_max, tol=tol, nonnegative=nonnegative, l2=l2, l1=l1,
                         n_init=n_init, rng=rng, backend=backend, n_threads=n_threads, verbose=verbose, callback=callback)
    X = check_tensor(X, "X")
    xp = array_namespace(X)
    mask = check_mask(mask, X, xp)
    if nonnegative and bool(xp.any(X < 0)):
        raise ValueError("X has negative entries, but nonnegative=True")
    chosen = resolve(X, backend=backend, rust_kernel=isinstance(X, np.ndarray))

    best: _Run | None = None
    for attempt in range(n_init):
        start = init if attempt == 0 else "random"
        fill = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
        factors = initial_factors(fill, rank, start, rng, nonnegative, n_threads, rust=chosen == "rust")
        if n_iter_max == 0:
            run = _Run(factors, [], "max_iter")
        elif chosen == "rust" and mask is not None:
            run = als_xp(X, factors, n_iter_max=n_iter_max, tol=tol, l2=l2, l1=l1, nonnegative=nonnegative, mask=mask,
                         callback=callback, verbose=verbose, rust_sweep=_rust_sweep(l2, l1, nonnegative, n_threads))
        elif chosen == "rust":
            run = als_rust(X, factors, n_iter_max=n_iter_max, tol=tol, l2=l2, l1=l1, nonnegative=nonnegative, callback=callback,
                           verbose=verbose, n_threads=n_threads)
        else:
            run = als_xp(X, factors, n_iter_max=n_iter_max, tol=tol, l2=l2, l1=l1, nonnegative=nonnegative, mask=mask,
                         callback=callback, verbose=verbose)
        if verbose and n_init > 1:
            logger.info("cp: run %d of %d: %s after %d sweeps, error %.6g", attempt + 1, n_init, run.status, len(run.errors), run.final_error)
        if best is None or run.final_error < best.final_error:
            best = run
    return finish(best, tol, "cp", n_iter_max)


def finish(run: _Run, tol: float, name: str, n_iter_max: int) -> CPTensor:
    converged = run.status == "converged"
    if run.status == "stalled":
        warnings.warn(
            f"{name}: stalled after {len(run.errors)} sweeps at relative error {run.final_error:.4g}: the model is rank-deficient "
            "(collapsed or zero components, typical of a degenerate start); try init='svd', another random_state, or a smaller rank",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif run.status == "max_iter" and tol > 0 and n_iter_max > 0:
        change = f"still changing by {abs(run.errors[-2] - run.errors[-1]):.3g}" if len(run.errors) >= 2 else "after a single sweep"
        warnings.warn(
            f"{name}: reached n_iter_max={n_iter_max} with relative error {run.final_error:.4g} ({change}; tol={tol:g})",
            ConvergenceWarning,
            stacklevel=3,
        )
    xp = array_namespace(run.factors[0])
    ones = xp.ones((run.factors[0].shape[1],), dtype=run.factors[0].dtype, device=device(run.factors[0]))
    result = CPTensor(ones, run.factors, n_iter=len(run.errors), errors=run.errors, converged=converged)
    return result.normalize()
