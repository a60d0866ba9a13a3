"""Iterations and kernel applications of one ``sinkhorn`` solve at n = 1e4 (issue 13's speed data).

Usage::

    python benches/bench_ot_applications.py mixture-2d uniform-2d mixture-3d

For each data set of ``bench_ot.py`` and each algorithm (the defaults: Anderson mixing with the
multiscale warm start; Anderson on the full clouds; over-relaxation on the full clouds, the
algorithm before), the applications are reconstructed from the iteration trace (the callback's eps
and marginal error) by the rules of ``Chain::step`` in rust/core/src/ot/sinkhorn.rs: one per chain
start, two per iteration, two more when a loose-kernel measurement is measured again at full
accuracy (this build's rule: only when the error could be within tol; the rule before it measured
again whenever the error fell 3x in a step), one for the multiscale extension, one for the
objective. Coarse-cloud applications (stages before the last with ``multiscale``) are counted apart.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ot import CASES, EPS, TOL, data  # noqa: E402

ALGORITHMS = {
    "anderson+multiscale": {},
    "anderson": {"multiscale": False},
    "overrelaxation": {"multiscale": False, "acceleration": "overrelaxation"},
}
KERNEL_TOL = TOL / 10  # sinkhorn's default


def count(case: str, options: dict, n: int = 10_000) -> tuple[int, int, int]:
    """(iterations, full-cloud applications, coarse-cloud applications) of one solve."""
    from lorainne import sinkhorn

    x, y = data(n, case=case)
    trace: list[tuple[float, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sinkhorn(
            x, y, eps=EPS, tol=TOL, method="hierarchical", n_threads=1,
            callback=lambda state, err: trace.append((state["eps"], err)) and False, **options,
        )  # fmt: skip
    multiscale = options.get("multiscale", True)
    full = coarse = 0
    prev_eps, prev_err = None, math.inf
    for k, (e, err) in enumerate(trace):
        final, start = e == EPS, e != prev_eps
        apps = 2 + (1 if start else 0)
        if start:
            prev_err = math.inf
        if k > 0 and start and final and multiscale:
            apps += 1  # g = G(f_coarse) on the full clouds
        if final:  # measured again at full accuracy (Chain::step)
            loose = min(1e-2 * prev_err, 1e-3)
            if loose > KERNEL_TOL and err <= 30 * loose and err <= TOL + 4 * loose * (1 + err):
                apps += 2
        if final or not multiscale:
            full += apps
        else:
            coarse += apps
        prev_eps, prev_err = e, err
    return res.n_iter, full + 1, coarse  # + the objective


def main() -> None:
    cases = sys.argv[1:] or list(CASES)
    print("| data | algorithm | iterations | full-n applications | coarse applications |")
    print("|---|---|---|---|---|")
    for case in cases:
        for name, options in ALGORITHMS.items():
            iters, full, coarse = count(case, options)
            print(f"| {case} | {name} | {iters} | {full} | {coarse} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
