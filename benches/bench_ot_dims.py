"""Entropic OT in dimensions 1 to 10: how the hierarchical kernel behaves against the dense one.

    PYTHONPATH=python python benches/bench_ot_dims.py [--n 5000] [--dims 1 2 3 4 6 8 10] [--out FILE]

x uniform on the unit cube [0, 1]^d, y a 3-component Gaussian mixture (sd 0.05) in it, n points
each, uniform weights, eps = 0.01 (C = |x - y|^2, as in ``bench_ot.py --speed``), one thread.
Per d: the time per Sinkhorn iteration of ``method="hierarchical"`` and ``method="dense"`` (both
Rust; 10 plain iterations from the same start, no eps-scaling, best of 3, interleaved), the
hierarchical kernel's block census (near entries evaluated one exp each, far-field terms, pruned
blocks) at the potentials of a converged dense solve, and its largest error against the dense
log-kernel there (the bound is ``kernel_tol`` = 1e-7 absolute in the log domain).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

import lorainne  # noqa: E402
from _common import cpu_flags, git_revision, markdown_table  # noqa: E402

EPS = 0.01
ITERATIONS = 10
KERNEL_TOL = 1e-7


def clouds(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    centres = rng.uniform(0.2, 0.8, (3, d))
    y = np.clip(centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, d)), 0.0, 1.0)
    return x, y


def seconds_per_iteration(x, y, method: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the iteration cap is the point here
        start = time.process_time()
        result = lorainne.sinkhorn(
            x,
            y,
            eps=EPS,
            method=method,
            tol=1e-300,
            n_iter_max=ITERATIONS,
            eps_scaling=False,
            overrelaxation=False,
            kernel_tol=KERNEL_TOL,
            n_threads=1,
        )
        return (time.process_time() - start) / max(result.n_iter, 1)


def kernel_census(x, y):
    """Block counts of the hierarchical kernel at converged potentials and its worst log error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lorainne.sinkhorn(x, y, eps=EPS, method="dense", tol=1e-6, n_threads=1)
    log_v = np.asarray(reference.g) / EPS  # the g-potential as the log of the kernel's argument
    K = lorainne.GaussianKernel(x, y, EPS, method="hierarchical", tol=KERNEL_TOL, n_threads=1)
    approx = K.log_matvec(log_v)
    exact = lorainne.GaussianKernel(x, y, EPS, method="dense").log_matvec(log_v)
    stats = K.stats()
    return stats, float(np.max(np.abs(approx - exact)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="append the table to this markdown file")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    rows = []
    for d in args.dims:
        x, y = clouds(args.n, d)
        best = {"hierarchical": float("inf"), "dense": float("inf")}
        for _ in range(args.repeats):
            for method in best:
                best[method] = min(best[method], seconds_per_iteration(x, y, method))
        stats, error = kernel_census(x, y)
        pairs = args.n * args.n
        rows.append(
            [
                d,
                f"{1e3 * best['hierarchical']:.1f}",
                f"{1e3 * best['dense']:.1f}",
                f"{best['dense'] / best['hierarchical']:.2f}",
                f"{stats['near_entries'] / pairs:.1%}",
                f"{stats['far_terms'] / pairs:.1%}",
                f"{stats['pruned_blocks']}/{stats['near_blocks'] + stats['far_blocks'] + stats['pruned_blocks']}",
                f"{error:.1e}",
            ]
        )
        print(rows[-1], flush=True)
    header = [
        "d",
        "hierarchical ms/iter",
        "dense ms/iter",
        "dense / hierarchical",
        "near entries (of n^2)",
        "far terms (of n^2)",
        "pruned blocks",
        "max |log K v - exact|",
    ]
    text = (
        f"n = {args.n}, eps = {EPS}, kernel_tol = {KERNEL_TOL}, 1 thread, CPU time per iteration (best of "
        f"{args.repeats}); commit {git_revision()}; CPU flags: {', '.join(cpu_flags())}; load average "
        f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after.\n\n" + markdown_table(header, rows) + "\n"
    )
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
