"""Jennrich's algebraic CP start: exact on noiseless data (real, complex, order 4), a good ALS start."""

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import CPTensor, SparseTensor, cp, factor_match_score
from lorainne.tensor import jennrich


def planted(rng, shape, rank, complex_=False):
    factors = [rng.standard_normal((n, rank)) for n in shape]
    if complex_:
        factors = [f + 1j * rng.standard_normal(f.shape) for f in factors]
    return CPTensor(None, factors).to_tensor(), factors


@pytest.mark.parametrize("shape,rank", [((10, 9, 8), 4), ((6, 7, 3), 5), ((3, 9, 4, 5), 3)])
def test_exact_on_noiseless_data(rng, shape, rank):
    X, true = planted(rng, shape, rank)
    X_before = X.copy()
    start = jennrich(X, rank, random_state=0)
    assert start.n_iter == 0
    np.testing.assert_allclose(start.to_tensor(), X, atol=1e-10 * np.abs(X).max())
    assert factor_match_score(start, (None, true)) >= 0.999999
    np.testing.assert_array_equal(X, X_before)


def test_complex_noiseless(rng):
    X, true = planted(rng, (6, 7, 5), 3, complex_=True)
    start = jennrich(X, 3, random_state=1)
    assert start.factors[0].dtype == np.complex128
    np.testing.assert_allclose(start.to_tensor(), X, atol=1e-10 * np.abs(X).max())


def test_start_for_als_beats_random_starts(rng):
    X, true = planted(rng, (15, 14, 12), 5)
    X = X + 0.01 * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(X.shape)
    start = jennrich(X, 5, random_state=0)
    assert factor_match_score(start, (None, true)) >= 0.99
    refined = cp(X, 5, init=start, tol=1e-10, n_iter_max=500)
    random_iters = [cp(X, 5, init="random", random_state=s, tol=1e-10, n_iter_max=500).n_iter for s in range(3)]
    assert refined.n_iter < min(random_iters)
    assert factor_match_score(refined, (None, true)) >= 0.99


def test_array_api_strict_input(rng):
    X, _ = planted(rng, (6, 5, 4), 3)
    start = jennrich(xps.asarray(X), 3, random_state=0)
    assert isinstance(start.factors[0], type(xps.asarray(1.0)))
    np.testing.assert_allclose(np.asarray(start.to_tensor()), X, atol=1e-10 * np.abs(X).max())


def test_bad_input(rng):
    X, _ = planted(rng, (6, 5, 4), 3)
    with pytest.raises(ValueError, match="rank"):
        jennrich(X, 6)
    with pytest.raises(ValueError, match="rank"):
        jennrich(X, 5, modes=(0, 2))
    with pytest.raises(ValueError, match="modes"):
        jennrich(X, 3, modes=(1, 1))
    with pytest.raises(ValueError, match="3 modes"):
        jennrich(X[0], 2)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        jennrich(bad, 2)
    with pytest.raises(TypeError, match="X"):
        jennrich([[1.0]], 1)


def test_cp_init_jennrich(rng):
    """cp(init="jennrich") starts at the algebraic solution: a noiseless tensor is fitted at once."""
    X, true = planted(rng, (9, 8, 7), 4)
    model = cp(X, 4, init="jennrich", random_state=0, tol=1e-12, n_iter_max=5)
    assert model.errors[0] < 1e-6  # the error from norms and inner products is accurate to ~sqrt(eps)
    assert factor_match_score(model, (None, true)) > 0.999


def test_cp_init_jennrich_is_for_dense_tensors(rng):
    X, _ = planted(rng, (4, 3, 3), 2)
    coords = np.argwhere(X != 0)
    sparse = SparseTensor(coords, X[tuple(coords.T)], shape=X.shape)
    with pytest.raises(ValueError, match="init"):
        cp(sparse, 2, init="jennrich")
