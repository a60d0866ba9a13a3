"""DLRT (augmented BUG) and TDLRT: planted-rank recovery, descent, the pieces of a step, the xp
path under array_api_strict, validation."""

import array_api_strict as xps
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lorainne._backend import to_host
from lorainne.train import (
    LowRankLayer,
    TuckerLayer,
    dlrt_kl_step,
    dlrt_s_step,
    dlrt_step,
    dlrt_truncate,
    tdlrt_step,
)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def planted(rng, m, n, sigma):
    U, _ = np.linalg.qr(rng.standard_normal((m, len(sigma))))
    V, _ = np.linalg.qr(rng.standard_normal((n, len(sigma))))
    return (U * np.asarray(sigma)) @ V.T


def test_planted_rank_five_is_recovered(rng):
    target = planted(rng, 50, 40, [5.0, 4.0, 3.0, 2.0, 1.0])
    layer = LowRankLayer.from_dense(rng.standard_normal((50, 40)), 10)
    assert layer.rank == 10
    ranks = []
    for _ in range(200):
        layer = dlrt_step(layer, lambda W: W - target, lr=0.2, tol=1e-3)
        ranks.append(layer.rank)
    rel = np.linalg.norm(layer.to_dense() - target) / np.linalg.norm(target)
    assert layer.rank == 5, ranks[-10:]
    assert rel <= 1e-10
    assert np.linalg.norm(layer.U.T @ layer.U - np.eye(5)) < 1e-12
    assert np.linalg.norm(layer.V.T @ layer.V - np.eye(5)) < 1e-12


def test_descent_is_monotone_at_small_step(rng):
    X = rng.standard_normal((80, 50))
    target = planted(rng, 50, 40, [3.0, 2.0, 1.5, 1.0, 0.5, 0.2])
    Y = X @ target + 0.01 * rng.standard_normal((80, 40))

    def loss(W):
        return 0.5 * float(np.sum((X @ W - Y) ** 2))

    def grad(W):
        return X.T @ (X @ W - Y)

    lr = 0.2 / np.linalg.norm(X, 2) ** 2
    layer = LowRankLayer.from_dense(0.1 * rng.standard_normal((50, 40)), 4)
    losses = [loss(layer.to_dense())]
    for _ in range(150):
        layer = dlrt_step(layer, grad, lr=lr, tol=1e-4, max_rank=20)
        losses.append(loss(layer.to_dense()))
    assert np.all(np.diff(losses) <= 1e-12 * losses[0]), np.max(np.diff(losses))
    assert losses[-1] < 0.05 * losses[0]


def test_kl_step_keeps_w_and_augments_the_bases(rng):
    layer = LowRankLayer.from_dense(rng.standard_normal((30, 20)), 4)
    W = layer.to_dense()
    U_copy = layer.U.copy()
    G = rng.standard_normal((30, 20))
    aug = dlrt_kl_step(layer, G @ layer.V, G.T @ layer.U, lr=0.1)
    assert aug.U.shape == (30, 8) and aug.V.shape == (20, 8) and aug.S.shape == (8, 8)
    assert np.linalg.norm(aug.U.T @ aug.U - np.eye(8)) < 1e-12
    assert np.allclose(aug.U @ aug.S @ aug.V.T, W, atol=1e-12)  # U, V lie in the augmented spans
    assert np.allclose(aug.U @ (aug.U.T @ layer.U), layer.U, atol=1e-12)
    K = layer.U @ layer.S - 0.1 * G @ layer.V
    assert np.allclose(aug.U @ (aug.U.T @ K), K, atol=1e-12)  # and so does the updated K
    assert np.array_equal(layer.U, U_copy)
    # S-step then a fixed-rank truncation gives a rank-4 layer
    aug = dlrt_s_step(aug, aug.U.T @ G @ aug.V, lr=0.1)
    out = dlrt_truncate(aug, rank=4)
    assert out.rank == 4 and out.n_params == (30 + 20) * 4 + 16
    # rank larger than the augmented size is capped; a saturated basis (2r > n) still works
    assert dlrt_truncate(aug, rank=50).rank == 8
    small = LowRankLayer.from_dense(rng.standard_normal((6, 5)), 4)
    G = rng.standard_normal((6, 5))
    assert dlrt_kl_step(small, G @ small.V, G.T @ small.U, lr=0.1).U.shape == (6, 6)


def test_reevaluate_gives_the_same_step(rng):
    target = planted(rng, 20, 15, [2.0, 1.0])
    layer = LowRankLayer.from_dense(rng.standard_normal((20, 15)), 3)
    calls = []

    def grad(W):
        calls.append(1)
        return W - target

    one = dlrt_step(layer, grad, lr=0.3, tol=1e-3)
    two = dlrt_step(layer, grad, lr=0.3, tol=1e-3, reevaluate=True)
    assert len(calls) == 3
    assert np.allclose(one.to_dense(), two.to_dense(), atol=1e-12)


def test_array_api_strict_matches_numpy(rng):
    target = planted(rng, 25, 18, [3.0, 2.0, 1.0])
    W0 = rng.standard_normal((25, 18))
    results = []
    for wrap in (np.asarray, xps.asarray):
        T = wrap(target)
        layer = LowRankLayer.from_dense(wrap(W0), 5)
        for _ in range(8):
            layer = dlrt_step(layer, lambda W, T=T: W - T, lr=0.3, tol=1e-3)
        results.append((layer.rank, to_host(layer.to_dense())))
    assert results[0][0] == results[1][0]
    assert np.allclose(results[0][1], results[1][1], atol=1e-10)


def random_tucker(rng, shape, ranks):
    core = rng.standard_normal(ranks)
    factors = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks, strict=True)]
    return TuckerLayer(core, factors)


def test_tdlrt_recovers_planted_tucker_ranks(rng):
    shape = (12, 10, 8)
    target = random_tucker(rng, shape, (3, 4, 2)).to_dense()
    layer = random_tucker(rng, shape, (5, 5, 5))
    for _ in range(120):
        layer = tdlrt_step(layer, lambda W: W - target, lr=0.3, tol=1e-4)
    assert layer.ranks == (3, 4, 2)
    assert np.linalg.norm(layer.to_dense() - target) / np.linalg.norm(target) < 1e-8
    for U in layer.factors:
        assert np.linalg.norm(U.T @ U - np.eye(U.shape[1])) < 1e-12
    assert layer.n_params == 3 * 4 * 2 + 12 * 3 + 10 * 4 + 8 * 2


def test_tdlrt_on_a_conv_kernel_shape_and_strict(rng):
    shape = (6, 4, 3, 3)  # out channels, in channels, kernel height, kernel width
    target = random_tucker(rng, shape, (2, 2, 2, 2)).to_dense()
    start = random_tucker(rng, shape, (3, 3, 2, 2))
    results = []
    for wrap in (np.asarray, xps.asarray):
        T = wrap(target)
        layer = TuckerLayer(wrap(start.core), [wrap(U) for U in start.factors])
        for _ in range(5):
            layer = tdlrt_step(layer, lambda W, T=T: W - T, lr=0.5, tol=1e-6, max_rank=3)
        results.append((layer.ranks, to_host(layer.to_dense())))
    assert results[0][0] == results[1][0]
    assert np.allclose(results[0][1], results[1][1], atol=1e-10)
    fixed = tdlrt_step(layer, lambda W: W - xps.asarray(target), lr=0.5, rank=(2, 2, 2, 2))
    assert fixed.ranks == (2, 2, 2, 2)


def test_bad_arguments(rng):
    layer = LowRankLayer.from_dense(rng.standard_normal((10, 8)), 3)
    G = rng.standard_normal((10, 8))
    with pytest.raises(ValueError, match="rank must be"):
        LowRankLayer.from_dense(G, 0)
    with pytest.raises(ValueError, match="S must be"):
        LowRankLayer(layer.U, layer.S[:2, :2], layer.V)
    with pytest.raises(ValueError, match="grad_K must have shape"):
        dlrt_kl_step(layer, G, G.T @ layer.U, lr=0.1)
    with pytest.raises(ValueError, match="grad_L contains NaN"):
        dlrt_kl_step(layer, G @ layer.V, np.full((8, 3), np.nan), lr=0.1)
    for lr in (np.nan, np.inf, 0.0, -0.1):
        with pytest.raises(ValueError, match="lr must be"):
            dlrt_step(layer, lambda W: W, lr=lr, tol=0.1)
    with pytest.raises(ValueError, match="exactly one of tol and rank"):
        dlrt_step(layer, lambda W: W, lr=0.1)
    with pytest.raises(ValueError, match="tol must be"):
        dlrt_step(layer, lambda W: W, lr=0.1, tol=1.5)
    with pytest.raises(ValueError, match="rank must be"):
        dlrt_truncate(layer, rank=0)
    with pytest.raises(ValueError, match=r"loss_grad\(W\) must have shape"):
        dlrt_step(layer, lambda W: W.T, lr=0.1, tol=0.1)
    with pytest.raises(TypeError, match="loss_grad must be"):
        dlrt_step(layer, G, lr=0.1, tol=0.1)
    with pytest.raises(TypeError, match="layer must be"):
        dlrt_step(G, lambda W: W, lr=0.1, tol=0.1)
    tucker = random_tucker(rng, (5, 4, 3), (2, 2, 2))
    with pytest.raises(ValueError, match="rank must be a tuple of 3"):
        tdlrt_step(tucker, lambda W: W, lr=0.1, rank=(2, 2))
    with pytest.raises(ValueError, match="lr must be"):
        tdlrt_step(tucker, lambda W: W, lr=np.nan, tol=0.1)
    with pytest.raises(ValueError, match="factors"):
        TuckerLayer(tucker.core, tucker.factors[:2])
    with pytest.raises(ValueError, match="factors\\[1\\] must have 2 columns"):
        TuckerLayer(tucker.core, [tucker.factors[0], np.ones((4, 3)), tucker.factors[2]])
