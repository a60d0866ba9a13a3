"""Randomized estimates of the diagonal of a matrix known through products: Hutchinson's diagonal
estimator (Bekas, Kokiopoulou and Saad 2007), Diag++ (Baston and Nakatsukasa 2022) and the
exchangeable XDiag (Epperly, Tropp and Webber 2024).

XDiag averages over i the Diag++-like estimator that uses span(A Omega_{-i}) for the low-rank
part and the sign vector omega_i for the residual. With A Omega = Q R, every leave-one-out basis
is a downdate of Q: span(A Omega_{-i}) = Q (I - s_i s_i^T), s_i = R^{-T} e_i / ||R^{-T} e_i||, so
all m estimates cost two blocks of m products (A Omega and A^T Q) and O(n m^2) work.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._exact_scaling import rescaled, times_power_of_two
from .._operators import MatrixOperator
from .._validation import check_option, check_random_state
from ._common import _backend_for, _check_count, _draw, _eps, _f64, _square_operator

DIAGONAL_METHODS = ("xdiag", "diag++", "hutchinson")


class DiagonalEstimate(NamedTuple):
    """An estimate of diag(A); unpacks as ``(values, error_estimate, standard_errors, n_matvec)``.

    ``values`` (n,) is in A's array library (float64 for explicit float64 input, else A's dtype);
    ``standard_errors`` (n,) estimates the standard error of each entry (the spread of the
    per-vector estimates over sqrt(count)); ``error_estimate`` = ||standard_errors||_2 estimates
    ||values - diag(A)||_2. ``n_matvec`` counts products with A and A^T.
    """

    values: Any
    error_estimate: float
    standard_errors: Any
    n_matvec: int


def _spread(xp, samples):
    """Per-row standard error of the mean of the columns of ``samples`` (n x m)."""
    m = samples.shape[1]
    if m < 2:
        return xp.full((samples.shape[0],), math.inf, dtype=samples.dtype)
    mean = xp.mean(samples, axis=1)
    var = xp.sum((samples - mean[:, None]) ** 2, axis=1) / (m - 1)
    return xp.sqrt(var / m)


def _lift_diagonal(xp, R, eps: float):
    m = R.shape[0]
    d = xp.linalg.diagonal(R)
    floor = max(float(xp.max(xp.abs(d))), 1e-300) * eps * m
    lifted = xp.where(xp.abs(d) < floor, xp.where(d < 0, -floor + 0 * d, floor + 0 * d), d)
    return R + (lifted - d)[None, :] * xp.eye(m, dtype=R.dtype)


def _hutchinson(op: MatrixOperator, matmat, rng, m: int):
    xp = op.xp
    Om = _draw(op, rng, op.shape[0], m, "rademacher")
    samples = _f64(xp, Om) * _f64(xp, matmat(Om))  # omega (.) A omega, sign vectors: omega (.) omega = 1
    return xp.mean(samples, axis=1), _spread(xp, samples), m


def _diagpp(op: MatrixOperator, matmat, rmatmat, rng, budget: int):
    """Diag++: k = budget // 3 sketch vectors, diag(Q Q^T A) exact (k products with A^T), Hutchinson
    on (I - Q Q^T) A with the rest.
    """
    xp, n = op.xp, op.shape[0]
    k = budget // 3
    ell = budget - 2 * k
    Q = xp.linalg.qr(_f64(xp, matmat(_draw(op, rng, n, k, "rademacher"))))[0]
    Z = _f64(xp, rmatmat(xp.astype(Q, op.dtype)))  # A^T Q
    head = xp.sum(Q * Z, axis=1)  # diag(Q Q^T A)
    Om = _draw(op, rng, n, ell, "rademacher")
    AOm = _f64(xp, matmat(Om))
    samples = _f64(xp, Om) * (AOm - Q @ (Z.T @ _f64(xp, Om)))
    return head + xp.mean(samples, axis=1), _spread(xp, samples), 2 * k + ell


def _xdiag(op: MatrixOperator, matmat, rmatmat, rng, budget: int):
    """XDiag with m = budget // 2 sign vectors: the n x m matrix of leave-one-out estimates
    est_i = diag(Q (I - s_i s_i^T) Q^T A) + omega_i (.) (y_i - Q (I - s_i s_i^T) Z^T omega_i).
    """
    xp, n = op.xp, op.shape[0]
    m = budget // 2
    Om = _draw(op, rng, n, m, "rademacher")
    Y = _f64(xp, matmat(Om))
    Q, R = xp.linalg.qr(Y)
    Z = _f64(xp, rmatmat(xp.astype(Q, op.dtype)))  # A^T Q
    Om64 = _f64(xp, Om)
    T = Z.T @ Om64  # column i: Z^T omega_i = Q^T A omega_i
    S = xp.linalg.inv(_lift_diagonal(xp, R, _eps(op))).T  # R^{-T}
    S = S / xp.linalg.vector_norm(S, axis=0)[None, :]
    QS, ZS = Q @ S, Z @ S
    st = xp.sum(S * T, axis=0)  # s_i^T t_i
    head = xp.sum(Q * Z, axis=1)  # diag(Q Q^T A)
    samples = head[:, None] - QS * ZS + Om64 * (Y - Q @ T + QS * st[None, :])
    return xp.mean(samples, axis=1), _spread(xp, samples), 2 * m


def diagonal(
    A,
    n_matvec: int,
    *,
    method: str = "xdiag",
    symmetric: bool = False,
    random_state=None,
    backend: str = "auto",
) -> DiagonalEstimate:
    """Randomized estimate of diag(A) from at most ``n_matvec`` products with A (and A^T).

    Methods (m = ``n_matvec``):

    * ``"xdiag"``: XDiag (Epperly, Tropp and Webber 2024): m/2 sign vectors, m/2 products with A
      and m/2 with A^T; the exchangeable (leave-one-out) combination of Diag++. Exact on matrices
      of rank < m/2, and the most accurate on decaying spectra.
    * ``"diag++"``: Diag++ (Baston and Nakatsukasa 2022): m/3 sketch, m/3 products with A^T, m/3
      Hutchinson.
    * ``"hutchinson"``: Hutchinson's diagonal estimator with m sign vectors (Bekas et al. 2007).

    When ``n_matvec >= n`` the diagonal is read exactly from the n products A e_j.

    Parameters
    ----------
    A : array (n, n), SciPy sparse matrix, LinearOperator or object with ``matmat``/``rmatmat``
        Square; float32 or float64 (integers are promoted). Not modified.
    n_matvec : int
        The budget, >= 1 (a product with A^T counts as one). Budgets below a method's minimum
        (4 for ``"xdiag"``, 3 for ``"diag++"``) fall back to Hutchinson.
    method : {"xdiag", "diag++", "hutchinson"}
    symmetric : bool, default False
        A is symmetric: products with A^T are products with A (operators without ``rmatmat``).
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "numpy", "cupy", "xp"}
        The estimators run on the xp path (no Rust kernel: ``"rust"`` raises ``ValueError``).

    Returns
    -------
    DiagonalEstimate

    Raises
    ------
    ValueError
        Non-square, empty or non-finite A; ``n_matvec < 1``; unknown method or backend; an
        operator without A^T products when ``symmetric=False`` and the method needs them.
    TypeError
        Unsupported dtypes; ``symmetric`` not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.trace import diagonal
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    >>> A = (U * 0.7 ** np.arange(400)) @ U.T
    >>> est = diagonal(A, 80, random_state=0)          # 40 sign vectors, 40 products with A and A^T
    >>> error = float(np.linalg.norm(est.values - np.diag(A)))
    >>> error / float(np.linalg.norm(np.diag(A))) < 1e-4, 0.3 < est.error_estimate / error < 3
    (True, True)
    """
    A, scale = rescaled(A)
    op = _square_operator(A)
    n_matvec = _check_count(n_matvec, "n_matvec")
    method = check_option(method, "method", DIAGONAL_METHODS)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    rng = check_random_state(random_state)
    _backend_for(A, op, backend, rust_kernel=False)
    xp, n = op.xp, op.shape[0]
    matmat = op.matmat
    rmatmat = op.matmat if symmetric else op.rmatmat
    if n_matvec >= n:  # exact: the n products A e_j
        values = xp.zeros((n,), dtype=xp.float64, device=op.device)
        for start in range(0, n, 256):
            stop = min(n, start + 256)
            E = xp.astype(
                xp.arange(n, device=op.device)[:, None] == xp.arange(start, stop, device=op.device)[None, :], op.dtype
            )
            block = xp.sum(_f64(xp, matmat(E)) * _f64(xp, E), axis=1)
            values = values + block
        estimate, errors, used = values, xp.zeros_like(values), n
    else:
        if n_matvec < {"xdiag": 4, "diag++": 3, "hutchinson": 1}[method]:
            method = "hutchinson"
        if method == "hutchinson":
            estimate, errors, used = _hutchinson(op, matmat, rng, n_matvec)
        elif method == "diag++":
            estimate, errors, used = _diagpp(op, matmat, rmatmat, rng, n_matvec)
        else:
            estimate, errors, used = _xdiag(op, matmat, rmatmat, rng, n_matvec)
    if not bool(xp.all(xp.isfinite(estimate))):
        raise ValueError(f"diagonal: method {method!r} gave a non-finite estimate; scale the operator A")
    out_dtype = op.dtype if op.dtype != xp.float64 else xp.float64
    estimate = times_power_of_two(xp.astype(estimate, out_dtype), -scale)
    errors = times_power_of_two(xp.astype(errors, out_dtype), -scale)
    total = float(xp.linalg.vector_norm(_f64(xp, errors)))
    return DiagonalEstimate(estimate, total, errors, used)
