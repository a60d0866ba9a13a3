"""Randomized SVD of a Dask matrix generated on the workers: lorainne vs dask.array.linalg.svd_compressed.

Run: PYTHONPATH=python python benches/bench_dask.py [--m 20000] [--n 1000] [--rank 10]

A 2-worker in-process LocalCluster (1 thread each, BLAS pinned to 1 thread), the matrix
``L diag(d) R + noise`` generated chunk by chunk on the workers (never held whole anywhere). Accuracy:
the largest relative error of the top ``rank`` singular values against Dask's exact tall-skinny SVD
(``dask.array.linalg.svd``, TSQR). Each peer's ``n_power_iter`` is raised until it matches ours.
Peak memory: the largest managed memory of a worker during the run (a WorkerPlugin).
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
import distributed
import numpy as np
from threadpoolctl import threadpool_limits

from _common import cpu_flags
from lorainne import randomized_svd


class Peak(distributed.WorkerPlugin):
    def setup(self, worker):
        self.worker = worker
        worker.lorainne_peak = 0

    def transition(self, key, start, finish, **kwargs):
        self.worker.lorainne_peak = max(self.worker.lorainne_peak, self.worker.state.nbytes)


def matrix(m, n, rows, components=60, noise=0.05, seed=0):
    rs = da.random.default_rng(seed)
    L = rs.standard_normal((m, components), chunks=(rows, components)) * (0.9 ** np.arange(components))
    R = rs.standard_normal((components, n), chunks=(components, n))
    return L @ R + noise * rs.standard_normal((m, n), chunks=(rows, n))


def run(client, label, fn, exact):
    client.run(lambda dask_worker: setattr(dask_worker, "lorainne_peak", 0))
    start = time.perf_counter()
    S = np.asarray(fn())
    seconds = time.perf_counter() - start
    peak = max(client.run(lambda dask_worker: dask_worker.lorainne_peak).values())
    error = float(np.max(np.abs(S - exact[: len(S)]) / exact[: len(S)]))
    print(f"{label:40s} {seconds:8.2f} s  peak {peak / 1e6:7.1f} MB  max rel err S {error:.2e}", flush=True)
    return seconds, peak, error


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--m", type=int, default=20000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--out", default="benches/RESULTS_dask.md")
    args = parser.parse_args()
    flags = cpu_flags()
    with threadpool_limits(1), dask.config.set({"distributed.worker.memory.target": False}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
        client = distributed.Client(cluster)
        client.register_plugin(Peak())
        A = matrix(args.m, args.n, args.rows)
        k = args.rank
        exact = np.asarray(da.linalg.svd(A)[1].compute())
        rows = []
        for q in (1, 2, 3):
            t, p, e = run(
                client,
                f"lorainne randomized_svd q={q}",
                lambda q=q: randomized_svd(A, k, n_power_iter=q, random_state=0).S,
                exact,
            )
            rows.append(("lorainne.randomized_svd", q, t, p, e))
        for q in (0, 1, 2, 3, 4, 6):
            t, p, e = run(
                client,
                f"dask svd_compressed n_power_iter={q}",
                lambda q=q: da.linalg.svd_compressed(A, k, n_power_iter=q, seed=0)[1].compute(),
                exact,
            )
            rows.append(("dask.array.linalg.svd_compressed", q, t, p, e))
        client.close()
        cluster.close()
    theirs = [r for r in rows if not r[0].startswith("lorainne")]
    lines = [
        "| method | n_power_iter | time (s) | peak worker MB | max rel. error of S[:k] | peer time / ours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, q, t, p, e in rows:
        ratio = ""
        if not name.startswith("dask"):
            match = next((d for d in theirs if d[4] <= e * 1.0000001), None)
            ratio = f"dask q={match[1]}: {match[2] / t:.2f}x" if match else "dask never reaches it"
        lines.append(f"| {name} | {q} | {t:.2f} | {p / 1e6:.1f} | {e:.2e} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    header = (
        f"Matrix {args.m} x {args.n} float64 ({args.m * args.n * 8 / 1e6:.0f} MB, row chunks of {args.rows}), "
        f"rank {k} (+10 oversampling), generated on the workers; 2 in-process workers x 1 thread, BLAS 1 thread. "
        f"CPU flags: {' '.join(flags)}.\n\n"
        f"Command: `PYTHONPATH=python python benches/bench_dask.py --m {args.m} --n {args.n} --rows {args.rows} "
        f"--rank {k}`\n\n"
    )
    with open(args.out + ".table", "w") as f:
        f.write(header + table + "\n")


if __name__ == "__main__":
    main()
