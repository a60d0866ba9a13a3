"""Where the time of one `lorainne.sinkhorn` solve goes: a timing callback in one process.

Usage::

    PYTHONPATH=python python benches/bench_ot_phases.py --case mixture-3d --method matrix

Prints, per iteration, the seconds since the previous callback (or since the call for the first),
the stage's eps and the measured marginal error, then the time from the last callback to the
return (the projection, the objective and the way out). One thread (``n_threads=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_flags  # noqa: E402
from bench_ot import EPS, TOL, data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="mixture-3d")
    p.add_argument("--method", default="matrix")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    from lorainne import sinkhorn

    x, y = data(args.n, case=args.case)
    print(f"# {args.case}, n = {args.n}, method={args.method!r}, load {os.getloadavg()[0]:.2f}, flags {cpu_flags()}")
    for _ in range(args.repeats):
        marks = []

        def cb(state, err, marks=marks):
            marks.append((time.perf_counter(), state["eps"], err))
            return False

        t0 = time.perf_counter()
        res = sinkhorn(x, y, eps=EPS, tol=TOL, method=args.method, n_threads=1, callback=cb)
        t1 = time.perf_counter()
        prev = t0
        for k, (t, e, err) in enumerate(marks, 1):
            print(f"  it {k:3d}  eps {e:9.3g}  err {err:9.2e}  {t - prev:7.3f} s")
            prev = t
        print(f"  after the last iteration: {t1 - prev:.3f} s")
        summary = f"{res.n_iter} iterations, err {res.marginal_error:.2e}, cost {float(res.cost):.10g}"
        print(f"  total {t1 - t0:.2f} s, {summary}, method {res.problem.method!r}")


if __name__ == "__main__":
    main()
