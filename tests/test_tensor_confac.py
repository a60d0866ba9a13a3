"""CONFAC / PARALIND: planted recovery (unique factors by FMS, partially unique ones by subspace angle),
fixed factors, masks, complex data, monotone loss, the xp path, bad input."""

import warnings

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import ConfacTensor, ConvergenceWarning, confac, max_principal_angle

# component 0 and 1 share column 0 of A (PARALIND), the others are free
PSI = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def planted(rng, shape=(9, 8, 7), Psi=PSI, complex_=False):
    draw = (lambda s: rng.standard_normal(s) + 1j * rng.standard_normal(s)) if complex_ else rng.standard_normal
    F = Psi.shape[1]
    A, B, C = draw((shape[0], Psi.shape[0])), draw((shape[1], F)), draw((shape[2], F))
    X = np.einsum("if,jf,kf->ijk", A @ Psi, B, C)
    return X, A, B, C


def fms(m, *truth):
    """Factor match score, real or complex: the best column matching of the product of |cosines|."""
    from scipy.optimize import linear_sum_assignment

    score = 1.0
    for got, true in zip(m, truth, strict=True):
        g = got / np.linalg.norm(got, axis=0)
        t = true / np.linalg.norm(true, axis=0)
        score = score * np.abs(g.conj().T @ t)
    rows, cols = linear_sum_assignment(-score)
    return float(score[rows, cols].mean())


def test_paralind_noiseless_unique_and_partially_unique(rng):
    X, A, B, C = planted(rng)
    X0 = X.copy()
    model = confac(X, 4, constraints=(PSI, None, None), random_state=0)
    assert isinstance(model, ConfacTensor) and model.converged
    np.testing.assert_array_equal(X, X0)
    assert model.errors[-1] < 1e-8
    np.testing.assert_allclose(model.to_tensor(), X, atol=1e-7 * np.abs(X).max())
    # A: unique up to scale and permutation; B, C of components 2, 3 unique
    assert fms([model.A], A) > 0.999
    assert fms([model.B[:, 2:], model.C[:, 2:]], B[:, 2:], C[:, 2:]) > 0.999
    # components 0 and 1 share a_0: their B and C columns are determined up to their span
    assert max_principal_angle(model.B[:, :2], B[:, :2]) <= 1e-6
    assert max_principal_angle(model.C[:, :2], C[:, :2]) <= 1e-6
    # and from a random start (ALS, no algebraic step) the same holds
    again = confac(X, 4, constraints=(PSI, None, None), init="random", random_state=1, tol=1e-12, n_iter_max=3000)
    assert again.errors[-1] < 1e-6 and max_principal_angle(again.B[:, :2], B[:, :2]) <= 1e-5


def test_noisy_recovery_at_noise_level(rng):
    X, A, B, C = planted(rng, shape=(12, 11, 10))
    noise = rng.standard_normal(X.shape)
    level = 0.01 * np.linalg.norm(X) / np.linalg.norm(noise)
    model = confac(X + level * noise, 4, constraints=(PSI, None, None), random_state=1, tol=1e-9, n_iter_max=2000)
    assert model.errors[-1] < 0.012
    assert fms([model.B[:, 2:], model.C[:, 2:]], B[:, 2:], C[:, 2:]) > 0.99
    assert max_principal_angle(model.B[:, :2], B[:, :2]) < 0.05


def test_confac_canonical_columns_and_fixed_factor(rng):
    # CONFAC: every constraint column canonical; C known (pilot symbols) and never updated
    Psi = np.eye(3)[:, [0, 0, 1, 2]]
    Phi = np.eye(3)[:, [0, 1, 1, 2]]
    A, B, C = rng.standard_normal((8, 3)), rng.standard_normal((7, 3)), rng.standard_normal((6, 4))
    X = np.einsum("if,jf,kf->ijk", A @ Psi, B @ Phi, C)
    model = confac(X, 4, constraints=(Psi, Phi, None), fixed={2: C}, random_state=0)
    assert model.C is not C and np.array_equal(model.C, C)
    assert model.errors[-1] < 1e-8
    # with C known the remaining factors are unique up to scale
    for got, true in ((model.A, A), (model.B, B)):
        cos = np.abs(np.sum(got * true, axis=0)) / (np.linalg.norm(got, axis=0) * np.linalg.norm(true, axis=0))
        assert cos.min() > 1 - 1e-8


def test_plain_cp_and_complex_recovery(rng):
    X, A, B, C = planted(rng, Psi=np.eye(3), complex_=True)
    model = confac(X.astype(np.complex128), 3, random_state=0, tol=1e-14, n_iter_max=300)
    assert model.A.dtype == np.complex128
    assert model.errors[-1] < 1e-8
    assert fms(model, A, B, C) > 0.999


def test_complex_paralind_with_noise(rng):
    X, A, B, C = planted(rng, shape=(10, 9, 8), complex_=True)
    noise = rng.standard_normal(X.shape) + 1j * rng.standard_normal(X.shape)
    Y = X + 1e-3 * np.linalg.norm(X) / np.linalg.norm(noise) * noise
    model = confac(Y.astype(np.complex64), 4, constraints=(PSI, None, None), random_state=2, n_iter_max=1000, tol=1e-7)
    assert model.A.dtype == np.complex64
    assert model.errors[-1] < 2e-3
    assert fms([model.B[:, 2:], model.C[:, 2:]], B[:, 2:], C[:, 2:]) > 0.99


def test_monotone_loss_per_sweep(rng):
    X, *_ = planted(rng)
    X = X + 0.1 * rng.standard_normal(X.shape)
    model = confac(X, 4, constraints=(PSI, None, None), random_state=3, tol=0, n_iter_max=40)
    errors = np.array(model.errors)
    assert len(errors) == 40
    assert np.all(np.diff(errors) <= 1e-12 * errors[:-1])


def test_mask_recovers_missing_entries(rng):
    X, *_ = planted(rng, shape=(10, 9, 8))
    mask = rng.random(X.shape) > 0.3
    model = confac(
        np.where(mask, X, 0.0), 4, constraints=(PSI, None, None), mask=mask, random_state=0, tol=1e-12, n_iter_max=2000
    )
    missing = ~mask
    err = np.linalg.norm((model.to_tensor() - X)[missing]) / np.linalg.norm(X[missing])
    assert err < 1e-4


def test_array_api_strict_path(rng):
    X, A, *_ = planted(rng)
    ref = confac(X, 4, constraints=(PSI, None, None), random_state=0, n_iter_max=5, tol=0)
    Xs = xps.asarray(X)
    model = confac(Xs, 4, constraints=(xps.asarray(PSI), None, None), random_state=0, n_iter_max=5, tol=0)
    assert type(model.A) is type(Xs)
    np.testing.assert_allclose(np.asarray(model.A), ref.A, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.errors, ref.errors, rtol=1e-8)


def test_warns_when_stopped_by_n_iter_max(rng):
    X, *_ = planted(rng)
    with pytest.warns(ConvergenceWarning, match="confac"):
        confac(X + 0.1 * rng.standard_normal(X.shape), 4, constraints=(PSI, None, None), n_iter_max=2, random_state=0)


def test_bad_input(rng):
    X, A, B, C = planted(rng)
    with pytest.raises(ValueError, match="constraints\\[0\\]"):
        confac(X, 3, constraints=(PSI, None, None))
    with pytest.raises(ValueError, match="constraints"):
        confac(X, 4, constraints=(PSI, None))
    with pytest.raises(ValueError, match="fixed\\[1\\]"):
        confac(X, 4, constraints=(PSI, None, None), fixed={1: B[:, :2]})
    with pytest.raises(ValueError, match="fixed keys"):
        confac(X, 4, fixed={3: B})
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        confac(bad, 4)
    with pytest.raises(ValueError, match="mask"):
        confac(X, 4, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="X must be 3-D"):
        confac(X[0], 2)
    with pytest.raises(ValueError, match="rank"):
        confac(X, 0)
    with pytest.raises(TypeError, match="X has unsupported dtype"):
        confac(X.astype(np.float16), 2)
    with pytest.raises(TypeError, match="constraints\\[0\\] is complex"):
        confac(X, 4, constraints=(PSI + 1j, None, None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert max_principal_angle(A, A[:, ::-1] * 3) < 1e-12
    with pytest.raises(ValueError, match="same number of rows"):
        max_principal_angle(A, B)
