"""Unbalanced OT (``reach``), log-weights, float32 points and duplicates in ``lorainne.sinkhorn``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from lorainne import ConvergenceWarning, sinkhorn

ot = pytest.importorskip("ot")

SOLVERS = [("numpy", "dense"), ("rust", "dense"), ("rust", "hierarchical")]


@pytest.fixture
def rng():
    return np.random.default_rng(12)


def sq_dists(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def kl(p, q):
    """Generalized KL, sum p log(p/q) - p + q (0 log 0 = 0)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p / q), 0.0)
    return float(np.sum(t - p + q))


def plan(x, y, a, b, f, g, eps):
    return a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - sq_dists(x, y)) / eps)


def objective(P, x, y, a, b, eps, rho_a, rho_b):
    """(cost, primal): <P,C> + rho KL(marginals), and that + eps KL(P | a b^T)."""
    C = sq_dists(x, y)
    cost = float(np.sum(P * C))
    if np.isfinite(rho_a):
        cost += rho_a * kl(P.sum(1), a)
    if np.isfinite(rho_b):
        cost += rho_b * kl(P.sum(0), b)
    return cost, cost + eps * kl(P, a[:, None] * b[None, :])


def reference(x, y, a, b, eps, rho_a, rho_b, n_iter=200_000, tol=1e-14):
    """Dense log-domain unbalanced Sinkhorn, written out here (no eps-scaling, no relaxation)."""
    C = sq_dists(x, y)
    lam_a = 1.0 if np.isinf(rho_a) else rho_a / (rho_a + eps)
    lam_b = 1.0 if np.isinf(rho_b) else rho_b / (rho_b + eps)
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(n_iter):
        f_new = -lam_a * eps * logsumexp(np.log(b)[None, :] + (g[None, :] - C) / eps, axis=1)
        g_new = -lam_b * eps * logsumexp(np.log(a)[:, None] + (f_new[:, None] - C) / eps, axis=0)
        done = max(np.abs(f_new - f).max(), np.abs(g_new - g).max()) < tol
        f, g = f_new, g_new
        if done:
            break
    return f, g


def problem(rng, n=70, m=50, mass_b=1.5):
    x = rng.random((n, 2))
    y = 0.6 * rng.random((m, 2)) + 0.3
    a = rng.random(n) + 0.5
    b = rng.random(m) + 0.5
    return x, y, a / a.sum(), mass_b * b / b.sum()


@pytest.mark.parametrize(("backend", "method"), SOLVERS)
@pytest.mark.parametrize("reach", [0.4, (0.3, 0.8), (None, 0.5), (0.6, np.inf)])
def test_matches_dense_reference_and_pot(rng, backend, method, reach):
    x, y, a, b = problem(rng)
    if reach in ((None, 0.5), (0.6, np.inf)):  # one marginal fixed: the masses must agree on it
        b = b / b.sum()
    eps = 0.05
    pair = reach if isinstance(reach, tuple) else (reach, reach)
    rho_a, rho_b = (np.inf if r is None else r**2 for r in pair)
    res = sinkhorn(x, y, a, b, eps=eps, reach=reach, tol=1e-10, kernel_tol=1e-12, backend=backend, method=method)
    assert res.converged
    f_ref, g_ref = reference(x, y, a, b, eps, rho_a, rho_b)
    cost_ref, primal_ref = objective(plan(x, y, a, b, f_ref, g_ref, eps), x, y, a, b, eps, rho_a, rho_b)
    assert abs(res.dual - primal_ref) <= 1e-6 * abs(primal_ref)
    assert abs(res.cost - cost_ref) <= 1e-6 * abs(cost_ref)
    # POT's sinkhorn_unbalanced (reg_type="kl") minimizes the same objective: same plan, same value
    P_pot = ot.unbalanced.sinkhorn_unbalanced(
        a, b, sq_dists(x, y), eps, (rho_a, rho_b), reg_type="kl", numItermax=200_000, stopThr=1e-15
    )
    assert abs(objective(P_pot, x, y, a, b, eps, rho_a, rho_b)[1] - res.dual) <= 1e-6 * abs(res.dual)
    P = plan(x, y, a, b, np.asarray(res.f), np.asarray(res.g), eps)
    assert np.abs(P - P_pot).sum() <= 1e-6 * P_pot.sum()


def test_dual_equals_primal_and_marginals_are_the_optimality_conditions(rng):
    """The theory: at the optimum P 1 = a exp(-f / rho_a), P^T 1 = b exp(-g / rho_b), dual = primal,
    and marginal_error measures exactly the gap to those marginals."""
    x, y, a, b = problem(rng, mass_b=2.0)
    eps, reach = 0.02, (0.5, 0.3)
    res = sinkhorn(x, y, a, b, eps=eps, reach=reach, tol=1e-11, backend="rust", method="dense")
    f, g = np.asarray(res.f), np.asarray(res.g)
    P = plan(x, y, a, b, f, g, eps)
    np.testing.assert_allclose(P.sum(1), a * np.exp(-f / 0.25), rtol=1e-9)
    np.testing.assert_allclose(P.sum(0), b * np.exp(-g / 0.09), rtol=1e-9)
    cost, primal = objective(P, x, y, a, b, eps, 0.25, 0.09)
    assert abs(res.dual - primal) <= 1e-9 * primal
    assert abs(res.cost - cost) <= 1e-9 * cost
    # stopped early: marginal_error is the L1 gap to the marginals the potentials ask for
    # plain; over-relaxed (after 30 iterations omega > 1, both marginals off); Anderson (converges
    # to 1e-14 within 30 iterations here: stopped after 6)
    for kw in (
        {"overrelaxation": False, "n_iter_max": 30},
        {"acceleration": "overrelaxation", "n_iter_max": 30},
        {"n_iter_max": 6},
    ):
        with pytest.warns(ConvergenceWarning):
            early = sinkhorn(x, y, a, b, eps=eps, reach=reach, tol=1e-14, eps_scaling=False, **kw)
        f, g = np.asarray(early.f), np.asarray(early.g)
        P = plan(x, y, a, b, f, g, eps)
        gap = np.abs(P.sum(1) - a * np.exp(-f / 0.25)).sum() + np.abs(P.sum(0) - b * np.exp(-g / 0.09)).sum()
        assert gap == pytest.approx(early.marginal_error, rel=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "rust"])
def test_isolated_points_closed_form(rng, backend):
    """x = y = points 1 apart with eps = 0.01 (kernel e^-100 between distinct points): each point
    keeps the mass t minimizing eps KL(t|ab) + rho KL(t|a) + rho KL(t|b), that is
    t = (a b)^((eps + rho) / (eps + 2 rho)): the marginals move toward the geometric mean."""
    eps, reach = 0.01, 0.5
    rho = reach**2
    x = np.arange(6.0)[:, None]
    a, b = rng.random(6) + 0.1, 3 * rng.random(6) + 0.1
    res = sinkhorn(x, x, a, b, eps=eps, reach=reach, tol=1e-12, backend=backend)
    t = a * np.exp(-np.asarray(res.f) / rho)
    np.testing.assert_allclose(t, (a * b) ** ((eps + rho) / (eps + 2 * rho)), rtol=1e-9)
    np.testing.assert_allclose(b * np.exp(-np.asarray(res.g) / rho), t, rtol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "rust"])
def test_large_reach_recovers_the_balanced_solution(rng, backend):
    x, y, a, b = problem(rng, mass_b=1.0)
    eps = 0.05
    balanced = sinkhorn(x, y, a, b, eps=eps, tol=1e-10, backend=backend)
    gaps = []
    for reach in (1.0, 3.0, 10.0):
        res = sinkhorn(x, y, a, b, eps=eps, reach=reach, tol=1e-9, n_iter_max=50_000, backend=backend, n_threads=1)
        assert res.converged
        gaps.append(abs(res.dual - balanced.dual))
        pot_gap = np.abs(np.asarray(res.f) - np.asarray(balanced.f))
        assert pot_gap.max() - pot_gap.min() <= 20 * eps / reach**2 + 1e-6  # up to a constant: O(1/rho)
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] <= 1e-3 * abs(balanced.dual)


def test_reach_none_is_the_balanced_problem_bit_for_bit(rng):
    x, y, a, b = problem(rng, mass_b=1.0)
    for backend in ("numpy", "rust"):
        base = sinkhorn(x, y, a, b, eps=0.05, backend=backend)
        for reach in (None, (None, None), (np.inf, np.inf)):
            res = sinkhorn(x, y, a, b, eps=0.05, backend=backend, reach=reach)
            assert res.dual == base.dual and res.cost == base.cost and res.n_iter == base.n_iter
            assert np.array_equal(res.f, base.f) and np.array_equal(res.g, base.g)


@pytest.mark.parametrize("backend", ["numpy", "rust"])
def test_overrelaxation_same_solution_fewer_iterations(rng, backend):
    x, y, a, b = problem(rng, n=60, m=50)
    kw = {"eps": 0.01, "reach": 1.0, "tol": 1e-8, "backend": backend, "n_iter_max": 50_000}
    plain = sinkhorn(x, y, a, b, overrelaxation=False, **kw)
    fast = sinkhorn(x, y, a, b, **kw)
    assert plain.converged and fast.converged
    assert fast.n_iter < plain.n_iter
    assert abs(fast.dual - plain.dual) <= 1e-7 * abs(plain.dual)


def test_exact_rescaling(rng):
    x, y, a, b = problem(rng)
    base = sinkhorn(x, y, a, b, eps=0.05, reach=0.4, tol=1e-10)
    k = 40
    big = sinkhorn(np.ldexp(x, k), np.ldexp(y, k), a, b, eps=np.ldexp(0.05, 2 * k), reach=np.ldexp(0.4, k), tol=1e-10)
    assert np.ldexp(base.dual, 2 * k) == pytest.approx(big.dual, rel=1e-9)
    np.testing.assert_allclose(np.ldexp(np.asarray(base.f), 2 * k), big.f, rtol=1e-7, atol=1e-9 * np.ldexp(1, 2 * k))


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 3),
    eps=st.sampled_from([0.02, 0.1, 1.0]),
    reach=st.sampled_from([0.1, 1.0, (0.3, None), (2.0, 0.5)]),
    mass_b=st.sampled_from([0.5, 1.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_rust_matches_xp_reference(n, m, d, eps, reach, mass_b, seed):
    r = np.random.default_rng(seed)
    x, y = r.random((n, d)), r.random((m, d))
    a = r.random(n) + 0.1
    b = r.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum() * (1.0 if isinstance(reach, tuple) and reach[1] is None else mass_b)
    if isinstance(reach, tuple) and reach[1] is None:
        b = b / b.sum()
    kw = {"eps": eps, "reach": reach, "tol": 1e-9, "kernel_tol": 1e-11}
    ref = sinkhorn(x, y, a, b, backend="numpy", **kw)
    for method in ("dense", "hierarchical"):
        res = sinkhorn(x, y, a, b, backend="rust", method=method, **kw)
        assert res.converged == ref.converged
        assert res.dual == pytest.approx(ref.dual, rel=1e-7, abs=1e-12)
        assert res.cost == pytest.approx(ref.cost, rel=1e-7, abs=1e-12)
        np.testing.assert_allclose(res.f, ref.f, rtol=1e-6, atol=1e-8 * (1 + eps))


# --------------------------------------------------------------------------- log-weights


@pytest.mark.parametrize("reach", [None, 0.5])
def test_log_weights_equal_weights(rng, reach):
    x, y, a, b = problem(rng, mass_b=1.0)
    res = sinkhorn(x, y, a, b, eps=0.05, reach=reach)
    res_log = sinkhorn(x, y, log_a=np.log(a), log_b=np.log(b), eps=0.05, reach=reach)
    assert res_log.dual == pytest.approx(res.dual, rel=1e-12)
    np.testing.assert_allclose(res_log.f, res.f, rtol=1e-10, atol=1e-12)
    mixed = sinkhorn(x, y, a, log_b=np.log(b), eps=0.05, reach=reach)
    assert mixed.dual == pytest.approx(res.dual, rel=1e-12)


def test_log_weights_spanning_many_decades(rng):
    """Weights whose exponentials under- or overflow float64: balanced problems normalize them in
    the log domain, so the potentials are those of the normalized weights (shifted by eps log sum(b))."""
    x, y, a, b = problem(rng, mass_b=1.0)
    la, lb = np.log(a), np.log(b)
    for shift in (-2000.0, 1500.0):
        res = sinkhorn(x, y, log_a=la + shift, log_b=lb + shift, eps=0.05, tol=1e-9)
        unit = sinkhorn(x, y, a, b, eps=0.05, tol=1e-9)
        assert res.converged
        np.testing.assert_allclose(np.asarray(res.f) + 0.05 * shift, unit.f, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(res.g, unit.g, rtol=1e-9, atol=1e-9)
    # a zero weight as -inf, and weights 1e-250 apart
    la2 = la.copy()
    la2[0] = -np.inf
    la2[1] -= 575.0
    mass = logsumexp(la2)
    res = sinkhorn(x, y, log_a=la2, log_b=lb + mass, eps=0.05)
    w = np.exp(la2)
    assert res.converged and w[1] > 0
    assert res.dual == pytest.approx(sinkhorn(x, y, w, b * np.exp(mass), eps=0.05).dual, rel=1e-12)


def test_log_weights_bad_input(rng):
    x, y, a, b = problem(rng, mass_b=1.0)
    with pytest.raises(ValueError, match="pass a or log_a, not both"):
        sinkhorn(x, y, a, b, log_a=np.log(a), eps=0.1)
    with pytest.raises(ValueError, match="log_a contains NaN"):
        sinkhorn(x, y, log_a=np.full(len(a), np.nan), eps=0.1)
    with pytest.raises(ValueError, match="-inf everywhere"):
        sinkhorn(x, y, log_a=np.full(len(a), -np.inf), eps=0.1)
    with pytest.raises(ValueError, match="log_b must be 1-D with"):
        sinkhorn(x, y, log_b=np.zeros(3), eps=0.1)
    with pytest.raises(ValueError, match="float64 range"):
        sinkhorn(x, y, log_a=np.full(len(a), 800.0), eps=0.1, reach=1.0)


@pytest.mark.parametrize(
    ("reach", "exc", "match"),
    [
        (0.0, ValueError, "reach"),
        (-1.0, ValueError, "reach"),
        (np.nan, ValueError, "reach"),
        ("1", TypeError, "reach"),
        (True, TypeError, "reach"),
        ((1.0, 2.0, 3.0), ValueError, "pair"),
        (1e200, ValueError, "float64 range"),
    ],
)
def test_bad_reach(rng, reach, exc, match):
    x, y, a, b = problem(rng, n=5, m=4)
    with pytest.raises(exc, match=match):
        sinkhorn(x, y, a, b, eps=0.1, reach=reach)


def test_unequal_masses_need_reach(rng):
    x, y, a, b = problem(rng, n=5, m=4, mass_b=2.0)
    with pytest.raises(ValueError, match="pass reach for unbalanced"):
        sinkhorn(x, y, a, b, eps=0.1)


# --------------------------------------------------------------------------- float32, duplicates


@pytest.mark.parametrize("reach", [None, 0.5])
def test_float32_points_hierarchical_exact_to_tol(rng, reach):
    x = rng.random((600, 2)).astype(np.float32)
    y = (rng.random((500, 2)) * 0.7 + 0.2).astype(np.float32)
    kw = {"eps": 0.02, "reach": reach, "tol": 1e-8}
    res = sinkhorn(x, y, method="hierarchical", **kw)
    ref = sinkhorn(x.astype(np.float64), y.astype(np.float64), method="dense", backend="rust", **kw)
    assert res.f.dtype == np.float32 and type(res.dual) is np.float32
    assert abs(float(res.dual) - ref.dual) <= 1e-6 * abs(ref.dual)  # float32 output rounding
    shift = 0.0 if reach else float(np.mean(res.f) - np.mean(ref.f))  # balanced: up to a constant
    np.testing.assert_allclose(np.asarray(res.f) - shift, ref.f, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reach", [None, 0.3])
def test_many_duplicates_hierarchical_matches_dense(rng, reach):
    """90% of the points are copies of 20 sites (a k-d tree with zero-width boxes)."""
    sites = rng.random((20, 2))
    x = np.concatenate([sites[rng.integers(0, 20, 900)], rng.random((100, 2))])
    y = np.concatenate([sites[rng.integers(0, 20, 700)] + 0.05, rng.random((80, 2))])
    kw = {"eps": 0.02, "reach": reach, "tol": 1e-8, "backend": "rust"}
    hier = sinkhorn(x, y, method="hierarchical", **kw)
    dense = sinkhorn(x, y, method="dense", **kw)
    assert hier.converged and dense.converged
    assert hier.dual == pytest.approx(dense.dual, rel=1e-7)
    shift = 0.0 if reach else float(np.mean(hier.f) - np.mean(dense.f))  # balanced: up to a constant
    np.testing.assert_allclose(np.asarray(hier.f) - shift, dense.f, rtol=1e-6, atol=1e-8)
    # duplicates carry the same potential
    _, first = np.unique(x, axis=0, return_inverse=True)
    f = np.asarray(hier.f)
    for k in np.unique(first)[:5]:
        assert np.ptp(f[first.ravel() == k]) <= 1e-9
