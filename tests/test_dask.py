"""The xp paths on Dask arrays: randomized SVD / range finder, CP-ALS, trace estimators.

The cluster tests run on a ``dask.distributed.LocalCluster`` of 2 in-process workers whose memory
limit is smaller than the input (a 16 MB matrix, 12 MB per worker), generated chunk by chunk on the
workers. Scaled down from the issue's 960 MB / 400 MB workers to keep the file fast on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import lorainne  # noqa: E402
from lorainne import cp, factor_match_score, randomized_svd, range_finder, trace, trace_function  # noqa: E402
from lorainne._backend import resolve  # noqa: E402

WORKER_LIMIT = 12_000_000  # bytes per worker; the input below is 16 MB
MEMORY = {  # in-process workers: no spilling, pausing or killing by process memory (the test measures managed memory)
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": False,
}


class PeakMemory(distributed.WorkerPlugin):
    """Records the largest managed memory (bytes of the results a worker holds) after each transition."""

    def setup(self, worker):
        self.worker = worker
        worker.lorainne_peak = 0

    def transition(self, key, start, finish, **kwargs):
        self.worker.lorainne_peak = max(self.worker.lorainne_peak, self.worker.state.nbytes)


def _nbytes(x) -> int:
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(y) for y in x)
    if isinstance(x, dict):
        return sum(_nbytes(y) for y in x.values())
    return int(getattr(x, "nbytes", 0))


class GatherCounter:
    """Wraps ``client.gather`` (what every ``.compute()`` on a distributed client goes through) and
    records the bytes of each result brought to the client; ``hook(n)`` runs after the n-th gather,
    ``before(futures)`` before each gather starts waiting for ``futures``.
    """

    def __init__(self, client, hook=None, before=None):
        self.client, self.hook, self.before, self.sizes = client, hook, before, []
        self.original = client.gather

    def __enter__(self):
        def gather(futures, *args, **kwargs):
            if self.before is not None:
                self.before(futures)
            result = self.original(futures, *args, **kwargs)
            self.sizes.append(_nbytes(result))
            if self.hook is not None:
                self.hook(len(self.sizes))
            return result

        self.client.gather = gather
        return self

    def __exit__(self, *exc):
        self.client.gather = self.original


def make_cluster(n_workers=2):
    with dask.config.set(MEMORY):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            memory_limit=WORKER_LIMIT,
            dashboard_address=":0",
        )
    client = distributed.Client(cluster, set_as_default=False)
    client.register_plugin(PeakMemory())
    return cluster, client


@pytest.fixture(scope="module")
def cluster():
    cluster, client = make_cluster()
    yield cluster, client
    client.close()
    cluster.close()


def planted(m, n, rank, rows, seed=0):
    """A lazily generated ``L R + noise`` (decaying spectrum), row blocks of ``rows`` rows."""
    rs = da.random.default_rng(seed)
    L = rs.standard_normal((m, rank), chunks=(rows, rank)) * (0.7 ** np.arange(rank))
    R = rs.standard_normal((rank, n), chunks=(rank, n))
    return L @ R + 1e-3 * rs.standard_normal((m, n), chunks=(rows, n))


# --------------------------------------------------------------------------- backend choice


def test_resolve_picks_dask_for_dask_input():
    x = da.ones((4, 3), chunks=2)
    assert resolve(x) == "dask"
    assert resolve(x, backend="xp") == "dask"
    assert resolve(x, backend="dask") == "dask"
    assert resolve(np.ones((4, 3)), backend="auto") in ("rust", "numpy")
    with pytest.raises(ValueError, match="backend='dask' needs dask.array"):
        resolve(np.ones((4, 3)), backend="dask")


def test_dask_namespace_cholesky_is_lower():
    from lorainne._dask import namespace

    G = np.array([[4.0, 2.0], [2.0, 3.0]])
    L = namespace(da.from_array(G)).linalg.cholesky(da.from_array(G)).compute()
    np.testing.assert_allclose(L, np.linalg.cholesky(G), rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- randomized SVD on a cluster


def test_randomized_svd_on_cluster_larger_than_a_worker(cluster):
    cl, client = cluster
    A = planted(2000, 1000, 8, rows=100, seed=1)
    assert A.nbytes > WORKER_LIMIT
    A_host = A.compute(scheduler="sync")
    with dask.config.set(scheduler=client), GatherCounter(client) as counter:
        U, S, Vt = randomized_svd(A, 5, n_power_iter=1, random_state=0)
    assert isinstance(U, da.Array) and isinstance(Vt, da.Array)
    assert isinstance(S, np.ndarray)
    # one round trip (A is streamed here: each pass is awaited, not gathered), and only small pieces
    # came to the client: S (5 numbers), min and max of A, one flag. An n-sized vector: 8,000 bytes.
    assert len(counter.sizes) == 1 and counter.sizes[0] <= 8 * 5, counter.sizes
    U0, S0, Vt0 = randomized_svd(A_host, 5, n_power_iter=1, random_state=0, backend="numpy")
    with dask.config.set(scheduler=client):
        U, Vt = dask.compute(U, Vt)
    np.testing.assert_allclose(S, S0, rtol=1e-10, atol=0)
    np.testing.assert_allclose(U, U0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(Vt, Vt0, rtol=0, atol=1e-10)
    # the planted rank-8 signal is found: the rank-5 residual is the 3 dropped components plus noise
    residual = np.linalg.norm(A_host - (U * S) @ Vt) / np.linalg.norm(A_host)
    assert residual < 0.7**5 * 1.2, residual
    peaks = client.run(lambda dask_worker: dask_worker.lorainne_peak)
    assert len(client.scheduler_info()["workers"]) == 2  # no worker lost
    assert all(0 < p < WORKER_LIMIT for p in peaks.values()), peaks


def test_persisted_matrix_is_held_between_passes(cluster):
    """A larger than (Dask's spill target - 0.1) of the cluster's memory is streamed (each pass
    awaited, A read anew), unless it is persisted: then its blocks are in memory anyway and one graph
    holds them. Below that fraction it is held."""
    from lorainne._dask import held_between_passes

    cl, client = cluster
    A = planted(1200, 1300, 4, rows=300, seed=3)  # 12.5 MB > 0.5 x 2 x 12 MB (spilling off: 0.6 - 0.1)
    with dask.config.set(scheduler=client):
        assert not held_between_passes(A)
        assert held_between_passes(A[:, :1200])  # 11.5 MB
        with dask.config.set({"distributed.worker.memory.target": 0.3}):
            assert not held_between_passes(A[:, :1200])
        P = A.persist()  # its blocks are futures at once, computed or not
        assert held_between_passes(P)
        assert not held_between_passes(P + 1.0)
        del P


def test_randomized_svd_square_blocked_and_householder():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((300, 6)) @ np.diag(0.5 ** np.arange(6)) @ rng.standard_normal((6, 240))
    A += 1e-4 * rng.standard_normal(A.shape)
    D = da.from_array(A, chunks=(100, 80))
    with dask.config.set(scheduler="threads"):
        for qr, method in (("auto", "subspace"), ("householder", "subspace"), ("auto", "block_krylov")):
            for flip in ("vt", "u", False):
                kwargs = dict(n_power_iter=2, qr=qr, flip_sign=flip, method=method, random_state=3)
                U, S, Vt = randomized_svd(D, 4, **kwargs)
                # Dask keeps block Krylov's basis on A's rows: in memory that is transpose=False.
                U0, S0, Vt0 = randomized_svd(A, 4, backend="numpy", transpose=False, **kwargs)
                np.testing.assert_allclose(S, S0, rtol=1e-10)
                np.testing.assert_allclose(U.compute(), U0, atol=1e-10)
                np.testing.assert_allclose(Vt.compute(), Vt0, atol=1e-10)
        for qr in ("auto", "householder"):
            Q = range_finder(D, 4, n_power_iter=2, qr=qr, random_state=1)
            assert isinstance(Q, da.Array)
            Q = Q.compute()
            Q0 = range_finder(A, 4, n_power_iter=2, qr=qr, random_state=1, backend="numpy")
            np.testing.assert_allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-12)
            np.testing.assert_allclose(Q @ (Q.T @ A), Q0 @ (Q0.T @ A), atol=1e-10)


def test_randomized_svd_dask_refuses_nan_and_infinity():
    A = np.ones((40, 30))
    A[17, 3] = np.nan
    with dask.config.set(scheduler="sync"):
        for method in ("subspace", "block_krylov"):
            with pytest.raises(ValueError, match="A contains NaN or infinity"):
                randomized_svd(da.from_array(A, chunks=(10, 15)), 3, method=method, random_state=0)
        with pytest.raises(ValueError, match="A contains NaN or infinity"):
            range_finder(da.from_array(np.where(A == 1, np.inf, 0.0), chunks=10), 3, random_state=0)


def test_randomized_svd_dask_float32_input_not_modified():
    rng = np.random.default_rng(4)
    A = (rng.standard_normal((200, 5)) @ rng.standard_normal((5, 60))).astype(np.float32)
    D = da.from_array(A.copy(), chunks=(50, 60))
    U, S, Vt = randomized_svd(D, 5, random_state=0, n_power_iter=1)
    assert U.dtype == np.float32 and S.dtype == np.float32
    np.testing.assert_allclose((U.compute() * S) @ Vt.compute(), A, atol=2e-4 * np.abs(A).max())
    np.testing.assert_array_equal(D.compute(), A)


def test_worker_lost_mid_svd_recomputes():
    cl, client = make_cluster()
    try:
        A = planted(1200, 400, 6, rows=100, seed=5)
        A_host = A.compute(scheduler="sync")
        lost, running = [], []

        def kill_one(futures):
            if not lost:  # the one graph is submitted and running; the client waits for its summary
                running.append(any(not f.done() for f in distributed.futures_of(futures)))
                name = sorted(cl.workers)[0]
                lost.append(cl.workers[name].address)
                cl.sync(cl.workers[name].close)

        with dask.config.set(scheduler=client), GatherCounter(client, before=kill_one):
            U, S, Vt = randomized_svd(A, 4, n_power_iter=1, random_state=0)
            U, Vt = dask.compute(U, Vt)
        assert lost and lost[0] not in client.scheduler_info()["workers"]
        assert running == [True]  # killed in the middle of the computation
        U0, S0, Vt0 = randomized_svd(A_host, 4, n_power_iter=1, random_state=0, backend="numpy")
        np.testing.assert_allclose(S, S0, rtol=1e-10)
        np.testing.assert_allclose(U, U0, atol=1e-10)
        np.testing.assert_allclose(Vt, Vt0, atol=1e-10)
    finally:
        client.close()
        cl.close()


# --------------------------------------------------------------------------- CP-ALS


def test_cp_dask_same_iterates_and_recovery():
    rng = np.random.default_rng(0)
    shape, rank = (40, 36, 30), 3
    true = [rng.standard_normal((n, rank)) for n in shape]
    X = np.einsum("ir,jr,kr->ijk", *true)
    X += 0.01 * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(shape)
    D = da.from_array(X, chunks=(20, 18, 15))  # 8 blocks
    assert D.npartitions == 8
    with dask.config.set(scheduler="threads"):
        start = cp(X, rank, init="random", n_iter_max=0, random_state=1)
        ref = cp(X, rank, init=start, n_iter_max=8, tol=0, backend="numpy", normalize_factors=False)
        got = cp(D, rank, init=start, n_iter_max=8, tol=0, normalize_factors=False)
        assert isinstance(got.factors[0], np.ndarray)
        for a, b in zip(got.factors, ref.factors, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * np.abs(b).max())
        np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-8)
        model = cp(D, rank, random_state=0)  # the SVD start on the Dask tensor
        ref_svd = cp(X, rank, random_state=0, backend="numpy")
    assert model.converged
    assert factor_match_score(model, (None, true)) >= 0.99
    np.testing.assert_allclose(model.errors, ref_svd.errors, rtol=1e-8)


def test_cp_dask_bad_input():
    D = da.ones((4, 5, 6), chunks=2)
    with pytest.raises(ValueError, match="mask is not supported on a Dask tensor"):
        cp(D, 2, mask=np.ones((4, 5, 6), dtype=bool))
    with pytest.raises(ValueError, match="init='jennrich' is not available on a Dask tensor"):
        cp(D, 2, init="jennrich")


# --------------------------------------------------------------------------- trace


def test_trace_dask_equals_in_memory_for_the_same_vectors():
    rng = np.random.default_rng(0)
    n = 300
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * (1.0 + 0.95 ** np.arange(n))) @ Q.T
    A = (A + A.T) / 2
    D = da.from_array(A, chunks=(100, 100))
    with dask.config.set(scheduler="threads"):
        for method in ("hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace"):
            got = trace(D, n_matvec=30, method=method, random_state=0)
            ref = trace(A, n_matvec=30, method=method, random_state=0)
            assert got.value == pytest.approx(ref.value, rel=1e-10), method
            assert got.error_estimate == pytest.approx(ref.error_estimate, rel=1e-6, abs=1e-10), method
            assert abs(got.value - np.trace(A)) < 5 * got.error_estimate + 1e-8, method
        got = trace_function(D, "log", n_vectors=4, degree=6, random_state=0)
        ref = trace_function(A, "log", n_vectors=4, degree=6, random_state=0)
    assert got.value == pytest.approx(ref.value, rel=1e-10)


def test_public_names_unchanged():
    assert "dask" in lorainne._backend.BACKENDS


# --------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_dask_point_clouds_equal_in_memory():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((120, 2)), rng.standard_normal((90, 2)) + 1.0
    X, Y = da.from_array(x, chunks=(40, 2)), da.from_array(y, chunks=(30, 2))
    ref = lorainne.sinkhorn(x, y, eps=1.0, eps_scaling=False, backend="numpy")
    with dask.config.set(scheduler="threads"):
        got = lorainne.sinkhorn(X, Y, eps=1.0, eps_scaling=False)
    assert isinstance(got.f, da.Array) and isinstance(got.g, da.Array)
    assert got.converged and got.n_iter == ref.n_iter
    assert got.cost == pytest.approx(ref.cost, rel=1e-12)
    np.testing.assert_allclose(got.f.compute(), np.asarray(ref.f), atol=1e-10)
    np.testing.assert_allclose(got.g.compute(), np.asarray(ref.g), atol=1e-10)


@pytest.mark.parametrize("held", [True, False])
def test_block_krylov_dask_equals_in_memory_and_reads_of_a(held, monkeypatch):
    """Block Krylov and subspace iteration on Dask: the in-memory answer. Held between passes (A fits
    in the cluster's memory below its spill target, as here on the local scheduler) A is read once by the one
    graph; otherwise each pass is computed on its own and A read 2 q + 2 times (its checks ride on
    the first product)."""
    from lorainne import _dask

    monkeypatch.setattr(_dask, "held_between_passes", lambda A: held)
    rng = np.random.default_rng(7)
    A = rng.standard_normal((400, 8)) @ np.diag(0.6 ** np.arange(8)) @ rng.standard_normal((8, 150))
    A += 1e-3 * rng.standard_normal(A.shape)
    reads = []

    def counted(block):
        reads.append(1)
        return block

    D = da.from_array(A, chunks=(100, 150)).map_blocks(counted, dtype=A.dtype)
    with dask.config.set(scheduler="sync"):
        for method, q in (("block_krylov", 1), ("subspace", 2)):
            reads.clear()
            U, S, Vt = randomized_svd(D, 4, n_power_iter=q, method=method, random_state=5)
            assert isinstance(S, np.ndarray) and isinstance(U, da.Array)
            assert len(reads) == 4 * ((2 * q + 2) if not held else 1), (method, len(reads))  # 4 row blocks
            U0, S0, Vt0 = randomized_svd(A, 4, n_power_iter=q, method=method, random_state=5, backend="numpy")
            np.testing.assert_allclose(S, S0, rtol=1e-10)
            np.testing.assert_allclose(U.compute(), U0, atol=1e-10)
            np.testing.assert_allclose(Vt.compute(), Vt0, atol=1e-10)


def test_breakdown_reruns_with_eager_checks_and_same_answer(caplog):
    """An exactly rank-3 matrix breaks CholeskyQR2 (13 sketch columns): the deferred checks fail,
    the computation runs again from the same random numbers with the fallbacks, as in memory."""
    rng = np.random.default_rng(8)
    A = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 120))
    D = da.from_array(A, chunks=(75, 120))
    with dask.config.set(scheduler="sync"), caplog.at_level("DEBUG", logger="lorainne"):
        U, S, Vt = randomized_svd(D, 3, n_power_iter=1, random_state=0)
    assert "deferred orthonormalization check failed" in caplog.text
    U0, S0, Vt0 = randomized_svd(A, 3, n_power_iter=1, random_state=0, backend="numpy")
    np.testing.assert_allclose(S, S0, rtol=1e-10)
    np.testing.assert_allclose(U.compute(), U0, atol=1e-8)
    np.testing.assert_allclose(Vt.compute(), Vt0, atol=1e-8)


# --------------------------------------------------------------------------- Tucker


@pytest.mark.parametrize("chunks", [(20, 36, 30), (20, 18, 15)])
def test_tucker_dask_same_iterates_as_in_memory(chunks):
    """HOSVD and HOOI on a Dask tensor chunked along one or several modes: the in-memory iterates
    (same start, same random numbers), NumPy factors and core."""
    rng = np.random.default_rng(3)
    shape, ranks = (40, 36, 30), (4, 3, 3)
    core = rng.standard_normal(ranks)
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks, strict=True)]
    X = np.einsum("abc,ia,jb,kc->ijk", core, *U) + 1e-3 * rng.standard_normal(shape)
    D = da.from_array(X, chunks=chunks)
    with dask.config.set(scheduler="threads"):
        for init in ("svd", "random"):
            got = lorainne.tucker(D, ranks, init=init, n_iter_max=5, tol=0, random_state=2)
            ref = lorainne.tucker(X, ranks, init=init, n_iter_max=5, tol=0, random_state=2, backend="numpy")
            assert isinstance(got.core, np.ndarray) and all(isinstance(f, np.ndarray) for f in got.factors)
            np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-8)
            for a, b in zip(got.factors, ref.factors, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-8)
            np.testing.assert_allclose(got.core, ref.core, atol=1e-8 * np.abs(ref.core).max())
        hosvd = lorainne.tucker(D, ranks, method="hosvd", random_state=0)
        ref = lorainne.tucker(X, ranks, method="hosvd", random_state=0, backend="numpy")
    np.testing.assert_allclose(hosvd.core, ref.core, atol=1e-8 * np.abs(ref.core).max())
    assert hosvd.errors[0] == pytest.approx(ref.errors[0], rel=1e-8)
    assert got.errors[-1] < 0.05  # the planted multilinear rank is recovered up to the noise


def test_tucker_dask_sketched_start_on_cluster(cluster):
    """A tensor whose unfoldings exceed 200,000 entries: the sketched HOSVD start, per-chunk
    contractions on a 2-worker cluster; the in-memory iterates; bad input refused."""
    cl, client = cluster
    rng = np.random.default_rng(4)
    shape, ranks = (80, 70, 60), (3, 3, 2)
    core = rng.standard_normal(ranks)
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks, strict=True)]
    X = np.einsum("abc,ia,jb,kc->ijk", core, *U) + 1e-4 * rng.standard_normal(shape)
    D = da.from_array(X, chunks=(40, 35, 30))
    with dask.config.set(scheduler=client):
        got = lorainne.tucker(D, ranks, n_iter_max=3, tol=0, random_state=1)
        with pytest.raises(ValueError, match="not supported on a Dask tensor"):
            lorainne.tucker(D, ranks, nonnegative=True)
        bad = da.where(D == D.max(), np.inf, D)
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            lorainne.tucker(bad, ranks)
    ref = lorainne.tucker(X, ranks, n_iter_max=3, tol=0, random_state=1, backend="numpy")
    np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-8)
    for a, b in zip(got.factors, ref.factors, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert got.errors[-1] < 0.02  # the noise is 0.014 of ||X||


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_dask_exact_rescaling_of_extreme_entries(scale):
    """Entries beyond ~1e+-77: the SVD and the Tucker core of 2**k X, scaled back, as in memory."""
    rng = np.random.default_rng(9)
    A = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 80)) + 1e-3 * rng.standard_normal((300, 80))
    X = rng.standard_normal((20, 18, 16))
    with dask.config.set(scheduler="sync"):
        U, S, Vt = randomized_svd(da.from_array(A * scale, chunks=(100, 80)), 4, n_power_iter=1, random_state=0)
        t = lorainne.tucker(da.from_array(X * scale, chunks=10), 3, n_iter_max=3, tol=0, random_state=0)
        U = U.compute()
    U0, S0, Vt0 = randomized_svd(A, 4, n_power_iter=1, random_state=0, backend="numpy")
    np.testing.assert_allclose(S / scale, S0, rtol=1e-12)
    np.testing.assert_allclose(U, U0, atol=1e-12)
    t0 = lorainne.tucker(X, 3, n_iter_max=3, tol=0, random_state=0, backend="numpy")
    np.testing.assert_allclose(t.core / scale, t0.core, atol=1e-10 * np.abs(t0.core).max())
    np.testing.assert_allclose(t.errors, t0.errors, rtol=1e-10)
