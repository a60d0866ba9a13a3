"""Entropic optimal transport: log-domain Sinkhorn on dense or k-d tree hierarchical Gibbs kernels.

Conventions (used everywhere in this module):

* cost matrix ``C_ij = |x_i - y_j|^2`` (squared Euclidean distance, no 1/2 factor);
* ``eps`` is absolute (in the units of ``C``), not relative to ``max C``;
* the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with potentials ``f``, ``g``;
* ``cost = sum_ij P_ij C_ij``, ``dual = a . f + b . g``;
* ``marginal_error = |P 1 - a|_1 + |P^T 1 - b|_1`` at the returned potentials; ``tol`` bounds it
  relative to the total mass: ``marginal_error <= tol * sum(a)``;
* uniform weights (``1/n``, ``1/m``) when ``a`` or ``b`` is None or empty (POT's ``a = []``).

Every problem is solved on unit masses and, when the points span more than 2**32 or less than
2**-32, on points scaled by a power of two 2**k with eps scaled by 4**k. Both are exact (the plan
and C / eps do not change), so data at any scale float64 can hold gives the rescaled answer:
``sinkhorn(2**k x, 2**k y, eps=4**k eps)`` returns ``4**k`` times the cost and the potentials.

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
A schedule is never much worse than none: the plain run at eps (``eps_scaling=False``) makes its
first iteration before the schedule (returned at once if it already meets ``tol``, as on a grid
with x = y), and when the final stage stalls (its measured rate predicts more than 10 times the
iterations it has run, and at least 1000) the two race, one iteration each in turn, the first to
reach ``tol`` winning: at most about twice the plain run's iterations plus those before the stall.
For d > 3 the expansions have too many terms to pay off and the kernel falls back to pruned
dense blocks (correct, not faster).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype, resolve
from .._exact_scaling import times_power_of_two
from .._validation import check_int, check_n_threads, check_option, check_random_state, check_tol, check_verbose
from .._warnings import ConvergenceWarning
from ._barycenter import BarycenterResult, make_barycenter
from ._checks import _check_eps, _check_eps_scaling, _points, _weights
from ._kernel import DEFAULT_LEAF_SIZE, KERNEL_METHODS, GaussianKernel
from ._scale import _scale_exponent
from ._xp import _sinkhorn_xp

__all__ = [
    "AUTO_DENSE_PAIRS",
    "DEFAULT_LEAF_SIZE",
    "KERNEL_METHODS",
    "METHODS",
    "BarycenterResult",
    "GaussianKernel",
    "SinkhornProblem",
    "SinkhornResult",
    "barycenter",
    "sinkhorn",
]

logger = logging.getLogger("lorainne")

METHODS = ("auto", "dense", "hierarchical")
#: ``method="auto"`` uses the dense kernel up to this many pairs n * m, the hierarchical one beyond.
AUTO_DENSE_PAIRS = 100_000


class SinkhornProblem(NamedTuple):
    """What a :class:`SinkhornResult` was solved from, kept so that plan products can be computed.

    ``x``, ``y`` are the validated points (the caller's arrays when no conversion was needed: never
    modified), ``a``, ``b`` the weights as float64 NumPy arrays in the caller's masses, ``eps`` the
    caller's eps, ``method`` the kernel that solved it (``"dense"`` or ``"hierarchical"``),
    ``backend`` the backend that ran (``"rust"`` or an array-API one), ``kernel_tol`` and
    ``n_threads`` the kernel's settings.
    """

    x: Any
    y: Any
    a: np.ndarray
    b: np.ndarray
    eps: float
    method: str
    backend: str
    kernel_tol: float
    n_threads: int | None

    def __repr__(self) -> str:
        return (
            f"SinkhornProblem(x of shape {tuple(self.x.shape)}, y of shape {tuple(self.y.shape)}, eps={self.eps!r}, "
            f"method={self.method!r}, backend={self.backend!r}, kernel_tol={self.kernel_tol!r})"
        )


class _SinkhornFields(NamedTuple):
    cost: float
    dual: float
    f: Any
    g: Any
    n_iter: int
    marginal_error: float
    converged: bool


class SinkhornResult(_SinkhornFields):
    """The result of :func:`sinkhorn`.

    Unpacks as ``(cost, dual, f, g, n_iter, marginal_error, converged)``; the problem it solves is
    in ``problem`` (a :class:`SinkhornProblem`, None for a result built by hand or unpickled).

    Attributes
    ----------
    cost : NumPy floating scalar
        Transport cost ``sum_ij P_ij C_ij`` of the entropic plan, in the floating dtype of the
        input points (``np.float32`` for float32 points; ``np.float64``, a ``float``, otherwise),
        computed in float64.
    dual : NumPy floating scalar
        ``a . f + b . g``, same dtype as ``cost``.
    f, g : arrays of shape (n,), (m,)
        Potentials; the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij)/eps)``. In the input's
        array library and floating dtype.
    n_iter : int
        Sinkhorn iterations (one f-update and one g-update each), all eps-scaling stages included.
    marginal_error : float
        L1 error of both marginals of the plan at the returned potentials (in the units of the
        weights).
    converged : bool
        Whether ``marginal_error <= tol * sum(a)`` was reached.
    problem : SinkhornProblem or None
        Points, weights, eps and kernel settings of the problem (not part of the tuple).
    """

    problem: SinkhornProblem | None = None  # what _replace / _make give: they bypass __new__

    def __new__(cls, *fields, problem: SinkhornProblem | None = None):
        """Build from the seven fields and, keyword-only, the problem."""
        self = super().__new__(cls, *fields)
        # a namedtuple subclass without __slots__ has a __dict__: the problem rides outside the tuple
        self.problem = problem
        return self

    # --- products with the plan, computed from the potentials (lorainne.ot._plan) ---

    def plan_matvec(self, v):
        """``P @ v`` for ``v`` of shape (m,) or (m, k), without forming the n x m plan.

        Each column of one sign is one kernel application in the log domain (entrywise relative
        error <= ``kernel_tol``); a signed column is split into its positive and negative parts,
        two applications, absolute error <= ``kernel_tol * (P @ |v|)`` (the cancellation is
        inherent). O(n + m) memory on the Rust paths (``method="dense"`` evaluates every entry on
        the fly).

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne import sinkhorn
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random((50, 2)), rng.random((40, 2))
        >>> res = sinkhorn(x, y, eps=0.05, tol=1e-9)
        >>> bool(np.allclose(res.plan_matvec(np.ones(40)), 1 / 50, rtol=1e-6))
        True
        """
        from ._plan import plan_apply

        return plan_apply(self, v, False, "v")

    def plan_rmatvec(self, u):
        """``P.T @ u`` for ``u`` of shape (n,) or (n, k); as :meth:`plan_matvec`."""
        from ._plan import plan_apply

        return plan_apply(self, u, True, "u")

    def barycentric_map(self):
        """The entropic transport map estimate ``T_i = sum_j P_ij y_j / (P 1)_i``, shape (n, d).

        Dividing by the plan's row mass ``(P 1)_i`` (equal to ``a_i`` at convergence) makes each
        ``T_i`` a weighted mean of the targets, also for a not fully converged plan or ``a_i = 0``.
        d + 1 kernel applications (the coordinates shifted to be nonnegative, and ``P 1``);
        absolute error <= about 2 ``kernel_tol`` times the spread of ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne import sinkhorn
        >>> x = np.random.default_rng(0).random((200, 2))
        >>> T = sinkhorn(x, x + [1.0, 0.5], eps=0.01, tol=1e-8).barycentric_map()
        >>> bool(np.abs(T - x - [1.0, 0.5]).mean() < 0.02)
        True
        """
        from ._plan import barycentric_map

        return barycentric_map(self)

    def gradient_x(self):
        """Gradient of the dual with respect to the source points, shape (n, d).

        ``2 sum_j P_ij (x_i - y_j) = 2 ((P 1)_i x_i - (P y)_i)``: the partial gradient of the dual
        functional ``a.f + b.g - eps sum_ij P_ij(f, g; x, y)`` (+ a constant) at the returned
        potentials, exact for any ``f``, ``g``. At the optimum it is the gradient of the entropic
        OT value (envelope theorem: the potentials are stationary), where ``(P 1)_i = a_i``.
        With the plan's row mass rather than ``a_i`` the gradients of x and y sum to zero (a
        translation of both clouds changes nothing), converged or not. d + 1 kernel applications
        (through :meth:`barycentric_map`), O(n + m) memory.

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne import sinkhorn
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random((60, 2)), rng.random((50, 2))
        >>> res = sinkhorn(x, y, eps=0.05, tol=1e-10)
        >>> bool(np.allclose(res.gradient_x().sum(0), -res.gradient_y().sum(0), atol=1e-12))
        True
        """
        from ._plan import gradient

        return gradient(self, False)

    def gradient_y(self):
        """Gradient of the dual with respect to the target points, ``2 sum_i P_ij (y_j - x_i)``,
        shape (m, d); as :meth:`gradient_x`.
        """
        from ._plan import gradient

        return gradient(self, True)

    def plan_sparse(self, threshold: float = 1e-6, k: int | None = None):
        """The plan's near field as a SciPy CSR matrix of shape (n, m).

        Row i keeps its largest entries until the dropped ones carry at most ``threshold`` of the
        row's mass ``(P 1)_i`` (so row sums are within ``threshold * a_i`` of ``a_i`` for a
        converged plan). Candidates come from a k-d tree ball search per band of
        ``log b_j + g_j / eps``: outside the ball where ``exp(max_band - C_ij / eps)`` could
        matter, every entry is provably negligible. ``k`` caps the entries kept per row (then the
        threshold may not be met). One kernel application (the row masses) plus the candidates:
        about n times the number of targets within ``sqrt(eps log(m / threshold))`` of a point.

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne import sinkhorn
        >>> x = np.random.default_rng(0).random((300, 2))
        >>> res = sinkhorn(x, x + 0.1, eps=0.01, tol=1e-9)
        >>> P = res.plan_sparse(1e-6)
        >>> bool(np.allclose(P.sum(1).ravel(), 1 / 300, rtol=2e-6)), P.nnz < 300 * 300 / 2
        (True, True)
        """
        from ._plan import plan_sparse

        return plan_sparse(self, threshold, k)


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
    verbose: bool | int = 0,
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
    a, b : arrays or lists of shape (n,), (m,), optional
        Nonnegative weights with equal sums (balanced OT; relative difference <= 1e-6). Default
        (None or empty, POT's ``[]``): uniform, 1/n and 1/m. Weights need not sum to 1: the problem
        is solved on ``a / sum(a)``, ``b / sum(b)`` and the plan scaled back by ``sum(a)`` (the
        minimizer for weights of that mass, as in POT), so weights summing to 1e-298 or 1e200 give
        the same relative accuracy as normalized ones.
    eps : float
        Entropic regularization, > 0, absolute (same units as squared distances).
    method : {"auto", "dense", "hierarchical"}
        ``"dense"`` evaluates all n*m kernel entries per iteration; ``"hierarchical"`` (Rust,
        NumPy input) uses k-d tree block approximations with entrywise relative error
        ``kernel_tol``, O(n + m) memory; ``"auto"``: dense up to n*m = 1e5 pairs (and on non-NumPy
        arrays), hierarchical beyond (measured faster from n = m = 1000 on).
    tol : float
        Stop when ``marginal_error <= tol * sum(a)``: relative to the total mass (absolute for
        normalized weights).
    n_iter_max : int
        Cap on the total number of iterations (all eps stages). When the cap (or the callback)
        stops the loop inside an eps-scaling stage, the potentials are projected onto the final
        eps by one more (uncounted) f/g update, so that everything returned refers to ``eps``.
    eps_scaling : float, False or None
        Ratio between successive eps of the scaling schedule (in (0, 1)); None: 0.5; False: no
        scaling (start at ``eps`` directly). With a schedule, the unscaled run makes the first
        iteration and takes over in a race when the final stage stalls (module notes), so the
        schedule costs at most about twice the iterations of ``eps_scaling=False``.
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
    verbose : bool or int, default 0
        1: log a summary on the ``lorainne`` logger; 2: also every 100 iterations.
    callback : callable, optional
        ``callback(state, marginal_error) -> bool`` after every iteration with ``state`` a dict
        (``n_iter``, ``eps``, ``marginal_error``); returning True stops. Called with the GIL
        re-acquired from the Rust loop, so it slows small problems down.

    Returns
    -------
    SinkhornResult
        ``(cost, dual, f, g, n_iter, marginal_error, converged)``; ``cost`` and ``dual`` in the
        points' floating dtype.

    Raises
    ------
    ValueError
        eps <= 0, dimension mismatch, NaN/Inf, negative weights, weight sums that differ, empty
        points, ``method="hierarchical"`` on non-NumPy input, ragged lists; points whose squared
        distances (or squared distances / eps) exceed the float64 range.
    TypeError
        Complex, object, string or float16 dtypes.

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
    verbose = check_verbose(verbose)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    a_host = _weights(a, n, "a")
    b_host = _weights(b, m, "b")
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
    # solved on unit masses and unit spread (both exact for masses and scales that are powers of
    # two): tol is relative to the mass, and no scale of the data over- or underflows
    a_given, b_given = a_host, b_host
    if sa != 1.0:
        a_host = a_host / sa
    if sb != 1.0:
        b_host = b_host / sb
    k = _scale_exponent(x, y, eps)
    eps_k = math.ldexp(eps, 2 * k)

    def hook(n_iter: int, e: float, err: float) -> bool:
        e, err = math.ldexp(e, -2 * k), err * sa
        if verbose >= 2 and n_iter % 100 == 0:
            logger.info("sinkhorn: iteration %d, eps %.3g, marginal error %.3e", n_iter, e, err)
        if callback is not None:
            return bool(callback({"n_iter": n_iter, "eps": e, "marginal_error": err}, err))
        return False

    needs_hook = callback is not None or verbose >= 2
    if chosen == "rust":
        xh = times_power_of_two(np.ascontiguousarray(x, dtype=np.float64), k)
        yh = times_power_of_two(np.ascontiguousarray(y, dtype=np.float64), k)
        out = core().sinkhorn_log(
            xh,
            yh,
            a_host,
            b_host,
            eps=eps_k,
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
        f, g = out.f, out.g
        n_iter, err, converged, cost, dual = out.n_iter, out.marginal_error, out.converged, out.cost, out.dual
        logger.debug("sinkhorn blocks: %s, tree memory %d bytes", out.stats, out.memory_bytes)
    else:
        f, g, n_iter, err, converged, cost, dual = _sinkhorn_xp(
            x, y, a_host, b_host, eps_k, tol, n_iter_max, ratio, overrelaxation, hook, k
        )
    # back to the caller's scale and masses (P = sum(a) P_normalized: f lower by eps log sum(b))
    xp = array_namespace(x)
    f, g = times_power_of_two(f, -2 * k), times_power_of_two(g, -2 * k)
    cost, dual = math.ldexp(float(cost), -2 * k), math.ldexp(float(dual), -2 * k)
    if sa != 1.0 or sb != 1.0:
        f = f - eps * math.log(sb)
        fx, gx = array_namespace(f), array_namespace(g)
        dual = sa * float(fx.sum(fx.asarray(a_host, device=device(f)) * f)) + sb * float(
            gx.sum(gx.asarray(b_host, device=device(g)) * g)
        )
        cost, err = sa * cost, sa * err
    f, g = xp.astype(f, x.dtype), xp.astype(g, y.dtype)
    if verbose:
        logger.info(
            "sinkhorn (%s, %s): %d iterations, marginal error %.3e, cost %.6g", method, chosen, n_iter, err, cost
        )
    if not converged and n_iter >= n_iter_max:
        import warnings

        bound = f"tol={tol:g}" if sa == 1.0 else f"tol * sum(a) = {tol * sa:.3e}"
        warnings.warn(
            f"sinkhorn stopped after n_iter_max={n_iter_max} iterations with marginal error {err:.3e} > {bound}; "
            "raise n_iter_max, eps or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    scalar = np.result_type(numpy_dtype(x.dtype), numpy_dtype(y.dtype)).type
    problem = SinkhornProblem(x, y, a_given, b_given, eps, method, chosen, kernel_tol, n_threads)
    return SinkhornResult(scalar(cost), scalar(dual), f, g, int(n_iter), float(err), bool(converged), problem=problem)


barycenter = make_barycenter(sinkhorn)
barycenter.__module__ = __name__  # documented (and doctested) as lorainne.ot.barycenter
