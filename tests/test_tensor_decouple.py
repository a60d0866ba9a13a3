"""Decoupling multivariate functions: planted polynomial branches recovered to 1e-8, Jacobians, offsets, bad input."""

import numpy as np
import pytest

from lorainne import DecoupledFunction, decouple


def planted(rng, m=2, n=3, r=3, degree=3):
    W, V = rng.standard_normal((m, r)), rng.standard_normal((n, r))
    C = rng.standard_normal((r, degree + 1))  # g_i(z) = sum_d C[i, d] z^d

    def f(u):
        z = V.T @ u
        return W @ sum(C[:, d] * z**d for d in range(degree + 1))

    def jac(u):
        z = V.T @ u
        return W @ np.diag(sum(d * C[:, d] * z ** (d - 1) for d in range(1, degree + 1))) @ V.T

    return f, jac, (W, V, C)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_decoupling_to_1e_8(seed):
    rng = np.random.default_rng(seed)
    f, jac, (W, V, C) = planted(rng)
    points = rng.standard_normal((40, 3))
    P0 = points.copy()
    model = decouple(f, points, 3, jacobian=jac, random_state=0)
    np.testing.assert_array_equal(points, P0)
    assert isinstance(model, DecoupledFunction) and model.fit_error < 1e-10
    test = rng.standard_normal((25, 3))
    truth = np.array([f(u) for u in test])
    assert np.linalg.norm(model(test) - truth) <= 1e-8 * np.linalg.norm(truth)
    np.testing.assert_allclose(model(test[0]), truth[0], rtol=1e-8, atol=1e-8 * np.abs(truth).max())
    # the decoupled directions are the planted ones (up to scale and order)
    cos = np.abs((V / np.linalg.norm(V, axis=0)).T @ model.V)
    assert np.all(cos.max(axis=1) > 1 - 1e-9)
    # a branch is recovered up to the scaling of its argument and of its output
    Jt = np.array([jac(u) for u in test])
    assert np.linalg.norm(model.jacobian(test) - Jt) <= 1e-8 * np.linalg.norm(Jt)


def test_from_jacobians_only_and_finite_differences(rng):
    f, jac, _ = planted(rng, m=3, n=4, r=3, degree=4)
    points = rng.standard_normal((60, 4))
    J = np.array([jac(u) for u in points])
    model = decouple(J, points, 3, degree=4, random_state=0)
    test = rng.standard_normal((10, 4))
    truth = np.array([f(u) for u in test])
    # from Jacobians alone the constant is unknown: compare differences of values
    diff = model(test) - model(test[:1])
    assert np.linalg.norm(diff - (truth - truth[:1])) <= 1e-8 * np.linalg.norm(truth)
    assert np.allclose(model.offset, 0.0)
    rough = decouple(f, points, 3, degree=4, random_state=0)  # central differences
    assert np.linalg.norm(rough(test) - truth) <= 1e-6 * np.linalg.norm(truth)


def test_noisy_jacobians_fit_at_noise_level(rng):
    f, jac, _ = planted(rng)
    points = rng.standard_normal((80, 3))
    J = np.array([jac(u) for u in points])
    noisy = J + 1e-4 * np.linalg.norm(J) / np.sqrt(J.size) * rng.standard_normal(J.shape)
    model = decouple(noisy, points, 3, random_state=0)
    test = rng.standard_normal((10, 3))
    Jt = np.array([jac(u) for u in test])
    assert np.linalg.norm(model.jacobian(test) - Jt) <= 1e-2 * np.linalg.norm(Jt)


def test_bad_input(rng):
    f, jac, _ = planted(rng)
    points = rng.standard_normal((20, 3))
    J = np.array([jac(u) for u in points])
    with pytest.raises(ValueError, match="jacobians must have shape"):
        decouple(J[:10], points, 3)
    with pytest.raises(ValueError, match="jacobians must be 3-D"):
        decouple(J[0], points, 3)
    bad = J.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="jacobians contains NaN"):
        decouple(bad, points, 3)
    with pytest.raises(ValueError, match="degree"):
        decouple(J, points, 3, degree=0)
    with pytest.raises(ValueError, match="rank"):
        decouple(J, points, 0)
    with pytest.raises(ValueError, match="points must be 2-D"):
        decouple(J, points[0], 3)
    with pytest.raises(TypeError, match="jacobian must be callable"):
        decouple(f, points, 3, jacobian=np.eye(3))
    with pytest.raises(ValueError, match="only used with a callable f"):
        decouple(J, points, 3, jacobian=jac)
    model = decouple(J, points, 3, random_state=0)
    with pytest.raises(ValueError, match="u must have 3 entries"):
        model(np.ones(4))
