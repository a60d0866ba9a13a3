"""Tensor decompositions on the inputs users from tensorly, scikit-learn and pyttb try first (issue 16):
Tucker ranks above the product of the others, tensorly's switches, ranks and allocations beyond the
data, data at any finite scale, bad starts, factor_match_score at any scale, huge sparse tensors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lorainne import ConvergenceWarning, CPTensor, SparseTensor, TuckerTensor, cp, factor_match_score, nmf, tucker

tl = pytest.importorskip("tensorly")
from tensorly.decomposition import parafac  # noqa: E402
from tensorly.decomposition import tucker as tl_tucker  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(16)


def planted(rng, shape, rank, noise=0.05):
    factors = [rng.standard_normal((n, rank)) for n in shape]
    X = CPTensor(None, factors).to_tensor()
    return X + noise * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(shape)


def start(rng, shape, rank):
    return CPTensor(None, [rng.standard_normal((n, rank)) for n in shape])


def copies(model):
    return [np.array(model.weights, copy=True)] + [np.array(f, copy=True) for f in model.factors]


# ----------------------------------------------------------------------------- 1: Tucker ranks


@pytest.mark.parametrize("method", ["hooi", "hosvd"])
def test_tucker_keeps_a_rank_above_the_product_of_the_others(method):
    X = np.random.default_rng(0).random((3, 4, 3))
    t = tucker(X, (2, 3, 1), method=method, random_state=0)
    assert t.core.shape == (2, 3, 1) and t.rank == (2, 3, 1)
    for f in t.factors:
        np.testing.assert_allclose(f.T @ f, np.eye(f.shape[1]), atol=1e-12)
    with warnings.catch_warnings():  # tensorly warns that it completes the basis of mode 1
        warnings.simplefilter("ignore", UserWarning)
        theirs = tl_tucker(tl.tensor(X), rank=[2, 3, 1], init="svd", n_iter_max=100, tol=1e-10)
    assert theirs.core.shape == (2, 3, 1)
    reference = np.linalg.norm(X - tl.tucker_to_tensor(theirs)) / np.linalg.norm(X)
    assert t.errors[-1] <= reference + 1e-8 if method == "hooi" else t.errors[-1] < 1.05 * reference
    np.testing.assert_allclose(np.linalg.norm(X - t.to_tensor()) / np.linalg.norm(X), t.errors[-1], atol=1e-10)


def test_tucker_rank_none_is_full_rank_and_init_pair_is_used_unmodified(rng):
    X = rng.standard_normal((5, 4, 3))
    full = tucker(X, None)
    assert full.rank == (5, 4, 3)
    np.testing.assert_allclose(full.to_tensor(), X, atol=1e-10)
    first = tucker(X, (3, 2, 2), n_iter_max=2, tol=0, random_state=0)
    saved = [first.core.copy()] + [f.copy() for f in first.factors]
    resumed = tucker(X, (3, 2, 2), init=(first.core, first.factors), n_iter_max=3, tol=0)
    again = tucker(X, None, init=first, n_iter_max=3, tol=0)  # a TuckerTensor; its ranks when rank=None
    continued = tucker(X, (3, 2, 2), n_iter_max=5, tol=0, random_state=0)
    for a, b in zip(saved, [first.core, *first.factors], strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.rank == again.rank == (3, 2, 2)
    np.testing.assert_allclose(resumed.errors[-1], continued.errors[-1], rtol=1e-10)
    np.testing.assert_allclose(again.to_tensor(), resumed.to_tensor(), atol=1e-12)
    nonneg = np.abs(X)
    nn_start = TuckerTensor(np.abs(first.core), [np.abs(f) for f in first.factors])
    assert tucker(nonneg, (3, 2, 2), init=nn_start, nonnegative=True, n_iter_max=3, tol=0).rank == (3, 2, 2)
    with pytest.raises(ValueError, match="init"):
        tucker(X, (3, 2, 2), init=(first.core, first.factors[:2]))
    with pytest.raises(ValueError, match="init factor 1"):
        tucker(X, (3, 2, 2), init=(first.core, [first.factors[0], first.factors[1] * np.nan, first.factors[2]]))
    with pytest.raises(TypeError, match="init"):
        tucker(X, (3, 2, 2), init=42)


# ----------------------------------------------------------------------------- 5: tensorly's switches


def test_normalize_factors_false_gives_tensorly_iterates(rng):
    X = planted(rng, (8, 7, 6), 3)
    init = start(rng, X.shape, 3)
    saved = copies(init)
    ours = cp(X, 3, init=init, n_iter_max=6, tol=0, normalize_factors=False)
    theirs = parafac(tl.tensor(X), 3, init=(np.ones(3), [f.copy() for f in init.factors]), n_iter_max=6, tol=0)
    np.testing.assert_array_equal(ours.weights, np.ones(3))
    for a, b in zip(ours.factors, theirs.factors, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    for a, b in zip(saved, copies(init), strict=True):
        np.testing.assert_array_equal(a, b)  # the given start is never modified
    normalized = cp(X, 3, init=init, n_iter_max=6, tol=0)
    np.testing.assert_allclose(normalized.to_tensor(), ours.to_tensor(), atol=1e-10)


@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_fixed_modes_keep_the_given_factors_as_tensorly(rng, backend):
    X = planted(rng, (8, 7, 6), 3)
    init = start(rng, X.shape, 3)
    ours = cp(X, 3, init=init, n_iter_max=5, tol=0, fixed_modes=[0, 1], normalize_factors=False, backend=backend)
    theirs = parafac(
        tl.tensor(X), 3, init=(np.ones(3), [f.copy() for f in init.factors]), n_iter_max=5, tol=0, fixed_modes=[0, 1]
    )
    np.testing.assert_array_equal(ours.factors[0], init.factors[0])
    np.testing.assert_array_equal(ours.factors[1], init.factors[1])
    np.testing.assert_allclose(ours.factors[2], theirs.factors[2], rtol=1e-7, atol=1e-9)
    sparse = cp(SparseTensor.from_dense(X), 3, init=init, n_iter_max=5, tol=0, fixed_modes=[1], normalize_factors=False)
    np.testing.assert_array_equal(sparse.factors[1], init.factors[1])
    with pytest.raises(ValueError, match="fixed_modes"):
        cp(X, 3, fixed_modes=[2])
    with pytest.raises(TypeError, match="fixed_modes"):
        cp(X, 3, fixed_modes=[0.5])


@pytest.mark.parametrize("sparse", [False, True])
def test_callback_at_init_is_called_on_the_start(rng, sparse):
    X = planted(rng, (8, 7, 6), 3)
    init = start(rng, X.shape, 3)
    seen = []

    def callback(state, error):
        seen.append((state.n_iter, error))
        return False

    data = SparseTensor.from_dense(X) if sparse else X
    model = cp(data, 3, init=init, n_iter_max=4, tol=0, callback=callback, callback_at_init=True)
    start_error = np.linalg.norm(X - init.to_tensor()) / np.linalg.norm(X)
    assert [n for n, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[0][1] == pytest.approx(start_error, rel=1e-10)
    assert [e for _, e in seen[1:]] == model.errors
    stopped = cp(data, 3, init=init, n_iter_max=4, callback=lambda state, error: True, callback_at_init=True)
    assert stopped.n_iter == 0
    np.testing.assert_allclose(stopped.to_tensor(), init.to_tensor(), atol=1e-12)


# ----------------------------------------------------------------------------- 6: scikit-learn and pyttb habits


def test_nmf_warns_when_every_sweep_ran_even_at_a_small_error():
    with pytest.warns(ConvergenceWarning, match="n_iter_max=1"):
        result = nmf(np.ones((2, 2)), 1, n_iter_max=1)
    assert not result.converged and result.errors[-1] < 1e-12
    W, H = result
    assert (W.shape, H.shape, result.n_iter) == ((2, 1), (1, 2), 1)


def test_sparse_tensor_takes_pyttb_column_values():
    S = SparseTensor([[0, 1, 2], [1, 0, 3]], np.array([[2.0], [3.0]]), (2, 3, 4))
    assert S.values.shape == (2,) and S.to_dense()[1, 0, 3] == 3.0
    with pytest.raises(ValueError, match="values"):
        SparseTensor([[0, 1, 2]], np.ones((1, 2)), (2, 3, 4))


# ----------------------------------------------------------------------------- 7: ranks and allocations


def test_a_rank_far_above_the_data_is_a_value_error_not_an_abort():
    with pytest.raises(ValueError, match="rank=100000"):
        cp(np.ones((2, 2, 2)), 100000, n_iter_max=1)
    assert cp(np.ones((2, 2, 2)), 8, n_iter_max=1, tol=0).rank == 8  # up to prod(shape) is accepted


def test_an_allocation_that_cannot_succeed_is_a_memory_error():
    S = SparseTensor([[0, 0, 0], [5, 7, 9]], [1.0, 2.0], (10**6,) * 3)
    with pytest.raises(MemoryError, match="GiB"):
        cp(S, 10**7, n_iter_max=1)


# ----------------------------------------------------------------------------- 11: any finite scale


@pytest.mark.parametrize("scale", [1e-300, 1e200])
@pytest.mark.parametrize("backend", ["rust", "numpy"])
def test_cp_is_scale_equivariant(rng, scale, backend):
    X = planted(rng, (6, 5, 4), 3)
    reference = cp(X, 3, random_state=0, backend=backend, tol=0, n_iter_max=30)
    scaled = cp(X * scale, 3, random_state=0, backend=backend, tol=0, n_iter_max=30)
    assert np.all(np.isfinite(scaled.weights)) and np.all(scaled.weights > 0)
    np.testing.assert_allclose(scaled.weights / scale, reference.weights, rtol=1e-8)
    np.testing.assert_allclose(scaled.errors, reference.errors, rtol=1e-8)
    assert factor_match_score(scaled, reference) > 1 - 1e-10
    sparse = cp(SparseTensor.from_dense(X * scale), 3, random_state=0, tol=0, n_iter_max=30)
    dense_sparse = cp(SparseTensor.from_dense(X), 3, random_state=0, tol=0, n_iter_max=30)
    np.testing.assert_allclose(sparse.weights / scale, dense_sparse.weights, rtol=1e-8)


@pytest.mark.parametrize("scale", [1e-300, 1e200])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_tucker_is_scale_equivariant(rng, scale, nonnegative):
    X = np.abs(planted(rng, (6, 5, 4), 3))
    reference = tucker(X, 3, random_state=0, tol=0, n_iter_max=10, nonnegative=nonnegative, init="random")
    scaled = tucker(X * scale, 3, random_state=0, tol=0, n_iter_max=10, nonnegative=nonnegative, init="random")
    assert np.all(np.isfinite(scaled.errors))
    np.testing.assert_allclose(scaled.errors, reference.errors, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(
        scaled.core / scale, reference.core, rtol=1e-8, atol=1e-12 * np.abs(reference.core).max()
    )


# ----------------------------------------------------------------------------- 12, 13: bad starts, scores, shapes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_nmf_rejects_a_bad_start(bad):
    X = np.random.default_rng(0).random((6, 5))
    W, H = np.ones((6, 2)), np.ones((2, 5))
    W[0, 0] = bad
    with pytest.raises(ValueError, match="init W"):
        nmf(X, 2, init=(W, H))
    with pytest.raises(ValueError, match="init H"):
        nmf(X, 2, init=(H.T.copy().repeat(3, axis=0)[:6], np.full((2, 5), bad)))


def test_factor_match_score_at_any_scale_and_on_nan(rng):
    factors = [rng.standard_normal((n, 3)) for n in (5, 4, 3)]
    for scale in (1e-200, 1e-120, 1e150):
        tiny = CPTensor(None, [f * scale for f in factors])
        assert factor_match_score(tiny, tiny) == pytest.approx(1.0, abs=1e-12)
        assert factor_match_score(tiny, tiny, consider_weights=True) == pytest.approx(1.0, abs=1e-12)
        assert factor_match_score(tiny, CPTensor(None, factors)) == pytest.approx(1.0, abs=1e-12)
    broken = [f.copy() for f in factors]
    broken[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        factor_match_score((None, broken), (None, broken))
    with pytest.raises(ValueError, match="weights"):
        factor_match_score((np.array([1.0, np.inf, 1.0]), factors), (None, factors))


@pytest.mark.parametrize("shape", [(2.9, 3, 4), "234", (True, 3, 4), 5, (2, 3.0, 4)])
def test_sparse_tensor_rejects_a_shape_that_is_not_ints(shape):
    with pytest.raises(TypeError, match="shape"):
        SparseTensor([[0, 1, 2]], [1.0], shape)


# ----------------------------------------------------------------------------- 14: huge sparse tensors


def test_svd_start_of_a_huge_sparse_tensor_works_on_its_entries():
    rng = np.random.default_rng(3)
    coords = rng.integers(0, 10**6, (6, 3))
    S = SparseTensor(coords, rng.random(6) + 0.5, (10**6,) * 3)
    model = cp(S, 3, n_iter_max=2, tol=0, random_state=0)
    assert model.shape == (10**6,) * 3 and np.all(np.isfinite(model.weights))
    assert model.errors[-1] < 1.0


# ----------------------------------------------------------------------------- 9: the same bits for every n_threads


@pytest.mark.filterwarnings("ignore:n_threads:UserWarning")  # 3 threads are capped on a 2-CPU machine
@pytest.mark.parametrize("sparse", [False, True])
def test_cp_gives_the_same_bits_on_one_thread_and_many(rng, sparse):
    # (60, 3, 50): the last mode's MTTKRP reduces over many prefixes (the path that depended on
    # the thread count); a sparse tensor's MTTKRP sums each row in entry order.
    X = planted(rng, (60, 3, 50), 4, noise=0.1)
    data = SparseTensor.from_dense(X * (rng.random(X.shape) < 0.3)) if sparse else X
    one = cp(data, 4, random_state=7, n_threads=1, tol=0, n_iter_max=15)
    for threads in (2, 3):
        many = cp(data, 4, random_state=7, n_threads=threads, tol=0, n_iter_max=15)
        np.testing.assert_array_equal(many.weights, one.weights)
        for a, b in zip(many.factors, one.factors, strict=True):
            np.testing.assert_array_equal(a, b)
        assert many.errors == one.errors


def test_a_gram_matrix_that_cannot_be_allocated_is_a_memory_error_from_rust():
    import lorainne

    rank = 4 * 10**6  # Gram matrices of 1.6e13 entries: beyond any address space
    factors = [np.ones((1, rank)), np.ones((1, rank))]
    with pytest.raises(MemoryError, match="bytes"):
        lorainne._core.cp_als(np.ones((1, 1)), factors, n_iter_max=1, tol=0.0, l2_reg=0.0)
