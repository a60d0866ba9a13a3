"""Two builds of the completion kernels side by side: a baseline ``_core`` (e.g. main's) and this
checkout's, loaded into one process and called alternately on the benchmark's data (20000 x 10000, rank
20, 2% observed), 1 thread, best CPU time of ``--repeats`` rounds per call.

    PYTHONPATH=python OMP_NUM_THREADS=1 python benches/bench_completion_kernels.py \\
        --baseline /work/main/python/lorainne/_core.cpython-311-x86_64-linux-gnu.so

Calls: one column and one row half-step (gather only, ``cg_max_iter=0``; and gather + 2 CG steps) and the
spectral start's two products with 30 columns (this checkout's with its f32 gathers, ``low_precision=True``,
when its build has them). Each build reads the index type it takes: int32 as SciPy stores them where
the build accepts them (``completion_transpose`` present), int64 copies otherwise. Interleaving in one
process makes the ratio robust to the load of a shared machine, which moves both builds' times together.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import time

import numpy as np

from bench_completion import planted
from lorainne import _backend
from lorainne.completion._observed import as_observed


def load_core(path):
    loader = importlib.machinery.ExtensionFileLoader("lorainne._core", path)
    spec = importlib.util.spec_from_file_location("lorainne._core", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def has_low_precision(core) -> bool:
    """Whether the build's CSR product takes ``low_precision`` (its f32 gathers)."""
    return "low_precision" in (core.completion_csr_product.__text_signature__ or "")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--baseline", required=True, help="path of the baseline build's _core extension")
    p.add_argument("--repeats", type=int, default=15)
    opts = p.parse_args()
    builds = {"baseline": load_core(opts.baseline), "this checkout": _backend.core()}
    S, _, U0, V0 = planted(20000, 10000, 20, 0.02)
    obs = as_observed(S)
    rng = np.random.default_rng(1)
    U, V = rng.standard_normal(U0.shape), rng.standard_normal(V0.shape)
    X, Y = rng.standard_normal((10000, 30)), rng.standard_normal((20000, 30))

    def sides(core):
        def idx(a):
            return a if hasattr(core, "completion_transpose") else a.astype(np.int64)

        return {
            "column half-step": (obs.t_indptr, idx(obs.t_indices), obs.t_data, U, V),
            "row half-step": (obs.indptr, idx(obs.indices), obs.data, V, U),
        }

    best: dict = {}

    def timed(key, fn):
        start = time.process_time()
        fn()
        best[key] = min(best.get(key, np.inf), time.process_time() - start)

    load_before = os.getloadavg()[:3]
    for _ in range(opts.repeats):
        for name, core in builds.items():
            structure = sides(core)
            for side, (indptr, indices, data, F, x) in structure.items():
                lam, q = np.linalg.eigh(F.T @ F / F.shape[0])
                q = np.ascontiguousarray(q)
                for steps in (0, 2):
                    args = (indptr, indices, data, F, x, 0.0, 1e-3, "cg", steps, 1e-14, q, lam)
                    timed(
                        (f"{side}, gather + {steps} CG steps", name),
                        lambda args=args, core=core: core.completion_solve_rows(*args, n_threads=1),
                    )
            kw = {"n_threads": 1}
            if has_low_precision(core):
                kw["low_precision"] = True
            timed(("product A X", name), lambda: core.completion_csr_product(*structure["row half-step"][:3], X, **kw))
            timed(
                ("product A^T Y", name),
                lambda: core.completion_csr_product(*structure["column half-step"][:3], Y, **kw),
            )
    print(f"load average before {load_before}, after {os.getloadavg()[:3]}; best of {opts.repeats}, CPU s, 1 thread")
    print("| call | baseline | this checkout | ratio |\n|---|---|---|---|")
    for call in dict.fromkeys(k[0] for k in best):
        b, n = best[(call, "baseline")], best[(call, "this checkout")]
        print(f"| {call} | {b:.4f} | {n:.4f} | {b / n:.2f}x |")


if __name__ == "__main__":
    main()
