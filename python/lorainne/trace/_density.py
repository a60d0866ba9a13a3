"""Spectral density: :func:`spectral_density` estimates the Gaussian-smoothed spectral density of a
symmetric A by Chebyshev–Nyström++, the kernel polynomial method or stochastic Lanczos
quadrature.
"""

from __future__ import annotations

import math

import numpy as np

from .._exact_scaling import rescaled, scalar_times_power_of_two, times_power_of_two
from .._validation import check_n_threads, check_option, check_random_state, check_real
from ._bounds import _check_bounds, _estimate_bounds
from ._common import _check_count, _check_symmetric, _square_operator, _unit_rademacher
from ._parametric import _check_grid, _parametric_core
from ._recurrences import _gauss_quadrature, _Recurrences

DENSITY_METHODS = ("nystrom++", "kpm", "slq")

# The automatic Chebyshev degree is at most max(DENSITY_MIN_DEGREE_CAP, DENSITY_DEGREE_PER_ROW * n)
# for an n x n matrix: beyond that a sigma is below what the expansion should resolve on a matrix
# of that size (and the dense algebra would grow as degree^2: 86.8 GiB for sigma = 1e-4 on 80 x 80).
DENSITY_DEGREE_PER_ROW = 4
DENSITY_MIN_DEGREE_CAP = 64


def _chebyshev_degree(sigma: float, bounds, n: int) -> int:
    """The automatic degree resolving sigma on ``bounds``; ValueError when it exceeds the cap."""
    width = bounds[1] - bounds[0]
    needed = max(8, math.ceil(7 * width / (2 * sigma)) + 4)
    cap = max(DENSITY_MIN_DEGREE_CAP, DENSITY_DEGREE_PER_ROW * n)
    if needed > cap:
        resolution = 7 * width / (2 * (cap - 4))
        raise ValueError(
            f"sigma={sigma!r} is below the resolution {resolution:.3g} of the automatic Chebyshev degree on "
            f"the spectrum interval [{bounds[0]:.4g}, {bounds[1]:.4g}]: resolving it needs degree {needed}, "
            f"above the cap {cap} = max({DENSITY_MIN_DEGREE_CAP}, {DENSITY_DEGREE_PER_ROW} n) for n = {n}. "
            f"Pass sigma >= {resolution:.3g}, method='slq' (exact Ritz values), or an explicit degree"
        )
    return needed


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
        sigma: 7 (upper - lower) / (2 sigma) + 4 for Chebyshev, at most max(64, 4 n) for an
        n x n matrix (a smaller sigma raises ValueError, see Raises); (upper - lower) / (2 sigma),
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
        sigma <= 0 or not finite, and as :func:`trace_parametric`. For the Chebyshev methods
        without ``degree``: a sigma below the resolution of the capped automatic degree,
        7 (upper - lower) / (2 (max(64, 4 n) - 4)) (a ValueError rather than a warning: the
        truncated expansion of a too-narrow Gaussian oscillates and goes negative, so there is
        no useful result to return). The message gives the smallest sigma that works; SLQ or an
        explicit ``degree`` are the alternatives.

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
    A, scale = rescaled(A)  # entries beyond ~1e+-77: the density of 2^k A on 2^k t, times 2^k (exact)
    op = _square_operator(A)
    sigma = check_real(sigma, "sigma", low=0.0, low_open=True, what="a positive number")
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
    if scale:
        sigma = scalar_times_power_of_two(sigma, scale)
        t_host = times_power_of_two(t_host, scale)
        if bounds is not None:
            bounds = tuple(scalar_times_power_of_two(b, scale) for b in bounds)
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
            degree = _chebyshev_degree(sigma, bounds, n)
        phi = (
            _parametric_core(
                rec, rng, g, t_host, n_vectors, degree, "hutchinson" if method == "kpm" else "nystrom++", bounds
            )
            / n
        )
    if normalize:
        phi = np.maximum(phi, 0.0)
        area = float(np.trapezoid(phi, t_host)) if t_host.size > 1 else 0.0
        if area > 0:
            phi = phi / area
    return back(times_power_of_two(phi, scale))  # a density of 2^k A is one of A divided by 2^k
