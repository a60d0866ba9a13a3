"""Functions of a symmetric matrix: :func:`trace_function` estimates tr f(A) by stochastic Lanczos
quadrature (SLQ) or a Chebyshev expansion, with optional regression control variates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg

from .._backend import is_scipy_sparse, to_host
from .._exact_scaling import rescaled, scalar_times_power_of_two
from .._operators import MatrixOperator
from .._validation import check_n_threads, check_option, check_random_state
from ._bounds import _check_bounds, _estimate_bounds
from ._common import TraceEstimate, _check_count, _check_symmetric, _f64, _square_operator, _unit_rademacher
from ._recurrences import _chebyshev_coefficients, _gauss_quadrature, _Recurrences

FUNCTION_METHODS = ("slq", "chebyshev")


NAMED_FUNCTIONS = ("log", "inv", "exp", "sqrt")


def _named_function(f) -> Callable[[np.ndarray], np.ndarray]:
    if callable(f):
        return f
    table = {"log": np.log, "inv": lambda x: 1.0 / x, "exp": np.exp, "sqrt": np.sqrt}
    if not isinstance(f, str) or f not in table:
        raise ValueError(f"f must be one of {NAMED_FUNCTIONS} or a callable, got {f!r}")
    return table[f]


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
        < 1, unknown f or method, bad spectrum_bounds, f "log" or "sqrt" of a matrix with a
        nonpositive Ritz value (SLQ) or spectrum interval reaching 0 (Chebyshev), f "inv" of a
        matrix with a zero Ritz value (SLQ) or an interval containing 0 (Chebyshev): a zero
        or indefinite matrix.

    Notes
    -----
    Scale: for f = "log", "sqrt" and "inv", dense and sparse matrices with entries beyond about
    1e+-77 (float64) are handled exactly: tr f(2**k A) is estimated (k chosen so that the largest
    entry is about 1, even for sqrt; ``spectrum_bounds`` scaled with it) and tr f(A) recovered
    (tr log A = tr log(2**k A) - n k log 2, tr sqrt A = 2**(-k/2) tr sqrt(2**k A),
    tr A^-1 = 2**k tr (2**k A)^-1). For "exp" and callables there is no such identity: A is used
    as given (its products stay accurate to about 1e+-150 in float64), as are operators.

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
    fun = _named_function(f)
    # tr f(2^k A) is known from tr f(A) for these: solve the rescaled problem when A's entries
    # are beyond ~1e+-77 (exp and callables have no such identity: A is used as given).
    scale = 0
    if isinstance(f, str) and f in SCALE_EQUIVARIANT:
        A, scale = rescaled(A, even=f == "sqrt")
    op = _square_operator(A)
    n_vectors = _check_count(n_vectors, "n_vectors")
    degree = _check_count(degree, "degree")
    method = check_option(method, "method", FUNCTION_METHODS)
    if damping not in (None, "jackson"):
        raise ValueError(f"damping must be None or 'jackson', got {damping!r}")
    bounds = _check_bounds(spectrum_bounds)
    if bounds is not None and scale:
        bounds = tuple(scalar_times_power_of_two(b, scale) for b in bounds)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    estimate = _trace_function_core(
        A, op, f, fun, n_vectors, degree, method, bounds, damping, control_variates, rng, backend, n_threads, scale
    )
    return _unscale(estimate, f, scale, op.shape[0])


SCALE_EQUIVARIANT = ("log", "sqrt", "inv")


def _unscale(estimate: TraceEstimate, f, k: int, n: int) -> TraceEstimate:
    """The estimate of tr f(A) from that of tr f(2^k A): log shifts by n k log 2, sqrt scales by 2^(-k/2),
    inv by 2^k.
    """
    if k == 0:
        return estimate
    value, error = estimate.value, estimate.error_estimate
    if f == "log":
        value = value - n * k * math.log(2.0)
    else:
        power = -k // 2 if f == "sqrt" else k
        value, error = scalar_times_power_of_two(value, power), scalar_times_power_of_two(error, power)
    return TraceEstimate(value, error, estimate.n_matvec)


def _check_chebyshev_domain(f, lo: float, hi: float, estimated: bool, k: int) -> None:
    """Check the interval: log and sqrt need a positive interval, inv one without 0 (the Chebyshev interpolant of f is
    evaluated on the whole interval): the same error SLQ raises on a nonpositive Ritz value.
    """
    lo_a, hi_a = scalar_times_power_of_two(lo, -k), scalar_times_power_of_two(hi, -k)
    where = (
        f"the estimated spectrum bounds are [{lo_a:.3e}, {hi_a:.3e}]"
        if estimated
        else f"spectrum_bounds=({lo_a!r}, {hi_a!r})"
    )
    if f in ("log", "sqrt") and lo <= 0:
        raise ValueError(f"f={f!r} needs a positive definite A: {where}")
    if f == "inv" and lo <= 0 <= hi:
        raise ValueError(f"f='inv' needs a nonsingular A (0 outside the spectrum interval): {where}")


def _trace_function_core(
    A, op, f, fun, n_vectors, degree, method, bounds, damping, control_variates, rng, backend, n_threads, k
) -> TraceEstimate:
    """trace_function on validated (and possibly rescaled, by 2^k) arguments."""
    rec = _Recurrences(A, op, backend, n_threads)
    n = op.shape[0]
    use_cv = _check_control_variates(control_variates, A, op, n_vectors)
    if method == "slq":
        samples, powers = _slq_quadrature(rec, rng, n_vectors, min(degree, n), fun, f)
        samples, powers = n * samples, n * powers
    else:
        estimated = bounds is None
        if estimated:
            bounds = _estimate_bounds(rec, rng, positive=f in ("log", "sqrt"))
        lo, hi = bounds
        if isinstance(f, str):
            _check_chebyshev_domain(f, lo, hi, estimated, k)
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
        raise ValueError(
            "control_variates=True needs an explicit (dense or sparse) A: tr(A) and ||A||_F^2 must be computable"
        )
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
            raise ValueError(
                f"f={f!r} needs a positive definite A: Lanczos found the eigenvalue estimate {smallest:.3e}"
            )
        if f == "inv" and bool(np.any(nodes[used] == 0)):
            raise ValueError("f='inv' needs a nonsingular A: Lanczos found the eigenvalue estimate 0")
    values = np.asarray(fun(nodes), dtype=np.float64)
    quadrature = np.sum(weights * np.where(weights > 0, values, 0.0), axis=1)
    powers = np.stack([np.sum(weights * nodes, axis=1), np.sum(weights * nodes**2, axis=1)], axis=0)
    return quadrature, powers
