"""GaLoreProjector and galore_adam_step: full rank is Adam, descent, orthonormal bases, bad
gradients, warm-started refreshes, the xp path under array_api_strict, validation."""

import array_api_strict as xps
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lorainne._backend import to_host
from lorainne.train import GaLoreProjector, GradientWarning, galore_adam_state, galore_adam_step


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):  # small matrices: threads only contend
        yield


def adam_reference(W, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = np.zeros_like(W)
    v = np.zeros_like(W)
    for t, G in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * G
        v = b2 * v + (1 - b2) * G**2
        W = W - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return W


def sin_largest_angle(A, B):
    """sin of the largest principal angle between the column spans of A and B (orthonormal)."""
    s = np.linalg.svd(np.asarray(A, dtype=np.float64).T @ np.asarray(B, dtype=np.float64), compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - s.min() ** 2)))


@pytest.mark.parametrize("shape", [(12, 8), (8, 12)])
def test_full_rank_reproduces_adam(rng, shape):
    target = rng.standard_normal(shape)
    W0 = rng.standard_normal(shape)
    state = galore_adam_state(min(shape), update_every=3, random_state=0)
    W, grads = W0.copy(), []
    for _ in range(25):
        G = W - target + 0.1 * np.sin(W)  # gradient of a smooth loss
        grads.append(G)
        W = galore_adam_step(W, G, state, lr=0.01)
    assert state.projector.side == "identity"
    # Replay Adam on the same gradient sequence.
    expected = adam_reference(W0, grads, lr=0.01)
    assert np.max(np.abs(W - expected)) < 1e-13


@pytest.mark.parametrize("shape", [(30, 20), (20, 30)])
def test_least_squares_loss_decreases_monotonically(rng, shape):
    m, n = shape
    X = rng.standard_normal((40, m))
    Y = X @ rng.standard_normal((m, n))
    W = np.zeros((m, n))
    state = galore_adam_state(4, update_every=10, random_state=1)
    losses = []
    for _ in range(120):
        R = X @ W - Y
        losses.append(0.5 * float(np.sum(R**2)))
        W = galore_adam_step(W, X.T @ R, state, lr=2e-3)
    assert np.all(np.diff(losses) < 0)
    assert losses[-1] < 0.9 * losses[0]
    assert state.projector.n_refresh == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["randomized", "svd"])
@pytest.mark.parametrize("shape", [(50, 30), (30, 50)])
def test_basis_is_orthonormal_and_projection_is_consistent(rng, dtype, method, shape):
    k = min(shape)
    U0, _ = np.linalg.qr(rng.standard_normal((shape[0], k)))
    V0, _ = np.linalg.qr(rng.standard_normal((shape[1], k)))
    G = ((U0 * 0.7 ** np.arange(k)) @ V0.T).astype(dtype)  # decaying spectrum, as gradients have
    G_copy = G.copy()
    proj = GaLoreProjector(6, method=method, random_state=0)
    R = proj.project(G, 0)
    P = proj.basis
    assert P.dtype == dtype and R.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.linalg.norm(P.T @ P - np.eye(6)) < tol
    assert proj.side == ("right" if shape[0] >= shape[1] else "left")
    back = proj.project_back(R)
    expected = P @ (P.T @ G) if proj.side == "left" else (G @ P) @ P.T
    assert np.allclose(back, expected, atol=10 * tol)
    assert np.array_equal(G, G_copy)
    # The basis is the dominant singular subspace of G.
    U, _, Vt = np.linalg.svd(G.astype(np.float64))
    exact = U[:, :6] if proj.side == "left" else Vt[:6].T
    assert sin_largest_angle(P, exact) < (0.05 if method == "randomized" else 1e-3)


def test_explicit_sides(rng):
    G = rng.standard_normal((40, 25))
    for side, shape in (("left", (5, 25)), ("right", (40, 5))):
        proj = GaLoreProjector(5, side=side, random_state=0)
        assert proj.project(G, 0).shape == shape
        assert proj.project_back(proj.project(G, 1)).shape == G.shape


def _train_with(bad_gradient, step_of_bad, rng, warn):
    target = rng.standard_normal((30, 20))
    W = np.zeros((30, 20))
    state = galore_adam_state(4, update_every=5, random_state=0)
    for step in range(40):
        G = bad_gradient if step == step_of_bad else W - target
        W = galore_adam_step(W, G, state, lr=0.05)
    assert np.all(np.isfinite(W))
    assert np.linalg.norm(W - target) < 0.95 * np.linalg.norm(target)
    P = state.projector.basis
    assert np.linalg.norm(P.T @ P - np.eye(4)) < 1e-12
    return state


@pytest.mark.parametrize("step_of_bad", [0, 5, 7])
@pytest.mark.parametrize("kind", ["nan", "inf", "zero"])
def test_bad_gradients_keep_training_alive_with_one_warning(rng, kind, step_of_bad):
    bad = np.zeros((30, 20))
    if kind == "nan":
        bad = rng.standard_normal((30, 20))
        bad[3, 4] = np.nan
    elif kind == "inf":
        bad = rng.standard_normal((30, 20))
        bad[0, 0] = -np.inf
    if kind == "zero" and step_of_bad % 5:  # a zero gradient between refreshes is a valid (null) update
        _train_with(bad, step_of_bad, rng, warn=False)
        return
    with pytest.warns(GradientWarning) as record:
        state = _train_with(bad, step_of_bad, rng, warn=True)
    assert len(record) == 1
    if kind != "zero":
        assert state.n_skipped == 1


def test_second_bad_gradient_does_not_warn_again(rng):
    proj = GaLoreProjector(3, update_every=1, random_state=0)
    G = rng.standard_normal((20, 10))
    proj.project(G, 0)
    with pytest.warns(GradientWarning) as record:
        proj.project(np.full((20, 10), np.nan), 1)
        proj.project(np.zeros((20, 10)), 2)
    assert len(record) == 1


def test_zero_first_gradient_gives_random_orthonormal_basis():
    proj = GaLoreProjector(3, random_state=0)
    with pytest.warns(GradientWarning, match="all zeros"):
        R = proj.project(np.zeros((10, 20)), 0)
    assert np.all(R == 0)
    assert np.linalg.norm(proj.basis.T @ proj.basis - np.eye(3)) < 1e-12


def test_rank_deficient_gradient(rng):
    G = rng.standard_normal((40, 2)) @ rng.standard_normal((2, 30))  # rank 2 < 6
    proj = GaLoreProjector(6, random_state=0)
    R = proj.project(G, 0)  # no warning: pytest turns warnings into errors
    P = proj.basis
    assert np.linalg.norm(P.T @ P - np.eye(6)) < 1e-12
    assert np.linalg.norm(proj.project_back(R) - G) < 1e-10 * np.linalg.norm(G)  # the range is captured
    _train_with(rng.standard_normal((30, 2)) @ rng.standard_normal((2, 20)), 5, rng, warn=False)


def test_half_precision_is_upcast():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(3)
    G = rng.standard_normal((30, 20)).astype(ml_dtypes.bfloat16)
    proj = GaLoreProjector(4, random_state=0)
    R = proj.project(G, 0)
    assert R.dtype == np.float32 and proj.basis.dtype == np.float32
    W = np.zeros((30, 20), dtype=np.float32)
    state = galore_adam_state(4, random_state=0)
    for _ in range(5):
        W = galore_adam_step(W, (W - 1).astype(ml_dtypes.bfloat16), state, lr=0.1)
    assert W.dtype == np.float32 and np.all(np.isfinite(W))
    G16 = rng.standard_normal((30, 20)).astype(np.float16)
    assert GaLoreProjector(4, random_state=0).project(G16, 0).dtype == np.float32


def test_warm_started_refresh_tracks_a_moving_subspace(rng):
    m, n, r, k = 200, 120, 16, 60
    s = 10.0 * 0.85 ** np.arange(k)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    proj = GaLoreProjector(r, update_every=1, side="left", n_power_iter=1, random_state=0)
    errors = []
    for step in range(12):
        G = (U * s) @ V.T
        proj.project(G, step)
        errors.append(sin_largest_angle(proj.basis, U[:, :r]))
        # the next step's gradient: slowly rotated singular vectors
        U, _ = np.linalg.qr(U + 0.02 * rng.standard_normal((m, k)))
        V, _ = np.linalg.qr(V + 0.02 * rng.standard_normal((n, k)))
    assert max(errors[1:]) <= 0.05, errors


def test_state_transform_rotates_or_resets(rng):
    G0, G1 = rng.standard_normal((15, 40)), rng.standard_normal((15, 40))
    for moments in ("rotate", "reset", "keep"):
        proj = GaLoreProjector(4, update_every=1, side="left", moments=moments, random_state=0)
        proj.project(G0, 0)
        P0 = proj.basis
        M = rng.standard_normal((4, 40))
        proj.project(G1, 1)
        assert proj.changed
        M1 = proj.state_transform(M)
        if moments == "rotate":
            P1 = proj.basis
            assert np.allclose(M1, P1.T @ (P0 @ M))
            assert np.all(proj.state_transform(M**2, second_moment=True) >= 0)
        elif moments == "reset":
            assert np.all(M1 == 0)
        else:
            assert M1 is M


def test_array_api_strict_matches_numpy(rng):
    target = rng.standard_normal((25, 18))
    results = []
    for wrap in (np.asarray, xps.asarray):
        W = wrap(np.zeros((25, 18)))
        T = wrap(target)
        state = galore_adam_state(3, update_every=4, random_state=0)
        for _ in range(10):
            W = galore_adam_step(W, W - T, state, lr=0.05)
        results.append(to_host(W))
    assert np.allclose(results[0], results[1], atol=1e-10)


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="rank must be"):
        GaLoreProjector(0)
    with pytest.raises(TypeError, match="rank must be an integer"):
        GaLoreProjector(2.5)
    with pytest.raises(ValueError, match="update_every"):
        GaLoreProjector(2, update_every=0)
    with pytest.raises(ValueError, match="side"):
        GaLoreProjector(2, side="top")
    with pytest.raises(ValueError, match="method"):
        GaLoreProjector(2, method="qr")
    with pytest.raises(ValueError, match="moments"):
        GaLoreProjector(2, moments="drop")
    proj = GaLoreProjector(2, random_state=0)
    proj.project(rng.standard_normal((10, 8)), 0)
    with pytest.raises(ValueError, match="G must have the shape"):
        proj.project(rng.standard_normal((8, 10)), 1)
    with pytest.raises(ValueError, match="G must be 2-D"):
        proj.project(rng.standard_normal(10), 1)
    with pytest.raises(ValueError, match="N must have shape"):
        proj.project_back(np.ones((3, 3)))
    with pytest.raises(ValueError, match="step"):
        proj.project(rng.standard_normal((10, 8)), -1)
    with pytest.raises(TypeError, match="complex"):
        proj.project(np.ones((10, 8), dtype=complex), 1)
    W = np.zeros((10, 8))
    state = galore_adam_state(2)
    for lr in (np.nan, np.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="lr must be"):
            galore_adam_step(W, W, state, lr=lr)
    with pytest.raises(ValueError, match="G must have the shape of W"):
        galore_adam_step(W, np.zeros((8, 10)), state, lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        galore_adam_step(W, W, state, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="state must be"):
        galore_adam_step(W, W, {}, lr=0.1)
    with pytest.raises(ValueError, match="project_back needs"):
        GaLoreProjector(2).project_back(np.ones((2, 2)))
