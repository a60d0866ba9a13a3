"""lorainne.compress against exact NumPy SVDs, one thread everywhere.

1. One n x n layer with an activation covariance from 20,000 samples: svd-llm with lorainne's
   randomized solver against ``numpy.linalg.svd`` of W S (S the Cholesky factor of X X^T), time,
   data loss and peak memory (tracemalloc: NumPy buffers; the Rust kernel's O(n (r + p)) sketch
   buffers are not traced).
2. A stack of random (out, in) layers with decaying spectra: ``compress_state_dict`` at budget 0.5
   end to end (global allocation, break-even rule) against a layer-by-layer NumPy SVD at the
   uniform rank that spends the same budget; time, memory and total squared weight error.

Run: python benches/bench_compress.py [--n 2048] [--layers 24] [--out benches/RESULTS_compress.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_flags, markdown_table  # noqa: E402
from lorainne.compress import compress_state_dict, low_rank  # noqa: E402


def measured(fn):
    """(seconds, peak traced MB, result)."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def decaying_matrix(rng, m, n, power=0.6):
    """A Gaussian matrix with singular values decaying like i^-power (approximately)."""
    k = min(m, n)
    return (rng.standard_normal((m, k)) * np.arange(1, k + 1) ** -power) @ rng.standard_normal((k, n)) / np.sqrt(n)


def single_layer(n: int, samples: int, rank: int, rng, power_iter: int):
    W = decaying_matrix(rng, n, n)
    scales = np.exp(rng.standard_normal(n))  # lognormal channel scales: a few outlier channels
    Z = rng.standard_normal((samples, n)) * scales
    C = Z.T @ Z
    del Z

    def exact():
        S = np.linalg.cholesky(C)
        M = W @ S
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        B = scipy.linalg.solve_triangular(S, (s[:rank, None] * Vt[:rank]).T, trans="T", lower=True).T
        return U[:, :rank] @ B, float(np.sqrt(np.sum(s[rank:] ** 2)))

    t_exact, mem_exact, (_, loss_exact) = measured(exact)
    t_fast, mem_fast, f = measured(
        lambda: low_rank(
            W,
            rank,
            method="svd-llm",
            covariance=C,
            solver="randomized",
            n_power_iter=power_iter,
            random_state=0,
            n_threads=1,
        )
    )
    t_plain, _, plain = measured(
        lambda: low_rank(
            W,
            rank,
            method="svd",
            covariance=C,
            solver="randomized",
            n_power_iter=power_iter,
            random_state=0,
            n_threads=1,
        )
    )
    problem = f"{n}x{n}, C from {samples} samples, rank {rank}"
    return [
        [
            problem,
            f"svd-llm, lorainne randomized (Rust, {power_iter} power iterations)",
            f"{t_fast:.2f}",
            f"{t_exact / t_fast:.1f}x",
            f"{f.data_error:.6g} ({f.data_error / loss_exact - 1:+.3%})",
            f"{mem_fast:.0f}",
        ],
        [
            problem,
            "svd-llm, numpy.linalg.svd of W S",
            f"{t_exact:.2f}",
            "1",
            f"{loss_exact:.6g} (optimum)",
            f"{mem_exact:.0f}",
        ],
        [
            problem,
            "plain svd, lorainne randomized",
            f"{t_plain:.2f}",
            f"{t_exact / t_plain:.1f}x",
            f"{plain.data_error:.6g} ({plain.data_error / loss_exact - 1:+.1%})",
            "-",
        ],
    ]


def stack(n_layers: int, out: int, n_in: int, rng):
    tensors = {
        f"layers.{i}.weight": decaying_matrix(rng, out, n_in, power=rng.uniform(0.3, 1.0)) for i in range(n_layers)
    }
    t_ours, mem_ours, result = measured(
        lambda: compress_state_dict(tensors, 0.5, method="svd", random_state=0, n_threads=1)
    )
    ours_error = sum((row.weight_error * np.linalg.norm(tensors[row.name])) ** 2 for row in result.report.rows)
    uniform = int(0.5 * out * n_in / (out + n_in))

    def numpy_layerwise():
        total, factors = 0.0, {}
        for name, W in tensors.items():
            U, s, Vt = np.linalg.svd(W, full_matrices=False)
            factors[name] = (U[:, :uniform] * s[:uniform], Vt[:uniform])
            total += float(np.sum(s[uniform:] ** 2))
        return total

    t_np, mem_np, np_error = measured(numpy_layerwise)
    ranks = [row.rank for row in result.report.rows]
    shown = [r for r in ranks if r is not None]
    problem = f"{n_layers} layers {out}x{n_in}, budget 0.5"
    return [
        [
            problem,
            f"compress_state_dict (global, ranks {min(shown)}..{max(shown)}, {ranks.count(None)} dense)",
            f"{t_ours:.2f}",
            f"{t_np / t_ours:.2f}x",
            f"sum err^2 {ours_error:.5g}",
            f"{mem_ours:.0f}",
        ],
        [
            problem,
            f"NumPy SVD layer by layer, uniform rank {uniform}",
            f"{t_np:.2f}",
            "1",
            f"sum err^2 {np_error:.5g}",
            f"{mem_np:.0f}",
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048, help="single layer size (the issue names 4096)")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--power-iter", type=int, default=4, help="power iterations of the randomized SVD (default 4)")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument(
        "--stack-shape", default="512x2048", help="out x in of each stacked layer (the issue names 1024x4096)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out, n_in = (int(v) for v in args.stack_shape.split("x"))
    with threadpool_limits(1):
        rows = single_layer(args.n, args.samples, args.n // 8, rng, args.power_iter)
        rows += stack(args.layers, out, n_in, rng)
    table = markdown_table(
        ["problem", "method", "seconds", "speed-up vs NumPy", "data / weight error", "peak MB (traced)"], rows
    )
    flags = " ".join(cpu_flags())
    command = "python benches/bench_compress.py " + " ".join(sys.argv[1:])
    text = (
        "# lorainne.compress vs exact NumPy SVDs\n\n"
        f"- command: `{command}`\n- machine: {platform.machine()}, nproc {os.cpu_count()}, CPU flags: {flags}; "
        f"load average {os.getloadavg()[0]:.1f} (shared machine)\n"
        "- threads pinned to 1 (threadpoolctl for BLAS; n_threads=1 for the Rust kernels)\n\n" + table + "\n"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
