"""Anderson mixing of the final eps stage and the multiscale warm start of ``sinkhorn``: the same
solution as the over-relaxed, full-cloud solve, in fewer iterations; Rust and the xp reference agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from lorainne import ConvergenceWarning, sinkhorn


def mixture(rng, n, d=2, spread=0.05):
    centres = rng.random((3, d))
    return centres[rng.integers(0, 3, n)] + spread * rng.standard_normal((n, d))


def exact_errors(x, y, a, b, f, g, eps):
    """L1 errors of both marginals of P = a b exp((f + g - C) / eps) and its cost, exact kernel."""
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    P = a[:, None] * b[None, :] * np.exp((np.asarray(f)[:, None] + np.asarray(g)[None, :] - C) / eps)
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()), float((P * C).sum())


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_anderson_same_solution_as_overrelaxation_in_fewer_iterations(rng, backend):
    n = 400
    x, y = mixture(rng, n), mixture(rng, n)
    a = np.full(n, 1.0 / n)
    kw = dict(eps=0.01, tol=1e-7, method="dense", backend=backend)
    sor = sinkhorn(x, y, acceleration="overrelaxation", **kw)
    acc = sinkhorn(x, y, **kw)
    assert sor.converged and acc.converged
    assert acc.n_iter < sor.n_iter, (acc.n_iter, sor.n_iter)  # measured 163 vs 234 on this seed
    assert abs(acc.cost - sor.cost) <= 1e-6 * sor.cost
    err, cost = exact_errors(x, y, a, a, acc.f, acc.g, 0.01)
    assert err <= 1e-7 and abs(err - acc.marginal_error) <= 0.1 * acc.marginal_error + 1e-12
    assert abs(cost - acc.cost) <= 1e-9 * cost


def test_anderson_rust_matches_xp_reference(rng):
    x, y = rng.random((50, 2)), rng.random((40, 2)) + [0.3, 0.0]
    a, b = rng.random(50) + 0.1, rng.random(40) + 0.1
    a, b = a / a.sum(), b / b.sum()
    for reach in (None, 0.5):
        ref = sinkhorn(x, y, a, b, eps=0.02, reach=reach, tol=1e-10, backend="numpy")
        for method in ("dense", "hierarchical"):
            res = sinkhorn(x, y, a, b, eps=0.02, reach=reach, tol=1e-10, backend="rust", method=method)
            assert res.converged and abs(res.n_iter - ref.n_iter) <= 1 + ref.n_iter // 10
            assert abs(res.cost - ref.cost) <= 1e-8 * ref.cost
            assert abs(res.dual - ref.dual) <= 1e-8 * abs(ref.dual)


def test_anderson_unbalanced_same_solution(rng):
    x, y = rng.random((120, 2)), rng.random((100, 2)) * 0.6 + 0.2
    a, b = np.full(120, 1 / 120), np.full(100, 1.5 / 100)
    kw = dict(eps=0.01, reach=0.3, tol=1e-9, method="dense")
    sor = sinkhorn(x, y, a, b, acceleration="overrelaxation", **kw)
    acc = sinkhorn(x, y, a, b, **kw)
    assert sor.converged and acc.converged and acc.n_iter <= sor.n_iter
    assert abs(acc.dual - sor.dual) <= 1e-8 * abs(sor.dual)
    assert abs(acc.cost - sor.cost) <= 1e-7 * sor.cost


def test_multiscale_warm_start_same_solution(rng):
    n, m, eps = 2500, 2200, 0.01
    x, y = rng.random((n, 2)), mixture(rng, m)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    kw = dict(eps=eps, tol=1e-6, method="hierarchical", n_threads=1)
    full = sinkhorn(x, y, multiscale=False, **kw)
    seen = []
    multi = sinkhorn(x, y, callback=lambda state, err: seen.append(state["eps"]) and False, **kw)
    assert full.converged and multi.converged
    assert abs(multi.cost - full.cost) <= 1e-6 * full.cost
    assert abs(multi.dual - full.dual) <= 1e-6 * abs(full.dual)
    err, cost = exact_errors(x, y, a, b, multi.f, multi.g, eps)
    assert err <= 1e-6 and abs(cost - multi.cost) <= 1e-6 * cost
    assert seen[0] == eps and seen[-1] == eps and max(seen) > 1.0  # the plain first step, the stages
    # stopped inside a (coarse) scaling stage: potentials on the full clouds, at the final eps
    with pytest.warns(ConvergenceWarning):
        early = sinkhorn(x, y, n_iter_max=4, **kw)
    assert early.f.shape == (n,) and early.g.shape == (m,) and not early.converged
    err, _ = exact_errors(x, y, a, b, early.f, early.g, eps)
    assert np.isfinite(early.cost) and abs(err - early.marginal_error) <= 0.05 * err


def test_multiscale_unbalanced_same_solution(rng):
    x, y = rng.random((2500, 2)), rng.random((2200, 2)) * 0.7 + 0.2
    a, b = np.full(2500, 1 / 2500), np.full(2200, 1.3 / 2200)
    kw = dict(eps=0.01, reach=0.3, tol=1e-6, method="hierarchical", n_threads=1)
    full = sinkhorn(x, y, a, b, multiscale=False, **kw)
    multi = sinkhorn(x, y, a, b, **kw)
    assert full.converged and multi.converged and multi.marginal_error <= 1e-6
    assert abs(multi.dual - full.dual) <= 1e-8 * abs(full.dual)  # measured 3e-14
    assert abs(multi.cost - full.cost) <= 1e-6 * full.cost  # measured 6e-8


def test_multiscale_is_ignored_by_the_dense_method_and_small_clouds(rng):
    x, y = rng.random((300, 2)), mixture(rng, 200)
    for method in ("dense", "hierarchical"):
        on = sinkhorn(x, y, eps=0.01, method=method)
        off = sinkhorn(x, y, eps=0.01, method=method, multiscale=False)
        assert on.n_iter == off.n_iter and on.cost == off.cost


def test_acceleration_options_are_checked():
    x = np.zeros((2, 1))
    with pytest.raises(ValueError, match="acceleration"):
        sinkhorn(x, x + 1, eps=0.1, acceleration="chebyshev")
    with pytest.raises(TypeError, match="acceleration"):
        sinkhorn(x, x + 1, eps=0.1, acceleration=True)
    with pytest.raises(TypeError, match="multiscale"):
        sinkhorn(x, x + 1, eps=0.1, multiscale="yes")
