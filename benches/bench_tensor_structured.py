"""Structured tensor models vs tensorly: PARAFAC2 time per iteration, CMTF time per sweep.

Same start for both libraries, fixed iterations (tol=0), one thread (threadpoolctl + n_threads=1).
The iterates are the same (PARAFAC2 with tensorly's n_iter_parafac=1, linesearch=False; CMTF with
tensorly's own "svd" start handed to lorainne), so the fits after equal iterations are compared.

    PYTHONPATH=python python benches/bench_tensor_structured.py --out benches/RESULTS_tensor_structured.md
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import lorainne
from _common import cpu_flags, git_revision, machine, markdown_table


def per_iteration(fns: dict, short: int, long: int, repeats: int) -> dict:
    """Per library and clock ("cpu": the process's CPU time, "wall"): ((time of ``long`` iterations
    - time of ``short``) / (long - short), time of ``long``), best of ``repeats``, the libraries'
    runs interleaved so that load changes hit both. Both libraries run on one thread, so CPU time
    is their work without the waits of a shared machine; wall time is what a user sees.
    """
    best = {(clock, name, n): float("inf") for clock in ("cpu", "wall") for name in fns for n in (short, long)}
    for _ in range(repeats):
        for name, fn in fns.items():
            for n in (short, long):
                cpu, wall = time.process_time(), time.perf_counter()
                fn(n)
                best["cpu", name, n] = min(best["cpu", name, n], time.process_time() - cpu)
                best["wall", name, n] = min(best["wall", name, n], time.perf_counter() - wall)
    return {
        (clock, name): ((best[clock, name, long] - best[clock, name, short]) / (long - short), best[clock, name, long])
        for clock in ("cpu", "wall")
        for name in fns
    }


def table_rows(name: str, labels: tuple[str, str], times: dict, accuracies: tuple[str, str]) -> list[list[str]]:
    """Our row and the peer's, with the peer / ours ratios."""
    out = []
    for who, label, accuracy in zip(("ours", "theirs"), labels, accuracies, strict=True):
        cells = [name, label]
        for clock, part in (("cpu", 0), ("wall", 0), ("cpu", 1)):
            value = times[clock, who][part]
            ratio = "" if who == "ours" else f"{value / times[clock, 'ours'][part]:.1f}x"
            cells += [f"{1e3 * value:.1f}", ratio]
        out.append([*cells, accuracy])
    return out


def bench_parafac2(K, J, low, high, rank, short, long, repeats, rows):
    import tensorly as tl
    from tensorly.decomposition import parafac2 as tl_parafac2
    from tensorly.parafac2_tensor import Parafac2Tensor

    rng = np.random.default_rng(0)
    sizes = rng.integers(low, high + 1, K)
    A, B, C = rng.uniform(0.5, 1.5, (K, rank)), rng.standard_normal((rank, rank)), rng.standard_normal((J, rank))
    slices = []
    for k, n in enumerate(sizes):
        P = np.linalg.qr(rng.standard_normal((n, rank)))[0]
        clean = P @ B @ np.diag(A[k]) @ C.T
        slices.append(clean + 0.05 * np.linalg.norm(clean) / np.sqrt(clean.size) * rng.standard_normal(clean.shape))
    start = [rng.uniform(0.5, 1.5, (K, rank)), rng.standard_normal((rank, rank)), rng.standard_normal((J, rank))]

    def ours(n):
        return lorainne.parafac2(slices, rank, init=(np.ones(rank), start), n_iter_max=n, tol=0, n_threads=1)

    def theirs(n):
        init = Parafac2Tensor((np.ones(rank), [f.copy() for f in start], [np.eye(s.shape[0], rank) for s in slices]))
        return tl_parafac2(slices, rank, init=init, n_iter_max=n, tol=0, n_iter_parafac=1, linesearch=False)

    times = per_iteration({"ours": ours, "theirs": theirs}, short, long, repeats)
    a, b = ours(long), theirs(long)
    norm = np.sqrt(sum((s**2).sum() for s in slices))
    fitted = tl.parafac2_tensor.parafac2_to_slices(b)
    err_b = np.sqrt(sum(((r - s) ** 2).sum() for r, s in zip(fitted, slices, strict=True))) / norm
    name = f"PARAFAC2 {K} slices I_k in [{low}, {high}] x {J}, rank {rank}"
    labels = ("lorainne parafac2", "tensorly parafac2")
    rows += table_rows(name, labels, times, (f"err {a.errors[-1]:.5f} after {long}", f"err {err_b:.5f} after {long}"))


def bench_cmtf(n, m, rank, short, long, repeats, rows):
    import tensorly as tl
    from tensorly.decomposition import coupled_matrix_tensor_3d_factorization
    from tensorly.decomposition._cp import initialize_cp

    rng = np.random.default_rng(1)
    A, B, C, V = (rng.standard_normal((s, rank)) for s in (n, n, n, m))
    X = tl.cp_to_tensor((None, [A, B, C]))
    X += 0.01 * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(X.shape)
    Y = A @ V.T + 0.01 * np.linalg.norm(A @ V.T) / np.sqrt(n * m) * rng.standard_normal((n, m))
    tensor_start = initialize_cp(X, rank, init="svd")
    coupled_start = initialize_cp(np.concatenate([tl.unfold(X, 0), Y], axis=1), rank, init="svd")
    start = (np.ones(rank), [coupled_start.factors[0], tensor_start.factors[1], tensor_start.factors[2]])

    def ours(k):
        return lorainne.cmtf(X, Y, rank, init=start, n_iter_max=k, tol=0, n_threads=1)

    def theirs(k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return coupled_matrix_tensor_3d_factorization(X, Y, rank, init="svd", n_iter_max=k, tol=0)

    times = per_iteration({"ours": ours, "theirs": theirs}, short, long, repeats)
    a, b = ours(long), theirs(long)
    err_b = np.sqrt(b[2][-1] / (np.sum(X**2) + np.sum(Y**2)))
    name = f"CMTF {n}^3 + {n}x{m}, rank {rank}"
    labels = ("lorainne cmtf (Rust MTTKRP)", "tensorly coupled_matrix_tensor_3d")
    rows += table_rows(name, labels, times, (f"err {a.errors[-1]:.5f} after {long}", f"err {err_b:.5f} after {long}"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--quick", action="store_true", help="smaller CMTF (100^3 + 100x250)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs")
    parser.add_argument("--only", choices=["parafac2", "cmtf"])
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows: list[list[str]] = []
    with threadpool_limits(1):
        if args.only != "cmtf":
            bench_parafac2(100, 100, 200, 600, 5, 2, 12, args.repeats, rows)
        if args.only != "parafac2":
            bench_cmtf(*((100, 250) if args.quick else (200, 500)), 10, 1, 3, args.repeats, rows)
    flags = cpu_flags()
    text = "\n".join(
        [
            "# Structured tensor models: lorainne vs tensorly",
            "",
            "- command: `PYTHONPATH=python python benches/bench_tensor_structured.py"
            " --out benches/RESULTS_tensor_structured.md` (from the repository root)",
            f"- machine: {machine()}; CPU flags: {' '.join(flags)}",
            f"- lorainne {lorainne.__version__} (git {git_revision()}),"
            " threads pinned to 1 (threadpoolctl; n_threads=1)",
            f"- load average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
            "- ms / iteration = (time of long run - time of short run) / difference: starts not counted;"
            f" total = the long run with its start; best of {args.repeats}, the two libraries' runs"
            " interleaved; CPU = the process's CPU time (one thread: the work without a shared machine's"
            " waits), wall = elapsed; same start, tol=0, the iterates coincide, so the errors after equal"
            " iterations agree",
            "",
            markdown_table(
                [
                    "problem",
                    "library",
                    "ms / iteration (CPU)",
                    "peer / ours",
                    "ms / iteration (wall)",
                    "peer / ours",
                    "total ms (CPU)",
                    "peer / ours",
                    "accuracy",
                ],
                rows,
            ),
            "",
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
