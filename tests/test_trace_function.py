"""trace_function: SLQ (Gauss quadrature weights) and Chebyshev estimates of tr f(A)."""

import numpy as np
import pytest
import scipy.sparse as sp

from lorainne import trace_function
from lorainne.trace._recurrences import _gauss_quadrature, _lanczos_xp


def grid_laplacian(k=50, shift=0.05):
    L1 = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    A = (sp.kron(L1, sp.eye(k)) + sp.kron(sp.eye(k), L1) + shift * sp.eye(k * k)).tocsr()
    d = 2 - 2 * np.cos(np.pi * np.arange(1, k + 1) / (k + 1))
    return A, np.add.outer(d, d).ravel() + shift


def planted(n, eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * eigenvalues) @ U.T


def test_slq_log_determinant_of_grid_laplacian():
    A, lam = grid_laplacian()
    exact = np.sum(np.log(lam))
    assert exact == pytest.approx(3009.17, abs=0.01)
    est = trace_function(A, "log", n_vectors=40, degree=30, random_state=0)
    assert abs(est.value - exact) / exact <= 2.5e-3
    assert est.n_matvec == 40 * 30
    assert abs(est.value - exact) <= 3 * est.error_estimate


def test_chebyshev_log_determinant_of_grid_laplacian():
    A, lam = grid_laplacian()
    exact = np.sum(np.log(lam))
    est = trace_function(A, "log", n_vectors=40, degree=60, method="chebyshev", random_state=0)
    assert abs(est.value - exact) / exact <= 4e-3
    assert est.n_matvec == 40 * 30 + 30  # 30 Lanczos steps estimate the spectrum bounds


def test_gauss_quadrature_is_exact_for_polynomials():
    """k Lanczos steps integrate polynomials of degree 2k - 1 exactly: v^T A^p v."""
    rng = np.random.default_rng(0)
    n, k = 80, 6
    A = planted(n, rng.uniform(-2, 3, n))
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=0)
    alpha, beta, length = _lanczos_xp(lambda X: A @ X, v, k, np.finfo(float).eps)
    nodes, weights = _gauss_quadrature(alpha, beta, length)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    for p in range(2 * k):
        exact = np.einsum("ir,ir->r", v, np.linalg.matrix_power(A, p) @ v)
        np.testing.assert_allclose(np.sum(weights * nodes**p, axis=1), exact, rtol=1e-8, atol=1e-8)


def test_lanczos_breakdown_on_low_dimensional_krylov_space():
    A = np.diag(np.r_[np.ones(20), 2 * np.ones(20)])  # two distinct eigenvalues
    v = np.ones((40, 2)) / np.sqrt(40)
    alpha, beta, length = _lanczos_xp(lambda X: A @ X, v, 10, np.finfo(float).eps)
    assert list(length) == [2, 2]
    nodes, weights = _gauss_quadrature(alpha, beta, length)
    np.testing.assert_allclose(np.sort(nodes[0, :2]), [1, 2], atol=1e-12)


@pytest.mark.parametrize(
    "f, g", [("log", np.log), ("inv", lambda x: 1 / x), ("exp", np.exp), ("sqrt", np.sqrt), (np.cbrt, np.cbrt)]
)
@pytest.mark.parametrize("method, degree", [("slq", 15), ("chebyshev", 40)])
def test_named_and_callable_functions(f, g, method, degree):
    lam = np.linspace(0.5, 3.0, 400)
    A = planted(400, lam, seed=1)
    exact = np.sum(g(lam))
    est = trace_function(A, f, n_vectors=30, degree=degree, method=method, random_state=0)
    assert abs(est.value - exact) <= 4 * est.error_estimate + 1e-6 * abs(exact)
    assert abs(est.value - exact) / abs(exact) < 0.02


def test_slq_with_small_matrix_is_exact():
    lam = np.linspace(1.0, 5.0, 12)
    A = planted(12, lam)
    est = trace_function(A, "log", n_vectors=5, degree=50, random_state=0)  # degree capped at n
    assert est.value == pytest.approx(np.sum(np.log(lam)), rel=0.3)  # Hutchinson noise only


def test_linear_operator_and_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    from scipy.sparse.linalg import aslinearoperator

    lam = np.linspace(1.0, 2.0, 200)
    A = planted(200, lam)
    ref = trace_function(A, "log", n_vectors=10, degree=10, random_state=0, backend="numpy")
    plain = trace_function(A, "log", n_vectors=10, degree=10, random_state=0, control_variates=False)
    assert trace_function(xps.asarray(A), "log", n_vectors=10, degree=10, random_state=0).value == pytest.approx(
        ref.value, rel=1e-10
    )
    # an operator has no exact tr(A), tr(A^2): no control variates
    assert trace_function(aslinearoperator(A), "log", n_vectors=10, degree=10, random_state=0).value == pytest.approx(
        plain.value, rel=1e-10
    )
    with pytest.raises(ValueError, match="control_variates"):
        trace_function(aslinearoperator(A), "log", n_vectors=10, degree=10, control_variates=True)
    cheb = trace_function(
        A, "exp", n_vectors=10, degree=20, method="chebyshev", spectrum_bounds=(0.9, 2.1), random_state=0
    )
    cheb_x = trace_function(
        xps.asarray(A), "exp", n_vectors=10, degree=20, method="chebyshev", spectrum_bounds=(0.9, 2.1), random_state=0
    )
    assert cheb_x.value == pytest.approx(cheb.value, rel=1e-10)


def test_jackson_damping_runs_and_is_close_for_smooth_f():
    lam = np.linspace(1.0, 2.0, 200)
    A = planted(200, lam)
    est = trace_function(
        A,
        "exp",
        n_vectors=20,
        degree=30,
        method="chebyshev",
        damping="jackson",
        spectrum_bounds=(0.9, 2.1),
        random_state=0,
    )
    assert abs(est.value - np.sum(np.exp(lam))) / np.sum(np.exp(lam)) < 0.02


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(f="log", n_vectors=0, degree=3), ValueError, "n_vectors"),
        (dict(f="log", n_vectors=2, degree=0), ValueError, "degree"),
        (dict(f="cosh", n_vectors=2, degree=3), ValueError, "f must be"),
        (dict(f="log", n_vectors=2, degree=3, method="exact"), ValueError, "method"),
        (dict(f="log", n_vectors=2, degree=3, spectrum_bounds=(2, 1)), ValueError, "spectrum_bounds"),
        (dict(f="log", n_vectors=2, degree=3, damping="fejer"), ValueError, "damping"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        trace_function(np.eye(5) * 2, **kwargs)


def test_nonsymmetric_and_indefinite_log_raise():
    with pytest.raises(ValueError, match="symmetric"):
        trace_function(np.triu(np.ones((5, 5))), "log", n_vectors=2, degree=3)
    with pytest.raises(ValueError, match="square"):
        trace_function(np.ones((5, 4)), "log", n_vectors=2, degree=3)
    with pytest.raises(ValueError, match="positive definite"):
        trace_function(np.diag([-1.0, 1, 2, 3]), "log", n_vectors=2, degree=4, random_state=0)


def test_control_variates_reduce_the_error():
    A, lam = grid_laplacian(k=30)
    exact = np.sum(np.log(lam))

    def rms(cv):
        return np.sqrt(
            np.mean(
                [
                    (
                        trace_function(A, "log", n_vectors=20, degree=20, control_variates=cv, random_state=s).value
                        - exact
                    )
                    ** 2
                    for s in range(8)
                ]
            )
        )

    assert rms(True) < 0.8 * rms(False)


def test_sklearn_diabetes_log_determinant():
    from sklearn.datasets import load_diabetes

    X = load_diabetes().data  # 442 x 10
    K = np.exp(-np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2) / 0.5) + 0.1 * np.eye(len(X))  # a GP kernel matrix
    exact = np.linalg.slogdet(K)[1]
    est = trace_function(K, "log", n_vectors=30, degree=25, random_state=0)
    assert abs(est.value - exact) <= 3 * est.error_estimate + 1e-3 * abs(exact)


@pytest.mark.parametrize("method", ["slq", "chebyshev"])
def test_float32_noncontiguous_and_readonly_inputs(method):
    lam = np.linspace(1.0, 3.0, 300)
    big = np.zeros((600, 600))
    big[::2, ::2] = planted(300, lam, seed=4)
    A = big[::2, ::2]  # a strided view
    A.setflags(write=False)
    exact = np.sum(np.log(lam))
    est64 = trace_function(A, "log", n_vectors=20, degree=15, method=method, spectrum_bounds=(0.9, 3.1), random_state=0)
    est32 = trace_function(
        A.astype(np.float32), "log", n_vectors=20, degree=15, method=method, spectrum_bounds=(0.9, 3.1), random_state=0
    )
    assert abs(est64.value - exact) <= 4 * est64.error_estimate + 1e-9
    assert est32.value == pytest.approx(est64.value, rel=1e-4)
    S = sp.csr_matrix(planted(300, lam, seed=4)).astype(np.float32)
    est_sparse = trace_function(
        S, "log", n_vectors=20, degree=15, method=method, spectrum_bounds=(0.9, 3.1), random_state=0
    )
    assert est_sparse.value == pytest.approx(est64.value, rel=1e-4)
