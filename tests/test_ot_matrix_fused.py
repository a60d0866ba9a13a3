"""``method="matrix"``'s iteration in one read of the stored kernel (rows y, columns x): the fused
pass against two separate products of the NumPy reference and the exact log-sum-exp (hypothesis),
and ``method="auto"``'s choice of the stored kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from lorainne import sinkhorn
from lorainne._backend import core
from lorainne.ot import _solve
from lorainne.ot._xp import _stored_apply_xp, _stored_kernel_xp


def exact_log_sums(t, s, w, pot, eps):
    C = ((t[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    return logsumexp((pot[None, :] - C) / eps, b=w[None, :], axis=1)


def row_error(a, f, f_plain, eps):
    return float(np.sum(a * np.abs(np.expm1((f - f_plain) / eps))))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 4),
    eps=st.floats(0.005, 1.0),
    drift=st.floats(0.0, 10.0),
    omega=st.sampled_from([1.0, 1.6]),
    damping=st.sampled_from([1.0, 0.7]),
    shift_off=st.floats(-20.0, 20.0),
    seed=st.integers(0, 2**31),
)
def test_fused_pass_equals_two_products(n, m, d, eps, drift, omega, damping, shift_off, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = rng.random(n) + 0.05, rng.random(m) + 0.05
    f_hat = rng.standard_normal(n) * 0.1
    # the kernel with y as rows, absorbed at f_hat; f and g up to `drift` eps from the absorbed pair
    K, r, c, log_rows = _stored_kernel_xp(y, x, a, f_hat, eps)
    f = f_hat + drift * eps * rng.random(n)
    g = -eps * log_rows + drift * eps * rng.random(m)
    args = (x, y, a, b, f_hat, f, g, eps)
    (rows, rb), g_next, (cols, cb) = core().stored_kernel_fused(*args, omega=omega, damping=damping, n_threads=1)
    # the reference: two separate products, the relaxed g in between
    rows_xp, rb_xp = _stored_apply_xp(K, r, c, a, f, eps, transpose=False)
    g_ref = g + omega * (-eps * damping * rows_xp - g)
    cols_xp, cb_xp = _stored_apply_xp(K, c, r, b, g_ref, eps, transpose=True)
    assert np.isclose(rb, rb_xp, rtol=1e-6) and np.isclose(cb, cb_xp, rtol=1e-6), (rb, rb_xp, cb, cb_xp)
    if not (np.isfinite(rb) and np.isfinite(cb)):  # a flushed target: reported, not hidden
        return
    scale = 1.0 + np.abs(rows_xp)
    assert np.all(np.abs(rows - rows_xp) <= 1e-12 * scale)
    assert np.all(np.abs(g_next - g_ref) <= 1e-12 * eps * (1.0 + np.abs(g_ref / eps)))
    assert np.all(np.abs(cols - cols_xp) <= 1e-11 * (1.0 + np.abs(cols_xp)))
    # both within the run-time bound of the exact sums
    assert np.all(np.abs(rows - exact_log_sums(y, x, a, f, eps)) <= rb + 1e-12 * scale)
    want = exact_log_sums(x, y, b, g_next, eps)
    assert np.all(np.abs(cols - want) <= cb + 1e-12 * (1.0 + np.abs(want)))
    # the marginal error of (f, g_next) read off the pass is the one of the two products
    f_plain, f_plain_xp = -eps * cols, -eps * cols_xp
    err, err_xp = row_error(a, f, f_plain, eps), row_error(a, f, f_plain_xp, eps)
    assert abs(err - err_xp) <= 1e-10 * (1.0 + err_xp)
    # the scaling's shift changes nothing but the rounding
    top = float(np.max(g_next / eps - r))
    (rows2, rb2), g2, (cols2, cb2) = core().stored_kernel_fused(
        *args, omega=omega, damping=damping, shift=top + shift_off, n_threads=1
    )
    assert np.array_equal(rows2, rows) and np.array_equal(g2, g_next) and rb2 == rb
    assert np.allclose(cols2, cols, rtol=0, atol=1e-12 * (1.0 + np.max(np.abs(cols))))
    assert np.isclose(cb2, cb, rtol=1e-9)


def test_fused_pass_does_not_depend_on_threads(rng):
    n, m, d, eps = 700, 650, 3, 0.02
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    f_hat = 0.01 * rng.standard_normal(n)
    f, g = f_hat + 0.05 * rng.random(n), 0.01 * rng.standard_normal(m)
    one = core().stored_kernel_fused(x, y, a, b, f_hat, f, g, eps, n_threads=1)
    two = core().stored_kernel_fused(x, y, a, b, f_hat, f, g, eps, n_threads=2)
    for p, q in zip((one[0][0], one[1], one[2][0]), (two[0][0], two[1], two[2][0]), strict=True):
        assert np.array_equal(p, q)


def test_fused_pass_refuses_bad_input(rng):
    x, y = rng.random((5, 2)), rng.random((4, 2))
    a, b, f, g = np.full(5, 0.2), np.full(4, 0.25), np.zeros(5), np.zeros(4)
    with pytest.raises(ValueError, match="omega must be in"):
        core().stored_kernel_fused(x, y, a, b, f, f, g, 0.1, omega=2.5)
    with pytest.raises(ValueError, match="expected a, f_hat, f of length 5"):
        core().stored_kernel_fused(x, y, a, b, f, f[:4], g, 0.1)


@pytest.mark.parametrize("d", [2, 3])
def test_auto_stores_the_kernel_in_3d_within_the_budget(rng, monkeypatch, d):
    n = 400
    x = rng.random((n, d))
    y = 0.5 * rng.random((n, d)) + 0.2
    kw = dict(eps=0.02, tol=1e-6, n_threads=1)
    auto = sinkhorn(x, y, **kw)
    assert auto.problem.method == ("matrix" if d == 3 else "hierarchical")
    ref = sinkhorn(x, y, method="hierarchical", **kw)
    assert auto.converged and ref.converged and auto.marginal_error <= 1e-6
    assert abs(auto.cost - ref.cost) <= 1e-6 * ref.cost, (auto.cost, ref.cost)
    assert abs(auto.dual - ref.dual) <= 1e-6 * abs(ref.dual)
    shift = np.mean(auto.f - ref.f)
    assert np.max(np.abs(auto.f - ref.f - shift)) <= 1e-3 * kw["eps"]
    # the budget: one byte short of the kernel's 4 n m, the tree
    monkeypatch.setattr(_solve, "AUTO_MATRIX_MAX_BYTES", 4 * n * n - 1)
    assert sinkhorn(x, y, **kw).problem.method == "hierarchical"
    monkeypatch.setattr(_solve, "AUTO_MATRIX_MAX_BYTES", 4 * n * n)
    assert sinkhorn(x, y, **kw).problem.method == ("matrix" if d == 3 else "hierarchical")
    # small problems stay dense, array-API input too
    assert sinkhorn(x[:100], y[:100], **kw).problem.method == "dense"


@pytest.mark.parametrize("reach", [0.5, (None, 0.3)])
def test_matrix_multiscale_unbalanced_as_hierarchical(rng, reach):
    # n, m >= 2000: coarse stages on small stored kernels, each stage started from F(g) at its eps
    n = 2000
    x = rng.random((n, 2))
    y = 0.5 * rng.random((n, 2)) + 0.2
    a, b = np.full(n, 1 / n), np.full(n, 1.5 / n)
    kw = dict(eps=0.01, reach=reach, tol=1e-6, n_threads=1)
    hier = sinkhorn(x, y, a, b, method="hierarchical", **kw)
    mat = sinkhorn(x, y, a, b, method="matrix", **kw)
    assert hier.converged and mat.converged
    assert abs(mat.cost - hier.cost) <= 1e-6 * hier.cost, (mat.cost, hier.cost)
    assert abs(mat.dual - hier.dual) <= 1e-6 * abs(hier.dual)
    assert np.max(np.abs(mat.f - hier.f)) <= 1e-5 * kw["eps"] * 100
    # the same schedule: about as many iterations (a poor start of each stage would show here)
    assert mat.n_iter <= hier.n_iter + 10, (mat.n_iter, hier.n_iter)
