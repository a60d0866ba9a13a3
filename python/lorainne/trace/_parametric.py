"""Parametric traces: :func:`trace_parametric` estimates tr f(t, A) for many values of a parameter
t at the cost of one estimator: f(t, .) is expanded in Chebyshev polynomials of A and the random
vectors are shared across t (Matti, He, Kressner and Lam 2025).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from .._backend import to_host
from .._exact_scaling import rescaled, scalar_times_power_of_two, times_power_of_two
from .._validation import check_n_threads, check_option, check_random_state
from ._bounds import _check_bounds, _estimate_bounds
from ._common import _check_count, _check_symmetric, _device_of, _draw, _square_operator, _unit_rademacher
from ._recurrences import _chebyshev_coefficients, _Recurrences

PARAMETRIC_METHODS = ("nystrom++", "hutchinson", "nystrom")


def _check_grid(t, name: str = "t"):
    """The parameter values as a 1-D float64 NumPy array, and a function returning results in
    t's own array library.
    """
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
    T_j T_k = (T_{j+k} + T_{|j-k|}) / 2.
    """
    T, N = C.shape
    E = np.zeros((T, 2 * N - 1))
    for j in range(N):
        E[:, j : j + N] += 0.5 * C[:, j : j + 1] * C
    for delta in range(N):
        E[:, delta] += (0.5 if delta == 0 else 1.0) * np.sum(C[:, delta:] * C[:, : N - delta], axis=1)
    return E


def _check_sketch_psd(lam, t_values, method: str) -> None:
    """ValueError when a sketch Omega^T B(t) Omega is clearly indefinite or negative (an
    eigenvalue below -NYSTROM_PSD_TOLERANCE times the largest magnitude): f(t, .) is negative on
    the spectrum, and the Nystrom approximation of B(t) would drop it (a 100% error).
    """
    lam = to_host(lam, np.float64)
    top = np.max(np.abs(lam), axis=1)
    bad = np.flatnonzero((top > 0) & (-np.min(lam, axis=1) > NYSTROM_PSD_TOLERANCE * top))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"f must satisfy f(t, x) >= 0 on the spectrum of A for method={method!r} (f(t, A) positive "
            f"semidefinite, and so must its Chebyshev interpolant): at t={float(t_values[j])!r} the sketch "
            "of f(t, A) has the eigenvalue "
            f"{float(np.min(lam[j])):.3e} (largest magnitude {float(top[j]):.3e}); use method='hutchinson'"
        )


# A sketch eigenvalue below -NYSTROM_PSD_TOLERANCE times the largest magnitude means f(t, .) < 0 on
# the spectrum (the Chebyshev interpolant of an f >= 0 undershoots by far less: Gibbs is ~9%).
NYSTROM_PSD_TOLERANCE = 0.25


def _nystrom_traces(xp, C, moments, m: int, with_correction: bool, rcond: float, check=None):
    """Tr of the Nystrom approximation of B(t) = sum_k C[t, k] T_k(A_hat) from the sketch
    Omega = X[:, :m] (and the Hutchinson correction with Psi = X[:, m:]), for all t at once.
    ``moments[d] = X^T T_d X`` for d = 0 .. 2 deg. ``check``: (t values, method) to raise
    ValueError where B(t) is clearly not PSD.
    """
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
    if check is not None:
        _check_sketch_psd(lam, *check)
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


def _parametric_core(
    rec: _Recurrences,
    rng,
    fun2,
    t_host,
    n_vectors: int,
    degree: int,
    method: str,
    bounds,
    rcond: float = NYSTROM_RCOND,
    check_psd: bool = False,
):
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
    check = (t_host, method) if check_psd else None
    values = _nystrom_traces(xp, C, moments, m, method == "nystrom++" and n_vectors - m >= 1, rcond, check)
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
        As :func:`trace_function`; an empty, non-1-D or non-finite t; for ``"nystrom++"`` and
        ``"nystrom"``, an f with f(t, .) clearly negative on the spectrum (the sketch of
        f(t, A) has an eigenvalue below -0.25 times its largest magnitude; the Nystrom
        approximation would drop the negative part: a 100% error). Use ``"hutchinson"`` there.
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
    A, scale = rescaled(A)  # entries beyond ~1e+-77: tr f(t, A) = tr f_k(t, 2^k A), f_k(t, x) = f(t, 2^-k x)
    op = _square_operator(A)
    if not callable(f):
        raise TypeError(f"f must be a callable f(t, x), got {type(f).__name__}")
    if scale:
        f = _on_scaled_spectrum(f, scale)
    t_host, back = _check_grid(t)
    n_vectors = _check_count(n_vectors, "n_vectors")
    degree = _check_count(degree, "degree")
    method = check_option(method, "method", PARAMETRIC_METHODS)
    bounds = _check_bounds(spectrum_bounds)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    if bounds is not None and scale:
        bounds = tuple(scalar_times_power_of_two(b, scale) for b in bounds)
    rec = _Recurrences(A, op, backend, n_threads)
    if bounds is None:
        bounds = _estimate_bounds(rec, rng)
    return back(_parametric_core(rec, rng, f, t_host, n_vectors, degree, method, bounds, check_psd=True))


def _on_scaled_spectrum(f: Callable, scale: int) -> Callable:
    """f_k(t, x) = f(t, 2^-k x): f on the spectrum of A, evaluated on that of 2^k A (exact)."""

    def f_scaled(t, x):
        return f(t, times_power_of_two(np.asarray(x, dtype=np.float64), -scale))

    return f_scaled
