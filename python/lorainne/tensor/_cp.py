"""CP decomposition by alternating least squares (ALS), nonnegative CP by HALS, regularized and
masked (incomplete) CP.

``cp`` validates once, picks a backend (:func:`lorainne._backend.resolve`) and runs either the
Rust sweep loop (``lorainne._core.cp_als``: dense NumPy float32/float64, plain or ridge ALS) or
the xp reference (``_xp.py``: every option, any array-API library).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype, resolve
from .._validation import check_int, check_n_threads, check_random_state, check_verbose
from . import _dask, _dask_sparse, _xp
from ._als import (
    RUST_STATUS,
    Run,
    StopRule,
    check_callback,
    check_fixed_modes,
    check_mask,
    check_nonnegative_real,
    check_tensor,
    check_tol0,
    end_of_sweep,
    finish,
    initial_factors,
    report_start,
    start_error,
    unscaled_callback,
)
from ._guard import check_cp_rank, scale_exponent, times_power_of_two
from ._sparse import SparseTensor, cp_sparse
from ._structures import CPTensor

logger = logging.getLogger("lorainne")


# --------------------------------------------------------------------------- the ALS loop


def als_xp(
    X, factors, *, n_iter_max, tol, l2, l1, nonnegative, mask, callback, verbose, rust_sweep=None, fixed=()
) -> Run:
    """The xp reference loop (every option). ``rust_sweep(data, factors) -> (factors, degenerate,
    error)`` replaces the sweep by the Rust one (the masked case on NumPy: EM imputation here,
    the sweeps in Rust). The modes in ``fixed`` keep their factors (no balancing of the penalties then).
    """
    xp = array_namespace(X)
    stop = StopRule(tol, X.dtype)
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
            result = _xp.sweep(xp, data, factors, grams, l2=l2, l1=l1, nonnegative=nonnegative, fixed=fixed)
        if mask is not None:
            model = CPTensor(None, factors).to_tensor()
            residual = xp.where(mask, X - model, xp.zeros_like(X))
            error = float(xp.linalg.vector_norm(residual))
            errors.append(error / math.sqrt(norm_x_sq) if norm_x_sq > 0 else error)
            data = xp.where(mask, X, model)
        else:
            errors.append(_xp.relative_error(norm_x_sq, result))
        if (l2 or l1) and rust_sweep is None and not fixed:  # the Rust sweep balances itself
            _xp.balance(xp, factors, grams, l2, l1)
        state = end_of_sweep(stop, result.degenerate, callback, verbose, factors, errors, xp)
        if state is not None:
            status = state
            break
    return Run(factors, errors, status)


def _core_cp_als(X, factors, *, n_iter, tol, l2, l1, nonnegative, n_threads, norm_x_sq=None):
    """``_core.cp_als`` on C-contiguous NumPy data (no copy of what already is)."""
    return core().cp_als(
        np.ascontiguousarray(X),
        [np.ascontiguousarray(f) for f in factors],
        n_iter_max=n_iter,
        tol=tol,
        l2_reg=l2,
        n_threads=n_threads,
        norm_x_sq=norm_x_sq,
        nonnegative=nonnegative,
        l1_reg=l1,
    )


def _rust_sweep(l2, l1, nonnegative, n_threads):
    """One Rust sweep on NumPy data (for the EM loop of masked CP)."""

    def run(data, factors):
        factors, _, _, degenerate = _core_cp_als(
            data, factors, n_iter=1, tol=-1.0, l2=l2, l1=l1, nonnegative=nonnegative, n_threads=n_threads, norm_x_sq=1.0
        )
        return list(factors), bool(degenerate)

    return run


def als_rust(X, factors, *, n_iter_max, tol, l2, l1=0.0, nonnegative=False, callback, verbose, n_threads) -> Run:
    """The Rust loop (dense NumPy: ALS, or HALS for nonnegative / l1). With a callback or
    verbose logging the loop is driven from here one sweep at a time (same stopping rule).
    """
    X = np.ascontiguousarray(X)
    factors = [np.ascontiguousarray(f) for f in factors]

    def kernel(X, factors, n_iter, tol, l2, n_threads, norm_x_sq=None):
        return _core_cp_als(
            X,
            factors,
            n_iter=n_iter,
            tol=tol,
            l2=l2,
            l1=l1,
            nonnegative=nonnegative,
            n_threads=n_threads,
            norm_x_sq=norm_x_sq,
        )

    if callback is None and not verbose:
        factors, errors, status, _ = kernel(X, factors, n_iter_max, tol, l2, n_threads)
        return Run(list(factors), [float(e) for e in errors], RUST_STATUS[status])
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    norm_x_sq = float(
        np.dot(X.reshape(-1).astype(np.float64, copy=False), X.reshape(-1).astype(np.float64, copy=False))
    )
    for _ in range(n_iter_max):
        factors, one, _, degenerate = kernel(X, factors, 1, -1.0, l2, n_threads, norm_x_sq)
        factors = list(factors)
        errors.append(float(one[0]))
        state = end_of_sweep(stop, degenerate, callback, verbose, factors, errors, array_namespace(X))
        if state is not None:
            status = state
            break
    return Run(factors, errors, status)


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
    verbose: bool | int = 0,
    callback: Callable | None = None,
    normalize_factors: bool = True,
    fixed_modes=None,
    callback_at_init: bool = False,
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
        Any finite scale: data whose largest magnitude is below ``2^-128`` or above ``2^128``
        (float32: ``2^-16``, ``2^16``) is decomposed after an exact power-of-two rescaling and the
        weights are scaled back, so ``cp(c * X)`` has the weights ``c`` times those of ``cp(X)``.
        A ``dask.array.Array`` runs on its workers (MTTKRP per chunk, tree reduction, NumPy factors
        on the client); one whose chunks are ``sparse.COO`` (the ``sparse`` package, fill value 0)
        runs each chunk's entries through the Rust sparse MTTKRP of ``SparseTensor``, with the same
        iterates as ``cp(SparseTensor)`` from the same start.
    rank : int
        Number of components, ``1 <= R <= prod(shape)`` (may exceed a mode's size). A rank above
        the number of entries of X is a ValueError (every tensor has CP rank at most
        ``prod(shape) / max(shape)``: ranks up to ``prod(shape)`` are accepted, as tensorly accepts
        them, but do not fit better); a rank whose factors cannot fit in memory (about
        ``8 (4 sum(I_n) R + 4 N R^2)`` bytes in float64) is a MemoryError, raised before any
        allocation.
    init : {"svd", "random", "jennrich"} or CPTensor, default "svd"
        "svd": the leading left singular vectors of each unfolding, by a randomized range finder
        with a Khatri-Rao-structured Gaussian sketch (two passes over X per mode, no unfolded
        copy; uses ``random_state``); columns beyond an unfolding's rank are Gaussian. "random": Gaussian
        factors. "jennrich": the algebraic start by simultaneous diagonalization
        (:func:`lorainne.tensor.jennrich`), exact on noiseless data when two modes have full column
        rank; dense tensors only. A CPTensor (or ``(weights, factors)``) is used as given (weights pulled into
        the last factor, as tensorly does); it is copied, never modified.
    n_iter_max : int, default 100
        Maximum number of sweeps.
    tol : float, default 1e-8
        Stopping tolerance on the change of the relative error; 0 runs exactly ``n_iter_max``
        sweeps. (tensorly's ``parafac`` also defaults to ``tol=1e-8`` on the change of its
        relative reconstruction error; its ``non_negative_parafac`` uses 1e-8 as well.)
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
        Threads of the Rust kernels (default: all cores; on a Dask tensor of sparse chunks, per
        chunk, default 1: the workers already run chunks in parallel).
    verbose : bool or int, default 0
        Log each sweep's error at INFO level on the ``lorainne`` logger.
    callback : callable, optional
        ``callback(state: CPTensor, rel_error: float) -> bool`` after each sweep; True stops.
    normalize_factors : bool, default True
        True: unit-norm columns with the scales in ``weights``, sorted by decreasing weight.
        False (tensorly's default): the factors as the last sweep left them, ``weights`` all ones,
        components in their original order (fixed factors stay exactly as given).
    fixed_modes : sequence of int, optional
        As tensorly's: modes whose factors keep their start (a given CPTensor, or the SVD or
        random start). The last mode is always updated (tensorly warns and updates it; here it
        is a ValueError). Runs the xp reference sweeps (on NumPy, in NumPy); the penalties are
        then not balanced across modes.
    callback_at_init : bool, default False
        Also call ``callback`` once on the start, before the first sweep (``state.n_iter == 0``),
        with the start's relative error, as tensorly's ``parafac`` does. True returned then
        stops before any sweep.

    Returns
    -------
    CPTensor
        Unit-norm columns with the scales in ``weights`` (sorted decreasing; see
        ``normalize_factors``), in X's array library
        and dtype; ``n_iter``, ``errors`` (one per sweep) and ``converged`` set. Warns
        :class:`lorainne.ConvergenceWarning` when ``n_iter_max`` is reached with ``tol > 0``, or
        when the run stalled (the model became rank-deficient, e.g. collapsed or zero columns
        from a degenerate start): ``converged`` is then False.

    Raises
    ------
    ValueError
        NaN/Inf in X, order < 2, empty X, rank < 1 or above ``prod(shape)``, an
        unknown init or backend, an init or mask of the wrong shape, negative penalties or tol,
        negative entries with ``nonnegative=True``, ``fixed_modes`` out of range or holding the
        last mode.
    MemoryError
        A rank whose factors cannot fit in this machine's memory (checked before allocating).
    TypeError
        Complex, object or float16 dtypes; a non-boolean mask; a callback that is not callable; a Dask
        array of sparse chunks other than ``sparse.COO``.

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
    rank = check_int(rank, "rank", low=1)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_tol0(tol)
    l2 = check_nonnegative_real(l2_reg, "l2_reg")
    l1 = check_nonnegative_real(l1_reg, "l1_reg")
    n_init = check_int(n_init, "n_init", low=1)
    n_threads = check_n_threads(n_threads)
    verbose = check_verbose(verbose)
    callback = check_callback(callback)
    if not isinstance(nonnegative, (bool, np.bool_)):
        raise TypeError(f"nonnegative must be a bool, got {nonnegative!r}")
    for flag, value in (("normalize_factors", normalize_factors), ("callback_at_init", callback_at_init)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{flag} must be a bool, got {value!r}")
    rng = check_random_state(random_state)
    sparse_chunks = _dask_sparse.has_sparse_chunks(X)  # sparse.COO chunks: the Rust sparse MTTKRP per chunk
    if sparse_chunks or isinstance(X, SparseTensor):
        if mask is not None:
            what = "on a Dask tensor of sparse chunks" if sparse_chunks else "with a SparseTensor"
            raise ValueError(f"mask is not supported {what}: its missing entries are zeros")
        solver = _dask_sparse.cp_sparse_chunks if sparse_chunks else cp_sparse
        return solver(
            X,
            rank,
            init=init,
            n_iter_max=n_iter_max,
            tol=tol,
            nonnegative=nonnegative,
            l2=l2,
            l1=l1,
            n_init=n_init,
            rng=rng,
            backend=backend,
            n_threads=n_threads,
            verbose=verbose,
            callback=callback,
            normalize=bool(normalize_factors),
            fixed=check_fixed_modes(fixed_modes, X.ndim),
            callback_at_init=bool(callback_at_init),
        )
    X = check_tensor(X, "X")
    xp = array_namespace(X)
    fixed = check_fixed_modes(fixed_modes, X.ndim)
    check_cp_rank(rank, X.shape, np.dtype(numpy_dtype(X.dtype)).itemsize)
    mask = check_mask(mask, X, xp)
    if nonnegative and bool(xp.any(X < 0)):
        raise ValueError("X has negative entries, but nonnegative=True")
    chosen = resolve(X, backend=backend, rust_kernel=isinstance(X, np.ndarray))
    if chosen == "dask" and mask is not None:
        raise ValueError("mask is not supported on a Dask tensor: fill the missing entries, or compute X first")
    if fixed and chosen == "rust":
        chosen = "numpy"  # the Rust loop updates every mode
    exponent = scale_exponent(float(xp.max(xp.abs(X))), X.dtype)
    X = times_power_of_two(X, -exponent)
    callback = unscaled_callback(callback, exponent)

    best: Run | None = None
    for attempt in range(n_init):
        start = init if attempt == 0 else "random"
        fill = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
        if chosen == "dask":  # NumPy factors on the client; MTTKRP per chunk on the workers
            factors = _dask.initial_factors(fill, rank, start, rng, nonnegative)
        else:
            factors = initial_factors(fill, rank, start, rng, nonnegative, n_threads, rust=chosen == "rust")
        if not isinstance(start, str):
            factors[-1] = times_power_of_two(factors[-1], -exponent)
        if callback_at_init and callback is not None:
            norm_x_sq = float(xp.linalg.vector_norm(fill)) ** 2
            stop_now = report_start(callback, factors, start_error(fill, factors, norm_x_sq, mask=mask))
        else:
            stop_now = False
        if stop_now:
            run = Run(factors, [], "callback")
        elif n_iter_max == 0:
            run = Run(factors, [], "max_iter")
        else:
            common = dict(
                n_iter_max=n_iter_max,
                tol=tol,
                l2=l2,
                l1=l1,
                nonnegative=nonnegative,
                callback=callback,
                verbose=verbose,
            )
            if chosen == "rust" and mask is not None:
                run = als_xp(X, factors, **common, mask=mask, rust_sweep=_rust_sweep(l2, l1, nonnegative, n_threads))
            elif chosen == "dask":
                run = _dask.als(X, factors, **common, fixed=fixed)
            elif chosen == "rust":
                run = als_rust(X, factors, **common, n_threads=n_threads)
            else:
                run = als_xp(X, factors, **common, mask=mask, fixed=fixed)
        if verbose and n_init > 1:
            logger.info(
                "cp: run %d of %d: %s after %d sweeps, error %.6g",
                attempt + 1,
                n_init,
                run.status,
                len(run.errors),
                run.final_error,
            )
        if best is None or run.final_error < best.final_error:
            best = run
    return finish(best, tol, "cp", n_iter_max, normalize=bool(normalize_factors), exponent=exponent)
