"""Block Krylov on matrices whose Krylov space runs out: how many random trials fail.

The matrices: a graded control (s_i ~ i^-d, d in [0, 2)), one giant entry (2^40-2^400 above the rest),
rank one, three columns 1e150 above the rest, one nonzero entry; m in [20, 120), n in [10, 80), rank
k in [1, min(m, n) / 2], depths 0, 1 and 3, backends "auto" (Rust kernels) and "numpy" (the xp
reference). A trial fails when U^T U - I exceeds 1e-10, S[0] exceeds s_1, or the spectral error exceeds
max(1.5 s_{k+1} + 1e3 eps s_1, 2 s_{k+1}); an exception (a RuntimeWarning made an error included) counts
apart. ``svd_certified`` (rank and tol = 1e-2) is swept the same way, its error bound checked too.

Run: ``PYTHONPATH=python python benches/bench_krylov_exhausted.py`` (~1 min). Numbers in
``benches/RESULTS_randomized.md``.
"""

from __future__ import annotations

import warnings

import numpy as np

from lorainne import ConvergenceWarning, randomized_svd
from lorainne.randomized import svd_certified

KINDS = ("giant entry", "rank one", "giant columns", "one entry", "graded")


def matrix(rng, kind: str):
    m, n = int(rng.integers(20, 120)), int(rng.integers(10, 80))
    A = rng.standard_normal((m, n)) * (1.0 + np.arange(n)) ** -rng.uniform(0, 2)
    if kind == "giant entry":
        A[rng.integers(m), rng.integers(n)] = 2.0 ** int(rng.integers(40, 400))
    elif kind == "rank one":
        A = np.outer(rng.standard_normal(m), rng.standard_normal(n))
    elif kind == "giant columns":
        A[:, :3] *= 1e150
    elif kind == "one entry":
        A = np.zeros((m, n))
        A[0, 0] = 1.0
    return A


def failed(A, U, S, Vt, k: int, s) -> bool:
    error = np.linalg.norm(A - (U * S) @ Vt, 2)
    optimal = s[k] if k < len(s) else 0.0
    far = error > 1.5 * optimal + 1e3 * np.finfo(np.float64).eps * s[0] and error > 2 * optimal
    return bool(np.max(np.abs(U.T @ U - np.eye(len(S)))) > 1e-10 or S[0] > s[0] * (1 + 1e-12) or far)


def sweep_randomized_svd(trials: int = 150) -> dict:
    counts = {"trials": 0, "failed": 0, "raised": 0}
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        A = matrix(rng, KINDS[seed % len(KINDS)])
        s = np.linalg.svd(A, compute_uv=False)
        for backend in ("auto", "numpy"):
            for depth in (0, 1, 3):
                k = int(rng.integers(1, min(A.shape) // 2 + 1))
                counts["trials"] += 1
                try:
                    U, S, Vt = randomized_svd(
                        A, k, n_power_iter=depth, method="block_krylov", random_state=seed, backend=backend
                    )
                except Exception:  # noqa: BLE001 - counted, the point of the sweep
                    counts["raised"] += 1
                    continue
                counts["failed"] += failed(A, U, S, Vt, k, s)
    return counts


def sweep_certified(trials: int = 80) -> dict:
    counts = {"trials": 0, "failed": 0, "raised": 0}
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        A = matrix(rng, KINDS[seed % 4])
        s = np.linalg.svd(A, compute_uv=False)
        for kwargs in ({"rank": int(rng.integers(1, min(A.shape) // 2 + 1))}, {"tol": 1e-2}):
            counts["trials"] += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=ConvergenceWarning)  # reported, not a failure
                    res = svd_certified(A, random_state=seed, **kwargs)
            except Exception:  # noqa: BLE001
                counts["raised"] += 1
                continue
            error = np.linalg.norm(A - (res.U * res.S) @ res.Vt)
            orthonormal = np.max(np.abs(res.U.T @ res.U - np.eye(len(res.S)))) <= 1e-10
            counts["failed"] += not (orthonormal and res.S[0] <= s[0] * (1 + 1e-12) and res.error_bound >= error)
    return counts


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        print("randomized_svd(method='block_krylov'):", sweep_randomized_svd())
        print("svd_certified:", sweep_certified())


if __name__ == "__main__":
    main()
