"""Randomized trace estimators: formulas against brute force, budgets, bias, error bands, honesty."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from lorainne import TraceEstimate, trace
from lorainne.trace._estimators import _shifted_nystrom, _xnystrace_from, _xtrace_from

METHODS = ("hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace")


def planted(n, eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * eigenvalues) @ U.T


@pytest.fixture(scope="module")
def spectra():
    n = 1000
    return {
        "poly2": planted(n, np.arange(1, n + 1) ** -2.0, seed=1),
        "exp": planted(n, 0.9 ** np.arange(n), seed=2),
        "step": planted(n, np.r_[np.ones(50), 1e-3 * np.ones(n - 50)], seed=3),
    }


class Counting:
    """Any object with shape and matmat: counts the columns it multiplies."""

    def __init__(self, A):
        self.A, self.shape, self.dtype, self.count = A, A.shape, A.dtype, 0

    def matmat(self, X):
        self.count += X.shape[1]
        return self.A @ X


class VectorOnly:
    def __init__(self, A):
        self.A, self.shape, self.count = A, A.shape, 0

    def matvec(self, x):
        self.count += 1
        return self.A @ x


# --------------------------------------------------------------------------- formulas vs brute force


def _projector(Y):
    Q, _ = np.linalg.qr(Y)
    return Q @ Q.T


def brute_xtrace(A, Omega):
    n, m = Omega.shape
    Y = A @ Omega
    ests = []
    for i in range(m):
        P = _projector(np.delete(Y, i, axis=1))
        w = Omega[:, i]
        r = (np.eye(n) - P) @ w
        ests.append(np.trace(P @ A @ P) + (n - m + 1) / (r @ r) * (r @ A @ r))
    return np.array(ests)


def brute_xnystrace(A, Omega):
    n, m = Omega.shape
    ests = []
    for i in range(m):
        Om = np.delete(Omega, i, axis=1)
        Y = A @ Om
        Ahat = Y @ np.linalg.solve(Om.T @ Y, Y.T)
        w = Omega[:, i]
        r = w - _projector(Om) @ w
        ests.append(np.trace(Ahat) + (n - m + 1) / (r @ r) * (w @ (A - Ahat) @ w))
    return np.array(ests)


@pytest.mark.parametrize("seed", range(3))
def test_xtrace_downdating_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = 30, 6
    A = rng.standard_normal((n, n))  # nonsymmetric: XTrace needs no symmetry
    Omega = rng.standard_normal((n, m))
    Q, R = np.linalg.qr(A @ Omega)
    est, tau = _xtrace_from(np, n, Omega, Q, R, A @ Q, np.finfo(float).eps)
    np.testing.assert_allclose(est, brute_xtrace(A, Omega), rtol=1e-9, atol=1e-9)
    for j in range(m):  # the jackknife value is XTrace on the other m - 1 vectors
        np.testing.assert_allclose(tau[j], brute_xtrace(A, np.delete(Omega, j, axis=1)).mean(), rtol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_xnystrace_downdating_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = 30, 6
    G = rng.standard_normal((n, n))
    A = G @ G.T / n
    Omega = rng.standard_normal((n, m))
    from lorainne._operators import as_operator

    B, Linv, nu = _shifted_nystrom(np, as_operator(A), Omega, A @ Omega)
    est, tau = _xnystrace_from(np, n, Omega, B, Linv, nu)
    np.testing.assert_allclose(est, brute_xnystrace(A, Omega), rtol=1e-8)
    for j in range(m):
        np.testing.assert_allclose(tau[j], brute_xnystrace(A, np.delete(Omega, j, axis=1)).mean(), rtol=1e-8)


# --------------------------------------------------------------------------- budget, API


@pytest.mark.parametrize("method", ("auto",) + METHODS)
@pytest.mark.parametrize("budget", [1, 2, 3, 4, 5, 7, 20, 49, 50, 80])
def test_budget_is_respected(method, budget):
    rng = np.random.default_rng(budget)
    G = rng.standard_normal((50, 50))
    A = Counting(G @ G.T)
    est = trace(A, budget, method=method, psd=True, random_state=0)
    assert A.count == est.n_matvec <= budget
    assert est.n_matvec >= min(budget, 50) - 1  # never wastes more than one product (odd XTrace budgets)
    if budget >= 50:  # the exact regime
        assert est.error_estimate == 0.0
        assert est.value == pytest.approx(np.trace(G @ G.T), rel=1e-12)


def test_estimate_type_and_float():
    A = np.diag(np.arange(1.0, 101.0))
    est = trace(A, 30, random_state=0)
    assert isinstance(est, TraceEstimate)
    value, error, n_matvec = est
    assert float(est) == value and isinstance(value, float) and isinstance(error, float)
    assert n_matvec == 30


def test_matvec_only_object_and_linear_operator_and_sparse():
    rng = np.random.default_rng(0)
    A = planted(200, 0.7 ** np.arange(200))
    exact = np.trace(A)
    vec = VectorOnly(A)
    assert abs(trace(vec, 40, psd=True, random_state=0).value - exact) < 1e-4
    assert vec.count <= 40
    assert abs(trace(aslinearoperator(A), 40, random_state=0).value - exact) < 5e-3
    S = sp.random(300, 300, density=0.02, random_state=1, format="csr") + sp.eye(300) * 5
    est = trace(S, 60, method="hutch++", random_state=rng)
    assert abs(est.value - S.diagonal().sum()) <= 5 * est.error_estimate


def test_float32_and_integer_input():
    A = planted(300, 0.8 ** np.arange(300))
    est32 = trace(A.astype(np.float32), 40, psd=True, random_state=0)
    assert abs(est32.value - np.trace(A)) < 1e-3
    Ai = np.diag(np.arange(1, 301))  # integers are promoted
    assert abs(trace(Ai, 100, random_state=0).value - Ai.trace()) / Ai.trace() < 0.05


def test_array_api_strict_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    A = planted(120, 0.85 ** np.arange(120))
    for method in METHODS:
        ref = trace(A, 30, method=method, random_state=3)
        got = trace(xps.asarray(A), 30, method=method, random_state=3)
        assert got.value == pytest.approx(ref.value, rel=1e-10)
        assert got.n_matvec == ref.n_matvec


def test_input_not_modified():
    A = planted(100, 0.9 ** np.arange(100))
    A.setflags(write=False)
    copy = A.copy()
    trace(A, 20, psd=True, random_state=0)
    np.testing.assert_array_equal(A, copy)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(A=np.ones((3, 4)), n_matvec=2), ValueError, "square"),
        (dict(A=np.full((3, 3), np.nan), n_matvec=2), ValueError, "NaN"),
        (dict(A=np.eye(3), n_matvec=0), ValueError, "n_matvec"),
        (dict(A=np.eye(3), n_matvec=2.5), TypeError, "n_matvec"),
        (dict(A=np.eye(3), n_matvec=2, method="magic"), ValueError, "method"),
        (dict(A=np.eye(3), n_matvec=2, backend="rust"), ValueError, "backend"),
        (dict(A=np.eye(3, dtype=np.clongdouble), n_matvec=2), TypeError, "dtype"),
        (dict(A=np.eye(3) + 1j * np.triu(np.ones((3, 3)), 1), n_matvec=2), ValueError, "Hermitian"),
        (dict(A=np.eye(3, dtype=np.float16), n_matvec=2), TypeError, "dtype"),
        (dict(A=np.ones(3), n_matvec=2), ValueError, "2-D"),
        (dict(A=np.zeros((0, 0)), n_matvec=2), ValueError, "empty"),
        (dict(A="matrix", n_matvec=2), TypeError, "A"),
        (dict(A=np.eye(3), n_matvec=2, psd="yes"), TypeError, "psd"),
    ],
)
def test_bad_input(kwargs, error, match):
    A = kwargs.pop("A")
    with pytest.raises(error, match=match):
        trace(A, **kwargs)


def test_indefinite_matrix_with_psd_method_raises():
    A = planted(200, np.r_[-np.ones(100), np.ones(100)] * 3)
    with pytest.raises(ValueError, match="positive semidefinite"):
        trace(A, 40, method="xnystrace", random_state=0)


def test_low_rank_input_is_exact():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((300, 5))
    A = G @ G.T
    for method in ("xtrace", "xnystrace", "hutch++", "nystrom++"):
        est = trace(A, 40, method=method, random_state=0)
        assert est.value == pytest.approx(np.trace(A), rel=1e-8), method


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("method", ("hutchinson", "hutch++", "xtrace"))
def test_unbiased_on_indefinite_matrix(method):
    rng = np.random.default_rng(7)
    n = 60
    A = planted(n, rng.standard_normal(n) * np.linspace(3, 0.1, n), seed=5)
    exact = np.trace(A)
    values = np.array([trace(A, 12, method=method, random_state=s).value for s in range(300)])
    stderr = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - exact) < 4 * stderr


# Medians of the relative error over seeds at n = 1000 (reference ports, from the issue) and
# the goal: within 1.5x.
REFERENCE = [
    ("poly2", 80, "hutch++", 6.6e-4),
    ("poly2", 80, "nystrom++", 8.7e-4),
    ("poly2", 80, "xtrace", 3.7e-4),
    ("poly2", 80, "xnystrace", 2.5e-4),
    ("exp", 160, "xtrace", 1.3e-5),
    ("exp", 160, "xnystrace", 8.6e-8),
]


@pytest.mark.parametrize("name, m, method, reference", REFERENCE)
def test_error_matches_reference(spectra, name, m, method, reference):
    A = spectra[name]
    exact = np.trace(A)
    errors = [abs(trace(A, m, method=method, random_state=s).value - exact) / exact for s in range(11)]
    assert np.median(errors) <= 1.5 * reference


@pytest.mark.parametrize("name", ("poly2", "exp", "step"))
@pytest.mark.parametrize("method", METHODS)
def test_error_estimates_are_honest(spectra, name, method):
    A = spectra[name]
    exact = np.trace(A)
    hits = 0
    for s in range(15):
        est = trace(A, 60, method=method, random_state=100 + s)
        hits += abs(est.value - exact) <= 2 * est.error_estimate
    assert hits >= 12


def test_auto_is_not_much_worse_than_hutchinson_on_a_flat_spectrum():
    A = planted(400, np.linspace(1.0, 2.0, 400), seed=9)
    exact = np.trace(A)

    def rms(method):
        return np.sqrt(np.mean([(trace(A, 40, method=method, random_state=s).value - exact) ** 2 for s in range(40)]))

    # XTrace spends half its products on the sketch: measured 1.8x Hutchinson's RMS error here.
    assert rms("auto") <= 2.0 * rms("hutchinson")


def test_sklearn_digits_gram():
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.int64)  # integer pixels, 1797 x 64
    A = X.T @ X  # integer Gram matrix, promoted to float64
    exact = float(np.trace(A))
    est = trace(A, 40, psd=True, random_state=0)
    assert abs(est.value - exact) / exact < 1e-2
    assert abs(est.value - exact) <= 3 * est.error_estimate


@pytest.mark.gpu
def test_cupy_path_matches_numpy():
    import cupy

    A = planted(300, 0.8 ** np.arange(300))
    for method in METHODS:
        ref = trace(A, 40, method=method, random_state=0)
        got = trace(cupy.asarray(A), 40, method=method, random_state=0)
        assert got.value == pytest.approx(ref.value, rel=1e-8)
    from lorainne import spectral_density, trace_function

    ref = trace_function(A + np.eye(300), "log", n_vectors=8, degree=10, random_state=0)
    got = trace_function(cupy.asarray(A + np.eye(300)), "log", n_vectors=8, degree=10, random_state=0)
    assert got.value == pytest.approx(ref.value, rel=1e-8)
    t = cupy.linspace(0, 1, 50)
    phi = spectral_density(cupy.asarray(A), t, sigma=0.05, n_vectors=8, spectrum_bounds=(-0.1, 1.1), random_state=0)
    assert isinstance(phi, cupy.ndarray)


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_spectra_give_finite_estimates(method):
    n = 200
    for lam in (2 * np.ones(n), np.r_[np.ones(5), np.zeros(n - 5)], np.r_[np.ones(100), np.zeros(100)]):
        A = planted(n, lam, seed=6)
        est = trace(A, 40, method=method, random_state=0)
        assert np.isfinite(est.value) and np.isfinite(est.error_estimate)
        assert abs(est.value - lam.sum()) <= 4 * est.error_estimate + 1e-8 * lam.sum()
    if method in ("xtrace", "xnystrace"):  # exact on A = c I (the improved scaling)
        assert trace(2 * np.eye(n), 40, method=method, random_state=0).value == pytest.approx(2 * n, rel=1e-10)
