"""Two versions of lorainne in one process, every call interleaved: block Krylov at the tuned (q, b)
of ``bench_randomized.py --krylov-tuned``, subspace iteration at its tuned depth, scikit-learn's
randomized_svd at its tuned n_iter, on the same four matrices. On a shared machine a contender's best
time moves by up to 2x between runs; within one process, interleaved, the two versions see the same
load, so their ratio is the change.

    git archive REV python | tar -x -C /tmp/old                  # the older version's Python
    cp python/lorainne/_core*.so /tmp/old/python/lorainne/        # today's module serves both
    mv /tmp/old/python/lorainne /tmp/old/lorainne_old
    PYTHONPATH=python python benches/bench_randomized_versions.py /tmp/old --repeats 21

The older package must only call functions today's compiled module still has.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import lorainne

sys.path.insert(0, str(Path(__file__).parent))
from bench_randomized import equal_accuracy_matrices  # noqa: E402

# (block Krylov (q, b), subspace (q, b), scikit-learn (n_iter, b)) per matrix, as chosen by --krylov-tuned.
TUNED = {
    "planted 2000x1000, s_i = i^-0.5": [((2, 55), (8, 60), (4, 60))],
    "planted 2000x1000, s_i = i^-1": [((2, 50), (3, 60), (4, 60)), ((1, 80), (3, 60), (4, 60))],
    "sample images 854x1920 (pixel rows)": [((1, 70), (3, 60), (4, 60))],
    "digits 1797x64": [((0, 64), (1, 20), (1, 20))],
}


def compare(old, repeats: int) -> list[str]:
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    lines = []
    for name, A, s in equal_accuracy_matrices(False):
        k = 10 if A.shape[1] < 100 else 50
        for bk, sub, skc in TUNED[name]:
            fns = {}
            for label, lib in (("new", lorainne), ("old", old)):
                for key, method, (q, b) in (("bk", "block_krylov", bk), ("sub", "subspace", sub)):
                    fns[f"{key} {label}"] = lambda lib=lib, method=method, q=q, b=b: lib.randomized_svd(
                        A, k, n_oversamples=b - k, n_power_iter=q, method=method, random_state=0, n_threads=1
                    )
            fns["sk"] = lambda: sk_rsvd(A, k, n_oversamples=skc[1] - k, n_iter=skc[0], random_state=0)
            best = dict.fromkeys(fns, float("inf"))
            for _ in range(repeats):
                for key, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    best[key] = min(best[key], time.perf_counter() - start)
            errors = {}
            for label in ("new", "old"):
                U, S, Vt = fns[f"bk {label}"]()
                errors[label] = np.linalg.norm(A - (U * S) @ Vt, 2) / s[k]
            b = best
            lines.append(
                f"{name} (q, b) = {bk}: block Krylov new {b['bk new'] * 1e3:.2f} ms, old {b['bk old'] * 1e3:.2f} ms "
                f"(new / old {b['bk new'] / b['bk old']:.3f}); subspace new {b['sub new'] * 1e3:.2f}, "
                f"old {b['sub old'] * 1e3:.2f}; scikit-learn {b['sk'] * 1e3:.2f} ms | time / subspace: "
                f"new {b['bk new'] / b['sub new']:.3f}, old {b['bk old'] / b['sub old']:.3f} | scikit-learn / "
                f"block Krylov: new {b['sk'] / b['bk new']:.2f}, old {b['sk'] / b['bk old']:.2f} | error/optimal "
                f"new {errors['new']:.5f}, old {errors['old']:.5f}"
            )
            print(lines[-1], flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="folder holding the older version as package lorainne_old")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, args.old)
    old = importlib.import_module("lorainne_old")
    with threadpool_limits(1):
        compare(old, args.repeats)


if __name__ == "__main__":
    main()
