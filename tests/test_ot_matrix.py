"""``sinkhorn(method="matrix")``: the stored float32 stabilized kernel. One application against
the xp reference and the exact log-sum-exp (hypothesis), whole solves against ``method="dense"``
and ``"hierarchical"``, and the refusals.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from lorainne import sinkhorn, sinkhorn_divergence
from lorainne._backend import core
from lorainne.ot._xp import _stored_apply_xp, _stored_kernel_xp


def exact_log_sums(t, s, w, pot, eps):
    C = ((t[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    return logsumexp((pot[None, :] - C) / eps, b=w[None, :], axis=1)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    m=st.integers(1, 30),
    d=st.integers(1, 4),
    eps=st.floats(0.005, 1.0),
    drift=st.floats(0.0, 15.0),
    seed=st.integers(0, 2**31),
)
def test_stored_application_matches_xp_reference_and_exact_sums(n, m, d, eps, drift, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = rng.random(n) + 0.05, rng.random(m) + 0.05
    g_hat = rng.standard_normal(m) * 0.1
    # potentials up to `drift` eps away from the absorbed ones (f near F(g_hat))
    K, r, c, log_rows = _stored_kernel_xp(x, y, b, g_hat, eps)
    g = g_hat + drift * eps * rng.random(m)
    f = -eps * log_rows + drift * eps * rng.random(n)
    (rows, rb), (cols, cb) = core().stored_kernel_apply(x, y, a, b, g_hat, f, g, eps, n_threads=1)
    rows_xp, rb_xp = _stored_apply_xp(K, r, c, b, g, eps, transpose=False)
    cols_xp, cb_xp = _stored_apply_xp(K, c, r, a, f, eps, transpose=True)
    for got, ref, bound, bound_xp, want in (
        (rows, rows_xp, rb, rb_xp, exact_log_sums(x, y, b, g, eps)),
        (cols, cols_xp, cb, cb_xp, exact_log_sums(y, x, a, f, eps)),
    ):
        assert np.isclose(bound, bound_xp, rtol=1e-3), (bound, bound_xp)
        if eps >= 0.1:  # every entry far above the float32 flush level: rounding alone
            assert bound < 1e-7, bound
        if not np.isfinite(bound):  # a target whose every entry underflowed: reported, not hidden
            continue
        scale = np.maximum(1.0, np.abs(want))
        # the bound, plus the float64 rounding of the log sums themselves
        assert np.all(np.abs(got - want) <= bound + 1e-12 * scale)
        assert np.all(np.abs(ref - want) <= bound_xp + 1e-12 * scale)


@pytest.mark.parametrize(("d", "reach"), [(2, None), (3, None), (2, 0.4)])
def test_matrix_solves_as_dense(rng, d, reach):
    n, m = 300, 260
    x, y = rng.random((n, d)), 0.5 * rng.random((m, d)) + 0.2
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    x0, y0 = x.copy(), y.copy()
    kw = dict(eps=0.01, reach=reach, tol=1e-6, n_threads=1)
    dense = sinkhorn(x, y, a, b, method="dense", **kw)
    mat = sinkhorn(x, y, a, b, method="matrix", **kw)
    assert dense.converged and mat.converged and mat.marginal_error <= 1e-6
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert abs(mat.cost - dense.cost) <= 1e-6 * dense.cost, (mat.cost, dense.cost)
    assert abs(mat.dual - dense.dual) <= 1e-6 * abs(dense.dual)
    # the potentials agree up to the solutions' tolerance (the constant shift of balanced OT aside)
    shift = 0.0 if reach is not None else np.mean(mat.f - dense.f)
    assert np.max(np.abs(mat.f - dense.f - shift)) <= 1e-3 * 0.01
    if reach is None:
        C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        P = a[:, None] * b[None, :] * np.exp((mat.f[:, None] + mat.g[None, :] - C) / 0.01)
        err = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()
        assert err <= 1.1e-6, err


def test_matrix_multiscale_solves_as_hierarchical(rng):
    # n, m >= 2000: the coarse stages run on the hierarchical kernel, the final stage on the matrix
    n = 2000
    x = rng.random((n, 2))
    y = rng.random((3, 2))[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    kw = dict(eps=0.01, tol=1e-6, n_threads=1)
    hier = sinkhorn(x, y, method="hierarchical", **kw)
    mat = sinkhorn(x, y, method="matrix", **kw)
    assert hier.converged and mat.converged and mat.marginal_error <= 1e-6
    assert abs(mat.cost - hier.cost) <= 2e-6 * hier.cost, (mat.cost, hier.cost)
    assert mat.n_iter <= hier.n_iter + 5, (mat.n_iter, hier.n_iter)


def test_matrix_refusals(rng):
    x = rng.random((20, 2))
    with pytest.raises(ValueError, match="not available for the symmetric"):
        sinkhorn_divergence(x, x + 0.1, eps=0.1, method="matrix")
    big, other = np.zeros((40_000, 1)), np.ones((30_000, 1))
    with pytest.raises(ValueError, match=r"n \* m = 1200000000 .*4800000000 bytes"):
        sinkhorn(big, other, eps=0.1, method="matrix")
    array_api_strict = pytest.importorskip("array_api_strict")
    xs = array_api_strict.asarray(x)
    with pytest.raises(ValueError, match="method='matrix' needs the Rust backend"):
        sinkhorn(xs, xs, eps=0.1, method="matrix")
