"""Randomized SVD and tall-skinny QR against scikit-learn, fbpca, torch and LAPACK.

    python benches/bench_randomized.py            # full sizes (a few minutes)
    python benches/bench_randomized.py --quick    # small sizes, a smoke test

Every library runs single-threaded (threadpoolctl for BLAS, n_threads=1 for lorainne) on the same
matrices in the same process. Matrices have a known spectrum (A = U diag(s) V^T with s_i = 1/(i+1)),
so the optimal rank-k error is exact: sqrt(sum_{i>=k} s_i^2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
import lorainne  # noqa: E402
from _common import best_time, git_revision, machine, markdown_table  # noqa: E402

RANK, OVERSAMPLES, POWER_ITER = 50, 10, 2


def planted(rng, m, n, dtype):
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = 1.0 / (1.0 + np.arange(k))
    return np.ascontiguousarray(((U * s) @ V.T).astype(dtype)), s


def frobenius_error(A, U, S, Vt):
    A64 = A.astype(np.float64, copy=False)
    return np.linalg.norm(A64 - (U.astype(np.float64) * S.astype(np.float64)) @ Vt.astype(np.float64))


def svd_contenders():
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    contenders = {
        "lorainne": lambda A: lorainne.randomized_svd(
            A, RANK, n_oversamples=OVERSAMPLES, n_power_iter=POWER_ITER, random_state=0, n_threads=1
        ),
        "scikit-learn": lambda A: sk_rsvd(A, RANK, n_oversamples=OVERSAMPLES, n_iter=POWER_ITER, random_state=0),
    }
    if importlib.util.find_spec("fbpca"):
        import fbpca

        contenders["fbpca"] = lambda A: fbpca.pca(A, k=RANK, raw=True, n_iter=POWER_ITER, l=RANK + OVERSAMPLES)
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(1)

        def torch_svd(A):
            U, S, V = torch.svd_lowrank(torch.from_numpy(A), q=RANK + OVERSAMPLES, niter=POWER_ITER)
            return U[:, :RANK].numpy(), S[:RANK].numpy(), V[:, :RANK].T.numpy()

        contenders["torch.svd_lowrank"] = torch_svd
    return contenders


def bench_svd(shapes, dtypes, full_svd: bool, repeats: int):
    rng = np.random.default_rng(0)
    rows = []
    contenders = svd_contenders()
    for m, n in shapes:
        for dtype in dtypes:
            A, s = planted(rng, m, n, dtype)
            optimal = np.sqrt(np.sum(s[RANK:] ** 2))
            results = {}
            for name, run in contenders.items():
                seconds, (U, S, Vt) = best_time(lambda: run(A), repeats)
                results[name] = (seconds, frobenius_error(A, U, S, Vt) / optimal)
            if full_svd:
                seconds, (U, S, Vt) = best_time(lambda: scipy.linalg.svd(A, full_matrices=False), 1)
                results["scipy.linalg.svd (full)"] = (
                    seconds,
                    frobenius_error(A, U[:, :RANK], S[:RANK], Vt[:RANK]) / optimal,
                )
            ours = results["lorainne"][0]
            for name, (seconds, ratio) in results.items():
                rows.append(
                    [f"{m}x{n}", np.dtype(dtype).name, name, f"{seconds:.3f}", f"{seconds / ours:.2f}", f"{ratio:.4f}"]
                )
            flops = 2 * m * n * (RANK + OVERSAMPLES) * (2 + 2 * POWER_ITER)
            rows.append(
                [
                    f"{m}x{n}",
                    np.dtype(dtype).name,
                    "floor: matmul flops at peak GEMM rate",
                    f"{flops / PEAK[np.dtype(dtype).name]:.3f}",
                    "",
                    "",
                ]
            )
    return rows


def bench_qr(shapes, dtypes, repeats: int):
    rng = np.random.default_rng(1)
    rows = []
    for m, n in shapes:
        for dtype in dtypes:
            A = rng.standard_normal((m, n)).astype(dtype)
            contenders = {
                "numpy.linalg.qr": lambda: np.linalg.qr(A),
                "scipy.linalg.qr (economic)": lambda: scipy.linalg.qr(A, mode="economic", check_finite=False),
                "lorainne.householder_qr": lambda: lorainne.householder_qr(A, n_threads=1),
                "lorainne.cholesky_qr2": lambda: lorainne.cholesky_qr2(A, n_threads=1),
            }
            times = {}
            for name, run in contenders.items():
                seconds, (Q, R) = best_time(run, repeats)
                Q64 = Q.astype(np.float64)
                orth = np.linalg.norm(Q64.T @ Q64 - np.eye(n))
                resid = np.linalg.norm(Q64 @ R.astype(np.float64) - A) / np.linalg.norm(A)
                times[name] = (seconds, orth, resid)
            base = times["numpy.linalg.qr"][0]
            for name, (seconds, orth, resid) in times.items():
                rows.append(
                    [
                        f"{m}x{n}",
                        np.dtype(dtype).name,
                        name,
                        f"{seconds * 1e3:.1f}",
                        f"{seconds / base:.2f}",
                        f"{orth:.1e}",
                        f"{resid:.1e}",
                    ]
                )
            flops = 4 * m * n * n  # Householder: 2mn^2 - 2n^3/3 to factor, as much again to form Q
            rows.append(
                [
                    f"{m}x{n}",
                    np.dtype(dtype).name,
                    "floor: 4mn^2 flops at peak GEMM rate",
                    f"{flops / PEAK[np.dtype(dtype).name] * 1e3:.1f}",
                    "",
                    "",
                    "",
                ]
            )
    return rows


PEAK: dict[str, float] = {}


def measure_peak():
    """Single-thread GEMM rate (flop/s): the best of NumPy's BLAS and lorainne's faer kernel on a
    2000^3 product (what the hardware sustains in practice)."""
    from lorainne import _core

    for dtype in (np.float32, np.float64):
        A = np.random.default_rng(2).standard_normal((2000, 2000)).astype(dtype)
        blas, _ = best_time(lambda: A @ A, 3)
        faer, _ = best_time(lambda: _core.matmul(A, A, 1), 3)
        PEAK[np.dtype(dtype).name] = 2 * 2000**3 / min(blas, faer)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--no-full-svd", action="store_true", help="skip scipy.linalg.svd (slow)")
    parser.add_argument("--output", help="write the markdown report here")
    args = parser.parse_args()
    svd_shapes = [(800, 800), (4000, 400)] if args.quick else [(4000, 4000), (20000, 2000)]
    qr_shapes = [(4000, 100)] if args.quick else [(20000, 100), (20000, 60)]
    dtypes = [np.float64, np.float32]
    with threadpool_limits(1):
        measure_peak()
        svd_rows = bench_svd(svd_shapes, dtypes, not args.no_full_svd, repeats=1 if args.quick else 3)
        qr_rows = bench_qr(qr_shapes, dtypes, repeats=3 if args.quick else 7)
    command = (
        "python benches/bench_randomized.py"
        + (" --quick" if args.quick else "")
        + (" --no-full-svd" if args.no_full_svd else "")
    )
    report = "\n\n".join(
        [
            "## Randomized SVD (rank 50, 10 oversamples, 2 power iterations, 1 thread)",
            f"Machine: {machine()}. Peak GEMM measured: {PEAK['float64'] / 1e9:.1f} GFLOP/s (float64), "
            f"{PEAK['float32'] / 1e9:.1f} GFLOP/s (float32). Commit {git_revision()}. Command: `{command}`.",
            "Spectrum s_i = 1/(i+1); `error/optimal` = ||A - U S Vt||_F / sqrt(sum_{i>=50} "
            "s_i^2); `ratio` = time / lorainne's time (above 1: slower than lorainne).",
            markdown_table(["shape", "dtype", "method", "time (s)", "ratio", "error/optimal"], svd_rows),
            "## Tall-skinny QR (1 thread)",
            "`ratio` = time / numpy.linalg.qr's time (below 1: faster than NumPy).",
            markdown_table(
                ["shape", "dtype", "method", "time (ms)", "ratio", "||QtQ-I||_F", "||QR-A||/||A||"], qr_rows
            ),
        ]
    )
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


if __name__ == "__main__":
    main()
