"""Rank-(L, L, 1) block terms: planted recovery of the blocks, monotone loss, Stokes cone, xp path, bad input."""

import itertools
import warnings

import array_api_strict as xps
import numpy as np
import pytest

from lorainne import BlockTermTensor, ConvergenceWarning, block_term


def planted(rng, shape=(12, 10, 6), ranks=(3, 2), nonnegative=False, C=None):
    total = sum(ranks)
    draw = (lambda s: np.abs(rng.standard_normal(s))) if nonnegative else rng.standard_normal
    A, B = draw((shape[0], total)), draw((shape[1], total))
    C = draw((shape[2], len(ranks))) if C is None else C
    owner = np.concatenate([[r] * L for r, L in enumerate(ranks)])
    X = np.einsum("il,jl,kl->ijk", A, B, C[:, owner])
    edges = np.cumsum([0, *ranks])
    terms = [
        np.einsum("ij,k->ijk", A[:, a:b] @ B[:, a:b].T, C[:, r]) for r, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    return X, terms


def term_match(model, terms):
    """Smallest cosine between a true block term (A_r B_r^T) o c_r and its best-matching model term."""
    found = [np.einsum("ij,k->ijk", E, model.C[:, r]) for r, E in enumerate(model.blocks)]
    best = 1.0
    for T in terms:
        cos = max(abs(np.vdot(T, F)) / (np.linalg.norm(T) * np.linalg.norm(F)) for F in found)
        best = min(best, cos)
    return best


def test_planted_recovery_noiseless(rng):
    X, terms = planted(rng)
    model = block_term(X, [3, 2], random_state=0, n_init=3)
    assert isinstance(model, BlockTermTensor) and model.converged
    assert model.errors[-1] < 1e-7
    assert term_match(model, terms) >= 0.999999
    A, B, C = model
    assert [a.shape for a in A] == [(12, 3), (12, 2)] and C.shape == (6, 2)
    np.testing.assert_allclose(model.to_tensor(), X, atol=1e-6 * np.abs(X).max())


def test_noisy_recovery_and_monotone(rng):
    X, terms = planted(rng, shape=(15, 14, 8), ranks=(2, 2, 2))
    noise = rng.standard_normal(X.shape)
    Xn = X + 0.02 * noise * np.linalg.norm(X) / np.linalg.norm(noise)
    model = block_term(Xn, [2, 2, 2], random_state=0, n_init=3, tol=1e-9)
    assert model.errors[-1] <= 0.02
    assert term_match(model, terms) >= 0.99
    errors = np.array(model.errors[:-1])
    assert np.all(np.diff(errors) <= 1e-12)


def test_stokes_cone_and_nonnegative(rng):
    S = np.abs(rng.standard_normal((4, 3)))
    S[0] = 1.2 * np.linalg.norm(S[1:], axis=0)
    X, terms = planted(rng, shape=(15, 14, 4), ranks=(2, 2, 2), nonnegative=True, C=S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = block_term(X, [2, 2, 2], constraint="stokes", random_state=0, n_init=2, n_iter_max=600)
    assert np.all(model.C[0] >= np.linalg.norm(model.C[1:], axis=0) - 1e-12)
    assert all(np.all(a >= 0) for a in model.A) and all(np.all(b >= 0) for b in model.B)
    assert model.errors[-1] < 0.02
    assert term_match(model, terms) >= 0.99
    model = block_term(X, [2, 2, 2], constraint="nonnegative", random_state=0, n_iter_max=20, tol=0)
    assert np.all(model.C >= 0)


def test_xp_path_equals_rust(rng):
    X, _ = planted(rng, shape=(7, 6, 5), ranks=(2, 1))
    a = block_term(X, [2, 1], init="random", random_state=3, tol=0, n_iter_max=15)
    b = block_term(xps.asarray(X), [2, 1], init="random", random_state=3, tol=0, n_iter_max=15)
    np.testing.assert_allclose(np.asarray(b.to_tensor()), a.to_tensor(), atol=1e-9)
    np.testing.assert_allclose(b.errors, a.errors, rtol=1e-8, atol=1e-12)


def test_bad_input(rng):
    X, _ = planted(rng)
    with pytest.raises(ValueError, match="ranks_L"):
        block_term(X, [])
    with pytest.raises(ValueError, match="ranks_L"):
        block_term(X, [11, 2])
    with pytest.raises(ValueError, match="constraint"):
        block_term(X, [2], constraint="cone")
    with pytest.raises(ValueError, match="stokes"):
        block_term(X, [2], constraint="stokes")
    with pytest.raises(ValueError, match="3-D"):
        block_term(X[0], [2])
    bad = X.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN"):
        block_term(bad, [2])
