"""Bounds on the spectrum of a symmetric matrix from one Lanczos run: :func:`spectrum_bounds`, the
interval the Chebyshev expansions of :func:`trace_function`, :func:`trace_parametric` and
:func:`spectral_density` use when none is given.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._exact_scaling import rescaled, scalar_times_power_of_two
from .._validation import check_int, check_n_threads, check_random_state
from ._common import _check_symmetric, _square_operator, _unit_rademacher
from ._recurrences import _Recurrences

# Each end of an estimated interval is pushed out by this fraction of max(width, |lower|, |upper|).
BOUNDS_MARGIN = 0.01
BOUNDS_STEPS = 30


def _check_bounds(spectrum_bounds):
    if spectrum_bounds is None:
        return None
    message = f"spectrum_bounds must be a pair (lower, upper) of numbers, got {spectrum_bounds!r}"
    if isinstance(spectrum_bounds, (str, bytes)) or not hasattr(spectrum_bounds, "__iter__"):
        raise TypeError(message)
    pair = list(spectrum_bounds)
    if len(pair) != 2:
        raise ValueError(message)
    try:
        lo, hi = (float(b) for b in pair)
    except (TypeError, ValueError) as error:
        raise TypeError(message) from error
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"spectrum_bounds must be finite with lower < upper, got {spectrum_bounds!r}")
    return lo, hi


def _estimate_bounds(
    rec: _Recurrences, rng, n_steps: int = BOUNDS_STEPS, positive: bool = False, margin: float = BOUNDS_MARGIN
):
    """[lower, upper] enclosing the spectrum: one Lanczos run; the extreme Ritz values pushed out
    by their residual bounds |beta_k u_k| and by ``margin`` (relative, 1% by default). With
    ``positive`` (f = log, sqrt) the lower end stays at least half the smallest Ritz value when
    that is positive.
    """
    n = rec.op.shape[0]
    k = min(n, n_steps)
    alpha, beta, length = rec.lanczos(_unit_rademacher(rec.op, rng, 1), k)
    size = int(length[0])
    T = np.diag(alpha[0, :size]) + np.diag(beta[0, : size - 1], 1) + np.diag(beta[0, : size - 1], -1)
    theta, U = np.linalg.eigh(T)
    residual = np.abs(beta[0, size - 1] * U[-1, :]) if size < n else np.zeros(size)
    lo, hi = theta[0] - residual[0], theta[-1] + residual[-1]
    pad = margin * max(hi - lo, abs(hi), abs(lo), 1e-300)
    lower = lo - pad
    if positive and theta[0] > 0:
        lower = max(lower, 0.5 * theta[0])
    return lower, hi + pad


def spectrum_bounds(
    A,
    *,
    n_steps: int = BOUNDS_STEPS,
    margin: float = BOUNDS_MARGIN,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> tuple[float, float]:
    """Estimate an interval (lower, upper) holding the spectrum of a symmetric matrix A.

    One Lanczos run of ``n_steps`` steps (full reorthogonalization) from a random Rademacher
    vector; the extreme Ritz values are pushed out by their residual bounds |beta_k u_k| (an
    eigenvalue of A lies within that distance of each Ritz value) and then by ``margin`` times
    max(upper - lower, |lower|, |upper|). This is the interval :func:`trace_function`,
    :func:`trace_parametric` and :func:`spectral_density` estimate when ``spectrum_bounds`` is
    not given. It costs ``min(n_steps, n)`` products with A.

    Parameters
    ----------
    A : symmetric array (n, n), SciPy sparse matrix, LinearOperator or object with ``shape``
        and ``matmat``/``matvec``. Not modified; explicit matrices are checked for symmetry,
        operators are trusted.
    n_steps : int, default 30
        Lanczos steps (>= 1); at most n are taken. More steps tighten the interval.
    margin : float, default 0.01
        Relative safety margin (>= 0) added at both ends; 0 returns the residual bounds alone.
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
        Explicit NumPy matrices (dense or sparse) run the Lanczos recurrence in Rust.
    n_threads : int, optional
        Threads of the Rust kernels.

    Returns
    -------
    (float, float)
        ``(lower, upper)`` with lower < upper (for a multiple of the identity, the margin keeps
        them apart).

    Raises
    ------
    ValueError
        Non-square, nonsymmetric (explicit matrices) or empty A, NaN/Inf in A, ``n_steps < 1``,
        negative or non-finite ``margin``, unknown backend, bad ``random_state`` seed or
        ``n_threads``.
    TypeError
        ``n_steps`` not an int, ``margin`` not a real number, an A that is not an array or an
        operator, complex or object dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import spectrum_bounds
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    >>> A = (U * np.linspace(-1.0, 2.0, 300)) @ U.T     # spectrum in [-1, 2]
    >>> lower, upper = spectrum_bounds(A, random_state=0)
    >>> bool(lower <= -1.0 and upper >= 2.0)
    True
    >>> bool(-1.1 < lower and upper < 2.1)
    True
    """
    A, scale = rescaled(A)  # entries beyond ~1e+-77: bounds of 2^k A (exact), scaled back
    op = _square_operator(A)
    n_steps = check_int(n_steps, "n_steps", low=1)
    if isinstance(margin, (bool, np.bool_)) or not isinstance(margin, numbers.Real):
        raise TypeError(f"margin must be a real number, got {type(margin).__name__}")
    if not (math.isfinite(float(margin)) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    _check_symmetric(op, A)
    rec = _Recurrences(A, op, backend, n_threads)
    lower, upper = _estimate_bounds(rec, rng, n_steps, margin=float(margin))
    return scalar_times_power_of_two(lower, -scale), scalar_times_power_of_two(upper, -scale)
