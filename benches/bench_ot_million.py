"""Issue 13's large case: the Sinkhorn divergence of two 1e6-point clouds with its gradient.

Goal: divergence and gradient within 15 minutes and 4 GB on 2 cores. Data as in bench_ot.py (2-D,
x uniform, y a 3-Gaussian mixture), eps = 0.01, marginal error 1e-4, ``method="hierarchical"``.
Prints one markdown row: wall and CPU time (the process's, all threads) of the divergence (three
solves) and of ``gradient_x``, the process's peak resident memory, the value and the solves'
iterations; under a shared machine's load the CPU time is the one to compare.

    python benches/bench_ot_million.py [--n 1000000] [--threads 2] [--progress]

``--progress`` logs each solve's end (iterations, marginal error) with the process's wall and CPU
seconds so far, so that a run stopped by a timeout still says where its time went.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time

import lorainne
from _common import cpu_flags
from bench_ot import data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--progress", action="store_true", help="log each solve's end with the time so far")
    args = p.parse_args()
    begin = time.perf_counter()
    if args.progress:
        stamp = logging.Formatter("%(message)s")
        handler = logging.StreamHandler()
        handler.setFormatter(stamp)
        handler.addFilter(
            lambda r: (
                setattr(
                    r, "msg", f"[{time.perf_counter() - begin:.0f} s wall, {time.process_time():.0f} CPU s] {r.msg}"
                )
                or True
            )
        )
        logging.getLogger("lorainne").addHandler(handler)
        logging.getLogger("lorainne").setLevel(logging.INFO)
    x, y = data(args.n)
    start, cpu = time.perf_counter(), time.process_time()
    div = lorainne.sinkhorn_divergence(
        x, y, eps=0.01, tol=args.tol, method="hierarchical", n_threads=args.threads, verbose=int(args.progress)
    )
    solved, solved_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    grad = div.gradient_x()
    gradient, gradient_cpu = time.perf_counter() - start, time.process_time() - cpu
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0**2
    iterations = "+".join(str(r.n_iter) for r in (div.xy, div.xx, div.yy))
    print(
        f"CPU flags: {' '.join(cpu_flags())}; threads {args.threads}; n = {args.n}; tol = {args.tol}; "
        f"load {os.getloadavg()[0]:.1f} (1 min) at the end"
    )
    print("| n | divergence s (CPU s) | gradient_x s (CPU s) | total s (CPU s) | peak (GB) | value | iterations |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {solved:.1f} ({solved_cpu:.1f}) | {gradient:.1f} ({gradient_cpu:.1f}) "
        f"| {solved + gradient:.1f} ({solved_cpu + gradient_cpu:.1f}) | {peak_gb:.2f} "
        f"| {float(div.value):.6g} | {iterations} |"
    )
    assert grad.shape == x.shape


if __name__ == "__main__":
    main()
