"""The second batch of structured models on real data that ships with scikit-learn (digits, iris),
used as a user would, with model-nesting checks that hold whatever the data."""

import warnings

import numpy as np
import pytest

from lorainne import ConvergenceWarning, Paratuck2Tensor, confac, cp, dedicom, paratuck2

datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def digits():
    images = datasets.load_digits().images[:200]  # 8 x 8 grey levels
    return np.ascontiguousarray(np.transpose(images, (1, 2, 0)), dtype=np.float64)  # 8 x 8 x 200


@pytest.fixture(scope="module")
def cp3(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cp(digits, 3, tol=1e-9, n_iter_max=300, random_state=0)


def rel(model, X):
    return float(np.linalg.norm(model.to_tensor() - X) / np.linalg.norm(X))


def test_confac_agrees_with_cp_and_paralind_sits_between_cp_ranks(digits, cp3):
    X = digits
    A, B, C = (f.copy() for f in cp3.factors)
    C = C * cp3.weights[None, :]
    # the same CP model through CONFAC (no constraints) from cp's solution: same error, never worse
    same = confac(X, 3, init=(A, B, C), tol=0, n_iter_max=3)
    assert abs(same.errors[0] - rel(cp3, X)) < 1e-6
    assert same.errors[-1] <= rel(cp3, X) + 1e-12
    # PARALIND: a 4th component sharing the first column of A (a CP3 with one more B-C pair):
    # started from CP3 plus a tiny 4th pair, ALS never increases the error, so it ends at or below CP3
    Psi = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    start = (A, np.hstack([B, np.full((8, 1), 1e-3)]), np.hstack([C, np.full((X.shape[2], 1), 1e-3)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tied = confac(X, 4, constraints=(Psi, None, None), init=start, tol=1e-8, n_iter_max=150)
        free = confac(X, 4, random_state=0, tol=1e-8, n_iter_max=150)
    assert np.all(np.diff(tied.errors) <= 1e-12)
    assert tied.errors[-1] < rel(cp3, X) - 1e-3  # the shared column buys a real improvement
    assert free.errors[-1] < tied.errors[-1] + 5e-3  # and CP4 (more freedom) is at least about as good
    assert np.allclose(tied.to_tensor(), np.einsum("if,jf,kf->ijk", tied.A @ Psi, tied.B, tied.C))


def test_paratuck2_on_digits(digits, cp3):
    X = digits
    A, B, C = (f.copy() for f in cp3.factors)
    C = C * cp3.weights[None, :]
    # CP3 is the PARATUCK-2 (3, 3) model with T = I, CA = C, CB = 1: starting there, ALS can only improve
    start = Paratuck2Tensor(A, C, np.eye(3), np.ones((X.shape[2], 3)), B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = paratuck2(X, (3, 3), init=start, tol=1e-8, n_iter_max=60)
        lifted = paratuck2(X, (2, 3), tol=1e-8, n_iter_max=60)  # from the lifting (200 >= 18 slices)
    assert abs(model.errors[0] - rel(cp3, X)) < 0.01
    assert np.all(np.diff(model.errors) <= 1e-12) and model.errors[-1] < rel(cp3, X) - 1e-3
    assert np.all(np.diff(lifted.errors) <= 1e-12) and lifted.errors[-1] < 0.6
    assert abs(rel(model, X) - model.errors[-1]) < 1e-10


def test_dedicom_on_iris_class_covariances():
    iris = datasets.load_iris()
    S = np.stack([np.cov(iris.data[iris.target == k].T) for k in range(3)], axis=2)  # 4 x 4 x 3
    start = dedicom(S, 2, init="svd", n_iter_max=0)
    model = dedicom(S, 2, init="svd", tol=1e-6, n_iter_max=2000)
    assert np.all(np.diff(model.errors) <= 1e-12)
    assert model.errors[-1] < start.errors[-1]
    assert abs(rel(model, S) - model.errors[-1]) < 1e-10
