"""trace_parametric and spectral_density: shared vectors across t, accuracy, normalization."""

import numpy as np
import pytest

from lorainne import spectral_density, trace_parametric


def planted(n, eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * eigenvalues) @ U.T


class Counting:
    def __init__(self, A):
        self.A, self.shape, self.dtype, self.count = A, A.shape, A.dtype, 0

    def matmat(self, X):
        self.count += X.shape[1]
        return self.A @ X


def expm1(t, x):
    return np.expm1(t * x)


@pytest.mark.parametrize("method", ["nystrom++", "hutchinson", "nystrom"])
def test_products_do_not_depend_on_the_number_of_t(method):
    A = planted(100, 0.8 ** np.arange(100))
    counts = []
    for size in (10, 1000):
        op = Counting(A)
        trace_parametric(op, expm1, np.linspace(0.5, 2, size), n_vectors=10, degree=12, method=method, random_state=0)
        counts.append(op.count)
    assert counts[0] == counts[1]
    expected_steps = 12 if method != "hutchinson" else 6
    assert counts[0] == 10 * expected_steps + 30  # + 30 Lanczos steps for the spectrum bounds


def test_accuracy_against_eigenvalues():
    lam = 0.7 ** np.arange(400)
    A = planted(400, lam, seed=1)
    t = np.linspace(0.5, 2.0, 200)
    exact = np.expm1(t[:, None] * lam[None, :]).sum(axis=1)
    errors = {}
    for method in ("nystrom++", "hutchinson", "nystrom"):
        est = trace_parametric(
            A, expm1, t, n_vectors=40, degree=12, method=method, spectrum_bounds=(0, 1), random_state=0
        )
        errors[method] = np.max(np.abs(est - exact) / exact)
    assert errors["nystrom++"] < 5e-3
    assert errors["nystrom"] < 5e-3
    assert errors["hutchinson"] < 0.2
    assert errors["nystrom++"] < errors["hutchinson"] / 5


@pytest.fixture(scope="module")
def spread():
    rng = np.random.default_rng(0)
    lam = np.sort(rng.uniform(0, 1, 200))
    return planted(200, lam, seed=2), lam


def exact_density(t, lam, sigma):
    return np.exp(-((t[:, None] - lam[None, :]) ** 2) / (2 * sigma**2)).mean(axis=1) / (sigma * np.sqrt(2 * np.pi))


def test_nystrompp_beats_kpm_at_equal_products(spread):
    A, lam = spread
    sigma = 0.01
    t = np.linspace(-0.1, 1.1, 400)
    exact = exact_density(t, lam, sigma)
    # Nystrom++ runs `degree` block steps, KPM ceil(degree / 2): KPM gets twice the vectors.
    op_n, op_k = Counting(A), Counting(A)
    nys = spectral_density(op_n, t, sigma=sigma, n_vectors=40, spectrum_bounds=(-0.05, 1.05), random_state=0)
    kpm = spectral_density(
        op_k, t, sigma=sigma, n_vectors=80, method="kpm", spectrum_bounds=(-0.05, 1.05), random_state=0
    )
    assert abs(op_n.count - op_k.count) <= 80
    l1_nys = np.trapezoid(np.abs(nys - exact), t)
    l1_kpm = np.trapezoid(np.abs(kpm - exact), t)
    assert l1_nys < 0.01
    assert l1_nys < l1_kpm / 5


@pytest.mark.parametrize("method", ["nystrom++", "kpm", "slq"])
def test_density_integrates_to_one_and_is_close(spread, method):
    A, lam = spread
    sigma = 0.05
    t = np.linspace(-0.3, 1.3, 500)
    exact = exact_density(t, lam, sigma)
    phi = spectral_density(A, t, sigma=sigma, n_vectors=30, method=method, random_state=1)
    assert np.trapezoid(phi, t) == pytest.approx(1.0, abs=0.03)
    assert np.trapezoid(np.abs(phi - exact), t) < 0.1
    normalized = spectral_density(A, t, sigma=sigma, n_vectors=30, method=method, normalize=True, random_state=1)
    assert np.trapezoid(normalized, t) == pytest.approx(1.0, abs=1e-12)
    assert np.all(normalized >= 0)


def test_array_api_strict_and_output_library():
    xps = pytest.importorskip("array_api_strict")
    A = planted(80, np.linspace(0, 1, 80))
    t = np.linspace(0, 1, 30)
    ref = spectral_density(
        A, t, sigma=0.1, n_vectors=6, degree=30, spectrum_bounds=(-0.1, 1.1), random_state=0, backend="numpy"
    )
    got = spectral_density(
        xps.asarray(A), xps.asarray(t), sigma=0.1, n_vectors=6, degree=30, spectrum_bounds=(-0.1, 1.1), random_state=0
    )
    assert type(got).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-9, atol=1e-12)
    for method in ("kpm", "slq"):
        ref = spectral_density(
            A, t, sigma=0.1, n_vectors=6, method=method, spectrum_bounds=(-0.1, 1.1), random_state=0, backend="numpy"
        )
        got = spectral_density(
            xps.asarray(A), t, sigma=0.1, n_vectors=6, method=method, spectrum_bounds=(-0.1, 1.1), random_state=0
        )
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(t=[0.0], sigma=0.0, n_vectors=2), ValueError, "sigma"),
        (dict(t=[0.0], sigma=np.inf, n_vectors=2), ValueError, "sigma"),
        (dict(t=[], sigma=0.1, n_vectors=2), ValueError, "t must"),
        (dict(t=[np.nan], sigma=0.1, n_vectors=2), ValueError, "NaN"),
        (dict(t=[[0.0]], sigma=0.1, n_vectors=2), ValueError, "1-D"),
        (dict(t=[0.0], sigma=0.1, n_vectors=0), ValueError, "n_vectors"),
        (dict(t=[0.0], sigma=0.1, n_vectors=2, degree=0), ValueError, "degree"),
        (dict(t=[0.0], sigma=0.1, n_vectors=2, method="exact"), ValueError, "method"),
        (dict(t=[0.0], sigma=0.1, n_vectors=2, normalize="yes"), TypeError, "normalize"),
    ],
)
def test_density_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        spectral_density(np.eye(4), **kwargs)


def test_parametric_bad_input():
    with pytest.raises(TypeError, match="callable"):
        trace_parametric(np.eye(4), "log", [1.0], n_vectors=2, degree=3)
    with pytest.raises(ValueError, match="method"):
        trace_parametric(np.eye(4), expm1, [1.0], n_vectors=2, degree=3, method="kpm")
    with pytest.raises(ValueError, match="symmetric"):
        trace_parametric(np.triu(np.ones((4, 4))), expm1, [1.0], n_vectors=2, degree=3)


def test_sklearn_digits_covariance_density():
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.int64)
    C = np.cov(X, rowvar=False)  # 64 x 64 covariance, eigenvalues 0 .. ~180
    lam = np.linalg.eigvalsh(C)
    t = np.linspace(-20, 200, 300)
    sigma = 5.0
    phi = spectral_density(C, t, sigma=sigma, n_vectors=20, random_state=0)
    assert np.trapezoid(np.abs(phi - exact_density(t, lam, sigma)), t) < 0.1
