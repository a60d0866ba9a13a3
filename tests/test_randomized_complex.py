"""Complex64/complex128 input: QR, range finder, randomized SVD (both methods) and Hermitian trace,
checked against numpy.linalg on planted complex matrices (scikit-learn #30736: complex input was
silently wrong there). Functions without complex support must raise TypeError naming A.
"""

import array_api_strict as xs
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

from lorainne import cholesky_qr2, householder_qr, randomized_svd, range_finder, svd_certified, trace
from lorainne.randomized import cqrrpt
from lorainne.trace import diagonal, trace_function

TOL = {np.complex64: 2e-5, np.complex128: 1e-12}


def complex_gaussian(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def planted(rng, m, n, spectrum, dtype=np.complex128):
    """U diag(spectrum) V^H with Haar-like complex U, V: (A, spectrum)."""
    k = len(spectrum)
    U, _ = np.linalg.qr(complex_gaussian(rng, m, k))
    V, _ = np.linalg.qr(complex_gaussian(rng, n, k))
    return ((U * spectrum) @ V.conj().T).astype(dtype), np.asarray(spectrum)


def host(x):
    return np.asarray(x)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("fn", [householder_qr, cholesky_qr2])
@pytest.mark.parametrize("library", ["numpy", "array_api_strict"])
def test_complex_qr_matches_numpy(fn, dtype, library):
    rng = np.random.default_rng(0)
    A = complex_gaussian(rng, 120, 30).astype(dtype)
    Q, R = fn(A if library == "numpy" else xs.asarray(A))
    Q, R = host(Q), host(R)
    assert Q.dtype == dtype and R.dtype == dtype
    tol = TOL[dtype] * 10
    assert np.linalg.norm(Q @ R - A) <= tol * np.linalg.norm(A)
    assert np.linalg.norm(Q.conj().T @ Q - np.eye(30)) <= tol
    assert np.all(np.tril(R, -1) == 0)
    assert np.abs(np.diag(R).imag).max() <= tol * np.abs(R).max() and np.diag(R).real.min() > 0
    # The QR with a real positive diagonal is unique: numpy's, rephased, is the same factorization.
    Qn, Rn = np.linalg.qr(A.astype(np.complex128))
    phases = np.diag(Rn) / np.abs(np.diag(Rn))
    assert np.allclose(R, phases.conj()[:, None] * Rn, atol=tol * np.abs(Rn).max())


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 12),
    dtype=st.sampled_from([np.complex64, np.complex128]),
    seed=st.integers(0, 2**32 - 1),
)
def test_complex_rust_qr_equals_the_xp_reference(m, n, dtype, seed):
    # Rust (faer, complex) against the xp reference on the same well-conditioned input: the QR with
    # a real positive diagonal is unique, so the two must agree entry by entry.
    rng = np.random.default_rng(seed)
    n = min(m, n)
    A = (complex_gaussian(rng, m, n) + 3 * np.sqrt(m) * np.eye(m, n)).astype(dtype)
    before = A.copy()
    tol = 20 * TOL[dtype]
    for fn in (householder_qr, cholesky_qr2):
        Qr, Rr = fn(A, backend="rust")
        Qx, Rx = fn(A, backend="numpy")
        assert Qr.dtype == dtype and Rr.dtype == dtype
        assert np.all(np.diag(Rr).imag == 0) and np.all(np.diag(Rr).real > 0)
        assert np.abs(Qr - Qx).max() <= tol
        assert np.abs(Rr - Rx).max() <= tol * np.abs(Rx).max()
    np.testing.assert_array_equal(A, before)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("method", ["subspace", "block_krylov"])
def test_complex_randomized_svd_rust_equals_the_xp_reference(dtype, method):
    rng = np.random.default_rng(5)
    A, _ = planted(rng, 150, 90, 0.8 ** np.arange(30), dtype)
    rust = randomized_svd(A, 8, method=method, random_state=3, backend="rust")
    reference = randomized_svd(A, 8, method=method, random_state=3, backend="numpy")
    assert rust.U.dtype == dtype and rust.S.dtype == np.finfo(dtype).dtype
    tol = 100 * TOL[dtype]
    assert np.abs(rust.S - reference.S).max() <= tol * reference.S[0]
    # same random numbers, same algorithm: the same factors (the sign convention fixes phases)
    assert np.abs(rust.U - reference.U).max() <= tol * 10
    assert np.abs(rust.Vt - reference.Vt).max() <= tol * 10
    Q = range_finder(A, 8, random_state=3, backend="rust")
    assert np.linalg.norm(Q.conj().T @ Q - np.eye(Q.shape[1])) <= tol


def test_complex_cholesky_qr2_falls_back_on_ill_conditioned_input():
    rng = np.random.default_rng(1)
    A, _ = planted(rng, 200, 20, np.logspace(0, -12, 20))
    Q, R = cholesky_qr2(A)
    assert np.linalg.norm(Q.conj().T @ Q - np.eye(20)) < 1e-12
    assert np.linalg.norm(Q @ R - A) < 1e-12 * np.linalg.norm(A)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("method", ["subspace", "block_krylov"])
def test_complex_randomized_svd_recovers_planted_spectrum(dtype, method):
    rng = np.random.default_rng(2)
    A, s = planted(rng, 300, 200, 0.7 ** np.arange(40), dtype)
    U, S, Vt = randomized_svd(A, 10, method=method, random_state=0)
    assert U.dtype == dtype and Vt.dtype == dtype and S.dtype == np.finfo(dtype).dtype
    exact = np.linalg.svd(A.astype(np.complex128), compute_uv=False)[:10]
    assert np.max(np.abs(S - exact)) <= 50 * TOL[dtype] * s[0]
    # Near-optimal in spectral norm: the best rank-10 error is s[10].
    assert np.linalg.norm(A - (U * S) @ Vt, 2) <= (1 + 1e-3) * s[10] + 50 * TOL[dtype]
    assert np.linalg.norm(U.conj().T @ U - np.eye(10)) <= 50 * TOL[dtype]
    assert np.linalg.norm(Vt @ Vt.conj().T - np.eye(10)) <= 50 * TOL[dtype]
    # The largest entry of each row of Vt is real and positive (the complex "vt" convention).
    pivots = Vt[np.arange(10), np.argmax(np.abs(Vt), axis=1)]
    assert np.all(pivots.real > 0) and np.abs(pivots.imag).max() <= 50 * TOL[dtype]


def test_complex_randomized_svd_on_other_inputs_agrees():
    rng = np.random.default_rng(3)
    A, s = planted(rng, 150, 120, 1.0 / np.arange(1, 31))
    exact = np.linalg.svd(A, compute_uv=False)[:5]
    for data in (xs.asarray(A), sp.csr_matrix(A), aslinearoperator(A)):
        U, S, Vt = randomized_svd(data, 5, n_power_iter=6, random_state=0)
        assert np.max(np.abs(host(S) - exact)) < 1e-10, type(data)
        R = host(U) * host(S) @ host(Vt)
        assert np.linalg.norm(A - R, 2) <= (1 + 1e-6) * s[5]
    # u-based signs: the largest entry of each column of U real positive; same product.
    U, S, Vt = randomized_svd(A, 5, random_state=0, flip_sign="u")
    pivots = U[np.argmax(np.abs(U), axis=0), np.arange(5)]
    assert np.all(pivots.real > 0) and np.abs(pivots.imag).max() < 1e-14
    # Exact rescaling of tiny entries works on complex input too.
    _, S_tiny, _ = randomized_svd(A * 1e-300, 5, random_state=0)
    assert np.allclose(S_tiny * 1e300, S, rtol=1e-12)


def test_complex_range_finder_and_its_tolerance():
    rng = np.random.default_rng(4)
    A, s = planted(rng, 200, 150, 0.5 ** np.arange(30))
    Q = range_finder(A, 8, random_state=0)
    assert Q.shape == (200, 18) and Q.dtype == np.complex128
    assert np.linalg.norm(A - Q @ (Q.conj().T @ A), 2) <= 1.01 * s[18]
    Q = range_finder(A, 30, tol=1e-3, random_state=0)
    residual = np.linalg.norm(A - Q @ (Q.conj().T @ A)) / np.linalg.norm(A)
    assert residual <= 1e-3
    assert Q.shape[1] <= 12  # 0.5**10 ~ 1e-3: about 10 columns, not all 30
    # A real warm start is promoted; a complex one for a real A would lose its imaginary part.
    Q0 = range_finder(A, size=5, random_state=1)
    assert range_finder(A, 5, init=Q0.real.copy(), random_state=0).dtype == np.complex128
    with pytest.raises(TypeError, match="init"):
        range_finder(A.real.copy(), 5, init=Q0)


def test_functions_without_complex_support_raise_type_error_naming_a():
    A = np.eye(20, dtype=np.complex128) * (1 + 1j)
    for call in (
        lambda: svd_certified(A, rank=2),
        lambda: cqrrpt(A),
        lambda: diagonal(A, 10),
        lambda: trace_function(A, "log", n_vectors=4, degree=5),
    ):
        with pytest.raises(TypeError, match="A has unsupported dtype complex128"):
            call()


def hermitian(rng, eigenvalues):
    n = len(eigenvalues)
    U, _ = np.linalg.qr(complex_gaussian(rng, n, n))
    A = (U * eigenvalues) @ U.conj().T
    return (A + A.conj().T) / 2


@pytest.mark.parametrize("method", ["xtrace", "xnystrace", "hutch++", "nystrom++", "hutchinson"])
def test_complex_hermitian_trace_is_accurate(method):
    rng = np.random.default_rng(5)
    eigenvalues = 0.9 ** np.arange(200)
    A = hermitian(rng, eigenvalues)
    true = eigenvalues.sum()
    errors = [trace(A, 60, method=method, random_state=seed) for seed in range(10)]
    relative = np.median([abs(e.value - true) / true for e in errors])
    assert relative < 0.05
    # The error estimate is of the right size (within 5x of the typical error). Hutch++'s covers
    # only its Hutchinson part (as on real input), so it is not checked here.
    if method != "hutch++":
        estimated = np.median([e.error_estimate for e in errors]) / true
        assert relative / 5 < estimated < 5 * relative
    assert all(e.n_matvec <= 60 for e in errors)


def test_complex_hermitian_trace_exact_tolerance_and_libraries():
    rng = np.random.default_rng(6)
    eigenvalues = np.arange(1, 101) ** -2.0
    A = hermitian(rng, eigenvalues)
    true = eigenvalues.sum()
    exact = trace(A, 100)
    assert abs(exact.value - true) < 1e-13 and exact.error_estimate == 0 and exact.n_matvec == 100
    by_tol = trace(A, tol=1e-2, random_state=0)
    assert abs(by_tol.value - true) <= 1e-2 * true
    value = trace(A, 40, random_state=0).value
    for data in (xs.asarray(A), sp.csr_matrix(A), A.astype(np.complex64)):
        assert abs(trace(data, 40, random_state=0).value - value) < 1e-5 * true
    with pytest.raises(ValueError, match="Hermitian"):
        trace(A + 1j * np.triu(np.ones_like(A.real), 1), 10)


def test_complex_dask_input_is_refused_by_name():
    da = pytest.importorskip("dask.array")
    A = da.from_array(np.eye(20, 10, dtype=np.complex128), chunks=(10, 10))
    with pytest.raises(TypeError, match="A is a complex Dask array"):
        randomized_svd(A, 2)
