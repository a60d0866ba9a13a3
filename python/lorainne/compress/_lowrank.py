"""Low-rank factorization of one weight matrix: truncated, Fisher-weighted, activation-aware and whitened SVD.

Every method is one weighted truncated SVD: ``W' = L^{-1} SVD_r(L W R) R^{-1}`` with
``L = I`` or ``diag(d)`` (fwsvd) and ``R = I``, ``diag(s)`` (asvd) or a square root of the
activation covariance (svd-llm). The weighting is built once by :func:`weighting`, which
:func:`allocate_ranks` reuses for the spectra it ranks.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array

from .._backend import to_host
from .._validation import as_float_array, check_int, check_option
from ..randomized import randomized_svd
from ._stats import ActivationStats

METHODS = ("svd", "fwsvd", "asvd", "svd-llm")
SOLVERS = ("auto", "exact", "randomized")
# Eigen fallback of the whitening: eigenvalues below this fraction of the largest are raised to it.
EIGEN_FLOOR = 1e-12
# A Cholesky factor whose squared diagonal ratio exceeds this is treated as ill-conditioned.
CHOLESKY_MAX_COND = 1e12
# Diagonal weights (fwsvd rows, asvd channels) below this fraction of the largest are raised to it.
DIAG_FLOOR = 1e-8


@dataclass(frozen=True, eq=False)
class LowRankFactors:
    """A rank-r factorization ``W ~ A @ B``; unpacks as ``A, B``.

    Attributes
    ----------
    A : array (out, r)
        ``U sqrt(Sigma)`` mapped back through the method's left weighting (in the input's layout:
        (in, r) with ``transpose=True``).
    B : array (r, in)
        ``sqrt(Sigma) V^T`` mapped back through the right weighting ((r, out) with ``transpose=True``).
    method : str
    singular_values : numpy array (r,)
        The kept singular values of the weighted matrix (``W S`` for svd-llm).
    weight_error : float
        ``||W - A B||_F``.
    data_error : float or None
        ``||(W - A B) X||_F``, computed as ``sqrt(tr(E C E^T))`` from the covariance ``C = X X^T``
        (never from X); None when no covariance was given.
    predicted_error : float
        The error of the weighted problem the method solves, ``sqrt(||M||_F^2 - sum(kept sigma^2))``
        for the weighted matrix M: the weight error for svd, the data error for svd-llm (exact when
        the covariance's Cholesky factor was used), the weighted errors for fwsvd and asvd.
    """

    A: Any
    B: Any
    method: str
    singular_values: np.ndarray
    weight_error: float
    data_error: float | None
    predicted_error: float

    def __iter__(self):
        yield self.A
        yield self.B

    @property
    def rank(self) -> int:
        return int(self.A.shape[1])

    @property
    def n_params(self) -> int:
        return int(self.A.shape[0] * self.A.shape[1] + self.B.shape[0] * self.B.shape[1])

    def to_dense(self):
        """``A @ B``."""
        return self.A @ self.B


@dataclass(frozen=True, eq=False)
class Weighting:
    """``M = L W R`` and how to map its factors back (``A = L^{-1} U``, ``B = V^T R^{-1}``)."""

    M: Any  # float64, the input's library and device
    left: Any  # None or d (out,): L = diag(d)
    right_diag: Any  # None or s (in,): R = diag(s)
    right_chol: Any  # None or lower-triangular S (in, in): R = S, C = S S^T
    right_inv: Any  # None or an explicit R^{-1} (in, in) (eigen fallback)
    covariance: Any  # None or C (in, in) float64, for the data error
    exact_whitening: bool  # True when ||M - U S V^T|| is the data error exactly

    def unweight(self, U, Vt):
        xp = array_namespace(U)
        if self.left is not None:
            U = U / self.left[:, None]
        if self.right_diag is not None:
            Vt = Vt / self.right_diag[None, :]
        elif self.right_inv is not None:
            Vt = Vt @ self.right_inv
        elif self.right_chol is not None:
            Vt = _solve_upper_transposed(xp, self.right_chol, Vt)
        return U, Vt


def _solve_upper_transposed(xp, S, Vt):
    """``Vt @ S^{-1}`` for lower-triangular S, as the solution of ``S^T Y^T = Vt^T``."""
    if is_numpy_array(S):
        from scipy.linalg import solve_triangular

        return solve_triangular(S, Vt.T, trans="T", lower=True, check_finite=False).T
    return xp.linalg.solve(S.T, Vt.T).T


def check_covariance(covariance, n_in: int, name: str = "covariance"):
    """A float64 (in, in) covariance (an array or an ActivationStats)."""
    if isinstance(covariance, ActivationStats):
        covariance._check_filled()
        covariance = covariance.covariance
    C = as_float_array(covariance, name, ndim=2)
    if tuple(C.shape) != (n_in, n_in):
        raise ValueError(f"{name} must have shape ({n_in}, {n_in}) (the layer's inputs), got {tuple(C.shape)}")
    xp = array_namespace(C)
    C = xp.astype(C, xp.float64)
    scale = float(xp.max(xp.abs(C)))
    if float(xp.max(xp.abs(C - C.T))) > 1e-8 * max(scale, 1e-300):
        raise ValueError(f"{name} must be symmetric (X X^T)")
    if float(xp.min(xp.linalg.diagonal(C))) < 0:
        raise ValueError(f"{name} has a negative diagonal entry: not a covariance X X^T")
    return C


def _whitening_factor(xp, C):
    """A square root of C: its Cholesky factor when C is well conditioned, else eigenvectors
    scaled by the square roots of the floored eigenvalues. Returns (S or None, S^{-1} or None, exact).
    """
    if float(xp.max(xp.linalg.diagonal(C))) <= 0:
        raise ValueError("covariance is zero: every input channel is dead, the data error is zero for any W")
    try:
        S = xp.linalg.cholesky(C)
        diag = xp.linalg.diagonal(S)
        ok = bool(xp.all(xp.isfinite(S))) and float(xp.min(diag)) > 0
        if ok and (float(xp.max(diag)) / float(xp.min(diag))) ** 2 <= CHOLESKY_MAX_COND:
            return S, None, True
    except Exception:  # LinAlgError (NumPy), RuntimeError (torch), ...: not positive definite
        pass
    values, vectors = xp.linalg.eigh(C)
    floor = EIGEN_FLOOR * float(xp.max(values))
    root = xp.sqrt(xp.clip(values, floor, None))
    return vectors * root[None, :], (vectors / root[None, :]).T, False


def _diag_weights(xp, values, name):
    top = float(xp.max(values))
    if top <= 0:
        raise ValueError(f"{name} is zero everywhere: no weighting can be derived from it")
    return xp.clip(values, DIAG_FLOOR * top, None)


def weighting(W, method: str, *, covariance=None, fisher=None, mean_abs=None, alpha: float = 0.5) -> Weighting:
    """The weighted matrix of ``method`` for a validated float (out, in) W."""
    xp = array_namespace(W)
    out, n_in = W.shape
    W64 = xp.astype(W, xp.float64)
    if isinstance(covariance, ActivationStats) and mean_abs is None and covariance.n_samples > 0:
        mean_abs = covariance.mean_abs
    C = None if covariance is None else check_covariance(covariance, n_in)
    left = right_diag = right_chol = right_inv = None
    exact = False
    if method == "svd":
        M = W64
    elif method == "fwsvd":
        if fisher is None:
            raise ValueError("method='fwsvd' needs fisher (squared per-sample gradients, the shape of W)")
        F = as_float_array(fisher, "fisher", ndim=2)
        if tuple(F.shape) != (out, n_in):
            raise ValueError(f"fisher must have the shape of W {(out, n_in)}, got {tuple(F.shape)}")
        F = xp.astype(F, xp.float64)
        if float(xp.min(F)) < 0:
            raise ValueError("fisher must be nonnegative (squared gradients)")
        left = xp.sqrt(_diag_weights(xp, xp.sum(F, axis=1), "fisher"))
        M = left[:, None] * W64
    elif method == "asvd":
        if mean_abs is None:
            raise ValueError("method='asvd' needs activation statistics: covariance=ActivationStats or mean_abs")
        m = as_float_array(mean_abs, "mean_abs", ndim=1)
        if m.shape[0] != n_in:
            raise ValueError(f"mean_abs must have {n_in} entries (the layer's inputs), got {m.shape[0]}")
        m = xp.astype(m, xp.float64)
        if float(xp.min(m)) < 0:
            raise ValueError("mean_abs must be nonnegative")
        right_diag = _diag_weights(xp, m, "mean_abs") ** alpha
        M = W64 * right_diag[None, :]
    else:  # svd-llm
        if C is None:
            raise ValueError("method='svd-llm' needs covariance (an array X X^T or an ActivationStats)")
        S, S_inv, exact = _whitening_factor(xp, C)
        if S_inv is None:
            right_chol = S
        else:
            right_inv = S_inv
        M = W64 @ S
    return Weighting(M, left, right_diag, right_chol, right_inv, C, exact)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0 <= float(alpha) <= 1):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_energy(energy) -> float:
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not (0 < float(energy) <= 1):
        raise ValueError(f"energy must be a number in (0, 1], got {energy!r}")
    return float(energy)


def truncated_svd(
    M, rank: int, solver: str, random_state, n_oversamples: int = 10, n_power_iter: int = 2, n_threads=None
):
    """(U, S, Vt) of rank ``rank``: exact (``xp.linalg.svd``) or randomized."""
    xp = array_namespace(M)
    k = min(M.shape)
    if solver == "auto":
        solver = "randomized" if (rank <= k // 4 and k >= 64) else "exact"
    if solver == "randomized":
        return randomized_svd(
            M, rank, n_oversamples=n_oversamples, n_power_iter=n_power_iter, random_state=random_state
        )
    U, S, Vt = xp.linalg.svd(M, full_matrices=False)
    return U[:, :rank], S[:rank], Vt[:rank, :]


def data_error_of(E, C) -> float:
    """``sqrt(tr(E C E^T))`` for a residual E and a covariance C (both float64)."""
    xp = array_namespace(E)
    return float(xp.sqrt(xp.clip(xp.sum((E @ C) * E), 0.0, None)))


# The expansion below loses about n eps ||W S||^2 / loss^2 of relative accuracy to cancellation:
# it is used only when the loss is at least this fraction of ||W S||^2, else E C is formed.
EXPANSION_MIN_LOSS = 1e-4


def data_error_low_rank(W, A, B, C, total: float, E) -> float:
    """``sqrt(tr(E C E^T))`` for E = W - A B in O(r in^2) instead of O(out in^2):
    ``tr(W C W^T) - 2 tr(A B C W^T) + tr(A^T A B C B^T)``, with ``tr(W C W^T) = ||W S||_F^2 = total``.
    """
    xp = array_namespace(W)
    BC = B @ C
    cross = float(xp.sum(BC * (A.T @ W)))
    quad = float(xp.sum((A.T @ A) * (BC @ B.T)))
    loss = total - 2 * cross + quad
    if loss < EXPANSION_MIN_LOSS * total:
        return data_error_of(E, C)
    return float(np.sqrt(loss))


def low_rank(
    W,
    rank: int | None = None,
    *,
    method: str = "svd",
    covariance=None,
    fisher=None,
    mean_abs=None,
    alpha: float = 0.5,
    energy: float | None = None,
    solver: str = "auto",
    transpose: bool = False,
    n_oversamples: int = 10,
    n_power_iter: int = 2,
    random_state=None,
    n_threads: int | None = None,
) -> LowRankFactors:
    """Rank-r factorization ``W ~ A @ B`` of a dense layer's weight.

    Layout: a dense layer is ``y = W x`` with W of shape (out, in) (torch ``Linear.weight``); pass
    ``transpose=True`` for an (in, out) weight (``x @ W``: GPT-2 ``Conv1D``, scikit-learn
    ``coefs_``), and the factors come back in that layout, ``W ~ A @ B`` with A (in, r), B (r, out).

    Methods (each a truncated SVD of a weighted matrix, mapped back):

    * ``"svd"``: ``SVD_r(W)``, split as ``A = U sqrt(Sigma)``, ``B = sqrt(Sigma) V^T``.
    * ``"fwsvd"`` (Hsu et al. 2022): row weights ``d_i = sqrt(sum_j F_ij)`` from the Fisher
      information ``F`` (squared per-sample gradients, W's shape); ``A B = D^{-1} SVD_r(D W)``.
    * ``"asvd"`` (Yuan et al. 2023): channel scales ``s_j = mean|x_j|^alpha``;
      ``A B = SVD_r(W S) S^{-1}`` with ``S^{-1}`` folded into B (never formed).
    * ``"svd-llm"`` (Wang et al. 2024): ``S`` = Cholesky factor of the activation covariance
      ``C = X X^T`` (float64), ``A B = SVD_r(W S) S^{-1}``. Then the data loss
      ``||(W - A B) X||_F`` equals the tail ``sqrt(sum_{i>r} sigma_i(W S)^2)`` exactly. When C is
      singular (dead channels) or ill-conditioned (squared diagonal ratio of its Cholesky factor
      above 1e12), S is built from the eigendecomposition of C instead, with eigenvalues below
      1e-12 of the largest raised to that floor; the identity then holds for the floored C, and
      ``data_error`` (always computed from the true C) differs from the tail by at most the floor.

    Parameters
    ----------
    W : array (out, in)
        float32 or float64 (integers promoted); NumPy, CuPy, torch or any array-API array. Not modified.
    rank : int, optional
        1 <= rank <= min(out, in). Exactly one of ``rank`` and ``energy``.
    method : {"svd", "fwsvd", "asvd", "svd-llm"}, default "svd"
    covariance : array (in, in) or ActivationStats, optional
        ``X X^T`` of the layer's inputs (needed by svd-llm; with it ``data_error`` is reported).
        An :class:`ActivationStats` also supplies ``mean_abs`` for asvd.
    fisher : array (out, in), optional
        Fisher information per weight (fwsvd).
    mean_abs : array (in,), optional
        Mean absolute activation per input channel (asvd), if not from an ActivationStats.
    alpha : float in [0, 1], default 0.5
        asvd's exponent; 0 gives plain SVD.
    energy : float in (0, 1], optional
        Choose the smallest rank keeping this fraction of the weighted matrix's ``sum sigma^2``
        (computed with the exact SVD unless ``solver="randomized"``).
    solver : {"auto", "exact", "randomized"}, default "auto"
        "auto" runs :func:`lorainne.randomized_svd` when rank <= min(out, in) / 4 (and
        min(out, in) >= 64), with its accuracy: with the default two power iterations the error is
        within a small factor of the optimal tail for decaying spectra.
    transpose : bool, default False
        W is stored (in, out).
    n_oversamples, n_power_iter : int
        Passed to :func:`lorainne.randomized_svd`. For slowly decaying spectra (sigma_i ~ i^-0.6),
        two power iterations leave the loss about 2% above the optimum at rank n/8 and four
        about 0.5% (benches/RESULTS_compress.md).
    random_state : None, int, numpy Generator or RandomState
    n_threads : int, optional
        Threads of the Rust randomized SVD (default: all cores).

    Returns
    -------
    LowRankFactors
        ``A, B`` in W's library, device and dtype, with ``rank``, ``n_params``, ``weight_error``,
        ``data_error``, ``predicted_error``, ``singular_values``.

    Raises
    ------
    ValueError
        NaN/Inf, W not 2-D, rank outside [1, min(out, in)], both or neither of rank/energy, an
        unknown method or solver, missing or mis-shaped statistics, a non-symmetric covariance.
    TypeError
        Complex, object or float16 dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import ActivationStats, low_rank
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((64, 48))
    >>> X = rng.standard_normal((500, 48)) * np.linspace(0.1, 3, 48)
    >>> stats = ActivationStats().update(X)
    >>> svd = low_rank(W, 16, covariance=stats)
    >>> llm = low_rank(W, 16, method="svd-llm", covariance=stats)
    >>> A, B = llm
    >>> A.shape, B.shape, llm.n_params
    ((64, 16), (16, 48), 1792)
    >>> llm.data_error < svd.data_error
    True
    >>> bool(np.isclose(llm.data_error, np.linalg.norm((W - A @ B) @ X.T)))
    True
    """
    W = as_float_array(W, "W", ndim=2)
    if not isinstance(transpose, bool):
        raise TypeError(f"transpose must be a bool, got {type(transpose).__name__}")
    method = check_option(method, "method", METHODS)
    solver = check_option(solver, "solver", SOLVERS)
    alpha = _check_alpha(alpha)
    n_oversamples = check_int(n_oversamples, "n_oversamples", low=0)
    n_power_iter = check_int(n_power_iter, "n_power_iter", low=0)
    xp = array_namespace(W)
    W_work = W.T if transpose else W
    out, n_in = W_work.shape
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank and energy, got rank={rank!r}, energy={energy!r}")
    if rank is not None:
        rank = check_int(rank, "rank", low=1, high=min(out, n_in))
    else:
        energy = _check_energy(energy)
    weights = weighting(W_work, method, covariance=covariance, fisher=fisher, mean_abs=mean_abs, alpha=alpha)
    M = weights.M
    total = float(xp.sum(M * M))
    if energy is not None:
        if solver == "randomized" and energy < 1 - 1e-7:
            tol = float(np.sqrt(1 - energy))
            U, S, Vt = randomized_svd(M, min(out, n_in), tol=tol, random_state=random_state, n_threads=n_threads)
        else:
            U, S, Vt = xp.linalg.svd(M, full_matrices=False)
        s2 = to_host(S, np.float64) ** 2
        kept = np.cumsum(s2)
        rank = int(min(np.searchsorted(kept, energy * total * (1 - 1e-12)) + 1, len(s2)))
        U, S, Vt = U[:, :rank], S[:rank], Vt[:rank, :]
    else:
        U, S, Vt = truncated_svd(M, rank, solver, random_state, n_oversamples, n_power_iter, n_threads)
    sigma = to_host(S, np.float64)
    root = xp.sqrt(xp.astype(S, xp.float64))
    A, B = weights.unweight(U * root[None, :], root[:, None] * Vt)
    E = xp.astype(W_work, xp.float64) - A @ B
    weight_error = float(xp.linalg.vector_norm(E))
    if weights.covariance is None:
        data_error = None
    elif weights.exact_whitening:  # C = S S^T with M = W S: tr(W C W^T) = ||M||_F^2
        data_error = data_error_low_rank(xp.astype(W_work, xp.float64), A, B, weights.covariance, total, E)
    else:
        data_error = data_error_of(E, weights.covariance)
    predicted = float(np.sqrt(max(total - float(np.sum(sigma**2)), 0.0)))
    A, B = xp.astype(A, W.dtype), xp.astype(B, W.dtype)
    if transpose:
        A, B = B.T, A.T
    return LowRankFactors(A, B, method, sigma, weight_error, data_error, predicted)
