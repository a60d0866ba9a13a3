"""Entropic optimal transport: log-domain Sinkhorn on dense or k-d tree hierarchical Gibbs kernels.

Conventions (used everywhere in this module):

* cost matrix ``C_ij = |x_i - y_j|^2`` (squared Euclidean distance, no 1/2 factor);
* ``eps`` is absolute (in the units of ``C``), not relative to ``max C``;
* the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with potentials ``f``, ``g``;
* ``cost = sum_ij P_ij C_ij``, ``dual = a . f + b . g``;
* ``marginal_error = |P 1 - a|_1 + |P^T 1 - b|_1`` at the returned potentials; ``tol`` bounds it
  relative to the total mass: ``marginal_error <= tol * sum(a)``;
* uniform weights (``1/n``, ``1/m``) when ``a`` or ``b`` is None or empty (POT's ``a = []``).

Unbalanced OT (``reach``, item of issue 13). With ``rho = reach**2`` (``rho_a``, ``rho_b`` for a
pair of reaches), ``sinkhorn`` solves

    OT(a, b) = min_{P >= 0}  <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)

with the generalized ``KL(p | q) = sum p log(p / q) - p + q`` (masses may differ, sum(a) != sum(b)
is allowed). Its dual is

    max_{f, g}  rho_a <a, 1 - exp(-f / rho_a)> + rho_b <b, 1 - exp(-g / rho_b)>
                - eps (sum_ij a_i b_j exp((f_i + g_j - C_ij) / eps) - sum(a) sum(b)),

maximized by the damped updates ``f_i = -rho_a / (rho_a + eps) * eps * log sum_j b_j exp((g_j -
C_ij) / eps)`` (and likewise g with rho_b); the plan has the same formula as in the balanced case,
and at the optimum ``P 1 = a exp(-f / rho_a)``, ``P^T 1 = b exp(-g / rho_b)``. A side with
``rho = inf`` has its marginal fixed (update undamped, its dual term ``<a, f>``); both infinite is
the balanced problem. For an unbalanced problem the result's fields are:

* ``cost = <P, C> + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)`` at the returned plan (the objective
  without the entropy term; for balanced problems ``<P, C>`` as before);
* ``dual`` = the dual objective above at the returned potentials (at the optimum it equals the
  primal, ``cost + eps KL(P | a b^T)``); balanced problems keep ``a . f + b . g``;
* ``marginal_error = |P 1 - a exp(-f / rho_a)|_1 + |P^T 1 - b exp(-g / rho_b)|_1``: the L1
  violation of the optimality conditions in units of mass (the balanced error when rho = inf),
  and ``tol`` bounds it by ``tol * sum(a)``. Unbalanced problems are solved in the caller's masses
  (not invariant under a change of mass).

Over-relaxation stays on: the unbalanced dual is strictly concave, so the iteration linearizes to a
two-block Gauss-Seidel on a definite Hessian, for which SOR converges for omega in (0, 2)
(Ostrowski-Reich) and the same rate-based choice of omega applies; the race against the plain run
still guards the final stage. Conventions of the peers: POT's ``ot.unbalanced.sinkhorn_unbalanced(a,
b, M, reg=eps, reg_m=rho, reg_type="kl")`` with ``M = C`` solves the same problem (its reported
``total_cost`` drops the ``- p + q`` mass terms of the KLs). GeomLoss (p = 2) uses the cost
``|x - y|^2 / 2``, ``eps = blur**2`` and ``rho = reach**2``: its problem with ``(blur, reach)`` is half
of lorainne's with ``eps = 2 blur**2`` and ``reach = sqrt(2) * reach``; its reported OT value
differs from ``dual`` by the constant ``eps (sum(a) + sum(b)) / 2 - eps sum(a) sum(b)``, which
cancels in a Sinkhorn divergence.

Every balanced problem is solved on unit masses and, when the points span more than 2**32 or less than
2**-32, on points scaled by a power of two 2**k with eps (and rho) scaled by 4**k. Both are exact (the plan
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

Inputs. Dimensions up to 10 (and beyond) are exact on both kernels; measured time per iteration at
n = m = 3000, x and y uniform on the unit cube, eps = 0.005 d (a fixed fraction of the mean squared
distance d / 6), one thread, best of 3 on a loaded 2-core machine (benches/RESULTS_ot_unbalanced.md):

    d                          2     3     4     6     8     10
    hierarchical / dense      0.70  1.02  1.48  1.24  0.98  1.19

so the tree pays off in 2-D (and more so at larger n, O(n) against O(n^2) work), breaks even in
3-D, and from d = 4 on ``method="dense"`` (also O(n + m) memory in Rust) is as fast or faster;
``method="auto"`` still picks the tree beyond 1e5 pairs, so pass ``method="dense"`` for d >= 4.
float32 points are solved in float64 (the kernel bound holds as for float64 input) and the
potentials, cost and dual come back in float32. Duplicate points are fine on both kernels (the
tree puts identical points in one leaf; equal points get equal potentials), and so are zero
weights (those points take no part in the marginals).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._barycenter import BarycenterResult, make_barycenter
from ._divergence import SinkhornDivergenceResult, _divergence
from ._kernel import DEFAULT_LEAF_SIZE, KERNEL_METHODS, GaussianKernel
from ._solve import AUTO_DENSE_PAIRS, METHODS, _solve

__all__ = [
    "AUTO_DENSE_PAIRS",
    "DEFAULT_LEAF_SIZE",
    "KERNEL_METHODS",
    "METHODS",
    "BarycenterResult",
    "GaussianKernel",
    "SinkhornDivergenceResult",
    "SinkhornProblem",
    "SinkhornResult",
    "barycenter",
    "sinkhorn",
    "sinkhorn_divergence",
]


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
        ``a . f + b . g``, same dtype as ``cost``. (Unbalanced problems, ``reach``: ``cost`` and
        ``dual`` are the unbalanced objective and its dual, ``marginal_error`` the gap to the
        optimal marginals; module notes.)
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
    reach: float | tuple[float | None, float | None] | None = None,
    log_a=None,
    log_b=None,
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
        Nonnegative weights with equal sums (balanced OT; relative difference <= 1e-6; any sums
        with ``reach``). Default (None or empty, POT's ``[]``): uniform, 1/n and 1/m. Weights need
        not sum to 1: the balanced problem is solved on ``a / sum(a)``, ``b / sum(b)`` and the plan
        scaled back by ``sum(a)`` (the minimizer for weights of that mass, as in POT), so weights
        summing to 1e-298 or 1e200 give the same relative accuracy as normalized ones.
    eps : float
        Entropic regularization, > 0, absolute (same units as squared distances).
    reach : float, pair of floats, or None
        Unbalanced OT (module notes): the marginals are penalized by ``rho KL(P 1 | a)`` and
        ``rho KL(P^T 1 | b)`` instead of fixed, with ``rho = reach**2`` (a length: mass is moved
        over distances below about ``reach``, created or destroyed beyond); a pair gives each side
        its own reach, ``None`` or ``inf`` in a pair keeps that marginal fixed (semi-relaxed).
        None (default): balanced, exactly the problem without this argument.
    log_a, log_b : arrays of shape (n,), (m,), optional
        Log-weights instead of ``a``, ``b`` (one or the other), for weights spanning more decades
        than float64 holds; ``-inf`` is a zero weight. Balanced problems normalize them in the log
        domain (total masses beyond the float64 range are fine; ``cost`` and ``dual`` scale with
        the mass and may then over- or underflow, the potentials do not); unbalanced problems,
        not invariant under a change of mass, need ``sum(exp(log_a))`` within the float64 range.
    method : {"auto", "dense", "hierarchical"}
        ``"dense"`` evaluates all n*m kernel entries per iteration; ``"hierarchical"`` (Rust,
        NumPy input) uses k-d tree block approximations with entrywise relative error
        ``kernel_tol``, O(n + m) memory; ``"auto"``: dense up to n*m = 1e5 pairs (and on non-NumPy
        arrays), hierarchical beyond (measured faster from n = m = 1000 on).
    tol : float
        Stop when ``marginal_error <= tol * sum(a)``: relative to the total mass (absolute for
        normalized weights). Unbalanced: the same bound on the unbalanced ``marginal_error``.
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
        eps <= 0, dimension mismatch, NaN/Inf, negative weights, weight sums that differ (balanced),
        empty points, ``method="hierarchical"`` on non-NumPy input, ragged lists; points whose
        squared distances (or squared distances / eps) exceed the float64 range; reach <= 0; both
        ``a`` and ``log_a`` (or ``b`` and ``log_b``).
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

    Unbalanced, with twice the mass on y and a reach long against the distances: the plan's mass
    ``sum_i a_i exp(-f_i / reach**2)`` approaches the geometric mean of the masses, sqrt(2).

    >>> u = sinkhorn(x, y, np.full(300, 1 / 300), np.full(200, 2 / 200), eps=0.01, reach=3.0)
    >>> mass = float(np.sum(u.problem.a * np.exp(-u.f / 3.0**2)))
    >>> u.converged, bool(1.3 < mass < 1.42)
    (True, True)
    """
    fields, problem = _solve(
        x,
        y,
        a,
        b,
        log_a=log_a,
        log_b=log_b,
        eps=eps,
        reach=reach,
        method=method,
        tol=tol,
        n_iter_max=n_iter_max,
        eps_scaling=eps_scaling,
        overrelaxation=overrelaxation,
        kernel_tol=kernel_tol,
        random_state=random_state,
        backend=backend,
        n_threads=n_threads,
        verbose=verbose,
        callback=callback,
    )
    return SinkhornResult(*fields, problem=SinkhornProblem(*problem))


def sinkhorn_divergence(
    x,
    y,
    a=None,
    b=None,
    *,
    eps: float,
    reach: float | tuple[float | None, float | None] | None = None,
    log_a=None,
    log_b=None,
    method: str = "auto",
    tol: float = 1e-6,
    n_iter_max: int = 10000,
    eps_scaling: float | bool | None = None,
    kernel_tol: float | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
) -> SinkhornDivergenceResult:
    """The debiased Sinkhorn divergence between two weighted point clouds (Feydy et al. 2019).

    ``S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2`` with ``OT`` the entropic optimal transport value
    (the ``dual`` of :func:`sinkhorn`, which at the optimum equals the primal with its entropy
    term). Unlike ``OT`` itself it is zero for identical clouds, nonnegative, symmetric, and
    interpolates between the squared Wasserstein-2 distance (eps -> 0) and an energy distance (eps
    -> inf). With ``reach`` (unbalanced, module notes) the masses may differ and the mass term of
    Sejourne et al. (2019) is added, ``+ eps (sum(a) - sum(b))**2 / 2``, which keeps S nonnegative
    and zero only for equal measures. The symmetric problems ``OT(a, a)``, ``OT(b, b)`` are solved
    by the averaged update ``f <- (f + T(f)) / 2`` (one kernel application per iteration, fast
    convergence; in Rust for NumPy input).

    Parameters
    ----------
    x, y, a, b, eps, reach, log_a, log_b
        As in :func:`sinkhorn`.
    method, tol, n_iter_max, eps_scaling, kernel_tol, random_state, backend, n_threads, verbose
        As in :func:`sinkhorn`; the three solves share them (``tol`` applies to each).

    Returns
    -------
    SinkhornDivergenceResult
        ``value`` and the three :class:`SinkhornResult`: ``xy``, ``xx``, ``yy``; its
        ``gradient_x()`` / ``gradient_y()`` combine theirs.

    Raises
    ------
    ValueError, TypeError
        As :func:`sinkhorn`.

    Warns
    -----
    ConvergenceWarning
        When a solve reaches ``n_iter_max`` before ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import sinkhorn_divergence
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((200, 2))
    >>> round(float(sinkhorn_divergence(x, x, eps=0.01).value), 8)
    0.0
    >>> s = sinkhorn_divergence(x, x + [0.1, 0.0], eps=0.01).value
    >>> bool(0.009 < s < 0.0101)  # about |t|^2 = 0.01 for a small translation t
    True
    """
    options = {
        "eps": eps,
        "reach": reach,
        "method": method,
        "tol": tol,
        "n_iter_max": n_iter_max,
        "eps_scaling": eps_scaling,
        "kernel_tol": kernel_tol,
        "random_state": random_state,
        "backend": backend,
        "n_threads": n_threads,
        "verbose": verbose,
    }
    fields, problem = _solve(x, y, a, b, log_a=log_a, log_b=log_b, name="sinkhorn_divergence", **options)
    xy = SinkhornResult(*fields, problem=SinkhornProblem(*problem))
    solved = []
    for points, w, log_w in ((x, a, log_a), (y, b, log_b)):
        fields, problem = _solve(
            points, None, w, None, log_a=log_w, symmetric=True, name="sinkhorn_divergence", **options
        )
        solved.append(SinkhornResult(*fields, problem=SinkhornProblem(*problem)))
    return _divergence(xy, solved[0], solved[1], float(xy.problem.eps), reach is not None)


barycenter = make_barycenter(sinkhorn)
barycenter.__module__ = __name__  # documented (and doctested) as lorainne.ot.barycenter
