"""Unbalanced OT and Sinkhorn divergences against the balanced solve, same data, same run.

Usage::

    python benches/bench_ot_unbalanced.py                              # n = 1e4 and 1e5, 1 thread
    python benches/bench_ot_unbalanced.py --sizes 2000 10000 --repeats 3 --write
    python benches/bench_ot_unbalanced.py --dims 2 3 4 6 8 10 --dim-n 3000   # time per iteration vs d

Data as in bench_ot.py: 2-D, x uniform on the unit square, y a 3-component Gaussian mixture (sd
0.05), uniform weights, eps = 0.01 absolute (C = |x - y|^2), tol = 1e-6, ``method="hierarchical"``,
``n_threads=1``. Solves: balanced ``sinkhorn``; unbalanced ``sinkhorn(reach=...)`` (y carries 1.5
times the mass of x); ``sinkhorn_divergence`` balanced and unbalanced (three solves each, the two
symmetric ones by the averaged update). "ratio" = time / balanced time of the same round (rounds
interleave the solvers; best of ``--repeats``). "dual diff" compares with the exact dense kernel
(Rust, same iterations) where n <= ``--dense-max``. "applications" counts kernel applications
(2 per two-sided iteration, 1 per symmetric one; the final cost evaluations excluded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, git_revision, machine, markdown_table  # noqa: E402

EPS, TOL = 0.01, 1e-6


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    centres = np.array([[0.2, 0.3], [0.7, 0.8], [0.75, 0.25]])
    y = centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    return x, y


def solvers(x, y, reach: float, method: str):
    from lorainne import sinkhorn, sinkhorn_divergence

    n, m = len(x), len(y)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.5 / m)
    kw = {"eps": EPS, "tol": TOL, "method": method, "n_threads": 1}
    return {
        "balanced": lambda: sinkhorn(x, y, **kw),
        f"unbalanced reach={reach}": lambda: sinkhorn(x, y, a, b, reach=reach, **kw),
        "divergence": lambda: sinkhorn_divergence(x, y, **kw),
        f"divergence reach={reach}": lambda: sinkhorn_divergence(x, y, a, b, reach=reach, **kw),
    }


def summary(res):
    """(value, iterations, kernel applications, worst marginal error) of a result."""
    if hasattr(res, "xy"):  # a divergence
        parts = (res.xy, res.xx, res.yy)
        apps = 2 * res.xy.n_iter + res.xx.n_iter + res.yy.n_iter
        iters = "+".join(str(r.n_iter) for r in parts)
        return float(res.value), iters, apps, max(r.marginal_error for r in parts)
    return float(res.dual), str(res.n_iter), 2 * res.n_iter, res.marginal_error


def per_iteration(x, y, eps: float, method: str, repeats: int) -> float:
    """Seconds per Sinkhorn iteration (two kernel applications): (time of 6 iterations - time of
    1) / 5, cold start at eps without scaling, so tree builds and the final cost cancel."""
    import warnings

    from lorainne import ConvergenceWarning, sinkhorn

    def run(k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            sinkhorn(x, y, eps=eps, tol=1e-12, n_iter_max=k, eps_scaling=False, method=method, n_threads=1)
            return time.perf_counter() - start

    return min(run(6) - run(1) for _ in range(repeats)) / 5


def dims_table(dims, n: int, repeats: int) -> str:
    """Time per iteration of the hierarchical and the dense kernel against d at fixed n (x, y
    uniform on the unit cube, eps = 0.005 d: a fixed fraction of the mean squared distance d / 6)."""
    rows = []
    for d in dims:
        rng = np.random.default_rng(d)
        x, y = rng.random((n, d)), rng.random((n, d))
        eps = 0.005 * d
        hier = per_iteration(x, y, eps, "hierarchical", repeats)
        dense = per_iteration(x, y, eps, "dense", repeats)
        rows.append([d, n, f"{eps:.3g}", f"{hier * 1e3:.1f}", f"{dense * 1e3:.1f}", f"{hier / dense:.2f}"])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    header = ["d", "n", "eps", "hierarchical ms/iter", "dense ms/iter", "hierarchical / dense"]
    return markdown_table(header, rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--reach", type=float, default=0.3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--dense-max", type=int, default=5000)
    p.add_argument("--write", action="store_true", help="write benches/RESULTS_ot_unbalanced.md")
    p.add_argument(
        "--skip", nargs="*", default=[], help="solves to leave out, by the start of their name (not balanced)"
    )
    p.add_argument("--dims", type=int, nargs="*", default=[], help="instead: time per iteration against d")
    p.add_argument("--dim-n", type=int, default=3000)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.dims:
        load = os.getloadavg()
        print(dims_table(args.dims, args.dim_n, args.repeats))
        print(f"load average {load[0]:.1f}; CPU flags {', '.join(cpu_flags())}")
        return
    rows = []
    for n in args.sizes:
        x, y = data(n)
        runs = solvers(x, y, args.reach, "hierarchical")
        runs = {k: v for k, v in runs.items() if k == "balanced" or not any(k.startswith(p) for p in args.skip)}
        best = dict.fromkeys(runs, np.inf)
        last = {}
        for _ in range(args.repeats):  # interleaved rounds: load changes hit every solver alike
            for name, fn in runs.items():
                start = time.perf_counter()
                last[name] = fn()
                best[name] = min(best[name], time.perf_counter() - start)
        exact = {}
        if n <= args.dense_max:
            exact = {name: summary(fn())[0] for name, fn in solvers(x, y, args.reach, "dense").items() if name in runs}
        for name in runs:
            value, iters, apps, err = summary(last[name])
            diff = f"{abs(value - exact[name]) / abs(exact[name]):.1e}" if name in exact else ""
            ratio = best[name] / best["balanced"]
            rows.append([n, name, f"{best[name]:.2f}", f"{ratio:.2f}", iters, apps, f"{err:.1e}", f"{value:.6g}", diff])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    header = ["n", "solve", "time (s)", "ratio", "iterations", "applications", "marginal err", "value", "dual diff"]
    table = markdown_table(header, rows)
    load = os.getloadavg()
    sizes = " ".join(map(str, args.sizes))
    text = f"""# Unbalanced OT and Sinkhorn divergences: time against the balanced solve

Command (commit {git_revision()}):

```
python benches/bench_ot_unbalanced.py --sizes {sizes} --reach {args.reach} --repeats {args.repeats} --write
```

Machine: {machine()}; CPU flags {", ".join(cpu_flags())}; load average at the end
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: the ratios, measured in the same
run with interleaved rounds, are what to read). One thread (``n_threads=1``).

Problem: as in RESULTS_ot.md (2-D, x uniform, y a 3-component mixture with sd 0.05), eps = {EPS},
tol = {TOL}, ``method="hierarchical"``; the unbalanced problems give y 1.5 times the mass of x,
reach = {args.reach} (rho = {args.reach**2:.3g}). "ratio" = time / the balanced solve's time;
"value" is the dual (divergence: its value); "dual diff" the relative difference from the exact
dense kernel where that runs; "applications" the kernel applications of the iterations.

{table}
"""
    print(text)
    if args.write:
        Path(__file__).with_name("RESULTS_ot_unbalanced.md").write_text(text)


if __name__ == "__main__":
    main()
