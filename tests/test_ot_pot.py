"""POT-compatible entry points ``lorainne.ot.pot``: the same numbers as POT on POT's own examples."""

from __future__ import annotations

import numpy as np
import pytest

from lorainne import SinkhornResult
from lorainne.ot import pot

ot = pytest.importorskip("ot")


@pytest.fixture
def gauss():
    """POT's example data (plot_optim_OTreg / plot_OT_2D_samples): two 2-D Gaussians, scaled so
    that the squared distances are of order 1."""
    n = 60
    xs = ot.datasets.make_2D_samples_gauss(n, np.array([0, 0]), np.array([[1, 0], [0, 1]]), random_state=0)
    xt = ot.datasets.make_2D_samples_gauss(n, np.array([4, 4]), np.array([[1, -0.8], [-0.8, 1]]), random_state=1)
    return xs / 4, xt / 4


@pytest.mark.parametrize("method", ["dense", "hierarchical"])
def test_empirical_sinkhorn2_and_plan(gauss, method):
    xs, xt = gauss
    reg = 0.05
    loss = pot.empirical_sinkhorn2(xs, xt, reg, method=method, kernel_tol=1e-12)
    ref = ot.bregman.empirical_sinkhorn2(xs, xt, reg, numIterMax=100_000, stopThr=1e-12)
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    P = pot.empirical_sinkhorn(xs, xt, reg, method=method, kernel_tol=1e-12)
    P_ref = ot.bregman.empirical_sinkhorn(xs, xt, reg, numIterMax=100_000, stopThr=1e-12)
    np.testing.assert_allclose(P, P_ref, atol=1e-9)


def test_weights_lists_and_log_dict(gauss):
    xs, xt = gauss
    a = np.linspace(1, 2, len(xs))
    a /= a.sum()
    reg = 0.1
    loss, log = pot.empirical_sinkhorn2(xs, xt, reg, list(a), [], log=True)
    ref = ot.sinkhorn2(a, np.full(len(xt), 1 / len(xt)), ot.dist(xs, xt), reg, stopThr=1e-12, numItermax=100_000)
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    assert {"niter", "err", "log_u", "log_v", "u", "v", "result"} <= set(log)
    assert isinstance(log["result"], SinkhornResult) and log["niter"] == log["result"].n_iter
    # POT's sinkhorn_log scalings: P = exp(log_u + log_v - M / reg)
    _, log_ref = ot.sinkhorn(a, [], ot.dist(xs, xt), reg, method="sinkhorn_log", log=True, stopThr=1e-12)
    P = np.exp(log["log_u"][:, None] + log["log_v"][None, :] - ot.dist(xs, xt) / reg)
    P_ref = np.exp(log_ref["log_u"][:, None] + log_ref["log_v"][None, :] - ot.dist(xs, xt) / reg)
    np.testing.assert_allclose(P, P_ref, atol=1e-10)
    lu, lv = pot.empirical_sinkhorn(xs, xt, reg, a, isLazy=True)
    np.testing.assert_allclose(np.exp(lu[:, None] + lv[None, :] - ot.dist(xs, xt) / reg), P, atol=1e-10)


def test_sinkhorn_and_sinkhorn2_on_points(gauss):
    xs, xt = gauss
    M = ot.dist(xs, xt)
    reg = 0.05
    ref = ot.sinkhorn2([], [], M, reg, stopThr=1e-12, numItermax=100_000)
    assert float(pot.sinkhorn2([], [], None, reg, x=xs, y=xt)) == pytest.approx(float(ref), rel=1e-6)
    P, log = pot.sinkhorn([], [], None, reg, x=xs, y=xt, log=True)
    np.testing.assert_allclose(P, ot.sinkhorn([], [], M, reg, stopThr=1e-12, numItermax=100_000), atol=1e-9)
    assert log["err"][0] <= 1e-9
    with pytest.raises(ValueError, match="M must be None"):
        pot.sinkhorn2([], [], M, reg, x=xs, y=xt)
    with pytest.raises(ValueError, match="pass the points"):
        pot.sinkhorn2([], [], None, reg)


def test_empirical_sinkhorn_divergence(gauss):
    xs, xt = gauss
    reg = 0.1
    value, log = pot.empirical_sinkhorn_divergence(xs, xt, reg, log=True)
    ref = ot.bregman.empirical_sinkhorn_divergence(xs, xt, reg, numIterMax=100_000, stopThr=1e-12)
    assert float(value) == pytest.approx(float(ref), rel=1e-6)
    assert {"sinkhorn_loss_ab", "sinkhorn_loss_a", "sinkhorn_loss_b"} <= set(log)
    assert float(pot.empirical_sinkhorn_divergence(xs, xs, reg)) == 0.0


@pytest.mark.parametrize("reg_m", [0.5, (0.3, 2.0), (float("inf"), 0.8)])
def test_empirical_sinkhorn_unbalanced(gauss, reg_m):
    xs, xt = gauss
    reg = 0.1
    a = np.full(len(xs), 1 / len(xs))
    b = np.full(len(xt), (1.0 if isinstance(reg_m, tuple) and reg_m[0] == float("inf") else 2.0) / len(xt))
    M = ot.dist(xs, xt)
    kw = {"reg_type": "kl", "numItermax": 200_000, "stopThr": 1e-15}
    P_ref = ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, **kw)
    P = pot.empirical_sinkhorn_unbalanced(xs, xt, reg, reg_m, a, b, stopThr=1e-12)
    np.testing.assert_allclose(P, P_ref, atol=1e-10 * len(xs))
    for kind in ("linear", "total"):
        ref = ot.unbalanced.sinkhorn_unbalanced2(a, b, M, reg, reg_m, returnCost=kind, **kw)
        got = pot.empirical_sinkhorn_unbalanced2(xs, xt, reg, reg_m, a, b, stopThr=1e-12, returnCost=kind)
        assert float(got) == pytest.approx(float(ref), rel=1e-6, abs=1e-9)


def test_bad_pot_arguments(gauss):
    xs, xt = gauss
    with pytest.raises(ValueError, match="metric"):
        pot.empirical_sinkhorn2(xs, xt, 0.1, metric="euclidean")
    with pytest.raises(ValueError, match="warmstart"):
        pot.empirical_sinkhorn2(xs, xt, 0.1, warmstart=(np.zeros(60), np.zeros(60)))
    with pytest.raises(ValueError, match="returnCost"):
        pot.empirical_sinkhorn_unbalanced2(xs, xt, 0.1, 1.0, returnCost="both")
    with pytest.raises(ValueError, match="reg_m"):
        pot.empirical_sinkhorn_unbalanced2(xs, xt, 0.1, -1.0)
    with pytest.raises(TypeError, match="reg_m"):
        pot.empirical_sinkhorn_unbalanced2(xs, xt, 0.1, "1")
