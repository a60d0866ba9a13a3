"""CP-ALS for complex data (complex64/complex128) on the array-API path, with ``cp``'s keywords and
result: the normal equations with conjugate transposes of :func:`confac` (no constraints).

``cp`` itself accepts float data only; the one-line dispatch ``if complex: return complex_cp(...)``
at the top of ``_cp.cp`` makes this its complex path (see the branch notes).
"""

from __future__ import annotations

from collections.abc import Callable

from array_api_compat import array_namespace

from .._validation import check_int, check_random_state
from ._als import warn_unconverged
from ._confac import _check_constraints, _jennrich_modes, _jennrich_start, _loop
from ._cplx import as_like, check_data, draw, leading_left, sq_norm
from ._modelkit import check_array_mask, check_common
from ._structures import CPTensor, _as_cp_pair

INITS = ("svd", "random", "jennrich")


def complex_cp(
    X,
    rank: int,
    *,
    init="svd",
    n_iter_max: int = 100,
    tol: float = 1e-8,
    mask=None,
    n_init: int = 1,
    random_state=None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
    normalize_factors: bool = True,
) -> CPTensor:
    """CP decomposition of a real or complex 3-way tensor by ALS with conjugate transposes:
    ``A = X_(1) conj(C kr B) pinv((C^T conj C) * (B^T conj B))`` and alike for B and C.

    Parameters
    ----------
    X : 3-D array
        complex64/complex128 (or float32/float64), finite. Not modified.
    rank : int
    init : {"svd", "random", "jennrich"} or CPTensor
        "svd": the leading left singular vectors of each unfolding (conjugate-transposed Gram),
        the first scaled to X's norm. "jennrich": simultaneous diagonalization on two modes of
        size >= rank (exact on noiseless data). "random": complex Gaussian factors.
    n_iter_max, tol, mask, n_init, random_state, verbose, callback
        As for :func:`cp` (the callback receives the current factors as a CPTensor).
    normalize_factors : bool, default True
        Unit-norm columns, the norms in ``weights`` (real, in X's dtype).

    Returns
    -------
    CPTensor
        In X's array library and dtype, with ``n_iter``, ``errors``, ``converged``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.tensor._complex_cp import complex_cp
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3)) for n in (9, 8, 7))
    >>> X = np.einsum("ir,jr,kr->ijk", A, B, C)
    >>> model = complex_cp(X, 3, init="jennrich", tol=1e-12)
    >>> bool(np.linalg.norm(model.to_tensor() - X) < 1e-8 * np.linalg.norm(X))
    True
    """
    rank, n_iter_max, tol, callback, verbose = check_common(rank, n_iter_max, tol, callback, verbose)
    X = check_data(X, "X", ndim=3)
    mask = check_array_mask(mask, X)
    n_init = check_int(n_init, "n_init", low=1)
    rng = check_random_state(random_state)
    xp = array_namespace(X)
    cons = _check_constraints(None, rank, X)
    best = None
    for attempt in range(n_init):
        factors = _start(X, rank, init if attempt == 0 else "random", rng, cons, mask)
        run = _loop(X, factors, cons, {}, mask, n_iter_max, tol, callback, verbose)
        if best is None or run.final_error < best.final_error:
            best = run
    warn_unconverged(best, tol, "complex_cp", n_iter_max, stacklevel=2)
    ones = xp.ones((rank,), dtype=X.dtype)
    result = CPTensor(
        ones, list(best.factors), n_iter=len(best.errors), errors=best.errors, converged=best.status == "converged"
    )
    return result.normalize() if normalize_factors else result


def _start(X, rank, init, rng, cons, mask):
    xp = array_namespace(X)
    if not isinstance(init, str):
        weights, factors = _as_cp_pair(init, "init")
        if len(factors) != 3:
            raise ValueError(f"init has {len(factors)} factors, X has 3 modes")
        out = []
        for n, f in enumerate(factors):
            if tuple(f.shape) != (X.shape[n], rank):
                raise ValueError(f"init factor {n} must have shape ({X.shape[n]}, {rank}), got {tuple(f.shape)}")
            out.append(as_like(f, X, f"init factor {n}"))
        if weights is not None:
            out[2] = out[2] * as_like(weights, X, "init weights")[None, :]
        return out
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS} or a CPTensor, got {init!r}")
    data = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
    if init == "jennrich":
        if _jennrich_modes(X, cons, rank) is None:
            raise ValueError(f"init='jennrich' needs two modes of size >= rank={rank}, got shape {tuple(X.shape)}")
        return _jennrich_start(data, cons, rank, rng, {})
    if init == "random":
        return [draw(xp, rng, (X.shape[n], rank), X.dtype, X) for n in range(3)]
    out = []
    for n in range(3):
        unfolded = xp.reshape(xp.moveaxis(data, n, 0), (X.shape[n], -1))
        k = min(rank, X.shape[n])
        U = leading_left(xp, unfolded, k)
        if k < rank:
            U = xp.concat([U, draw(xp, rng, (X.shape[n], rank - k), X.dtype, X)], axis=1)
        out.append(U)
    out[0] = out[0] * sq_norm(xp, data) ** 0.5
    return out
