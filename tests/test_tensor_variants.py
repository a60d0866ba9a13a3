"""Nonnegative, regularized and masked CP; Tucker (HOSVD/HOOI/nonnegative); NMF (dense and sparse)."""

import warnings

import numpy as np
import pytest
import scipy.sparse

from lorainne import ConvergenceWarning, CPTensor, NMFResult, TuckerTensor, cp, factor_match_score, nmf, tucker

tl = pytest.importorskip("tensorly")


def planted_nonnegative(rng, shape, rank, noise=0.01):
    factors = [rng.random((n, rank)) for n in shape]
    clean = CPTensor(None, factors).to_tensor()
    E = rng.standard_normal(shape)
    X = np.abs(clean + E * noise * np.linalg.norm(clean) / np.linalg.norm(E))
    return X, factors, np.linalg.norm(X - clean) / np.linalg.norm(X)


# ----------------------------------------------------------------------------- nonnegative CP (HALS)


def test_nonnegative_planted_recovery(rng):
    X, true, noise = planted_nonnegative(rng, (30, 25, 20), 5)
    model = cp(X, 5, nonnegative=True, random_state=0, n_iter_max=500)
    assert all(np.all(f >= 0) for f in model.factors) and np.all(model.weights >= 0)
    assert model.errors[-1] <= noise * 1.01
    assert factor_match_score(model, (None, true)) >= 0.99
    assert np.linalg.norm(X - model.to_tensor()) / np.linalg.norm(X) == pytest.approx(model.errors[-1], rel=1e-6)


def test_nonnegative_beats_tensorly_multiplicative_updates(rng):
    from tensorly.decomposition import non_negative_parafac

    X, _, _ = planted_nonnegative(rng, (25, 20, 15), 6, noise=0.01)
    ours = cp(X, 6, nonnegative=True, random_state=0, tol=0, n_iter_max=50)
    theirs = non_negative_parafac(X, 6, init="svd", n_iter_max=50, tol=0, random_state=0)
    their_error = np.linalg.norm(X - tl.cp_to_tensor(theirs)) / np.linalg.norm(X)
    assert ours.errors[-1] < their_error


@pytest.mark.parametrize(
    "options", [dict(nonnegative=True), dict(l1_reg=0.5), dict(nonnegative=True, l1_reg=0.3, l2_reg=0.2)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rust_hals_equals_xp(rng, options, dtype):
    X, _, _ = planted_nonnegative(rng, (11, 10, 9, 3), 3, noise=0.05)
    X = X.astype(dtype)
    a = cp(X, 3, random_state=0, tol=0, n_iter_max=12, backend="rust", **options)
    b = cp(X, 3, random_state=0, tol=0, n_iter_max=12, backend="numpy", **options)
    tolerance = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=tolerance * np.abs(X).max())
    np.testing.assert_allclose(a.errors, b.errors, rtol=tolerance * 10)


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_sparse_nonnegative_equals_dense(rng, backend):
    from lorainne import SparseTensor

    X, _, _ = planted_nonnegative(rng, (10, 9, 8), 3, noise=0.05)
    X = X * (rng.random(X.shape) < 0.5)
    a = cp(X, 3, nonnegative=True, random_state=0, tol=0, n_iter_max=10, backend="numpy")
    b = cp(
        SparseTensor.from_dense(X),
        3,
        nonnegative=True,
        init=cp(X, 3, nonnegative=True, random_state=0, n_iter_max=0),
        tol=0,
        n_iter_max=10,
        backend=backend,
    )
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=1e-9)


def test_nonnegative_errors_never_increase(rng):
    X, _, _ = planted_nonnegative(rng, (12, 11, 10), 4, noise=0.2)
    model = cp(X, 4, nonnegative=True, init="random", random_state=2, tol=0, n_iter_max=40)
    assert np.all(np.diff(model.errors) <= 1e-12)


# ----------------------------------------------------------------------------- regularization and balancing


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_l2_balances_columns_and_shrinks(rng, backend):
    X, _, _ = planted_nonnegative(rng, (15, 12, 10), 3, noise=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = cp(X, 3, random_state=0, tol=0, n_iter_max=30, backend=backend)
        ridge = cp(X, 3, l2_reg=5.0, random_state=0, tol=0, n_iter_max=30, backend=backend)
    assert ridge.errors[-1] >= plain.errors[-1] - 1e-12  # the penalty costs fit
    assert np.sum(ridge.weights) < np.sum(plain.weights)  # and shrinks the model


def test_l2_rust_equals_xp(rng):
    X, _, _ = planted_nonnegative(rng, (10, 9, 8), 3, noise=0.05)
    a = cp(X, 3, l2_reg=0.5, random_state=0, tol=0, n_iter_max=15, backend="rust")
    b = cp(X, 3, l2_reg=0.5, random_state=0, tol=0, n_iter_max=15, backend="numpy")
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=1e-9)


def test_balancing_step_equalizes_column_norms(rng):
    import array_api_compat.numpy as xnp

    from lorainne.tensor._xp import balance

    factors = [rng.standard_normal((n, 3)) * s for n, s in zip((5, 6, 7), (10.0, 0.1, 1.0), strict=False)]
    before = CPTensor(None, [f.copy() for f in factors]).to_tensor()
    grams = [f.T @ f for f in factors]
    balance(xnp, factors, grams, 1.0, 0.0)
    norms = np.array([np.linalg.norm(f, axis=0) for f in factors])
    np.testing.assert_allclose(norms, np.broadcast_to(norms[0], norms.shape), rtol=1e-12)
    np.testing.assert_allclose(CPTensor(None, factors).to_tensor(), before, atol=1e-12)
    np.testing.assert_allclose(grams[1], factors[1].T @ factors[1], atol=1e-12)


def test_l1_gives_sparse_factors(rng):
    X, _, _ = planted_nonnegative(rng, (15, 12, 10), 3, noise=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = cp(X, 3, random_state=0, tol=0, n_iter_max=40)
        lasso = cp(X, 3, l1_reg=2.0, random_state=0, tol=0, n_iter_max=40)
    zeros = lambda m: sum(int(np.sum(f == 0)) for f in m.factors)  # noqa: E731
    assert zeros(lasso) > zeros(plain)
    assert lasso.errors[-1] < 0.5


# ----------------------------------------------------------------------------- missing entries


@pytest.mark.parametrize("shape,rank", [((20, 18, 16), 4), ((12, 10, 9, 8), 3)])
def test_half_missing_entries_are_recovered(rng, shape, rank):
    true = [rng.standard_normal((n, rank)) for n in shape]
    full = CPTensor(None, true).to_tensor()
    mask = rng.random(shape) < 0.5
    observed = np.where(mask, full, 0.0)
    observed_copy = observed.copy()
    model = cp(observed, rank, mask=mask, random_state=0, n_iter_max=1000, tol=1e-12)
    assert np.array_equal(observed, observed_copy)
    missing_error = np.linalg.norm((model.to_tensor() - full)[~mask]) / np.linalg.norm(full[~mask])
    assert missing_error < 1e-4
    assert factor_match_score(model, (None, true)) > 0.999


@pytest.mark.parametrize("options", [dict(), dict(nonnegative=True), dict(l2_reg=0.1)])
def test_masked_rust_sweeps_equal_xp(rng, options):
    X, _, _ = planted_nonnegative(rng, (9, 8, 7), 2, noise=0.05)
    mask = rng.random(X.shape) < 0.6
    a = cp(X, 2, mask=mask, random_state=0, tol=0, n_iter_max=10, backend="rust", **options)
    b = cp(X, 2, mask=mask, random_state=0, tol=0, n_iter_max=10, backend="numpy", **options)
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=1e-9)
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-8)


def test_mask_ignores_what_is_hidden(rng):
    X, _, _ = planted_nonnegative(rng, (8, 7, 6), 2, noise=0.0)
    mask = rng.random(X.shape) < 0.7
    garbage = np.where(mask, X, 1e6)
    a = cp(garbage, 2, mask=mask, random_state=0, tol=0, n_iter_max=10)
    b = cp(np.where(mask, X, 0.0), 2, mask=mask, random_state=0, tol=0, n_iter_max=10)
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=1e-9)


def test_mask_rejects_nothing_observed():
    with pytest.raises(ValueError, match="observes no entry"):
        cp(np.ones((3, 3, 3)), 1, mask=np.zeros((3, 3, 3), dtype=bool))


# ----------------------------------------------------------------------------- Tucker


def planted_tucker(rng, shape, ranks, noise=0.0):
    core = rng.standard_normal(ranks)
    factors = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks, strict=False)]
    X = TuckerTensor(core, factors).to_tensor()
    if noise:
        E = rng.standard_normal(shape)
        X = X + E * noise * np.linalg.norm(X) / np.linalg.norm(E)
    return X, core, factors


@pytest.mark.parametrize("method", ["hooi", "hosvd"])
def test_tucker_exact_recovery_with_orthonormal_factors(rng, method):
    X, _, true = planted_tucker(rng, (20, 15, 12), (4, 3, 5))
    t = tucker(X, (4, 3, 5), method=method, random_state=0)
    assert isinstance(t, TuckerTensor) and t.rank == (4, 3, 5)
    core, factors = t
    for U in factors:
        np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-10)
    np.testing.assert_allclose(t.to_tensor(), X, atol=1e-8 * np.abs(X).max())
    for U, V in zip(factors, true, strict=False):  # same subspaces
        np.testing.assert_allclose(np.linalg.svd(U.T @ V, compute_uv=False), 1.0, atol=1e-8)


def test_hooi_matches_tensorly_fit(rng):
    from tensorly.decomposition import tucker as tl_tucker

    X, _, _ = planted_tucker(rng, (15, 14, 13), (3, 3, 3), noise=0.3)
    ours = tucker(X, 3, random_state=0, tol=0, n_iter_max=20)
    core, factors = tl_tucker(X, rank=[3, 3, 3], n_iter_max=20, tol=0, random_state=0)
    theirs = np.linalg.norm(X - tl.tucker_to_tensor((core, factors))) / np.linalg.norm(X)
    assert ours.errors[-1] == pytest.approx(theirs, rel=1e-6)
    assert np.linalg.norm(X - ours.to_tensor()) / np.linalg.norm(X) == pytest.approx(ours.errors[-1], rel=1e-6)


def test_hooi_improves_on_hosvd_four_way(rng):
    X, _, _ = planted_tucker(rng, (10, 9, 8, 7), (3, 3, 2, 2), noise=0.5)
    a = tucker(X, (3, 3, 2, 2), method="hosvd", random_state=0)
    b = tucker(X, (3, 3, 2, 2), method="hooi", random_state=0)
    assert b.errors[-1] <= a.errors[-1] + 1e-12


def test_nonnegative_tucker(rng):
    core = rng.random((3, 2, 2))
    factors = [rng.random((n, r)) for n, r in zip((12, 10, 8), core.shape, strict=False)]
    X = TuckerTensor(core, factors).to_tensor()
    from tensorly.decomposition import non_negative_tucker

    t = tucker(X, (3, 2, 2), nonnegative=True, init="random", random_state=0, n_iter_max=300, tol=0)
    assert np.all(t.core >= 0) and all(np.all(U >= 0) for U in t.factors)
    assert t.errors[-1] < 0.02
    mu = non_negative_tucker(X, [3, 2, 2], n_iter_max=300, tol=0, random_state=0, init="random")
    assert t.errors[-1] < np.linalg.norm(X - tl.tucker_to_tensor(mu)) / np.linalg.norm(X)
    assert np.linalg.norm(X - t.to_tensor()) / np.linalg.norm(X) == pytest.approx(t.errors[-1], rel=1e-6, abs=1e-9)


def test_masked_tucker(rng):
    X, _, _ = planted_tucker(rng, (14, 12, 10), (2, 2, 2))
    mask = rng.random(X.shape) < 0.6
    t = tucker(np.where(mask, X, 0.0), 2, mask=mask, random_state=0, n_iter_max=500, tol=1e-12)
    assert np.linalg.norm((t.to_tensor() - X)[~mask]) / np.linalg.norm(X[~mask]) < 1e-3


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(rank=(2, 2)), ValueError, "one rank per mode"),
        (dict(rank=(2, 9, 2)), ValueError, r"rank\[1\]"),
        (dict(rank=0), ValueError, "rank"),
        (dict(method="cp"), ValueError, "method"),
        (dict(init="nope"), ValueError, "init"),
        (dict(X=np.full((3, 4, 5), np.nan)), ValueError, "NaN"),
        (dict(X=np.ones(4)), ValueError, "at least 2 modes"),
        (dict(nonnegative=True, X=-np.ones((3, 4, 5))), ValueError, "negative"),
        (dict(method="hosvd", nonnegative=True), ValueError, "hosvd"),
        (dict(mask=np.ones((3, 4), dtype=bool)), ValueError, "mask"),
    ],
)
def test_tucker_bad_input(kwargs, error, match):
    arguments = dict(X=np.arange(60.0).reshape(3, 4, 5), rank=2)
    arguments.update(kwargs)
    X = arguments.pop("X")
    rank = arguments.pop("rank")
    with pytest.raises(error, match=match):
        tucker(X, rank, **arguments)


# ----------------------------------------------------------------------------- NMF


def planted_nmf(rng, m, n, rank, density=None):
    W, H = rng.random((m, rank)), rng.random((rank, n))
    if density is not None:
        W *= rng.random(W.shape) < density
    return W @ H, W, H


@pytest.mark.parametrize("sparse", [False, True])
def test_nmf_recovery(rng, sparse):
    # Factors with zeros make the NMF unique (dense random factors are not identifiable).
    W_true = rng.random((60, 5)) * (rng.random((60, 5)) < 0.5)
    H_true = rng.random((5, 50)) * (rng.random((5, 50)) < 0.5)
    X = W_true @ H_true
    data = scipy.sparse.csr_matrix(X) if sparse else X
    result = nmf(data, 5, random_state=0, n_iter_max=1000, tol=1e-10)
    assert result.converged
    assert isinstance(result, NMFResult)
    W, H = result
    assert W.shape == (60, 5) and H.shape == (5, 50) and W.min() >= 0 and H.min() >= 0
    assert np.linalg.norm(X - W @ H) / np.linalg.norm(X) < 1e-6
    assert result.errors[-1] == pytest.approx(np.linalg.norm(X - W @ H) / np.linalg.norm(X), rel=1e-3, abs=1e-7)
    assert factor_match_score((None, [W, H.T]), (None, [W_true, H_true.T])) > 0.99


def test_nmf_sparse_equals_dense(rng):
    X, _, _ = planted_nmf(rng, 30, 40, 3, density=0.5)
    X[X < 0.3] = 0
    a = nmf(X, 3, random_state=1, tol=0, n_iter_max=20)
    b = nmf(scipy.sparse.csc_matrix(X), 3, random_state=1, tol=0, n_iter_max=20)
    np.testing.assert_allclose(a.W @ a.H, b.W @ b.H, atol=1e-10)


def test_nmf_beats_or_matches_sklearn(rng):
    from sklearn.decomposition import NMF

    X, _, _ = planted_nmf(rng, 50, 40, 4)
    X = X + 0.05 * rng.random(X.shape)
    ours = nmf(X, 4, random_state=0, tol=0, n_iter_max=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = NMF(4, init="nndsvd", max_iter=200, tol=0, solver="cd", random_state=0).fit(X)
    theirs = np.linalg.norm(X - sk.transform(X) @ sk.components_) / np.linalg.norm(X)
    assert ours.errors[-1] <= theirs * 1.05


def test_nmf_float32_and_int(rng):
    X, _, _ = planted_nmf(rng, 20, 15, 3)
    r32 = nmf(X.astype(np.float32), 3, random_state=0, tol=0, n_iter_max=50)
    assert r32.W.dtype == np.float32
    counts = rng.integers(0, 5, (20, 15))
    r = nmf(counts, 3, random_state=0, tol=0, n_iter_max=50)
    assert r.W.dtype == np.float64


@pytest.mark.parametrize(
    "X,kwargs,error,match",
    [
        (-np.ones((3, 3)), {}, ValueError, "negative"),
        (np.full((3, 3), np.nan), {}, ValueError, "NaN"),
        (np.ones((3, 3, 3)), {}, ValueError, "2-D"),
        (scipy.sparse.csr_matrix(-np.eye(3)), {}, ValueError, "negative"),
        (np.ones((3, 3)), dict(rank=0), ValueError, "rank"),
        (np.ones((3, 3)), dict(init=(np.ones((3, 2)), np.ones((3, 3)))), ValueError, "shapes"),
        (np.ones((3, 3)), dict(backend="rust"), ValueError, "no Rust kernel"),
    ],
)
def test_nmf_bad_input(X, kwargs, error, match):
    arguments = dict(rank=2)
    arguments.update(kwargs)
    rank = arguments.pop("rank")
    with pytest.raises(error, match=match):
        nmf(X, rank, **arguments)


# ----------------------------------------------------------------------------- array_api_strict (the portable path)


@pytest.mark.parametrize("options", [dict(nonnegative=True), dict(l1_reg=0.1), dict(l2_reg=0.1), dict(mask=True)])
def test_cp_variants_under_array_api_strict(rng, options):
    xps = pytest.importorskip("array_api_strict")
    X, _, _ = planted_nonnegative(rng, (10, 9, 8), 3, noise=0.05)
    options = dict(options)
    if options.pop("mask", False):
        mask = rng.random(X.shape) < 0.6
        options["mask"], strict_mask = mask, xps.asarray(mask)
    strict_options = {**options, **({"mask": strict_mask} if "mask" in options else {})}
    a = cp(xps.asarray(X), 3, random_state=0, tol=0, n_iter_max=15, **strict_options)
    b = cp(X, 3, random_state=0, tol=0, n_iter_max=15, backend="numpy", **options)
    assert type(a.weights).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(a.to_tensor()), b.to_tensor(), atol=1e-9)


@pytest.mark.parametrize("options", [dict(), dict(method="hosvd"), dict(nonnegative=True, init="random")])
def test_tucker_and_nmf_under_array_api_strict(rng, options):
    xps = pytest.importorskip("array_api_strict")
    X, _, _ = planted_nonnegative(rng, (10, 9, 8), 3, noise=0.05)
    a = tucker(xps.asarray(X), 2, random_state=0, tol=0, n_iter_max=5, **options)
    b = tucker(X, 2, random_state=0, tol=0, n_iter_max=5, **options)
    assert type(a.core).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(a.to_tensor()), b.to_tensor(), atol=1e-9)
    r = nmf(xps.asarray(X.reshape(90, 8)), 3, random_state=0, tol=0, n_iter_max=10)
    s = nmf(X.reshape(90, 8), 3, random_state=0, tol=0, n_iter_max=10)
    np.testing.assert_allclose(np.asarray(r.W @ r.H), s.W @ s.H, atol=1e-9)


def test_tucker_rust_edge_products_equal_numpy(rng):
    X, _, _ = planted_tucker(rng, (50, 40, 35), (4, 3, 3), noise=0.1)  # large enough for the Rust path
    a = tucker(X, (4, 3, 3), random_state=0, tol=0, n_iter_max=4)
    b = tucker(X, (4, 3, 3), random_state=0, tol=0, n_iter_max=4, backend="numpy")
    np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), atol=1e-10 * np.abs(X).max())
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(70, 40, 30), (20, 30, 12, 10), (300, 250)])
def test_edge_mode_product_matches_xp(rng, dtype, shape):
    from lorainne.tensor._structures import edge_mode_product, mode_product

    X = rng.standard_normal(shape).astype(dtype)
    for mode in (0, len(shape) - 1):
        M = rng.standard_normal((5, shape[mode])).astype(dtype)
        want = mode_product(X.astype(np.float64), M.astype(np.float64), mode)
        got = edge_mode_product(X, M, mode, n_threads=2)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=(1e-3 if dtype == np.float32 else 1e-10) * np.abs(want).max())
