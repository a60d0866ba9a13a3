"""The Rust recurrences (Chebyshev moments, batched Lanczos; dense and CSR) against the xp reference."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from lorainne import _core, spectral_density, trace_function
from lorainne.trace._recurrences import _chebyshev_moments_xp, _lanczos_xp


def symmetric(rng, n, density=None, dtype=np.float64):
    if density is None:
        G = rng.standard_normal((n, n))
        return ((G + G.T) / np.sqrt(4 * n)).astype(dtype)
    S = sp.random(n, n, density=density, random_state=rng, format="csr")
    return ((S + S.T) / 2 + sp.eye(n)).astype(dtype).tocsr()


def csr_args(S):
    return S.indptr.astype(np.int64), S.indices.astype(np.int64), S.data, S.shape[1]


def tolerance(dtype):
    return 1e-9 if dtype == np.float64 else 2e-3


@given(
    n=st.integers(2, 40),
    s=st.integers(1, 6),
    steps=st.integers(1, 5),
    full=st.booleans(),
    sparse=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_chebyshev_moments_match_reference(n, s, steps, full, sparse, dtype, seed):
    rng = np.random.default_rng(seed)
    A = symmetric(rng, n, density=0.3 if sparse else None, dtype=dtype)
    dense = A.toarray() if sparse else A
    lam = np.linalg.eigvalsh(dense.astype(np.float64))
    center, half = float((lam[0] + lam[-1]) / 2), float((lam[-1] - lam[0]) / 2 * 1.05 + 1e-3)
    X = rng.standard_normal((n, s)).astype(dtype)
    ref = _chebyshev_moments_xp(lambda Y: A @ Y, X, center, half, steps, full)
    if sparse:
        got = _core.trace_chebyshev_csr(*csr_args(A), X, center, half, steps, full, 1)
    else:
        got = _core.trace_chebyshev(A, X, center, half, steps, full, 2)
    got = np.reshape(got, ref.shape)
    scale = float(np.sum(X.astype(np.float64) ** 2))
    np.testing.assert_allclose(got, ref, rtol=tolerance(dtype), atol=tolerance(dtype) * scale)


@given(
    n=st.integers(8, 40),
    s=st.integers(1, 5),
    steps=st.integers(1, 4),
    sparse=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_lanczos_matches_reference(n, s, steps, sparse, dtype, seed):
    rng = np.random.default_rng(seed)
    A = symmetric(rng, n, density=0.4 if sparse else None, dtype=dtype)
    V = rng.standard_normal((n, s))
    V = (V / np.linalg.norm(V, axis=0)).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    alpha_ref, beta_ref, _ = _lanczos_xp(lambda Y: A @ Y, V, steps, eps)
    if sparse:
        alpha, beta = _core.trace_lanczos_csr(*csr_args(A), V, steps, 1)
    else:
        alpha, beta = _core.trace_lanczos(A, V, steps, 2)
    tol = 1e-8 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(np.reshape(alpha, (s, steps)), alpha_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.reshape(beta, (s, steps)), beta_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("method", ["slq", "chebyshev"])
def test_public_functions_agree_across_backends(sparse, method):
    rng = np.random.default_rng(0)
    A = symmetric(rng, 150, density=0.05 if sparse else None)
    if not sparse:
        A = A + 3 * np.eye(150)
    else:
        A = (A + 3 * sp.eye(150)).tocsr()
    rust = trace_function(A, "log", n_vectors=8, degree=12, method=method, random_state=1, backend="rust")
    ref = trace_function(A, "log", n_vectors=8, degree=12, method=method, random_state=1, backend="numpy")
    assert rust.value == pytest.approx(ref.value, rel=1e-10)
    assert rust.n_matvec == ref.n_matvec
    t = np.linspace(2, 4, 50)
    for density in ("nystrom++", "kpm", "slq"):
        a = spectral_density(A, t, sigma=0.2, n_vectors=6, method=density, random_state=2, backend="rust")
        b = spectral_density(A, t, sigma=0.2, n_vectors=6, method=density, random_state=2, backend="numpy")
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_rust_rejects_bad_csr_and_shapes():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="indices"):
        _core.trace_chebyshev_csr(np.array([0, 1, 2, 3]), np.array([0, 1, 7]), np.ones(3), 3, X, 0.0, 1.0, 2, True)
    with pytest.raises(ValueError, match="indptr"):
        _core.trace_lanczos_csr(np.array([0, 2, 1, 3]), np.array([0, 1, 2]), np.ones(3), 3, X, 2)
    with pytest.raises(ValueError, match="rows"):
        _core.trace_lanczos(np.eye(4), X, 2)
    with pytest.raises(ValueError, match="half_width"):
        _core.trace_chebyshev(np.eye(3), X, 0.0, 0.0, 2, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.trace_lanczos(np.eye(3, dtype=np.int64), X, 2)


def test_rust_backend_only_for_explicit_matrices():
    from scipy.sparse.linalg import aslinearoperator

    with pytest.raises(ValueError, match="backend='rust'"):
        trace_function(aslinearoperator(np.eye(5) * 2), "log", n_vectors=2, degree=2, backend="rust")
