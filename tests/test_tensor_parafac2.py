"""PARAFAC2: tensorly's iterates from the same start, planted recovery, masks, xp path, bad input."""

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lorainne import ConvergenceWarning, Parafac2Tensor, factor_match_score, parafac2

tl = pytest.importorskip("tensorly")


def planted(rng, K=12, J=15, R=3, sizes=None, noise=0.0):
    A = rng.uniform(0.5, 1.5, (K, R))
    B = rng.standard_normal((R, R))
    C = rng.standard_normal((J, R))
    sizes = rng.integers(12, 25, K) if sizes is None else sizes
    P = [np.linalg.qr(rng.standard_normal((int(n), R)))[0] for n in sizes]
    clean = [P[k] @ B @ np.diag(A[k]) @ C.T for k in range(K)]
    if noise:
        E = [rng.standard_normal(s.shape) for s in clean]
        scale = noise * np.sqrt(sum((s**2).sum() for s in clean) / sum((e**2).sum() for e in E))
        slices = [s + scale * e for s, e in zip(clean, E, strict=True)]
    else:
        slices = clean
    return slices, clean, (A, B, C, P)


def rel_error(model, slices):
    rec = tl.parafac2_tensor.parafac2_to_slices(model)
    return np.sqrt(
        sum(((r - s) ** 2).sum() for r, s in zip(rec, slices, strict=True)) / sum((s**2).sum() for s in slices)
    )


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_same_iterates_as_tensorly(rng, backend):
    from tensorly.decomposition import parafac2 as tl_parafac2
    from tensorly.parafac2_tensor import Parafac2Tensor as TLParafac2

    slices, _, _ = planted(rng, noise=0.1)
    K, J, R = len(slices), slices[0].shape[1], 3
    start = [rng.uniform(0.5, 1.5, (K, R)), rng.standard_normal((R, R)), rng.standard_normal((J, R))]
    for n_iter in (1, 6):
        ours = parafac2(slices, R, init=(np.ones(R), start), n_iter_max=n_iter, tol=0, backend=backend)
        their_start = TLParafac2((np.ones(R), [f.copy() for f in start], [np.eye(s.shape[0], R) for s in slices]))
        theirs = tl_parafac2(slices, R, init=their_start, n_iter_max=n_iter, tol=0, n_iter_parafac=1, linesearch=False)
        for a, b in zip(
            tl.parafac2_tensor.parafac2_to_slices(ours), tl.parafac2_tensor.parafac2_to_slices(theirs), strict=True
        ):
            np.testing.assert_allclose(a, b, atol=1e-10)
        for p, q in zip(ours.projections, theirs.projections, strict=True):
            np.testing.assert_allclose(p, q, atol=1e-9)
    assert ours.errors[-1] == pytest.approx(rel_error(ours, slices), rel=1e-9)


def test_planted_recovery_and_fit(rng):
    slices, clean, (A, B, C, P) = planted(rng, K=20, J=12, R=3, noise=0.0)
    model = parafac2(slices, 3, n_iter_max=3000, tol=1e-14, random_state=0)
    assert isinstance(model, Parafac2Tensor)
    weights, (A_hat, B_hat, C_hat), projections = model
    assert factor_match_score((None, [A_hat, C_hat]), (None, [A, C])) >= 0.99
    assert model.errors[-1] < 1e-5
    for p in projections:
        np.testing.assert_allclose(p.T @ p, np.eye(3), atol=1e-10)
    # the evolving factors P_k B are recovered up to column scale and permutation
    np.testing.assert_allclose(rel_error(model, slices), model.errors[-1], rtol=1e-6, atol=1e-12)


def test_noisy_recovery_at_noise_level_and_monotone(rng):
    slices, clean, (A, B, C, P) = planted(rng, K=25, J=14, R=3, noise=0.05)
    model = parafac2(slices, 3, n_iter_max=2000, tol=1e-10, random_state=0)
    assert model.converged
    noise = np.sqrt(
        sum(((s - c) ** 2).sum() for s, c in zip(slices, clean, strict=True)) / sum((s**2).sum() for s in slices)
    )
    assert model.errors[-1] <= noise * 1.0001
    assert factor_match_score((None, model.factors[::2]), (None, [A, C])) >= 0.99
    errors = np.array(model.errors)
    assert np.all(np.diff(errors) <= 1e-12 * errors[0])


def test_stacked_array_input_and_xp_path(rng):
    slices, _, _ = planted(rng, K=8, J=10, R=2, sizes=[14] * 8, noise=0.05)
    X = np.stack(slices)
    a = parafac2(X, 2, random_state=0, tol=0, n_iter_max=8)
    b = parafac2(xps.asarray(X), 2, random_state=0, tol=0, n_iter_max=8)
    assert isinstance(b.factors[0], type(xps.asarray(1.0)))
    np.testing.assert_allclose(np.asarray(b.to_tensor()), a.to_tensor(), atol=1e-9)
    np.testing.assert_allclose(b.errors, a.errors, rtol=1e-9)
    assert a.to_tensor().shape == X.shape


def test_mask_recovers_missing_entries(rng):
    slices, clean, _ = planted(rng, K=15, J=12, R=2, noise=0.0)
    masks = [rng.random(s.shape) > 0.2 for s in slices]
    damaged = [np.where(m, s, 1e3) for s, m in zip(slices, masks, strict=True)]  # garbage under the mask
    model = parafac2(damaged, 2, mask=masks, n_iter_max=1000, tol=1e-10, random_state=0)
    rec = model.to_slices()
    missing = np.concatenate([(r - c)[~m] for r, c, m in zip(rec, clean, masks, strict=True)])
    scale = np.sqrt(np.mean(np.concatenate([c.ravel() for c in clean]) ** 2))
    assert np.sqrt(np.mean(missing**2)) / scale < 0.05
    assert all(
        np.array_equal(d[~m], np.full((~m).sum(), 1e3)) for d, m in zip(damaged, masks, strict=True)
    )  # input unmodified


def test_nonnegative(rng):
    slices, _, _ = planted(rng, K=10, J=10, R=2, noise=0.0)
    C = np.abs(rng.standard_normal((10, 2)))
    slices = [np.abs(s) for s in slices]
    model = parafac2(slices, 2, nonnegative=True, random_state=0, n_iter_max=50, tol=1e-6)
    assert np.all(model.factors[0] >= 0) and np.all(model.factors[2] >= 0)
    assert C.shape == (10, 2)


def test_convergence_warning_and_callback(rng):
    slices, _, _ = planted(rng, noise=0.1)
    with pytest.warns(ConvergenceWarning, match="n_iter_max=2"):
        model = parafac2(slices, 3, n_iter_max=2, random_state=0)
    assert model.n_iter == 2 and not model.converged
    seen = []
    model = parafac2(slices, 3, n_iter_max=50, random_state=0, callback=lambda s, e: seen.append(e) or len(seen) == 3)
    assert model.n_iter == 3 and len(seen) == 3


def test_bad_input(rng):
    slices, _, _ = planted(rng, K=4, J=6, R=2)
    with pytest.raises(ValueError, match="rank"):
        parafac2(slices, 7)
    with pytest.raises(ValueError, match="slices"):
        parafac2([slices[0], rng.standard_normal((5, 4))], 2)
    bad = [s.copy() for s in slices]
    bad[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"slices\[1\]"):
        parafac2(bad, 2)
    with pytest.raises(ValueError, match="mask"):
        parafac2(slices, 2, mask=[np.ones((2, 2), bool)] * 4)
    with pytest.raises(TypeError, match="slices"):
        parafac2("abc", 2)
    with pytest.raises(ValueError, match="init"):
        parafac2(slices, 2, init="jennrich")
    with pytest.raises(ValueError, match="slices"):
        parafac2(np.ones((3, 4)), 2)


@settings(max_examples=25, deadline=None)
@given(
    K=st.integers(1, 5),
    J=st.integers(1, 7),
    data=st.data(),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rust_projection_step_matches_xp_reference(K, J, data, dtype, seed):
    from lorainne._backend import core
    from lorainne.tensor._parafac2 import _pad, _projections

    R = data.draw(st.integers(1, J))
    sizes = data.draw(st.lists(st.integers(0, 9), min_size=K, max_size=K))
    assume(max(sizes) > 0)
    rng = np.random.default_rng(seed)
    slices = [rng.standard_normal((n, J)).astype(dtype) for n in sizes]
    X, rows = _pad(np, slices)
    factors = [rng.standard_normal(shape).astype(dtype) for shape in ((K, R), (R, R), (J, R))]
    P, Y, norm_sq = core().parafac2_project(X, sizes, factors, n_threads=data.draw(st.sampled_from([1, 2])))
    ref = _projections(np, X, rows, *factors)
    assert P.dtype == Y.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    # compare where the product is well conditioned (the polar factor is unique for a full-rank M_k)
    for k, n in enumerate(sizes):
        M = ((slices[k] @ factors[2]) * factors[0][k]) @ factors[1].T
        s = np.linalg.svd(M.astype(np.float64), compute_uv=False)
        if n >= R and s[-1] > 1e-3 * s[0]:
            np.testing.assert_allclose(P[k, :n], ref[k, :n], atol=tol / (s[-1] / s[0]))
            np.testing.assert_allclose(Y[k], ref[k, :n].T @ slices[k], atol=tol * (1 + np.abs(slices[k]).sum()))
        assert not P[k, n:].any()  # the padding stays zero
    assert norm_sq == pytest.approx(float((Y.astype(np.float64) ** 2).sum()), rel=1e-5)


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_tall_slices_compressed_same_iterates_as_tensorly(rng, backend):
    from tensorly.decomposition import parafac2 as tl_parafac2
    from tensorly.parafac2_tensor import Parafac2Tensor as TLParafac2

    # every slice but one taller than J: the iterations run on the QR factors of the slices
    slices, _, _ = planted(rng, K=10, J=8, R=3, sizes=[40, 25, 60, 8, 33, 50, 9, 70, 31, 5], noise=0.1)
    K, J, R = len(slices), 8, 3
    start = [rng.uniform(0.5, 1.5, (K, R)), rng.standard_normal((R, R)), rng.standard_normal((J, R))]
    ours = parafac2(slices, R, init=(np.ones(R), start), n_iter_max=5, tol=0, backend=backend)
    their_start = TLParafac2((np.ones(R), [f.copy() for f in start], [np.eye(s.shape[0], R) for s in slices]))
    theirs = tl_parafac2(slices, R, init=their_start, n_iter_max=5, tol=0, n_iter_parafac=1, linesearch=False)
    for a, b in zip(
        tl.parafac2_tensor.parafac2_to_slices(ours), tl.parafac2_tensor.parafac2_to_slices(theirs), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-10)
    for p, q, s in zip(ours.projections, theirs.projections, slices, strict=True):
        assert p.shape == (s.shape[0], R)
        np.testing.assert_allclose(p, q, atol=1e-9)
    assert ours.errors[-1] == pytest.approx(rel_error(ours, slices), rel=1e-9)
    single = parafac2([s.astype(np.float32) for s in slices], R, init=(np.ones(R), start), n_iter_max=5, tol=0)
    assert single.factors[0].dtype == np.float32 and single.projections[0].dtype == np.float32
    assert single.errors[-1] == pytest.approx(ours.errors[-1], rel=1e-4)
