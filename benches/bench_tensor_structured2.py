"""Structured tensor models, second batch: PARATUCK-2 (lifting start vs random starts), CONFAC/PARALIND
and complex CP per sweep (against lorainne.cp and tensorly.parafac on the same real CP problem), decoupling.

No maintained peer computes PARATUCK-2, CONFAC or the decoupling in Python: the PARATUCK-2 rows compare
the algebraic lifting start with ALS from random starts (time and sweeps to the same fit), the CP-type
rows compare the xp-path CONFAC sweep with lorainne's Rust CP sweep and tensorly's parafac on the same
real tensor (same start, tol=0, the iterates coincide for plain CP). One thread (threadpoolctl).

    PYTHONPATH=python python benches/bench_tensor_structured2.py --out benches/RESULTS_tensor_structured2.md
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import lorainne
from _common import best_time, cpu_flags, git_revision, machine, markdown_table
from lorainne.tensor._complex_cp import complex_cp


def per_iteration(fn, short: int, long: int) -> float:
    times = {n: best_time(lambda n=n: fn(n), repeats=3)[0] for n in (short, long)}
    return (times[long] - times[short]) / (long - short)


def planted_pt2(rng, N1, N2, K, R, S, noise=0.0):
    A, B = rng.standard_normal((N1, R)), rng.standard_normal((N2, S))
    G, F, H = rng.standard_normal((K, R)), rng.standard_normal((R, S)), rng.standard_normal((K, S))
    X = np.einsum("ir,kr,rs,ks,js->ijk", A, G, F, H, B)
    E = rng.standard_normal(X.shape)
    return X + noise * np.linalg.norm(X) / np.linalg.norm(E) * E


def bench_paratuck2(shape, ranks, noise, rows, seeds=3, cap=2000):
    name = f"PARATUCK-2 {shape[0]}x{shape[1]}x{shape[2]}, (R, S) = {ranks}, noise {noise:g}"
    target = max(1e-8, 1.001 * noise)
    for label, init in (("lifting start + ALS", "lifting"), ("random start + ALS", "random")):
        sweeps, seconds, errors = [], [], []
        for seed in range(seeds):
            X = planted_pt2(np.random.default_rng(seed), *shape, *ranks, noise=noise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", lorainne.ConvergenceWarning)
                t = time.perf_counter()
                hits = []
                model = lorainne.paratuck2(
                    X,
                    ranks,
                    init=init,
                    random_state=seed,
                    tol=0,
                    n_iter_max=cap,
                    callback=lambda s, e: (hits.append(e), e <= target)[1],
                )
                seconds.append(time.perf_counter() - t)
            sweeps.append(model.n_iter)
            errors.append(model.errors[-1])
        rows.append(
            [
                name,
                label,
                f"{1e3 * np.median(seconds):.1f}",
                f"{int(np.median(sweeps))}",
                f"median err {np.median(errors):.2e} (stop at {target:.2e}, cap {cap})",
            ]
        )
    X = planted_pt2(np.random.default_rng(0), *shape, *ranks, noise=noise)
    t = best_time(lambda: lorainne.paratuck2(X, ranks, n_iter_max=0), repeats=3)[0]
    start = lorainne.paratuck2(X, ranks, n_iter_max=0)
    rows.append([name, "lifting start alone", f"{1e3 * t:.1f}", "0", f"err {start.errors[0]:.2e}"])


def bench_cp_type(rows):
    import tensorly as tl
    from sklearn.datasets import load_digits
    from tensorly.decomposition import parafac

    X = np.ascontiguousarray(np.transpose(load_digits().images, (1, 2, 0)), dtype=np.float64)  # 8 x 8 x 1797
    rank = 5
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((n, rank)) for n in X.shape]
    name = f"CP rank {rank} on digits 8x8x{X.shape[2]}"

    def ours(n):
        return lorainne.confac(X, rank, init=tuple(start), tol=0, n_iter_max=n)

    def rust(n):
        return lorainne.cp(X, rank, init=lorainne.CPTensor(None, start), tol=0, n_iter_max=n, n_threads=1)

    def peer(n):
        return parafac(tl.tensor(X), rank, init=(np.ones(rank), [f.copy() for f in start]), n_iter_max=n, tol=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ours, t_rust, t_peer = per_iteration(ours, 2, 12), per_iteration(rust, 2, 12), per_iteration(peer, 2, 12)
        e_ours = ours(12).errors[-1]
        e_rust = np.linalg.norm(rust(12).to_tensor() - X) / np.linalg.norm(X)
        e_peer = np.linalg.norm(tl.cp_to_tensor(peer(12)) - X) / np.linalg.norm(X)
    rows.append([name, "lorainne confac (xp, no constraints)", f"{1e3 * t_ours:.2f}", "", f"err {e_ours:.6f} after 12"])
    rows.append([name, "lorainne cp (Rust sweep)", f"{1e3 * t_rust:.2f}", "", f"err {e_rust:.6f} after 12"])
    rows.append(
        [name, "tensorly parafac", f"{1e3 * t_peer:.2f}", f"{t_peer / t_ours:.1f}x vs confac", f"err {e_peer:.6f}"]
    )
    Psi = np.array([[1.0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0], [0, 0, 0, 1.0, 0], [0, 0, 0, 0, 1.0]])
    tied_start = (start[0][:, :4], start[1], start[2])

    def tied(n):
        return lorainne.confac(X, rank, constraints=(Psi, None, None), init=tied_start, tol=0, n_iter_max=n)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_tied = per_iteration(tied, 2, 12)
        e_tied = tied(12).errors[-1]
    rows.append(
        [
            f"PARALIND (first A column shared by 2 of {rank}) on digits",
            "lorainne confac",
            f"{1e3 * t_tied:.2f}",
            "",
            f"err {e_tied:.6f} after 12",
        ]
    )
    # complex CP: a planted complex tensor of the same size class
    C = [rng.standard_normal((n, rank)) + 1j * rng.standard_normal((n, rank)) for n in (40, 40, 200)]
    Z = np.einsum("ir,jr,kr->ijk", *C)
    Z = Z + 0.01 * np.linalg.norm(Z) / np.sqrt(Z.size) * (
        rng.standard_normal(Z.shape) + 1j * rng.standard_normal(Z.shape)
    ) / np.sqrt(2)
    cstart = lorainne.CPTensor(None, [rng.standard_normal((n, rank)) + 0j for n in Z.shape])

    def cx(n):
        return complex_cp(Z, rank, init=cstart, tol=0, n_iter_max=n)

    t_cx = per_iteration(cx, 2, 12)
    t0 = time.perf_counter()
    full = complex_cp(Z, rank, init="jennrich", tol=1e-10, n_iter_max=500)
    total = time.perf_counter() - t0
    rows.append(
        [
            "complex CP rank 5, 40x40x200, noise 0.01",
            "lorainne complex_cp (xp)",
            f"{1e3 * t_cx:.2f}",
            "",
            f"jennrich + ALS: err {full.errors[-1]:.5f} in {full.n_iter} sweeps, {total:.2f} s",
        ]
    )


def bench_decouple(rows):
    rng = np.random.default_rng(0)
    m, n, r, N = 3, 4, 4, 1000
    W, V, C = rng.standard_normal((m, r)), rng.standard_normal((n, r)), rng.standard_normal((r, 4))

    def jac(u):
        z = V.T @ u
        return W @ np.diag(C[:, 1] + 2 * C[:, 2] * z + 3 * C[:, 3] * z**2) @ V.T

    points = rng.standard_normal((N, n))
    J = np.array([jac(u) for u in points])
    t = best_time(lambda: lorainne.decouple(J, points, r, random_state=0), repeats=3)[0]
    model = lorainne.decouple(J, points, r, random_state=0)
    test = rng.standard_normal((200, n))
    Jt = np.array([jac(u) for u in test])
    err = np.linalg.norm(model.jacobian(test) - Jt) / np.linalg.norm(Jt)
    rows.append(
        [
            f"decouple m={m}, n={n}, r={r}, {N} points, cubic",
            "lorainne decouple",
            f"{1e3 * t:.1f}",
            "",
            f"Jacobian err {err:.1e} at new points",
        ]
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    args = parser.parse_args()
    rows: list[list[str]] = []
    with threadpool_limits(1):
        bench_paratuck2((6, 7, 20), (2, 3), 0.0, rows)
        bench_paratuck2((50, 60, 200), (3, 4), 0.01, rows, cap=300)
        bench_cp_type(rows)
        bench_decouple(rows)
    flags = cpu_flags()
    text = "\n".join(
        [
            "# Structured tensor models (second batch): PARATUCK-2, CONFAC/PARALIND, complex CP, decoupling",
            "",
            "- command: `PYTHONPATH=python python benches/bench_tensor_structured2.py"
            " --out benches/RESULTS_tensor_structured2.md` (from the repository root)",
            f"- machine: {machine()}; CPU flags: {' '.join(flags)}",
            f"- lorainne {lorainne.__version__} (git {git_revision()}), threads pinned to 1 (threadpoolctl)",
            "- PARATUCK-2 rows: ms = whole run (start + sweeps until the error reaches the stop level), median of 3"
            " planted problems; CP-type rows: ms per sweep = (12-sweep run - 2-sweep run) / 10, best of 3",
            "",
            markdown_table(["problem", "method", "ms", "sweeps / ratio", "accuracy"], rows),
            "",
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
