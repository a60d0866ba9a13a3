"""Nonnegative matrix factorization by HALS (the order-2 case of nonnegative CP), dense or SciPy sparse."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import is_scipy_sparse, resolve
from .._validation import (
    as_float_array,
    check_int,
    check_n_threads,
    check_random_state,
    check_verbose,
    float_dtype_of,
)
from . import _xp
from ._als import Run, StopRule, check_callback, check_nonnegative_real, check_tol0, end_of_sweep, warn_unconverged
from ._guard import scale_exponent, times_power_of_two


class NMFResult:
    """``X ~ W @ H`` with W (m, rank) and H (rank, n) nonnegative; unpacks as ``W, H``.

    Attributes: ``W``, ``H``, ``n_iter``, ``errors`` (relative error after each sweep),
    ``converged``.
    """

    __slots__ = ("W", "H", "n_iter", "errors", "converged")

    def __init__(self, W, H, *, n_iter=0, errors=(), converged=False):
        self.W, self.H = W, H
        self.n_iter, self.errors, self.converged = int(n_iter), [float(e) for e in errors], bool(converged)

    def __iter__(self):
        return iter((self.W, self.H))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.W, self.H)[index]

    def __repr__(self) -> str:
        shapes = f"W={tuple(self.W.shape)}, H={tuple(self.H.shape)}"
        return f"NMFResult({shapes}, n_iter={self.n_iter}, converged={self.converged})"


def _check_matrix(X):
    if is_scipy_sparse(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        dtype = float_dtype_of(X, "X")
        if any(s == 0 for s in X.shape):
            raise ValueError(f"X must not be empty, got shape {X.shape}")
        csr = X.tocsr().astype(dtype, copy=True)
        csr.sum_duplicates()
        if not np.all(np.isfinite(csr.data)):
            raise ValueError("X contains NaN or infinity")
        if np.any(csr.data < 0):
            raise ValueError("X has negative entries: NMF needs a nonnegative matrix")
        return csr
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"X must be an array or a SciPy sparse matrix, got {type(X).__name__}")
    if isinstance(X, np.ndarray) and X.dtype.kind == "O":
        raise TypeError("X has unsupported dtype object: use float32 or float64")
    X = as_float_array(X, "X", ndim=2)
    if bool(array_namespace(X).any(X < 0)):
        raise ValueError("X has negative entries: NMF needs a nonnegative matrix")
    return X


def nmf(
    X,
    rank: int,
    *,
    init="svd",
    n_iter_max: int = 200,
    tol: float = 1e-8,
    l2_reg: float = 0.0,
    l1_reg: float = 0.0,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> NMFResult:
    """Nonnegative matrix factorization ``X ~ W @ H`` by HALS (hierarchical ALS).

    Each sweep updates the columns of W, then the rows of H, one at a time by their exact
    nonnegative least-squares solutions (Cichocki and Phan 2009; scikit-learn's "cd" solver is
    the same update). The relative error is computed from the last products, without forming
    ``W @ H``, and the loop stops when it changed by less than ``tol``.

    Parameters
    ----------
    X : array (m, n) or SciPy sparse matrix
        Nonnegative, float32/float64 (integers promoted). Not modified.
    rank : int
        Number of components (>= 1).
    init : {"svd", "random"} or (W, H), default "svd"
        "svd": absolute values of a randomized SVD (NNDSVD-like); "random": uniform entries
        scaled to the data.
    n_iter_max : int, default 200
    tol : float, default 1e-8
        Stopping tolerance on the change of the relative error between two sweeps; 0 runs
        exactly ``n_iter_max`` sweeps. (scikit-learn's ``NMF`` defaults to ``tol=1e-4``, measured
        on the error relative to the first iteration's.)
    l2_reg, l1_reg : float, default 0
        Penalties ``l2_reg/2 (||W||^2 + ||H||^2) + l1_reg (|W|_1 + |H|_1)``, with the balancing
        step of :func:`cp` after each sweep.
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "numpy", "cupy", "xp"}
        HALS runs the xp reference (its products are BLAS or SciPy sparse products).
    n_threads : int, optional
        Accepted for symmetry (BLAS picks its threads).
    verbose : bool or int, default 0
    callback : callable, optional
        ``callback(state, rel_error) -> bool`` with a CPTensor state; True stops.

    Returns
    -------
    NMFResult
        ``(W, H)`` in X's array library (NumPy for sparse X) and dtype; unpacks as ``W, H``. The
        triple of scikit-learn's ``non_negative_factorization`` is ``result.W, result.H,
        result.n_iter``. Warns :class:`lorainne.ConvergenceWarning` (``converged`` False) when all
        ``n_iter_max`` sweeps ran with ``tol > 0``, even when the stopping test is met at the last
        one or the error is already small (scikit-learn's rule).

    Raises
    ------
    ValueError
        Negative entries, NaN/Inf, ndim != 2, rank < 1, bad penalties or tol; an ``init`` pair of
        the wrong shapes or with NaN, infinite or negative entries.
    TypeError
        Unsupported dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import nmf
    >>> rng = np.random.default_rng(0)
    >>> W0 = rng.random((40, 4)) * (rng.random((40, 4)) < 0.5)
    >>> H0 = rng.random((4, 30)) * (rng.random((4, 30)) < 0.5)
    >>> result = nmf(W0 @ H0, 4, random_state=0, n_iter_max=1000)
    >>> W, H = result
    >>> result.converged, bool(np.linalg.norm(W0 @ H0 - W @ H) < 1e-6), bool(W.min() >= 0)
    (True, True, True)
    """
    rank = check_int(rank, "rank", low=1)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_tol0(tol)
    l2 = check_nonnegative_real(l2_reg, "l2_reg")
    l1 = check_nonnegative_real(l1_reg, "l1_reg")
    check_n_threads(n_threads)
    verbose = check_verbose(verbose)
    callback = check_callback(callback)
    rng = check_random_state(random_state)
    X = _check_matrix(X)
    sparse = is_scipy_sparse(X)
    resolve(X, backend=backend, rust_kernel=False)
    if rank > X.shape[0] * X.shape[1]:
        raise ValueError(f"rank must be at most the number of entries of X ({X.shape[0] * X.shape[1]}), got {rank}")
    # Data whose squares under- or overflow is decomposed as X / 2^e (exact) and W, H scaled back by
    # 2^(e/2) each (e even). Only the unregularized problem is scale-equivariant, and a given start
    # is used as given: those are left alone.
    exponent = 0
    if not (l1 or l2) and isinstance(init, str):
        if sparse:
            peak = float(X.data.max()) if X.nnz else 0.0  # X is nonnegative
        else:
            peak = float(array_namespace(X).max(X))
        exponent = scale_exponent(peak, X.dtype)
        exponent += exponent % 2
    if exponent:
        if sparse:
            X = X.copy()
            X.data = times_power_of_two(X.data, -exponent)
        else:
            X = times_power_of_two(X, -exponent)
    if sparse:
        xp = array_namespace(np.empty(0))
        transposed = X.T.tocsr()
        norm_x_sq = float(np.dot(X.data, X.data))
        like = np.empty(0, dtype=X.dtype)

        def product(factors, mode):
            return np.asarray(X @ factors[1]) if mode == 0 else np.asarray(transposed @ factors[0])
    else:
        xp = array_namespace(X)
        norm_x_sq = float(xp.linalg.vector_norm(X)) ** 2
        like = X
        product = None
    factors = _initial(X, rank, init, rng, xp, like, sparse)
    grams = [f.T @ f for f in factors]
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    for _ in range(n_iter_max):
        result = _xp.sweep(xp, None if sparse else X, factors, grams, l2=l2, l1=l1, nonnegative=True, product=product)
        errors.append(_xp.relative_error(norm_x_sq, result))
        if l2 or l1:
            _xp.balance(xp, factors, grams, l2, l1)
        state = end_of_sweep(stop, result.degenerate, callback, verbose, factors, errors, xp)
        if state is not None:
            status = state
            break
    if status == "converged" and len(errors) == n_iter_max:
        # As scikit-learn: a run that used every sweep warns, even when the error is already small.
        status = "max_iter"
    warn_unconverged(Run(factors, errors, status), tol, "nmf", n_iter_max, stacklevel=2)
    W, H = (times_power_of_two(f, exponent // 2) for f in (factors[0], factors[1].T))
    return NMFResult(W, H, n_iter=len(errors), errors=errors, converged=status == "converged")


def _initial(X, rank, init, rng, xp, like, sparse):
    from ..randomized import randomized_svd

    m, n = X.shape
    dtype = np.dtype(str(X.dtype).split(".")[-1])
    if isinstance(init, str):
        if init == "svd":
            k = min(rank, m, n)
            U, S, Vt = randomized_svd(X, k, random_state=rng)
            root = xp.sqrt(S)
            W, Ht = xp.abs(U) * root[None, :], xp.abs(Vt.T) * root[None, :]
            if k < rank:
                scale = math.sqrt(float(xp.sum(X) if not sparse else X.sum()) / (m * n * rank))
                W = xp.concat(
                    [W, xp.asarray(rng.random((m, rank - k)).astype(dtype) * scale, device=device(like))], axis=1
                )
                Ht = xp.concat(
                    [Ht, xp.asarray(rng.random((n, rank - k)).astype(dtype) * scale, device=device(like))], axis=1
                )
            return [W, Ht]
        if init == "random":
            total = float(X.sum()) if sparse else float(xp.sum(X))
            scale = math.sqrt(max(total, 0.0) / (m * n * rank))
            return [
                xp.asarray(rng.random((m, rank)).astype(dtype) * scale, device=device(like)),
                xp.asarray(rng.random((n, rank)).astype(dtype) * scale, device=device(like)),
            ]
        raise ValueError(f"init must be 'svd', 'random' or a (W, H) pair, got {init!r}")
    try:
        W, H = init
    except (TypeError, ValueError):
        raise TypeError(f"init must be 'svd', 'random' or a (W, H) pair, got {type(init).__name__}") from None
    if tuple(W.shape) != (m, rank) or tuple(H.shape) != (rank, n):
        raise ValueError(
            f"init (W, H) must have shapes ({m}, {rank}) and ({rank}, {n}), got {tuple(W.shape)} and {tuple(H.shape)}"
        )
    W = xp.astype(xp.asarray(W, device=device(like)), like.dtype, copy=True)
    Ht = xp.astype(xp.asarray(H, device=device(like)).T, like.dtype, copy=True)
    for name, factor in (("W", W), ("H", Ht)):
        if not bool(xp.all(xp.isfinite(factor))):
            raise ValueError(f"init {name} contains NaN or infinity")
        if bool(xp.any(factor < 0)):
            raise ValueError(f"init {name} has negative entries: NMF needs a nonnegative start")
    return [W, Ht]
