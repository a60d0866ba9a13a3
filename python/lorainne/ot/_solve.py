"""The body of :func:`lorainne.ot.sinkhorn` and of the symmetric solves of a Sinkhorn divergence:
validation, exact rescaling of masses and points, the Rust or xp solve, and the way back to the
caller's scale. Returns plain tuples; ``lorainne.ot`` wraps them into result objects.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype, resolve
from .._exact_scaling import times_power_of_two
from .._validation import check_int, check_n_threads, check_option, check_random_state, check_tol, check_verbose
from .._warnings import ConvergenceWarning
from ._checks import _check_eps, _check_eps_scaling, _check_reach, _log_weights, _points, _unit_weights, _weights
from ._kernel import DEFAULT_LEAF_SIZE
from ._scale import _scale_exponent
from ._xp import _sinkhorn_symmetric_xp, _sinkhorn_xp

logger = logging.getLogger("lorainne")

METHODS = ("auto", "dense", "hierarchical", "matrix")
#: ``method="auto"`` uses the dense kernel up to this many pairs n * m, the hierarchical one beyond.
AUTO_DENSE_PAIRS = 100_000
ACCELERATIONS = ("anderson", "overrelaxation")
#: Iterations the Anderson mixing remembers (measured at n = 1e4, eps = 0.01: memory 3 needs 16 more
#: iterations than 5, 8 and 12 three fewer than 5, 20 as many as 8).
ANDERSON_MEMORY = 8
#: Multiscale warm start (hierarchical method, both clouds of at least ``MULTISCALE_MIN_POINTS``):
#: the eps-scaling stages before the last run on one point per ``COARSE_LEAF`` (a k-d tree leaf at
#: its weighted centroid); below that size the early stages are cheap anyway.
COARSE_LEAF = 8
MULTISCALE_MIN_POINTS = 2000
#: ``method="matrix"`` stores n * m float32 kernel entries; above this many bytes it refuses.
MATRIX_MAX_BYTES = 4_000_000_000
#: ``method="auto"`` stores the kernel (``"matrix"``) in 3 or more dimensions when its 4 n m bytes
#: fit in this budget (1 GiB: n = m = 16,384), the k-d tree kernel beyond: at n = m = 1e4 in 3-D an
#: iteration reads 400 MB once where the tree's is ~5x slower; in 2-D the tree's is faster.
AUTO_MATRIX_MAX_BYTES = 2**30
AUTO_MATRIX_MIN_DIM = 3


def _raw_weights(w, log_w, n: int, name: str) -> np.ndarray:
    """The weights in the caller's masses (unbalanced problems are not invariant under a change of
    mass, so they are solved as given).
    """
    if log_w is None:
        return _weights(w, n, name)
    if w is not None:
        raise ValueError(f"pass {name} or log_{name}, not both")
    with np.errstate(over="ignore", under="ignore"):
        w = np.exp(_log_weights(log_w, n, f"log_{name}"))
    s = float(w.sum())
    if not (0.0 < s < math.inf):
        raise ValueError(
            f"exp(log_{name}) sums to {s!r}: an unbalanced problem is solved in the caller's masses, "
            "which must be within the float64 range (shift the log-weights)"
        )
    return w


def _options(
    eps,
    method,
    tol,
    n_iter_max,
    eps_scaling,
    overrelaxation,
    acceleration,
    multiscale,
    kernel_tol,
    random_state,
    n_threads,
    verbose,
    callback,
):
    eps = _check_eps(eps)
    method = check_option(method, "method", METHODS)
    tol = check_tol(tol)
    if tol is None:
        raise ValueError("tol must be a number in (0, 1), got None")
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=1)
    ratio = _check_eps_scaling(eps_scaling)
    if not isinstance(overrelaxation, (bool, np.bool_)):
        raise TypeError(f"overrelaxation must be True or False, got {overrelaxation!r}")
    acceleration = check_option(acceleration, "acceleration", ACCELERATIONS)
    if not isinstance(multiscale, (bool, np.bool_)):
        raise TypeError(f"multiscale must be True or False, got {multiscale!r}")
    # the Anderson memory (0: over-relaxation where relax is on)
    anderson = ANDERSON_MEMORY if overrelaxation and acceleration == "anderson" else 0
    kernel_tol = check_tol(kernel_tol, "kernel_tol")
    if kernel_tol is None:
        kernel_tol = max(tol / 10.0, 1e-13)
    check_random_state(random_state)
    n_threads = check_n_threads(n_threads)
    verbose = check_verbose(verbose)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    accel = (bool(overrelaxation), anderson, bool(multiscale))
    return eps, method, tol, n_iter_max, ratio, accel, kernel_tol, n_threads, verbose


def _solve(
    x,
    y,
    a,
    b,
    *,
    log_a=None,
    log_b=None,
    eps,
    reach=None,
    method="auto",
    tol=1e-6,
    n_iter_max=10000,
    eps_scaling=None,
    overrelaxation=True,
    acceleration="anderson",
    multiscale=True,
    kernel_tol=None,
    random_state=None,
    backend="auto",
    n_threads=None,
    verbose=0,
    callback=None,
    symmetric=False,
    name="sinkhorn",
):
    """Solve; returns ``(cost, dual, f, g, n_iter, err, converged)`` and the fields of a
    ``SinkhornProblem``. ``symmetric``: y is x and b is a (not read), solved by averaged updates.
    """
    x = _points(x, "x")
    y = x if symmetric else _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension d, got x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
        )
    n, m = x.shape[0], y.shape[0]
    eps, method, tol, n_iter_max, ratio, (relax, anderson, multiscale), kernel_tol, n_threads, verbose = _options(
        eps,
        method,
        tol,
        n_iter_max,
        eps_scaling,
        overrelaxation,
        acceleration,
        multiscale,
        kernel_tol,
        random_state,
        n_threads,
        verbose,
        callback,
    )
    rhos = _check_reach(reach)
    if symmetric:
        b, log_b = a, log_a
    if rhos is None:  # balanced: solved on unit masses (exact), tol relative to the mass
        a_host, sa, log_sa = _unit_weights(a, log_a, n, "a")
        b_host, sb, log_sb = _unit_weights(b, log_b, m, "b")
        if abs(sa - sb) > 1e-6 * max(sa, sb) if log_a is None and log_b is None else abs(log_sa - log_sb) > 1e-6:
            raise ValueError(
                f"a and b must have equal sums (balanced OT; pass reach for unbalanced OT), got sum(a) = {sa!r} "
                f"and sum(b) = {sb!r}"
            )
        a_given, b_given = a_host * sa, b_host * sb
        if log_a is None:
            a_given = _weights(a, n, "a")
        if log_b is None:
            b_given = _weights(b, m, "b")
    else:  # unbalanced: solved in the caller's masses; the error is divided by sum(a)
        a_host, b_host = _raw_weights(a, log_a, n, "a"), _raw_weights(b, log_b, m, "b")
        a_given, b_given = a_host, b_host
        sa, sb, log_sa, log_sb = float(a_host.sum()), float(b_host.sum()), 0.0, 0.0

    chosen = resolve(x, y, backend=backend)
    if method == "auto":
        method = "dense" if (chosen != "rust" or n * m <= AUTO_DENSE_PAIRS) else "hierarchical"
        if method == "hierarchical" and not symmetric and x.shape[1] >= AUTO_MATRIX_MIN_DIM:
            method = "matrix" if 4 * n * m <= AUTO_MATRIX_MAX_BYTES else method
    if method in ("hierarchical", "matrix") and chosen != "rust":
        raise ValueError(
            f"method={method!r} needs the Rust backend (NumPy input); got backend {chosen!r}: use method='dense'"
        )
    stored = method == "matrix"
    if stored and symmetric:
        raise ValueError(
            f"method='matrix' is not available for the symmetric solves of {name} "
            "(use method='hierarchical' or 'dense')"
        )
    if stored and 4 * n * m > MATRIX_MAX_BYTES:
        raise ValueError(
            f"method='matrix' stores n * m = {n * m} float32 kernel entries ({4 * n * m} bytes), above the cap "
            f"of {MATRIX_MAX_BYTES} bytes: use method='hierarchical'"
        )
    # the kernel of the accurate measurements, projections and objective of method="matrix"
    accurate = "dense" if stored and n * m <= AUTO_DENSE_PAIRS else ("hierarchical" if stored else method)
    # solved on unit spread (exact for a power of two: C / eps, C / rho and the plan do not change)
    k = _scale_exponent(x, y, eps)
    eps_k = math.ldexp(eps, 2 * k)
    rhos_k = None if rhos is None else tuple(math.ldexp(r, 2 * k) if math.isfinite(r) else r for r in rhos)
    mass = 1.0 if rhos is None else sa

    def hook(n_iter: int, e: float, err: float) -> bool:
        e, err = math.ldexp(e, -2 * k), err * sa
        if verbose >= 2 and n_iter % 100 == 0:
            logger.info("%s: iteration %d, eps %.3g, marginal error %.3e", name, n_iter, e, err)
        if callback is not None:
            return bool(callback({"n_iter": n_iter, "eps": e, "marginal_error": err}, err))
        return False

    needs_hook = callback is not None or verbose >= 2
    if chosen == "rust":
        xh = times_power_of_two(np.ascontiguousarray(x, dtype=np.float64), k)
        options = {
            "eps": eps_k,
            "tol": tol,
            "n_iter_max": n_iter_max,
            "eps_scaling": ratio,
            "kernel_tol": kernel_tol,
            "exact": accurate == "dense",
            "leaf_size": DEFAULT_LEAF_SIZE,
            "relax": relax,
            "anderson": anderson,
            "coarse_leaf": COARSE_LEAF
            if multiscale and accurate == "hierarchical" and min(n, m) >= MULTISCALE_MIN_POINTS
            else 0,
            "n_threads": n_threads,
            "callback": hook if needs_hook else None,
            "stored": stored,
        }
        if rhos_k is not None:
            options.update(rho_a=rhos_k[0], rho_b=rhos_k[1], mass=mass)
        if symmetric:
            out = core().sinkhorn_log_symmetric(xh, a_host, **options)
        else:
            yh = times_power_of_two(np.ascontiguousarray(y, dtype=np.float64), k)
            out = core().sinkhorn_log(xh, yh, a_host, b_host, **options)
        f, g = out.f, out.g
        n_iter, err, converged, cost, dual = out.n_iter, out.marginal_error, out.converged, out.cost, out.dual
        logger.debug("%s blocks: %s, tree memory %d bytes", name, out.stats, out.memory_bytes)
    elif symmetric:
        rho = math.inf if rhos_k is None else rhos_k[0]
        f, g, n_iter, err, converged, cost, dual = _sinkhorn_symmetric_xp(
            x, a_host, eps_k, tol, n_iter_max, ratio, hook, k, rho, mass
        )
    else:
        f, g, n_iter, err, converged, cost, dual = _sinkhorn_xp(
            x, y, a_host, b_host, eps_k, tol, n_iter_max, ratio, relax, hook, k, rhos_k, mass, anderson
        )
    # back to the caller's scale and masses (balanced: P = sum(a) P_normalized, f lower by eps log sum(b))
    xp = array_namespace(x)
    f, g = times_power_of_two(f, -2 * k), times_power_of_two(g, -2 * k)
    cost, dual = math.ldexp(float(cost), -2 * k), math.ldexp(float(dual), -2 * k)
    if log_sa != 0.0 or log_sb != 0.0:
        f = f - eps * log_sb
        fx, gx = array_namespace(f), array_namespace(g)
        dual = sa * float(fx.sum(fx.asarray(a_host, device=device(f)) * f)) + sb * float(
            gx.sum(gx.asarray(b_host, device=device(g)) * g)
        )
        cost = sa * cost
    err = sa * err
    f, g = xp.astype(f, x.dtype), xp.astype(g, y.dtype)
    if verbose:
        logger.info(
            "%s (%s, %s): %d iterations, marginal error %.3e, cost %.6g", name, method, chosen, n_iter, err, cost
        )
    if not converged and n_iter >= n_iter_max:
        bound = f"tol={tol:g}" if sa == 1.0 else f"tol * sum(a) = {tol * sa:.3e}"
        warnings.warn(
            f"{name} stopped after n_iter_max={n_iter_max} iterations with marginal error {err:.3e} > {bound}; "
            "raise n_iter_max, eps or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    scalar = np.result_type(numpy_dtype(x.dtype), numpy_dtype(y.dtype)).type
    fields = (scalar(cost), scalar(dual), f, g, int(n_iter), float(err), bool(converged))
    problem = (x, y, a_given, b_given, eps, method, chosen, kernel_tol, n_threads)
    return fields, problem
