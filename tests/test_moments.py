"""Moments and symmetric tensors: planted recovery with tolerances that can fail, bad input."""

import numpy as np
import pytest

from lorainne import CPTensor, factor_match_score
from lorainne.moments import (
    gmm_moments,
    jennrich,
    moment_decomposition,
    moments_of,
    monomials,
    population_moments,
    prony,
    symmetric_cp,
)


def test_prony_recovers_four_nodes_from_eight_moments():
    z = np.array([-0.8, -0.1, 0.35, 0.9])
    w = np.array([0.7, 1.3, 0.4, 2.0])
    res = prony([np.sum(w * z**k) for k in range(8)], 4)
    assert np.max(np.abs(res.nodes - z)) < 1e-10
    assert np.max(np.abs(res.weights - w)) < 1e-10


def test_prony_complex_nodes_and_overdetermined():
    z = np.exp(1j * np.array([0.3, 1.1, -2.0]))
    w = np.array([1.0, 0.5, 2.0])
    moments = np.array([np.sum(w * z**k) for k in range(12)])
    res = prony(moments, 3)
    order = np.lexsort((z.imag, z.real))
    assert np.max(np.abs(res.nodes - z[order])) < 1e-10
    assert np.max(np.abs(res.weights - w[order])) < 1e-10


def test_moment_decomposition_five_points_in_the_plane():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, (5, 2))
    w = rng.uniform(0.5, 2, 5)
    res = moment_decomposition(moments_of(pts, w, 5), 5, dim=2, random_state=0)
    # match recovered points to the truth
    d = np.linalg.norm(res.points[:, None, :] - pts[None, :, :], axis=2)
    match = d.argmin(axis=0)
    assert sorted(match) == list(range(5))
    assert np.max(np.abs(res.points[match] - pts)) < 1e-8
    assert np.max(np.abs(res.weights[match] - w)) < 1e-8


def _fiber_neighbour(pts, w, degree, step):
    """Singular values of the Jacobian of (points, weights) -> moments up to ``degree``, and a measure
    reached by a step along its last right singular vector, then Gauss-Newton back onto the set of
    measures with the moments of (pts, w)."""
    r, d = pts.shape

    def phi(theta):
        return moments_of(theta[: r * d].reshape(r, d), theta[r * d :], degree)

    def jac(theta, h=1e-7):
        f0 = phi(theta)
        return np.stack([(phi(theta + h * e) - f0) / h for e in np.eye(theta.size)], axis=1)

    theta0 = np.concatenate([pts.ravel(), w])
    target = phi(theta0)
    _, s, vt = np.linalg.svd(jac(theta0))
    theta = theta0 + step * vt[-1]
    for _ in range(30):
        theta = theta - np.linalg.lstsq(jac(theta), phi(theta) - target, rcond=1e-10)[0]
    return s / s[0], theta[: r * d].reshape(r, d), theta[r * d :], np.max(np.abs(phi(theta) - target))


def test_five_points_in_the_plane_are_not_determined_by_degree_4_moments():
    # The issue asked for 5 points of R^2 from their moments of degree <= 4 to 1e-8: impossible for
    # any method. Those 15 moments are the coefficients of the ternary quartic sum_i w_i (x0 + xi_i . x)^4,
    # and a quartic that is a sum of 5 fourth powers has a one-parameter family of such
    # decompositions (Clebsch; the Alexander-Hirschowitz exceptional case). Shown here: the Jacobian
    # of the 15 unknowns -> 15 moments is singular, and a second 5-point measure, 1e-2 away, has the
    # same moments to rounding. With degree <= 5 the Jacobian has full rank (the test above).
    rng = np.random.default_rng(3)
    pts, w = rng.uniform(-1, 1, (5, 2)), rng.uniform(0.5, 2, 5)
    s4, pts2, w2, residual = _fiber_neighbour(pts, w, 4, 0.05)
    assert s4[-1] < 1e-7 and s4[-2] > 1e-4
    assert residual < 1e-12
    assert np.abs(pts2 - pts).max() > 1e-3 and np.all(w2 > 0)
    s5, *_ = _fiber_neighbour(pts, w, 5, 0.0)
    assert s5[-1] > 1e-4


def test_moment_decomposition_three_dims():
    rng = np.random.default_rng(4)
    pts, w = rng.uniform(-1, 1, (4, 3)), rng.uniform(0.5, 2, 4)
    res = moment_decomposition(moments_of(pts, w, 3), 4, dim=3, random_state=1)
    d = np.linalg.norm(res.points[:, None, :] - pts[None, :, :], axis=2)
    assert np.max(d.min(axis=0)) < 1e-8


@pytest.mark.parametrize("method", ["moments", "power", "als"])
def test_symmetric_cp_waring(method):
    rng = np.random.default_rng(5)
    n, R = 8, 5
    V = rng.standard_normal((n, R)) if method != "power" else np.linalg.qr(rng.standard_normal((n, R)))[0]
    lam = rng.uniform(1, 3, R) * rng.choice([-1, 1], R)
    T = np.einsum("r,ir,jr,kr->ijk", lam, V, V, V)
    est = symmetric_cp(T, R, method=method, random_state=0)
    assert factor_match_score(est, CPTensor(lam, [V, V, V])) >= 0.999
    rebuilt = np.einsum("r,ir,jr,kr->ijk", est.weights, *est.factors)
    assert np.linalg.norm(rebuilt - T) / np.linalg.norm(T) < 1e-6


def test_jennrich_noiseless_rank8():
    rng = np.random.default_rng(6)
    A, B, C = rng.standard_normal((20, 8)), rng.standard_normal((18, 8)), rng.standard_normal((15, 8))
    T = np.einsum("ir,jr,kr->ijk", A, B, C)
    T_before = T.copy()
    est = jennrich(T, 8, random_state=0)
    assert factor_match_score(est, CPTensor(np.ones(8), [A, B, C])) >= 0.9999
    np.testing.assert_array_equal(T, T_before)


def test_gmm_population_and_samples():
    rng = np.random.default_rng(7)
    k, d = 3, 10
    mu = rng.standard_normal((k, d)) * 3
    w = np.array([0.5, 0.3, 0.2])
    sigma2 = 1.0
    est = gmm_moments(population_moments(mu, w, sigma2), k, random_state=0)
    assert np.max(np.abs(est.weights - w)) < 1e-8
    assert np.max(np.abs(est.means - mu)) < 1e-8
    assert abs(est.sigma2 - sigma2) < 1e-8
    N = 100_000
    z = rng.choice(k, size=N, p=w)
    X = mu[z] + rng.standard_normal((N, d)) * np.sqrt(sigma2)
    est = gmm_moments(X, k, random_state=0)
    assert np.max(np.abs(est.weights - w)) < 0.1
    assert np.max(np.linalg.norm(est.means - mu, axis=1) / np.linalg.norm(mu, axis=1)) < 0.1


def test_monomials_order_and_count():
    assert len(monomials(3, 4)) == 35
    assert monomials(2, 1) == [(0, 0), (1, 0), (0, 1)]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: prony(np.ones(5), 3), "moments"),
        (lambda: prony([1.0, np.nan, 1.0, 1.0], 2), "moments"),
        (lambda: prony(np.ones((2, 4)), 1), "moments"),
        (lambda: prony(np.ones(4), 0), "rank"),
        (lambda: moment_decomposition(np.ones(7), 2, dim=2), "moments"),
        (lambda: moment_decomposition(np.ones(15), 2, dim=2), "moments"),
        (lambda: moment_decomposition(moments_of(np.eye(2), [1.0, 1.0], 3), 4, dim=2), "rank"),
        (lambda: jennrich(np.ones((4, 3, 2)), 4), "rank"),
        (lambda: jennrich(np.full((3, 3, 3), np.nan), 2), "X"),
        (lambda: symmetric_cp(np.random.default_rng(0).random((3, 3, 3)), 2), "symmetric"),
        (lambda: symmetric_cp(np.zeros((3, 3, 3)), 2, method="svd"), "method"),
        (lambda: gmm_moments(np.ones((10, 3)), 3), "n_components"),
        (lambda: gmm_moments((np.ones(3), np.eye(2), np.ones((3, 3, 3))), 1), "X"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types():
    with pytest.raises(TypeError, match="X"):
        jennrich([[[1.0]]], 1)
    with pytest.raises(TypeError, match="moments"):
        prony(np.array(["a", "b"]), 1)
