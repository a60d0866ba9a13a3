"""Coupled matrix-tensor factorization: tensorly's iterates, planted recovery, masks, xp path, bad input."""

import warnings

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import CMTFResult, ConvergenceWarning, cmtf, factor_match_score

tl = pytest.importorskip("tensorly")


def planted(rng, shape=(20, 15, 10), columns=30, rank=3, noise=0.0, mode=0):
    factors = [rng.standard_normal((n, rank)) for n in shape]
    V = rng.standard_normal((columns, rank))
    X = tl.cp_to_tensor((None, factors))
    Y = factors[mode] @ V.T
    if noise:
        E, F = rng.standard_normal(X.shape), rng.standard_normal(Y.shape)
        X = X + noise * E * np.linalg.norm(X) / np.linalg.norm(E)
        Y = Y + noise * F * np.linalg.norm(Y) / np.linalg.norm(F)
    return X, Y, factors, V


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_same_iterates_as_tensorly(rng, backend):
    from tensorly.decomposition import coupled_matrix_tensor_3d_factorization
    from tensorly.decomposition._cp import initialize_cp

    X, Y, _, _ = planted(rng, noise=0.1)
    tensor_start = initialize_cp(X, 3, init="svd")
    coupled_start = initialize_cp(np.concatenate([tl.unfold(X, 0), Y], axis=1), 3, init="svd")
    start = (np.ones(3), [coupled_start.factors[0], tensor_start.factors[1], tensor_start.factors[2]])
    for n_iter in (1, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tensorly: "Reached maximum iteration number"
            theirs = coupled_matrix_tensor_3d_factorization(X, Y, 3, init="svd", n_iter_max=n_iter, tol=0)
        ours = cmtf(X, Y, 3, init=start, n_iter_max=n_iter, tol=0, backend=backend)
        tensor_cp, matrix_cp, errors = ours
        np.testing.assert_allclose(tensor_cp.to_tensor(), tl.cp_to_tensor(theirs[0]), atol=1e-10)
        np.testing.assert_allclose(matrix_cp.to_tensor(), tl.cp_to_tensor(theirs[1]), atol=1e-10)
        total = np.sum(X**2) + np.sum(Y**2)
        np.testing.assert_allclose(errors, np.sqrt(np.array(theirs[2]) / total), rtol=1e-8)


def test_planted_recovery_noiseless_and_noisy(rng):
    X, Y, factors, V = planted(rng)
    model = cmtf(X, Y, 3, random_state=0)
    assert isinstance(model, CMTFResult) and model.converged and model.errors[-1] < 1e-7
    # the cheap in-loop error stops at its resolution 3 sqrt(eps); fixed sweeps fit further (exact last error)
    model = cmtf(X, Y, 3, random_state=0, tol=0, n_iter_max=100)
    assert model.errors[-1] < 1e-8
    assert factor_match_score(model.tensor_cp, (None, factors)) >= 0.999
    X, Y, factors, V = planted(rng, noise=0.05)
    model = cmtf(X, Y, 3, random_state=0)
    assert model.errors[-1] <= 0.05
    assert factor_match_score(model.tensor_cp, (None, factors)) >= 0.99
    assert factor_match_score(model.matrix_cp, (None, [factors[0], V])) >= 0.99
    errors = np.array(model.errors)
    assert np.all(np.diff(errors) <= 1e-12)


def test_coupled_mode_and_order_four_xp_path(rng):
    X, Y, factors, V = planted(rng, shape=(8, 9, 7, 6), columns=12, rank=2, mode=2)
    a = cmtf(X, Y, 2, coupled_mode=2, random_state=0, tol=0, n_iter_max=30)
    b = cmtf(xps.asarray(X), xps.asarray(Y), 2, coupled_mode=2, random_state=0, tol=0, n_iter_max=30)
    np.testing.assert_allclose(np.asarray(b.tensor_cp.to_tensor()), a.tensor_cp.to_tensor(), atol=1e-8)
    assert a.errors[-1] < 1e-6
    assert factor_match_score(a.matrix_cp, (None, [factors[2], V])) >= 0.999


def test_masks_recover_missing_entries(rng):
    X, Y, factors, V = planted(rng)
    mask = rng.random(X.shape) > 0.3
    matrix_mask = rng.random(Y.shape) > 0.3
    X_bad, Y_bad = np.where(mask, X, np.nan), np.where(matrix_mask, Y, 7.0)
    with pytest.raises(ValueError, match="X contains NaN"):
        cmtf(X_bad, Y_bad, 3, mask=mask)
    X_bad = np.where(mask, X, 5.0)
    model = cmtf(X_bad, Y_bad, 3, mask=mask, matrix_mask=matrix_mask, random_state=0, tol=1e-12, n_iter_max=500)
    missing = (model.tensor_cp.to_tensor() - X)[~mask]
    assert np.sqrt(np.mean(missing**2)) / np.sqrt(np.mean(X**2)) < 1e-5
    missing = (model.matrix_cp.to_tensor() - Y)[~matrix_mask]
    assert np.sqrt(np.mean(missing**2)) / np.sqrt(np.mean(Y**2)) < 1e-5
    assert np.all(X_bad[~mask] == 5.0) and np.all(Y_bad[~matrix_mask] == 7.0)


def test_warning_and_bad_input(rng):
    X, Y, _, _ = planted(rng, noise=0.1)
    with pytest.warns(ConvergenceWarning, match="cmtf"):
        cmtf(X, Y, 3, n_iter_max=1, random_state=0)
    with pytest.raises(ValueError, match="Y must have"):
        cmtf(X, Y[:5], 3)
    with pytest.raises(ValueError, match="coupled_mode"):
        cmtf(X, Y, 3, coupled_mode=3)
    with pytest.raises(ValueError, match="rank"):
        cmtf(X, Y, 0)
    with pytest.raises(ValueError, match="matrix_mask"):
        cmtf(X, Y, 3, matrix_mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="Y must be 2-D"):
        cmtf(X, X, 3)
    with pytest.raises(ValueError, match="init"):
        cmtf(X, Y, 3, init="nope")
