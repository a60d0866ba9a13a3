"""Two checkouts' whole ``lorainne.complete`` side by side: a baseline package (e.g. main's
``python/`` folder with its compiled ``_core``) imported under another name and this checkout's,
called alternately in one process on the benchmark's problem (20000 x 10000, rank 20, 2% observed,
to a relative error of 1e-4 on 200,000 sampled entries), 1 thread, CPU time without the probe.

    PYTHONPATH=python OMP_NUM_THREADS=1 python benches/bench_completion_ab.py --baseline /work/main/python

Where ``bench_completion_kernels.py`` compares single kernel calls, this compares the whole call:
building the observations, the spectral start, the alternating iterations. Alternating the two in one
process makes the ratio robust to the load of a shared machine; the paired median (of the ratios of
consecutive calls) is the least sensitive to it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from bench_completion import planted, rel_error
from lorainne.completion import complete


def load_baseline(python_dir: str):
    """The package ``python_dir/lorainne`` imported as ``lorainne_baseline`` (its imports are relative)."""
    link_dir = tempfile.mkdtemp(prefix="lorainne-baseline-")
    os.symlink(os.path.join(os.path.abspath(python_dir), "lorainne"), os.path.join(link_dir, "lorainne_baseline"))
    sys.path.insert(0, link_dir)
    return importlib.import_module("lorainne_baseline.completion").complete


def timed_run(fn, S, probe, target=1e-4):
    """CPU seconds of one call to the target (the callback's probe evaluation excluded), error, iterations."""
    hit, t_probe = {}, [0.0]

    def cb(state, _):
        start = time.process_time()
        hit["err"], hit["it"] = rel_error(state.predict, probe), state.iteration
        t_probe[0] += time.process_time() - start
        return hit["err"] <= target

    start = time.process_time()
    fn(S, 20, solver="cg", n_iter_max=60, tol=0.0, callback=cb, random_state=0, n_threads=1)
    return time.process_time() - start - t_probe[0], hit["err"], hit["it"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--baseline", required=True, help="the baseline checkout's python/ folder")
    p.add_argument("--repeats", type=int, default=8)
    opts = p.parse_args()
    impls = {"baseline": load_baseline(opts.baseline), "this checkout": complete}
    S, probe, _, _ = planted(20000, 10000, 20, 0.02)
    load_before = os.getloadavg()[:3]
    runs: dict = {name: [] for name in impls}
    with threadpool_limits(1):
        for fn in impls.values():
            timed_run(fn, S, probe)  # warm-up: imports, the rayon pool, page faults
        for _ in range(opts.repeats):
            for name, fn in impls.items():
                runs[name].append(timed_run(fn, S, probe))
    print(f"load average before {load_before}, after {os.getloadavg()[:3]}; {opts.repeats} rounds, CPU s, 1 thread")
    print("| checkout | min | median | rel. error reached | iterations |\n|---|---|---|---|---|")
    for name, r in runs.items():
        t = np.array([x[0] for x in r])
        print(f"| {name} | {t.min():.3f} | {np.median(t):.3f} | {r[-1][1]:.2e} | {r[-1][2]} |")
    b, n = (np.array([x[0] for x in runs[k]]) for k in impls)
    print(
        f"speed-up of this checkout: {b.min() / n.min():.3f}x (min), {np.median(b) / np.median(n):.3f}x (median), "
        f"{np.median(b / n):.3f}x (paired median)"
    )


if __name__ == "__main__":
    main()
