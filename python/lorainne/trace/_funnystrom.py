"""funNyström++ (Persson and Kressner 2023): tr f(A) for a symmetric positive semidefinite A and an
operator-monotone f with f(0) = 0 (log(1 + x), x / (x + mu), sqrt(x), ...).

1. A Nyström approximation A_hat = U diag(lambda) U^T from ``rank`` Gaussian products (the stable
   shifted construction of the trace estimators); for operator-monotone f, f(A_hat) = U f(lambda) U^T
   is a near-optimal low-rank approximation of f(A) (Persson and Kressner's main result), and
   tr f(A_hat) = sum f(lambda) is its trace.
2. The residual tr f(A) - tr f(A_hat) is estimated by Hutchinson with ``n_vectors`` sign vectors,
   psi^T f(A) psi by Lanczos (Gauss) quadrature of ``degree`` steps, minus psi^T U f(lambda) U^T psi.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .._backend import to_host
from .._exact_scaling import max_abs
from .._validation import check_int, check_random_state
from ._common import TraceEstimate, _backend_for, _draw, _eps, _f64, _square_operator, _std_error
from ._estimators import _shifted_nystrom
from ._recurrences import _gauss_quadrature, _lanczos_xp

MONOTONE_FUNCTIONS = ("log1p",)


def _function(f) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(f, str):
        if f != "log1p":
            raise ValueError(f"f must be a callable or one of {MONOTONE_FUNCTIONS}, got {f!r}")
        return np.log1p
    if not callable(f):
        raise TypeError(f"f must be a callable or one of {MONOTONE_FUNCTIONS}, got {type(f).__name__}")
    zero = float(np.asarray(f(np.zeros(1)), dtype=np.float64)[0])
    if abs(zero) > 1e-12:
        raise ValueError(f"funnystrom++ needs f(0) = 0 (an operator-monotone f vanishing at 0), got f(0) = {zero}")
    return lambda x: np.asarray(f(x), dtype=np.float64)


def funnystrom_trace(
    A, f, *, rank: int, n_vectors: int = 0, degree: int = 20, random_state=None, backend: str = "auto"
) -> TraceEstimate:
    """Tr f(A) by funNyström++ for a symmetric PSD A and an operator-monotone f with f(0) = 0.

    Parameters
    ----------
    A : array (n, n), SciPy sparse matrix or operator
        Symmetric positive semidefinite (not checked beyond the Nyström core's Cholesky factor).
    f : callable or "log1p"
        Applied elementwise to eigenvalues (NumPy float64 arrays); operator monotone on [0, inf)
        with f(0) = 0, for example ``np.log1p`` or ``lambda x: x / (x + mu)``.
    rank : int
        Gaussian sketch vectors of the Nyström approximation (``rank`` products), 1 <= rank <= n.
    n_vectors : int, default 0
        Hutchinson vectors correcting the residual (each ``degree`` products); 0 returns
        tr f(A_hat) alone (error_estimate ``inf``), below tr f(A) for operator-monotone f.
    degree : int, default 20
        Lanczos steps per Hutchinson vector.
    random_state, backend
        As :func:`lorainne.trace.trace`.

    Returns
    -------
    TraceEstimate
        ``n_matvec`` = rank + n_vectors * degree.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.trace import funnystrom_trace
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    >>> lam = 100 * 0.8 ** np.arange(400)
    >>> A = (U * lam) @ U.T
    >>> est = funnystrom_trace(A, "log1p", rank=40, n_vectors=10, random_state=0)
    >>> bool(abs(est.value - np.log1p(lam).sum()) / np.log1p(lam).sum() < 1e-3)
    True
    """
    op = _square_operator(A)
    fun = _function(f)
    n = op.shape[0]
    rank = check_int(rank, "rank", low=1, high=n)
    n_vectors = check_int(n_vectors, "n_vectors", low=0)
    degree = check_int(degree, "degree", low=1)
    rng = check_random_state(random_state)
    _backend_for(A, op, backend, rust_kernel=False)
    xp = op.xp
    if max_abs(A) == 0.0:
        return TraceEstimate(0.0, 0.0, 0)
    Omega = _draw(op, rng, n, rank, "gaussian")
    B, _, nu = _shifted_nystrom(xp, op, Omega, op.matmat(Omega))
    Ub, sigma, _ = xp.linalg.svd(B, full_matrices=False)
    lam = np.maximum(to_host(sigma, np.float64) ** 2 - nu, 0.0)
    f_lam = fun(lam)
    head = float(np.sum(f_lam))
    if n_vectors == 0:
        return TraceEstimate(head, math.inf, rank)
    Psi = _draw(op, rng, n, n_vectors, "rademacher")
    V0 = Psi / math.sqrt(n)
    alpha, beta, length = _lanczos_xp(op.matmat, V0, min(degree, n), _eps(op))
    nodes, weights = _gauss_quadrature(alpha, beta, length)
    quad = n * np.sum(weights * np.where(weights > 0, fun(np.maximum(nodes, 0.0)), 0.0), axis=1)
    UtPsi = to_host(xp.matrix_transpose(Ub) @ _f64(xp, Psi), np.float64)
    low_rank = np.sum(f_lam[:, None] * UtPsi**2, axis=0)
    samples = quad - low_rank
    return TraceEstimate(head + float(np.mean(samples)), _std_error(np, samples), rank + n_vectors * min(degree, n))
