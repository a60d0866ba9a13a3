"""CP-ALS on a Dask tensor of sparse.COO chunks against the in-memory SparseTensor CP and tensorly's sparse parafac.

A planted sparse low-rank tensor (``rank`` components, each the outer product of three sparse
vectors of about ``(nnz / rank)^(1/3)`` Gaussian entries at random positions in ``size``; 1 % noise on
the stored entries) chunked in ``blocks`` blocks per mode (the data embedded in the graph once),
persisted on a 2-worker in-process LocalCluster (1 thread each, each chunk's Rust kernel on 1
thread); every method starts from the same random factors and runs
``sweeps`` sweeps with ``tol=0``. Time per sweep: ``(T(sweeps) - T(0)) / sweeps`` (T(0): the
checks and the norm, one pass, measured with ``n_iter_max=0``), best of ``repeat``, the methods
interleaved. Accuracy: the relative error after the sweeps, and the largest difference of the
factors from those of the in-memory Rust run with the same sweeps (relative to their largest entry).

Usage: PYTHONPATH=python python benches/bench_dask_sparse.py --size 1000 --nnz 200000 --rank 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import distributed  # noqa: E402
import numpy as np  # noqa: E402
import sparse  # noqa: E402

from lorainne import SparseTensor, cp  # noqa: E402


def nbytes(x) -> int:
    """Bytes of the arrays in a gathered result (nested in lists, tuples, dicts)."""
    if isinstance(x, (list, tuple)):
        return sum(nbytes(y) for y in x)
    if isinstance(x, dict):
        return sum(nbytes(y) for y in x.values())
    return int(getattr(x, "nbytes", 0))


def planted(n: int, rank: int, nnz: int, rng) -> SparseTensor:
    per = max(2, round((nnz / rank) ** (1 / 3)))
    coords, values = [], []
    for _ in range(rank):
        index = [rng.choice(n, per, replace=False) for _ in range(3)]
        coords.append(np.stack([g.ravel() for g in np.meshgrid(*index, indexing="ij")], axis=1))
        values.append(np.einsum("i,j,k->ijk", *(rng.standard_normal(per) for _ in range(3))).ravel())
    values = np.concatenate(values)
    values += 0.01 * values.std() * rng.standard_normal(values.size)
    return SparseTensor(np.concatenate(coords), values, (n,) * 3)


def factor_gap(model, reference) -> float:
    return max(
        float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(model.factors, reference.factors, strict=True)
    )


class Dense:
    def __init__(self, factors):
        self.factors = [np.asarray(f) for f in factors]


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--nnz", type=int, default=200_000)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=2, help="chunks per mode")
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--peer-sweeps", type=int, default=2, help="sweeps of tensorly's sparse parafac")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n, rank = args.size, args.rank
    S = planted(n, rank, args.nnz, rng)
    C = sparse.COO(S.coords.T, S.values, shape=S.shape, sorted=True, has_duplicates=False)
    init = [rng.random((n, rank)) for _ in range(3)]
    chunk = -(-n // args.blocks)
    sizes: list[int] = []
    warnings.filterwarnings("ignore", message="Sending large graph")  # the data, embedded once by from_array
    with dask.config.set({"distributed.worker.memory.terminate": False}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    D = client.persist(da.from_array(C, chunks=chunk))
    D.sum().compute(scheduler=client)  # the chunks are on the workers before any timing
    original = client.gather

    def gather(futures, *a, **k):
        result = original(futures, *a, **k)
        sizes.append(nbytes(result))
        return result

    client.gather = gather

    def run(X, sweeps, **kw):
        return cp(X, rank, init=(None, init), n_iter_max=sweeps, tol=0, normalize_factors=False, **kw)

    local = da.from_array(C, chunks=chunk).persist(scheduler="threads")  # the chunks in this process

    def threaded(workers):
        def fn(k):
            with dask.config.set(scheduler="threads", num_workers=workers):
                return run(local, k, n_threads=1)

        return fn

    methods = {
        "lorainne cp, Dask of sparse.COO chunks (2 workers x 1 thread)": lambda k: run(D, k, n_threads=1),
        "lorainne cp, Dask of sparse.COO chunks, threaded scheduler, 1 thread": threaded(1),
        "lorainne cp, Dask of sparse.COO chunks, threaded scheduler, 2 threads": threaded(2),
        "lorainne cp, in-memory SparseTensor, Rust, 1 thread": lambda k: run(S, k, n_threads=1),
        "lorainne cp, in-memory SparseTensor, Rust, 2 threads": lambda k: run(S, k, n_threads=2),
    }
    results: dict[str, list] = {name: [] for name in methods}
    with dask.config.set(scheduler=client):
        run(D, 1, n_threads=1)  # warm-up: numba and the workers' imports
        for _ in range(args.repeat):
            for name, fn in methods.items():
                t0, _ = best(lambda fn=fn: fn(0), 1)
                sizes.clear()
                tk, model = best(lambda fn=fn: fn(args.sweeps), 1)
                results[name].append(((tk - t0) / args.sweeps, t0, model, max(sizes, default=0)))
    client.gather = original
    client.close()
    cluster.close()

    reference = results["lorainne cp, in-memory SparseTensor, Rust, 1 thread"][0][2]
    rows = []
    for name, runs in results.items():
        per_sweep, t0, model, gathered = min(runs, key=lambda r: r[0])
        gap = factor_gap(model, reference)
        rows.append((name, per_sweep, t0, model.errors[-1], gap, gathered if "workers" in name else None))
    try:
        from tensorly.contrib.sparse.decomposition import parafac
        from tensorly.cp_tensor import CPTensor

        start = CPTensor((np.ones(rank), [f.copy() for f in init]))
        parafac(C, rank, init=start, n_iter_max=1, tol=0)  # warm-up (numba)
        t, (model, errs) = best(
            lambda: parafac(C, rank, init=start, n_iter_max=args.peer_sweeps, tol=0, return_errors=True), 1
        )
        theirs = float(np.asarray(errs[-1].todense() if hasattr(errs[-1], "todense") else errs[-1]))
        ours = run(S, args.peer_sweeps, n_threads=1)
        rows.append(
            (
                f"tensorly.contrib.sparse parafac (sparse.COO, in memory; error after {args.peer_sweeps} sweeps)",
                t / args.peer_sweeps,
                None,
                theirs,
                factor_gap(Dense([f.todense() if hasattr(f, "todense") else f for f in model.factors]), ours),
                None,
            )
        )
    except Exception as exc:  # noqa: BLE001 - the peer is optional; say why it is missing
        print(f"tensorly sparse parafac: not run ({type(exc).__name__}: {exc})")

    dask_time = rows[0][1]
    flops = 3 * S.nnz * rank * 3  # per sweep: 3 MTTKRPs, each ~3 nnz R multiply-adds
    bytes_read = 3 * S.nnz * (3 * 8 + 8)  # per sweep: 3 passes over int64 coordinates and values
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    flags = subprocess.run("lscpu | grep -o 'avx512f\\|avx2' | sort -u", shell=True, capture_output=True, text=True)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\nCommand: `PYTHONPATH=python python benches/bench_dask_sparse.py {command}`")
    print(
        f"{n}^3, {S.nnz} nnz, rank {rank}, {args.blocks}^3 = {args.blocks**3} chunks, "
        f"{args.sweeps} sweeps, best of {args.repeat}"
    )
    print(f"CPU flags: {' '.join(flags.stdout.split())}. {load}")
    print(f"Per sweep: {flops / 1e6:.1f} Mflop, {bytes_read / 1e6:.1f} MB of entries read (3 passes)\n")
    print(
        "| method | ms / sweep | checks + norm (ms) | rel. error | factors vs in-memory Rust "
        "| largest gather (bytes) | Dask time / this time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, per_sweep, t0, err, gap, gathered in rows:
        t0s = "" if t0 is None else f"{t0 * 1e3:.0f}"
        gs = "" if gathered is None else f"{gathered}"
        print(
            f"| {name} | {per_sweep * 1e3:.1f} | {t0s} | {err:.6f} | {gap:.1e} | {gs} | {dask_time / per_sweep:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
