"""Free-support entropic Wasserstein barycenters of point clouds (of any sizes)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._validation import check_int, check_n_threads, check_random_state, check_real, check_verbose
from .._warnings import ConvergenceWarning
from ._checks import _check_eps, _points, _weights
from ._sinkhorn import sinkhorn

logger = logging.getLogger("lorainne")


class BarycenterResult(NamedTuple):
    """The result of :func:`barycenter`.

    Attributes
    ----------
    support : ndarray of shape (n_support, d)
        Positions of the barycenter's support points (each of mass ``1 / n_support``).
    objective : float
        ``sum_k w_k OT_eps(support, cloud_k)`` (the duals of the Sinkhorn solves) before the last
        move: the quantity the iterations decrease.
    cost : float
        ``sum_k w_k cost_k``: the weighted transport costs of the same entropic plans.
    n_iter : int
        Fixed-point iterations (each solves one Sinkhorn problem per cloud).
    displacement : float
        Largest move of a support point in the last iteration.
    converged : bool
        Whether the objective decreased by at most ``tol`` relative in the last iteration, or no
        point moved by more than ``tol * spread`` (``spread``: the largest side of the clouds'
        joint bounding box).
    """

    support: np.ndarray
    objective: float
    cost: float
    n_iter: int
    displacement: float
    converged: bool


def barycenter(
    clouds: Sequence[Any],
    weights=None,
    *,
    eps: float,
    masses: Sequence[Any] | None = None,
    n_support: int | None = None,
    support_init=None,
    n_iter_max: int = 100,
    tol: float = 1e-6,
    sinkhorn_tol: float = 1e-7,
    sinkhorn_n_iter_max: int = 1000,
    method: str = "auto",
    random_state=None,
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable[[dict, float], bool] | None = None,
) -> BarycenterResult:
    """Free-support entropic Wasserstein barycenter of point clouds.

    Minimizes ``sum_k w_k OT_eps(X, cloud_k)`` over the positions ``X`` of ``n_support`` points of
    equal mass by the fixed point ``X <- sum_k w_k T_k(X)``, with ``T_k`` the barycentric map of
    the entropic plan from ``X`` to cloud k (:meth:`SinkhornResult.barycentric_map`; the same
    conventions as :func:`sinkhorn`: ``C = |x - y|^2``, absolute ``eps``). For squared distances
    this is the stationarity condition of the objective in ``X``: each step moves every support
    point to the weighted mean of where the plans send it (POT's ``free_support_barycenter`` at
    ``eps -> 0``). The clouds may have different sizes; each iteration costs one Sinkhorn solve
    and one kernel application with d extra columns per cloud (d + 1 applications on the dense
    array-API path), O(n) memory on the hierarchical kernel.

    Parameters
    ----------
    clouds : sequence of arrays of shape (n_k, d)
        The point clouds (same d, any sizes).
    weights : array of shape (K,), optional
        Nonnegative barycentric weights ``w_k`` (normalized to sum 1); default uniform.
    eps : float
        Entropic regularization of every transport problem, > 0 (absolute).
    masses : sequence of arrays of shape (n_k,), optional
        The clouds' point masses (each normalized to 1); default uniform.
    n_support : int, optional
        Support points of the barycenter; default the size of ``support_init`` or, without it,
        of the largest cloud.
    support_init : array of shape (n_support, d), optional
        Starting positions. Default: ``n_support`` points drawn from the mixture
        ``sum_k w_k cloud_k`` (without replacement while there are enough distinct points).
    n_iter_max : int
        Cap on the fixed-point iterations.
    tol : float
        Stop when the objective decreases by at most ``tol`` relative in one iteration, or no
        support point moves by more than ``tol`` times the clouds' spread. (The entropic
        objective is flat along some moves of the support: points can keep sliding slowly when
        the objective no longer changes.)
    sinkhorn_tol : float
        ``tol`` of each Sinkhorn solve (its marginal error).
    sinkhorn_n_iter_max : int
        Iteration cap of each Sinkhorn solve. A solve stopped early still gives a usable step:
        the barycentric map divides by the plan's row mass, so each point moves to a weighted
        mean of the cloud's points.
    method : {"auto", "dense", "hierarchical"}
        The kernel of every Sinkhorn solve and plan product (see :func:`sinkhorn`).
    random_state : None, int, Generator or RandomState
        Seeds the default ``support_init``.
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores).
    verbose : bool or int, default 0
        1: log a summary on the ``lorainne`` logger; 2: also every iteration.
    callback : callable, optional
        ``callback(state, displacement) -> bool`` after every iteration, ``state`` a dict with
        ``n_iter``, ``support``, ``objective``; returning True stops.

    Returns
    -------
    BarycenterResult
        ``(support, objective, cost, n_iter, displacement, converged)``.

    Raises
    ------
    ValueError
        No clouds, clouds of different dimensions, bad weights or masses, eps <= 0, a support
        of the wrong shape.

    Warns
    -----
    ConvergenceWarning
        When ``n_iter_max`` is reached before ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import barycenter
    >>> grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2) * 0.25
    >>> res = barycenter([grid, grid + [2.0, 0.0]], eps=1e-3, support_init=grid)
    >>> bool(np.allclose(res.support, grid + [1.0, 0.0], atol=1e-6)), res.converged
    (True, True)
    """
    if isinstance(clouds, np.ndarray) or not isinstance(clouds, Sequence) or len(clouds) == 0:
        raise ValueError("clouds must be a non-empty list of point arrays of shape (n_k, d)")
    points = [np.asarray(_points(c, f"clouds[{k}]"), dtype=np.float64) for k, c in enumerate(clouds)]
    d = points[0].shape[1]
    for k, p in enumerate(points):
        if p.shape[1] != d:
            raise ValueError(f"clouds[{k}] has dimension {p.shape[1]}, clouds[0] has {d}: all clouds must have one d")
    K = len(points)
    w = _weights(weights, K, "weights")
    w = w / w.sum()
    if masses is not None and (not isinstance(masses, Sequence) or len(masses) != K):
        raise ValueError(f"masses must be a list of {K} weight arrays (one per cloud), got {masses!r:.80}")
    given = [None] * K if masses is None else list(masses)
    cloud_masses = [_weights(mk, len(p), f"masses[{k}]") for k, (mk, p) in enumerate(zip(given, points, strict=True))]
    cloud_masses = [m / m.sum() for m in cloud_masses]
    eps = _check_eps(eps)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=1)
    tol = check_real(tol, "tol", low=0.0, low_open=True, what="a positive number")
    sinkhorn_tol = check_real(sinkhorn_tol, "sinkhorn_tol", low=0.0, high=1.0, low_open=True, high_open=True)
    sinkhorn_n_iter_max = check_int(sinkhorn_n_iter_max, "sinkhorn_n_iter_max", low=1)
    rng = check_random_state(random_state)
    n_threads = check_n_threads(n_threads)
    verbose = check_verbose(verbose)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if n_support is not None:
        n_support = check_int(n_support, "n_support", low=1)
    if support_init is not None:
        X = np.array(_points(support_init, "support_init"), dtype=np.float64)  # a copy: never modified
        if X.shape[1] != d or (n_support is not None and X.shape[0] != n_support):
            want = f"({n_support}, {d})" if n_support is not None else f"(n_support, {d})"
            raise ValueError(f"support_init must have shape {want}, got {X.shape}")
    else:
        X = _initial_support(points, cloud_masses, w, n_support or max(len(p) for p in points), rng)
    everything = np.concatenate(points + [X])
    spread = float(np.max(np.ptp(everything, axis=0))) or 1.0

    def solve_all(X):
        objective, cost, maps = 0.0, 0.0, np.zeros_like(X)
        for wk, p, m in zip(w, points, cloud_masses, strict=True):
            if wk == 0.0:
                continue
            res = sinkhorn(
                X,
                p,
                None,
                m,
                eps=eps,
                tol=sinkhorn_tol,
                n_iter_max=sinkhorn_n_iter_max,
                method=method,
                n_threads=n_threads,
            )
            maps += wk * res.barycentric_map()
            objective += wk * float(res.dual)
            cost += wk * float(res.cost)
        return maps, objective, cost

    converged, move, n_iter, cost, previous = False, np.inf, 0, np.nan, np.inf
    with warnings.catch_warnings():
        # a stage that does not reach sinkhorn_tol still gives a usable map; one warning is said below
        warnings.simplefilter("ignore", ConvergenceWarning)
        while n_iter < n_iter_max:
            T, objective, cost = solve_all(X)
            move = float(np.sqrt(np.max(np.sum((T - X) ** 2, axis=1))))
            decrease = previous - objective
            X, n_iter, previous = T, n_iter + 1, objective
            if verbose >= 2:
                logger.info("barycenter: iteration %d, displacement %.3e, objective %.8g", n_iter, move, objective)
            if move <= tol * spread or abs(decrease) <= tol * abs(objective):
                converged = True
                break
            if callback is not None and callback({"n_iter": n_iter, "support": X, "objective": objective}, move):
                break
    if verbose:
        logger.info("barycenter: %d iterations, displacement %.3e, cost %.6g", n_iter, move, cost)
    if not converged and n_iter >= n_iter_max:
        warnings.warn(
            f"barycenter stopped after n_iter_max={n_iter_max} iterations with displacement {move:.3e} > "
            f"tol * spread = {tol * spread:.3e} and a relative objective decrease above tol={tol:g}; "
            "raise n_iter_max or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return BarycenterResult(X, previous, cost, n_iter, move, converged)


def _initial_support(points, masses, w, n_support: int, rng) -> np.ndarray:
    """``n_support`` points drawn from the mixture of the clouds (distinct while possible)."""
    pool = np.concatenate(points)
    p = np.concatenate([wk * m for wk, m in zip(w, masses, strict=True)])
    p = p / p.sum()
    replace = n_support > int(np.count_nonzero(p))
    return pool[rng.choice(pool.shape[0], size=n_support, replace=replace, p=p)].copy()
