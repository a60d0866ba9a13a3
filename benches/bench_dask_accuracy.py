"""Accuracy over seeds: which lorainne and svd_compressed configurations are equally accurate.

Run: PYTHONPATH=python python benches/bench_dask_accuracy.py [--m 20000] [--n 5000] [--rows 2000] [--seeds 8]

The matrix of ``bench_dask.py`` (``L diag(0.9^i) R + 0.05 noise``). lorainne runs in memory on NumPy
(its Dask path gives the same numbers to 1e-10 for the same seed, tests/test_dask.py), svd_compressed
on Dask's threaded scheduler; BLAS on 1 thread. Error: the largest relative error of the top 10
singular values against lorainne's block Krylov at depth 4. One seed decides little (the errors of
one configuration vary 10-50x between draws), so the table gives the median, min and max over seeds.
"""

from __future__ import annotations

import argparse

import dask
import dask.array as da
import numpy as np
from threadpoolctl import threadpool_limits

from bench_dask import matrix
from lorainne import randomized_svd


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--m", type=int, default=20_000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    k = 10
    with threadpool_limits(1), dask.config.set(scheduler="threads"):
        A = matrix(args.m, args.n, args.rows).persist()
        A_host = A.compute()
        exact = randomized_svd(A_host, k, n_power_iter=4, method="block_krylov", random_state=10_000).S
        ours = lambda q, method, s: randomized_svd(A_host, k, n_power_iter=q, method=method, random_state=s).S  # noqa: E731
        theirs = lambda q, s: da.linalg.svd_compressed(A, k, n_power_iter=q, seed=s)[1].compute()  # noqa: E731
        configurations = {
            ("lorainne subspace q=2", 6): lambda s: ours(2, "subspace", s),
            ("lorainne subspace q=3", 8): lambda s: ours(3, "subspace", s),
            ("lorainne block Krylov q=1", 4): lambda s: ours(1, "block_krylov", s),
            ("lorainne block Krylov q=2", 6): lambda s: ours(2, "block_krylov", s),
            ("svd_compressed q=2", 6): lambda s: theirs(2, s),
            ("svd_compressed q=3", 8): lambda s: theirs(3, s),
            ("svd_compressed q=4", 10): lambda s: theirs(4, s),
        }
        errors = {key: [] for key in configurations}
        for seed in range(args.seeds):
            for key, fn in configurations.items():
                errors[key].append(float(np.max(np.abs(np.asarray(fn(seed)) - exact) / exact)))
    print(f"{args.m} x {args.n}, seeds 0-{args.seeds - 1}")
    print("| configuration | products with A, A^T | median | min | max |\n|---|---:|---:|---:|---:|")
    for (name, products), values in errors.items():
        v = np.array(values)
        print(f"| {name} | {products} | {np.median(v):.1e} | {v.min():.1e} | {v.max():.1e} |")


if __name__ == "__main__":
    main()
