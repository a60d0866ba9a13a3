"""POT-compatible entry points: swap ``ot.bregman.empirical_sinkhorn2(...)`` for
``lorainne.ot.pot.empirical_sinkhorn2(...)`` with the same arguments.

Import it as ``from lorainne.ot import pot`` (it is not imported by ``lorainne.ot`` itself). Each
function takes POT's argument names where the meanings coincide and returns what POT returns;
the work is done by :func:`lorainne.sinkhorn` (beyond 1e5 pairs the hierarchical kernel, memory linear
in n, or in 3-D the stored float32 kernel within 1 GiB) and :func:`lorainne.sinkhorn_divergence`.

=========================================================  ==============================================
POT                                                        lorainne.ot.pot (same call)
=========================================================  ==============================================
``ot.bregman.empirical_sinkhorn(X_s, X_t, reg, a, b)``     ``empirical_sinkhorn``: the plan (dense n x m),
                                                           or ``(log_u, log_v)`` with ``isLazy=True``
``ot.bregman.empirical_sinkhorn2(X_s, X_t, reg, a, b)``    ``empirical_sinkhorn2``: ``<P, C>``
``ot.bregman.empirical_sinkhorn_divergence(...)``          ``empirical_sinkhorn_divergence``: POT's
                                                           ``max(0, <P_ab, C> - (<P_aa, C> + <P_bb, C>) / 2)``
``ot.sinkhorn(a, b, ot.dist(xs, xt), reg)``                ``sinkhorn(a, b, None, reg, x=xs, y=xt)``
``ot.sinkhorn2(a, b, ot.dist(xs, xt), reg)``               ``sinkhorn2(a, b, None, reg, x=xs, y=xt)``
``ot.unbalanced.sinkhorn_unbalanced2(a, b, M, reg,         ``empirical_sinkhorn_unbalanced2(X_s, X_t, reg,
reg_m)`` with ``M = ot.dist(X_s, X_t)``                    reg_m, a, b)`` (and ``..._unbalanced``: the plan)
=========================================================  ==============================================

Correspondences: ``reg`` is lorainne's ``eps`` with ``C = |x - y|^2`` (POT's ``metric="sqeuclidean"``,
the default of ``ot.dist``; no other metric); ``reg_m`` is the KL strength ``rho = reach**2`` (a
pair for the two sides, ``inf`` for a fixed side); ``a``, ``b`` = None or ``[]`` are uniform;
``numItermax`` / ``numIterMax`` is ``n_iter_max``; ``stopThr`` is ``tol`` (lorainne bounds the L1
error of both marginals relative to the mass, POT the L2 norm of one marginal: lorainne's stop is
at least as strict; thresholds below 1e-13 are raised to it); ``verbose`` logs on the
``lorainne`` logger; ``warn=False`` silences the ConvergenceWarning; ``log=True`` adds a dict with
``niter``, ``err`` (a one-entry list: the final marginal error), ``log_u = f / reg + log a``,
``log_v = g / reg + log b`` (POT's ``sinkhorn_log`` scalings: ``P = exp(log_u + log_v - C / reg)``),
``u``, ``v`` (their exponentials), and ``result`` (the :class:`lorainne.SinkhornResult`).
``isLazy`` and ``batchSize`` are accepted and not needed (no n x m matrix is stored by the solve);
``warmstart`` is not supported. Other keyword arguments go to :func:`lorainne.sinkhorn`
(``method``, ``n_threads``, ``eps_scaling``, ``kernel_tol``, ``backend``, ...).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._warnings import ConvergenceWarning
from . import sinkhorn as _sinkhorn
from . import sinkhorn_divergence as _sinkhorn_divergence
from ._xp import _sq_dists

__all__ = [
    "empirical_sinkhorn",
    "empirical_sinkhorn2",
    "empirical_sinkhorn_divergence",
    "empirical_sinkhorn_unbalanced",
    "empirical_sinkhorn_unbalanced2",
    "sinkhorn",
    "sinkhorn2",
]


def _check_pot(metric="sqeuclidean", warmstart=None, isLazy=False, batchSize=100) -> None:
    if metric != "sqeuclidean":
        raise ValueError(f"metric must be 'sqeuclidean' (lorainne's C = |x - y|^2), got {metric!r}")
    if warmstart is not None:
        raise ValueError("warmstart is not supported by lorainne.ot.pot; pass warmstart=None")
    if not isinstance(isLazy, (bool, np.bool_)):
        raise TypeError(f"isLazy must be True or False, got {isLazy!r}")


def _solve(X_s, X_t, reg, a, b, numItermax, stopThr, verbose, warn, reach=None, **kwargs):
    tol = max(float(stopThr), 1e-13) if isinstance(stopThr, (int, float)) and stopThr > 0 else stopThr
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore", ConvergenceWarning)
        return _sinkhorn(
            X_s, X_t, a, b, eps=reg, reach=reach, n_iter_max=numItermax, tol=tol, verbose=verbose, **kwargs
        )


def _log(res, reg: float) -> dict:
    """POT's log dict from a lorainne result."""
    p = res.problem
    with np.errstate(divide="ignore"):
        log_u = np.asarray(res.f, dtype=np.float64) / reg + np.log(p.a)
        log_v = np.asarray(res.g, dtype=np.float64) / reg + np.log(p.b)
    return {
        "niter": res.n_iter,
        "err": [res.marginal_error],
        "log_u": log_u,
        "log_v": log_v,
        "u": np.exp(log_u),
        "v": np.exp(log_v),
        "result": res,
    }


def _plan(res, reg: float) -> np.ndarray:
    """The dense plan exp(log_u + log_v - C / reg) (n x m: for the small problems POT users form)."""
    p = res.problem
    lg = _log(res, reg)
    C = _sq_dists(np, np.asarray(p.x, dtype=np.float64), np.asarray(p.y, dtype=np.float64))
    return np.exp(lg["log_u"][:, None] + lg["log_v"][None, :] - C / reg)


def empirical_sinkhorn(
    X_s,
    X_t,
    reg,
    a=None,
    b=None,
    metric="sqeuclidean",
    numIterMax=10000,
    stopThr=1e-9,
    isLazy=False,
    batchSize=100,
    verbose=False,
    log=False,
    warn=True,
    warmstart=None,
    **kwargs,
):
    """POT's ``empirical_sinkhorn``: the entropic plan between point clouds (dense n x m), or with
    ``isLazy=True`` the log-scalings ``(log_u, log_v)`` (O(n + m) memory).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((30, 2))
    >>> P = pot.empirical_sinkhorn(x, x + 0.5, 0.05)
    >>> P.shape, bool(np.allclose(P.sum(axis=1), 1 / 30, atol=1e-8))
    ((30, 30), True)
    """
    _check_pot(metric, warmstart, isLazy, batchSize)
    res = _solve(X_s, X_t, reg, a, b, numIterMax, stopThr, verbose, warn, **kwargs)
    lg = _log(res, float(reg))
    out = (lg["log_u"], lg["log_v"]) if isLazy else _plan(res, float(reg))
    if log:
        return (*out, lg) if isLazy else (out, lg)
    return out


def empirical_sinkhorn2(
    X_s,
    X_t,
    reg,
    a=None,
    b=None,
    metric="sqeuclidean",
    numIterMax=10000,
    stopThr=1e-9,
    isLazy=False,
    batchSize=100,
    verbose=False,
    log=False,
    warn=True,
    warmstart=None,
    **kwargs,
):
    """POT's ``empirical_sinkhorn2``: the transport cost ``<P, C>`` of the entropic plan.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((50, 2))
    >>> loss = pot.empirical_sinkhorn2(x, x + [0.3, 0.4], 0.01)
    >>> bool(0.25 < loss < 0.26)  # |t|^2 = 0.25 plus the entropic blur
    True
    """
    _check_pot(metric, warmstart, isLazy, batchSize)
    res = _solve(X_s, X_t, reg, a, b, numIterMax, stopThr, verbose, warn, **kwargs)
    loss = res.cost
    return (loss, _log(res, float(reg))) if log else loss


def empirical_sinkhorn_divergence(
    X_s,
    X_t,
    reg,
    a=None,
    b=None,
    metric="sqeuclidean",
    numIterMax=10000,
    stopThr=1e-9,
    verbose=False,
    log=False,
    warn=True,
    warmstart=None,
    **kwargs,
):
    """POT's ``empirical_sinkhorn_divergence``: ``max(0, <P_ab, C> - (<P_aa, C> + <P_bb, C>) / 2)``
    with POT's transport costs (not :func:`lorainne.sinkhorn_divergence`'s debiased duals; that
    one is the divergence of Feydy et al., this one POT's number).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((40, 2))
    >>> round(float(pot.empirical_sinkhorn_divergence(x, x, 0.05)), 8)
    0.0
    """
    _check_pot(metric, warmstart)
    tol = max(float(stopThr), 1e-13) if isinstance(stopThr, (int, float)) and stopThr > 0 else stopThr
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore", ConvergenceWarning)
        div = _sinkhorn_divergence(X_s, X_t, a, b, eps=reg, n_iter_max=numIterMax, tol=tol, verbose=verbose, **kwargs)
    ab, aa, bb = div.xy.cost, div.xx.cost, div.yy.cost
    value = type(ab)(max(0.0, float(ab) - 0.5 * (float(aa) + float(bb))))
    if not log:
        return value
    reg = float(reg)
    return value, {
        "sinkhorn_loss_ab": ab,
        "sinkhorn_loss_a": aa,
        "sinkhorn_loss_b": bb,
        "log_sinkhorn_ab": _log(div.xy, reg),
        "log_sinkhorn_a": _log(div.xx, reg),
        "log_sinkhorn_b": _log(div.yy, reg),
        "result": div,
    }


def _points_args(M, x, y):
    if M is not None:
        raise ValueError("M must be None: lorainne computes C = |x - y|^2 from the points x and y (pass x=..., y=...)")
    if x is None or y is None:
        raise ValueError("pass the points: x=... and y=... (lorainne works from points, not from a cost matrix)")
    return x, y


def sinkhorn(
    a, b, M, reg, numItermax=1000, stopThr=1e-9, verbose=False, log=False, warn=True, *, x=None, y=None, **kwargs
):
    """POT's ``ot.sinkhorn(a, b, M, reg)`` on points: ``M`` must be None and the points given as
    ``x``, ``y`` (``M = ot.dist(x, y)``); returns the plan (dense n x m), with ``log`` the dict.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((20, 2))
    >>> pot.sinkhorn([], [], None, 0.1, x=x, y=x).shape
    (20, 20)
    """
    x, y = _points_args(M, x, y)
    res = _solve(x, y, reg, a, b, numItermax, stopThr, verbose, warn, **kwargs)
    plan = _plan(res, float(reg))
    return (plan, _log(res, float(reg))) if log else plan


def sinkhorn2(
    a, b, M, reg, numItermax=1000, stopThr=1e-9, verbose=False, log=False, warn=True, *, x=None, y=None, **kwargs
):
    """POT's ``ot.sinkhorn2(a, b, M, reg)`` on points (``M`` None, points ``x``, ``y``): ``<P, C>``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((20, 2))
    >>> c = pot.sinkhorn2([], [], None, 0.05, x=x, y=x + 0.1)
    >>> bool(0.02 < c < 0.05)  # |t|^2 = 0.02 plus the entropic blur
    True
    """
    x, y = _points_args(M, x, y)
    res = _solve(x, y, reg, a, b, numItermax, stopThr, verbose, warn, **kwargs)
    return (res.cost, _log(res, float(reg))) if log else res.cost


def _reach(reg_m):
    """POT's reg_m (a KL strength, or a pair) as lorainne's reach = sqrt(reg_m)."""
    pair = tuple(reg_m) if isinstance(reg_m, (tuple, list, np.ndarray)) else (reg_m, reg_m)
    if len(pair) == 1:
        pair = (pair[0], pair[0])
    if len(pair) != 2:
        raise ValueError(f"reg_m must be a number or a pair of numbers, got {reg_m!r}")
    reach = []
    for r in pair:
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.floating, np.integer)):
            raise TypeError(f"reg_m must be a positive number (or inf) or a pair of them, got {reg_m!r}")
        if not r > 0:
            raise ValueError(f"reg_m must be positive (inf: a fixed marginal), got {reg_m!r}")
        reach.append(math.sqrt(float(r)))
    return tuple(reach)


def empirical_sinkhorn_unbalanced(
    X_s, X_t, reg, reg_m, a=None, b=None, numItermax=1000, stopThr=1e-6, verbose=False, log=False, warn=True, **kwargs
):
    """POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, ot.dist(X_s, X_t), reg, reg_m,
    reg_type="kl")`` on points: the unbalanced entropic plan (dense n x m).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((20, 2))
    >>> P = pot.empirical_sinkhorn_unbalanced(x, x + 2.0, 0.1, 1.0)
    >>> bool(P.sum() < 0.1)  # transport over a distance of sqrt(8) costs more than dropping the mass
    True
    """
    _check_pot()
    res = _solve(X_s, X_t, reg, a, b, numItermax, stopThr, verbose, warn, reach=_reach(reg_m), **kwargs)
    plan = _plan(res, float(reg))
    return (plan, _log(res, float(reg))) if log else plan


def empirical_sinkhorn_unbalanced2(
    X_s,
    X_t,
    reg,
    reg_m,
    a=None,
    b=None,
    numItermax=1000,
    stopThr=1e-6,
    verbose=False,
    log=False,
    warn=True,
    returnCost="linear",
    **kwargs,
):
    """POT's ``ot.unbalanced.sinkhorn_unbalanced2(a, b, ot.dist(X_s, X_t), reg, reg_m,
    reg_type="kl", returnCost=...)`` on points.

    ``returnCost="linear"``: ``<P, C>``; ``"total"``: POT's ``total_cost``, ``<P, C> + reg sum P
    log(P / a b^T) + reg_m (sum P1 log(P1 / a) + sum P^T1 log(P^T1 / b))`` (KLs without their mass
    terms; it is 0 at the optimum when both sides are penalized). Both are computed in O(n + m)
    from the marginals the optimal potentials ask for, ``P 1 = a exp(-f / reg_m)`` (exact at the
    optimum, to the solver's tolerance otherwise). :func:`lorainne.sinkhorn`'s ``cost`` and
    ``dual`` are the objective with the full KLs.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.ot import pot
    >>> x = np.random.default_rng(0).random((20, 2))
    >>> c = pot.empirical_sinkhorn_unbalanced2(x, x + 0.1, 0.01, 10.0, stopThr=1e-9)
    >>> bool(0.02 < c < 0.025)  # nearly balanced: about |t|^2 = 0.02 plus the entropic blur
    True
    """
    _check_pot()
    if returnCost not in ("linear", "total"):
        raise ValueError(f"returnCost must be 'linear' or 'total', got {returnCost!r}")
    reach = _reach(reg_m)
    res = _solve(X_s, X_t, reg, a, b, numItermax, stopThr, verbose, warn, reach=reach, **kwargs)
    p = res.problem
    # the marginals and their KL terms at the optimum, sum mu log(mu / w) = -<mu, pot> / rho
    linear = float(res.cost)
    total_marginal = 0.0
    entropy = 0.0  # reg sum P log(P / a b^T) = <mu_a, f> + <mu_b, g> - <P, C>
    for w, pot, r in ((p.a, res.f, reach[0]), (p.b, res.g, reach[1])):
        pot = np.asarray(pot, dtype=np.float64)
        rho = r * r
        mu = w if math.isinf(rho) else w * np.exp(np.minimum(-pot / rho, 700.0))
        entropy += float(np.sum(mu * pot))
        if not math.isinf(rho):
            kl = float(np.sum(mu * (-pot / rho))) - float(mu.sum()) + float(w.sum())
            linear -= rho * kl
            total_marginal += float(np.sum(mu * -pot))
    cost = type(res.cost)(linear if returnCost == "linear" else entropy + total_marginal)
    return (cost, _log(res, float(reg))) if log else cost
