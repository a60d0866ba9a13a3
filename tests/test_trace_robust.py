"""The trace estimators on tiny and huge entries (exact power-of-two rescaling), zero and
indefinite matrices, f < 0 for the Nystrom methods and a sigma below the resolution.
"""

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from lorainne import spectral_density, trace, trace_function, trace_parametric
from lorainne.trace import TRACE_METHODS

SCALES = [1e-300, 1e-200, 1e200, 1e300]


def spd(n=80, lo=1.0, hi=4.0, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * np.linspace(lo, hi, n)) @ U.T


def decaying_psd(n=80, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * 0.8 ** np.arange(n)) @ U.T


# ----------------------------------------------------------------- scale


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", TRACE_METHODS)
def test_trace_scaled_input_gives_the_scaled_estimate(scale, method):
    A = decaying_psd()
    est = trace(A, 30, method=method, random_state=0)
    scaled = A * scale
    before = scaled.copy()
    est2 = trace(scaled, 30, method=method, random_state=0)
    np.testing.assert_array_equal(scaled, before)
    assert est2.value / scale == pytest.approx(est.value, rel=1e-12)
    assert est2.error_estimate / scale == pytest.approx(est.error_estimate, rel=1e-9)
    assert est2.error_estimate > 0


@pytest.mark.parametrize("scale", SCALES)
def test_trace_scaled_sparse_and_array_api(scale):
    A = decaying_psd()
    expected = trace(A, 30, random_state=0).value
    assert trace(xps.asarray(A * scale), 30, random_state=0).value / scale == pytest.approx(expected, rel=1e-12)
    S = sp.csr_matrix(np.where(np.abs(A) > 1e-2, A, 0.0))
    expected_sparse = trace(S, 30, random_state=0).value
    assert trace(S * scale, 30, random_state=0).value / scale == pytest.approx(expected_sparse, rel=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("f", ["log", "sqrt", "inv"])
@pytest.mark.parametrize("method", ["slq", "chebyshev"])
@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_trace_function_scaled_input(scale, f, method, backend):
    A = spd()
    kwargs = dict(n_vectors=8, degree=12, method=method, random_state=0, backend=backend)
    est = trace_function(A, f, **kwargs)
    est2 = trace_function(A * scale, f, **kwargs)
    expected = {"log": est.value + 80 * np.log(scale), "sqrt": est.value * np.sqrt(scale), "inv": est.value / scale}
    assert est2.value == pytest.approx(expected[f], rel=1e-10)


def test_trace_function_scaled_bounds_follow_the_matrix():
    A = spd()
    est = trace_function(
        A, "log", n_vectors=8, degree=12, method="chebyshev", spectrum_bounds=(0.9, 4.1), random_state=0
    )
    est2 = trace_function(
        A * 1e-300,
        "log",
        n_vectors=8,
        degree=12,
        method="chebyshev",
        spectrum_bounds=(0.9e-300, 4.1e-300),
        random_state=0,
    )
    assert est2.value == pytest.approx(est.value + 80 * np.log(1e-300), rel=1e-10)


# ----------------------------------------------------------------- zero and indefinite matrices


@pytest.mark.parametrize("method", TRACE_METHODS)
def test_trace_of_zero_matrix_is_exactly_zero(method):
    est = trace(np.zeros((80, 80)), 30, method=method)
    assert (est.value, est.error_estimate) == (0.0, 0.0)
    est = trace(sp.csr_matrix((80, 80)), 30, method=method)
    assert (est.value, est.error_estimate) == (0.0, 0.0)


@pytest.mark.parametrize("method", ["xtrace", "hutchinson", "hutch++"])
def test_trace_of_zero_operator_is_zero(method):
    est = trace(aslinearoperator(np.zeros((80, 80))), 30, method=method, random_state=0)
    assert est.value == 0.0 and est.error_estimate == 0.0


@pytest.mark.parametrize("f", ["log", "sqrt", "inv"])
@pytest.mark.parametrize("method", ["slq", "chebyshev"])
def test_trace_function_zero_matrix_raises(f, method):
    with pytest.raises(ValueError, match=f"f='{f}' needs a"):
        trace_function(np.zeros((80, 80)), f, n_vectors=5, degree=10, method=method, random_state=0)


@pytest.mark.parametrize("f", ["log", "sqrt", "inv"])
def test_trace_function_chebyshev_indefinite_raises(f):
    A = spd(lo=-1.0, hi=4.0)
    with pytest.raises(ValueError, match=f"f='{f}' needs a"):
        trace_function(A, f, n_vectors=5, degree=10, method="chebyshev", random_state=0)
    with pytest.raises(ValueError, match="spectrum_bounds"):
        trace_function(spd(), f, n_vectors=5, degree=10, method="chebyshev", spectrum_bounds=(-1.0, 5.0))


# ----------------------------------------------------------------- trace_parametric: f < 0


@pytest.mark.parametrize("method", ["nystrom++", "nystrom"])
def test_trace_parametric_nystrom_rejects_negative_f(method):
    A = decaying_psd(200)
    t = np.linspace(0.5, 2.0, 20)
    with pytest.raises(ValueError, match=r"f must satisfy f\(t, x\) >= 0"):
        trace_parametric(A, lambda t, x: -np.expm1(t * x), t, n_vectors=20, degree=10, method=method, random_state=0)
    est = trace_parametric(A, lambda t, x: -np.expm1(t * x), t, n_vectors=20, degree=10, method="hutchinson")
    assert np.all(est < 0)


def test_trace_parametric_nystrom_accepts_nonnegative_f_with_estimated_bounds():
    lam = 0.8 ** np.arange(200)
    A = decaying_psd(200)
    t = np.linspace(0.5, 2.0, 20)
    est = trace_parametric(A, lambda t, x: np.expm1(t * x), t, n_vectors=30, degree=12, random_state=0)
    exact = np.expm1(t[:, None] * lam[None, :]).sum(axis=1)
    assert np.max(np.abs(est - exact) / exact) < 1e-2


# ----------------------------------------------------------------- spectral_density: tiny sigma


@pytest.mark.parametrize("method", ["nystrom++", "kpm"])
def test_spectral_density_sigma_below_resolution_raises(method):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((80, 80))
    A = A + A.T
    with pytest.raises(ValueError, match=r"sigma=0.0001 is below the resolution .* cap 320"):
        spectral_density(A, np.linspace(-20, 20, 50), sigma=1e-4, n_vectors=10, method=method, random_state=0)
    # an explicit degree or SLQ still run
    phi = spectral_density(A, np.linspace(-20, 20, 50), sigma=1e-4, n_vectors=4, degree=50, method=method)
    assert phi.shape == (50,) and np.all(np.isfinite(phi))
    phi = spectral_density(A, np.linspace(-20, 20, 50), sigma=1e-4, n_vectors=4, method="slq")
    assert np.all(np.isfinite(phi))
