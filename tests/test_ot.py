"""Entropic OT: dense log-domain reference, Rust loop, hierarchical kernel, validation, real data."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lorainne
from lorainne import ConvergenceWarning, GaussianKernel, SinkhornResult, sinkhorn

ot = pytest.importorskip("ot")


# --------------------------------------------------------------------------- helpers


def sq_dists(x, y):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def exact_marginal_error(x, y, a, b, f, g, eps):
    """L1 error of both marginals of P = a b exp((f+g-C)/eps), with the exact kernel."""
    C = sq_dists(x, y)
    P = a[:, None] * b[None, :] * np.exp((np.asarray(f, float)[:, None] + np.asarray(g, float)[None, :] - C) / eps)
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()), float((P * C).sum())


def uniform(n):
    return np.full(n, 1.0 / n)


def mixture(rng, n, d=2, spread=0.05):
    centres = rng.random((3, d))
    return centres[rng.integers(0, 3, n)] + spread * rng.standard_normal((n, d))


def cloud(kind, rng, n):
    if kind == "uniform2":
        return rng.random((n, 2)), rng.random((n, 2))
    if kind == "uniform3":
        return rng.random((n, 3)), rng.random((n, 3))
    return mixture(rng, n), mixture(rng, n)


# --------------------------------------------------------------------------- against POT


def test_matches_pot_sinkhorn_log(rng):
    x, y = rng.random((150, 2)), rng.random((120, 2)) + 0.3
    a = rng.random(150) + 0.1
    a /= a.sum()
    b = uniform(120)
    M = ot.dist(x, y)  # squared Euclidean, our convention
    ref_plan = ot.sinkhorn(a, b, M, 0.05, method="sinkhorn_log", stopThr=1e-12, numItermax=100000)
    ref = float((ref_plan * M).sum())
    for method, backend in [("dense", "numpy"), ("dense", "rust"), ("hierarchical", "rust")]:
        res = sinkhorn(x, y, a, b, eps=0.05, method=method, backend=backend, tol=1e-10)
        assert res.converged
        assert abs(res.cost - ref) <= 1e-7 * ref, (method, backend, res.cost, ref)


def test_entropic_cost_brackets_exact_ot(rng):
    """0 <= OT_eps cost - W2^2 <= eps log(n) for uniform weights (KL of a permutation plan)."""
    n = 120
    x, y = mixture(rng, n), mixture(rng, n)
    exact = ot.emd2(uniform(n), uniform(n), ot.dist(x, y))
    for eps in (1e-3, 1e-2):
        res = sinkhorn(x, y, eps=eps, method="hierarchical", tol=1e-8)
        assert -1e-9 <= res.cost - exact <= eps * np.log(n), (eps, res.cost, exact)


def test_one_dimensional_sorted_w2(rng):
    """Planted: in 1-D the optimal map is the sorted matching, W2^2 = mean (x_(k) - y_(k))^2."""
    n = 200
    x = np.sort(rng.random(n))
    y = np.sort(rng.beta(2, 5, n)) + 0.25
    w2 = float(np.mean((x - y) ** 2))
    eps = 1e-3
    res = sinkhorn(x, y, eps=eps, tol=1e-7)
    assert res.converged
    assert 0 <= res.cost - w2 <= eps * np.log(n)
    err, cost = exact_marginal_error(x, y, uniform(n), uniform(n), res.f, res.g, eps)
    assert err <= 1e-6 and abs(cost - res.cost) <= 1e-9


def test_single_source_point_exact(rng):
    """One source point: the plan is forced, cost = sum_j b_j |x - y_j|^2."""
    x = np.array([[0.2, 0.4]])
    y = rng.random((50, 2))
    b = rng.random(50)
    b /= b.sum()
    expected = float(b @ ((y - x) ** 2).sum(1))
    for method in ("dense", "hierarchical"):
        res = sinkhorn(x, y, None, b, eps=0.01, method=method)
        assert abs(res.cost - expected) <= 1e-9 * expected


# --------------------------------------------------------------------------- dense reference


@pytest.mark.parametrize("kind", ["uniform2", "uniform3", "mixture2"])
@pytest.mark.parametrize("eps", [0.01, 0.05])
def test_hierarchical_matches_dense(kind, eps):
    rng = np.random.default_rng(7)
    n = 500
    x, y = cloud(kind, rng, n)
    dense = sinkhorn(x, y, eps=eps, method="dense", tol=1e-6, n_threads=1)
    hier = sinkhorn(x, y, eps=eps, method="hierarchical", tol=1e-6, n_threads=1)
    assert dense.converged and hier.converged
    assert abs(hier.cost - dense.cost) <= 1e-4 * dense.cost
    assert abs(hier.dual - dense.dual) <= 1e-5 * max(1.0, abs(dense.dual))
    assert abs(hier.n_iter - dense.n_iter) <= max(1, dense.n_iter // 10)
    err, cost = exact_marginal_error(x, y, uniform(n), uniform(n), hier.f, hier.g, eps)
    assert err <= 1e-4
    assert abs(cost - hier.cost) <= 1e-4 * cost


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mixture2"])  # uniform2 at n = 2000 takes 17 s here; n = 500 above covers it
def test_hierarchical_matches_dense_n2000(kind):
    rng = np.random.default_rng(11)
    n, eps = 2000, 0.01
    x, y = cloud(kind, rng, n)
    dense = sinkhorn(x, y, eps=eps, method="dense")
    hier = sinkhorn(x, y, eps=eps, method="hierarchical")
    assert abs(hier.cost - dense.cost) <= 1e-4 * dense.cost
    assert abs(hier.dual - dense.dual) <= 1e-5
    err, _ = exact_marginal_error(x, y, uniform(n), uniform(n), hier.f, hier.g, eps)
    assert err <= 1e-4


@pytest.mark.parametrize("eps", [0.002, 0.001])
def test_small_eps_mixtures(eps):
    rng = np.random.default_rng(3)
    n = 300
    x, y = mixture(rng, n), mixture(rng, n)
    res = sinkhorn(x, y, eps=eps, method="hierarchical", tol=1e-5)
    assert res.converged
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))
    err, cost = exact_marginal_error(x, y, uniform(n), uniform(n), res.f, res.g, eps)
    assert err <= 1e-4
    assert abs(cost - res.cost) <= 1e-5 * cost


@given(
    n=st.integers(1, 60),
    m=st.integers(1, 60),
    d=st.integers(1, 3),
    eps=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**31),
)
def test_rust_matches_xp_reference(n, m, d, eps, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = rng.random(n) + 0.05, rng.random(m) + 0.05
    a, b = a / a.sum(), b / b.sum()
    ref = sinkhorn(x, y, a, b, eps=eps, backend="numpy", tol=1e-9)
    for method in ("dense", "hierarchical"):
        res = sinkhorn(x, y, a, b, eps=eps, backend="rust", method=method, tol=1e-9)
        assert res.n_iter == ref.n_iter or abs(res.n_iter - ref.n_iter) <= 1
        assert abs(res.cost - ref.cost) <= 1e-7 * max(ref.cost, 1e-12) + 1e-14
        assert abs(res.dual - ref.dual) <= 1e-7 * max(abs(ref.dual), 1e-12) + 1e-14
        err, _ = exact_marginal_error(x, y, a, b, res.f, res.g, eps)
        assert err <= 1e-7


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_overrelaxation_needs_fewer_iterations_for_the_same_solution(backend):
    rng = np.random.default_rng(3)
    n = 400
    x, y = mixture(rng, n), mixture(rng, n)
    kw = dict(eps=0.01, tol=1e-7, method="dense", backend=backend)
    plain = sinkhorn(x, y, overrelaxation=False, **kw)
    fast = sinkhorn(x, y, **kw)
    assert plain.converged and fast.converged
    # measured 3.5x at eps = 0.01 on mixtures (n = 2000: 198 -> 56 iterations)
    assert fast.n_iter * 2 <= plain.n_iter, (fast.n_iter, plain.n_iter)
    assert abs(fast.cost - plain.cost) <= 1e-6 * plain.cost
    # the reported error is that of the returned potentials, both marginals counted
    err, _ = exact_marginal_error(x, y, uniform(n), uniform(n), fast.f, fast.g, 0.01)
    assert abs(err - fast.marginal_error) <= 0.1 * fast.marginal_error + 1e-12
    assert err <= 1e-7


def test_overrelaxation_must_be_bool():
    with pytest.raises(TypeError, match="overrelaxation"):
        sinkhorn(np.zeros((2, 1)), np.ones((2, 1)), eps=0.1, overrelaxation="yes")


def test_nonuniform_weights_n_ne_m_and_zeros(rng):
    x, y = rng.random((80, 2)), rng.random((130, 2))
    a = rng.random(80)
    a[::7] = 0.0  # zero-weight points are allowed
    a /= a.sum()
    b = rng.random(130) ** 3
    b /= b.sum()
    res = sinkhorn(x, y, a, b, eps=0.02, method="hierarchical", tol=1e-8)
    err, cost = exact_marginal_error(x, y, a, b, res.f, res.g, 0.02)
    assert res.converged and err <= 1e-7
    with np.errstate(divide="ignore"):  # POT takes log(a) of the zero weights
        ref = ot.sinkhorn(a, b, ot.dist(x, y), 0.02, method="sinkhorn_log", stopThr=1e-12, numItermax=100000)
    assert abs(res.cost - float((ref * ot.dist(x, y)).sum())) <= 1e-6 * res.cost


def test_duplicate_points(rng):
    x = np.repeat(rng.random((10, 2)), 30, axis=0)  # 300 points, 10 distinct
    y = rng.random((200, 2))
    d = sinkhorn(x, y, eps=0.01, method="dense")
    h = sinkhorn(x, y, eps=0.01, method="hierarchical")
    assert abs(d.cost - h.cost) <= 1e-6 * d.cost
    # planted: translating y by t adds |t|^2 to the cost (the linear terms go into the potentials)
    t = np.array([0.3, -0.1])
    same = sinkhorn(x, x, eps=0.05, method="hierarchical", tol=1e-7)
    moved = sinkhorn(x, x + t, eps=0.05, method="hierarchical", tol=1e-7)
    assert same.converged and moved.converged
    assert abs(moved.cost - same.cost - t @ t) <= 1e-6


def test_deterministic_across_threads(rng):
    x, y = mixture(rng, 3000), mixture(rng, 3000)
    one = sinkhorn(x, y, eps=0.05, method="hierarchical", n_threads=1, tol=1e-4)
    two = sinkhorn(x, y, eps=0.05, method="hierarchical", n_threads=2, tol=1e-4)
    assert one.n_iter == two.n_iter and one.cost == two.cost
    np.testing.assert_array_equal(one.f, two.f)


def test_eps_scaling_off_and_ratios(rng):
    x, y = rng.random((200, 2)), rng.random((200, 2))
    costs = [sinkhorn(x, y, eps=0.01, eps_scaling=s, tol=1e-8).cost for s in (None, False, 0.7)]
    assert np.ptp(costs) <= 1e-6 * costs[0]


# --------------------------------------------------------------------------- dtypes, backends


def test_dtypes_and_result_type(rng):
    x = rng.random((60, 2)).astype(np.float32)
    y = rng.random((50, 2)).astype(np.float32)
    res = sinkhorn(x, y, eps=0.05)
    assert isinstance(res, SinkhornResult)
    assert res.f.dtype == np.float32 and res.g.dtype == np.float32
    r64 = sinkhorn(x.astype(np.float64), y.astype(np.float64), eps=0.05)
    # computed in float64 internally, returned in the input's dtype (issue 16, item 6): the float32
    # cost is the float64 one rounded once
    assert type(res.cost) is np.float32 and type(r64.cost) is np.float64
    assert res.cost == np.float32(r64.cost) and abs(float(res.cost) - r64.cost) <= 1e-7 * r64.cost
    xi = rng.integers(0, 10, (40, 3))
    yi = rng.integers(0, 10, (30, 3))
    ri = sinkhorn(xi, yi, eps=5.0)
    assert ri.f.dtype == np.float64 and ri.converged


def test_array_api_strict_path(rng):
    xps = pytest.importorskip("array_api_strict")
    x, y = rng.random((40, 2)), rng.random((30, 2))
    ref = sinkhorn(x, y, eps=0.05, backend="numpy")
    res = sinkhorn(xps.asarray(x), xps.asarray(y), eps=0.05)
    assert abs(res.cost - ref.cost) <= 1e-12 * ref.cost
    assert isinstance(res.f, type(xps.asarray(x)[:, 0]))
    K = GaussianKernel(xps.asarray(x), xps.asarray(y), 0.05, method="dense")
    out = K.log_matvec(xps.asarray(np.zeros(30)))
    expected = GaussianKernel(x, y, 0.05, method="dense").log_matvec(np.zeros(30))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="hierarchical"):
        sinkhorn(xps.asarray(x), xps.asarray(y), eps=0.05, method="hierarchical")


def test_inputs_not_modified_readonly_noncontiguous(rng):
    x = rng.random((100, 4))[:, ::2]  # non-contiguous
    y = rng.random((90, 2))
    y.setflags(write=False)
    a = uniform(100)
    x0, y0, a0 = x.copy(), y.copy(), a.copy()
    res = sinkhorn(x, y, a, eps=0.05, method="hierarchical")
    assert res.converged
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(a, a0)


def test_callback_verbose_and_convergence_warning(rng, caplog):
    x, y = rng.random((100, 2)), rng.random((100, 2))
    seen = []

    def stop_at_5(state, err):
        seen.append((state["n_iter"], err))
        return state["n_iter"] >= 5

    res = sinkhorn(x, y, eps=0.01, callback=stop_at_5, eps_scaling=False)
    assert res.n_iter == 5 and [s[0] for s in seen] == [1, 2, 3, 4, 5] and not res.converged
    res_np = sinkhorn(x, y, eps=0.01, callback=stop_at_5, eps_scaling=False, backend="numpy")
    assert res_np.n_iter == 5

    def boom(state, err):
        raise KeyError("from callback")

    with pytest.raises(KeyError, match="from callback"):
        sinkhorn(x, y, eps=0.01, callback=boom)
    with pytest.warns(ConvergenceWarning, match="n_iter_max"):
        sinkhorn(x, y, eps=0.001, n_iter_max=3)
    with caplog.at_level(logging.INFO, logger="lorainne"):
        sinkhorn(x, y, eps=0.05, verbose=1)
    assert any("sinkhorn" in r.message for r in caplog.records)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"eps": 0.1, "method": "fast"}, ValueError, "method"),
        ({"eps": 0.1, "tol": 0.0}, ValueError, "tol"),
        ({"eps": 0.1, "n_iter_max": 0}, ValueError, "n_iter_max"),
        ({"eps": 0.1, "eps_scaling": 1.5}, ValueError, "eps_scaling"),
        ({"eps": 0.1, "kernel_tol": 2.0}, ValueError, "kernel_tol"),
        ({"eps": 0.1, "n_threads": 0}, ValueError, "n_threads"),
        ({"eps": 0.1, "backend": "gpu"}, ValueError, "backend"),
        ({"eps": 0.1, "callback": 3}, TypeError, "callback"),
    ],
)
def test_bad_options(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sinkhorn(rng.random((5, 2)), rng.random((6, 2)), **kwargs)


def test_bad_inputs(rng):
    x, y = rng.random((5, 2)), rng.random((6, 2))
    with pytest.raises(ValueError, match="same dimension"):
        sinkhorn(x, rng.random((6, 3)), eps=0.1)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        sinkhorn(bad, y, eps=0.1)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        sinkhorn(y, bad, eps=0.1)
    with pytest.raises(ValueError, match="empty"):
        sinkhorn(np.zeros((0, 2)), y, eps=0.1)
    with pytest.raises(ValueError, match="2-D"):
        sinkhorn(np.zeros((3, 2, 2)), y, eps=0.1)
    with pytest.raises(TypeError, match="complex"):
        sinkhorn(x.astype(complex), y, eps=0.1)
    with pytest.raises(TypeError, match="float16"):
        sinkhorn(x.astype(np.float16), y, eps=0.1)
    with pytest.raises(ValueError, match="negative"):
        sinkhorn(x, y, np.array([0.5, 0.5, 0.5, -0.5, 0.0]), eps=0.1)
    with pytest.raises(ValueError, match="equal sums"):
        sinkhorn(x, y, np.full(5, 0.3), eps=0.1)
    with pytest.raises(ValueError, match="5 entries"):
        sinkhorn(x, y, uniform(4), eps=0.1)
    with pytest.raises(ValueError, match="b contains NaN"):
        sinkhorn(x, y, None, np.full(6, np.nan), eps=0.1)
    with pytest.raises(ValueError, match="sums to 0"):
        sinkhorn(x, y, np.zeros(5), np.zeros(6), eps=0.1)


# --------------------------------------------------------------------------- the kernel operator


def dense_log_matvec(x, y, log_v, eps):
    Z = log_v[None, :] - sq_dists(x, y) / eps
    m = Z.max(1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(Z - m).sum(1, keepdims=True)))[:, 0]


@given(
    n=st.integers(1, 400),
    m=st.integers(1, 400),
    d=st.integers(1, 3),
    eps=st.floats(0.002, 0.2),
    decades=st.floats(0.0, 20.0),
    tol=st.sampled_from([1e-4, 1e-6, 1e-8]),
    seed=st.integers(0, 2**31),
)
def test_log_matvec_matches_dense(n, m, d, eps, decades, tol, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = rng.random((m, d)) * 1.2 - 0.1
    log_v = rng.uniform(-decades * np.log(10), 0.0, m)
    K = GaussianKernel(x, y, eps, tol=tol, leaf_size=int(rng.integers(4, 40)))
    exact = dense_log_matvec(x, y, log_v, eps)
    assert np.max(np.abs(K.log_matvec(log_v) - exact)) <= tol
    log_u = rng.uniform(-decades * np.log(10), 0.0, n)
    assert np.max(np.abs(K.log_rmatvec(log_u) - dense_log_matvec(y, x, log_u, eps))) <= tol
    v = np.exp(log_v)
    v[rng.random(m) < 0.2] = 0.0  # zeros are fine (log 0 = -inf)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where a row's whole v is 0
        rel = K.matvec(v) / np.exp(dense_log_matvec(x, y, np.log(v), eps)) - 1
    assert np.all(np.isnan(rel) | (np.abs(rel) <= 2 * tol))


def test_kernel_far_field_and_memory_at_scale(rng):
    """n = 20000: far-field blocks are used, memory is O(n), entries match the dense kernel."""
    n, eps, tol = 20000, 0.01, 1e-6
    x, y = rng.random((n, 2)), rng.random((n, 2))
    K = GaussianKernel(x, y, eps, tol=tol)
    log_v = rng.uniform(-46.0, 0.0, n)  # 20 decades
    out = K.log_matvec(log_v)
    rows = rng.choice(n, 200, replace=False)
    exact = dense_log_matvec(x[rows], y, log_v, eps)
    assert np.max(np.abs(out[rows] - exact)) <= tol
    stats = K.stats()
    assert stats["far_blocks"] > 0 and stats["max_order"] >= 2
    assert stats["memory_bytes"] <= 100 * 8 * 2 * n  # O(n); the dense kernel is 3.2 GB
    assert stats["near_entries"] + stats["far_terms"] < n * n / 2  # dense: n^2 exps


def test_kernel_validation(rng):
    x, y = rng.random((10, 2)), rng.random((8, 2))
    K = GaussianKernel(x, y, 0.1)
    assert "GaussianKernel" in repr(K) and K.shape == (10, 8)
    with pytest.raises(ValueError, match="nonnegative"):
        K.matvec(-np.ones(8))
    with pytest.raises(ValueError, match="8 entries"):
        K.matvec(np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        K.log_matvec(np.full(8, np.nan))
    with pytest.raises(ValueError, match="eps"):
        GaussianKernel(x, y, 0.0)
    with pytest.raises(ValueError, match="method"):
        GaussianKernel(x, y, 0.1, method="fmm")
    with pytest.raises(ValueError, match="same dimension"):
        GaussianKernel(x, rng.random((8, 3)), 0.1)
    with pytest.raises(ValueError, match="leaf_size"):
        GaussianKernel(x, y, 0.1, leaf_size=0)
    dense = GaussianKernel(x, y, 0.1, method="dense")
    np.testing.assert_allclose(dense.rmatvec(np.ones(10)), K.rmatvec(np.ones(10)), rtol=1e-6)
    assert dense.stats()["memory_bytes"] == 8 * 80
    assert np.all(K.log_matvec(np.full(8, -np.inf)) == -np.inf)


# --------------------------------------------------------------------------- real data


def test_iris_classes(rng):
    datasets = pytest.importorskip("sklearn.datasets")
    X, labels = datasets.load_iris(return_X_y=True)
    x, y = X[labels == 1], X[labels == 2]  # versicolor vs virginica, 50 x 4 each
    exact = ot.emd2(uniform(50), uniform(50), ot.dist(x, y))
    eps = 0.01 * exact
    d = sinkhorn(x, y, eps=eps, method="dense", tol=1e-8)
    h = sinkhorn(x, y, eps=eps, method="hierarchical", tol=1e-8)
    assert abs(d.cost - h.cost) <= 1e-7 * d.cost
    assert 0 <= d.cost - exact <= eps * np.log(50)


def test_digits_integer_features():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    X = digits.data.astype(np.int64)  # integer pixel intensities 0..16, 64-D
    x, y = X[digits.target == 3], X[digits.target == 8]
    exact = ot.emd2(uniform(len(x)), uniform(len(y)), ot.dist(x.astype(float), y.astype(float)))
    eps = 0.05 * exact
    h = sinkhorn(x, y, eps=eps, method="hierarchical", tol=1e-7)  # d = 64: works, little to gain
    d = sinkhorn(x, y, eps=eps, method="dense", tol=1e-7)
    assert h.f.dtype == np.float64 and h.converged
    assert abs(d.cost - h.cost) <= 1e-6 * d.cost
    assert 0 <= d.cost - exact <= eps * np.log(len(x))


def test_public_api():
    assert {"sinkhorn", "GaussianKernel", "SinkhornResult"} <= set(lorainne.__all__)
    assert lorainne.__all__ == sorted(lorainne.__all__)


# --------------------------------------------------------------------------- command line


def test_cli_ot(tmp_path, capsys, rng):
    from lorainne.cli import main

    x, y = rng.random((300, 2)), rng.random((250, 2)) + 0.2
    b = rng.random(250)
    b /= b.sum()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "out.npz"
    code = main(
        [
            "ot",
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
            "--eps",
            "0.01",
            "--b",
            str(tmp_path / "b.npy"),
            "-o",
            str(out),
            "-q",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "converged" in text and "marginal error" in text and "peak memory" in text
    expected = sinkhorn(x, y, None, b, eps=0.01)
    with np.load(out) as saved:
        assert abs(float(saved["cost"]) - expected.cost) <= 1e-12 * expected.cost
        np.testing.assert_array_equal(saved["f"], expected.f)
    assert main(["ot", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--eps", "-1", "-q"]) == 2
    assert "eps must be a positive" in capsys.readouterr().err


def test_demo_rows():
    from lorainne._demo import SECTIONS, ot_rows

    assert ot_rows in SECTIONS


@pytest.mark.gpu
def test_cupy_dense_path(rng):
    cupy = pytest.importorskip("cupy")
    x, y = rng.random((300, 2)), rng.random((200, 2))
    ref = sinkhorn(x, y, eps=0.02)
    res = sinkhorn(cupy.asarray(x), cupy.asarray(y), eps=0.02)
    assert isinstance(res.f, cupy.ndarray)
    assert abs(res.cost - ref.cost) <= 1e-9 * ref.cost
    K = GaussianKernel(cupy.asarray(x), cupy.asarray(y), 0.02, method="dense")
    np.testing.assert_allclose(
        cupy.asnumpy(K.log_matvec(cupy.zeros(200))), GaussianKernel(x, y, 0.02).log_matvec(np.zeros(200)), atol=1e-6
    )


def test_result_unpacks_as_seven_fields_and_keeps_its_problem():
    rng = np.random.default_rng(3)
    x, y = rng.random((40, 2)), rng.random((30, 2))
    a = rng.random(40) + 0.1
    b = rng.random(30) + 0.1
    b *= a.sum() / b.sum()
    res = sinkhorn(x, y, a, b, eps=0.05, method="dense")
    cost, dual, f, g, n_iter, err, converged = res
    problem = res.problem
    assert problem.x is x and problem.y is y
    np.testing.assert_array_equal(problem.a, a)
    np.testing.assert_array_equal(problem.b, b)
    assert (problem.eps, problem.method, problem.backend) == (0.05, "dense", "rust")
    assert "x of shape (40, 2)" in repr(problem)
    assert res._replace(cost=0.0).problem is None
