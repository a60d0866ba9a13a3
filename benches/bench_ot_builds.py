"""Two builds of the OT kernel in ONE process: kernel applications and whole solves, interleaved.

On a shared machine the CPU time of a solve moves by 30-50% from one run to the next (other
processes' caches and hyperthreads), more than a kernel change; two builds timed in the same process,
alternating, see the same conditions. The baseline is another build's compiled module
(``_core*.so``, e.g. main's, copied aside); the new build is the ``lorainne`` on the path.

    python benches/bench_ot_builds.py --baseline /tmp/base/lorainne/_core.cpython-311-x86_64-linux-gnu.so \\
        --cases uniform-2d mixture-2d [--reps 15] [--solve-reps 3]

Per case (bench_ot.py's data, n = 10,000, eps = 0.01, one thread): the converged potentials of a
solve (tol 1e-6), then one application each way (log_matvec at g, log_rmatvec at f) at kernel
tolerances 1e-7 (the final stage's), 1e-5 and 1e-3 (the loose early iterations'), best of ``reps``
CPU ms per application and the largest difference between the builds' outputs; then best of
``solve_reps`` whole `sinkhorn` solves (CPU s) with their iterations, marginal errors and costs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np

import lorainne
import lorainne._core as new_core
import lorainne.ot._solve as solve_module
from _common import cpu_flags
from bench_ot import EPS, TOL, data


def load_core(path: str):
    spec = importlib.util.spec_from_file_location("_core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernels(builds: dict, case: str, reps: int) -> None:
    x, y = data(10_000, case=case)
    r = lorainne.sinkhorn(x, y, eps=EPS, tol=TOL, n_threads=1)
    hg, hf = r.g / EPS - np.log(len(y)), r.f / EPS - np.log(len(x))
    for tol in (1e-7, 1e-5, 1e-3):
        ks = {k: m.HierarchicalKernel(x, y, EPS, tol, 32) for k, m in builds.items()}
        outs = {k: K.log_apply(hg, False, 1) for k, K in ks.items()}  # fills the monomial caches
        best = dict.fromkeys(ks, np.inf)
        for _ in range(reps):
            for k, K in ks.items():
                c = time.process_time()
                K.log_apply(hg, False, 1)
                K.log_apply(hf, True, 1)
                best[k] = min(best[k], (time.process_time() - c) / 2)
        diff = float(np.max(np.abs(outs["baseline"] - outs["new"])))
        print(
            f"| {case} | application, tol {tol:.0e} | {best['baseline'] * 1e3:.1f} ms | {best['new'] * 1e3:.1f} ms "
            f"| {best['new'] / best['baseline']:.3f} | max diff {diff:.1e} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


def solves(builds: dict, case: str, reps: int) -> None:
    x, y = data(10_000, case=case)
    best, info = dict.fromkeys(builds, np.inf), {}
    for _ in range(reps):
        for k, module in builds.items():
            solve_module.core = lambda module=module: module
            c = time.process_time()
            r = lorainne.sinkhorn(x, y, eps=EPS, tol=TOL, n_threads=1)
            best[k] = min(best[k], time.process_time() - c)
            info[k] = f"{r.n_iter} it, err {r.marginal_error:.1e}, cost {r.cost:.10f}"
    solve_module.core = lambda: new_core
    print(
        f"| {case} | whole solve | {best['baseline']:.2f} s | {best['new']:.2f} s "
        f"| {best['new'] / best['baseline']:.3f} | {info['baseline']} / {info['new']} | {os.getloadavg()[0]:.1f} |",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the baseline build's _core*.so")
    p.add_argument("--cases", nargs="+", default=["uniform-2d", "mixture-2d"])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--solve-reps", type=int, default=3)
    args = p.parse_args()
    builds = {"baseline": load_core(args.baseline), "new": new_core}
    print(f"# CPU flags: {' '.join(cpu_flags())}; load before {os.getloadavg()}; one thread, CPU time")
    print("| data | what | baseline | new | new / baseline | outputs | load |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases:
        kernels(builds, case, args.reps)
        if args.solve_reps:
            solves(builds, case, args.solve_reps)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
