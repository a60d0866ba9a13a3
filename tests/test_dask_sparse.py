"""CP-ALS on a Dask tensor of ``sparse.COO`` chunks (the pydata ``sparse`` package inside Dask)."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
sparse = pytest.importorskip("sparse")

import dask  # noqa: E402

from lorainne import SparseTensor, cp, factor_match_score, tucker  # noqa: E402
from lorainne.tensor._dask_sparse import has_sparse_chunks  # noqa: E402


def nbytes(x) -> int:
    """Bytes of the arrays in a gathered result (nested in lists, tuples, dicts)."""
    if isinstance(x, (list, tuple)):
        return sum(nbytes(y) for y in x)
    if isinstance(x, dict):
        return sum(nbytes(y) for y in x.values())
    return int(getattr(x, "nbytes", 0))


def planted(shape, rank, density, seed=0):
    """A low-rank tensor of sparse factors (each entry kept with probability ``density``): sparse itself."""
    rng = np.random.default_rng(seed)
    true = [rng.standard_normal((n, rank)) * (rng.random((n, rank)) < density) for n in shape]
    return true, np.einsum("ir,jr,kr->ijk", *true)


def test_same_iterates_as_in_memory_sparse_tensor():
    rng = np.random.default_rng(0)
    shape, rank = (30, 24, 20), 3
    true = [rng.standard_normal((n, rank)) for n in shape]
    X = np.einsum("ir,jr,kr->ijk", *true) * (rng.random(shape) < 0.3)  # not low rank: the iterates differ per sweep
    S = SparseTensor.from_dense(X)
    C = sparse.COO.from_numpy(X)
    data_before = C.data.copy()
    D = da.from_array(C, chunks=((8, 8, 8, 6), (10, 14), 10))  # 4 x 2 x 2 blocks, uneven along modes 0 and 1
    assert D.npartitions == 16 and has_sparse_chunks(D)
    with dask.config.set(scheduler="sync"):
        start = cp(S, rank, init="random", n_iter_max=0, random_state=1)
        got = cp(D, rank, init=start, n_iter_max=8, tol=0, normalize_factors=False)
        for backend in ("rust", "numpy"):
            ref = cp(S, rank, init=start, n_iter_max=8, tol=0, normalize_factors=False, backend=backend)
            assert isinstance(got.factors[0], np.ndarray)
            for a, b in zip(got.factors, ref.factors, strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * np.abs(b).max())
            np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-8)
        fixed = cp(D, rank, init=start, n_iter_max=3, tol=0, fixed_modes=[1], l2_reg=0.1, normalize_factors=False)
        ref = cp(S, rank, init=start, n_iter_max=3, tol=0, fixed_modes=[1], l2_reg=0.1, normalize_factors=False)
        np.testing.assert_allclose(fixed.factors[0], ref.factors[0], rtol=0, atol=1e-8 * np.abs(ref.factors[0]).max())
        np.testing.assert_array_equal(fixed.factors[1], start.factors[1])
        first: list[list[float]] = [[], []]
        for target, errors in zip((D, S), first, strict=True):
            stopped = cp(
                target, rank, init=start, callback=lambda s, e, out=errors: out.append(e) or True, callback_at_init=True
            )
            assert stopped.n_iter == 0
        np.testing.assert_allclose(first[0], first[1], rtol=1e-10)
        # the svd start is the dense Dask one (same random numbers and steps), on the densified tensor
        from_sparse = cp(D, rank, random_state=0, n_iter_max=5, tol=0)
        from_dense = cp(da.from_array(X, chunks=(15, 12, 10)), rank, random_state=0, n_iter_max=5, tol=0)
    np.testing.assert_allclose(from_sparse.errors, from_dense.errors, rtol=1e-8)
    for a, b in zip(from_sparse.factors, from_dense.factors, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(C.data, data_before)  # input not modified


def test_recovery_on_cluster_brings_no_data_sized_result_to_the_client():
    shape, rank = (60, 50, 40), 3
    true, X = planted(shape, rank, density=0.4, seed=2)
    C = sparse.COO.from_numpy(X)
    D = da.from_array(C, chunks=(30, 25, 20)).persist(scheduler="sync")
    data_bytes = C.nnz * (C.ndim * 8 + 8)
    sizes = []
    with dask.config.set({"distributed.worker.memory.terminate": False}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    original = client.gather

    def gather(futures, *args, **kwargs):  # what every .compute() on this client goes through
        result = original(futures, *args, **kwargs)
        sizes.append(nbytes(result))
        return result

    client.gather = gather
    try:
        with dask.config.set(scheduler=client):
            model = cp(D, rank, random_state=0, tol=1e-10)
    finally:
        client.gather = original
        client.close()
        cluster.close()
    assert model.converged and model.errors[-1] < 1e-6
    assert factor_match_score(model, (None, true)) >= 0.99
    # the largest piece on the client: an I_n x (R + 10) sketch of the svd start, 50x below the data
    assert min(shape) * rank * 8 <= max(sizes) <= max(shape) * (rank + 10) * 8 < data_bytes / 50, (sizes, data_bytes)


def test_rescaled_integer_and_float32_chunks():
    true, X = planted((12, 10, 8), 2, density=0.6, seed=3)
    D = da.from_array(sparse.COO.from_numpy(X), chunks=(6, 5, 4))
    short = dict(random_state=0, n_iter_max=6, tol=0)
    with dask.config.set(scheduler="sync"):
        base = cp(D, 2, random_state=0)
        padded = np.zeros((24, 10, 8))  # empty chunks beside tiny ones, whose squares underflow
        padded[:12] = X
        normal, tiny = (
            cp(da.from_array(sparse.COO.from_numpy(padded * scale), chunks=(12, 5, 4)), 2, random_state=0)
            for scale in (1.0, 2.0**-700)
        )
        np.testing.assert_allclose(tiny.weights, normal.weights * 2.0**-700, rtol=1e-12)
        np.testing.assert_allclose(tiny.errors, normal.errors, rtol=1e-12)
        ints = np.round(X * 10)
        got = cp(da.from_array(sparse.COO.from_numpy(ints.astype(np.int64)), chunks=6), 2, **short)
        ref = cp(da.from_array(sparse.COO.from_numpy(ints), chunks=6), 2, **short)
        assert got.factors[0].dtype == np.float64
        np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-12)
        f32 = cp(D.astype(np.float32), 2, **short)
    assert f32.factors[0].dtype == np.float32
    assert factor_match_score(base, (None, true)) >= 0.99


def test_bad_input():
    X = sparse.COO.from_numpy(np.eye(6)[:, :, None] * np.ones((1, 1, 4)))
    D = da.from_array(X, chunks=3)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="mask is not supported on a Dask tensor of sparse chunks"):
            cp(D, 2, mask=np.ones(D.shape, dtype=bool))
        with pytest.raises(ValueError, match="backend 'auto' or 'dask', got 'rust'"):
            cp(D, 2, backend="rust")
        with pytest.raises(ValueError, match="init='jennrich' is not available on a Dask tensor"):
            cp(D, 2, init="jennrich")
        with pytest.raises(ValueError, match="at least 2 modes"):
            cp(da.from_array(sparse.COO.from_numpy(np.ones(5)), chunks=2), 1)
        with pytest.raises(ValueError, match="fill_value=1.0"):
            cp(da.from_array(sparse.COO(X.coords, X.data, X.shape, fill_value=1.0), chunks=3), 2)
        with pytest.raises(ValueError, match="NaN or infinity"):
            bad = X.copy()
            bad.data[5] = np.nan
            cp(da.from_array(bad, chunks=3), 2)
        with pytest.raises(ValueError, match="negative entries"):
            cp(da.from_array(sparse.COO.from_numpy(-X.todense()), chunks=3), 2, nonnegative=True)
        with pytest.raises(TypeError, match="unsupported dtype complex128"):
            cp(D.astype(np.complex128), 2)
        with pytest.raises(ValueError, match="unknown chunk sizes"):
            cp(da.Array(D.dask, D.name, ((np.nan, np.nan),) + D.chunks[1:], meta=D._meta), 2)
    with pytest.raises(TypeError, match="tucker takes dense chunks"):
        tucker(D, (2, 2, 2))
    scipy_sparse = pytest.importorskip("scipy.sparse")
    M = da.from_array(np.eye(4), chunks=2).map_blocks(scipy_sparse.csr_matrix)
    with pytest.raises(TypeError, match="csr_matrix chunks: sparse chunks must be sparse.COO"):
        cp(M, 1)
    with pytest.raises(TypeError, match="DOK chunks: sparse chunks must be sparse.COO"):
        cp(D.map_blocks(lambda b: b, meta=sparse.DOK((0, 0, 0))), 1)
    assert X.fill_value == 0 and X.nnz == 24  # input not modified
