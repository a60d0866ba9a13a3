"""Plan products of a solved Sinkhorn result, hierarchical kernel, one thread: their cost in kernel
applications and in Sinkhorn iterations, with their accuracy.

Usage::

    python benches/bench_ot_plans.py                       # the table of benches/RESULTS_ot_plans.md
    python benches/bench_ot_plans.py --sizes 10000 --repeats 2

Data as benches/bench_ot.py: 2-D, x uniform on the unit square, y a 3-component Gaussian mixture
(sd 0.05), eps = 0.01 (C = |x - y|^2), uniform weights, solved with ``method="hierarchical"`` to
marginal tolerance ``--tol`` (kernel tolerance tol / 10) on one thread.

* "apply": one kernel application at the solution (``log sum_j exp(log b_j + g_j / eps - C_ij /
  eps)``, the f-update); one Sinkhorn iteration is two applications (f and g updates), so
  "1 iteration" below is 2 x apply.
* ``gradient_x``: ONE application with d extra columns (P 1 and the d coordinates of P y share
  the traversal and each far-field block's pass over its source rows) plus the trees; "apps" is
  its measured time in applications; ``barycentric_map`` the same; ``plan_matvec`` of one
  nonnegative column: 1 application;
  ``plan_sparse(1e-6)``: 1 application plus the near-field search and its entries.
* Accuracy: the gradient against the exact one on 300 sampled rows (evaluated entry by entry);
  the sparse plan's worst relative row-sum deficit against the plan's row mass P 1 (its
  guarantee: <= 1e-6; against a it adds the marginal error of the solve). At n <= --dense-max the dense NumPy
  peer (the plan formed in row blocks from f, g, then 2 (a x - P y)) is timed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from _common import best_time, cpu_flags, machine
from lorainne import sinkhorn
from lorainne.ot import GaussianKernel

EPS = 0.01


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    centres = np.array([[0.2, 0.3], [0.7, 0.8], [0.75, 0.25]])
    y = centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    return x, y


def exact_gradient_rows(x, y, b, f, g, eps, rows):
    """``2 sum_j P_ij (x_i - y_j)`` for the given rows, entry by entry (float64)."""
    C = ((x[rows, None, :] - y[None, :, :]) ** 2).sum(-1)
    P = (1.0 / len(x)) * b[None, :] * np.exp((f[rows, None] + g[None, :] - C) / eps)
    return 2.0 * (P.sum(1)[:, None] * x[rows] - P @ y)


def dense_peer(x, y, b, f, g, eps, block=1000):
    """The gradient from the dense plan, formed block of rows by block of rows (NumPy)."""
    out = np.empty_like(x)
    for s in range(0, len(x), block):
        out[s : s + block] = exact_gradient_rows(x, y, b, f, g, eps, np.arange(s, min(s + block, len(x))))
    return out


def bench(n: int, tol: float, repeats: int, dense_max: int, sparse_max: int) -> dict:
    x, y = data(n)
    b = np.full(n, 1.0 / n)
    start = time.perf_counter()
    res = sinkhorn(x, y, eps=EPS, tol=tol, method="hierarchical", n_threads=1)
    solve = time.perf_counter() - start
    f, g = res.f, res.g
    kernel = GaussianKernel(x, y, EPS, tol=res.problem.kernel_tol, n_threads=1)
    log_w = np.log(b) + g / EPS
    t_apply, _ = best_time(lambda: kernel.log_matvec(log_w), repeats)
    t_grad, grad = best_time(res.gradient_x, repeats)
    t_map, _ = best_time(res.barycentric_map, repeats)
    t_matvec, row_mass = best_time(lambda: res.plan_matvec(np.ones(n)), repeats)
    rows = np.random.default_rng(1).choice(n, size=min(300, n), replace=False)
    ref = exact_gradient_rows(x, y, b, f, g, EPS, rows)
    grad_err = float(np.abs(grad[rows] - ref).max() / np.abs(ref).max())
    out = {
        "n": n,
        "n_iter": res.n_iter,
        "solve": solve,
        "apply": t_apply,
        "gradient": t_grad,
        "map": t_map,
        "matvec": t_matvec,
        "grad_err": grad_err,
    }
    if n <= sparse_max:  # at eps = 0.01 rows keep ~40% of the targets: the output is nearly n x m
        t_sparse, P = best_time(lambda: res.plan_sparse(1e-6), max(1, repeats - 1))
        row_sums = np.asarray(P.sum(1)).ravel()
        out.update(sparse=t_sparse, sparse_deficit=float(np.max(1.0 - row_sums / row_mass)), nnz_per_row=P.nnz / n)
    if n <= dense_max:
        with threadpool_limits(1):
            t_dense, dense = best_time(lambda: dense_peer(x, y, b, f, g, EPS), max(1, repeats - 1))
        out["dense"] = t_dense
        out["dense_vs_ours"] = float(np.abs(grad - dense).max() / np.abs(dense).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-max", type=int, default=10_000)
    parser.add_argument("--sparse-max", type=int, default=10_000)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    print(f"# {machine()}; flags {' '.join(cpu_flags())}; load {os.getloadavg()[0]:.1f} (1 min) at start")
    print(f"# command: python benches/bench_ot_plans.py {' '.join(sys.argv[1:])}")
    header = (
        "| n | iters | solve s | apply s | gradient_x s (apps measured; iterations) | barycentric_map s "
        "| plan_matvec s | plan_sparse(1e-6) s (nnz/row; row deficit) | gradient rel. err "
        "| dense NumPy gradient s (diff) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for n in args.sizes:
        r = bench(n, args.tol, args.repeats, args.dense_max, args.sparse_max)
        iteration = 2.0 * r["apply"]
        dense = f"{r['dense']:.3f} ({r['dense_vs_ours']:.1e})" if "dense" in r else "-"
        sparse = f"{r['sparse']:.3f} ({r['nnz_per_row']:.0f}; {r['sparse_deficit']:.1e})" if "sparse" in r else "-"
        print(
            f"| {n} | {r['n_iter']} | {r['solve']:.2f} | {r['apply']:.3f} | {r['gradient']:.3f} "
            f"({r['gradient'] / r['apply']:.2f}; {r['gradient'] / iteration:.2f}) | {r['map']:.3f} "
            f"| {r['matvec']:.3f} | {sparse} "
            f"| {r['grad_err']:.1e} | {dense} |",
            flush=True,
        )
    print(f"# load {os.getloadavg()[0]:.1f} (1 min) at the end")


if __name__ == "__main__":
    main()
