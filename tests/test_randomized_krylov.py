"""Block Krylov randomized SVD and the self-certifying SVD (svd_certified)."""

from __future__ import annotations

import math

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

from lorainne import ConvergenceWarning, randomized_svd
from lorainne.randomized import CertifiedSVD, chernoff_factor, svd_certified


def planted(rng, m, n, s):
    U, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (U * s) @ V.T


def minimal_rank(s, tol):
    e = np.asarray(s, dtype=float) ** 2
    tails = np.append(np.cumsum(e[::-1])[::-1][1:], 0.0) / e.sum()  # tails[k-1] = sum_{i>=k} e_i / sum
    return int(np.argmax(tails <= tol)) + 1


# --------------------------------------------------------------------------- block Krylov


@pytest.mark.parametrize("decay", [0.5, 1.0])
def test_block_krylov_beats_subspace_at_equal_passes(decay):
    rng = np.random.default_rng(0)
    s = (1.0 + np.arange(200)) ** -decay
    A = planted(rng, 400, 300, s)
    k = 10
    errors = {}
    for method in ("subspace", "block_krylov"):
        U, S, Vt = randomized_svd(A, k, n_power_iter=2, method=method, random_state=1)
        errors[method] = np.linalg.norm(A - (U * S) @ Vt, 2) / s[k]
        assert np.allclose(U.T @ U, np.eye(k), atol=1e-10)
        assert np.all(np.diff(S) <= 0)
    assert errors["block_krylov"] < 1.02
    assert errors["block_krylov"] < errors["subspace"]


def test_block_krylov_exact_low_rank_and_exhausted_space():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((120, 4)) @ rng.standard_normal((4, 90))
    U, S, Vt = randomized_svd(A, 4, n_power_iter=4, method="block_krylov", random_state=0)
    assert np.allclose((U * S) @ Vt, A, atol=1e-10)
    assert np.allclose(S, np.linalg.svd(A, compute_uv=False)[:4])
    # depth that would exceed min(m, n) columns: the basis stops at min(m, n), the answer is exact
    B = rng.standard_normal((50, 30))
    U, S, Vt = randomized_svd(B, 5, n_power_iter=10, method="block_krylov", random_state=0)
    assert np.allclose(S, np.linalg.svd(B, compute_uv=False)[:5])


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["rank one", "one entry", "giant entry", "giant columns", "graded"]),
    shape=st.tuples(st.integers(20, 100), st.integers(10, 70)),
    depth=st.sampled_from([0, 1, 3]),
    backend=st.sampled_from(["auto", "numpy"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_krylov_exhausted_spaces_keep_an_orthonormal_basis(kind, shape, depth, backend, seed):
    """Matrices whose Krylov space runs out, exactly (rank one, one nonzero entry) or in floating point
    (an entry or columns 2**40-2**400 above the rest): each new block is mostly rounding, its QR's
    completion can fall back into the basis. U stays orthonormal and the error near optimal, to rounding.
    Before the repair of such blocks: one entry gave error 1.0 (U^T U - I of 1.0) on both backends."""
    rng = np.random.default_rng(seed)
    m, n = shape
    A = rng.standard_normal((m, n)) * (1.0 + np.arange(n)) ** -1.0
    if kind == "rank one":
        A = np.outer(rng.standard_normal(m), rng.standard_normal(n))
    elif kind == "one entry":
        A = np.zeros((m, n))
        A[rng.integers(m), rng.integers(n)] = 1.0
    elif kind == "giant entry":
        A[rng.integers(m), rng.integers(n)] = 2.0 ** int(rng.integers(40, 400))
    elif kind == "giant columns":
        A[:, :3] *= 1e150
    k = int(rng.integers(1, min(m, n) // 2 + 1))
    U, S, Vt = randomized_svd(A, k, n_power_iter=depth, method="block_krylov", random_state=seed, backend=backend)
    s = np.linalg.svd(A, compute_uv=False)
    eps = np.finfo(np.float64).eps
    assert np.max(np.abs(U.T @ U - np.eye(k))) < 1e-12
    assert S[0] <= s[0] * (1 + 1e-12)
    error = np.linalg.norm(A - (U * S) @ Vt, 2)
    optimal = s[k] if k < len(s) else 0.0
    # Exhausted spaces are exact up to rounding; the "graded" control is a plain randomized SVD.
    assert error <= (3.0 if kind == "graded" else 1.01) * optimal + 1e3 * eps * s[0], (error, optimal, s[0])


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(300, 120), (120, 300)])
def test_block_krylov_transpose_runs_on_the_short_side_and_answers_for_a(dtype, shape):
    """transpose="auto" is A^H's run for a tall A and A's for a wide one; either orientation is the SVD
    of A itself (near-optimal, orthonormal factors), dense, sparse and as a LinearOperator."""
    rng = np.random.default_rng(11)
    m, n = shape
    A = planted(rng, m, n, (1.0 + np.arange(min(m, n))) ** -1.0).astype(dtype)
    if dtype == np.complex128:
        A = A + 1j * planted(rng, m, n, (1.0 + np.arange(min(m, n))) ** -1.0)
    s = np.linalg.svd(A, compute_uv=False)
    k, runs = 8, {}
    for transpose in ("auto", True, False):
        runs[transpose] = randomized_svd(
            A, k, method="block_krylov", n_power_iter=2, transpose=transpose, random_state=4
        )
        U, S, Vt = runs[transpose]
        assert U.shape == (m, k) and Vt.shape == (k, n)
        assert np.max(np.abs(U.conj().T @ U - np.eye(k))) < 1e-12
        assert np.max(np.abs(Vt @ Vt.conj().T - np.eye(k))) < 1e-12
        assert np.linalg.norm(A - (U * S) @ Vt, 2) <= 1.01 * s[k]
    same = runs[m > n]
    for got, expected in zip(runs["auto"], same, strict=True):
        np.testing.assert_array_equal(got, expected)
    if dtype == np.float64:
        for operand in (scipy.sparse.csr_matrix(A), aslinearoperator(A)):
            U, S, Vt = randomized_svd(operand, k, method="block_krylov", n_power_iter=2, transpose=True, random_state=4)
            np.testing.assert_allclose(S, runs[True].S, rtol=1e-10)


def test_block_krylov_transpose_bad_arguments():
    A = np.random.default_rng(0).standard_normal((40, 30))
    with pytest.raises(ValueError, match="transpose must be"):
        randomized_svd(A, 3, method="block_krylov", transpose="yes")
    with pytest.raises(ValueError, match="transpose=True needs method='block_krylov'"):
        randomized_svd(A, 3, transpose=True)
    with pytest.raises(ValueError, match="transpose must be"):
        randomized_svd(A, 3, transpose=None)
    with pytest.raises(ValueError, match="cannot take init"):
        randomized_svd(A, 3, method="block_krylov", transpose=True, init=A[:, :5])
    randomized_svd(A, 3, transpose=False)  # subspace iteration runs on A as given: False is its own way
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="not supported for a Dask A"):
        randomized_svd(da.from_array(A, chunks=(20, 30)), 3, method="block_krylov", transpose=True)


def test_block_krylov_xp_path_matches_numpy_and_float32():
    rng = np.random.default_rng(2)
    A = planted(rng, 80, 60, 0.8 ** np.arange(60))
    ref = randomized_svd(A, 6, method="block_krylov", random_state=3)
    strict = randomized_svd(xps.asarray(A), 6, method="block_krylov", random_state=3)
    assert isinstance(strict.S, type(xps.asarray([1.0])))
    assert np.allclose(np.asarray(strict.S), ref.S, rtol=1e-10)
    assert np.allclose(np.asarray(strict.U) * np.asarray(strict.S) @ np.asarray(strict.Vt), (ref.U * ref.S) @ ref.Vt)
    low = randomized_svd(A.astype(np.float32), 6, method="block_krylov", random_state=3)
    assert low.S.dtype == np.float32
    assert np.allclose(low.S, ref.S, rtol=1e-4)


def test_block_krylov_sparse_and_operator():
    rng = np.random.default_rng(3)
    A = scipy.sparse.random(200, 150, density=0.05, random_state=4, format="csr")
    dense = A.toarray()
    exact = np.linalg.svd(dense, compute_uv=False)[:5]
    for X in (A, aslinearoperator(A)):
        U, S, Vt = randomized_svd(X, 5, method="block_krylov", n_power_iter=6, random_state=rng)
        assert np.allclose(S, exact, rtol=1e-6)


def test_block_krylov_bad_arguments():
    A = np.random.default_rng(0).standard_normal((20, 10))
    with pytest.raises(ValueError, match="method"):
        randomized_svd(A, 2, method="lanczos")
    with pytest.raises(ValueError, match="svd_certified"):
        randomized_svd(A, 2, method="block_krylov", tol=0.1)
    with pytest.raises(ValueError, match="n_power_iter"):
        randomized_svd(A, 2, method="block_krylov", n_power_iter="many")
    with pytest.raises(ValueError, match="n_power_iter"):
        randomized_svd(A, 2, method="block_krylov", n_power_iter=-1)


# --------------------------------------------------------------------------- svd_certified


@pytest.mark.parametrize(
    "spectrum",
    [(1.0 + np.arange(150)) ** -1.0, 0.9 ** np.arange(150), (1.0 + np.arange(150)) ** -2.0],
    ids=["i^-1", "0.9^i", "i^-2"],
)
@pytest.mark.parametrize("tol", [1e-2, 1e-1])
def test_certified_tol_picks_minimal_rank(spectrum, tol):
    rng = np.random.default_rng(5)
    A = planted(rng, 240, 200, spectrum)
    result = svd_certified(A, tol=tol, random_state=6)
    assert isinstance(result, CertifiedSVD) and result.converged
    k_star = minimal_rank(spectrum, tol)
    k = result.S.shape[0]
    assert k_star <= k <= math.floor(1.1 * k_star) + (1 if k_star < 10 else 0)
    true = np.linalg.norm(A - (result.U * result.S) @ result.Vt)
    assert true**2 <= tol * np.linalg.norm(A) ** 2 * (1 + 1e-10)
    assert result.relative_error == pytest.approx(true / np.linalg.norm(A), rel=1e-6)
    assert true <= result.error_bound <= 6 * true
    assert result.passes <= 41


def test_certified_rank_residuals_are_the_true_residuals():
    rng = np.random.default_rng(7)
    A = planted(rng, 150, 120, (1.0 + np.arange(120)) ** -1.0)
    result = svd_certified(A, rank=6, residual_tol=1e-4, random_state=8)
    assert result.converged
    U, S, Vt = result.svd
    left = A @ Vt.T - U * S
    right = A.T @ U - Vt.T * S
    direct = np.sqrt(np.sum(left**2, axis=0) + np.sum(right**2, axis=0))
    assert np.allclose(result.residual_norms, direct, atol=1e-12 * S[0])
    assert result.residual_norms.max() <= 1e-4 * S[0]
    # each certified S[i] lies within residual / sqrt(2) of a true singular value
    exact = np.linalg.svd(A, compute_uv=False)
    gaps = np.min(np.abs(S[:, None] - exact[None, :]), axis=1)
    assert np.all(gaps <= result.residual_norms / np.sqrt(2) + 1e-12)


@pytest.mark.filterwarnings("ignore::lorainne.ConvergenceWarning")  # small budgets on purpose
def test_certified_error_bound_never_below_true_error():
    """1000 random trials at small size. Default failure probability 1e-6 per call (Chernoff
    bound of the lower tail of a weighted chi-square sum, r = 20 vectors): all 1000 hold except
    with probability <= 1e-3; both bounds are checked, and the random draws are seeded.
    """
    rng = np.random.default_rng(2024)
    ratios = []
    for trial in range(1000):
        m, n = int(rng.integers(20, 50)), int(rng.integers(10, 40))
        kind = trial % 4
        i = 1.0 + np.arange(min(m, n))
        s = [i**-0.5, i**-1.0, 0.7 ** (i - 1), np.where(i <= 3, 1.0, 1e-3)][kind]
        A = planted(rng, m, n, s)
        rank = int(rng.integers(1, min(m, n) // 2 + 1))
        result = svd_certified(A, rank=rank, max_passes=int(rng.integers(3, 8)), random_state=trial)
        E = A - (result.U * result.S) @ result.Vt
        true_f, true_2 = np.linalg.norm(E), np.linalg.norm(E, 2)
        assert result.error_bound >= true_f, (trial, result.error_bound, true_f)
        assert result.spectral_error_bound >= true_2, (trial, result.spectral_error_bound, true_2)
        ratios.append(result.error_bound / true_f)
    assert np.median(ratios) < 4.5  # and not uselessly loose


@pytest.mark.filterwarnings("ignore::lorainne.ConvergenceWarning")
def test_chernoff_factor_and_budget():
    for r, delta in [(20, 1e-6), (10, 1e-3), (5, 0.1)]:
        t = chernoff_factor(r, delta)
        assert 0 < t < 1
        assert (t * math.exp(1 - t)) ** (r / 2) == pytest.approx(delta, rel=1e-9)
    rng = np.random.default_rng(9)
    A = planted(rng, 200, 150, (1.0 + np.arange(150)) ** -0.5)
    result = svd_certified(A, rank=10, residual_tol=1e-8, max_passes=5, random_state=0)
    assert result.passes <= 5 and not result.converged


def test_certified_warns_when_not_certified():
    rng = np.random.default_rng(10)
    A = planted(rng, 200, 150, (1.0 + np.arange(150)) ** -0.5)
    with pytest.warns(ConvergenceWarning, match="not certified"):
        result = svd_certified(A, tol=1e-3, max_rank=5, random_state=0)
    assert result.S.shape[0] == 5 and not result.converged


def test_certified_inputs_sparse_operator_float32_unmodified():
    rng = np.random.default_rng(11)
    A = planted(rng, 120, 90, 0.85 ** np.arange(90)).astype(np.float32)
    copy = A.copy()
    result = svd_certified(A, tol=1e-2, random_state=0)
    assert np.array_equal(A, copy)
    assert result.S.dtype == np.float32 and result.U.dtype == np.float32
    assert result.S.shape[0] == minimal_rank(0.85 ** np.arange(90), 1e-2) or result.S.shape[0] == minimal_rank(
        np.linalg.svd(A.astype(np.float64), compute_uv=False), 1e-2
    )
    S = scipy.sparse.random(150, 100, density=0.1, random_state=1, format="csr")
    res = svd_certified(S, rank=3, random_state=0)
    assert np.allclose(res.S, np.linalg.svd(S.toarray(), compute_uv=False)[:3], rtol=1e-6)
    res_op = svd_certified(aslinearoperator(S), rank=3, random_state=0)
    assert res_op.relative_error is None and np.allclose(res_op.S, res.S)
    strict = svd_certified(xps.asarray(A.astype(np.float64)), rank=3, random_state=0)
    assert np.allclose(np.asarray(strict.S), np.linalg.svd(A.astype(np.float64), compute_uv=False)[:3])


def test_certified_real_data_digits():
    from sklearn.datasets import load_digits

    X = load_digits().data  # 1797 x 64 pixel intensities
    exact = np.linalg.svd(X, compute_uv=False)
    for tol in (0.05, 0.01):
        result = svd_certified(X, tol=tol, block_size=16, random_state=0)
        k_star = minimal_rank(exact, tol)
        assert k_star <= result.S.shape[0] <= math.ceil(1.1 * k_star)
        assert np.allclose(result.S, exact[: result.S.shape[0]], rtol=5e-3)


def test_certified_bad_arguments():
    A = np.random.default_rng(0).standard_normal((30, 20))
    with pytest.raises(TypeError, match="rank= .* or tol="):
        svd_certified(A)
    with pytest.raises(ValueError, match="not both"):
        svd_certified(A, rank=2, tol=0.1)
    with pytest.raises(ValueError, match="tol"):
        svd_certified(A, tol=1.5)
    with pytest.raises(ValueError, match="rank"):
        svd_certified(A, rank=21)
    with pytest.raises(ValueError, match="max_passes"):
        svd_certified(A, rank=2, max_passes=2)
    with pytest.raises(ValueError, match="failure_probability"):
        svd_certified(A, rank=2, failure_probability=0.0)
    with pytest.raises(ValueError, match="max_rank"):
        svd_certified(A, rank=2, max_rank=5)
    with pytest.raises(ValueError, match="max_rank"):
        svd_certified(A, tol=0.1, max_rank=0)
    with pytest.raises(ValueError, match="LinearOperator"):
        svd_certified(aslinearoperator(A), tol=0.1)
    with pytest.raises(ValueError, match="NaN"):
        svd_certified(np.full((4, 4), np.nan), rank=1)
    with pytest.raises(TypeError, match="block_size"):
        svd_certified(A, rank=2, block_size=2.5)
