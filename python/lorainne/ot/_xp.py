"""The dense log-domain Sinkhorn reference on any array-API library (NumPy, CuPy, torch, ...).

The iteration rules (eps schedule, over-relaxation, stall detection and the race against the plain
run; the unbalanced damping and errors; the symmetric averaged update) are the same as those of
rust/core/src/ot/sinkhorn.rs and symmetric.rs; the tests check the two agree.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, device

from .._dask import persist_if_dask
from .._exact_scaling import times_power_of_two


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


def _capped_exp(xp, z):
    return xp.exp(xp.where(z < 700.0, z, xp.full_like(z, 700.0)))


def _marginal_error(xp, w, pot, plain, eps, rho=math.inf):
    """L1 error of one marginal of the plan: sum_i w_i |exp((pot_i - plain_i)/eps) - 1|; with a
    KL penalty rho, the gap to the marginal the potential asks for,
    sum_i w_i exp(-pot_i/rho) |exp((pot_i - plain_i)/eps') - 1|, eps' = eps rho / (eps + rho).
    """
    if math.isinf(rho):
        return float(xp.sum(w * xp.abs(_capped_exp(xp, (pot - plain) / eps) - 1.0)))
    eps_damped = eps * rho / (eps + rho)
    target = w * _capped_exp(xp, -pot / rho)
    return float(xp.sum(target * xp.abs(_capped_exp(xp, (pot - plain) / eps_damped) - 1.0)))


def _damping(rho: float, eps: float) -> float:
    """The factor rho / (rho + eps) of an unbalanced update (1 for a fixed marginal)."""
    return 1.0 if math.isinf(rho) else rho / (rho + eps)


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


class _Anderson:
    """Anderson mixing of one eps stage's map T(f) = F(G(f)) (one Sinkhorn iteration).

    The same rule as ``Anderson`` in rust/core/src/ot/acceleration.rs: the next f is
    ``T(f_k) - sum_j gamma_j (T(f_{j+1}) - T(f_j))`` over the last ``memory`` steps, gamma the
    least-squares fit (weights w / sum(w), ridge ``RIDGE`` times the trace) of the newest residual
    ``(T(f_k) - f_k) / eps`` by the residual differences; an error above ``RESTART`` times the best
    so far clears the history (the next step is the plain T(f_k)).
    """

    RESTART, RIDGE = 2.0, 1e-10

    def __init__(self, xp, memory: int, w):
        self.xp, self.memory = xp, memory
        total = float(xp.sum(w))
        self.w = w / total if 0.0 < total < math.inf else w * 0.0
        self.images: list = []
        self.residuals: list = []
        self.best = math.inf

    def next(self, f, image, err: float, eps: float):
        xp = self.xp
        if err > self.RESTART * self.best:
            self.images, self.residuals = [], []
        self.best = min(self.best, err)
        self.images.append(image)
        self.residuals.append((image - f) / eps)
        if len(self.images) > self.memory + 1:
            self.images.pop(0)
            self.residuals.pop(0)
        k = len(self.images) - 1
        if k == 0:
            return image
        diffs = [self.residuals[j + 1] - self.residuals[j] for j in range(k)]
        newest = self.residuals[k]
        m = [[0.0] * k for _ in range(k)]
        rhs = [float(xp.sum(self.w * diffs[i] * newest)) for i in range(k)]
        for i in range(k):
            for j in range(i + 1):
                m[i][j] = m[j][i] = float(xp.sum(self.w * diffs[i] * diffs[j]))
        trace = sum(m[i][i] for i in range(k))
        gamma = None
        if 0.0 < trace < math.inf:
            for i in range(k):
                m[i][i] += self.RIDGE * trace
            gamma = _cholesky_solve(m, rhs)
        if gamma is None or not all(math.isfinite(v) for v in gamma):
            self.images, self.residuals = [], []
            return image
        out = image
        for j, gj in enumerate(gamma):
            out = out - gj * (self.images[j + 1] - self.images[j])
        return out


def _cholesky_solve(m: list, b: list) -> list | None:
    """The solution of m x = b for a symmetric positive definite m (lists); None when a pivot is not positive."""
    k = len(b)
    low = [[0.0] * k for _ in range(k)]
    for j in range(k):
        d = m[j][j] - sum(low[j][p] ** 2 for p in range(j))
        if not d > 0.0:
            return None
        low[j][j] = math.sqrt(d)
        for i in range(j + 1, k):
            low[i][j] = (m[i][j] - sum(low[i][p] * low[j][p] for p in range(j))) / low[j][j]
    y = [0.0] * k
    for i in range(k):
        y[i] = (b[i] - sum(low[i][p] * y[p] for p in range(i))) / low[i][i]
    x = [0.0] * k
    for i in reversed(range(k)):
        x[i] = (y[i] - sum(low[p][i] * x[p] for p in range(i + 1, k))) / low[i][i]
    return x


class _Stall:
    """Whether the final eps stage has stalled, read off its error history.

    The same rule as ``Stall`` in rust/core/src/ot/sinkhorn.rs: from the stage's ``AFTER``-th
    iteration on (time for the over-relaxation to settle), the linear rate r over each of the last
    two windows of ``WINDOW`` iterations predicts ``log(tol / err) / log(r)`` more iterations
    (infinitely many for r >= 1); when both predict more than ``FACTOR`` times the stage's
    iterations so far (and more than ``FLOOR``), the stage has stalled. Once true, it stays true.
    """

    WINDOW, AFTER, FACTOR, FLOOR = 20, 50, 10, 1000

    def __init__(self, tol: float):
        self.tol = tol
        self.errors: list[float] = []
        self.stalled = False

    def observe(self, err: float) -> bool:
        if self.stalled:
            return True
        self.errors.append(err)
        e, w, k = self.errors, self.WINDOW, len(self.errors)
        if k < self.AFTER:
            return False
        bound = max(self.FACTOR * k, self.FLOOR)
        for new, old in ((e[k - 1], e[k - 1 - w]), (e[k - 1 - w], e[k - 1 - 2 * w])):
            r = (new / old) ** (1.0 / w)
            if r < 1.0 and math.log(self.tol / new) / math.log(r) <= bound:
                return False
        self.stalled = True
        return True


def _schedule(diam2: float, eps: float, ratio: float | None) -> list[float]:
    """eps-scaling stages from the squared diameter down to eps (eps alone without scaling)."""
    stages = []
    if ratio is not None and math.isfinite(diam2):
        e = diam2
        while e > eps:
            stages.append(e)
            e *= ratio
    stages.append(eps)
    return stages


class _Chain:
    """One sequence of Sinkhorn iterations at one eps, from a given g (f = F(g) first).

    ``step`` runs one iteration and measures the error of the pair ``(f, g)`` it leaves (the pair
    a stop returns); ``advance`` then moves f on, over-relaxed with the factor ``relaxation`` reads
    when ``relax``, and records the error. The same as ``Chain`` in rust/core/src/ot/sinkhorn.rs.
    """

    def __init__(self, ops, e: float, g, relax: bool, anderson: int = 0):
        self.anderson = _Anderson(ops.xp, anderson, ops.a) if relax and anderson > 0 else None
        self.ops, self.e, self.relax = ops, e, relax and self.anderson is None
        self.g = g
        self.f = ops.update_f(g, e)
        self.relaxation = _Relaxation()
        self.err = math.inf
        self.iters = 0

    def step(self) -> float:
        ops, e = self.ops, self.e
        omega = self.relaxation.omega if self.relax else 1.0
        g_plain = ops.update_g(self.f, e)
        self.g = g_plain if omega == 1.0 else self.g + omega * (g_plain - self.g)
        col_err = 0.0 if omega == 1.0 else ops.marginal_error_b(self.g, g_plain, e)
        self.f_plain = ops.update_f(self.g, e)
        self.omega = omega
        self.err = ops.marginal_error_a(self.f, self.f_plain, e) + col_err
        self.f_step = self.f  # (f_step, g) is the pair whose error is err
        self.iters += 1
        return self.err

    def advance(self) -> None:
        if self.anderson is not None:
            self.f = persist_if_dask(self.anderson.next(self.f, self.f_plain, self.err, self.e))
            return
        omega = self.omega
        self.f = self.f_plain if omega == 1.0 else self.f + omega * (self.f_plain - self.f)
        self.relaxation.observe(self.err)


class _DenseOps:
    """The dense log-domain updates and marginal errors of the xp reference (KL penalties
    ``rho_a``, ``rho_b`` on the marginals, infinite when fixed; errors divided by ``mass``).
    """

    def __init__(self, xp, C, a, b, rho_a=math.inf, rho_b=math.inf, mass=1.0):
        self.xp, self.C, self.a, self.b = xp, C, a, b
        self.la, self.lb = _safe_log(xp, a), _safe_log(xp, b)
        self.rho_a, self.rho_b, self.mass = rho_a, rho_b, mass

    # Dask: the potentials are persisted on the workers after each update, C recomputed in blocks
    def update_f(self, g, e):
        scale = -e * _damping(self.rho_a, e)  # exactly -e when balanced
        return persist_if_dask(scale * _lse(self.xp, self.lb[None, :] + (g[None, :] - self.C) / e, axis=1))

    def update_g(self, f, e):
        scale = -e * _damping(self.rho_b, e)
        return persist_if_dask(scale * _lse(self.xp, self.la[:, None] + (f[:, None] - self.C) / e, axis=0))

    def marginal_error_a(self, f, f_plain, e):
        return _marginal_error(self.xp, self.a, f, f_plain, e, self.rho_a) / self.mass

    def marginal_error_b(self, g, g_plain, e):
        return _marginal_error(self.xp, self.b, g, g_plain, e, self.rho_b) / self.mass

    def objective(self, f, g, eps):
        """(cost, dual) as in ``objective`` of rust/core/src/ot/sinkhorn.rs: cost = <P, C> plus
        rho KL(marginal | weights) for each penalized side; dual = a.f + b.g when balanced, else
        sum of (rho <w, 1 - exp(-pot/rho)> or <w, pot>) - eps (sum P - sum(a) sum(b)).
        """
        xp, a, b = self.xp, self.a, self.b
        log_ratio = (f[:, None] + g[None, :] - self.C) / eps
        P = xp.exp(self.la[:, None] + self.lb[None, :] + log_ratio)
        cost = float(xp.sum(P * self.C))
        if math.isinf(self.rho_a) and math.isinf(self.rho_b):
            return cost, float(xp.sum(a * f) + xp.sum(b * g))
        dual = 0.0
        for w, pot, rho, marg in ((a, f, self.rho_a, xp.sum(P, axis=1)), (b, g, self.rho_b, xp.sum(P, axis=0))):
            if math.isinf(rho):
                dual += float(xp.sum(w * pot))
                continue
            dual -= rho * float(xp.sum(w * xp.expm1(-pot / rho)))
            positive = marg > 0
            safe = xp.where(positive, marg, xp.ones_like(marg))
            ws = xp.where(positive, w, xp.ones_like(w))
            cost += rho * float(xp.sum(xp.where(positive, marg * xp.log(safe / ws), xp.zeros_like(marg)) - marg + w))
        dual -= eps * (float(xp.sum(P)) - float(xp.sum(a)) * float(xp.sum(b)))
        return cost, dual


def _sinkhorn_xp(x, y, a_host, b_host, eps, tol, n_iter_max, ratio, relax, hook, k=0, rhos=None, mass=1.0, anderson=0):
    """The dense log-domain reference on any array-API library (float64 internally), on the
    points times ``2**k`` (``eps`` and the KL strengths ``rhos = (rho_a, rho_b)`` are the scaled
    ones; None: balanced). ``relax`` accelerates the final stage: Anderson mixing of memory
    ``anderson`` when that is > 0, else over-relaxation.

    Iterations: eps-scaling stages (each to marginal error 1e-2 or 50 iterations) warm-start the
    final stage. With a schedule, the plain run at eps (the one ``eps_scaling=False`` does) makes
    its first iteration before the schedule starts, and is raced against the final stage when that
    stalls (see ``_Stall``), one iteration each in turn: the first to reach ``tol`` is returned,
    so a schedule costs at most about twice the plain run's iterations plus those before the stall.
    """
    xp = array_namespace(x)
    dev = device(x)
    x = times_power_of_two(xp.astype(x, xp.float64), k)
    y = times_power_of_two(xp.astype(y, xp.float64), k)
    a = xp.asarray(a_host, device=dev)
    b = xp.asarray(b_host, device=dev)
    C = _sq_dists(xp, x, y)
    ops = _DenseOps(xp, C, a, b, *(rhos or (math.inf, math.inf)), mass)
    lo = xp.minimum(xp.min(x, axis=0), xp.min(y, axis=0))
    hi = xp.maximum(xp.max(x, axis=0), xp.max(y, axis=0))
    diam2 = float(xp.sum((hi - lo) ** 2))
    stages = _schedule(diam2, eps, ratio)
    zeros = xp.zeros(C.shape[1], dtype=xp.float64, device=dev)

    n_iter, converged = 0, False
    plain = _Chain(ops, eps, zeros, relax, anderson) if len(stages) > 1 else None
    chain = plain  # the chain whose (f, g) is returned
    state = "run"

    def run(ch, stage_tol):
        """One iteration of ``ch``: 'stop' (hook or n_iter_max), 'done' (reached stage_tol) or 'run'."""
        nonlocal n_iter
        err = ch.step()
        n_iter += 1
        if not math.isfinite(err):
            raise ValueError(f"numerical breakdown: marginal error became {err} at iteration {n_iter} (eps = {ch.e})")
        if hook(n_iter, ch.e, err) or n_iter >= n_iter_max and err > stage_tol:
            return "stop"
        if err <= stage_tol:
            return "done"
        return "run"

    if plain is not None:  # the plain run's first iteration
        state = run(plain, tol)
        converged = state == "done"
        if state == "run":
            plain.advance()
    g = zeros
    for s, e in enumerate(stages):
        if state != "run" or n_iter >= n_iter_max:
            break
        final = s == len(stages) - 1
        stage_tol = tol if final else max(tol, 1e-2)
        chain = _Chain(ops, e, g, final and relax, anderson)  # warm start from the previous stage's g
        stall = _Stall(tol) if (final and plain is not None) else None
        result = chain
        while state == "run":
            racing = stall is not None and stall.stalled
            for ch in (plain, chain) if racing else (chain,):
                state = run(ch, stage_tol)
                if state != "run":
                    result = ch
                    other = chain if ch is plain else plain
                    if state == "stop" and racing and other.err < ch.err:  # the better measured pair
                        result = other
                    break
                ch.advance()
            if state == "run" and not final and chain.iters >= 50:
                break
            if state == "run" and stall is not None:
                stall.observe(chain.err)
        if state == "done":
            converged = final
            state = "stop" if final else "run"
        chain = result
        g = chain.g
    f, g, err = chain.f_step, chain.g, chain.err
    if chain.e != eps:  # stopped inside a scaling stage: project onto the final eps
        f = ops.update_f(g, eps)
        g = ops.update_g(f, eps)
        err = ops.marginal_error_a(f, ops.update_f(g, eps), eps)
    cost, dual = ops.objective(f, g, eps)
    return f, g, n_iter, err, converged, cost, dual


#: Iterations of an eps-scaling stage before the last in the symmetric solve (``STAGE_ITERS`` of
#: rust/core/src/ot/symmetric.rs): one, as in GeomLoss, half the kernel applications of stages run
#: to error 1e-2.
_SYMMETRIC_STAGE_ITERS = 1


def _sinkhorn_symmetric_xp(x, a_host, eps, tol, n_iter_max, ratio, hook, k=0, rho=math.inf, mass=1.0):
    """OT_eps(a, a) by the averaged update f <- (f + T(f)) / 2 (rust/core/src/ot/symmetric.rs):
    returns the same fields as ``_sinkhorn_xp`` with g = f; the error is that of both marginals.
    """
    xp = array_namespace(x)
    x = times_power_of_two(xp.astype(x, xp.float64), k)
    a = xp.asarray(a_host, device=device(x))
    C = _sq_dists(xp, x, x)
    ops = _DenseOps(xp, C, a, a, rho, rho, mass)
    diam2 = float(xp.sum((xp.max(x, axis=0) - xp.min(x, axis=0)) ** 2))
    stages = _schedule(diam2, eps, ratio)
    f = xp.zeros(C.shape[0], dtype=xp.float64, device=device(x))
    n_iter, converged, err, stage_eps, done = 0, False, math.inf, eps, False
    for s, e in enumerate(stages):
        final = s == len(stages) - 1
        stage_tol = tol if final else max(tol, 1e-2)
        stage_eps, iters = e, 0
        while True:
            t = ops.update_f(f, e)
            err = 2.0 * ops.marginal_error_a(f, t, e)  # of the pair (f, f)
            n_iter, iters = n_iter + 1, iters + 1
            if not math.isfinite(err):
                raise ValueError(f"numerical breakdown: marginal error became {err} at iteration {n_iter} (eps = {e})")
            stop = hook(n_iter, e, err)
            if err <= stage_tol:
                converged = final
                done = final or stop
            done = done or stop or n_iter >= n_iter_max
            if done:
                break
            f = 0.5 * (f + t)
            if err <= stage_tol or (not final and iters >= _SYMMETRIC_STAGE_ITERS):
                break
        if done:
            break
    if stage_eps != eps:  # stopped inside a scaling stage: one averaged step at the final eps
        f = 0.5 * (f + ops.update_f(f, eps))
        err = 2.0 * ops.marginal_error_a(f, ops.update_f(f, eps), eps)
    cost, dual = ops.objective(f, f, eps)
    return f, f, n_iter, err, converged, cost, dual


#: The stored kernel's rounding bound per entry (float32, plus the float64 sums) and flush level:
#: the same constants as rust/core/src/ot/kernel/stored.rs.
STORED_ROUNDING = 5.97e-8
F32_TINY = float(np.finfo(np.float32).tiny)


def _stored_kernel_xp(x, y, b, g_hat, eps):
    """The stored stabilized kernel of ``method="matrix"`` absorbed at ``g_hat``: K~ (float32,
    entries below the float32 normal range flushed to 0; the largest entry of each row of b K~ is
    1), its row and column scalings r, c, and the row log sums at ``g_hat`` (``log sum_j b_j
    exp((g_hat_j - C_ij)/eps)``).
    """
    xp = array_namespace(x, y)
    c = g_hat / eps
    Z = c[None, :] - _sq_dists(xp, x, y) / eps
    log_rows = _lse(xp, Z + _safe_log(xp, b)[None, :], axis=1)
    top = xp.max(Z + _safe_log(xp, b)[None, :], axis=1)
    K = xp.exp(Z - top[:, None])
    K = xp.where(K < F32_TINY, xp.zeros_like(K), K)
    return xp.astype(K, xp.float32), -top, c, log_rows


def _stored_apply_xp(K, shift_t, shift_s, w, pot, eps, transpose: bool):
    """One application of the stored kernel: log sum_k w_k exp((pot_k - C)/eps) per target and the
    run-time error bound (in log) of rust/core/src/ot/kernel/stored.rs.
    """
    xp = array_namespace(K, w, pot)
    e = pot / eps - shift_s
    positive = w > 0
    top = xp.max(xp.where(positive, e, xp.full_like(e, -xp.inf)))
    v = xp.where(positive, w * xp.exp(xp.where(positive, e - top, xp.zeros_like(e))), xp.zeros_like(e))
    K64 = xp.astype(K, xp.float64)
    sums = (xp.matrix_transpose(K64) @ v) if transpose else (K64 @ v)
    # a target whose every entry was flushed has sum 0: its bound is infinite (no division by 0)
    positive = sums > 0
    safe = xp.where(positive, sums, xp.ones_like(sums))
    rel = xp.where(positive, STORED_ROUNDING + F32_TINY * xp.sum(v) / safe, xp.full_like(sums, xp.inf))
    small = rel < 1.0
    ratio = xp.where(small, rel / (1.0 - xp.where(small, rel, xp.zeros_like(rel))), xp.full_like(rel, xp.inf))
    logs = xp.where(positive, -shift_t + top + xp.log(safe), xp.full_like(sums, -xp.inf))
    return logs, float(xp.max(ratio))
