"""lorainne.compress: low_rank (svd, fwsvd, asvd, svd-llm), ActivationStats, allocate_ranks."""

import array_api_strict as xps
import numpy as np
import pytest

from lorainne.compress import ActivationStats, allocate_ranks, load_stats, low_rank, save_stats
from lorainne.compress._allocate import greedy_allocation


def decaying(rng, m, n, decay=0.9):
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (U * decay ** np.arange(k)) @ V.T


def activations(rng, n, d):
    """Correlated, anisotropic activations (n, d)."""
    return rng.standard_normal((n, d)) @ (rng.standard_normal((d, d)) * np.geomspace(3, 0.05, d))


def tail(M, r):
    s = np.linalg.svd(M, compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2)))


# --------------------------------------------------------------------------- ActivationStats


def test_stats_stream_merge_and_roundtrip(rng, tmp_path):
    X = activations(rng, 900, 12)
    a, b = ActivationStats(), ActivationStats(12)
    for batch in np.array_split(X[:500], 3):
        a.update(batch)
    b.update(X[500:])
    a.merge(b)
    assert a.n_samples == 900
    np.testing.assert_allclose(a.covariance, X.T @ X, rtol=1e-12)
    np.testing.assert_allclose(a.mean_abs, np.abs(X).mean(axis=0), rtol=1e-12)
    values, vectors = a.eigh()
    np.testing.assert_allclose((vectors * values) @ vectors.T, X.T @ X, rtol=1e-10, atol=1e-9)
    save_stats(tmp_path / "s.npz", {"layer.0": a})
    back = load_stats(tmp_path / "s.npz")["layer.0"]
    np.testing.assert_array_equal(back.covariance, a.covariance)
    assert back.n_samples == 900


def test_stats_array_api_strict_and_errors(rng):
    X = activations(rng, 50, 6)
    s = ActivationStats().update(xps.asarray(X))
    np.testing.assert_allclose(np.asarray(s.covariance), X.T @ X, rtol=1e-12)
    with pytest.raises(ValueError, match="batch must have 6 columns"):
        s.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="batch contains NaN"):
        s.update(np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match="no samples"):
        _ = ActivationStats().mean_abs
    with pytest.raises(TypeError, match="other must be an ActivationStats"):
        s.merge(X)


# --------------------------------------------------------------------------- low_rank


def test_svd_llm_data_loss_is_the_exact_tail_of_ws(rng):
    W = rng.standard_normal((40, 30))
    X = activations(rng, 400, 30)
    C = X.T @ X
    for r in (1, 5, 17):
        llm = low_rank(W, r, method="svd-llm", covariance=C, solver="exact")
        measured = np.linalg.norm((W - llm.A @ llm.B) @ X.T)
        expected = tail(W @ np.linalg.cholesky(C), r)
        assert abs(llm.data_error - expected) <= 1e-8 * expected
        assert abs(measured - expected) <= 1e-8 * expected
        assert abs(llm.predicted_error - expected) <= 1e-8 * expected
        plain = low_rank(W, r, covariance=C, solver="exact")
        assert llm.data_error <= plain.data_error
        assert plain.weight_error <= llm.weight_error * (1 + 1e-12)  # svd is optimal in weights


def test_factors_split_and_plain_svd_is_optimal(rng):
    W = decaying(rng, 30, 20)
    f = low_rank(W, 6)
    A, B = f
    assert A.shape == (30, 6) and B.shape == (6, 20) and f.rank == 6 and f.n_params == 6 * 50
    assert abs(f.weight_error - tail(W, 6)) <= 1e-10
    np.testing.assert_allclose(
        np.linalg.norm(A, axis=0), np.linalg.norm(B, axis=1), rtol=1e-10
    )  # U sqrt(S), sqrt(S) Vt
    assert f.data_error is None


def test_fwsvd_with_constant_rows_and_asvd_with_alpha_zero_equal_svd(rng):
    W = decaying(rng, 25, 35)
    plain = low_rank(W, 7).to_dense()
    fw = low_rank(W, 7, method="fwsvd", fisher=np.full(W.shape, 3.7)).to_dense()
    asvd = low_rank(W, 7, method="asvd", mean_abs=rng.uniform(0.1, 2, 35), alpha=0.0).to_dense()
    np.testing.assert_allclose(fw, plain, atol=1e-12)
    np.testing.assert_allclose(asvd, plain, atol=1e-12)


def test_fwsvd_and_asvd_reduce_their_weighted_errors(rng):
    W = rng.standard_normal((30, 24))
    F = rng.uniform(0, 1, W.shape) * np.geomspace(10, 0.01, 30)[:, None]
    d = np.sqrt(F.sum(axis=1))
    fw, plain = low_rank(W, 5, method="fwsvd", fisher=F), low_rank(W, 5)
    weighted = lambda f: np.linalg.norm(d[:, None] * (W - f.to_dense()))  # noqa: E731
    assert weighted(fw) < weighted(plain)
    assert abs(weighted(fw) - fw.predicted_error) <= 1e-9 * fw.predicted_error
    X = activations(rng, 300, 24)
    stats = ActivationStats().update(X)
    a = low_rank(W, 5, method="asvd", covariance=stats, alpha=1.0)
    s = np.abs(X).mean(axis=0)
    assert np.linalg.norm((W - a.to_dense()) * s) < np.linalg.norm((W - plain.to_dense()) * s)


def test_randomized_and_exact_solvers_agree(rng):
    W = decaying(rng, 300, 200, decay=0.92)
    X = activations(rng, 600, 200)
    stats = ActivationStats().update(X)
    for method in ("svd", "svd-llm"):
        exact = low_rank(W, 20, method=method, covariance=stats, solver="exact")
        fast = low_rank(W, 20, method=method, covariance=stats, solver="randomized", random_state=0)
        auto = low_rank(W, 20, method=method, covariance=stats, random_state=0)  # 20 <= 200 / 4: randomized
        assert exact.predicted_error <= fast.predicted_error <= 1.01 * exact.predicted_error
        assert auto.predicted_error == fast.predicted_error
        np.testing.assert_allclose(fast.singular_values, exact.singular_values, rtol=1e-2)


def test_singular_covariance_dead_channels(rng):
    W = rng.standard_normal((20, 16))
    X = activations(rng, 200, 16)
    X[:, [3, 9]] = 0.0  # dead channels: C is singular, Cholesky fails
    stats = ActivationStats().update(X)
    llm = low_rank(W, 6, method="svd-llm", covariance=stats)
    assert np.all(np.isfinite(llm.A)) and np.all(np.isfinite(llm.B))
    measured = np.linalg.norm((W - llm.to_dense()) @ X.T)
    assert abs(llm.data_error - measured) <= 1e-8 * measured
    live = np.delete(np.arange(16), [3, 9])
    optimum = tail(W[:, live] @ np.linalg.cholesky(X[:, live].T @ X[:, live]), 6)
    assert llm.data_error <= optimum * (1 + 1e-6)
    assert llm.data_error <= low_rank(W, 6, covariance=stats).data_error


def test_energy_transpose_dtype_and_input_untouched(rng):
    W = decaying(rng, 40, 30, decay=0.7).astype(np.float32)
    copy = W.copy()
    f = low_rank(W, energy=0.99)
    s2 = np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2
    expected = int(np.searchsorted(np.cumsum(s2) / s2.sum(), 0.99) + 1)
    assert f.rank == expected and f.A.dtype == np.float32
    t = low_rank(W.T, 5, transpose=True)
    assert t.A.shape == (30, 5) and t.B.shape == (5, 40)
    np.testing.assert_allclose(t.to_dense(), low_rank(W, 5).to_dense().T, atol=1e-5)
    np.testing.assert_array_equal(W, copy)


def test_array_api_strict_input(rng):
    W = rng.standard_normal((24, 18))
    X = activations(rng, 100, 18)
    stats = ActivationStats().update(xps.asarray(X))
    f = low_rank(xps.asarray(W), 4, method="svd-llm", covariance=stats)
    ref = low_rank(W, 4, method="svd-llm", covariance=X.T @ X)
    assert isinstance(f.A, type(xps.asarray(1.0)))
    np.testing.assert_allclose(np.asarray(f.A @ f.B), ref.to_dense(), atol=1e-9)
    assert abs(f.data_error - ref.data_error) <= 1e-9 * ref.data_error


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rank": 0}, ValueError, "rank must be in"),
        ({"rank": 11}, ValueError, "rank must be in"),
        ({"rank": None}, ValueError, "exactly one of rank and energy"),
        ({"rank": 2, "energy": 0.5}, ValueError, "exactly one of rank and energy"),
        ({"energy": 1.5}, ValueError, "energy must be"),
        ({"rank": 2, "method": "pca"}, ValueError, "method must be one of"),
        ({"rank": 2, "solver": "lanczos"}, ValueError, "solver must be one of"),
        ({"rank": 2, "method": "svd-llm"}, ValueError, "needs covariance"),
        ({"rank": 2, "method": "fwsvd"}, ValueError, "needs fisher"),
        ({"rank": 2, "method": "asvd"}, ValueError, "needs activation statistics"),
        ({"rank": 2, "covariance": np.eye(9)}, ValueError, "covariance must have shape"),
        ({"rank": 2, "covariance": np.triu(np.ones((10, 10)))}, ValueError, "symmetric"),
        ({"rank": 2, "method": "fwsvd", "fisher": -np.ones((12, 10))}, ValueError, "nonnegative"),
        ({"rank": 2, "alpha": 2.0}, ValueError, "alpha must be"),
        ({"rank": 2, "transpose": 1}, TypeError, "transpose must be a bool"),
        ({"rank": 2.5}, TypeError, "rank must be an integer"),
    ],
)
def test_low_rank_bad_input(rng, kwargs, error, match):
    W = rng.standard_normal((12, 10))
    with pytest.raises(error, match=match):
        low_rank(W, **kwargs)


def test_low_rank_bad_weights():
    with pytest.raises(ValueError, match="W contains NaN"):
        low_rank(np.full((4, 4), np.nan), 1)
    with pytest.raises(ValueError, match="W must be 2-D"):
        low_rank(np.ones(4), 1)
    with pytest.raises(TypeError, match="W has unsupported dtype complex128"):
        low_rank(np.ones((4, 4), dtype=complex), 1)


# --------------------------------------------------------------------------- allocate_ranks


def brute_force_energy(spectra, shapes, budget):
    """Exact dynamic program over the parameter budget: max captured sigma^2."""
    best = np.zeros(budget + 1)
    for name, s2 in spectra.items():
        out, n_in = shapes[name]
        prefix = np.concatenate([[0.0], np.cumsum(s2)])
        options = [(r * (out + n_in), prefix[r]) for r in range(len(s2) + 1) if r * (out + n_in) < out * n_in]
        options.append((out * n_in, prefix[-1]))
        new = np.full(budget + 1, -np.inf)
        for cost, gain in options:
            if cost <= budget:
                new[cost:] = np.maximum(new[cost:], best[: budget + 1 - cost] + gain)
        best = new
    return float(best.max())


def test_greedy_reaches_99_percent_of_the_dynamic_program():
    worst = 1.0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        shapes = {k: (int(rng.integers(32, 96)), int(rng.integers(32, 96))) for k in range(6)}
        spectra = {
            k: np.sort(rng.exponential(size=min(s)))[::-1] * np.exp(-rng.uniform(0.02, 0.2) * np.arange(min(s)))
            for k, s in shapes.items()
        }
        dense_params = sum(o * i for o, i in shapes.values())
        for fraction in (0.3, 0.5, 0.7):
            budget = int(fraction * dense_params)
            ranks, dense, used = greedy_allocation(spectra, shapes, budget)
            assert used <= budget
            for k, (o, i) in shapes.items():
                assert k in dense or ranks[k] * (o + i) < o * i  # never at or above break-even
            captured = sum(spectra[k].sum() if k in dense else spectra[k][: ranks[k]].sum() for k in spectra)
            worst = min(worst, captured / brute_force_energy(spectra, shapes, budget))
    assert worst >= 0.99


def test_allocate_ranks_end_to_end(rng):
    layers = {
        "low": decaying(rng, 60, 50, decay=0.5),
        "flat": rng.standard_normal((60, 50)),
        "mid": decaying(rng, 40, 70, decay=0.9),
    }
    alloc = allocate_ranks(layers, 0.4)
    assert alloc.n_params <= alloc.budget == int(0.4 * alloc.dense_params)
    assert alloc.ranks["low"] < alloc.ranks["mid"]  # a fast decay needs few triplets
    for name, W in layers.items():
        o, i = W.shape
        if name not in alloc.dense:
            assert alloc.ranks[name] * (o + i) < o * i
            assert abs(alloc.layer_loss[name] - tail(W, alloc.ranks[name]) ** 2) <= 1e-8 * max(tail(W, 1) ** 2, 1)
    rounded = allocate_ranks(layers, 0.4, round_to=8)
    assert all(r % 8 == 0 for name, r in rounded.ranks.items() if name not in rounded.dense)
    assert rounded.n_params <= rounded.budget
    full = allocate_ranks(layers, 1.0)  # everything fits: full-rank layers stay dense
    assert {"flat", "mid"} <= full.dense and full.predicted_loss == 0.0
    assert "low" not in full.dense  # 0.5**k: its tail is below rounding, no parameter is spent on it
    absolute = allocate_ranks(list(layers.values()), 2000)
    assert absolute.n_params <= 2000 and set(absolute.ranks) == {0, 1, 2}


def test_allocate_ranks_svd_llm_predicts_the_data_loss(rng):
    layers, stats = {}, {}
    for name, (o, i) in {"a": (30, 20), "b": (25, 30)}.items():
        layers[name] = rng.standard_normal((o, i))
        stats[name] = ActivationStats().update(activations(rng, 200, i))
    alloc = allocate_ranks(layers, 0.5, method="svd-llm", stats=stats)
    measured = 0.0
    for name, W in layers.items():
        if name not in alloc.dense:
            measured += (
                low_rank(W, alloc.ranks[name], method="svd-llm", covariance=stats[name], solver="exact").data_error ** 2
            )
    assert abs(measured - alloc.predicted_loss) <= 1e-8 * alloc.predicted_loss


@pytest.mark.parametrize(
    ("budget", "kwargs", "error", "match"),
    [
        (-0.5, {}, ValueError, "budget must be a nonnegative"),
        (float("nan"), {}, ValueError, "budget must be a nonnegative"),
        (1.5, {}, ValueError, "budget must be a fraction"),
        ("half", {}, TypeError, "budget must be a number"),
        (0.5, {"method": "svd-llm"}, ValueError, "needs stats for every layer"),
        (0.5, {"round_to": 0}, ValueError, "round_to must be"),
    ],
)
def test_allocate_ranks_bad_input(rng, budget, kwargs, error, match):
    with pytest.raises(error, match=match):
        allocate_ranks({"a": rng.standard_normal((8, 6))}, budget, **kwargs)


def test_allocate_ranks_array_api_strict(rng):
    W = decaying(rng, 30, 20, decay=0.6)
    a = allocate_ranks({"w": xps.asarray(W)}, 0.3)
    b = allocate_ranks({"w": W}, 0.3)
    assert a.ranks == b.ranks
