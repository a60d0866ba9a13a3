"""Entropic optimal transport: log-domain Sinkhorn on dense or k-d tree hierarchical Gibbs kernels.

Conventions (used everywhere in this module):

* cost matrix ``C_ij = |x_i - y_j|^2`` (squared Euclidean distance, no 1/2 factor);
* ``eps`` is absolute (in the units of ``C``), not relative to ``max C``;
* the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with potentials ``f``, ``g``;
* ``cost = sum_ij P_ij C_ij``, ``dual = a . f + b . g``;
* ``marginal_error = |P 1 - a|_1 + |P^T 1 - b|_1`` at the returned potentials; ``tol`` bounds it;
* uniform weights (``1/n``, ``1/m``) when ``a`` or ``b`` is None.

Two kernels do the work. ``method="dense"`` evaluates every entry (log-sum-exp over all pairs,
O(n m) time per iteration; the Rust path stores nothing of size n x m, the xp path forms C).
``method="hierarchical"`` (Rust, NumPy input) partitions the points with k-d trees and applies the
kernel through dense near-field blocks, far-field blocks expanded with an entrywise *relative*
error bound, and pruned blocks whose contribution is provably below the tolerance; memory is
O(n + m). The whole Sinkhorn loop runs in Rust with the GIL released.

Accuracy and cost of the hierarchical kernel. For boxes I, J with centres c_I, c_J and radii
r_I, r_J, ``exp(-|x-y|^2/eps) = exp(-|c_I-c_J|^2/eps) alpha_i beta_j exp(2 (x-c_I).(y-c_J)/eps)``;
only the last factor is expanded (Taylor, total degree p chosen per block from
T = 2 r_I r_J / eps <= 0.5 with the remainder bound e^T T^(p+1)/(p+1)!), in the log domain with
per-block max-shifts, so each far-field entry has *relative* error <= tol/4 however small it is.
Blocks are pruned only when a rigorous upper bound of their contribution is below
tol/2 / (#source leaves) of a rigorous lower bound of every target's total. Together:
``|log_matvec - exact| <= tol`` entrywise. The price of relative accuracy: each point interacts
with every source within about sqrt(eps log(1/tol)), so the work per application is about
(number of partner boxes) x (expansion terms) per point -- O(n) in n with a constant that depends
on eps, d and tol (about 6e3 multiply-adds per point at eps = 0.01, d = 2, tol = 1e-7, n = 1e4).
The hot loops are compiled twice, baseline x86-64 and AVX2 + FMA, chosen at run time.

Iterations. eps-scaling (stages from the squared diameter down to eps, each only to marginal
error 1e-2 with a kernel tolerance to match) warm-starts the final stage, whose iterations are
over-relaxed with the SOR factor omega = 2 / (1 + sqrt(1 - theta)) read off the measured linear
rate theta of the first plain ones: 56 iterations instead of 198 to 1e-6 at eps = 0.01 (2-D
mixtures), 114 instead of 892 at eps = 0.002. See benches/RESULTS_ot.md for the timings.
For d > 3 the expansions have too many terms to pay off and the kernel falls back to pruned
dense blocks (correct, not faster).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from . import _dask
from ._backend import core, resolve, to_host
from ._validation import as_float_array, check_int, check_n_threads, check_option, check_random_state, check_tol
from ._warnings import ConvergenceWarning

logger = logging.getLogger("lorainne")

METHODS = ("auto", "dense", "hierarchical")
KERNEL_METHODS = ("hierarchical", "dense")
#: ``method="auto"`` uses the dense kernel up to this many pairs n * m, the hierarchical one beyond.
AUTO_DENSE_PAIRS = 100_000
DEFAULT_LEAF_SIZE = 32


class SinkhornResult(NamedTuple):
    """The result of :func:`sinkhorn`.

    Attributes
    ----------
    cost : float
        Transport cost ``sum_ij P_ij C_ij`` of the entropic plan.
    dual : float
        ``a . f + b . g``.
    f, g : arrays of shape (n,), (m,)
        Potentials; the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij)/eps)``. In the input's
        array library and floating dtype.
    n_iter : int
        Sinkhorn iterations (one f-update and one g-update each), all eps-scaling stages included.
    marginal_error : float
        L1 error of both marginals of the plan at the returned potentials.
    converged : bool
        Whether ``marginal_error <= tol`` was reached.
    """

    cost: float
    dual: float
    f: Any
    g: Any
    n_iter: int
    marginal_error: float
    converged: bool


# --------------------------------------------------------------------------- validation


def _points(x, name: str):
    x = as_float_array(x, name)
    if x.ndim == 1:
        x = array_namespace(x).reshape(x, (x.shape[0], 1))
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of points (n, d) (or 1-D for points on a line), got shape {tuple(x.shape)}"
        )
    return x


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(float(eps)) or float(eps) <= 0:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


def _weights(w, n: int, name: str, like):
    """Host float64 weights (validated), or uniform ones."""
    if w is None:
        return np.full(n, 1.0 / n)
    w = as_float_array(w, name, finite=False)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per point), got shape {tuple(w.shape)}")
    w = np.asarray(to_host(w), dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(w < 0):
        raise ValueError(f"{name} has negative weights (min {w.min():.3g}); weights must be nonnegative")
    if w.sum() <= 0:
        raise ValueError(f"{name} sums to 0; weights must have positive total mass")
    return w


def _check_eps_scaling(eps_scaling):
    if eps_scaling is None:
        return 0.5
    if eps_scaling is False:
        return None
    if isinstance(eps_scaling, bool) or not isinstance(eps_scaling, numbers.Real) or not (0 < float(eps_scaling) < 1):
        raise ValueError(f"eps_scaling must be None (automatic), False (off) or a ratio in (0, 1), got {eps_scaling!r}")
    return float(eps_scaling)


# --------------------------------------------------------------------------- xp reference


def _sq_dists(xp, x, y):
    """C_ij = |x_i - y_j|^2 (x, y centred on a common point first to limit cancellation)."""
    centre = (xp.sum(x, axis=0) + xp.sum(y, axis=0)) / (x.shape[0] + y.shape[0])
    x = x - centre
    y = y - centre
    C = xp.sum(x * x, axis=1)[:, None] + xp.sum(y * y, axis=1)[None, :] - 2.0 * (x @ y.T)
    return xp.where(C > 0, C, xp.zeros_like(C))


def _safe_log(xp, w):
    positive = w > 0
    return xp.where(positive, xp.log(xp.where(positive, w, xp.ones_like(w))), xp.full_like(w, -xp.inf))


def _lse(xp, Z, axis: int):
    m = xp.max(Z, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    s = xp.sum(xp.exp(Z - m), axis=axis, keepdims=True)
    return xp.squeeze(m + xp.log(s), axis=axis)


def _marginal_error(xp, w, pot, plain, eps):
    """L1 error of one marginal of the plan: sum_i w_i |exp((pot_i - plain_i)/eps) - 1|."""
    expo = (pot - plain) / eps
    expo = xp.where(expo < 700.0, expo, xp.full_like(expo, 700.0))
    return float(xp.sum(w * xp.abs(xp.exp(expo) - 1.0)))


class _Relaxation:
    """The over-relaxation factor omega from the final stage's error history.

    The same rule as ``Relaxation`` in rust/core/src/ot/sinkhorn.rs: once two windows of
    ``WINDOW`` iterations show the same linear rate r, theta (the plain rate) is r for omega = 1,
    or from the SOR relation (r + omega - 1)^2 = r omega^2 theta when omega > 1 converges slower
    than omega - 1; omega becomes 2 / (1 + sqrt(1 - theta)) (capped) if that is larger.
    """

    WINDOW, AGREE, OMEGA_MAX, HISTORY_MAX = 3, 0.02, 1.9, 200

    def __init__(self):
        self.errors: list[float] = []
        self.omega = 1.0

    def observe(self, err: float) -> None:
        if len(self.errors) >= self.HISTORY_MAX:
            return
        self.errors.append(err)
        e, w = self.errors, self.WINDOW
        k = len(e)
        if k < 2 * w + 2:
            return
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r1 = (e[k - 1] / e[k - 1 - w]) ** (1.0 / w)
            r2 = (e[k - 1 - w] / e[k - 1 - 2 * w]) ** (1.0 / w)
        if not (math.isfinite(r1) and math.isfinite(r2) and r1 < 1.0 and abs(r1 - r2) <= self.AGREE):
            return
        r, om = max(r1, r2), self.omega
        if om > 1.0 and r <= 1.1 * (om - 1.0) + 0.02:
            return
        theta = min((r + om - 1.0) ** 2 / (r * om * om), 1.0)
        omega = min(2.0 / (1.0 + math.sqrt(1.0 - theta)), self.OMEGA_MAX)
        if omega > om + 0.01:
            self.omega = omega
            self.errors = []


def _schedule(diam2: float, eps: float, ratio: float | None) -> list[float]:
    stages = []
    if ratio is not None:
        e = diam2
        while e > eps:
            stages.append(e)
            e *= ratio
    stages.append(eps)
    return stages


def _sinkhorn_xp(x, y, a_host, b_host, eps, tol, n_iter_max, ratio, relax, hook):
    """The dense log-domain reference on any array-API library (float64 internally)."""
    xp = array_namespace(x)
    dev = device(x)
    x = xp.astype(x, xp.float64)
    y = xp.astype(y, xp.float64)
    a = xp.asarray(a_host, device=dev)
    b = xp.asarray(b_host, device=dev)
    la, lb = _safe_log(xp, a), _safe_log(xp, b)
    C = _sq_dists(xp, x, y)
    lo = xp.minimum(xp.min(x, axis=0), xp.min(y, axis=0))
    hi = xp.maximum(xp.max(x, axis=0), xp.max(y, axis=0))
    diam2 = float(xp.sum((hi - lo) ** 2))

    settle = _dask.persist_if_dask  # Dask: potentials persisted on the workers, C recomputed in blocks

    def update_f(g, e):
        return settle(-e * _lse(xp, lb[None, :] + (g[None, :] - C) / e, axis=1))

    def update_g(f, e):
        return settle(-e * _lse(xp, la[:, None] + (f[:, None] - C) / e, axis=0))

    stages = _schedule(diam2, eps, ratio)
    g = xp.zeros(C.shape[1], dtype=xp.float64, device=dev)
    f = xp.zeros(C.shape[0], dtype=xp.float64, device=dev)
    n_iter, err, converged, last_eps = 0, math.inf, False, math.nan
    stop = False
    for k, e in enumerate(stages):
        if n_iter >= n_iter_max:
            break
        final = k == len(stages) - 1
        stage_tol = tol if final else max(tol, 1e-2)
        f = update_f(g, e)  # warm start from the previous stage's g
        last_eps = e
        stage_iter = 0
        relaxation = _Relaxation()
        while True:
            omega = relaxation.omega if (final and relax) else 1.0
            g_plain = update_g(f, e)
            g = g_plain if omega == 1.0 else g + omega * (g_plain - g)
            col_err = 0.0 if omega == 1.0 else _marginal_error(xp, b, g, g_plain, e)
            f_plain = update_f(g, e)
            err = _marginal_error(xp, a, f, f_plain, e) + col_err
            n_iter += 1
            stage_iter += 1
            if not math.isfinite(err):
                raise ValueError(f"numerical breakdown: marginal error became {err} at iteration {n_iter} (eps = {e})")
            if hook(n_iter, e, err) or n_iter >= n_iter_max and err > stage_tol:
                stop = True
                break
            if err <= stage_tol:
                converged = final
                break
            if not final and stage_iter >= 50:
                break
            f = f_plain if omega == 1.0 else f + omega * (f_plain - f)
            relaxation.observe(err)
        if stop:
            break
    if last_eps != eps:  # stopped inside a scaling stage: project onto the final eps
        f = update_f(g, eps)
        g = update_g(f, eps)
        err = _marginal_error(xp, a, f, update_f(g, eps), eps)
    P = xp.exp(la[:, None] + lb[None, :] + (f[:, None] + g[None, :] - C) / eps)
    cost = float(xp.sum(P * C))
    dual = float(xp.sum(a * f) + xp.sum(b * g))
    return f, g, n_iter, err, converged, cost, dual


# --------------------------------------------------------------------------- public API


def sinkhorn(
    x,
    y,
    a=None,
    b=None,
    *,
    eps: float,
    method: str = "auto",
    tol: float = 1e-6,
    n_iter_max: int = 10000,
    eps_scaling: float | bool | None = None,
    overrelaxation: bool = True,
    kernel_tol: float | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: int = 0,
    callback: Callable[[dict, float], bool] | None = None,
) -> SinkhornResult:
    """Entropic optimal transport between two point clouds by log-domain Sinkhorn iterations.

    Solves ``min_P sum_ij P_ij C_ij + eps KL(P | a b^T)`` over plans with marginals ``a``, ``b``,
    with ``C_ij = |x_i - y_j|^2`` (no 1/2) and absolute ``eps``. The iterations run on the
    potentials ``f``, ``g`` (never on ``exp(f/eps)``, which over/underflows for small eps), with
    eps-scaling (warm-started stages from the squared diameter of the data down to ``eps``).

    Parameters
    ----------
    x : array of shape (n, d)
        Source points (1-D arrays are points on a line). Integers are promoted to float64.
    y : array of shape (m, d)
        Target points, same d.
    a, b : arrays of shape (n,), (m,), optional
        Nonnegative weights with equal sums (balanced OT). Default: uniform, 1/n and 1/m.
    eps : float
        Entropic regularization, > 0, absolute (same units as squared distances).
    method : {"auto", "dense", "hierarchical"}
        ``"dense"`` evaluates all n*m kernel entries per iteration; ``"hierarchical"`` (Rust,
        NumPy input) uses k-d tree block approximations with entrywise relative error
        ``kernel_tol``, O(n + m) memory; ``"auto"``: dense up to n*m = 1e5 pairs (and on non-NumPy
        arrays), hierarchical beyond (measured faster from n = m = 1000 on).
    tol : float
        Stop when ``marginal_error <= tol``.
    n_iter_max : int
        Cap on the total number of iterations (all eps stages). When the cap (or the callback)
        stops the loop inside an eps-scaling stage, the potentials are projected onto the final
        eps by one more (uncounted) f/g update, so that everything returned refers to ``eps``.
    eps_scaling : float, False or None
        Ratio between successive eps of the scaling schedule (in (0, 1)); None: 0.5; False: no
        scaling (start at ``eps`` directly).
    overrelaxation : bool
        Over-relax the iterations of the final eps stage, ``f <- f + omega (F(g) - f)`` and
        likewise for ``g``, with ``omega = 2 / (1 + sqrt(1 - theta))`` where ``theta`` is the
        linear rate measured on the stage's first plain iterations (the SOR choice; capped at
        1.9). Measured here: 3-4x fewer iterations at eps = 0.01. False: plain Sinkhorn.
    kernel_tol : float, optional
        Entrywise relative error of the hierarchical kernel (default ``tol / 10``, so kernel
        errors stay below the marginal tolerance).
    random_state : None, int, Generator or RandomState
        Accepted for API uniformity; the algorithm is deterministic and draws no random numbers.
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
        ``"rust"`` runs the loop in Rust (NumPy input); the others run the dense array-API
        reference (float64 internally).
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores). Results do not depend on it.
    verbose : int
        1: log a summary on the ``lorainne`` logger; 2: also every 100 iterations.
    callback : callable, optional
        ``callback(state, marginal_error) -> bool`` after every iteration with ``state`` a dict
        (``n_iter``, ``eps``, ``marginal_error``); returning True stops. Called with the GIL
        re-acquired from the Rust loop, so it slows small problems down.

    Returns
    -------
    SinkhornResult
        ``(cost, dual, f, g, n_iter, marginal_error, converged)``.

    Raises
    ------
    ValueError
        eps <= 0, dimension mismatch, NaN/Inf, negative weights, weight sums that differ, empty
        inputs, ``method="hierarchical"`` on non-NumPy input.
    TypeError
        Complex, object or float16 dtypes.

    Warns
    -----
    ConvergenceWarning
        When ``n_iter_max`` is reached before ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import sinkhorn
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((300, 2)), rng.random((200, 2)) + [0.5, 0]
    >>> res = sinkhorn(x, y, eps=0.01)
    >>> res.converged, res.marginal_error <= 1e-6
    (True, True)
    >>> bool(0.25 < res.cost < 0.32)
    True
    """
    x = _points(x, "x")
    y = _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension d, got x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
        )
    n, m = x.shape[0], y.shape[0]
    eps = _check_eps(eps)
    method = check_option(method, "method", METHODS)
    tol = check_tol(tol)
    if tol is None:
        raise ValueError("tol must be a number in (0, 1), got None")
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=1)
    ratio = _check_eps_scaling(eps_scaling)
    if not isinstance(overrelaxation, (bool, np.bool_)):
        raise TypeError(f"overrelaxation must be True or False, got {overrelaxation!r}")
    kernel_tol = check_tol(kernel_tol, "kernel_tol")
    if kernel_tol is None:
        kernel_tol = max(tol / 10.0, 1e-13)
    check_random_state(random_state)
    n_threads = check_n_threads(n_threads)
    verbose = check_int(verbose, "verbose", low=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    a_host = _weights(a, n, "a", x)
    b_host = _weights(b, m, "b", y)
    sa, sb = float(a_host.sum()), float(b_host.sum())
    if abs(sa - sb) > 1e-6 * max(sa, sb):
        raise ValueError(f"a and b must have equal sums (balanced OT), got sum(a) = {sa!r} and sum(b) = {sb!r}")

    chosen = resolve(x, y, backend=backend)
    if method == "auto":
        method = "dense" if (chosen != "rust" or n * m <= AUTO_DENSE_PAIRS) else "hierarchical"
    if method == "hierarchical" and chosen != "rust":
        raise ValueError(
            f"method='hierarchical' needs the Rust backend (NumPy input); got backend {chosen!r}: use method='dense'"
        )

    def hook(n_iter: int, e: float, err: float) -> bool:
        if verbose >= 2 and n_iter % 100 == 0:
            logger.info("sinkhorn: iteration %d, eps %.3g, marginal error %.3e", n_iter, e, err)
        if callback is not None:
            return bool(callback({"n_iter": n_iter, "eps": e, "marginal_error": err}, err))
        return False

    needs_hook = callback is not None or verbose >= 2
    if chosen == "rust":
        xh = np.ascontiguousarray(x, dtype=np.float64)
        yh = np.ascontiguousarray(y, dtype=np.float64)
        out = core().sinkhorn_log(
            xh,
            yh,
            a_host,
            b_host,
            eps=eps,
            tol=tol,
            n_iter_max=n_iter_max,
            eps_scaling=ratio,
            kernel_tol=kernel_tol,
            exact=method == "dense",
            leaf_size=DEFAULT_LEAF_SIZE,
            relax=overrelaxation,
            n_threads=n_threads,
            callback=hook if needs_hook else None,
        )
        f, g = out.f.astype(x.dtype, copy=False), out.g.astype(y.dtype, copy=False)
        n_iter, err, converged, cost, dual = out.n_iter, out.marginal_error, out.converged, out.cost, out.dual
        logger.debug("sinkhorn blocks: %s, tree memory %d bytes", out.stats, out.memory_bytes)
    else:
        f, g, n_iter, err, converged, cost, dual = _sinkhorn_xp(
            x, y, a_host, b_host, eps, tol, n_iter_max, ratio, overrelaxation, hook
        )
        xp = array_namespace(x)
        f, g = xp.astype(f, x.dtype), xp.astype(g, y.dtype)
    if verbose:
        logger.info(
            "sinkhorn (%s, %s): %d iterations, marginal error %.3e, cost %.6g", method, chosen, n_iter, err, cost
        )
    if not converged and n_iter >= n_iter_max:
        import warnings

        warnings.warn(
            f"sinkhorn stopped after n_iter_max={n_iter_max} iterations with marginal error {err:.3e} > tol={tol:g}; "
            "raise n_iter_max, eps or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SinkhornResult(float(cost), float(dual), f, g, int(n_iter), float(err), bool(converged))


class GaussianKernel:
    """The Gibbs kernel ``K_ij = exp(-|x_i - y_j|^2 / eps)`` as a reusable operator.

    ``method="hierarchical"`` (NumPy input, Rust) builds a k-d tree on each point set once and
    applies K through near-field dense blocks, far-field blocks with an entrywise *relative*
    error bound and provably negligible (pruned) blocks: ``log_matvec`` has absolute error
    <= ``tol`` and ``matvec`` (v >= 0) relative error <= ``tol``, entry by entry, however many
    decades ``v`` spans. Memory is O(n + m); nothing of size n x m is stored.
    ``method="dense"`` evaluates every entry (any array-API library; O(n m) memory per call).

    Parameters
    ----------
    x : array of shape (n, d)
    y : array of shape (m, d)
    eps : float
        Kernel width (absolute), > 0.
    method : {"hierarchical", "dense"}
    tol : float
        Relative error bound of the hierarchical kernel, in (0, 1).
    leaf_size : int, optional
        Points per k-d tree leaf (default 32).
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores). Results do not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import GaussianKernel
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((2000, 2)), rng.random((1500, 2))
    >>> K = GaussianKernel(x, y, 0.01, tol=1e-6)
    >>> v = rng.random(1500)
    >>> exact = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 0.01) @ v
    >>> float(np.max(np.abs(K.matvec(v) / exact - 1))) <= 1e-6
    True
    >>> K.stats()["memory_bytes"] < 2000 * 1500 * 8 / 20
    True
    """

    def __init__(
        self,
        x,
        y,
        eps,
        *,
        method: str = "hierarchical",
        tol: float = 1e-6,
        leaf_size: int | None = None,
        n_threads: int | None = None,
    ):
        x = _points(x, "x")
        y = _points(y, "y")
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                "x and y must have the same dimension d, got x of "
                f"shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
            )
        self.eps = _check_eps(eps)
        self.method = check_option(method, "method", KERNEL_METHODS)
        tol = check_tol(tol)
        self.tol = 1e-6 if tol is None else tol
        self.leaf_size = DEFAULT_LEAF_SIZE if leaf_size is None else check_int(leaf_size, "leaf_size", low=1)
        self.n_threads = check_n_threads(n_threads)
        self.shape = (x.shape[0], y.shape[0])
        self.dtype = x.dtype
        self._x, self._y = x, y
        self._rust = None
        if self.method == "hierarchical":
            if resolve(x, y) != "rust":
                raise ValueError(
                    "method='hierarchical' needs NumPy input and the Rust "
                    "core; use method='dense' for other array libraries"
                )
            self._rust = core().HierarchicalKernel(
                np.ascontiguousarray(x, dtype=np.float64),
                np.ascontiguousarray(y, dtype=np.float64),
                self.eps,
                self.tol,
                self.leaf_size,
            )

    def __repr__(self) -> str:
        return f"GaussianKernel(shape={self.shape}, eps={self.eps}, method={self.method!r}, tol={self.tol})"

    def _check_log(self, log_v, size: int, name: str):
        xp = array_namespace(log_v)
        log_v = as_float_array(log_v, name, ndim=1, finite=False)
        if log_v.shape[0] != size:
            raise ValueError(f"{name} must have {size} entries, got shape {tuple(log_v.shape)}")
        if bool(xp.any(xp.isnan(log_v))) or bool(xp.any(log_v == xp.inf)):
            raise ValueError(f"{name} contains NaN or +infinity")
        return log_v

    def _log_apply(self, log_v, transpose: bool, name: str):
        size = self.shape[0] if transpose else self.shape[1]
        log_v = self._check_log(log_v, size, name)
        if self._rust is not None:
            out = self._rust.log_apply(np.ascontiguousarray(log_v, dtype=np.float64), transpose, self.n_threads)
            return out.astype(log_v.dtype, copy=False)
        xp = array_namespace(log_v)
        x = xp.astype(self._x, xp.float64)
        y = xp.astype(self._y, xp.float64)
        C = _sq_dists(xp, x, y)
        lv = xp.astype(log_v, xp.float64)
        if transpose:
            out = _lse(xp, lv[:, None] - C / self.eps, axis=0)
        else:
            out = _lse(xp, lv[None, :] - C / self.eps, axis=1)
        return xp.astype(out, log_v.dtype)

    def log_matvec(self, log_v):
        """``log sum_j exp(log_v_j - C_ij / eps)`` for each i; absolute error <= tol. -inf allowed."""
        return self._log_apply(log_v, False, "log_v")

    def log_rmatvec(self, log_u):
        """``log sum_i exp(log_u_i - C_ij / eps)`` for each j (the transpose)."""
        return self._log_apply(log_u, True, "log_u")

    def _apply(self, v, transpose: bool, name: str):
        size = self.shape[0] if transpose else self.shape[1]
        v = as_float_array(v, name, ndim=1)
        xp = array_namespace(v)
        if v.shape[0] != size:
            raise ValueError(f"{name} must have {size} entries, got shape {tuple(v.shape)}")
        if bool(xp.any(v < 0)):
            raise ValueError(
                f"{name} must be nonnegative (use log_matvec with signs "
                f"handled separately), got min {float(xp.min(v))!r}"
            )
        return xp.exp(self._log_apply(_safe_log(xp, v), transpose, name))

    def matvec(self, v):
        """``K @ v`` for v >= 0, entrywise relative error <= tol."""
        return self._apply(v, False, "v")

    def rmatvec(self, u):
        """``K.T @ u`` for u >= 0, entrywise relative error <= tol."""
        return self._apply(u, True, "u")

    def stats(self) -> dict:
        """Memory and block statistics: ``memory_bytes`` (held by the operator),
        ``dense_bytes`` (what the n x m kernel would take), tree sizes, and the block counts of
        the last application (near/far/pruned blocks, dense entries, far-field terms, max order).
        """
        n, m = self.shape
        info: dict[str, Any] = {"method": self.method, "shape": self.shape, "dense_bytes": 8 * n * m}
        if self._rust is None:
            info["memory_bytes"] = 8 * n * m  # the dense path forms C on each call
            return info
        info["memory_bytes"] = int(self._rust.memory_bytes())
        (nx, lx), (ny, ly) = self._rust.tree_sizes()
        info.update({"x_tree_nodes": nx, "x_tree_leaves": lx, "y_tree_nodes": ny, "y_tree_leaves": ly})
        info.update(self._rust.stats().to_dict())
        return info
