"""Profile of single kernel applications of the 1e6-point divergence (issue 13), by n.

The divergence's three solves spend their time in kernel applications at the final eps with the
converged potentials; a full solve at n = 1e6 takes half an hour, one application seconds. This
script solves the divergence at a small n0 (default 20,000), extends the converged potentials to
n points by their c-transforms (exact for the continuous problem: g(y) = -eps log sum_i a_i
exp((f_i - |x_i - y|^2)/eps)), and times one application of the xy kernel (both directions) and of
the yy kernel at each n, with the block statistics of the Rust side (blocks by path, cache order).

    python benches/bench_ot_kernel_profile.py --sizes 100000 300000 1000000 [--threads 2]
    python benches/bench_ot_kernel_profile.py --stages 100000   # iterations per eps stage

``--stages N`` runs the divergence's three solves at N points instead, printing per solve and eps
stage the iterations and their CPU seconds (from ``callback``).

Data as bench_ot_million.py (x uniform on the unit square, y a 3-Gaussian mixture), eps = 0.01,
kernel tolerance 1e-5 (the divergence's tol 1e-4 / 10). Prints one markdown row per application:
wall and CPU seconds of the first application (fills the monomial caches) and of the second.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

import lorainne
from _common import cpu_flags
from bench_ot import data

EPS = 0.01


def extend(points_new, points_old, pot_old, eps: float, n_threads: int) -> np.ndarray:
    """The c-transform of a potential on `points_old` (uniform weights) at `points_new`."""
    kernel = lorainne.GaussianKernel(points_new, points_old, eps, tol=1e-6, n_threads=n_threads)
    return -eps * kernel.log_matvec(pot_old / eps - np.log(len(points_old)))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def stages(n: int, threads: int) -> None:
    """Iterations and CPU seconds per eps stage of the divergence's three solves at n points."""
    from lorainne.ot._solve import _solve

    x, y = data(n)
    print(f"CPU flags: {' '.join(cpu_flags())}; threads {threads}; n = {n}; tol 1e-4")
    print("| solve | eps stages (iterations) | final stage iterations | CPU s | load |")
    print("|---|---|---|---|---|")
    for name, pts, other, symmetric in (("xy", x, y, False), ("xx", x, None, True), ("yy", y, None, True)):
        seen: dict[float, int] = {}

        def record(state, err, seen=seen):
            seen[state["eps"]] = seen.get(state["eps"], 0) + 1
            return False

        _, cpu = timed(
            lambda pts=pts, other=other, symmetric=symmetric, record=record: _solve(
                pts,
                other,
                None,
                None,
                eps=EPS,
                tol=1e-4,
                method="hierarchical",
                n_threads=threads,
                symmetric=symmetric,
                callback=record,
            )
        )[1:]
        final = seen.get(min(seen), 0)
        print(
            f"| {name} | {len(seen)} ({sum(seen.values()) - final}) | {final} | {cpu:.1f} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--n0", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kernel-tol", type=float, default=1e-5)
    p.add_argument("--cases", nargs="+", default=["xy", "yx", "yy"], choices=["xy", "yx", "yy"])
    p.add_argument("--stages", type=int, default=0, help="per-stage iterations of the three solves at this n")
    args = p.parse_args()
    if args.stages:
        stages(args.stages, args.threads)
        return
    x0, y0 = data(args.n0)
    div = lorainne.sinkhorn_divergence(x0, y0, eps=EPS, tol=1e-4, method="hierarchical", n_threads=args.threads)
    print(f"CPU flags: {' '.join(cpu_flags())}; threads {args.threads}; n0 = {args.n0}; kernel tol {args.kernel_tol}")
    print(
        "| n | kernel | build s | 1st wall s (CPU s) | 2nd wall s (CPU s) | near entries | far blocks "
        "| far cached / rows / general | general points | far terms | max order | cache order | kernel MB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        x, y = data(n)
        log_w = -np.log(n)
        g = extend(y, x0, div.xy.f, EPS, args.threads) if "xy" in args.cases else None
        fyy = extend(y, y0, div.yy.f, EPS, args.threads) if "yy" in args.cases else None
        cases = (("xy", x, y, g, False), ("yx", x, y, None, True), ("yy", y, y, fyy, False))
        kernel = None
        for name, t, s, pot, transpose in cases:
            if name not in args.cases:
                continue
            build = 0.0
            if name == "yx":
                pot = extend(x, y0, div.xy.g, EPS, args.threads)
            if name != "yx" or kernel is None:
                kernel, build, _ = timed(
                    lambda t=t, s=s: lorainne.GaussianKernel(t, s, EPS, tol=args.kernel_tol, n_threads=args.threads)
                )
            h = pot / EPS + log_w
            apply = kernel.log_rmatvec if transpose else kernel.log_matvec
            _, w1, c1 = timed(lambda h=h, apply=apply: apply(h))
            _, w2, c2 = timed(lambda h=h, apply=apply: apply(h))
            st = kernel.stats()
            paths = f"{st.get('far_cached', '?')} / {st.get('far_rows', '?')} / {st.get('far_general', '?')}"
            print(
                f"| {n} | {name} | {build:.1f} | {w1:.1f} ({c1:.1f}) | {w2:.1f} ({c2:.1f}) | {st['near_entries']:.3g} "
                f"| {st['far_blocks']} | {paths} | {st.get('far_general_points', '?')} | {st['far_terms']:.3g} "
                f"| {st['max_order']} | {st.get('cache_order', '?')} "
                f"| {st['memory_bytes'] / 1e6:.0f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
        del kernel
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0**2
    print(f"peak resident memory {peak:.2f} GB")


if __name__ == "__main__":
    main()
