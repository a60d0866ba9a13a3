"""Plan products of a solved Sinkhorn result: P v, P^T u, the barycentric map, the gradients of the
dual with respect to the points (finite differences) and the sparse near-field plan."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import ConvergenceWarning, SinkhornResult, sinkhorn, sinkhorn_divergence

METHODS = ("dense", "hierarchical")


def _problem(seed: int, n: int = 40, m: int = 30, mass: float = 1.0):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2)) + [0.3, 0.0]
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    return x, y, mass * a / a.sum(), mass * b / b.sum()


def _dense_plan(res):
    """The plan formed entry by entry from the potentials (the definition)."""
    p = res.problem
    C = ((p.x[:, None, :] - p.y[None, :, :]) ** 2).sum(-1)
    return p.a[:, None] * p.b[None, :] * np.exp((res.f[:, None] + res.g[None, :] - C) / p.eps)


@pytest.mark.parametrize("method", METHODS)
def test_plan_matvec_equals_the_dense_plan(method):
    x, y, a, b = _problem(0, mass=3.0)  # weights summing to 3: the plan is in the caller's masses
    res = sinkhorn(x, y, a, b, eps=0.03, tol=1e-9, method=method)
    P = _dense_plan(res)
    rng = np.random.default_rng(1)
    v, u = rng.standard_normal(30), rng.standard_normal((40, 3))
    scale_v, scale_u = P @ np.abs(v), P.T @ np.abs(u)  # the split's error bound: tol * P |v|
    assert np.all(np.abs(res.plan_matvec(v) - P @ v) <= 1e-9 * scale_v + 1e-300)
    assert np.all(np.abs(res.plan_rmatvec(u) - P.T @ u) <= 1e-9 * scale_u + 1e-300)
    w = rng.random((30, 2)) * np.logspace(-200, 0, 30)[:, None]  # one sign: relative accuracy per entry
    assert np.allclose(res.plan_matvec(w), P @ w, rtol=1e-9, atol=0)
    assert res.plan_matvec(np.zeros(30)).shape == (40,) and not np.any(res.plan_matvec(np.zeros(30)))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 25), m=st.integers(1, 25), d=st.integers(1, 3))
def test_plan_products_property(seed, n, m, d):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    # The identities below hold at any potentials, converged or not; some draws (1-D, eps = 0.056,
    # cost / eps up to ~700) need more than 10,000 iterations to reach tol, which is not the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = sinkhorn(x, y, eps=float(rng.uniform(0.05, 2.0)), tol=1e-8, method="hierarchical", n_iter_max=2000)
    P = _dense_plan(res)
    v = rng.standard_normal(m)
    assert np.all(np.abs(res.plan_matvec(v) - P @ v) <= 1e-8 * (P @ np.abs(v)) + 1e-300)
    T = res.barycentric_map()
    assert np.allclose(T, (P @ y) / P.sum(1)[:, None], rtol=0, atol=1e-8 * (1 + np.ptp(y)))
    assert np.allclose(res.gradient_y(), 2 * (P.sum(0)[:, None] * y - P.T @ x), atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_barycentric_map_recovers_a_planted_translation(method):
    x = np.random.default_rng(2).random((150, 2))
    shift = np.array([1.0, -0.5])
    res = sinkhorn(x, x + shift, eps=0.003, tol=1e-8, method=method)
    T = res.barycentric_map()
    assert T.shape == x.shape
    assert np.abs(T - x - shift).mean() < 0.01  # the entropic blur at eps = 0.003: about 7e-3
    assert np.allclose((T - x).mean(0), shift, atol=1e-6)  # the plan's marginals: means map exactly


@pytest.mark.parametrize("method", METHODS)
def test_gradients_are_finite_differences_of_the_dual(method):
    x, y, a, b = _problem(3, n=25, m=20)
    kw = {"eps": 0.05, "tol": 1e-13, "method": method}
    res = sinkhorn(x, y, a, b, **kw)
    gx, gy = res.gradient_x(), res.gradient_y()
    h = 1e-5
    for pts, grad, which in ((x, gx, "x"), (y, gy, "y")):
        for i, c in ((0, 0), (7, 1), (len(pts) - 1, 0)):
            plus, minus = pts.copy(), pts.copy()
            plus[i, c] += h
            minus[i, c] -= h
            args_p = (plus, y) if which == "x" else (x, plus)
            args_m = (minus, y) if which == "x" else (x, minus)
            fd = (sinkhorn(*args_p, a, b, **kw).dual - sinkhorn(*args_m, a, b, **kw).dual) / (2 * h)
            assert abs(fd - grad[i, c]) <= 1e-6 * np.abs(grad).max(), (which, i, c)
    assert np.allclose(gx.sum(0), -gy.sum(0), atol=1e-14)  # translating both clouds changes nothing


def test_gradient_uses_the_plans_row_mass_before_convergence():
    x, y, a, b = _problem(4)
    with pytest.warns(Warning):
        res = sinkhorn(x, y, a, b, eps=0.01, tol=1e-12, n_iter_max=3, eps_scaling=False)
    P = _dense_plan(res)
    assert not np.allclose(P.sum(1), a, rtol=1e-3)  # far from converged ...
    expected = 2 * (P.sum(1)[:, None] * x - P @ y)  # ... the formula holds with P 1, not a
    assert np.allclose(res.gradient_x(), expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("threshold", [1e-3, 1e-8])
def test_plan_sparse_keeps_all_but_threshold_of_each_row(method, threshold):
    x, y, a, b = _problem(5, n=200, m=150)
    res = sinkhorn(x, y, a, b, eps=0.005, tol=1e-10, method=method)
    P = _dense_plan(res)
    S = res.plan_sparse(threshold)
    assert S.shape == (200, 150) and S.format == "csr"
    rows = np.asarray(S.sum(1)).ravel()
    assert np.all(rows <= P.sum(1) * (1 + 1e-9))
    assert np.all(a - rows <= threshold * a + 2e-10)  # dropped mass <= threshold of the row
    dense = S.toarray()
    kept = dense > 0
    assert np.allclose(dense[kept], P[kept], rtol=1e-9)
    # it keeps the largest entries: every dropped entry is at most the smallest kept one of its row
    smallest = np.where(kept, dense, np.inf).min(1)
    assert np.all(np.where(kept, 0, P).max(1) <= smallest * (1 + 1e-9))
    assert S.nnz < P.size / 3


def test_plan_sparse_k_caps_the_entries_per_row():
    x, y, a, b = _problem(6, n=60, m=50)
    res = sinkhorn(x, y, a, b, eps=0.05, tol=1e-9)
    P = _dense_plan(res)
    S = res.plan_sparse(1e-12, k=3)
    assert np.all(np.diff(S.indptr) == 3)
    top3 = np.sort(P, axis=1)[:, -3:]
    assert np.allclose(np.sort(S.toarray(), axis=1)[:, -3:], top3, rtol=1e-9)


def test_zero_weights_and_float32():
    x, y, a, b = _problem(7)
    a[:5] = 0.0
    a /= a.sum()
    res = sinkhorn(x, y, a, b, eps=0.05, tol=1e-10)
    T = res.barycentric_map()
    assert np.all(np.isfinite(T)) and np.allclose(res.gradient_x()[:5], 0.0)
    assert res.plan_sparse(1e-6)[:5].nnz == 0
    res32 = sinkhorn(x.astype(np.float32), y.astype(np.float32), eps=0.05, tol=1e-6)
    assert res32.barycentric_map().dtype == np.float32 and res32.plan_matvec(np.ones(30)).dtype == np.float32


def test_array_api_strict_dense_path_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    x, y, a, b = _problem(8, n=20, m=15)
    ref = sinkhorn(x, y, a, b, eps=0.05, tol=1e-10)
    res = sinkhorn(xps.asarray(x), xps.asarray(y), a, b, eps=0.05, tol=1e-10)
    assert res.problem.backend != "rust"
    v = np.random.default_rng(0).standard_normal(15)
    assert np.allclose(np.asarray(res.plan_matvec(xps.asarray(v))), ref.plan_matvec(v), rtol=1e-8, atol=1e-14)
    assert np.allclose(np.asarray(res.gradient_x()), ref.gradient_x(), rtol=1e-8, atol=1e-14)
    assert np.allclose(res.plan_sparse(1e-6).toarray(), ref.plan_sparse(1e-6).toarray(), rtol=1e-8, atol=1e-14)


def test_bad_input():
    x, y, a, b = _problem(9, n=10, m=8)
    res = sinkhorn(x, y, a, b, eps=0.1)
    with pytest.raises(ValueError, match="v must have shape"):
        res.plan_matvec(np.ones(10))
    with pytest.raises(ValueError, match="u must have shape"):
        res.plan_rmatvec(np.ones((8, 2)))
    with pytest.raises(ValueError, match="NaN"):
        res.plan_matvec(np.full(8, np.nan))
    with pytest.raises(TypeError):
        res.plan_matvec(np.array(["a"] * 8))
    for bad in (0.0, 1.0, -1e-3, np.nan):
        with pytest.raises(ValueError, match="threshold"):
            res.plan_sparse(bad)
    with pytest.raises(TypeError, match="threshold"):
        res.plan_sparse("1e-3")
    with pytest.raises(ValueError, match="k"):
        res.plan_sparse(1e-3, k=0)
    with pytest.raises(TypeError, match="k"):
        res.plan_sparse(1e-3, k=2.5)
    bare = SinkhornResult(*res)
    with pytest.raises(ValueError, match="no problem"):
        bare.gradient_x()
    v = np.ones(8)
    res.plan_matvec(v)
    assert np.all(v == 1.0)  # inputs are never modified


def test_cli_map_and_sparse_plan(tmp_path, capsys):
    import scipy.sparse

    from lorainne.cli import main

    x, y, _, _ = _problem(10, n=120, m=100)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["ot", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--eps", "0.01", "--tol", "1e-9", "-q"]
    code = main([*args, "--map", str(tmp_path / "T.npy"), "--plan-sparse", str(tmp_path / "P.npz")])
    text = capsys.readouterr().out
    assert code == 0 and "barycentric map (120, 2)" in text and "sparse plan (120, 100)" in text
    expected = sinkhorn(x, y, eps=0.01, tol=1e-9)
    np.testing.assert_allclose(np.load(tmp_path / "T.npy"), expected.barycentric_map(), rtol=1e-12)
    P = scipy.sparse.load_npz(tmp_path / "P.npz")
    assert (P != expected.plan_sparse(1e-6)).nnz == 0
    for extra, message in (
        (["--map", str(tmp_path / "T.txt")], "--map"),
        (["--map", str(tmp_path / "x.npy")], "input file"),  # never overwrites an input
        (["--plan-sparse", str(tmp_path / "P.npz"), "--threshold", "2"], "--threshold"),
        (["-o", str(tmp_path / "o.npz"), "--plan-sparse", str(tmp_path / "o.npz")], "different files"),
    ):
        with pytest.raises(SystemExit) as error:
            main([*args, *extra])
        assert error.value.code == 2 and message in capsys.readouterr().err


def test_flow_example_decreases_the_objective_monotonically():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "ot_flow.py"
    spec = importlib.util.spec_from_file_location("ot_flow_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x, y = example.clouds(60)
    positions, objectives = example.flow(x, y, eps=0.02, steps=5, method="hierarchical")
    assert len(positions) == 6 and len(objectives) == 6
    assert np.all(np.diff(objectives) < 0)  # strictly: the step gains (1 - (1 - tau)^2) sum a |x - T|^2
    assert objectives[-1] < 0.2 * objectives[0]
    # the measure of the flow: the debiased Sinkhorn divergence to the target falls at every step
    divergences = [float(sinkhorn_divergence(p, y, eps=0.02, tol=1e-8).value) for p in positions]
    assert np.all(np.diff(divergences) < 0), divergences
    assert divergences[-1] < 0.1 * divergences[0]


def test_plan_sparse_is_the_same_in_small_blocks(monkeypatch):
    from lorainne.ot import _plan

    x, y, a, b = _problem(11, n=150, m=120)
    res = sinkhorn(x, y, a, b, eps=0.01, tol=1e-9)
    whole = res.plan_sparse(1e-6)
    monkeypatch.setattr(_plan, "SPARSE_CANDIDATES", 500)  # a few rows per block
    parts = res.plan_sparse(1e-6)
    assert (whole != parts).nnz == 0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(150, 500), d=st.integers(1, 3), k=st.integers(1, 4))
def test_kernel_columns_share_one_traversal_property(seed, n, d, k):
    """The multi-column apply (one traversal for P 1 and k columns) against the dense definition:
    log sums within tol, ratios within 2 tol, the log sums equal to the single-column apply's."""
    from lorainne._backend import core

    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), 0.8 * rng.random((n + 7, d))
    eps, tol = float(rng.uniform(0.005, 0.05)), 1e-7
    log_v = 30.0 * (rng.random(n + 7) - 1.0)
    V = rng.random((n + 7, k)) * (rng.random((n + 7, k)) > 0.2)
    kernel = core().HierarchicalKernel(x, y, eps, tol, 16, False)
    logs, ratios = kernel.log_apply_columns(log_v, np.ascontiguousarray(V.T), False, 1)
    assert np.array_equal(logs, kernel.log_apply(log_v, False, 1))
    Z = log_v[None, :] - ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / eps
    top = Z.max(1, keepdims=True)
    E = np.exp(Z - top)
    assert np.all(np.abs(logs - (top[:, 0] + np.log(E.sum(1)))) <= tol)
    assert np.all(np.abs(ratios - (E @ V) / E.sum(1)[:, None]) <= 2 * tol)
    logs_t, ratios_t = kernel.log_apply_columns(30.0 * (rng.random(n) - 1.0), np.ones((1, n)), True, 1)
    assert ratios_t.shape == (n + 7, 1) and np.allclose(ratios_t, 1.0, rtol=0, atol=2 * tol)
    with pytest.raises(ValueError, match="columns"):
        kernel.log_apply_columns(log_v, np.full((1, n + 7), 1.5), False, 1)


@pytest.mark.parametrize("transpose", [False, True])
def test_gradient_costs_one_kernel_application(transpose):
    """P 1 and the d coordinates share one traversal on the hierarchical path (issue 13: gradients
    at the cost of <= 2 applications); the dense array-API path needs d + 1."""
    from lorainne.ot._plan import _LogKernel, map_and_mass

    rng = np.random.default_rng(3)
    x, y = rng.random((300, 3)), rng.random((280, 3))
    res = sinkhorn(x, y, eps=0.02, tol=1e-9, method="hierarchical")
    kernel = _LogKernel(res.problem)
    T, mass = map_and_mass(res, transpose, kernel)
    assert kernel.applications == 1
    P = _dense_plan(res)
    P, pts = (P.T, x) if transpose else (P, y)
    assert np.allclose(mass, P.sum(1), rtol=1e-9, atol=0)
    assert np.allclose(T, (P @ pts) / P.sum(1)[:, None], rtol=0, atol=2e-9 * np.ptp(pts))
