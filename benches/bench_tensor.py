"""Tensor decompositions: lorainne vs tensorly and pyttb on the same data, same start, fixed sweeps.

Run:  python benches/bench_tensor.py [--quick] [--out benches/RESULTS_tensor.md]

Every library runs single-threaded (threadpoolctl limits BLAS to 1 thread; lorainne gets
n_threads=1) from the same start for a fixed number of sweeps (tol=0); the table gives the
milliseconds per sweep (best of the repeats), the ratio ours/peer, and the relative error (and
factor match score against the planted factors where there are any) beside each time.

The floor of a dense CP sweep is two passes over the tensor (the dimension tree reads X once for
the modes before the split and once for those after): 2 x (bytes of X) at the bandwidth of one
core, measured here by timing X.sum() (one read of X). The flops (4 N R per sweep) are far below
what one core does in that time for R <= 16, so the sweep is memory-bound.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import lorainne
from lorainne import ConvergenceWarning, CPTensor, SparseTensor, cp, factor_match_score, tucker

warnings.simplefilter("ignore", ConvergenceWarning)


def best_time(fn, repeats: int):
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def planted(rng, shape, rank, noise=0.01, nonnegative=False):
    factors = [rng.random((n, rank)) if nonnegative else rng.standard_normal((n, rank)) for n in shape]
    clean = CPTensor(None, factors).to_tensor()
    E = rng.standard_normal(shape)
    X = clean + E * (noise * np.linalg.norm(clean) / np.linalg.norm(E))
    del clean, E
    return (np.abs(X) if nonnegative else X), factors


def rel_error(X, approx) -> float:
    return float(np.linalg.norm(X - approx) / np.linalg.norm(X))


def read_time(X, repeats=3) -> float:
    return best_time(lambda: X.sum(), repeats)[0]


class Table:
    def __init__(self):
        self.rows = []

    def add(self, problem, library, ms, ours_ms, accuracy):
        ratio = "" if library.startswith("lorainne") or ms <= 0 else f"{ours_ms / ms:.3f}"
        self.rows.append((problem, library, f"{ms:.1f}", ratio, accuracy))

    def markdown(self) -> str:
        lines = ["| problem | library | ms / sweep | ours / peer | accuracy |", "|---|---|---:|---:|---|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        return "\n".join(lines)


def bench_dense_cp(table, rng, shape, rank, sweeps, peer_sweeps, repeats, pyttb):
    import tensorly as tl
    from tensorly.decomposition import parafac

    X, true = planted(rng, shape, rank)
    start = cp(X, rank, random_state=0, n_iter_max=0)  # the SVD start, shared by everyone
    init_factors = [f * (start.weights[None, :] ** (1 / len(shape))) for f in start.factors]
    label = f"CP {'x'.join(map(str, shape))} rank {rank}"
    t, model = best_time(lambda: cp(X, rank, init=(None, init_factors), tol=0, n_iter_max=sweeps, n_threads=1), repeats)
    ours = t / sweeps * 1e3
    table.add(
        label,
        "lorainne (Rust)",
        ours,
        ours,
        f"err {model.errors[-1]:.5f}, FMS {factor_match_score(model, (None, true)):.4f}",
    )
    floor = 2 * read_time(X) * 1e3
    table.add(label, "floor: 2 reads of X", floor, ours, f"{2 * X.nbytes / 1e6:.0f} MB read")
    same = cp(X, rank, init=(None, init_factors), tol=0, n_iter_max=peer_sweeps, n_threads=1).errors[-1]
    t, theirs = best_time(
        lambda: parafac(X, rank, init=(np.ones(rank), [f.copy() for f in init_factors]), tol=0, n_iter_max=peer_sweeps),
        1,
    )
    table.add(
        label,
        "tensorly parafac",
        t / peer_sweeps * 1e3,
        ours,
        f"err {rel_error(X, tl.cp_to_tensor(theirs)):.5f} (ours {same:.5f}) after {peer_sweeps}",
    )
    if pyttb is not None:
        T = pyttb.tensor(X, copy=False)
        kt = pyttb.ktensor([f.copy() for f in init_factors])
        t, (result, _, _) = best_time(
            lambda: pyttb.cp_als(T, rank, init=kt, maxiters=peer_sweeps, stoptol=0, printitn=0), 1
        )
        approx = result.full().data
        table.add(
            label,
            "pyttb cp_als",
            t / peer_sweeps * 1e3,
            ours,
            f"err {rel_error(X, approx):.5f} (ours {same:.5f}) after {peer_sweeps}",
        )


def bench_nonnegative(table, rng, shape, rank, sweeps, repeats):
    import tensorly as tl
    from tensorly.decomposition import non_negative_parafac_hals

    X, true = planted(rng, shape, rank, nonnegative=True)
    start = cp(X, rank, nonnegative=True, random_state=0, n_iter_max=0)
    init_factors = [f * (start.weights[None, :] ** (1 / len(shape))) for f in start.factors]
    label = f"nonnegative CP {'x'.join(map(str, shape))} rank {rank}"
    t, model = best_time(
        lambda: cp(X, rank, init=(None, init_factors), nonnegative=True, tol=0, n_iter_max=sweeps, n_threads=1), repeats
    )
    ours = t / sweeps * 1e3
    table.add(
        label,
        "lorainne HALS (Rust)",
        ours,
        ours,
        f"err {model.errors[-1]:.5f}, FMS {factor_match_score(model, (None, true)):.4f}",
    )
    t, theirs = best_time(
        lambda: non_negative_parafac_hals(
            X, rank, init=(np.ones(rank), [f.copy() for f in init_factors]), tol=0, n_iter_max=sweeps
        ),
        1,
    )
    # tensorly's HALS repeats its column updates inside each sweep: compare errors at equal time too.
    equal_time = max(sweeps, int(round(t / (ours / 1e3))))
    longer = cp(X, rank, init=(None, init_factors), nonnegative=True, tol=0, n_iter_max=equal_time, n_threads=1)
    table.add(
        label,
        "tensorly non_negative_parafac_hals",
        t / sweeps * 1e3,
        ours,
        f"err {rel_error(X, tl.cp_to_tensor(theirs)):.5f} after {sweeps} "
        f"(ours {longer.errors[-1]:.5f} after {equal_time}, same time)",
    )
    return ours


def bench_tucker(table, rng, shape, ranks, sweeps, repeats, pyttb):
    import tensorly as tl
    from tensorly.decomposition import tucker as tl_tucker

    core = rng.standard_normal(ranks)
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks, strict=False)]
    X = lorainne.TuckerTensor(core, U).to_tensor()
    E = rng.standard_normal(shape)
    X += 0.01 * E * np.linalg.norm(X) / np.linalg.norm(E)
    label = f"Tucker HOOI {'x'.join(map(str, shape))} ranks {ranks[0]}"

    def per_sweep(run, k, repeats):
        """(time of 2k sweeps - time of k sweeps) / k: the start (HOSVD) is not counted."""
        short, _ = best_time(lambda: run(k), repeats)
        long, result = best_time(lambda: run(2 * k), repeats)
        if long <= short:  # timing noise larger than k sweeps: fall back to the plain average
            return long / (2 * k) * 1e3, result
        return (long - short) / k * 1e3, result

    ours, model = per_sweep(
        lambda k: tucker(X, ranks, tol=0, n_iter_max=k, random_state=0, n_threads=1), sweeps, repeats
    )
    table.add(label, "lorainne (Rust edge contractions + NumPy)", ours, ours, f"err {model.errors[-1]:.5f}")
    ms, (c, f) = per_sweep(lambda k: tl_tucker(X, rank=list(ranks), n_iter_max=k, tol=0, random_state=0), sweeps, 1)
    table.add(label, "tensorly tucker", ms, ours, f"err {rel_error(X, tl.tucker_to_tensor((c, f))):.5f}")
    if pyttb is not None:
        T = pyttb.tensor(X, copy=False)
        ms, (result, _, _) = per_sweep(
            lambda k: pyttb.tucker_als(T, list(ranks), maxiters=k, stoptol=0, printitn=0, init="nvecs"), sweeps, 1
        )
        table.add(label, "pyttb tucker_als", ms, ours, f"err {rel_error(X, result.full().data):.5f}")


def bench_sparse(table, rng, size, nnz, rank, sweeps, peer_sweeps, pyttb):
    coords = rng.integers(0, size, (nnz, 3))
    values = rng.random(nnz)
    S = SparseTensor(coords, values, (size,) * 3)
    init = [rng.random((size, rank)) for _ in range(3)]
    label = f"sparse CP {size}^3, {S.nnz} nnz, rank {rank}"
    t, model = best_time(lambda: cp(S, rank, init=(None, init), tol=0, n_iter_max=sweeps, n_threads=1), 2)
    ours = t / sweeps * 1e3
    table.add(label, "lorainne (Rust COO)", ours, ours, f"err {model.errors[-1]:.5f}")
    if pyttb is not None:
        T = pyttb.sptensor(S.coords, S.values[:, None], S.shape)
        kt = pyttb.ktensor([f.copy() for f in init])
        t, (result, _, _) = best_time(
            lambda: pyttb.cp_als(T, rank, init=kt, maxiters=peer_sweeps, stoptol=0, printitn=0), 1
        )
        ours_err = cp(S, rank, init=(None, init), tol=0, n_iter_max=peer_sweeps, n_threads=1).errors[-1]
        table.add(
            label,
            "pyttb cp_als (sptensor)",
            t / peer_sweeps * 1e3,
            ours,
            f"fit-equivalent err: ours {ours_err:.5f} after {peer_sweeps}",
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problems (a smoke run)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    try:
        import pyttb
    except ImportError:
        pyttb = None
    rng = np.random.default_rng(0)
    table = Table()
    with threadpool_limits(1):
        if args.quick:
            bench_dense_cp(table, rng, (60, 60, 60), 5, 5, 3, 2, pyttb)
            bench_nonnegative(table, rng, (50, 50, 50), 4, 5, 1)
            bench_tucker(table, rng, (60, 60, 60), (5, 5, 5), 3, 1, pyttb)
            bench_sparse(table, rng, 200, 20_000, 8, 3, 2, pyttb)
        else:
            bench_dense_cp(table, rng, (200, 200, 200), 10, 30, 3, 2, pyttb)
            bench_dense_cp(table, rng, (100, 100, 100, 50), 10, 20, 2, 1, pyttb)
            bench_nonnegative(table, rng, (150, 150, 150), 8, 10, 2)
            bench_tucker(table, rng, (200, 200, 200), (10, 10, 10), 5, 2, pyttb)
            bench_sparse(table, rng, 2000, 1_000_000, 16, 5, 2, pyttb)
    blas = sorted(
        {f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '')})" for i in threadpool_info()}
    )
    header = [
        f"command: python benches/bench_tensor.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
        f"machine: {platform.machine()}, nproc {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.2f} (shared machine), BLAS {', '.join(blas)}",
        f"lorainne {lorainne.__version__}, numpy {np.__version__}, "
        "threads pinned to 1 (threadpoolctl; lorainne n_threads=1)",
    ]
    text = "\n".join(
        [
            "# Tensor decompositions: lorainne vs tensorly and pyttb",
            "",
            *[f"- {h}" for h in header],
            "",
            table.markdown(),
            "",
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
