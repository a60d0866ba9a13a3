"""`sinkhorn` and its result: the problem it solved rides along so that plan products can be computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._solve import _solve


class SinkhornProblem(NamedTuple):
    """What a :class:`SinkhornResult` was solved from, kept so that plan products can be computed.

    ``x``, ``y`` are the validated points (the caller's arrays when no conversion was needed: never
    modified), ``a``, ``b`` the weights as float64 NumPy arrays in the caller's masses, ``eps`` the
    caller's eps, ``method`` the kernel that solved it (``"dense"``, ``"hierarchical"`` or ``"matrix"``),
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
        One kernel application on the Rust path (``P 1`` and the d coordinates, mapped onto [0, 1],
        share one traversal of the trees; d + 1 applications on the dense array-API path);
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
        translation of both clouds changes nothing), converged or not. The cost of one kernel
        application with d extra columns on the Rust path (through :meth:`barycentric_map`),
        O(n + m) memory.

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
    acceleration: str = "anderson",
    multiscale: bool = True,
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
    method : {"auto", "dense", "hierarchical", "matrix"}
        ``"dense"`` evaluates all n*m kernel entries per iteration; ``"hierarchical"`` (Rust,
        NumPy input) uses k-d tree block approximations with entrywise relative error
        ``kernel_tol``, O(n + m) memory; ``"matrix"`` (Rust, NumPy input, balanced or unbalanced,
        not the symmetric solves of a divergence) stores the log-domain stabilized kernel
        ``exp((f^_i + g^_j - C_ij) / eps)`` once per absorption in float32 (4 n m bytes: 400 MB at
        n = m = 1e4; refused above 4 GB), so that each iteration is one read of that matrix (both
        kernel products fused, float64 sums); it is absorbed again at each eps stage and whenever
        the potentials drift more than 30 eps (half-range) from the absorbed ones, and each
        product's error bound ``2^-24 + f32 flush level * sum(v) / sum`` is checked at run time; a
        measurement whose bound exceeds ``kernel_tol`` and that could meet ``tol`` is repeated on
        the accurate kernel (dense up to 1e5 pairs, else hierarchical). ``"auto"``: dense up to
        n*m = 1e5 pairs (and on non-NumPy arrays); beyond, ``"matrix"`` in 3 or more dimensions
        when its 4 n m bytes fit in 1 GiB (``lorainne.ot._solve.AUTO_MATRIX_MAX_BYTES``: n = m =
        16,384; measured 10-20x faster than the tree at n = 1e4 in 3-D, one thread), else
        ``"hierarchical"`` (always in 1-D and 2-D, where the tree is faster). Pass
        ``method="hierarchical"`` to keep memory O(n + m) in 3-D.
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
        Accelerate the iterations of the final eps stage (default), as ``acceleration`` says.
        False: plain Sinkhorn.
    acceleration : {"anderson", "overrelaxation"}
        ``"anderson"`` (default): Anderson mixing of the map ``f -> F(G(f))`` (one iteration) over
        the last 8 iterations, ``g`` kept the plain update ``G(f)`` so every measured pair has exact
        column marginals; a step whose error exceeds twice the best so far restarts the mixing.
        Measured at n = 1e4, eps = 0.01 (full clouds): 30 and 38 iterations on the 2-D mixture and
        uniform data of benches/bench_ot.py, where over-relaxation needs 59 and 64.
        ``"overrelaxation"``: ``f <- f + omega (F(g) - f)`` and likewise for ``g``, with
        ``omega = 2 / (1 + sqrt(1 - theta))`` where ``theta`` is the linear rate measured on the
        stage's first plain iterations (the SOR choice; capped at 1.9).
    multiscale : bool
        Multiscale warm start (default; ``method="hierarchical"`` with n, m >= 2000, else
        ignored): the eps-scaling stages before the last run on coarse clouds, one point per k-d
        tree leaf of at most 8 points at the leaf's weighted centroid with the leaf's weight; the
        final stage starts from the c-transform of the coarse potential onto the full clouds and
        runs to ``tol`` there, so the answer's accuracy is the same. Measured at n = 1e4, eps = 0.01: the
        early stages cost ~1/5, the final stage starts at marginal error 1.4e-2 instead of 5e-2,
        and the solve takes 0.57x the CPU time. Those stages count in ``n_iter`` and the callback
        sees them with the coarse problem's error. False: every stage on the full clouds.
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
        acceleration=acceleration,
        multiscale=multiscale,
        kernel_tol=kernel_tol,
        random_state=random_state,
        backend=backend,
        n_threads=n_threads,
        verbose=verbose,
        callback=callback,
    )
    return SinkhornResult(*fields, problem=SinkhornProblem(*problem))
