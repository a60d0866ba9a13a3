"""randomized_svd / range_finder for scikit-learn users (sign convention, power iterations,
``size=``) and exact power-of-two rescaling of tiny and huge inputs (QR, range finder, SVD).
"""

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_almost_equal
from scipy import linalg

from lorainne import cholesky_qr2, householder_qr, randomized_svd, range_finder
from lorainne.randomized import auto_power_iterations

sklearn_datasets = pytest.importorskip("sklearn.datasets")
BACKENDS = ["rust", "numpy"]


def sklearn_matrix(tail_strength, effective_rank):
    """The matrices of scikit-learn's test_extmath.py (100 x 500, random_state=0)."""
    return sklearn_datasets.make_low_rank_matrix(
        n_samples=100, n_features=500, effective_rank=effective_rank, tail_strength=tail_strength, random_state=0
    )


# ----------------------------------------------------------------- power iterations ("auto")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sklearn_low_rank_with_noise_default_power_iterations(backend):
    """scikit-learn's test_randomized_svd_low_rank_with_noise: default n_iter, decimal=3."""
    X = sklearn_matrix(0.1, 5)
    s = linalg.svd(X, compute_uv=False)[:10]
    sa = randomized_svd(X, 10, n_power_iter=0, random_state=0, backend=backend).S
    assert np.abs(s - sa).max() > 0.01  # the approximation does not tolerate the noise
    assert_almost_equal(s, randomized_svd(X, 10, random_state=0, backend=backend).S, decimal=3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(3))
def test_sklearn_transpose_consistency_matrix_default_passes(backend, seed):
    """tail_strength=0.5 (test_randomized_svd_transpose_consistency): the default meets
    scikit-learn's decimal=3 where the old default (2 power iterations) missed it.
    """
    X = sklearn_matrix(0.5, 4)
    s = linalg.svd(X, compute_uv=False)[:10]
    old = randomized_svd(X, 10, n_power_iter=2, random_state=seed, backend=backend).S
    assert np.abs(s - old).max() > 1.5e-3
    assert_almost_equal(s, randomized_svd(X, 10, random_state=seed, backend=backend).S, decimal=3)
    assert_almost_equal(s, randomized_svd(X, 10, n_power_iter=3, random_state=seed, backend=backend).S, decimal=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sklearn_infinite_rank(backend):
    """scikit-learn's test_randomized_svd_infinite_rank (tail_strength=1.0, n_iter=5, decimal=3)."""
    X = sklearn_matrix(1.0, 5)
    s = linalg.svd(X, compute_uv=False)[:10]
    sa = randomized_svd(X, 10, n_power_iter=0, random_state=0, backend=backend).S
    assert np.abs(s - sa).max() > 0.1
    assert_almost_equal(s, randomized_svd(X, 10, n_power_iter=5, random_state=0, backend=backend).S, decimal=3)
    # "auto" at a rank below 0.1 min(m, n) runs 7 iterations and meets the tolerance too
    s5 = s[:5]
    assert_almost_equal(s5, randomized_svd(X, 5, random_state=0, backend=backend).S, decimal=3)


def test_auto_power_iterations_is_sklearns_rule():
    assert auto_power_iterations(9, (100, 500)) == 7
    assert auto_power_iterations(10, (100, 500)) == 4
    assert auto_power_iterations(10, (100, 500), warm_start=True) == 2


def test_n_power_iter_rejects_other_strings():
    A = np.ones((10, 8))
    with pytest.raises(ValueError, match="n_power_iter"):
        randomized_svd(A, 2, n_power_iter="many")
    with pytest.raises(TypeError, match="n_power_iter"):
        randomized_svd(A, 2, n_power_iter=2.5)


# ----------------------------------------------------------------- sign convention


def test_flip_sign_u_is_sklearns_convention():
    """scikit-learn's test_randomized_svd_sign_flip_with_transpose, and the same result as
    scikit-learn's svd_flip(u_based_decision=True).
    """
    from sklearn.utils.extmath import svd_flip

    mat = np.arange(10 * 8, dtype=np.float64).reshape(10, -1)
    for flip in ("u", True):
        U, _, Vt = randomized_svd(mat, 3, flip_sign=flip, random_state=0)
        assert (np.abs(U).max(axis=0) == U.max(axis=0)).all()
        assert not (np.abs(Vt).max(axis=1) == Vt.max(axis=1)).all()
        U2, Vt2 = svd_flip(U * -1.0, Vt * -1.0, u_based_decision=True)
        np.testing.assert_array_equal(U, U2)
        np.testing.assert_array_equal(Vt, Vt2)
    U, _, Vt = randomized_svd(mat, 3, random_state=0)  # the default: rows of Vt
    assert (np.abs(Vt).max(axis=1) == Vt.max(axis=1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_sign_u_deterministic_over_seeds(backend):
    """scikit-learn's test_randomized_svd_sign_flip."""
    a = np.array([[2.0, 0.0], [0.0, 1.0]])
    u1, _, v1 = randomized_svd(a, 2, flip_sign=True, random_state=41, backend=backend)
    for seed in range(10):
        u2, s2, v2 = randomized_svd(a, 2, flip_sign=True, random_state=seed, backend=backend)
        assert_almost_equal(u1, u2)
        assert_almost_equal(v1, v2)
        assert_almost_equal(np.dot(u2 * s2, v2), a)


def test_flip_sign_false_and_tol_path():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 30))
    U, S, Vt = randomized_svd(A, 6, flip_sign=False, random_state=0)
    assert np.allclose(U * S @ Vt, A)
    U, _, _ = randomized_svd(A, 6, tol=0.01, flip_sign="u", random_state=0)
    assert (np.abs(U).max(axis=0) == U.max(axis=0)).all()


@pytest.mark.parametrize(("flip", "error"), [("V", ValueError), (1, TypeError), (None, TypeError)])
def test_flip_sign_rejects_bad_values(flip, error):
    with pytest.raises(error, match="flip_sign"):
        randomized_svd(np.ones((5, 4)), 2, flip_sign=flip)


# ----------------------------------------------------------------- range_finder size=


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_finder_size_gives_exactly_size_columns(backend):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 50))
    Q = range_finder(A, size=8, random_state=0, backend=backend)
    assert Q.shape == (60, 8)
    assert np.linalg.norm(A - Q @ (Q.T @ A)) < 1e-10 * np.linalg.norm(A)
    assert range_finder(A, 8, random_state=0, backend=backend).shape == (60, 18)


def test_range_finder_size_validation():
    A = np.ones((10, 8))
    with pytest.raises(ValueError, match="rank or size"):
        range_finder(A, 2, size=3)
    with pytest.raises(ValueError, match="size"):
        range_finder(A, size=9)
    with pytest.raises(ValueError, match="tol"):
        range_finder(A, size=3, tol=0.1)
    with pytest.raises(TypeError, match="size"):
        range_finder(A)


# ----------------------------------------------------------------- tiny and huge entries

SCALES = [1e-300, 1e-200, 1e200, 1e300]


def noisy_low_rank(seed=0, m=120, n=90):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 15)) @ rng.standard_normal((15, n)) + 1e-2 * rng.standard_normal((m, n))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_randomized_svd_scaled_input_gives_the_scaled_answer(scale, backend):
    A = noisy_low_rank()
    U, S, Vt = randomized_svd(A, 20, random_state=0, backend=backend)
    scaled = A * scale
    before = scaled.copy()
    U2, S2, Vt2 = randomized_svd(scaled, 20, random_state=0, backend=backend)
    np.testing.assert_array_equal(scaled, before)
    np.testing.assert_allclose(S2 / scale, S, rtol=1e-12)
    np.testing.assert_allclose(U2, U, atol=1e-10)
    np.testing.assert_allclose(Vt2, Vt, atol=1e-10)
    # the adaptive (tol) mode reads ||A||_F^2: same rank, scaled values
    r1 = randomized_svd(A, 40, tol=0.01, random_state=0, backend=backend)
    r2 = randomized_svd(scaled, 40, tol=0.01, random_state=0, backend=backend)
    assert r2.S.shape == r1.S.shape and r1.S.shape[0] >= 1
    np.testing.assert_allclose(r2.S / scale, r1.S, rtol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
def test_randomized_svd_scaled_input_xp_and_sparse(scale):
    A = noisy_low_rank()
    S = randomized_svd(A, 10, random_state=0, backend="numpy").S
    S_xp = randomized_svd(xps.asarray(A * scale), 10, random_state=0).S
    np.testing.assert_allclose(np.asarray(S_xp) / scale, S, rtol=1e-12)
    sparse = sp.csr_matrix(np.where(np.abs(A) > 1.0, A, 0.0))
    S_sp = randomized_svd(sparse, 10, random_state=0).S
    np.testing.assert_allclose(randomized_svd(sparse * scale, 10, random_state=0).S / scale, S_sp, rtol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_range_finder_scaled_input_gives_the_same_basis(scale, backend):
    A = noisy_low_rank()
    Q = range_finder(A, 10, random_state=0, backend=backend)
    Q2 = range_finder(A * scale, 10, random_state=0, backend=backend)
    np.testing.assert_allclose(Q2, Q, atol=1e-10)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("qr", [householder_qr, cholesky_qr2])
def test_qr_scaled_input_gives_the_scaled_r(scale, backend, qr):
    A = noisy_low_rank(m=70, n=30)
    Q, R = qr(A, backend=backend)
    Q2, R2 = qr(A * scale, backend=backend)
    assert np.all(np.isfinite(Q2))
    np.testing.assert_allclose(Q2, Q, atol=1e-12)
    np.testing.assert_allclose(R2 / scale, R, rtol=1e-12, atol=1e-13 * np.abs(R).max())


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_qr_scaled_input_array_api_strict(scale):
    A = noisy_low_rank(m=40, n=12)
    Q, R = householder_qr(A, backend="numpy")
    Q2, R2 = householder_qr(xps.asarray(A * scale))
    np.testing.assert_allclose(np.asarray(Q2), Q, atol=1e-12)
    np.testing.assert_allclose(np.asarray(R2) / scale, R, rtol=1e-12, atol=1e-13 * np.abs(R).max())


def test_float32_large_entries_are_rescaled():
    A = noisy_low_rank().astype(np.float32)
    S = randomized_svd(A, 10, random_state=0).S
    S2 = randomized_svd(A * np.float32(1e25), 10, random_state=0).S
    assert S2.dtype == np.float32
    np.testing.assert_allclose(S2 / np.float32(1e25), S, rtol=1e-4)
