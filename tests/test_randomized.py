"""range_finder and randomized_svd: properties, Rust vs xp reference, inputs, validation."""

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

import lorainne
from lorainne import ConvergenceWarning, randomized_svd, range_finder

DTYPES = [np.float64, np.float32]


def low_rank(rng, m, n, k, dtype=np.float64):
    return (rng.standard_normal((m, k)) @ rng.standard_normal((k, n))).astype(dtype)


def decaying(rng, m, n, decay=0.8, dtype=np.float64):
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = decay ** np.arange(k)
    return ((U * s) @ V.T).astype(dtype), s


def orthogonality_error(Q):
    Q = np.asarray(Q, dtype=np.float64)
    return np.linalg.norm(Q.T @ Q - np.eye(Q.shape[1]))


shapes = st.tuples(st.integers(2, 70), st.integers(2, 70))


@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_exact_rank_input_is_reconstructed_and_q_is_orthonormal(shape, dtype, data, seed):
    m, n = shape
    k = data.draw(st.integers(1, min(m, n)))
    rng = np.random.default_rng(seed)
    A = low_rank(rng, m, n, k, dtype)
    for backend in ("rust", "numpy"):
        Q = range_finder(A, k, random_state=seed, backend=backend)
        assert Q.dtype == dtype and Q.shape == (m, min(k + 10, m, n))
        assert orthogonality_error(Q) < (1e-12 if dtype == np.float64 else 1e-5)
        U, S, Vt = randomized_svd(A, k, random_state=seed, backend=backend)
        assert U.shape == (m, k) and S.shape == (k,) and Vt.shape == (k, n)
        assert U.dtype == S.dtype == Vt.dtype == dtype
        rel = np.linalg.norm((U * S) @ Vt - A) / max(np.linalg.norm(A), 1e-300)
        assert rel < (1e-10 if dtype == np.float64 else 1e-4)
        assert np.all(np.diff(S) <= 0)


@given(
    shape=shapes,
    dtype=st.sampled_from(DTYPES),
    qr=st.sampled_from(["auto", "householder"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rust_equals_xp_reference(shape, dtype, qr, seed):
    m, n = shape
    rng = np.random.default_rng(seed)
    A, s = decaying(rng, m, n, 0.5, dtype)  # separated singular values: U and V are well defined
    rank = max(1, min(m, n) // 3)
    U, S, Vt = randomized_svd(A, rank, qr=qr, random_state=seed, backend="rust")
    Ux, Sx, Vtx = randomized_svd(A, rank, qr=qr, random_state=seed, backend="numpy")
    tol = 1e-9 if dtype == np.float64 else 2e-3
    assert np.allclose(S, Sx, rtol=tol, atol=tol * S[0])
    big = S > 1e-3 * S[0]  # directions resolved above rounding in float32 as well
    assert np.allclose(U[:, big], Ux[:, big], atol=tol * 10) and np.allclose(Vt[big], Vtx[big], atol=tol * 10)
    Q = range_finder(A, rank, qr=qr, random_state=seed, backend="rust")
    Qx = range_finder(A, rank, qr=qr, random_state=seed, backend="numpy")
    # Same subspace (the bases agree up to rounding of the leading directions).
    P, Px = Q @ Q.T, Qx @ Qx.T
    assert np.linalg.norm((P - Px) @ A) <= 1e2 * tol * np.linalg.norm(A)


def test_error_is_near_optimal_in_float32_thanks_to_reorthonormalization(rng):
    A, s = decaying(rng, 1500, 800, 0.99, np.float32)
    rank = 50
    optimal = np.sqrt(np.sum(s[rank:] ** 2))
    U, S, Vt = randomized_svd(A, rank, random_state=0)
    ratio = np.linalg.norm(A.astype(np.float64) - (U * S) @ Vt) / optimal
    assert ratio < 1.02


def test_same_seed_gives_identical_results_and_input_is_unchanged(rng):
    A = rng.standard_normal((60, 40))
    A.flags.writeable = False
    before = A.copy()
    for backend in ("rust", "numpy"):
        first = randomized_svd(A, 5, random_state=7, backend=backend)
        second = randomized_svd(A, 5, random_state=np.random.default_rng(7), backend=backend)
        for a, b in zip(first, second, strict=False):
            assert np.array_equal(a, b)
    assert np.array_equal(A, before)


def test_random_state_kinds(rng):
    A = rng.standard_normal((30, 20))
    for state in (None, 3, np.random.default_rng(3), np.random.RandomState(3)):
        assert range_finder(A, 3, random_state=state).shape == (30, 13)
    with pytest.raises(TypeError, match="random_state"):
        range_finder(A, 3, random_state="seed")


def test_non_contiguous_integer_and_fortran_inputs(rng):
    base = rng.integers(-5, 5, size=(80, 60))
    for A in (base[::2, ::3], np.asfortranarray(base.astype(np.float32)), base.astype(np.int8)):
        U, S, Vt = randomized_svd(A, 4, random_state=0)
        assert U.dtype == (np.float32 if A.dtype == np.float32 else np.float64)
        Ux, Sx, _ = randomized_svd(np.ascontiguousarray(A, dtype=U.dtype), 4, random_state=0)
        assert np.allclose(S, Sx, rtol=1e-5)


def test_sparse_and_linear_operator_inputs(rng):
    # Decaying diagonal plus sparse noise: a spectrum with gaps, so 6 triplets are well resolved.
    A = sp.diags(0.7 ** np.arange(200), shape=(300, 200), format="csr") + 1e-3 * sp.random(
        300, 200, density=0.05, random_state=1
    )
    dense = A.toarray()
    reference = randomized_svd(dense, 6, random_state=0)
    for operand in (A, A.tocoo(), sp.csc_array(A), aslinearoperator(A)):
        U, S, Vt = randomized_svd(operand, 6, random_state=0)
        assert isinstance(U, np.ndarray)
        assert np.allclose(S, reference.S, rtol=1e-10)
    exact = np.linalg.svd(dense, compute_uv=False)[:6]
    assert np.allclose(reference.S, exact, rtol=1e-6)


def test_linear_operator_without_rmatvec_is_a_clear_error():
    from scipy.sparse.linalg import LinearOperator

    op = LinearOperator((10, 8), matvec=lambda v: np.ones(10) * v.sum(), dtype=np.float64)
    with pytest.raises(ValueError, match="rmatvec"):
        range_finder(op, 2)


def test_xp_path_under_array_api_strict(rng):
    A = low_rank(rng, 50, 40, 3)
    U, S, Vt = randomized_svd(xps.asarray(A), 3, random_state=1)
    assert isinstance(U, type(xps.asarray(1.0))) and U.dtype == xps.float64
    Un, Sn, Vtn = randomized_svd(A, 3, random_state=1, backend="numpy")
    assert np.allclose(np.asarray(S), Sn) and np.allclose(np.asarray(U), Un)
    Q = range_finder(xps.asarray(A.astype(np.float32)), 3, random_state=1, qr="householder")
    assert Q.dtype == xps.float32
    Qt = range_finder(xps.asarray(A), 3, tol=1e-6, random_state=1)
    assert Qt.shape == (50, 3)
    with pytest.raises(ValueError, match="rust"):
        range_finder(xps.asarray(A), 3, backend="rust")


def test_torch_input_stays_torch(rng):
    torch = pytest.importorskip("torch")
    A = torch.from_numpy(low_rank(rng, 40, 30, 3))
    U, S, Vt = randomized_svd(A, 3, random_state=0)
    assert isinstance(U, torch.Tensor) and U.dtype == torch.float64
    assert torch.allclose(U * S @ Vt, A, atol=1e-10)


def test_warm_start_tracks_a_drifting_subspace(rng):
    A, s = decaying(rng, 400, 300, 0.7)
    rank = 8
    Q0 = range_finder(A, rank, random_state=0)
    # The next "step": a small perturbation; one iteration from the old basis is near optimal.
    B = A + 1e-6 * rng.standard_normal(A.shape)
    Q1 = range_finder(B, rank, init=Q0, n_power_iter=1, random_state=1)
    optimal = np.linalg.norm(
        B
        - (lambda u, s, vt: (u[:, : Q1.shape[1]] * s[: Q1.shape[1]]) @ vt[: Q1.shape[1]])(
            *np.linalg.svd(B, full_matrices=False)
        )
    )
    assert np.linalg.norm(B - Q1 @ (Q1.T @ B)) < 1.05 * optimal
    # A basis with fewer columns than the sketch is completed with random columns.
    Q2 = range_finder(B, rank, init=Q0[:, :3], random_state=1)
    assert Q2.shape == Q0.shape and orthogonality_error(Q2) < 1e-12
    for backend in ("rust", "numpy"):
        U, S, Vt = randomized_svd(B, rank, init=Q0, random_state=1, backend=backend)
        assert np.allclose(S, np.linalg.svd(B, compute_uv=False)[:rank], rtol=1e-6)


def test_adaptive_tolerance_returns_the_smallest_sufficient_basis(rng):
    A, s = decaying(rng, 300, 200, 0.9)
    tol = 1e-3
    Q = range_finder(A, 150, tol=tol, random_state=0)
    k = Q.shape[1]
    assert np.linalg.norm(A - Q @ (Q.T @ A)) <= tol * np.linalg.norm(A)
    tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / np.linalg.norm(s)  # optimal error of rank j: tails[j]
    optimal_rank = int(np.argmax(tails <= tol))
    assert optimal_rank <= k <= optimal_rank + 2
    U, S, Vt = randomized_svd(A, 150, tol=tol, random_state=0)
    assert S.shape == (k,) and np.linalg.norm(A - (U * S) @ Vt) <= tol * np.linalg.norm(A)
    with pytest.warns(ConvergenceWarning, match="tol"):
        small = range_finder(A, 5, tol=tol, random_state=0)
    assert small.shape == (300, 5)
    with pytest.raises(ValueError, match="tol"):
        range_finder(A.astype(np.float32), 5, tol=1e-5)  # below sqrt(eps) of float32


def test_real_image_shipped_with_scikit_learn():
    datasets = pytest.importorskip("sklearn.datasets")
    image = datasets.load_sample_image("china.jpg")[:, :, 1]  # uint8, 427 x 640, as users load it
    assert image.dtype == np.uint8
    U, S, Vt = randomized_svd(image, 30, random_state=0)
    assert U.dtype == np.float64
    exact = np.linalg.svd(image.astype(np.float64), compute_uv=False)
    optimal = np.sqrt(np.sum(exact[30:] ** 2))
    assert np.linalg.norm(image - (U * S) @ Vt) < 1.01 * optimal
    assert np.allclose(S[:5], exact[:5], rtol=1e-5)


def test_real_dataset_digits_through_every_path():
    datasets = pytest.importorskip("sklearn.datasets")
    X = datasets.load_digits().data  # 1797 x 64 pixel intensities, many constant-zero columns
    for backend in ("rust", "numpy"):
        U, S, Vt = randomized_svd(X, 10, random_state=0, backend=backend)
        exact = np.linalg.svd(X, compute_uv=False)
        assert np.allclose(S, exact[:10], rtol=2e-3)
        assert np.linalg.norm(X - (U * S) @ Vt) < 1.01 * np.sqrt(np.sum(exact[10:] ** 2))
    Q = range_finder(sp.csr_matrix(X), 10, random_state=0)
    assert orthogonality_error(Q) < 1e-12


@pytest.mark.parametrize("fn", [range_finder, randomized_svd])
def test_validation_errors(fn, rng):
    A = rng.standard_normal((20, 10))
    bad = A.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn(bad, 2)
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones((3, 3, 3)), 2)
    with pytest.raises(ValueError, match="empty"):
        fn(np.ones((0, 4)), 1)
    for rank in (0, -1, 11):
        with pytest.raises(ValueError, match="rank"):
            fn(A, rank)
    with pytest.raises(TypeError, match="rank"):
        fn(A, 2.5)
    with pytest.raises(ValueError, match="n_oversamples"):
        fn(A, 2, n_oversamples=-1)
    with pytest.raises(ValueError, match="n_power_iter"):
        fn(A, 2, n_power_iter=-2)
    with pytest.raises(ValueError, match="qr"):
        fn(A, 2, qr="lapack")
    with pytest.raises(ValueError, match="backend"):
        fn(A, 2, backend="tpu")
    with pytest.raises(ValueError, match="cupy"):
        fn(A, 2, backend="cupy")
    with pytest.raises(ValueError, match="init"):
        fn(A, 2, init=np.ones((19, 3)))
    with pytest.raises(ValueError, match="tol"):
        fn(A, 2, tol=1.5)
    with pytest.raises(ValueError, match="n_threads"):
        fn(A, 2, n_threads=0)
    for dtype in (np.float16, np.clongdouble, object):
        with pytest.raises(TypeError, match="dtype"):
            fn(A.astype(dtype), 2)
    with pytest.raises(TypeError, match="array"):
        fn([[1.0, 2.0], [3.0, 4.0]], 1)


def test_backends_report():
    info = lorainne.backends()
    assert info["rust"]["available"] and info["rust"]["default_threads"] >= 1
    assert set(info) == {"rust", "numpy", "cupy", "xp"}


@pytest.mark.gpu
def test_cupy_input_stays_on_the_gpu():
    import cupy

    A = cupy.asarray(low_rank(np.random.default_rng(0), 500, 300, 5))
    U, S, Vt = randomized_svd(A, 5, random_state=0)
    assert isinstance(U, cupy.ndarray) and U.dtype == cupy.float64
    assert float(cupy.linalg.norm(U * S @ Vt - A) / cupy.linalg.norm(A)) < 1e-10


def test_adaptive_tolerance_rust_equals_xp_reference(rng):
    A, s = decaying(rng, 250, 180, 0.9)
    for qr in ("auto", "householder"):
        Q = range_finder(A, 120, tol=1e-4, qr=qr, random_state=3, backend="rust")
        Qx = range_finder(A, 120, tol=1e-4, qr=qr, random_state=3, backend="numpy")
        assert Q.shape == Qx.shape
        assert np.linalg.norm(Q @ Q.T - Qx @ Qx.T) < 1e-8
        assert np.linalg.norm(A - Q @ (Q.T @ A)) <= 1e-4 * np.linalg.norm(A)
    U, S, Vt = randomized_svd(A.astype(np.float32), 120, tol=1e-2, random_state=3)
    assert U.dtype == np.float32 and np.linalg.norm(A - (U * S) @ Vt) <= 1.01e-2 * np.linalg.norm(A)


def test_sparse_input_with_rust_block_algebra_matches_the_numpy_path():
    # backend="auto" on a sparse A: SciPy's products, the dense block algebra in Rust; "numpy": all xp.
    import scipy.sparse

    A = scipy.sparse.random(300, 120, density=0.05, format="csr", random_state=1)
    for method in ("subspace", "block_krylov"):
        auto = lorainne.randomized_svd(A, 10, method=method, random_state=0)
        xp_path = lorainne.randomized_svd(A, 10, method=method, backend="numpy", random_state=0)
        assert np.allclose(auto.S, xp_path.S, rtol=1e-10)
        assert np.allclose(np.abs(auto.U.T @ xp_path.U), np.eye(10), atol=1e-6)
    # A duck-typed operator (shape, matmat, rmatmat) takes the same route under backend="auto".
    dense = A.toarray()

    class Operator:
        shape, dtype = dense.shape, dense.dtype

        def matmat(self, X):
            return dense @ X

        def rmatmat(self, Y):
            return dense.T @ Y

    auto = lorainne.randomized_svd(Operator(), 10, method="block_krylov", random_state=0)
    xp_path = lorainne.randomized_svd(Operator(), 10, method="block_krylov", backend="xp", random_state=0)
    assert np.allclose(auto.S, xp_path.S, rtol=1e-10)


def test_finiteness_and_magnitude_checks_on_huge_finite_entries():
    # The sum of these entries overflows: the fast finiteness check must fall back, not refuse.
    A = np.full((40, 30), 1e306) * np.where(np.arange(30) % 2, 1.0, 0.5)  # sum: 9e308, overflows
    A[0, 0] = 1.0
    _, S, _ = lorainne.randomized_svd(A, 2, random_state=0)
    assert np.all(np.isfinite(S)) and S[0] > 1e307
    for bad in (np.inf, -np.inf, np.nan):
        B = np.ones((40, 30))
        B[3, 4] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            lorainne.randomized_svd(B, 2)
