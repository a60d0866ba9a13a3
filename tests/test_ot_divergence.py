"""The debiased Sinkhorn divergence ``lorainne.sinkhorn_divergence``."""

from __future__ import annotations

import numpy as np
import pytest

from lorainne import SinkhornResult, sinkhorn, sinkhorn_divergence
from lorainne.ot import SinkhornDivergenceResult

SOLVERS = [("numpy", "dense"), ("rust", "dense"), ("rust", "hierarchical")]


@pytest.fixture
def rng():
    return np.random.default_rng(21)


def clouds(rng, n=80, m=60):
    x = rng.random((n, 2))
    y = 0.5 * rng.random((m, 2)) + 0.4
    a = rng.random(n) + 0.5
    b = rng.random(m) + 0.5
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize(("backend", "method"), SOLVERS)
@pytest.mark.parametrize("reach", [None, 0.5])
def test_zero_for_identical_positive_otherwise_symmetric(rng, backend, method, reach):
    x, y, a, b = clouds(rng)
    kw = {"eps": 0.02, "reach": reach, "tol": 1e-9, "backend": backend, "method": method}
    same = sinkhorn_divergence(x, x, a, a, **kw)
    assert isinstance(same, SinkhornDivergenceResult)
    assert abs(same.value) <= 1e-8
    s_xy = sinkhorn_divergence(x, y, a, b, **kw)
    s_yx = sinkhorn_divergence(y, x, b, a, **kw)
    assert s_xy.value > 1e-3
    assert s_xy.value == pytest.approx(s_yx.value, rel=1e-7)
    for res in s_xy[1:]:
        assert isinstance(res, SinkhornResult) and res.converged
    assert np.array_equal(s_xy.xx.f, s_xy.xx.g)


@pytest.mark.parametrize(("backend", "method"), SOLVERS)
@pytest.mark.parametrize("reach", [None, 0.7])
def test_equals_its_definition_from_three_sinkhorn_calls(rng, backend, method, reach):
    x, y, a, b = clouds(rng)
    if reach is not None:
        b = 1.7 * b  # unbalanced: masses may differ
    kw = {"eps": 0.03, "reach": reach, "tol": 1e-10, "kernel_tol": 1e-12, "backend": backend, "method": method}
    div = sinkhorn_divergence(x, y, a, b, **kw)
    xy = sinkhorn(x, y, a, b, **kw)
    xx = sinkhorn(x, x, a, a, **kw)
    yy = sinkhorn(y, y, b, b, **kw)
    mass_term = 0.0 if reach is None else 0.5 * 0.03 * (a.sum() - b.sum()) ** 2
    expected = xy.dual - 0.5 * xx.dual - 0.5 * yy.dual + mass_term
    assert div.value == pytest.approx(expected, rel=1e-7, abs=1e-12)
    # the symmetric solves find the same optimum as the two-sided ones
    assert div.xx.dual == pytest.approx(xx.dual, rel=1e-8)
    assert div.yy.dual == pytest.approx(yy.dual, rel=1e-8)
    assert div.value > 0


def test_unbalanced_mass_term_keeps_it_positive_for_equal_shapes(rng):
    """Same points, masses 1 and 3: the measures differ, so S > 0 (without Sejourne et al.'s mass
    term OT(a, 3a) - OT(a, a)/2 - OT(3a, 3a)/2 can be negative)."""
    x, _, a, _ = clouds(rng)
    for eps in (0.01, 0.1):
        div = sinkhorn_divergence(x, x, a, 3 * a, eps=eps, reach=0.5, tol=1e-10)
        assert div.value > 0
        without = div.xy.dual - 0.5 * div.xx.dual - 0.5 * div.yy.dual
        assert div.value == pytest.approx(without + 0.5 * eps * 4.0, rel=1e-9)


def test_rust_matches_xp_reference(rng):
    x, y, a, b = clouds(rng, 50, 40)
    for reach in (None, 0.4):
        kw = {"eps": 0.05, "reach": reach, "tol": 1e-10}
        ref = sinkhorn_divergence(x, y, a, b, backend="numpy", **kw)
        for method in ("dense", "hierarchical"):
            res = sinkhorn_divergence(x, y, a, b, backend="rust", method=method, kernel_tol=1e-12, **kw)
            assert res.value == pytest.approx(ref.value, rel=1e-7)
            assert res.xx.n_iter == ref.xx.n_iter or method == "hierarchical"
            np.testing.assert_allclose(res.xx.f, ref.xx.f, rtol=1e-7, atol=1e-10)


def test_symmetric_solve_is_fast(rng):
    """The averaged symmetric update needs far fewer kernel applications than the two-sided loop."""
    x = rng.random((300, 2))
    div = sinkhorn_divergence(x, x + 0.05, eps=0.005, tol=1e-8, backend="rust", method="dense")
    two_sided = sinkhorn(x, x, eps=0.005, tol=1e-8, backend="rust", method="dense")
    assert div.xx.converged
    # fewer iterations, each of one kernel application instead of two (measured: 59 against 113)
    assert div.xx.n_iter < two_sided.n_iter


@pytest.mark.parametrize("method", ["dense", "hierarchical"])
def test_translation_is_its_squared_length(rng, method):
    """Planted: for a translate, |x - y - t|^2 = |x - y|^2 - 2 t.(x - y) + |t|^2 and the linear
    term integrates to zero against any plan with these marginals, so S = |t|^2 exactly."""
    x = rng.random((300, 2))
    t = np.array([0.1, -0.06])
    div = sinkhorn_divergence(x, x + t, eps=0.01, tol=1e-8, method=method)
    assert div.value == pytest.approx(t @ t, rel=1e-6)


def test_float32_value_dtype(rng):
    x, y, _, _ = clouds(rng)
    div = sinkhorn_divergence(x.astype(np.float32), y.astype(np.float32), eps=0.05)
    assert type(div.value) is np.float32


@pytest.mark.skipif(not hasattr(SinkhornResult, "gradient_x"), reason="needs SinkhornResult.gradient_x (OT-plans)")
@pytest.mark.parametrize("method", ["dense", "hierarchical"])
def test_gradient_matches_finite_differences(rng, method):
    x, y, a, b = clouds(rng, 30, 25)
    kw = {"eps": 0.05, "tol": 1e-12, "kernel_tol": 1e-13, "method": method, "backend": "rust"}
    div = sinkhorn_divergence(x, y, a, b, **kw)
    gx, gy = div.gradient_x(), div.gradient_y()
    h = 1e-5
    for i, k in ((0, 0), (7, 1)):
        xp, xm = x.copy(), x.copy()
        xp[i, k] += h
        xm[i, k] -= h
        fd = (sinkhorn_divergence(xp, y, a, b, **kw).value - sinkhorn_divergence(xm, y, a, b, **kw).value) / (2 * h)
        assert gx[i, k] == pytest.approx(fd, rel=1e-6, abs=1e-9)
        yp, ym = y.copy(), y.copy()
        yp[i, k] += h
        ym[i, k] -= h
        fd = (sinkhorn_divergence(x, yp, a, b, **kw).value - sinkhorn_divergence(x, ym, a, b, **kw).value) / (2 * h)
        assert gy[i, k] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_bad_input(rng):
    x, y, a, b = clouds(rng, 5, 4)
    with pytest.raises(ValueError, match="equal sums"):
        sinkhorn_divergence(x, y, a, 2 * b, eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_divergence(x, y, eps=-1.0)
    with pytest.raises(TypeError, match="reach"):
        sinkhorn_divergence(x, y, eps=0.1, reach="far")
