"""Matrix completion by alternating minimization: planted recovery (CG and exact row solves), the
Rust kernel against the NumPy reference, real data (scikit-learn's bundled digits), bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import ConvergenceWarning, _core
from lorainne.completion import CompletionState, complete
from lorainne.completion._reference import observed_error_reference, solve_rows_reference


def _planted(m=300, n=200, k=5, frac=0.15, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    mask = rng.random((m, n)) < frac
    return M, mask


def _rel(res, M):
    return np.linalg.norm(res.to_dense() - M) / np.linalg.norm(M)


def test_planted_recovery_both_solvers():
    M, mask = _planted()
    M_before = M.copy()
    errs = {}
    for solver in ("cg", "exact"):
        res = complete(M, 5, mask=mask, solver=solver, n_iter_max=30, tol=1e-9, random_state=0)
        errs[solver] = _rel(res, M)
        assert errs[solver] <= 1e-6, (solver, errs[solver])
        assert res.n_iter <= 30
        assert res.errors[-1] < res.errors[0]
    assert errs["cg"] <= 2 * errs["exact"]
    np.testing.assert_array_equal(M, M_before)


def test_input_forms_agree_and_float32():
    M, mask = _planted(60, 40, 3, 0.4, seed=1)
    rows, cols = np.nonzero(mask)
    S = sp.csr_matrix((M[rows, cols], (rows, cols)), shape=M.shape)
    Mnan = np.where(mask, M, np.nan)
    kw = {"n_iter_max": 60, "tol": 1e-9, "random_state": 3}
    ref = complete(S, 3, **kw).to_dense()
    for arg, extra in (((rows, cols, M[rows, cols]), {"shape": M.shape}), (M, {"mask": mask}), (Mnan, {})):
        np.testing.assert_allclose(complete(arg, 3, **extra, **kw).to_dense(), ref, atol=1e-7)
    res32 = complete(S.astype(np.float32), 3, **kw)
    assert res32.U.dtype == np.float32 and res32.V.dtype == np.float32
    assert _rel(res32, M) < 1e-5


def test_rust_matches_numpy_backend_end_to_end():
    M, mask = _planted(50, 40, 2, 0.4, seed=2)
    for solver in ("cg", "exact"):
        with pytest.warns(ConvergenceWarning):
            a = complete(M, 2, mask=mask, solver=solver, n_iter_max=5, tol=0.0, random_state=1, backend="rust")
        with pytest.warns(ConvergenceWarning):
            b = complete(M, 2, mask=mask, solver=solver, n_iter_max=5, tol=0.0, random_state=1, backend="numpy")
        np.testing.assert_allclose(a.errors, b.errors, rtol=1e-7, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    k=st.sampled_from([1, 2, 3, 4, 5, 8, 13, 33, 40, 41]),  # 41: above the fixed-size kernels (rank <= 40)
    density=st.floats(0.0, 1.0),
    reg=st.sampled_from([0.0, 1e-3, 0.5]),
    solver=st.sampled_from(["cg", "exact"]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference(m, n, k, density, reg, solver, seed):
    rng = np.random.default_rng(seed)
    S = sp.random(m, n, density=density, format="csr", random_state=rng)
    S.sort_indices()
    indptr, indices = S.indptr.astype(np.int64), S.indices.astype(np.int64)
    data = np.ascontiguousarray(S.data, dtype=np.float64)
    F = rng.standard_normal((n, k))
    x0 = rng.standard_normal((m, k))
    lam, q = np.linalg.eigh(F.T @ F / n)
    lam = np.maximum(lam, 0.0)
    args = (indptr, indices, data, F, x0, reg, 0.1, solver, k, 1e-12, np.ascontiguousarray(q), lam)
    x_rust, it_r, under_r, empty_r, sq_r = _core.completion_solve_rows(*args, n_threads=2, residual=True)
    x_ref, it_p, under_p, empty_p, _ = solve_rows_reference(*args, residual=True)
    assert (under_r, empty_r) == (under_p, empty_p)
    # CG stopped by its cap (k steps) before converging, e.g. with a singular preconditioner when
    # n < k, amplifies rounding differences: the kernel may then be as far from the reference as the
    # reference is from the exact solve, no farther.
    exact = solve_rows_reference(*args[:7], "exact", *args[8:])[0]
    unconverged = 2 * np.abs(x_ref - exact).max() if solver == "cg" else 0.0
    np.testing.assert_allclose(x_rust, x_ref, rtol=1e-6, atol=1e-8 * (1 + np.abs(x_ref).max()) + unconverged)
    if solver == "exact":
        assert it_r == it_p == 0
    err = _core.completion_observed_error(indptr, indices, data, x_rust, F)
    assert err == pytest.approx(observed_error_reference(indptr, indices, data, x_rust, F), rel=1e-9, abs=1e-12)
    assert sq_r == pytest.approx(err, rel=1e-9, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    w=st.sampled_from([1, 3, 4, 5, 20, 30, 32, 33, 47]),
    density=st.floats(0.0, 1.0),
    threads=st.sampled_from([1, 2]),
    low=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_csr_product_matches_scipy(m, n, w, density, threads, low, seed):
    rng = np.random.default_rng(seed)
    S = sp.random(m, n, density=density, format="csr", random_state=rng)
    X = rng.standard_normal((n, w))
    X_in = X.copy()
    Y = _core.completion_csr_product(
        S.indptr.astype(np.int64), S.indices.astype(np.int64), S.data, X, n_threads=threads, low_precision=low
    )
    np.testing.assert_array_equal(X, X_in)
    # low precision: the product with X rounded to float32, summed in float64
    X_used = X.astype(np.float32).astype(np.float64) if low else X
    np.testing.assert_allclose(Y, S @ X_used, rtol=1e-12, atol=1e-12 * (1 + np.abs(X).sum()))
    if low and S.nnz:
        assert np.abs(Y - S @ X).max() > 0  # the f32 copy was used
    St = S.T.tocsr()
    Yt = _core.completion_csr_product(St.indptr.astype(np.int64), St.indices.astype(np.int64), St.data, Y)
    np.testing.assert_allclose(Yt, S.T @ Y, rtol=1e-12, atol=1e-12 * (1 + np.abs(Y).sum()))


def test_csr_product_rejects_bad_structure():
    with pytest.raises(ValueError, match="indices"):
        _core.completion_csr_product(
            np.array([0, 1], dtype=np.int64), np.array([7], dtype=np.int64), np.array([1.0]), np.ones((3, 2))
        )


def test_coherent_matrix_and_sparse_rows_do_not_crash():
    rng = np.random.default_rng(4)
    m, n, k = 120, 80, 4
    M = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    M[0, 0] += 500.0  # a spiky, coherent component
    mask = rng.random((m, n)) < 0.3
    mask[1] = False
    mask[1, :2] = True  # fewer than k observations
    mask[2] = False  # none
    mask[:, 3] = False
    mask[5, 3] = True
    res = complete(M, k, mask=mask, n_iter_max=10, tol=1e-3, random_state=0)
    assert np.all(np.isfinite(res.U)) and np.all(np.isfinite(res.V))
    assert res.underdetermined_rows == 1 and res.underdetermined_cols == 1
    assert np.all(res.U[2] == 0)


def test_digits_heldout_beats_row_means():
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float64)  # 1797 images as rows, 64 pixels as columns
    rng = np.random.default_rng(0)
    mask = rng.random(X.shape) < 0.3
    mask[:, X.std(axis=0) == 0] = True  # constant border pixels are observed (nothing to learn)
    rows, cols = np.nonzero(~mask)
    rmse_curve = []

    def on_iter(state: CompletionState, rel_error: float) -> bool:
        rmse_curve.append(np.sqrt(np.mean((state.predict(rows, cols) - X[rows, cols]) ** 2)))
        return False

    res = complete(X, 8, mask=mask, reg=20.0, n_iter_max=15, tol=1e-4, callback=on_iter, random_state=0)
    rmse = np.sqrt(np.mean((res.predict(rows, cols) - X[rows, cols]) ** 2))
    obs = np.where(mask, X, np.nan)
    row_mean = np.nanmean(obs, axis=1)
    rmse_mean = np.sqrt(np.mean((row_mean[rows] - X[rows, cols]) ** 2))
    assert rmse_curve[-1] == pytest.approx(rmse)
    assert rmse < 0.8 * rmse_mean, (rmse, rmse_mean)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda M, k: complete(M, 30, mask=k), ValueError, "rank"),
        (lambda M, k: complete(M, 0, mask=k), ValueError, "rank"),
        (lambda M, k: complete(M, 2, mask=np.zeros_like(k)), ValueError, "M_observed"),
        (lambda M, k: complete(sp.csr_matrix(M.shape), 2), ValueError, "M_observed"),
        (lambda M, k: complete(np.where(k, np.nan, M), 2, mask=k), ValueError, "M_observed"),
        (lambda M, k: complete(M, 2, mask=k[:-1]), ValueError, "mask"),
        (lambda M, k: complete(M, 2, mask=k.astype(int)), TypeError, "mask"),
        (lambda M, k: complete(M.tolist(), 2), TypeError, "M_observed"),
        (lambda M, k: complete(M.astype(complex), 2, mask=k), TypeError, "M_observed"),
        (lambda M, k: complete(([0, 0], [1, 1], [1.0, 2.0]), 1, shape=(3, 3)), ValueError, "duplicate"),
        (lambda M, k: complete(([0, 5], [1, 1], [1.0, 2.0]), 1, shape=(3, 3)), ValueError, "outside"),
        (lambda M, k: complete(M, 2, mask=k, solver="lu"), ValueError, "solver"),
        (lambda M, k: complete(M, 2, mask=k, reg=-1.0), ValueError, "reg"),
        (lambda M, k: complete(M, 2, mask=k, tol=1.5), ValueError, "tol"),
        (lambda M, k: complete(M, 2, mask=k, n_threads=0), ValueError, "n_threads"),
        (lambda M, k: complete(M, 2, mask=k, init="svd"), ValueError, "init"),
    ],
)
def test_bad_input(call, exc, match):
    M, mask = _planted(30, 20, 2, 0.5)
    with pytest.raises(exc, match=match):
        call(M, mask)


def test_kernel_rejects_bad_structure():
    F = np.ones((3, 2))
    with pytest.raises(ValueError, match="indices"):
        _core.completion_solve_rows(
            np.array([0, 1], dtype=np.int64), np.array([7], dtype=np.int64), np.array([1.0]), F, np.zeros((1, 2)),
            0.0, 0.0, "exact", 2, 1e-8, np.eye(2), np.ones(2),
        )  # fmt: skip


def test_canonical_csr_fast_path_matches_coordinates():
    from lorainne.completion._observed import _from_coords, as_observed

    S = sp.random(50, 40, density=0.3, format="csr", random_state=np.random.default_rng(0))
    a, c = as_observed(S), S.tocoo()
    b = _from_coords(c.row, c.col, c.data, S.shape, "M_observed")
    for field in ("indptr", "indices", "data", "t_indptr", "t_indices", "t_data"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    S.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        complete(S, 2)


def test_relaxation_schedule_falls_back_to_plain_altmin():
    from lorainne.completion._xp import CG_TOL_FIRST, OVER_RELAXATION, cg_tolerance, relaxation

    assert cg_tolerance([]) == CG_TOL_FIRST
    assert cg_tolerance([0.5]) == pytest.approx(0.05)
    assert relaxation([]) == relaxation([0.2]) == 1.0  # no contraction measured yet
    assert relaxation([0.2, 0.05]) == OVER_RELAXATION  # the error quartered: linear regime
    assert relaxation([0.2, 0.15]) == 1.0  # slow progress (noise, misspecification): plain AltMin


@pytest.mark.parametrize("noise", [0.0, 1e-2, 0.1])
@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_observed_error_never_increases(noise, solver):
    # the stopping rule reads an increase as convergence: the over-relaxed steps must not cause one
    rng = np.random.default_rng(3)
    M = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 200))
    mask = rng.random(M.shape) < 0.15
    res = complete(M + noise * rng.standard_normal(M.shape), 5, mask=mask, solver=solver, tol=1e-10, random_state=3)
    errors = np.array(res.errors)
    assert np.all(errors[1:] <= errors[:-1]), errors
    assert np.linalg.norm(res.to_dense() - M) / np.linalg.norm(M) < max(1e-8, 2 * noise)
