"""The array-API path of complete (batched half-steps): under array_api_strict, and against the
Rust kernel with hypothesis."""

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse as sp
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import _core, complete
from lorainne.completion._xp import make_layout, solve_rows_xp


def _planted(m, n, k, frac, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    return M, rng.random((m, n)) < frac


@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_array_api_strict_recovers_planted(solver):
    M, mask = _planted(60, 40, 3, 0.4)
    res = complete(xps.asarray(M), 3, mask=xps.asarray(mask), solver=solver, n_iter_max=40, random_state=0)
    assert array_namespace(res.U) is xps and array_namespace(res.V) is xps
    U, V = np.asarray(res.U), np.asarray(res.V)
    assert np.linalg.norm(U @ V.T - M) / np.linalg.norm(M) < 1e-6
    held = np.nonzero(~mask)
    pred = np.asarray(res.predict(held[0][:20], held[1][:20]))
    np.testing.assert_allclose(pred, M[held][:20], atol=1e-5 * np.abs(M).max())


@pytest.mark.filterwarnings("ignore:complete did not converge")
def test_nan_marks_missing_and_xp_matches_rust_errors():
    M, mask = _planted(50, 30, 2, 0.5, seed=3)
    a = complete(M, 2, mask=mask, n_iter_max=6, tol=0.0, random_state=1)
    Mn = np.where(mask, M, np.nan)
    b = complete(xps.asarray(Mn), 2, n_iter_max=6, tol=0.0, random_state=1)
    c = complete(M, 2, mask=mask, n_iter_max=6, tol=0.0, random_state=1, backend="xp")
    assert isinstance(c.U, np.ndarray)
    # same start, same arithmetic up to rounding (the tolerance can fail: a different CG would not match)
    np.testing.assert_allclose(a.errors, c.errors, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(b.errors, c.errors, rtol=1e-9, atol=1e-14)
    assert a.cg_iterations == c.cg_iterations


def test_xp_bad_input():
    M, mask = _planted(10, 8, 2, 0.5)
    with pytest.raises(ValueError, match="rank"):
        complete(xps.asarray(M), 8, mask=xps.asarray(mask))
    with pytest.raises(ValueError, match="observed"):
        complete(xps.asarray(M), 2, mask=xps.asarray(np.zeros_like(mask)))
    bad = M.copy()
    bad[mask] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        complete(xps.asarray(bad), 2, mask=xps.asarray(mask))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    k=st.integers(1, 5),
    density=st.floats(0.0, 1.0),
    reg=st.sampled_from([0.0, 1e-3, 0.5]),
    solver=st.sampled_from(["cg", "exact"]),
    strict=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_xp_reference(m, n, k, density, reg, solver, strict, seed):
    rng = np.random.default_rng(seed)
    S = sp.random(m, n, density=density, format="csr", random_state=rng)
    S.sort_indices()
    indptr, indices = S.indptr.astype(np.int64), S.indices.astype(np.int64)
    data = np.ascontiguousarray(S.data, dtype=np.float64)
    F = rng.standard_normal((n, k))
    x0 = rng.standard_normal((m, k))
    lam, q = np.linalg.eigh(F.T @ F / n)
    lam = np.maximum(lam, 0.0)
    reg_under = 0.1
    if solver == "exact" and reg == 0.0:
        # a row with k <= count observations on an exactly singular normal matrix: the kernel adds a
        # jitter, the batched solve cannot; random F makes this a measure-zero event, so ridge anyway
        reg = 1e-9
    out_r = _core.completion_solve_rows(
        indptr, indices, data, F, x0, reg, reg_under, solver, k, 1e-12, np.ascontiguousarray(q), lam, residual=True
    )
    xp = xps if strict else array_namespace(np.empty(0))
    args = [xp.asarray(a) for a in (data, F, x0, q, lam)]
    out_x = solve_rows_xp(
        xp, make_layout(indptr, indices), args[0], args[1], args[2], reg, reg_under, solver, k, 1e-12, args[3],
        args[4], residual=True,
    )  # fmt: skip
    x_ref = np.asarray(out_x[0])
    assert out_r[2:4] == out_x[2:4]
    np.testing.assert_allclose(out_r[0], x_ref, rtol=1e-6, atol=1e-8 * (1 + np.abs(x_ref).max()))
    assert out_r[4] == pytest.approx(out_x[4], rel=1e-6, abs=1e-9)
    if solver == "exact":
        assert out_r[1] == out_x[1] == 0
    else:
        assert abs(out_r[1] - out_x[1]) <= max(2, m)  # a row at its tolerance may take one step more
