"""Over-parameterized matrix sensing: recovery and the implicit regularization by a small start."""

from contextlib import nullcontext

import numpy as np
import pytest

from lorainne import ConvergenceWarning
from lorainne.completion import sense


def _problem(d=30, r=2, m=600, seed=1):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((d, r))
    X = Z @ Z.T
    G = rng.standard_normal((m, d, d))
    A = (G + G.transpose(0, 2, 1)) / 2
    return A, np.einsum("kij,ij->k", A, X), X


def test_sense_recovers_and_error_shrinks_with_alpha():
    A, y, X = _problem()
    errors = []
    for alpha in (1e-2, 1e-3, 1e-4):
        with pytest.warns(ConvergenceWarning) if alpha == 1e-2 else nullcontext():
            res = sense(A, y, alpha=alpha, n_steps=400)
        errors.append(np.linalg.norm(res.X - X) / np.linalg.norm(X))
    assert errors[-1] <= 1e-3
    assert errors[0] <= 1e-3
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] > 3 * errors[2]


def test_sense_callable_operator_matches_array():
    A, y, X = _problem(d=10, r=1, m=150, seed=2)
    Am = A.reshape(A.shape[0], -1)
    res = sense(lambda Z: Am @ Z.reshape(-1), y, adjoint=lambda r: (Am.T @ r).reshape(10, 10), dim=10, alpha=1e-4)
    ref = sense(A, y, alpha=1e-4)
    assert np.linalg.norm(res.X - X) / np.linalg.norm(X) < 1e-3
    np.testing.assert_allclose(res.X, ref.X, atol=1e-10)


def test_sense_fixed_rank_and_underdetermined():
    # m < d(d+1)/2: many global minima; the small start still finds the low-rank one
    A, y, X = _problem(d=20, r=1, m=120, seed=3)
    res = sense(A, y, alpha=1e-5)
    assert np.linalg.norm(res.X - X) / np.linalg.norm(X) < 1e-3
    res = sense(A, y, rank=3, alpha=1e-5, random_state=0)
    assert res.U.shape == (20, 3)
    assert np.linalg.norm(res.X - X) / np.linalg.norm(X) < 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": np.nan}, "alpha"),
        ({"step": -1.0}, "step"),
        ({"rank": 0}, "rank"),
        ({"n_steps": 0}, "n_steps"),
        ({"tol": 2.0}, "tol"),
    ],
)
def test_sense_bad_keywords(kwargs, match):
    A, y, _ = _problem(d=4, r=1, m=20)
    with pytest.raises(ValueError, match=match):
        sense(A, y, **kwargs)


def test_sense_bad_data():
    A, y, _ = _problem(d=4, r=1, m=20)
    with pytest.raises(ValueError, match="y"):
        sense(A, y[:-1])
    with pytest.raises(ValueError, match="y"):
        sense(A, np.full(20, np.nan))
    with pytest.raises(ValueError, match="measurements"):
        sense(A[:, :3, :], y)
    with pytest.raises(TypeError, match="adjoint"):
        sense(lambda X: X, y, dim=4)
