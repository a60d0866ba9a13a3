"""Free-support entropic barycenters: planted translates, POT's fixed point, clouds of different
sizes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from lorainne import ConvergenceWarning, barycenter
from lorainne.ot import BarycenterResult


def _grid_cloud(side: int, seed: int = 0):
    """A jittered grid: points well apart at the eps of the tests (the entropic blur is tiny)."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) * 0.2
    return g + 0.03 * rng.standard_normal(g.shape)


def test_barycenter_of_a_cloud_and_its_translate_is_the_half_way_translate():
    cloud = _grid_cloud(5)
    shift = np.array([2.0, 1.0])
    res = barycenter([cloud, cloud + shift], eps=1e-3, support_init=cloud, n_iter_max=20)
    assert isinstance(res, BarycenterResult) and res.converged
    np.testing.assert_allclose(res.support, cloud + shift / 2, atol=1e-6)


def test_default_start_finds_the_half_way_translate_as_a_set():
    cloud = _grid_cloud(4, seed=1)
    shift = np.array([-1.0, 2.0])
    res = barycenter([cloud, cloud + shift], eps=1e-3, random_state=0, n_iter_max=20)
    target = cloud + shift / 2
    C = ((res.support[:, None, :] - target[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(C)
    assert np.sqrt(C[rows, cols]).max() < 1e-3  # a matching: every grid point found once


def test_matches_pots_sinkhorn_fixed_point_at_n_200():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(0)
    y1, y2 = rng.random((200, 2)), rng.standard_normal((150, 2)) * 0.3 + [2.0, 1.0]
    X0 = rng.random((200, 2)) * [2.0, 1.0]
    w = np.array([0.3, 0.7])
    with pytest.warns(ConvergenceWarning):  # two steps of the fixed point, on both sides
        res = barycenter([y1, y2], w, eps=0.05, support_init=X0, n_iter_max=2, tol=1e-15, sinkhorn_tol=1e-11)
    expected = ot.bregman.free_support_sinkhorn_barycenter(
        [y1, y2],
        [np.full(200, 1 / 200), np.full(150, 1 / 150)],
        X0,
        0.05,
        weights=w,
        numItermax=2,
        stopThr=0.0,
        numInnerItermax=100000,
        method="sinkhorn_log",
    )
    assert res.n_iter == 2
    np.testing.assert_allclose(res.support, expected, atol=1e-6)


def test_clouds_of_different_sizes_and_masses_keep_the_weighted_mean():
    rng = np.random.default_rng(2)
    clouds = [rng.random((30, 2)), rng.random((55, 2)) + [1.0, 0.0], rng.random((12, 2)) * 0.5]
    masses = [rng.random(30), None, rng.random(12)]
    w = np.array([1.0, 2.0, 1.0])
    res = barycenter(clouds, w, eps=0.05, masses=masses, n_support=20, random_state=1, sinkhorn_tol=1e-10, tol=1e-3)
    assert res.support.shape == (20, 2) and res.converged  # every step keeps the mean: tol does not matter
    means = [np.average(c, axis=0, weights=m) for c, m in zip(clouds, masses, strict=True)]
    np.testing.assert_allclose(res.support.mean(0), np.average(means, axis=0, weights=w), atol=1e-6)
    assert res.objective > 0 and res.cost > 0


def test_warnings_callback_and_inputs_unchanged():
    cloud = _grid_cloud(3)
    start = cloud + 0.5
    copy = start.copy()
    with pytest.warns(ConvergenceWarning, match="n_iter_max=1"):
        res = barycenter([cloud, cloud + 1.0], eps=0.01, support_init=start, n_iter_max=1, tol=1e-15)
    assert res.n_iter == 1 and not res.converged
    np.testing.assert_array_equal(start, copy)
    seen = []
    res = barycenter([cloud], eps=0.01, support_init=start, callback=lambda s, d: seen.append(d) or True)
    assert res.n_iter == 1 and len(seen) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"clouds": []}, ValueError, "non-empty"),
        ({"clouds": np.zeros((4, 2))}, ValueError, "non-empty list"),
        ({"clouds": [np.zeros((4, 2)), np.zeros((4, 3))]}, ValueError, "dimension"),
        ({"weights": [1.0]}, ValueError, "weights"),
        ({"weights": [1.0, -1.0]}, ValueError, "negative"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"support_init": np.zeros((3, 3))}, ValueError, "support_init"),
        ({"support_init": np.zeros((3, 2)), "n_support": 4}, ValueError, "support_init"),
        ({"n_support": 0}, ValueError, "n_support"),
        ({"masses": [None]}, ValueError, "masses"),
        ({"masses": [None, np.ones(3)]}, ValueError, "masses"),
        ({"clouds": [np.zeros((4, 2)), np.full((4, 2), np.nan)]}, ValueError, "NaN"),
        ({"random_state": "x"}, TypeError, "random_state"),
        ({"callback": 3}, TypeError, "callback"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"clouds": [np.random.default_rng(0).random((4, 2)), np.ones((5, 2))], "eps": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        barycenter(**args)
