"""QR factorizations: Householder and CholeskyQR2 (with fallbacks), Rust against the xp reference."""

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorainne import _qr, cholesky_qr2, householder_qr

DTYPES = [np.float64, np.float32]
EPS = {np.float64: np.finfo(np.float64).eps, np.float32: np.finfo(np.float32).eps}


def orthogonality_error(Q):
    Q = np.asarray(Q, dtype=np.float64)
    return np.linalg.norm(Q.T @ Q - np.eye(Q.shape[1]))


def matrix_with_condition(rng, m, n, cond, dtype):
    left, _ = np.linalg.qr(rng.standard_normal((m, n)))
    right, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return ((left * np.logspace(0, -np.log10(cond), n)) @ right).astype(dtype)


@given(
    m=st.integers(1, 60),
    n=st.integers(1, 30),
    dtype=st.sampled_from(DTYPES),
    block=st.one_of(st.none(), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
)
def test_householder_rust_equals_xp_reference(m, n, dtype, block, seed):
    A = np.random.default_rng(seed).standard_normal((m, n)).astype(dtype)
    Q, R = householder_qr(A, block_size=block, backend="rust")
    Qx, Rx = householder_qr(A, block_size=block, backend="numpy")
    k = min(m, n)
    assert Q.shape == Qx.shape == (m, k) and R.shape == Rx.shape == (k, n)
    assert Q.dtype == Qx.dtype == dtype
    tol = 200 * EPS[dtype] * max(m, n)
    assert orthogonality_error(Q) < tol and orthogonality_error(Qx) < tol
    scale = np.linalg.norm(A)
    assert np.linalg.norm(Q @ R - A) <= tol * scale
    assert np.linalg.norm(Qx @ Rx - A) <= tol * scale
    assert np.all(np.diag(R) >= 0) and np.allclose(np.triu(R), R)
    # Unique factorization for full-rank A: both paths agree entry by entry.
    if np.linalg.matrix_rank(A) == k and np.linalg.cond(A) < 1e3:
        assert np.linalg.norm(R - Rx) <= 1e3 * EPS[dtype] * scale


@given(m=st.integers(2, 80), n=st.integers(1, 20), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_cholesky_qr2_rust_equals_xp_reference(m, n, dtype, seed):
    n = min(n, m)
    A = np.random.default_rng(seed).standard_normal((m, n)).astype(dtype)
    Q, R = cholesky_qr2(A, backend="rust")
    Qx, Rx = cholesky_qr2(A, backend="numpy")
    tol = 200 * EPS[dtype] * m
    for q, r in ((Q, R), (Qx, Rx)):
        assert q.dtype == dtype and q.shape == (m, n) and r.shape == (n, n)
        assert orthogonality_error(q) < tol
        assert np.linalg.norm(q @ r - A) <= tol * np.linalg.norm(A)
    if np.linalg.cond(A) < 1e3:
        assert np.linalg.norm(Q - Qx) <= 1e3 * EPS[dtype] * np.sqrt(n)


@pytest.mark.parametrize("cond", [1e2, 1e5, 1e6, 1e7])
@pytest.mark.parametrize("path", ["rust", "numpy"])
def test_cholesky_qr2_float32_stays_orthonormal_up_to_cond_1e7(rng, cond, path):
    A = matrix_with_condition(rng, 3000, 50, cond, np.float32)
    Q, R = cholesky_qr2(A, backend=path)
    # float32 rounding: u = 6e-8; ||Q^T Q - I||_F within a small multiple of u sqrt(n) m-independent.
    assert orthogonality_error(Q) < 2e-5
    assert np.linalg.norm(Q.astype(np.float64) @ R - A) <= 1e-5 * np.linalg.norm(A)


def test_fallback_chain_is_taken_where_plain_cholesky_qr2_breaks(rng):
    well = matrix_with_condition(rng, 500, 20, 1e2, np.float32)
    assert _qr.cholesky_qr2_xp(well)[2] == _qr.CHOLESKY_QR2
    # float64 at cond 1e10 (beyond CholeskyQR2's u^(-1/2) = 1e8): the shifted CholeskyQR3 path.
    ill = matrix_with_condition(rng, 500, 20, 1e10, np.float64)
    Q, R, method = _qr.cholesky_qr2_xp(ill)
    assert method == _qr.SHIFTED_CHOLESKY_QR3
    assert orthogonality_error(Q) < 1e-13 and np.linalg.norm(Q @ R - ill) < 1e-13 * np.linalg.norm(ill)
    Q, R = cholesky_qr2(ill, backend="rust")
    assert orthogonality_error(Q) < 1e-13 and np.linalg.norm(Q @ R - ill) < 1e-13 * np.linalg.norm(ill)
    deficient = np.hstack([well, well[:, :3]])
    Q, R, method = _qr.cholesky_qr2_xp(deficient)
    assert method == _qr.HOUSEHOLDER
    assert orthogonality_error(Q) < 1e-5


def test_zero_matrix_gives_orthonormal_q_and_zero_r():
    for path in ("rust", "numpy"):
        Q, R = cholesky_qr2(np.zeros((10, 3)), backend=path)
        assert orthogonality_error(Q) < 1e-14 and np.all(R == 0)


def test_wide_matrix_householder(rng):
    A = rng.standard_normal((4, 9))
    for path in ("rust", "numpy"):
        Q, R = householder_qr(A, backend=path)
        assert Q.shape == (4, 4) and R.shape == (4, 9)
        assert np.allclose(Q @ R, A)


def test_xp_path_under_array_api_strict(rng):
    A = rng.standard_normal((40, 7))
    for fn in (householder_qr, cholesky_qr2):
        Q, R = fn(xps.asarray(A))
        assert isinstance(Q, type(xps.asarray(1.0)))
        Qn, Rn = fn(A, backend="numpy")
        assert np.allclose(np.asarray(Q), Qn) and np.allclose(np.asarray(R), Rn)


def test_integer_input_is_promoted_and_left_unchanged():
    A = np.arange(30, dtype=np.int32).reshape(6, 5) ** 2 + np.eye(6, 5, dtype=np.int32)
    before = A.copy()
    Q, R = householder_qr(A)
    assert Q.dtype == np.float64 and np.allclose(Q @ R, A)
    assert np.array_equal(A, before)


def test_cholesky_qr2_rejects_wide_matrix():
    with pytest.raises(ValueError, match="tall"):
        cholesky_qr2(np.ones((3, 5)))


@pytest.mark.parametrize("fn", [householder_qr, cholesky_qr2])
def test_qr_bad_input(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones(4))
    with pytest.raises(ValueError, match="empty"):
        fn(np.ones((0, 3)))
    for dtype in (np.float16, np.clongdouble, object):
        with pytest.raises(TypeError, match="dtype"):
            fn(np.ones((4, 2), dtype=dtype))
    with pytest.raises(ValueError, match="n_threads"):
        fn(np.ones((4, 2)), n_threads=0)
    with pytest.raises(ValueError, match="backend"):
        fn(np.ones((4, 2)), backend="gpu")


@pytest.mark.gpu
def test_qr_on_cupy():
    import cupy

    A = cupy.random.standard_normal((2000, 40))
    for fn in (householder_qr, cholesky_qr2):
        Q, R = fn(A)
        assert isinstance(Q, cupy.ndarray)
        assert float(cupy.linalg.norm(Q.T @ Q - cupy.eye(40))) < 1e-12


def test_kernel_errors_become_python_exceptions_not_panics():
    from lorainne import _core

    with pytest.raises(ValueError, match="start"):
        _core.range_finder(np.ones((5, 4)), np.ones((3, 2)), False, 1, "cholesky")
    with pytest.raises(ValueError, match="qr"):
        _core.range_finder(np.ones((5, 4)), np.ones((4, 2)), False, 1, "lapack")
    with pytest.raises(ValueError, match="rank"):
        _core.randomized_svd(np.ones((5, 4)), np.ones((4, 2)), False, 3, 1, "cholesky")
    with pytest.raises(TypeError, match="float32, float64, complex64 or complex128"):
        _core.householder_qr(np.ones((5, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="n_threads"):
        _core.householder_qr(np.ones((5, 4)), None, 0)
    with pytest.raises(ValueError, match="rows"):
        _core.matmul(np.ones((5, 4)), np.ones((3, 2)))


def test_kernels_work_in_a_forked_child_after_the_parent_used_a_pool():
    import multiprocessing

    A = np.random.default_rng(0).standard_normal((300, 20))
    Q_parent, _ = householder_qr(A, n_threads=2)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        Q_child = pool.apply_async(_factor_in_child, (A,)).get(timeout=120)
    assert np.allclose(Q_parent, Q_child)


def _factor_in_child(A):
    return householder_qr(A, n_threads=2)[0]


def test_thread_count_does_not_change_the_answer(rng):
    A = rng.standard_normal((2000, 80))
    Q1, R1 = householder_qr(A, n_threads=1)
    Q2, R2 = householder_qr(A, n_threads=2)
    assert np.allclose(Q1, Q2, atol=1e-12) and np.allclose(R1, R2, atol=1e-12)


@given(
    m=st.integers(1, 40),
    k=st.integers(1, 30),
    n=st.integers(1, 20),
    dtype=st.sampled_from(DTYPES),
    layouts=st.tuples(st.sampled_from(["C", "F", "T", "strided"]), st.sampled_from(["C", "F", "T", "strided"])),
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_kernel_equals_numpy_in_every_layout(m, k, n, dtype, layouts, seed):
    """The GEMM kernel takes a row-major left factor the transposed way (B^T A^T)^T: same product."""
    from lorainne import _core

    rng = np.random.default_rng(seed)

    def laid_out(rows, cols, layout):
        if layout == "T":
            return rng.standard_normal((cols, rows)).astype(dtype).T
        if layout == "strided":
            return rng.standard_normal((2 * rows, 3 * cols)).astype(dtype)[::2, ::3]
        return np.asarray(rng.standard_normal((rows, cols)), dtype=dtype, order=layout)

    a, b = laid_out(m, k, layouts[0]), laid_out(k, n, layouts[1])
    a_before, b_before = a.copy(), b.copy()
    got = _core.matmul(a, b, 1)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    assert got.shape == (m, n) and got.dtype == dtype
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(got - expected) <= 10 * k * EPS[dtype] * scale + 1e-300)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)
