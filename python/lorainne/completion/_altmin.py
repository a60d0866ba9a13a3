"""Low-rank matrix completion by alternating minimization with approximate (CG) or exact row solves."""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from array_api_compat import is_array_api_obj

from .. import _backend
from .._validation import check_int, check_n_threads, check_option, check_random_state
from .._warnings import ConvergenceWarning
from ..randomized import cholesky_qr2
from ._observed import Observed, as_observed
from ._reference import solve_rows_reference
from ._xp import cg_tolerance, relaxation, spectral_basis

logger = logging.getLogger("lorainne")

SOLVERS = ("cg", "exact")
INITS = ("spectral", "random")
BACKENDS = ("auto", "rust", "numpy", "xp")


@dataclass(frozen=True)
class CompletionState:
    """What ``callback`` sees after each iteration: the current factors, ``M ~ U @ V.T``."""

    iteration: int
    U: np.ndarray
    V: np.ndarray

    def predict(self, rows, cols) -> np.ndarray:
        """The completed entries at the coordinates ``(rows[t], cols[t])``."""
        return _predict(self.U, self.V, rows, cols)


@dataclass(frozen=True)
class CompletionResult:
    """A completed matrix ``M ~ U @ V.T``.

    Attributes
    ----------
    U, V : arrays of shape (m, rank) and (n, rank)
        The factors, in the dtype of the observations.
    errors : list of float
        Relative error on the observed entries after each iteration,
        ``||P_Omega(U V^T - M)||_F / ||P_Omega(M)||_F``.
    n_iter : int
        Iterations run (one iteration updates V, then U).
    converged : bool
        Whether the stopping rule was met before ``n_iter_max``.
    cg_iterations : int
        Total CG iterations over all rows and half-steps (0 for ``solver="exact"``).
    underdetermined_rows, underdetermined_cols : int
        Rows / columns with fewer than ``rank`` observations, solved with a ridge (zero
        observations: set to zero), counted at the last iteration.
    """

    U: np.ndarray
    V: np.ndarray
    errors: list
    n_iter: int
    converged: bool
    cg_iterations: int = 0
    underdetermined_rows: int = 0
    underdetermined_cols: int = 0

    def predict(self, rows, cols) -> np.ndarray:
        """The completed entries at the coordinates ``(rows[t], cols[t])``."""
        return _predict(self.U, self.V, rows, cols)

    def to_dense(self) -> np.ndarray:
        """The full completed matrix ``U @ V.T`` (m x n: only for matrices that fit in memory)."""
        return self.U @ self.V.T


def _predict(U, V, rows, cols):
    if isinstance(U, np.ndarray):
        return np.einsum("ij,ij->i", U[np.asarray(rows)], V[np.asarray(cols)])
    from array_api_compat import array_namespace

    xp = array_namespace(U)
    rows, cols = xp.asarray(rows, device=U.device), xp.asarray(cols, device=U.device)
    return xp.sum(xp.take(U, rows, axis=0) * xp.take(V, cols, axis=0), axis=1)


def _observed_products(obs: Observed, scale: float, use_rust: bool, n_threads):
    """``(X -> s A X, Y -> s A^T Y)`` for ``A = P_Omega(M)`` and ``s = scale``: both directions
    row-parallel gathers over the CSR of the rows and of the columns already in ``obs`` (no
    conversion, no scaled copy), in the Rust kernel or, for ``backend="numpy"``, SciPy's. ``X`` and
    ``Y`` are rounded to float32 (the Rust kernel gathers an f32 copy, half the bytes; the sums stay
    float64): a start needs no more.
    """
    if use_rust:
        core = _backend.core()

        def product(indptr, indices, data, X):
            X = np.ascontiguousarray(X, dtype=np.float64)
            return scale * core.completion_csr_product(
                indptr, indices, data, X, n_threads=n_threads, low_precision=True
            )
    else:

        def product(indptr, indices, data, X):
            A = sp.csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, X.shape[0]))
            return scale * np.asarray(A @ np.asarray(X, dtype=np.float32).astype(np.float64))

    return (
        lambda X: product(obs.indptr, obs.indices, obs.data, X),
        lambda Y: product(obs.t_indptr, obs.t_indices, obs.t_data, Y),
    )


def _spectral_start(obs: Observed, rank: int, rng, n_threads, use_rust: bool = True) -> np.ndarray:
    """Top-``rank`` left singular pairs of the rescaled observations ``P_Omega(M) / p``, with the
    rows of the basis whose norm exceeds ``2 sqrt(rank / m)`` (twice that of a perfectly incoherent
    basis) shrunk to that norm (Jain, Netrapalli and Sanghavi 2013's trimming, clipping instead of
    zeroing), re-orthonormalized and scaled by the square roots of the singular values.
    """
    m, n = obs.shape
    p = obs.nnz / (m * n)
    # two power steps: AltMin needs a start in its basin, not converged singular vectors (measured
    # on the 20000 x 10000 benchmark: seven reach 1e-4 in the same number of AltMin iterations, at
    # 16 instead of 5 passes over the observations; one or none take 7 or 8 iterations)
    matmat, rmatmat = _observed_products(obs, 1.0 / p, use_rust, n_threads)
    if use_rust:

        def qr(Y):
            return cholesky_qr2(Y, n_threads=n_threads)
    else:
        qr = np.linalg.qr
    U0, S = spectral_basis(np, matmat, rmatmat, n, rank, rng, qr)
    U0 = np.asarray(U0, dtype=np.float64)
    cap = 2.0 * np.sqrt(rank / m)
    norms = np.linalg.norm(U0, axis=1)
    over = norms > cap
    U0[over] *= (cap / norms[over])[:, None]
    # CholeskyQR2 (Householder where U0 is ill-conditioned) gives R a nonnegative diagonal, the
    # sign convention that the Householder branch sets by hand
    Q, R = qr(U0)
    Q = np.asarray(Q, dtype=np.float64)
    Q *= np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))
    return Q * np.sqrt(np.maximum(np.asarray(S, dtype=np.float64), 0.0))


def _check_reg(reg: Any) -> float:
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not (np.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    return float(reg)


def complete(
    M_observed,
    rank: int,
    *,
    mask=None,
    shape: tuple[int, int] | None = None,
    reg: float = 0.0,
    solver: str = "cg",
    n_iter_max: int = 100,
    tol: float = 1e-10,
    init: str = "spectral",
    callback: Callable[[CompletionState, float], bool] | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> CompletionResult:
    """Low-rank matrix completion by alternating minimization (AltMin).

    Finds ``U`` (m, rank) and ``V`` (n, rank) minimizing
    ``sum_{(i,j) in Omega} (M_ij - <U_i, V_j>)^2 + reg (|U|^2 + |V|^2)`` over the observed set
    ``Omega``. It starts from the spectral estimate (top singular vectors of the rescaled
    observations by subspace iteration with two power steps, with incoherence trimming) and
    alternates: all column regressions with ``U`` fixed, then all row regressions with ``V`` fixed.

    With ``solver="exact"`` each k x k normal matrix is formed and factored, O(|Omega| k^2) per
    iteration. With ``solver="cg"`` (default) each regression is solved approximately by
    preconditioned conjugate gradient from the previous iterate without forming the normal matrix,
    O(|Omega| k) per CG step, as in the robust alternating minimization of Gu, Song, Yin and Zhang
    ("Low rank matrix completion via robust alternating minimization in nearly linear time", ICLR
    2024), which shows AltMin tolerates approximate solves whose error shrinks with the iterate's.
    The preconditioner is the expected normal matrix under uniform sampling, ``(|Omega_i| / n) F^T F
    + reg I`` (one k x k eigendecomposition per half-step), and the CG tolerance is tightened
    geometrically: 0.05 in the first iteration, then ``clip(0.1 * e_t, 1e-14, 0.1)`` with ``e_t``
    the current relative error on ``Omega``, at most ``rank`` CG steps per row. Rows run in
    parallel in Rust with the GIL released. From the third iteration, while the last one cut the
    error by more than half, the column step is over-relaxed, ``V <- V + 1.2 (V_solved - V)`` (U
    stays the exact row solve for that V): a faster linear rate in that regime, plain AltMin once
    progress slows.

    Rows or columns with fewer than ``rank`` observations are solved with the ridge
    ``max(reg, 1e-3 |F|_F^2 / n)`` (a row without observations is zero) and counted in the result.

    Parameters
    ----------
    M_observed : scipy sparse matrix, ndarray or tuple (rows, cols, values)
        The observations: a sparse matrix's stored entries (explicit zeros count as observed); a
        dense array with ``mask`` (True = observed; without ``mask`` the finite entries are
        observed, NaN marks a missing entry); or coordinates and values. Not modified.
    rank : int
        Target rank, ``1 <= rank < min(m, n)``.
    mask : boolean ndarray, optional
        Only with a dense ``M_observed``.
    shape : tuple (m, n), optional
        Only with coordinates (default: one past the largest row and column index).
    reg : float
        Ridge penalty (default 0: plain AltMin).
    solver : {"cg", "exact"}
    n_iter_max : int
        Maximum number of iterations (each updates V then U).
    tol : float
        Stops when the relative error on the observed entries falls below ``tol`` or decreases by
        less than a fraction ``tol`` of itself in one iteration (a noisy or misspecified problem).
    init : {"spectral", "random"}
    callback : callable(state, rel_error) -> bool, optional
        Called after each iteration with a :class:`CompletionState` (``state.predict(rows, cols)``
        gives held-out predictions, e.g. for an RMSE) and the observed relative error; True stops.
    random_state : None, int, Generator or RandomState
    backend : {"auto", "rust", "numpy", "xp"}
        ``"numpy"`` runs the row-by-row NumPy reference (slow; for checking). ``"xp"`` (the default
        for CuPy, torch or other array-API arrays, given dense with ``mask`` or NaN for the missing
        entries) runs the batched array-API path: all rows of a half-step at once on the
        observations padded to the longest row, results in the input's array library and device.
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores).

    Returns
    -------
    CompletionResult
        ``U, V`` in the observations' float dtype (integers give float64; the arithmetic is
        float64 throughout).

    Raises
    ------
    ValueError
        ``rank`` out of range, no observed entry, NaN/infinite observed values, duplicate
        coordinates, bad keyword values.
    TypeError
        Unsupported input type or dtype.

    Examples
    --------
    >>> import numpy as np, lorainne
    >>> rng = np.random.default_rng(0)
    >>> M = rng.standard_normal((60, 3)) @ rng.standard_normal((3, 40))
    >>> mask = rng.random(M.shape) < 0.4
    >>> res = lorainne.complete(M, 3, mask=mask, random_state=0)
    >>> bool(np.linalg.norm(res.to_dense() - M) / np.linalg.norm(M) < 1e-6)
    True
    """
    xp_input = not _backend.is_host_input(M_observed) and is_array_api_obj(M_observed)
    if xp_input or backend == "xp":
        return _complete_xp(
            M_observed, mask, shape, rank, reg, solver, n_iter_max, tol, init, callback, random_state, xp_input
        )
    obs = as_observed(M_observed, mask, shape)
    m, n = obs.shape
    rank, reg, solver, init, n_iter_max = _check_options(obs.shape, rank, reg, solver, init, n_iter_max, tol, callback)
    backend = check_option(backend, "backend", BACKENDS)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    use_rust = backend in ("auto", "rust")
    if use_rust:
        core = _backend.core()

    norm_obs = float(np.linalg.norm(obs.data))
    if norm_obs == 0.0:
        U, V = np.zeros((m, rank)), np.zeros((n, rank))
        return CompletionResult(U.astype(obs.dtype), V.astype(obs.dtype), [0.0], 0, True)

    if init == "spectral":
        U = _spectral_start(obs, rank, rng, n_threads, use_rust)
    else:
        U = rng.standard_normal((m, rank)) * np.sqrt(norm_obs / np.sqrt(obs.nnz * rank))
    V = np.zeros((n, rank))

    def half_step(indptr, indices, data, factor, x, tol_cg, residual=False):
        nf = factor.shape[0]
        gram = factor.T @ factor / nf  # its trace is |F|_F^2 / nf: no second pass over the factor
        reg_under = max(reg, 1e-3 * float(np.trace(gram)))
        if solver == "cg":
            lam, q = np.linalg.eigh(gram)
            lam = np.maximum(lam, 0.0)
        else:
            lam, q = np.zeros(0), np.zeros((0, 0))
        x = np.ascontiguousarray(x, dtype=np.float64)
        args = (indptr, indices, data, factor, x, reg, reg_under, solver, rank, tol_cg, np.ascontiguousarray(q), lam)
        if use_rust:
            return core.completion_solve_rows(*args, n_threads=n_threads, residual=residual)
        return solve_rows_reference(*args, residual=residual)

    errors: list[float] = []
    converged = False
    cg_total, under_rows, under_cols = 0, 0, 0
    err = 1.0
    it = 0
    for it in range(1, n_iter_max + 1):
        tol_cg, omega = cg_tolerance(errors), relaxation(errors)
        V_solved, c1, under_cols, _, _ = half_step(
            obs.t_indptr, obs.t_indices, obs.t_data, np.ascontiguousarray(U), V, tol_cg
        )
        # over-relaxed column step (see _xp.relaxation); U below is the exact row solve for this V
        V = V_solved if omega == 1.0 else V + omega * (V_solved - V)
        # the row half-step returns the observed residual of (U, V): no separate pass for the error
        U, c2, under_rows, _, sq = half_step(
            obs.indptr, obs.indices, obs.data, np.ascontiguousarray(V), U, tol_cg, residual=True
        )
        cg_total += c1 + c2
        new_err = float(np.sqrt(sq)) / norm_obs
        if not np.isfinite(new_err):
            raise ValueError("the iteration diverged (non-finite factors): try reg > 0")
        errors.append(new_err)
        logger.debug("complete: iteration %d, observed relative error %.3e", it, new_err)
        stop = callback is not None and bool(callback(CompletionState(it, U, V), new_err))
        if new_err <= tol or (it > 1 and err - new_err <= tol * err):
            converged = True
        err = new_err
        if converged or stop:
            break
    if not converged and callback_not_stopped(callback, it, n_iter_max):
        warnings.warn(
            f"complete did not converge in {n_iter_max} iterations (observed relative error {err:.3e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    return CompletionResult(
        U.astype(obs.dtype, copy=False),
        V.astype(obs.dtype, copy=False),
        errors,
        it,
        converged,
        cg_total,
        under_rows,
        under_cols,
    )


def _check_options(shape, rank, reg, solver, init, n_iter_max, tol, callback):
    m, n = shape
    if min(m, n) < 2:
        raise ValueError(f"M_observed must be at least 2 x 2, got shape {(m, n)}")
    rank = check_int(rank, "rank", low=1, high=min(m, n) - 1)
    reg = _check_reg(reg)
    solver = check_option(solver, "solver", SOLVERS)
    init = check_option(init, "init", INITS)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=1)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= tol < 1):
        raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    return rank, reg, solver, init, n_iter_max


def _complete_xp(M_observed, mask, shape, rank, reg, solver, n_iter_max, tol, init, callback, random_state, xp_input):
    """The array-API path (``_xp.altmin_xp``): dense arrays of any array-API library, or host input
    with ``backend="xp"`` (NumPy through array_api_compat).
    """
    from array_api_compat import array_namespace

    from ._xp import altmin_xp, host_mask, host_structure, make_layout

    if xp_input:
        if shape is not None:
            raise ValueError("shape is only for M_observed given as (rows, cols, values)")
        xp = array_namespace(M_observed)
        if M_observed.ndim != 2:
            raise ValueError(f"M_observed must be 2-D, got an array of shape {tuple(M_observed.shape)}")
        if not xp.isdtype(M_observed.dtype, ("real floating", "integral")):
            raise TypeError(f"M_observed has unsupported dtype {M_observed.dtype}")
        if mask is not None and (tuple(mask.shape) != tuple(M_observed.shape) or mask.dtype != xp.bool):
            raise ValueError(f"mask must be a boolean array of shape {tuple(M_observed.shape)}")
        mask_h = host_mask(xp, M_observed, mask)
        m, n = mask_h.shape
        indptr, indices, t_indptr, t_indices, perm = host_structure(mask_h)
        if indices.size == 0:
            raise ValueError("M_observed has no observed entries")
        dev = M_observed.device
        Mf = xp.astype(M_observed, xp.float64)
        mask_x = xp.asarray(mask_h, device=dev)
        data = Mf[mask_x]
        if not bool(xp.all(xp.isfinite(data))):
            raise ValueError("M_observed contains NaN or infinity among the observed values")
        t_data = xp.take(data, xp.asarray(perm, device=dev))
        out_dtype = M_observed.dtype if xp.isdtype(M_observed.dtype, "real floating") else xp.float64
    else:
        xp = array_namespace(np.empty(0))
        obs = as_observed(M_observed, mask, shape)
        m, n = obs.shape
        indptr, indices, t_indptr, t_indices = obs.indptr, obs.indices, obs.t_indptr, obs.t_indices
        data, t_data = obs.data, obs.t_data
        out_dtype = obs.dtype
    rank, reg, solver, init, n_iter_max = _check_options((m, n), rank, reg, solver, init, n_iter_max, tol, callback)
    rng = check_random_state(random_state)
    p = indices.size / (m * n)
    if init != "spectral":
        A_spec = None
    elif xp_input:
        A_spec = xp.where(mask_x, Mf, 0.0) / p
    else:
        A_spec = obs.csr() / p
    if float(xp.linalg.vector_norm(data)) == 0.0:
        U, V = xp.zeros((m, rank), dtype=out_dtype), xp.zeros((n, rank), dtype=out_dtype)
        return CompletionResult(U, V, [0.0], 0, True)
    U, V, errors, it, converged, cg_total, under_rows, under_cols = altmin_xp(
        xp,
        (m, n),
        (make_layout(indptr, indices), data),
        (make_layout(t_indptr, t_indices), t_data),
        A_spec,
        rank,
        reg,
        solver,
        n_iter_max,
        tol,
        init,
        rng,
        callback,
        CompletionState,
    )
    if not converged and callback_not_stopped(callback, it, n_iter_max):
        warnings.warn(
            f"complete did not converge in {n_iter_max} iterations (observed relative error {errors[-1]:.3e})",
            ConvergenceWarning,
            stacklevel=3,
        )
    return CompletionResult(
        xp.astype(U, out_dtype), xp.astype(V, out_dtype), errors, it, converged, cg_total, under_rows, under_cols
    )


def callback_not_stopped(callback, it: int, n_iter_max: int) -> bool:
    """True when the loop ran out of iterations (rather than being stopped by the callback)."""
    return callback is None or it == n_iter_max
