"""Complex CP-ALS on the xp path (conjugate transposes): planted recovery, masks, monotone loss, strict arrays."""

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import ConvergenceWarning, CPTensor
from lorainne.tensor._complex_cp import complex_cp


def fms(a, b):
    from scipy.optimize import linear_sum_assignment

    score = 1.0
    for got, true in zip(a, b, strict=True):
        score = score * np.abs((got / np.linalg.norm(got, axis=0)).conj().T @ (true / np.linalg.norm(true, axis=0)))
    rows, cols = linear_sum_assignment(-score)
    return float(score[rows, cols].mean())


def planted(rng, shape=(9, 8, 7), rank=3):
    factors = [rng.standard_normal((n, rank)) + 1j * rng.standard_normal((n, rank)) for n in shape]
    return np.einsum("ir,jr,kr->ijk", *factors), factors


@pytest.mark.parametrize("init", ["svd", "jennrich", "random"])
def test_planted_complex_recovery(rng, init):
    X, truth = planted(rng)
    X0 = X.copy()
    model = complex_cp(X, 3, init=init, tol=1e-13, n_iter_max=2000, random_state=0)
    np.testing.assert_array_equal(X, X0)
    assert isinstance(model, CPTensor) and model.factors[0].dtype == np.complex128
    assert np.linalg.norm(model.to_tensor() - X) <= 1e-8 * np.linalg.norm(X)
    assert fms(model.factors, truth) > 0.9999
    assert np.allclose(model.weights.imag, 0) and np.all(model.weights.real > 0)


def test_complex64_noisy_at_noise_level(rng):
    X, truth = planted(rng, shape=(12, 11, 10))
    noise = rng.standard_normal(X.shape) + 1j * rng.standard_normal(X.shape)
    Y = (X + 0.01 * np.linalg.norm(X) / np.linalg.norm(noise) * noise).astype(np.complex64)
    model = complex_cp(Y, 3, tol=1e-7, n_iter_max=500, random_state=0)
    assert model.factors[0].dtype == np.complex64
    assert model.errors[-1] < 0.0101
    assert fms(model.factors, truth) > 0.99


def test_mask_and_monotone(rng):
    X, _ = planted(rng)
    mask = rng.random(X.shape) > 0.25
    model = complex_cp(np.where(mask, X, 0), 3, mask=mask, init="random", tol=1e-13, n_iter_max=3000, random_state=1)
    missing = ~mask
    assert np.linalg.norm((model.to_tensor() - X)[missing]) <= 1e-5 * np.linalg.norm(X[missing])
    noisy = X + 0.3 * rng.standard_normal(X.shape)
    run = complex_cp(noisy, 3, init="random", tol=0, n_iter_max=30, random_state=0)
    assert np.all(np.diff(run.errors) <= 1e-12 * np.array(run.errors[:-1]))


def test_strict_arrays_match_numpy(rng):
    X, _ = planted(rng)
    ref = complex_cp(X, 3, init="random", tol=0, n_iter_max=4, random_state=0, normalize_factors=False)
    got = complex_cp(xps.asarray(X), 3, init="random", tol=0, n_iter_max=4, random_state=0, normalize_factors=False)
    assert type(got.factors[0]) is type(xps.asarray(X))
    np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(got.factors[1]), ref.factors[1], rtol=1e-8, atol=1e-10)


def test_given_start_warning_and_bad_input(rng):
    X, _ = planted(rng)
    start = complex_cp(X, 3, n_iter_max=2, tol=0, random_state=0)
    again = complex_cp(X, 3, init=start, n_iter_max=1, tol=0)
    assert again.errors[-1] <= start.errors[-1] * (1 + 1e-12)
    with pytest.warns(ConvergenceWarning, match="complex_cp"):
        complex_cp(X + 0.1, 3, n_iter_max=2, random_state=0)
    with pytest.raises(ValueError, match="init must be one of"):
        complex_cp(X, 3, init="nope")
    with pytest.raises(ValueError, match="init factor 1"):
        complex_cp(X, 3, init=CPTensor(None, [np.ones((9, 3)), np.ones((2, 3)), np.ones((7, 3))]))
    with pytest.raises(ValueError, match="jennrich"):
        complex_cp(X, 9, init="jennrich")
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        complex_cp(bad, 3)
    with pytest.raises(ValueError, match="mask"):
        complex_cp(X, 3, mask=np.ones((3, 3), bool))
