"""Randomized trace and spectral-density estimation for matrices known through products.

* :func:`trace` estimates tr(A) from at most ``n_matvec`` products with A: Hutchinson,
  Hutch++ (Meyer, Musco, Musco and Woodruff 2021), Nyström++ (Persson, Cortinovis and Kressner
  2022) and the exchangeable estimators XTrace / XNysTrace (Epperly, Tropp and Webber 2024).
* :func:`trace_function` estimates tr f(A) of a symmetric A by stochastic Lanczos quadrature
  (SLQ) or a Chebyshev expansion.
* :func:`trace_parametric` estimates tr f(t, A) for many values of a parameter t at the cost of
  one estimator: f(t, .) is expanded in Chebyshev polynomials of A and the random vectors are
  shared across t (Matti, He, Kressner and Lam 2025).
* :func:`spectral_density` estimates the Gaussian-smoothed spectral density of A.

Every estimator runs on the ONE xp (array-API) reference written against
``array_api_compat``; random vectors are drawn on the host from a NumPy Generator and moved
with ``xp.asarray(..., device=...)``. The small dense algebra on m x m matrices (m = number of
random vectors) runs in float64. When A is an explicit NumPy matrix (dense or CSR), the
Chebyshev and Lanczos recurrences of :func:`trace_function`, :func:`trace_parametric` and
:func:`spectral_density` run in Rust with the GIL released.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

import numpy as np
import scipy.sparse.linalg

from .._backend import core, is_host_input, is_scipy_sparse, numpy_dtype, resolve, to_host
from .._operators import MatrixOperator, as_operator
from .._validation import check_int, check_n_threads, check_option, check_random_state

TRACE_METHODS = ("auto", "hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace")
FUNCTION_METHODS = ("slq", "chebyshev")
PARAMETRIC_METHODS = ("nystrom++", "hutchinson", "nystrom")
DENSITY_METHODS = ("nystrom++", "kpm", "slq")
NAMED_FUNCTIONS = ("log", "inv", "exp", "sqrt")


class TraceEstimate(NamedTuple):
    """An estimate of a trace; unpacks as ``(value, error_estimate, n_matvec)``; ``float(est)``
    is the value.

    ``error_estimate`` estimates the standard error of ``value`` (the true error is within two
    estimates in most trials); it is 0 for an exact result and ``inf`` when the budget left no
    room for one. ``n_matvec`` is the number of products with A (matrix-vector products; a block
    of k columns counts k) actually used.
    """

    value: float
    error_estimate: float
    n_matvec: int

    def __float__(self) -> float:
        return float(self.value)


# --------------------------------------------------------------------------- shared helpers


class _Products:
    """Products with A in blocks, counted; never more than ``budget`` columns in all."""

    def __init__(self, op: MatrixOperator, budget: int | None = None):
        self.op, self.budget, self.used = op, budget, 0

    def __call__(self, X):
        k = X.shape[1]
        if self.budget is not None and self.used + k > self.budget:  # pragma: no cover - an internal bug
            raise RuntimeError(f"internal error: {self.used + k} products requested, budget {self.budget}")
        self.used += k
        return self.op.matmat(X)


def _draw(op: MatrixOperator, rng: np.random.Generator, n: int, k: int, kind: str):
    """Random test vectors drawn on the host, moved to A's library, device and dtype."""
    if kind == "rademacher":
        block = rng.integers(0, 2, size=(n, k)).astype(np.float64) * 2.0 - 1.0
    else:
        block = rng.standard_normal((n, k))
    block = block.astype(numpy_dtype(op.dtype), copy=False)
    return op.xp.asarray(block, device=op.device)


def _f64(xp, x):
    return xp.astype(x, xp.float64)


def _column_dots(xp, X, Y):
    return xp.sum(X * Y, axis=0)


def _std_error(xp, samples) -> float:
    """Standard error of the mean of the 1-D array ``samples``."""
    k = samples.shape[0]
    if k < 2:
        return math.inf
    mean = xp.mean(samples)
    variance = float(xp.sum((samples - mean) ** 2)) / (k - 1)
    return math.sqrt(max(variance, 0.0) / k)


def _eps(op: MatrixOperator) -> float:
    return float(np.finfo(numpy_dtype(op.dtype)).eps)


def _square_operator(A, name: str = "A") -> MatrixOperator:
    op = as_operator(A, name)
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} must be square, got shape {op.shape}")
    return op


def _check_count(value: Any, name: str) -> int:
    return check_int(value, name, low=1)


def _backend_for(A, op: MatrixOperator, backend: str, rust_kernel: bool) -> str:
    anchor = A if (op.dense is not None or is_host_input(A)) else None
    return resolve(anchor, backend=backend, rust_kernel=rust_kernel)


# --------------------------------------------------------------------------- trace estimators


def _exact_trace(products: _Products, op: MatrixOperator) -> TraceEstimate:
    """tr(A) from the n products A e_j, in blocks of identity columns."""
    xp, n = op.xp, op.shape[0]
    total, block = 0.0, 256
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = xp.arange(n, device=op.device)[:, None]
        cols = xp.arange(start, stop, device=op.device)[None, :]
        E = xp.astype(rows == cols, op.dtype)
        AE = products(E)
        total += float(xp.sum(_f64(xp, AE) * _f64(xp, E)))
    return TraceEstimate(total, 0.0, products.used)


def _hutchinson(products: _Products, op: MatrixOperator, rng, m: int) -> TraceEstimate:
    xp, n = op.xp, op.shape[0]
    G = _draw(op, rng, n, m, "rademacher")
    samples = _column_dots(xp, _f64(xp, G), _f64(xp, products(G)))
    return TraceEstimate(float(xp.mean(samples)), _std_error(xp, samples), products.used)


def _orth(xp, Y):
    """Orthonormal basis of range(Y) (Householder QR of the array API; rank deficiency is fine:
    Q stays orthonormal)."""
    return xp.linalg.qr(Y)[0]


def _hutchpp(products: _Products, op: MatrixOperator, rng, n_matvec: int) -> TraceEstimate:
    """Hutch++: k = n_matvec // 3 sketch vectors, tr(Q^T A Q) exact, Hutchinson on the rest."""
    xp, n = op.xp, op.shape[0]
    k = n_matvec // 3
    ell = n_matvec - 2 * k
    Q = _orth(xp, products(_draw(op, rng, n, k, "rademacher")))
    head = float(xp.sum(_f64(xp, Q) * _f64(xp, products(Q))))
    G = _draw(op, rng, n, ell, "rademacher")
    G = G - Q @ (Q.T @ G)
    AG = products(G)
    AG = AG - Q @ (Q.T @ AG)
    samples = _column_dots(xp, _f64(xp, G), _f64(xp, AG))
    return TraceEstimate(head + float(xp.mean(samples)), _std_error(xp, samples), products.used)


def _inverse_lower(xp, L):
    """L^{-1} of a small lower-triangular float64 matrix."""
    return xp.linalg.inv(L)


def _shifted_nystrom(xp, op: MatrixOperator, Omega, Y):
    """Stable Nystrom core of A + nu I: returns (B, Linv, nu) with A + nu I ~ B B^T,
    B = Y_nu L^{-T}, Omega^T Y_nu = L L^T. Raises ValueError if A is clearly not PSD."""
    Om, Y = _f64(xp, Omega), _f64(xp, Y)
    n = Om.shape[0]
    base = float(xp.linalg.vector_norm(Y))
    eps = _eps(op)
    nu = math.sqrt(n) * eps * base if base > 0 else eps
    for _ in range(4):
        Ynu = Y + nu * Om
        K = Om.T @ Ynu
        K = (K + K.T) / 2
        try:
            L = xp.linalg.cholesky(K)
        except Exception:  # LinAlgError on NumPy / torch / array_api_strict
            L = None
        if L is not None and bool(xp.all(xp.isfinite(L))):
            Linv = _inverse_lower(xp, L)
            return Ynu @ Linv.T, Linv, nu
        nu *= 100.0
    raise ValueError("A does not look positive semidefinite (the Nystrom core has no Cholesky factor); use psd=False or method='xtrace'")


def _nystrompp(products: _Products, op: MatrixOperator, rng, n_matvec: int) -> TraceEstimate:
    """Nystrom++: Nystrom approximation from k = n_matvec // 2 vectors, Hutchinson on the rest."""
    xp, n = op.xp, op.shape[0]
    k = n_matvec // 2
    ell = n_matvec - k
    Omega = _draw(op, rng, n, k, "gaussian")
    B, _, nu = _shifted_nystrom(xp, op, Omega, products(Omega))
    head = float(xp.sum(B * B))
    G = _draw(op, rng, n, ell, "rademacher")
    G64 = _f64(xp, G)
    AG = _f64(xp, products(G)) + nu * G64
    BtG = B.T @ G64
    samples = _column_dots(xp, G64, AG) - xp.sum(BtG * BtG, axis=0)
    return TraceEstimate(head + float(xp.mean(samples)) - n * nu, _std_error(xp, samples), products.used)


def _normalized_columns(xp, M):
    norms = xp.linalg.vector_norm(M, axis=0)
    return M / norms[None, :], norms


def _regularized_upper(xp, R, eps: float):
    """R with tiny diagonal entries lifted (rank-deficient sketches), so R^{-1} stays finite."""
    m = R.shape[0]
    diag = xp.linalg.diagonal(R)
    floor = max(float(xp.max(xp.abs(diag))), 1e-300) * eps * m
    lifted = xp.where(xp.abs(diag) < floor, xp.where(diag < 0, -floor * xp.ones_like(diag), floor * xp.ones_like(diag)), diag)
    eye = xp.eye(m, dtype=R.dtype, device=_device_of(R))
    return R + (lifted - diag)[None, :] * eye


def _device_of(x):
    from array_api_compat import device

    return device(x)


def _combined_error(xp, estimates, tau) -> float:
    """Error estimate of the mean of exchangeable leave-one-out estimates.

    The spread of the ``estimates`` (Epperly, Tropp and Webber's estimate) ignores their positive
    correlation and underestimates on fast-decaying spectra; the jackknife over the random
    vectors (``tau[j]``: the estimator without vector j) overestimates, as jackknife variances do.
    Their geometric mean tracks the true error closely on the standard test spectra (within
    25%, covering the true error with two estimates in >= 94% of trials)."""
    naive = _std_error(xp, estimates)
    if tau is None:
        return naive
    m = tau.shape[0]
    jack = math.sqrt(max((m - 1) / m * float(xp.sum((tau - xp.mean(tau)) ** 2)), 0.0))
    if not math.isfinite(jack):
        return naive
    return math.sqrt(naive * jack)


class _Pairs:
    """2 x 2 algebra over all ordered pairs (i, j), i the summand and j the second vector left
    out: Gamma = V_S^T V_S for S = {i, j}, from the m x m Gram matrix M = V^T V."""

    def __init__(self, xp, M):
        d = xp.linalg.diagonal(M)
        self.xp, self.Mii, self.Mjj, self.Mij = xp, d[:, None], d[None, :], M
        det = self.Mii * self.Mjj - M * M
        m = M.shape[0]
        eye = xp.eye(m, dtype=M.dtype, device=_device_of(M))
        det = det + eye  # the diagonal (i == j) is never used; keep it finite
        self.inv11, self.inv12, self.inv22 = self.Mjj / det, -M / det, self.Mii / det
        self.off = 1.0 - eye

    def split(self, C):
        """The pair (v_i^T c_i, v_j^T c_i) from C = V^T X (column i of X belongs to summand i)."""
        return self.xp.linalg.diagonal(C)[:, None], C.T

    def apply(self, x1, x2):
        return self.inv11 * x1 + self.inv12 * x2, self.inv12 * x1 + self.inv22 * x2

    def quad(self, x, y):
        b1, b2 = self.apply(*y)
        return x[0] * b1 + x[1] * b2

    def jackknife(self, terms):
        """tau_j = mean over i != j of terms[i, j]."""
        m = terms.shape[0]
        xp = self.xp
        return xp.sum(xp.where(self.off > 0, terms, xp.zeros_like(terms)), axis=0) / (m - 1)


def _xtrace_from(xp, n: int, Omega, Q, R, Z, eps: float):
    """The XTrace leave-one-out estimates (and the leave-two-out jackknife values, or None)."""
    m = Omega.shape[1]
    Q64, Z64, Om64, R64 = _f64(xp, Q), _f64(xp, Z), _f64(xp, Omega), _f64(xp, R)
    H = Q64.T @ Z64  # Q^T A Q
    W = Q64.T @ Om64  # Q^T Omega
    T = Z64.T @ Om64  # column i: Z^T omega_i
    Rinv = xp.linalg.inv(_regularized_upper(xp, R64, eps))
    V = Rinv.T  # v_i = R^{-T} e_i spans the part of range(Q) orthogonal to Y_{-i}
    S, _ = _normalized_columns(xp, V)
    HS, HW = H @ S, H @ W
    sHs = _column_dots(xp, S, HS)
    sw = _column_dots(xp, S, W)
    wHw = _column_dots(xp, W, HW)
    tw = _column_dots(xp, T, W)
    trH = xp.linalg.trace(H)
    residual = (
        sw * _column_dots(xp, S, R64)  # omega^T A omega - omega^T P A omega
        - tw
        + _column_dots(xp, T, S) * sw  # - omega^T A P omega
        + wHw
        - sw * _column_dots(xp, S, HW)
        - sw * _column_dots(xp, W, HS)
        + sw * sw * sHs  # + omega^T P A P omega
    )
    # ||(I - P_i) omega_i||^2; the residual vector is rescaled to norm sqrt(n - m + 1).
    norms2 = _column_dots(xp, Om64, Om64) - _column_dots(xp, W, W)
    estimates = trH - sHs + (n - m + 1) / (norms2 + sw * sw) * residual
    if m < 3:
        return estimates, None
    # Leave two out (S = {i, j}): P_S projects on span(v_i, v_j).
    pairs = _Pairs(xp, V.T @ V)
    VH = V.T @ H
    a = pairs.split(V.T @ W)
    tt = pairs.split(V.T @ T)
    hw = pairs.split(VH @ W)
    htw = pairs.split(V.T @ (H.T @ W))
    VHV = VH @ V
    d = xp.linalg.diagonal(VHV)
    h11, h12, h21, h22 = d[:, None], VHV, VHV.T, d[None, :]
    b1, b2 = pairs.apply(*a)
    php = b1 * (h11 * b1 + h12 * b2) + b2 * (h21 * b1 + h22 * b2)
    trPH = pairs.inv11 * h11 + pairs.inv12 * (h12 + h21) + pairs.inv22 * h22
    res2 = b1 - tw[:, None] + pairs.quad(tt, a) + wHw[:, None] - pairs.quad(a, hw) - pairs.quad(htw, a) + php
    dist2 = norms2[:, None] + pairs.quad(a, a)
    dist2 = xp.where((pairs.off > 0) & (dist2 != 0), dist2, xp.ones_like(dist2))  # the unused diagonal; 0/0
    terms = trH - trPH + (n - m + 2) / dist2 * res2
    return estimates, pairs.jackknife(terms)


def _xtrace(products: _Products, op: MatrixOperator, rng, n_matvec: int) -> TraceEstimate:
    """XTrace: m = n_matvec // 2 Gaussian vectors; the average over i of the Hutch++-like
    estimator that uses span(A Omega_{-i}) for the low-rank part and omega_i for the residual,
    with the residual vector rescaled to the sphere of the complement (the "improved" variant).
    Leave-one-out by downdating one QR factorization: span(Y_{-i}) = Q (I - s_i s_i^T),
    s_i = R^{-T} e_i / ||R^{-T} e_i||."""
    xp, n = op.xp, op.shape[0]
    m = n_matvec // 2
    Omega = _draw(op, rng, n, m, "gaussian")
    Q, R = xp.linalg.qr(products(Omega))
    Z = products(Q)
    estimates, tau = _xtrace_from(xp, n, Omega, Q, R, Z, _eps(op))
    return TraceEstimate(float(xp.mean(estimates)), _combined_error(xp, estimates, tau), products.used)


def _xnystrace_from(xp, n: int, Omega, B, Linv, nu: float):
    """The XNysTrace leave-one-out estimates (and the jackknife values, or None)."""
    m = Omega.shape[1]
    S, znorms = _normalized_columns(xp, Linv)
    BS = B @ S
    Om64 = _f64(xp, Omega)
    F = xp.linalg.inv(Om64.T @ Om64)
    Fd = xp.linalg.diagonal(F)
    total = xp.sum(B * B)
    estimates = total - xp.sum(BS * BS, axis=0) + (n - m + 1) * Fd / (znorms * znorms) - n * nu
    if m < 3:
        return estimates, None
    # Leave two out: A_(S) = B (I - P_S) B^T with P_S the projection on span(z_i, z_j), z = L^{-1} e;
    # omega_i^T (A - A_(S)) omega_i = [(Z_S^T Z_S)^{-1}]_ii.
    pairs = _Pairs(xp, Linv.T @ Linv)
    N = Linv.T @ (B.T @ B) @ Linv
    dN = xp.linalg.diagonal(N)
    trPG = pairs.inv11 * dN[:, None] + 2 * pairs.inv12 * N + pairs.inv22 * dN[None, :]
    dist2_inv = Fd[:, None] - F * F / Fd[None, :]  # 1 / dist(omega_i, span(Omega_{-S}))^2
    terms = total - trPG + (n - m + 2) * dist2_inv * pairs.inv11 - n * nu
    return estimates, pairs.jackknife(terms)


def _xnystrace(products: _Products, op: MatrixOperator, rng, n_matvec: int) -> TraceEstimate:
    """XNysTrace: the average over i of tr(A_(i)) + omega_i^T (A - A_(i)) omega_i, A_(i) the
    Nystrom approximation from Omega_{-i}. With Omega^T (A + nu I) Omega = L L^T and B as in
    :func:`_shifted_nystrom`: A_(i) = B (I - s_i s_i^T) B^T with s_i = L^{-1} e_i normalized,
    and omega_i^T (A - A_(i)) omega_i = 1 / ||L^{-1} e_i||^2. The residual is rescaled by the
    distance of omega_i to span(Omega_{-i}) (the "improved" variant)."""
    xp, n = op.xp, op.shape[0]
    Omega = _draw(op, rng, n, n_matvec, "gaussian")
    B, Linv, nu = _shifted_nystrom(xp, op, Omega, products(Omega))
    estimates, tau = _xnystrace_from(xp, n, Omega, B, Linv, nu)
    return TraceEstimate(float(xp.mean(estimates)), _combined_error(xp, estimates, tau), products.used)


def trace(A, n_matvec: int, *, method: str = "auto", psd: bool | None = None, random_state=None, backend: str = "auto") -> TraceEstimate:
    """Randomized estimate of tr(A) from at most ``n_matvec`` products with A.

    Methods (m = ``n_matvec``):

    * ``"xtrace"``: XTrace (Epperly, Tropp and Webber 2024), m/2 Gaussian vectors used twice;
      the exchangeable (leave-one-out) combination of Hutch++. Any square A.
    * ``"xnystrace"``: XNysTrace, its Nyström counterpart for symmetric positive semidefinite A
      (m vectors, one product each). The most accurate on PSD matrices with decaying spectra.
    * ``"hutch++"``: Hutch++ (Meyer et al. 2021): m/3 sketch, m/3 projection, m/3 Hutchinson.
    * ``"nystrom++"``: Nyström++ (Persson et al. 2022), PSD A: m/2 sketch, m/2 Hutchinson.
    * ``"hutchinson"``: Hutchinson's estimator with m Rademacher vectors.
    * ``"auto"``: ``"xnystrace"`` when ``psd=True``, else ``"xtrace"``.

    The exchangeable estimators rescale each residual vector to the sphere of the complement of
    the leave-one-out subspace, so they are exact on A = c I and not much worse than Hutchinson
    on flat spectra. When ``n_matvec >= n`` the trace is computed exactly from the n products
    A e_j. Budgets too small for a method (fewer than 4 products for ``"xtrace"`` or
    ``"hutch++"``, 3 for ``"nystrom++"``, 2 for ``"xnystrace"``) fall back to Hutchinson.

    Parameters
    ----------
    A : array (n, n), SciPy sparse matrix, SciPy LinearOperator or any object with ``shape``
        and ``matmat`` (or ``matvec``). Dense arrays of any array-API library (NumPy, CuPy,
        torch, ...); float32 or float64, integers are promoted. Not modified.
    n_matvec : int
        The budget: the number of products with A (a block of k vectors counts k). >= 1.
    method : {"auto", "hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace"}
    psd : bool, optional
        Whether A is symmetric positive semidefinite (only used by ``method="auto"``).
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "numpy", "cupy", "xp"}
        The estimators are products plus small dense algebra; they run on the xp path (there is
        no Rust kernel, so ``"rust"`` raises ``ValueError``).

    Returns
    -------
    TraceEstimate
        ``(value, error_estimate, n_matvec)``: ``error_estimate`` is the estimated standard
        error (jackknife-like spread of the leave-one-out estimates for XTrace / XNysTrace, the
        sample standard error of the Hutchinson part otherwise).

    Raises
    ------
    ValueError
        Non-square or empty A, NaN/Inf in A, ``n_matvec < 1``, unknown method or backend,
        ``"nystrom++"``/``"xnystrace"`` on a matrix that is clearly not PSD.
    TypeError
        Complex, object or float16 dtypes; an object that is not an array or an operator.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import trace
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((500, 500)))
    >>> A = (U * 0.8 ** np.arange(500)) @ U.T           # tr(A) = 5
    >>> est = trace(A, 60, psd=True, random_state=0)
    >>> abs(est.value - 5.0) < 1e-4, est.n_matvec <= 60
    (True, True)
    >>> float(trace(A, 60, method="xtrace", random_state=0)) - 5.0 < 1e-3
    True
    """
    op = _square_operator(A)
    n_matvec = _check_count(n_matvec, "n_matvec")
    method = check_option(method, "method", TRACE_METHODS)
    if psd is not None and not isinstance(psd, (bool, np.bool_)):
        raise TypeError(f"psd must be None, True or False, got {psd!r}")
    rng = check_random_state(random_state)
    _backend_for(A, op, backend, rust_kernel=False)
    if method == "auto":
        method = "xnystrace" if psd else "xtrace"
    products = _Products(op, n_matvec)
    n = op.shape[0]
    if n_matvec >= n:
        return _exact_trace(products, op)
    minimum = {"xtrace": 4, "hutch++": 4, "nystrom++": 3, "xnystrace": 2, "hutchinson": 1}[method]
    if n_matvec < minimum:
        method = "hutchinson"
    if method == "hutchinson":
        return _hutchinson(products, op, rng, n_matvec)
    if method == "hutch++":
        return _hutchpp(products, op, rng, n_matvec)
    if method == "nystrom++":
        return _nystrompp(products, op, rng, n_matvec)
    if method == "xtrace":
        return _xtrace(products, op, rng, n_matvec)
    return _xnystrace(products, op, rng, n_matvec)


# --------------------------------------------------------------------------- recurrences (xp reference)


def _lanczos_xp(matmat, V0, n_steps: int, eps: float):
    """Independent Lanczos runs, one per column of V0 (unit columns), advanced together in blocks,
    with full reorthogonalization (twice) of each run against its own basis.

    Returns ``(alpha, beta, length)`` as host float64 arrays: alpha (s, n_steps), beta
    (s, n_steps) (beta[:, j] couples steps j and j + 1) and the number of valid steps of each run
    (a run whose Krylov space is exhausted stops there; its later columns are zero).
    """
    from array_api_compat import array_namespace

    xp = array_namespace(V0)
    n, s = V0.shape
    dev = _device_of(V0)
    basis = xp.zeros((s, n_steps, n), dtype=V0.dtype, device=dev)  # run r's basis: basis[r, :j + 1, :]
    alphas, betas = [], []
    v, v_prev, beta_prev = V0, xp.zeros_like(V0), xp.zeros((s,), dtype=V0.dtype, device=dev)
    scale = xp.zeros((s,), dtype=V0.dtype, device=dev)
    active = xp.ones((s,), dtype=V0.dtype, device=dev)
    for j in range(n_steps):
        basis[:, j, :] = v.T
        w = matmat(v)
        alpha = xp.sum(v * w, axis=0)
        w = w - alpha * v - beta_prev * v_prev
        Vj = basis[:, : j + 1, :]  # (s, j + 1, n)
        for _ in range(2):  # full reorthogonalization, twice is enough; batched matmuls per run
            coefficients = Vj @ w.T[:, :, None]  # (s, j + 1, 1)
            w = w - (xp.matrix_transpose(Vj) @ coefficients)[:, :, 0].T
            alpha = alpha + coefficients[:, j, 0]
        beta = xp.linalg.vector_norm(w, axis=0)
        scale = xp.maximum(scale, xp.maximum(xp.abs(alpha), beta_prev))
        alive = xp.astype(beta > eps ** 0.75 * scale, V0.dtype) * active
        alphas.append(alpha * active)
        betas.append(beta * alive)
        safe = xp.where(alive > 0, beta, xp.ones_like(beta))
        v_prev, v = v, w / safe * alive
        beta_prev, active = beta * alive, alive
    alpha = to_host(xp.stack(alphas, axis=1), np.float64)
    beta = to_host(xp.stack(betas, axis=1), np.float64)
    length = np.full(s, n_steps, dtype=np.int64)
    for r in range(s):  # a run stops after its first vanishing beta
        zero = np.flatnonzero(beta[r, : n_steps - 1] == 0.0)
        if zero.size:
            length[r] = zero[0] + 1
    return alpha, beta, length


def _gauss_quadrature(alpha, beta, length):
    """Nodes and weights of the Gauss quadrature of each Lanczos run: the eigenvalues of the
    tridiagonal T and the squared first components of its eigenvectors (weights sum to 1)."""
    s, k = alpha.shape
    nodes = np.zeros((s, k))
    weights = np.zeros((s, k))
    for r in range(s):
        size = int(length[r])
        T = np.diag(alpha[r, :size]) + np.diag(beta[r, : size - 1], 1) + np.diag(beta[r, : size - 1], -1)
        theta, U = np.linalg.eigh(T)
        nodes[r, :size], weights[r, :size] = theta, U[0, :] ** 2
        nodes[r, size:] = theta[-1]  # padding with zero weight
    return nodes, weights


def _chebyshev_moments_xp(matmat, X, center: float, half_width: float, n_steps: int, full: bool):
    """Chebyshev moments of A mapped to [-1, 1] (A_hat = (A - center) / half_width) from
    ``n_steps`` block products with the three-term recurrence V_{k+1} = 2 A_hat V_k - V_{k-1}.

    With the doubling identities T_{2k} = 2 T_k^2 - T_0 and T_{2k+1} = 2 T_{k+1} T_k - T_1,
    returns the moments mu_d = X^T T_d(A_hat) X for d = 0 .. 2 n_steps: an array
    (2 n_steps + 1, s, s) when ``full``, else its diagonals (2 n_steps + 1, s). float64.
    """
    from array_api_compat import array_namespace

    xp = array_namespace(X)

    def gram(P, R):
        P64, R64 = _f64(xp, P), _f64(xp, R)
        return P64.T @ R64 if full else xp.sum(P64 * R64, axis=0)

    def step(V):
        return (matmat(V) - center * V) / half_width

    moments = [None] * (2 * n_steps + 1)
    V_prev, V = X, step(X)
    moments[0] = gram(X, X)
    moments[1] = gram(X, V)
    for k in range(1, n_steps + 1):
        moments[2 * k] = 2 * gram(V, V) - moments[0]
        if k == n_steps:
            break
        V_next = 2 * step(V) - V_prev
        moments[2 * k + 1] = 2 * gram(V_next, V) - moments[1]
        V_prev, V = V, V_next
    return xp.stack(moments, axis=0)


# --------------------------------------------------------------------------- functions of A


def _named_function(f) -> Callable[[np.ndarray], np.ndarray]:
    if callable(f):
        return f
    table = {"log": np.log, "inv": lambda x: 1.0 / x, "exp": np.exp, "sqrt": np.sqrt}
    if not isinstance(f, str) or f not in table:
        raise ValueError(f"f must be one of {NAMED_FUNCTIONS} or a callable, got {f!r}")
    return table[f]


def _check_bounds(spectrum_bounds):
    if spectrum_bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in spectrum_bounds)
    except (TypeError, ValueError) as error:
        raise ValueError(f"spectrum_bounds must be a pair (lower, upper) of numbers, got {spectrum_bounds!r}") from error
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"spectrum_bounds must be finite with lower < upper, got {spectrum_bounds!r}")
    return lo, hi


def _check_symmetric(op: MatrixOperator, A, name: str = "A"):
    """Symmetry check for explicit matrices (operators are trusted)."""
    if op.dense is not None:
        xp, D = op.xp, op.dense
        gap = float(xp.linalg.vector_norm(D - D.T))
        size = float(xp.linalg.vector_norm(D))
    elif is_scipy_sparse(A):
        gap = float(scipy.sparse.linalg.norm(A - A.T))
        size = float(scipy.sparse.linalg.norm(A))
    else:
        return
    if gap > 1e3 * _eps(op) * max(size, 1e-300):
        raise ValueError(f"{name} must be symmetric: ||A - A^T||_F / ||A||_F = {gap / size:.2e}")


class _Recurrences:
    """Lanczos and Chebyshev recurrences on A: in Rust when A is an explicit NumPy matrix
    (dense or CSR), else the xp reference over ``op.matmat``."""

    def __init__(self, A, op: MatrixOperator, backend: str, n_threads):
        explicit = (op.dense is not None and isinstance(op.dense, np.ndarray)) or is_scipy_sparse(A)
        self.op, self.n_threads = op, n_threads
        self.backend = _backend_for(A, op, backend, rust_kernel=explicit and _has_rust_trace())
        self.products = _Products(op)
        self.csr = None
        if self.backend == "rust":
            if op.dense is not None:
                self.dense = np.ascontiguousarray(op.dense)
            else:
                self.dense = None
                csr = A.tocsr().astype(numpy_dtype(op.dtype))
                csr.sum_duplicates()
                self.csr = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data, csr.shape[1])

    def lanczos(self, V0, n_steps: int):
        if self.backend != "rust":
            return _lanczos_xp(self.products, V0, n_steps, _eps(self.op))
        self.products.used += V0.shape[1] * n_steps
        V0 = np.ascontiguousarray(V0)
        if self.dense is not None:
            alpha, beta = core().trace_lanczos(self.dense, V0, n_steps, self.n_threads)
        else:
            alpha, beta = core().trace_lanczos_csr(*self.csr, V0, n_steps, self.n_threads)
        s = V0.shape[1]
        alpha, beta = np.reshape(alpha, (s, n_steps)), np.reshape(beta, (s, n_steps))
        length = np.full(s, n_steps, dtype=np.int64)
        for r in range(s):
            zero = np.flatnonzero(beta[r, : n_steps - 1] == 0.0)
            if zero.size:
                length[r] = zero[0] + 1
        return alpha, beta, length

    def chebyshev(self, X, center: float, half_width: float, n_steps: int, full: bool):
        if self.backend != "rust":
            return _chebyshev_moments_xp(self.products, X, center, half_width, n_steps, full)
        self.products.used += X.shape[1] * n_steps
        X = np.ascontiguousarray(X)
        if self.dense is not None:
            out = core().trace_chebyshev(self.dense, X, center, half_width, n_steps, full, self.n_threads)
        else:
            out = core().trace_chebyshev_csr(*self.csr, X, center, half_width, n_steps, full, self.n_threads)
        s = X.shape[1]
        return np.reshape(out, (2 * n_steps + 1, s, s) if full else (2 * n_steps + 1, s))


def _has_rust_trace() -> bool:
    try:
        return hasattr(core(), "trace_lanczos")
    except RuntimeError:
        return False


def _unit_rademacher(op: MatrixOperator, rng, k: int):
    n = op.shape[0]
    return _draw(op, rng, n, k, "rademacher") / math.sqrt(n)


def _estimate_bounds(rec: _Recurrences, rng, n_steps: int = 30, positive: bool = False):
    """[lower, upper] enclosing the spectrum: one Lanczos run; the extreme Ritz values pushed out
    by their residual bounds |beta_k u_k| and a 1% margin. With ``positive`` (f = log, sqrt) the
    lower end stays at least half the smallest Ritz value when that is positive."""
    n = rec.op.shape[0]
    k = min(n, n_steps)
    alpha, beta, length = rec.lanczos(_unit_rademacher(rec.op, rng, 1), k)
    size = int(length[0])
    T = np.diag(alpha[0, :size]) + np.diag(beta[0, : size - 1], 1) + np.diag(beta[0, : size - 1], -1)
    theta, U = np.linalg.eigh(T)
    residual = np.abs(beta[0, size - 1] * U[-1, :]) if size < n else np.zeros(size)
    lo, hi = theta[0] - residual[0], theta[-1] + residual[-1]
    margin = 0.01 * max(hi - lo, abs(hi), abs(lo), 1e-300)
    lower = lo - margin
    if positive and theta[0] > 0:
        lower = max(lower, 0.5 * theta[0])
    return lower, hi + margin


def _chebyshev_coefficients(f_on_nodes: Callable[[np.ndarray], np.ndarray], degree: int, lo: float, hi: float) -> np.ndarray:
    """Chebyshev interpolation coefficients of f on [lo, hi] (degree + 1 of them, on the last
    axis), from f at the Chebyshev points of the first kind (a discrete cosine transform)."""
    N = degree + 1
    j = np.arange(N)
    theta = np.pi * (j + 0.5) / N
    x = np.cos(theta)
    values = np.asarray(f_on_nodes((hi - lo) / 2 * x + (hi + lo) / 2), dtype=np.float64)
    cosines = np.cos(np.outer(theta, np.arange(N)))  # (nodes, k)
    c = (2.0 / N) * values @ cosines
    c[..., 0] /= 2
    return c


def _jackson(degree: int) -> np.ndarray:
    N = degree + 1
    k = np.arange(N)
    return ((N - k + 1) * np.cos(np.pi * k / (N + 1)) + np.sin(np.pi * k / (N + 1)) / np.tan(np.pi / (N + 1))) / (N + 1)


def trace_function(
    A,
    f,
    *,
    n_vectors: int,
    degree: int,
    method: str = "slq",
    spectrum_bounds=None,
    damping: str | None = None,
    control_variates: bool | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> TraceEstimate:
    """Estimate tr f(A) of a symmetric matrix A from products with A.

    * ``method="slq"``: stochastic Lanczos quadrature. Each of ``n_vectors`` Rademacher vectors
      v (||v||^2 = n) starts ``degree`` Lanczos steps with full reorthogonalization; the Gauss
      quadrature v^T f(A) v ~ n sum_j tau_j f(theta_j) uses the Ritz values theta_j and, as
      weights, the squared first components tau_j of the eigenvectors of the Lanczos
      tridiagonal matrix. The runs advance together, one block product per step.
    * ``method="chebyshev"``: f is interpolated by a Chebyshev polynomial of degree ``degree``
      on ``spectrum_bounds`` and Hutchinson's estimator is applied to it; with the doubling
      identities the moments up to ``degree`` cost ceil(degree / 2) products per vector.
      ``damping="jackson"`` multiplies the coefficients by the Jackson kernel (KPM style:
      no Gibbs oscillations, at the cost of smoothing f).

    Parameters
    ----------
    A : symmetric array (n, n), SciPy sparse matrix, LinearOperator or object with ``shape``
        and ``matmat``/``matvec``. Not modified.
    f : {"log", "inv", "exp", "sqrt"} or callable
        A callable receives a NumPy float64 array of eigenvalue estimates and returns f of each.
    n_vectors : int
        Random vectors (>= 1).
    degree : int
        Lanczos steps (SLQ) or polynomial degree (Chebyshev), >= 1.
    method : {"slq", "chebyshev"}
    spectrum_bounds : (lower, upper), optional
        An interval holding the spectrum (Chebyshev); estimated by 30 Lanczos steps if not
        given (their products are counted in the result).
    damping : {None, "jackson"}
        Chebyshev only.
    control_variates : bool, optional
        Subtract the best linear combination of v^T A v and v^T A^2 v from each sample and add
        back tr(A) and tr(A^2) = ||A||_F^2, computed exactly (regression control variates: the
        quadrature gives both quadratic forms for free). Needs an explicit (dense or sparse) A
        and n_vectors >= 4; default (None): on when possible. It halves the error of the
        log-determinant of a grid Laplacian.
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
        Explicit NumPy matrices (dense or sparse) run the recurrences in Rust.
    n_threads : int, optional
        Threads of the Rust kernels.

    Returns
    -------
    TraceEstimate
        ``error_estimate`` is the sample standard error over the random vectors (the
        quadrature / interpolation error is not included: it falls fast with ``degree``).

    Raises
    ------
    ValueError
        Non-square, nonsymmetric (explicit matrices) or empty A, NaN/Inf, n_vectors or degree
        < 1, unknown f or method, bad spectrum_bounds, f("log") of a matrix with a nonpositive
        Ritz value.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import trace_function
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    >>> A = (U * np.linspace(1.0, 4.0, 300)) @ U.T
    >>> exact = np.sum(np.log(np.linspace(1.0, 4.0, 300)))
    >>> est = trace_function(A, "log", n_vectors=30, degree=20, random_state=0)
    >>> bool(abs(est.value - exact) / exact < 0.01), est.n_matvec
    (True, 600)
    """
    op = _square_operator(A)
    fun = _named_function(f)
    n_vectors = _check_count(n_vectors, "n_vectors")
    degree = _check_count(degree, "degree")
    method = check_option(method, "method", FUNCTION_METHODS)
    if damping not in (None, "jackson"):
        raise ValueError(f"damping must be None or 'jackson', got {damping!r}")
    bounds = _check_bounds(spectrum_bounds)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    rec = _Recurrences(A, op, backend, n_threads)
    n = op.shape[0]
    use_cv = _check_control_variates(control_variates, A, op, n_vectors)
    if method == "slq":
        samples, powers = _slq_quadrature(rec, rng, n_vectors, min(degree, n), fun, f)
        samples, powers = n * samples, n * powers
    else:
        if bounds is None:
            bounds = _estimate_bounds(rec, rng, positive=f in ("log", "sqrt"))
        lo, hi = bounds
        coefficients = _chebyshev_coefficients(fun, degree, lo, hi)
        if damping == "jackson":
            coefficients = coefficients * _jackson(degree)
        steps = (degree + 1) // 2
        X = _unit_rademacher(op, rng, n_vectors)
        moments = to_host(rec.chebyshev(X, (hi + lo) / 2, (hi - lo) / 2, steps, False), np.float64)[: degree + 1]
        samples = n * (coefficients @ moments)
        c, h = (hi + lo) / 2, (hi - lo) / 2
        if moments.shape[0] >= 3:  # v^T A v and v^T A^2 v from T_0, T_1, T_2 of A_hat = (A - c) / h
            m0, m1, m2 = moments[0], moments[1], moments[2]
            powers = n * np.stack([c * m0 + h * m1, c * c * m0 + 2 * c * h * m1 + h * h * (m2 + m0) / 2], axis=0)
        else:
            use_cv = False
    if use_cv:
        return _with_control_variates(samples, powers, _exact_power_traces(op, A), rec.products.used)
    value = float(np.mean(samples))
    error = float(np.std(samples, ddof=1) / math.sqrt(n_vectors)) if n_vectors > 1 else math.inf
    return TraceEstimate(value, error, rec.products.used)


def _check_control_variates(control_variates, A, op: MatrixOperator, n_vectors: int) -> bool:
    explicit = op.dense is not None or is_scipy_sparse(A)
    if control_variates is None:
        return explicit and n_vectors >= 4
    if not isinstance(control_variates, (bool, np.bool_)):
        raise TypeError(f"control_variates must be None, True or False, got {control_variates!r}")
    if control_variates and not explicit:
        raise ValueError("control_variates=True needs an explicit (dense or sparse) A: tr(A) and ||A||_F^2 must be computable")
    if control_variates and n_vectors < 4:
        raise ValueError(f"control_variates=True needs n_vectors >= 4, got {n_vectors}")
    return bool(control_variates)


def _exact_power_traces(op: MatrixOperator, A) -> np.ndarray:
    """tr(A) and tr(A^2) = ||A||_F^2 of a symmetric explicit matrix."""
    if op.dense is not None:
        xp, D = op.xp, op.dense
        return np.array([float(xp.linalg.trace(_f64(xp, D))), float(xp.sum(_f64(xp, D) ** 2))])
    return np.array([float(A.diagonal().sum()), scipy.sparse.linalg.norm(A) ** 2])


def _with_control_variates(samples: np.ndarray, powers: np.ndarray, exact: np.ndarray, used: int) -> TraceEstimate:
    """Regression control variates: y - b^T (x - E x), b fitted by least squares on the samples."""
    N = samples.shape[0]
    X = powers.T - powers.T.mean(axis=0)
    y = samples - samples.mean()
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    value = float(samples.mean() - b @ (powers.mean(axis=1) - exact))
    residual = y - X @ b
    p = X.shape[1]
    error = math.sqrt(float(residual @ residual) / (N - 1 - p) / N)
    return TraceEstimate(value, error, used)


def _slq_quadrature(rec: _Recurrences, rng, n_vectors: int, n_steps: int, fun, f) -> np.ndarray:
    """v^T f(A) v / ||v||^2 for each random vector, by Gauss quadrature."""
    alpha, beta, length = rec.lanczos(_unit_rademacher(rec.op, rng, n_vectors), n_steps)
    nodes, weights = _gauss_quadrature(alpha, beta, length)
    if f in ("log", "sqrt", "inv"):
        used = weights > 0
        smallest = float(np.min(nodes[used]))
        if smallest <= 0 and f != "inv":
            raise ValueError(f"f={f!r} needs a positive definite A: Lanczos found the eigenvalue estimate {smallest:.3e}")
    values = np.asarray(fun(nodes), dtype=np.float64)
    quadrature = np.sum(weights * np.where(weights > 0, values, 0.0), axis=1)
    powers = np.stack([np.sum(weights * nodes, axis=1), np.sum(weights * nodes**2, axis=1)], axis=0)
    return quadrature, powers


# --------------------------------------------------------------------------- parametric traces


def _check_grid(t, name: str = "t"):
    """The parameter values as a 1-D float64 NumPy array, and a function returning results in
    t's own array library."""
    if isinstance(t, numbers.Real) and not isinstance(t, bool):
        t = [t]
    if isinstance(t, (list, tuple)) or isinstance(t, np.ndarray):
        host = np.asarray(t, dtype=np.float64)

        def back(values):
            return values

    elif hasattr(t, "__array_namespace__") or hasattr(t, "__dlpack__"):
        from array_api_compat import array_namespace, device

        xp_t = array_namespace(t)
        host = to_host(t, np.float64)
        dev = device(t)

        def back(values):
            return xp_t.asarray(values, device=dev)

    else:
        raise TypeError(f"{name} must be a 1-D array or sequence of numbers, got {type(t).__name__}")
    if host.ndim != 1 or host.size == 0:
        raise ValueError(f"{name} must be a nonempty 1-D array, got shape {host.shape}")
    if not np.all(np.isfinite(host)):
        raise ValueError(f"{name} contains NaN or infinity")
    return host, back


def _square_coefficients(C: np.ndarray) -> np.ndarray:
    """Chebyshev coefficients of p(x)^2 for the rows of C (p = sum_k C_k T_k):
    T_j T_k = (T_{j+k} + T_{|j-k|}) / 2."""
    T, N = C.shape
    E = np.zeros((T, 2 * N - 1))
    for j in range(N):
        E[:, j : j + N] += 0.5 * C[:, j : j + 1] * C
    for delta in range(N):
        E[:, delta] += (0.5 if delta == 0 else 1.0) * np.sum(C[:, delta:] * C[:, : N - delta], axis=1)
    return E


def _nystrom_traces(xp, C, moments, m: int, with_correction: bool, rcond: float):
    """tr of the Nystrom approximation of B(t) = sum_k C[t, k] T_k(A_hat) from the sketch
    Omega = X[:, :m] (and the Hutchinson correction with Psi = X[:, m:]), for all t at once.
    ``moments[d] = X^T T_d X`` for d = 0 .. 2 deg."""
    N = C.shape[1]
    dev = _device_of(moments)
    Cx = xp.asarray(C, device=dev)
    Ex = xp.asarray(_square_coefficients(C), device=dev)
    D = moments.shape[0]
    MOO = xp.reshape(moments[:, :m, :m], (D, m * m))
    K1 = xp.reshape(Cx @ MOO[:N, ...], (C.shape[0], m, m))  # Omega^T B Omega
    K2 = xp.reshape(Ex @ MOO, (C.shape[0], m, m))  # Omega^T B^2 Omega
    K1 = (K1 + xp.matrix_transpose(K1)) / 2
    lam, U = xp.linalg.eigh(K1)
    top = xp.max(xp.abs(lam), axis=1, keepdims=True)
    # Relative to each t, and to the largest over all t: where B(t) is (numerically) zero its
    # sketch is rounding noise, which must not be inverted.
    keep = (lam > rcond * top) & (lam > NYSTROM_RCOND_GLOBAL * xp.max(top))
    inv = xp.where(keep, 1.0 / xp.where(keep, lam, xp.ones_like(lam)), xp.zeros_like(lam))
    UK2U = xp.sum(U * (K2 @ U), axis=1)  # diagonals of U^T K2 U
    values = xp.sum(UK2U * inv, axis=1)
    if not with_correction:
        return values
    ell = moments.shape[1] - m
    MPO = xp.reshape(moments[:N, m:, :m], (N, ell * m))
    BPO = xp.reshape(Cx @ MPO, (C.shape[0], ell, m))  # Psi^T B Omega
    proj = BPO @ U
    tr_hat = xp.sum(xp.sum(proj * proj, axis=1) * inv, axis=1)  # tr(Psi^T Bhat Psi)
    diag_pp = xp.stack([xp.linalg.trace(moments[d, m:, m:]) for d in range(N)], axis=0)
    tr_b = Cx @ diag_pp  # tr(Psi^T B Psi)
    return values + (tr_b - tr_hat) / ell


# Eigenvalues of Omega^T B(t) Omega below this fraction of the largest are dropped from the
# pseudo-inverse: the Chebyshev moments carry relative errors far above the unit roundoff, and
# the Hutchinson correction of Nystrom++ absorbs the dropped part (measured best: 1e-3 gave a 2.6x
# smaller L1 density error than 1e-5, 30x smaller than 1e-10).
NYSTROM_RCOND = 1e-3
NYSTROM_RCOND_GLOBAL = 1e-8


def _parametric_core(rec: _Recurrences, rng, fun2, t_host, n_vectors: int, degree: int, method: str, bounds, rcond: float = NYSTROM_RCOND):
    op = rec.op
    n = op.shape[0]
    lo, hi = bounds
    C = _chebyshev_coefficients(lambda x: fun2(t_host[:, None], x[None, :]), degree, lo, hi)
    if C.ndim == 1:
        C = np.broadcast_to(C, (t_host.size, degree + 1)).copy()
    center, half = (hi + lo) / 2, (hi - lo) / 2
    if method == "hutchinson" or n_vectors < 2:
        X = _unit_rademacher(op, rng, n_vectors)
        moments = to_host(rec.chebyshev(X, center, half, (degree + 1) // 2, False), np.float64)[: degree + 1]
        return n * (C @ moments.mean(axis=1))
    m = n_vectors if method == "nystrom" else max(1, n_vectors // 2)
    X = _draw(op, rng, n, n_vectors if method == "nystrom" else n_vectors, "gaussian")
    moments = rec.chebyshev(X, center, half, degree, True)
    from array_api_compat import array_namespace

    xp = array_namespace(moments)
    values = _nystrom_traces(xp, C, moments, m, method == "nystrom++" and n_vectors - m >= 1, rcond)
    return to_host(values, np.float64)


def trace_parametric(
    A,
    f: Callable,
    t,
    *,
    n_vectors: int,
    degree: int,
    method: str = "nystrom++",
    spectrum_bounds=None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
):
    """Estimate tr f(t_k, A) for every t_k at the cost of one estimator.

    f(t, .) is interpolated by a Chebyshev polynomial of degree ``degree`` in A (on
    ``spectrum_bounds``) for every t; the block recurrence T_k(A) X runs once for random
    vectors X shared across t, so the number of products with A does not depend on ``len(t)``;
    the per-t work is small dense algebra, batched over t.

    * ``"hutchinson"``: Hutchinson's estimator of the polynomial (KPM). Products:
      n_vectors * ceil(degree / 2).
    * ``"nystrom++"``: Chebyshev–Nyström++ (Matti, He, Kressner and Lam 2025): the Nyström
      approximation of B(t) = f(t, A) from n_vectors / 2 Gaussian vectors (with a batched
      eigendecomposition per t), plus Hutchinson's estimator of the remainder with the others.
      Needs f(t, .) >= 0 on the spectrum (B(t) PSD). Products: n_vectors * degree.
    * ``"nystrom"``: the Nyström approximation alone, all vectors in the sketch.

    Parameters
    ----------
    A : symmetric array (n, n), SciPy sparse matrix, LinearOperator or object with ``shape``
        and ``matmat``/``matvec``.
    f : callable
        ``f(t, x)`` on NumPy float64 arrays that broadcast (t of shape (T, 1), x of shape (1, N)).
    t : 1-D array or sequence of numbers
    n_vectors : int
    degree : int
        Chebyshev degree (>= 1).
    method : {"nystrom++", "hutchinson", "nystrom"}
    spectrum_bounds : (lower, upper), optional
        Estimated by 30 Lanczos steps if not given.
    random_state, backend, n_threads
        As in :func:`trace_function`.

    Returns
    -------
    array (len(t),)
        float64, in t's array library (NumPy for sequences).

    Raises
    ------
    ValueError
        As :func:`trace_function`; an empty, non-1-D or non-finite t.
    TypeError
        f not callable.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import trace_parametric
    >>> rng = np.random.default_rng(0)
    >>> lam = 0.7 ** np.arange(400)                      # B(t) = exp(t A) - I: low rank
    >>> U, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    >>> A = (U * lam) @ U.T
    >>> t = np.linspace(0.5, 2.0, 1000)
    >>> est = trace_parametric(A, lambda t, x: np.expm1(t * x), t, n_vectors=40, degree=12,
    ...                        spectrum_bounds=(0, 1), random_state=0)
    >>> exact = np.expm1(t[:, None] * lam[None, :]).sum(axis=1)
    >>> bool(np.max(np.abs(est - exact) / exact) < 1e-2)
    True
    """
    op = _square_operator(A)
    if not callable(f):
        raise TypeError(f"f must be a callable f(t, x), got {type(f).__name__}")
    t_host, back = _check_grid(t)
    n_vectors = _check_count(n_vectors, "n_vectors")
    degree = _check_count(degree, "degree")
    method = check_option(method, "method", PARAMETRIC_METHODS)
    bounds = _check_bounds(spectrum_bounds)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    rec = _Recurrences(A, op, backend, n_threads)
    if bounds is None:
        bounds = _estimate_bounds(rec, rng)
    return back(_parametric_core(rec, rng, f, t_host, n_vectors, degree, method, bounds))


def _gaussian_kernel(sigma: float):
    scale = 1.0 / (sigma * math.sqrt(2 * math.pi))

    def g(t, x):
        return scale * np.exp(-((t - x) ** 2) / (2 * sigma**2))

    return g


def spectral_density(
    A,
    t,
    *,
    sigma: float,
    n_vectors: int,
    degree: int | None = None,
    method: str = "nystrom++",
    spectrum_bounds=None,
    normalize: bool = False,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
):
    """Estimate the smoothed spectral density phi(t) = (1/n) sum_i g_sigma(t - lambda_i),
    g_sigma the Gaussian of standard deviation ``sigma``, at every point of ``t``.

    * ``"nystrom++"``: Chebyshev–Nyström++ on B(t) = g_sigma(t I - A) (see
      :func:`trace_parametric`): far more accurate than KPM when B(t) is numerically low rank
      (small sigma, isolated eigenvalues).
    * ``"kpm"``: the kernel polynomial method: Hutchinson's estimator of the Chebyshev
      expansion of g_sigma.
    * ``"slq"``: stochastic Lanczos quadrature: the Ritz values and Gauss weights of
      ``degree`` Lanczos steps per vector, smoothed by g_sigma.

    Parameters
    ----------
    A : symmetric array (n, n), SciPy sparse matrix, LinearOperator or object with ``shape``
        and ``matmat``/``matvec``.
    t : 1-D array or sequence of numbers
        Where to evaluate the density.
    sigma : float
        Smoothing width (> 0).
    n_vectors : int
    degree : int, optional
        Chebyshev degree (kpm, nystrom++) or Lanczos steps (slq). Default: enough to resolve
        sigma: 7 (upper - lower) / (2 sigma) + 4 for Chebyshev; (upper - lower) / (2 sigma),
        between 20 and 200 (and at most n), Lanczos steps for SLQ (60 without spectrum_bounds).
    method : {"nystrom++", "kpm", "slq"}
    spectrum_bounds : (lower, upper), optional
        Estimated by 30 Lanczos steps if not given.
    normalize : bool, default False
        Clip negative values to 0 and rescale so that the trapezoidal integral over ``t`` is 1
        (only meaningful when t covers the spectrum).
    random_state, backend, n_threads
        As in :func:`trace_function`.

    Returns
    -------
    array (len(t),)
        float64, in t's array library (NumPy for sequences).

    Raises
    ------
    ValueError
        sigma <= 0 or not finite, and as :func:`trace_parametric`.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import spectral_density
    >>> rng = np.random.default_rng(0)
    >>> lam = np.r_[np.zeros(300), np.ones(100)]          # two clusters
    >>> U, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    >>> A = (U * lam) @ U.T
    >>> t = np.linspace(-0.5, 1.5, 401)
    >>> phi = spectral_density(A, t, sigma=0.05, n_vectors=40, spectrum_bounds=(-0.1, 1.1),
    ...                        normalize=True, random_state=0)
    >>> round(float(np.trapezoid(phi, t)), 6)
    1.0
    >>> 2.5 < float(phi[100] / phi[300]) < 3.5               # 300 eigenvalues at 0, 100 at 1
    True
    """
    op = _square_operator(A)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (math.isfinite(float(sigma)) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    sigma = float(sigma)
    t_host, back = _check_grid(t)
    n_vectors = _check_count(n_vectors, "n_vectors")
    if degree is not None:
        degree = _check_count(degree, "degree")
    method = check_option(method, "method", DENSITY_METHODS)
    bounds = _check_bounds(spectrum_bounds)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    rec = _Recurrences(A, op, backend, n_threads)
    n = op.shape[0]
    g = _gaussian_kernel(sigma)
    if method == "slq":
        if degree is None:
            width = (bounds[1] - bounds[0]) if bounds is not None else None
            degree = 60 if width is None else min(200, max(20, math.ceil(width / (2 * sigma))))
        alpha, beta, length = rec.lanczos(_unit_rademacher(op, rng, n_vectors), min(degree, n))
        nodes, weights = _gauss_quadrature(alpha, beta, length)
        phi = np.zeros_like(t_host)
        for r in range(n_vectors):
            phi += g(t_host[:, None], nodes[r][None, :]) @ weights[r]
        phi /= n_vectors
    else:
        if bounds is None:
            bounds = _estimate_bounds(rec, rng)
        if degree is None:
            degree = max(8, math.ceil(7 * (bounds[1] - bounds[0]) / (2 * sigma)) + 4)
        phi = _parametric_core(rec, rng, g, t_host, n_vectors, degree, "hutchinson" if method == "kpm" else "nystrom++", bounds) / n
    if normalize:
        phi = np.maximum(phi, 0.0)
        area = float(np.trapezoid(phi, t_host)) if t_host.size > 1 else 0.0
        if area > 0:
            phi = phi / area
    return back(phi)
