"""Entropic OT benchmark: lorainne.sinkhorn (hierarchical, Rust) vs POT and GeomLoss.

Usage::

    python benches/bench_ot.py                      # the table of benches/RESULTS_ot.md
    python benches/bench_ot.py --sizes 1000 4000 --scaling 20000 50000 --threads 1

Every solver runs in its own subprocess so that its peak memory (ru_maxrss of the child) is its
own. Data: 2-D, x uniform on the unit square, y a 3-component Gaussian mixture (sd 0.05); eps = 0.01
(absolute; C_ij = |x_i - y_j|^2), uniform weights, marginal tolerance 1e-6 (L1).

* POT ``ot.sinkhorn`` (kernel domain) with stopThr = tol / sqrt(n) (its criterion is the L2 norm of
  the column-marginal error, checked every 10 iterations), ``ot.bregman.sinkhorn_log`` where it
  finishes in reasonable time;
* GeomLoss ``SamplesLoss("sinkhorn", p=2, blur=sqrt(eps / 2), scaling=0.9, backend="tensorized")``
  if it is installed (its cost is |x-y|^2 / 2 and its eps is blur^p, so blur^2 = eps / 2 gives
  the same plan as ours; its potentials are doubled to our convention before the plan is
  rebuilt and the marginal error measured with the exact kernel);
* lorainne ``sinkhorn(method="hierarchical")``.

"cost diff" is |cost - cost_ref| / cost_ref with cost_ref = lorainne's dense solver (exact kernel,
same algorithm) where it runs, else POT's transport cost. Flop floor: one dense kernel application
is n*m exps; the hierarchical one does `far_terms` multiply-adds plus `near_entries` exps
(printed per n).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_flags  # noqa: E402

EPS = 0.01
TOL = 1e-6


#: The data sets of the speed table: x uniform on the unit square (cube) and y a 3-Gaussian mixture
#: (sd 0.05), or both uniform on the unit square.
CASES = ("mixture-2d", "uniform-2d", "mixture-3d")


def data(n: int, seed: int = 0, case: str = "mixture-2d"):
    rng = np.random.default_rng(seed)
    if case == "uniform-2d":
        return rng.random((n, 2)), rng.random((n, 2))
    if case == "mixture-3d":
        x = rng.random((n, 3))
        centres = np.array([[0.2, 0.3, 0.4], [0.7, 0.8, 0.5], [0.75, 0.25, 0.6]])
        return x, centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 3))
    if case != "mixture-2d":
        raise ValueError(f"case must be one of {CASES}, got {case!r}")
    x = rng.random((n, 2))
    centres = np.array([[0.2, 0.3], [0.7, 0.8], [0.75, 0.25]])
    y = centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    return x, y


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- child runs


def child(spec: dict) -> dict:
    from threadpoolctl import threadpool_limits

    n, solver, threads = spec["n"], spec["solver"], spec["threads"]
    x, y = data(n, case=spec.get("case", "mixture-2d"))
    a = np.full(n, 1.0 / n)
    # the modules are imported before the clocks start: the table times the solve, not the ~1 s of
    # CPU that importing lorainne or POT takes (included before 2026-12-02)
    if solver.startswith("lorainne"):
        import lorainne  # noqa: F401
    elif solver in ("pot", "pot-log"):
        import ot  # noqa: F401
    base = peak_mb()
    with threadpool_limits(threads):
        start = time.perf_counter()
        cpu_start = time.process_time()
        if solver.startswith("lorainne"):
            import warnings

            from lorainne import sinkhorn

            # "lorainne": the default (method="auto": the tree in 2-D, the stored kernel in 3-D at n = 1e4)
            method = {"lorainne": "auto", "lorainne-dense": "dense", "lorainne-matrix": "matrix"}.get(
                solver, "hierarchical"
            )
            kw = {"overrelaxation": solver != "lorainne-plain"}
            if solver == "lorainne-sor":  # the algorithm before Anderson mixing and the multiscale start
                kw.update(acceleration="overrelaxation", multiscale=False)
            if spec.get("iters"):
                kw = {"n_iter_max": spec["iters"], "eps_scaling": False}
            if spec.get("tol"):
                kw["tol"] = spec["tol"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = sinkhorn(x, y, eps=EPS, **{"tol": TOL, **kw}, method=method, n_threads=threads)
            out = {"cost": r.cost, "n_iter": r.n_iter, "err": r.marginal_error}
        elif solver == "pot":
            import ot

            M = ot.dist(x, y)
            P, log = ot.sinkhorn(a, a, M, EPS, stopThr=TOL / np.sqrt(n), numItermax=100000, log=True)
            err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum())
            out = {"cost": float((P * M).sum()), "n_iter": int(log["niter"]), "err": err}
        elif solver == "pot-log":
            import ot

            M = ot.dist(x, y)
            P, log = ot.bregman.sinkhorn_log(a, a, M, EPS, stopThr=TOL / np.sqrt(n), numItermax=100000, log=True)
            err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum())
            out = {"cost": float((P * M).sum()), "n_iter": int(log["niter"]), "err": err}
        elif solver == "geomloss":
            import torch
            from geomloss import SamplesLoss

            torch.set_num_threads(threads)
            X = torch.tensor(x)
            Y = torch.tensor(y)
            # GeomLoss: C = |x-y|^2 / 2 and eps = blur^2; ours: C = |x-y|^2, eps. Same plan when
            # blur^2 = EPS / 2; its "cost" is then half of ours (reported x2).
            loss = SamplesLoss(
                "sinkhorn", p=2, blur=np.sqrt(EPS / 2), scaling=0.9, backend="tensorized", debias=False, potentials=True
            )
            F, G = loss(X, Y)
            F, G = F.numpy().ravel(), G.numpy().ravel()
            C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
            P = a[:, None] * a[None, :] * np.exp((2 * F[:, None] + 2 * G[None, :] - C) / EPS)
            err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum())
            out = {"cost": float((P * C).sum()), "n_iter": -1, "err": err}
        else:
            raise ValueError(solver)
        out["seconds"] = time.perf_counter() - start
        out["cpu_seconds"] = time.process_time() - cpu_start
    out["peak_mb"] = peak_mb()
    out["base_mb"] = base
    return out


ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_child(spec: dict, timeout: float) -> dict | None:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    env = {**os.environ, **ONE_THREAD} if spec.get("threads") == 1 else dict(os.environ)
    if spec.get("pythonpath"):
        env["PYTHONPATH"] = spec["pythonpath"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- table


def machine() -> str:
    from threadpoolctl import threadpool_info

    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} thr)" for i in threadpool_info()
    )
    return f"{platform.processor() or platform.machine()}, nproc = {os.cpu_count()}, BLAS: {blas or 'none loaded'}"


def fmt(r: dict | None, key: str, f: str) -> str:
    if r is None or key not in r:
        return "—"
    return format(r[key], f)


def speed_table(
    n: int, repeats: int, cases: list[str], timeout: float, baseline: str | None = None, sor: bool = False
) -> None:
    """The one-thread goal of issue 13: lorainne vs POT ``ot.sinkhorn`` per data set, runs interleaved,
    best of ``repeats`` (wall and CPU time of the child process); with ``baseline`` (a directory to put
    first on PYTHONPATH, holding another build of lorainne) that build too, as "lorainne-baseline";
    "lorainne" is the default ``method="auto"``; beside it "lorainne-matrix" (``method="matrix"``, the
    stored float32 stabilized kernel) where auto picks the tree (2-D) and "lorainne-tree"
    (``method="hierarchical"``) where it picks the stored kernel (3-D);
    with ``sor`` also lorainne with over-relaxation and no multiscale start ("lorainne-sor", the
    previous algorithm)."""
    load = os.getloadavg()
    print(f"## speed: n = {n}, 1 thread, best of {repeats} interleaved runs per solver")
    print(f"# load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; CPU flags: {' '.join(cpu_flags())}")
    print()
    print(
        "| data | solver | wall (s) | CPU (s) | POT / lorainne (wall) | POT / lorainne (CPU) | iterations "
        "| marginal err | cost diff vs POT |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        best: dict[str, dict] = {}
        for _ in range(repeats):
            extra = (("lorainne-baseline",) if baseline else ()) + (("lorainne-sor",) if sor else ())
            other = "lorainne-tree" if case.endswith("3d") else "lorainne-matrix"
            for solver in ("lorainne", other, "pot") + extra:
                spec = {"n": n, "solver": solver, "threads": 1, "case": case}
                if solver == "lorainne-baseline":
                    spec.update(solver="lorainne", pythonpath=baseline)
                r = run_child(spec, timeout)
                if r and "seconds" in r:
                    old = best.get(solver)
                    if old is None or r["seconds"] < old["seconds"]:
                        best[solver] = {**r, "cpu_seconds": min(r["cpu_seconds"], (old or r)["cpu_seconds"])}
                else:
                    print(f"| {case} | {solver} | {r} | | | | | | |")
        pot = best.get("pot")
        for name, r in best.items():
            ratio_w = ratio_c = diff = ""
            if name.startswith("lorainne") and pot:
                ratio_w = f"**{pot['seconds'] / r['seconds']:.1f}x**"
                ratio_c = f"{pot['cpu_seconds'] / r['cpu_seconds']:.1f}x"
            if pot:
                diff = f"{abs(r['cost'] - pot['cost']) / pot['cost']:.1e}"
            print(
                f"| {case} | {name} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {ratio_w} | {ratio_c} | "
                f"{r['n_iter']} | {r['err']:.1e} | {diff} |"
            )
        sys.stdout.flush()
    load = os.getloadavg()
    print(f"\n# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child")
    p.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000, 10000, 20000])
    p.add_argument("--scaling", type=int, nargs="*", default=[10000, 30000, 100000, 300000])
    p.add_argument("--scaling-iters", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="*", default=[1])
    p.add_argument("--pot-max", type=int, default=10000, help="largest n for POT (its n x n matrices: 15.6 GB at 2e4)")
    p.add_argument("--pot-log-max", type=int, default=4000)
    p.add_argument("--plain-max", type=int, default=10000, help="largest n for lorainne without over-relaxation")
    p.add_argument("--dense-max", type=int, default=4000, help="largest n for lorainne's dense reference")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument(
        "--speed",
        nargs="*",
        choices=CASES,
        help="only the one-thread speed table (issue 13) for these data sets (none given: all)",
    )
    p.add_argument("--speed-n", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--baseline", help="directory holding another lorainne build, timed beside this one")
    p.add_argument("--sor", action="store_true", help="also time the over-relaxed solve without multiscale start")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.speed is not None:
        print(f"# command: python benches/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
        print(f"# machine: {machine()}")
        print(f"# eps = {EPS} (C = |x-y|^2), tol = {TOL} (L1 marginals; POT stopThr = tol/sqrt(n))")
        print()
        speed_table(args.speed_n, args.repeats, args.speed or list(CASES), args.timeout, args.baseline, args.sor)
        return
    try:
        import geomloss  # noqa: F401

        have_geomloss = True
    except Exception:
        have_geomloss = False
    print(f"# command: python benches/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
    print(f"# machine: {machine()}")
    print(f"# data: 2-D, x uniform, y 3-Gaussian mixture; eps = {EPS} (C = |x-y|^2), tol = {TOL} (L1 marginals)")
    if not have_geomloss:
        print("# GeomLoss: not installed (it needs PyTorch; no CPU wheel could be installed here) -- skipped")
    print()
    print("| n | threads | solver | time (s) | ours/peer | iterations | marginal err | cost diff | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        for n in args.sizes:
            runs: dict[str, dict | None] = {}
            runs["lorainne"] = run_child({"n": n, "solver": "lorainne", "threads": threads}, args.timeout)
            if n <= args.plain_max:
                runs["lorainne-plain"] = run_child(
                    {"n": n, "solver": "lorainne-plain", "threads": threads}, args.timeout
                )
            if n <= args.dense_max:
                runs["lorainne-dense"] = run_child(
                    {"n": n, "solver": "lorainne-dense", "threads": threads}, args.timeout
                )
            if n <= args.pot_max:
                runs["pot"] = run_child({"n": n, "solver": "pot", "threads": threads}, args.timeout)
            if n <= args.pot_log_max:
                runs["pot-log"] = run_child({"n": n, "solver": "pot-log", "threads": threads}, args.timeout)
            if have_geomloss and n <= args.pot_max:
                runs["geomloss"] = run_child({"n": n, "solver": "geomloss", "threads": threads}, args.timeout)
            ref = runs.get("lorainne-dense") or runs.get("pot")
            ours = runs["lorainne"]
            for name, r in runs.items():
                if r is None:
                    continue
                if "seconds" not in r:
                    print(f"| {n} | {threads} | {name} | {r} | | | | | |")
                    continue
                ratio = ours["seconds"] / r["seconds"] if name != "lorainne" and ours and "seconds" in ours else None
                diff = f"{abs(r['cost'] - ref['cost']) / ref['cost']:.1e}" if ref and "cost" in ref else "—"
                print(
                    f"| {n} | {threads} | {name} | {r['seconds']:.2f} | {'' if ratio is None else f'{ratio:.3f}'} | "
                    f"{r['n_iter'] if r['n_iter'] >= 0 else '—'} | {r['err']:.1e} | {diff} | {r['peak_mb']:.0f} |"
                )
            sys.stdout.flush()
    print()
    print(
        f"## scaling: {args.scaling_iters} Sinkhorn iterations at eps = {EPS} (no eps-scaling), hierarchical, 1 thread"
    )
    print()
    print("| n | s / iteration | peak MB |")
    print("|---|---|---|")
    pts = []
    for n in args.scaling:
        r = run_child({"n": n, "solver": "lorainne", "threads": 1, "iters": args.scaling_iters}, args.timeout)
        if r and "seconds" in r:
            per = r["seconds"] / max(r["n_iter"], 1)
            pts.append((n, per))
            print(f"| {n} | {per:.3f} | {r['peak_mb']:.0f} |")
        else:
            print(f"| {n} | {r} | |")
        sys.stdout.flush()
    if len(pts) >= 2:
        ln = np.log([p[0] for p in pts])
        lt = np.log([p[1] for p in pts])
        slope = np.polyfit(ln, lt, 1)[0]
        print(f"\nlog-log slope of time per iteration vs n: {slope:.2f}")


if __name__ == "__main__":
    main()
