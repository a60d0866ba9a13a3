"""Matrix sensing by gradient descent on an over-parameterized factorization X = U U^T."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._validation import check_int, check_random_state
from .._warnings import ConvergenceWarning


@dataclass(frozen=True)
class SensingResult:
    """``X = U @ U.T`` recovered from linear measurements.

    ``residuals[t]`` is the relative measurement residual ``|A(U_t U_t^T) - y| / |y|`` of the iterate
    after ``t`` steps; the returned ``X`` is the last one.
    """

    X: np.ndarray
    U: np.ndarray
    residuals: list
    n_steps: int
    converged: bool


_WINDOW = 10


def _operators(measurements, y, adjoint, d):
    """forward(X) -> (m,), adjoint(r) -> symmetric (d, d), and the dimension d."""
    if callable(measurements) and not isinstance(measurements, np.ndarray):
        if adjoint is None or not callable(adjoint):
            raise TypeError("adjoint must be a callable r -> (d, d) array when measurements is a callable")
        if d is None:
            raise ValueError("dim must be given when measurements is a callable")
        d = check_int(d, "dim", low=1)

        def adj(r):
            G = np.asarray(adjoint(r), dtype=np.float64)
            if G.shape != (d, d):
                raise ValueError(f"adjoint returned shape {G.shape}, expected {(d, d)}")
            return (G + G.T) / 2

        return (lambda X: np.asarray(measurements(X), dtype=np.float64).reshape(-1)), adj, d
    if not isinstance(measurements, np.ndarray):
        raise TypeError(f"measurements must be an array of shape (m, d, d) or a callable, got {type(measurements)}")
    if measurements.ndim != 3 or measurements.shape[1] != measurements.shape[2] or measurements.shape[0] == 0:
        raise ValueError(f"measurements must have shape (m, d, d) with m >= 1, got {measurements.shape}")
    if measurements.dtype.kind not in "fiu":
        raise TypeError(f"measurements has unsupported dtype {measurements.dtype.name}")
    if not np.all(np.isfinite(measurements)):
        raise ValueError("measurements contains NaN or infinity")
    m, d = measurements.shape[0], measurements.shape[1]
    if y.shape[0] != m:
        raise ValueError(f"y must have one entry per measurement ({m}), got {y.shape[0]}")
    A = measurements.reshape(m, d * d).astype(np.float64)

    def adj(r):
        G = (A.T @ r).reshape(d, d)
        return (G + G.T) / 2

    return (lambda X: A @ X.reshape(-1)), adj, d


def sense(
    measurements,
    y,
    rank: int | None = None,
    *,
    alpha: float = 1e-3,
    step: float | None = None,
    n_steps: int = 2000,
    tol: float = 1e-10,
    plateau: float = 1e-3,
    adjoint: Callable | None = None,
    dim: int | None = None,
    random_state=None,
) -> SensingResult:
    """Recover a low-rank PSD matrix from linear measurements by gradient descent on X = U U^T.

    Minimizes ``f(U) = (1 / 4m) sum_i (<A_i, U U^T> - y_i)^2`` by plain gradient descent
    ``U <- U - step * (1/m) sum_i r_i A_i U`` from the small start ``U_0 = alpha I`` with ``U``
    full width (d x d) when ``rank`` is None. Nothing in the objective asks for low rank; with
    fewer measurements than unknowns it has many global minima, and gradient descent from a small
    start still converges near the low-rank one: the implicit regularization proved by Li, Ma and
    Zhang ("Algorithmic regularization in over-parameterized matrix sensing and neural networks
    with quadratic activations", COLT 2018) for Gaussian measurements satisfying the restricted
    isometry property, m of order d r^2 up to logarithms, after O(log(1/alpha) / step) steps,
    with an error that shrinks with alpha (polynomially; see the paper for the exact bound).
    Directions outside the signal start at size alpha and grow far slower than the signal, so a
    smaller ``alpha`` gives a smaller error for a few more steps (measured at d = 30, r = 2,
    m = 600: error about 0.05 alpha). With ``rank`` given, ``U`` is d x rank from ``alpha`` times
    a random orthonormal
    basis (the usual Burer-Monteiro factorization).

    Parameters
    ----------
    measurements : array of shape (m, d, d), or callable X -> (m,)
        The sensing matrices A_i (symmetrized by the gradient), e.g. symmetric Gaussian
        ``(G + G^T) / 2`` with standard normal ``G``: then ``E <A, X>^2 = |X|_F^2`` for symmetric X.
    y : array of shape (m,)
        The measurements ``y_i = <A_i, X*>``.
    rank : int, optional
        Width of U (default: d, the over-parameterized case).
    alpha : float
        Scale of the initialization (> 0).
    step : float, optional
        Step size; default ``0.25 / |(1/m) sum_i y_i A_i|_2`` (a quarter of the inverse of a
        spectral estimate of |X*|).
    n_steps : int
        Maximum number of gradient steps.
    tol : float
        Stops when the relative residual falls below ``tol``.
    plateau : float
        Also stops (early stopping, where the implicit regularization acts) when the residual
        fell below 1% of its starting value and then decreased by less than a fraction ``plateau``
        of itself over the last 10 steps: the
        signal has been fitted and only the spurious directions, of size about ``alpha``, remain.
    adjoint, dim
        With a callable ``measurements``: ``adjoint(r)`` returns ``sum_i r_i A_i`` as a (d, d) array,
        and ``dim`` is d.
    random_state : None, int, Generator or RandomState
        Used only when ``rank`` is given.

    Returns
    -------
    SensingResult

    Examples
    --------
    >>> import numpy as np, lorainne
    >>> rng = np.random.default_rng(0)
    >>> d, m = 10, 150
    >>> Z = rng.standard_normal((d, 1)); X = Z @ Z.T
    >>> G = rng.standard_normal((m, d, d)); A = (G + G.transpose(0, 2, 1)) / 2
    >>> y = np.einsum("kij,ij->k", A, X)
    >>> res = lorainne.completion.sense(A, y, alpha=1e-4)
    >>> bool(np.linalg.norm(res.X - X) / np.linalg.norm(X) < 1e-3)
    True
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a nonempty 1-D array, got shape {y.shape}")
    if y.dtype.kind not in "fiu":
        raise TypeError(f"y has unsupported dtype {y.dtype.name}")
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity")
    forward, adj, d = _operators(measurements, y, adjoint, dim)
    m = y.shape[0]
    for value, name in ((alpha, "alpha"), (step, "step")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    n_steps = check_int(n_steps, "n_steps", low=1)
    for value, name in ((tol, "tol"), (plateau, "plateau")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < 1):
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    width = d if rank is None else check_int(rank, "rank", low=1, high=d)
    norm_y = float(np.linalg.norm(y))
    if norm_y == 0:
        return SensingResult(np.zeros((d, d)), np.zeros((d, width)), [0.0], 0, True)
    M0 = adj(y) / m
    if step is None:
        step = 0.25 / float(np.linalg.norm(M0, 2))
    if rank is None:
        U = alpha * np.eye(d)
    else:
        Q, _ = np.linalg.qr(check_random_state(random_state).standard_normal((d, width)))
        U = alpha * Q
    residuals: list[float] = []
    converged = False
    t = 0
    for t in range(1, n_steps + 1):
        r = forward(U @ U.T) - y
        res = float(np.linalg.norm(r)) / norm_y
        if not np.isfinite(res) or res > 1e8:
            raise ValueError(f"gradient descent diverged at step {t}: reduce step (got {step:.3g})")
        residuals.append(res)
        if res <= tol or (res < 1e-2 * residuals[0] and t > _WINDOW and residuals[-1 - _WINDOW] - res <= plateau * res):
            converged = True
            break
        U = U - step * (adj(r) / m) @ U
    if not converged:
        warnings.warn(
            f"sense did not reach tol={tol:g} in {n_steps} steps (relative residual {residuals[-1]:.3e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SensingResult(U @ U.T, U, residuals, t, converged)
