"""lorainne.sinkhorn against GeomLoss's SamplesLoss("sinkhorn") on the bench_ot.py problem.

    pip install torch geomloss
    python benches/bench_ot_geomloss.py --sizes 1000 4000

GeomLoss's cost is |x - y|^2 / 2 with eps = blur^2, so blur = sqrt(eps / 2) and its potentials are
doubled to compare with lorainne's convention (C = |x - y|^2, absolute eps). debias=False gives
the plain entropic OT dual; the tensorized backend is used (the KeOps backend needs a compiler).
The marginal error of GeomLoss's plan is recomputed densely from its returned potentials.
One thread for both.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def problem(rng, n):
    x = rng.random((n, 2))
    centers = np.array([[0.2, 0.3], [0.7, 0.6], [0.5, 0.85]])
    y = centers[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    return x, y


def marginal_error(x, y, f, g, eps):
    n, m = len(x), len(y)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    P = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - C) / eps)
    return np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum(), a @ f + b @ g


def main():
    import torch
    from geomloss import SamplesLoss

    import lorainne

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--eps", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| n | solver | time (s) | dual | marginal L1 error |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        x, y = problem(rng, n)
        for scaling in (0.5, 0.9):
            loss = SamplesLoss(
                "sinkhorn",
                p=2,
                blur=(args.eps / 2) ** 0.5,
                debias=False,
                potentials=True,
                backend="tensorized",
                scaling=scaling,
            )
            start = time.perf_counter()
            F, G = loss(torch.from_numpy(x), torch.from_numpy(y))
            seconds = time.perf_counter() - start
            error, dual = marginal_error(x, y, 2 * F.numpy().ravel(), 2 * G.numpy().ravel(), args.eps)
            label = "GeomLoss (default scaling 0.5)" if scaling == 0.5 else "GeomLoss scaling 0.9"
            print(f"| {n} | {label} | {seconds:.2f} | {dual:.6f} | {error:.1e} |")
        start = time.perf_counter()
        result = lorainne.sinkhorn(x, y, eps=args.eps, n_threads=1)
        seconds = time.perf_counter() - start
        print(f"| {n} | lorainne (tol 1e-6) | {seconds:.2f} | {result.dual:.6f} | {result.marginal_error:.1e} |")


if __name__ == "__main__":
    main()
