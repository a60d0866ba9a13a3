"""PARATUCK-2 (lifting start, ALS) and DEDICOM: planted recovery, monotone loss, complex data, xp path, bad input."""

import warnings

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import ConvergenceWarning, DedicomTensor, Paratuck2Tensor, dedicom, paratuck2


def fms(got, true):
    """Mean |cosine| of matched columns (Hungarian), real or complex."""
    from scipy.optimize import linear_sum_assignment

    g = got / np.linalg.norm(got, axis=0)
    t = true / np.linalg.norm(true, axis=0)
    c = np.abs(g.conj().T @ t)
    rows, cols = linear_sum_assignment(-c)
    return float(c[rows, cols].mean())


def planted_pt2(rng, N1=6, N2=7, K=20, R=2, S=3, complex_=False):
    draw = (lambda s: rng.standard_normal(s) + 1j * rng.standard_normal(s)) if complex_ else rng.standard_normal
    A, B = draw((N1, R)), draw((N2, S))
    CA, T, CB = draw((K, R)), draw((R, S)), draw((K, S))
    X = np.einsum("ir,kr,rs,ks,js->ijk", A, CA, T, CB, B)
    return X, (A, CA, T, CB, B)


def products(model):
    """What the model determines beyond A and B: CA[k, r] T[r, s] CB[k, s]."""
    return np.einsum("kr,rs,ks->krs", model.CA, model.T, model.CB)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lifting_alone_is_exact_on_the_issue_sizes(seed):
    X, (A, CA, T, CB, B) = planted_pt2(np.random.default_rng(seed))
    X0 = X.copy()
    start = paratuck2(X, (2, 3), n_iter_max=0)
    np.testing.assert_array_equal(X, X0)
    assert isinstance(start, Paratuck2Tensor) and start.n_iter == 1  # the start's error, no sweep
    assert fms(start.A, A) >= 0.999 and fms(start.B, B) >= 0.999
    assert np.linalg.norm(start.to_tensor() - X) <= 1e-8 * np.linalg.norm(X)
    # the interaction products are determined (the per-slice split between CA and CB is not)
    truth = np.einsum("kr,rs,ks->krs", CA, T, CB)
    got = products(start)
    pa = np.argmax(np.abs(start.A.T @ A), axis=0)  # column of the model for each true column
    pb = np.argmax(np.abs(start.B.T @ B), axis=0)
    scale = np.linalg.norm(A, axis=0)[:, None] * np.linalg.norm(B, axis=0)[None, :]
    sign = np.sign(start.A[:, pa].T @ A).diagonal()[:, None] * np.sign(start.B[:, pb].T @ B).diagonal()[None, :]
    np.testing.assert_allclose(got[:, pa][:, :, pb] * sign, truth * scale, atol=1e-7 * np.abs(truth * scale).max())


def test_als_from_lifting_converges_faster_than_from_random(rng):
    X, _ = planted_pt2(rng)
    lifted = paratuck2(X, (2, 3), tol=1e-12)
    assert lifted.converged and lifted.errors[-1] < 1e-8 and lifted.n_iter <= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        iterations = [
            paratuck2(X, (2, 3), init="random", random_state=s, tol=1e-12, n_iter_max=200).n_iter for s in range(3)
        ]
    assert lifted.n_iter < min(iterations)


def test_noisy_recovery_at_noise_level(rng):
    X, (A, *_, B) = planted_pt2(rng, K=40)
    noise = rng.standard_normal(X.shape)
    Y = X + 0.01 * np.linalg.norm(X) / np.linalg.norm(noise) * noise
    model = paratuck2(Y, (2, 3), tol=1e-6)
    assert model.errors[-1] < 0.0105  # the noise is 0.01
    assert fms(model.A, A) > 0.99 and fms(model.B, B) > 0.99


def test_monotone_loss_and_callback(rng):
    X, _ = planted_pt2(rng)
    Y = X + 0.1 * rng.standard_normal(X.shape)
    seen = []
    model = paratuck2(
        Y, (2, 3), init="random", random_state=0, tol=0, n_iter_max=30, callback=lambda s, e: seen.append(e)
    )
    errors = np.array(model.errors)
    assert len(errors) == 30 and seen == model.errors
    assert np.all(np.diff(errors) <= 1e-12 * errors[:-1])


def test_complex_planted_recovery(rng):
    X, (A, *_, B) = planted_pt2(rng, complex_=True)
    start = paratuck2(X.astype(np.complex128), (2, 3), n_iter_max=0)
    assert start.A.dtype == np.complex128
    assert fms(start.A, A) >= 0.999 and fms(start.B, B) >= 0.999
    X, (A, *_, B) = planted_pt2(rng, K=40, complex_=True)
    noise = rng.standard_normal(X.shape) + 1j * rng.standard_normal(X.shape)
    Y = X + 1e-3 * np.linalg.norm(X) / np.linalg.norm(noise) * noise
    model = paratuck2(Y.astype(np.complex64), (2, 3), tol=1e-6)
    assert model.A.dtype == np.complex64
    assert model.errors[-1] < 1.1e-3
    assert fms(model.A, A) > 0.99 and fms(model.B, B) > 0.99


def test_given_start_and_xp_path(rng):
    X, _ = planted_pt2(rng)
    Y = X + 0.01 * rng.standard_normal(X.shape)
    ref = paratuck2(Y, (2, 3), init="random", random_state=0, tol=0, n_iter_max=3)
    again = paratuck2(Y, (2, 3), init=ref, tol=0, n_iter_max=1)
    assert again.errors[-1] <= ref.errors[-1] * (1 + 1e-12)
    strict = paratuck2(xps.asarray(Y), (2, 3), init="random", random_state=0, tol=0, n_iter_max=3)
    assert type(strict.A) is type(xps.asarray(Y))
    np.testing.assert_allclose(strict.errors, ref.errors, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(strict.A), ref.A, rtol=1e-6, atol=1e-9)


def test_paratuck2_bad_input(rng):
    X, _ = planted_pt2(rng)
    with pytest.raises(ValueError, match="ranks"):
        paratuck2(X, 2)
    with pytest.raises(ValueError, match=r"ranks\[0\]"):
        paratuck2(X, (7, 2))
    with pytest.raises(ValueError, match=r"ranks\[1\]"):
        paratuck2(X, (2, 0))
    with pytest.raises(ValueError, match="needs K >= "):
        paratuck2(X[:, :, :10], (2, 3))
    bad = X.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="X contains NaN"):
        paratuck2(bad, (2, 3))
    with pytest.raises(ValueError, match="X must be 3-D"):
        paratuck2(X[:, :, 0], (2, 3))
    with pytest.raises(ValueError, match="init must be"):
        paratuck2(X, (2, 3), init="svd")
    with pytest.raises(TypeError, match="X has unsupported dtype"):
        paratuck2(X.astype(np.float16), (2, 3))
    with pytest.warns(ConvergenceWarning, match="paratuck2"):
        paratuck2(X + 0.1 * rng.standard_normal(X.shape), (2, 3), init="random", random_state=0, n_iter_max=2)


# --------------------------------------------------------------------------- DEDICOM


def planted_dedicom(rng, N=8, K=30, P=2, complex_=False):
    draw = (lambda s: rng.standard_normal(s) + 1j * rng.standard_normal(s)) if complex_ else rng.standard_normal
    A, R, D = draw((N, P)), draw((P, P)), draw((K, P))
    return np.einsum("ip,kp,pq,kq,jq->ijk", A, D, R, D, A), (A, R, D)


def test_dedicom_planted_recovery():
    X, (A, R, D) = planted_dedicom(np.random.default_rng(3))
    model = dedicom(X, 2, n_init=2, random_state=1, tol=1e-12, n_iter_max=1500)
    assert isinstance(model, DedicomTensor)
    assert model.errors[-1] < 1e-6
    assert fms(model.A, A) > 0.999
    # D is determined up to the sign of each slice (it enters twice): compare |D|
    assert fms(np.abs(model.D), np.abs(D)) > 0.999
    np.testing.assert_allclose(model.to_tensor(), X, atol=1e-5 * np.abs(X).max())


def test_dedicom_monotone_complex_and_xp(rng):
    X, (A, _, _) = planted_dedicom(rng, complex_=True)
    Y = X + 0.05 * rng.standard_normal(X.shape)
    model = dedicom(Y, 2, random_state=0, tol=0, n_iter_max=25)
    assert model.A.dtype == np.complex128
    errors = np.array(model.errors)
    assert np.all(np.diff(errors) <= 1e-12 * errors[:-1])
    real = Y.real
    ref = dedicom(real, 2, random_state=0, tol=0, n_iter_max=3)
    strict = dedicom(xps.asarray(real), 2, random_state=0, tol=0, n_iter_max=3)
    np.testing.assert_allclose(strict.errors, ref.errors, rtol=1e-7)


def test_dedicom_bad_input(rng):
    X, _ = planted_dedicom(rng)
    with pytest.raises(ValueError, match="square slices"):
        dedicom(X[:, :5], 2)
    with pytest.raises(ValueError, match="rank"):
        dedicom(X, 9)
    with pytest.raises(ValueError, match="init must be"):
        dedicom(X, 2, init="lifting")
    with pytest.raises(ValueError, match="init.A must have shape"):
        dedicom(X, 2, init=DedicomTensor(X[:, :1, 0], np.eye(2), np.ones((30, 2))))
