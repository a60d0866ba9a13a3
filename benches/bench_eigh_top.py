"""eigh_top (all eigenvalues + top-k eigenvectors, randomized/_eigh_top.py) against np.linalg.eigh
(LAPACK dsyevd), then the two randomized SVD calls that use it with the fast route on and off.

Everything single-threaded (threadpoolctl for BLAS, n_threads=1 for lorainne); the two contenders
of a row run interleaved in the same process and the best of ``--repeats`` is kept. Accuracy beside
each time: eigenvalue error against eigh's and the residual max|G V - V diag(w)| in units of
n u ||G||, max|V^T V - I| in units of n u; error/optimal in the 2-norm for the whole calls.

    PYTHONPATH=python python benches/bench_eigh_top.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

import lorainne
from lorainne.randomized import _eigh_top

U = np.finfo(np.float64).eps / 2
SIZES = [(64, 10), (120, 50), (144, 50), (165, 50), (200, 60)]


def planted_gram(n, seed=0):
    """Z^T Z of a 2000 x n block with singular values i^-0.5 (block Krylov's Gram route)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((2000, n)))
    W, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Z = (Q * np.arange(1, n + 1) ** -0.5) @ W.T
    return Z.T @ Z


def digits_gram():
    from sklearn.datasets import load_digits

    A = load_digits().data.astype(np.float64)
    return A.T @ A


def best_of(functions, repeats):
    """Best time of each function, the calls interleaved."""
    best = [np.inf] * len(functions)
    for _ in range(repeats):
        for i, f in enumerate(functions):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def accuracy(G, k, w, V):
    n = G.shape[0]
    ref = np.linalg.eigh(G)[0]
    norm = np.abs(ref).max()
    return (
        np.abs(w - ref).max() / (n * U * norm),
        np.abs(G @ V - V * w[n - k :]).max() / (n * U * norm),
        np.abs(V.T @ V - np.eye(k)).max() / (n * U),
    )


def bench_kernel(repeats):
    print(
        "| G | n | k | eigh (ms) | eigh_top (ms) | eigh / eigh_top | dsytrd (ms) "
        "| eigenvalue err | residual | orthogonality |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, k in SIZES:
        name, G = ("digits A^T A", digits_gram()) if n == 64 else (f"planted i^-0.5 Gram, {n}", planted_gram(n))
        out = _eigh_top.eigh_top(G, k)
        assert out is not None, name
        errs = accuracy(G, k, *out)
        full = np.linalg.eigh(G)
        errs_full = accuracy(G, k, full[0], full[1][:, n - k :])
        t_eigh, t_top, t_trd = best_of(
            [lambda: np.linalg.eigh(G), lambda: _eigh_top.eigh_top(G, k), lambda: lapack.dsytrd(G, lower=1)], repeats
        )
        print(
            f"| {name} | {n} | {k} | {t_eigh * 1e3:.3f} | {t_top * 1e3:.3f} | {t_eigh / t_top:.2f} | "
            f"{t_trd * 1e3:.3f} | {errs[0]:.2f} (eigh {errs_full[0]:.2f}) | {errs[1]:.2f} (eigh {errs_full[1]:.2f}) | "
            f"{errs[2]:.2f} (eigh {errs_full[2]:.2f}) |"
        )


def bench_calls(repeats):
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(3)
    m, n = 2000, 1000  # bench_randomized.equal_accuracy_matrices' planted i^-0.5 matrix
    Uq, _ = np.linalg.qr(rng.standard_normal((m, n)))
    Vq, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = (1.0 + np.arange(n)) ** -0.5
    A = np.ascontiguousarray((Uq * s) @ Vq.T)
    D = np.ascontiguousarray(load_digits().data.astype(np.float64))
    cases = [
        ("planted 2000x1000, s_i = i^-0.5", A, s, 50, dict(n_power_iter=2, block_size=55), repeats),
        ("digits 1797x64", D, np.linalg.svd(D, compute_uv=False), 10, dict(n_power_iter=0, block_size=64), 4 * repeats),
    ]
    print(
        "| matrix | k | before (ms) | with eigh_top (ms) | before / with | error/optimal before | error/optimal with |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, M, sv, k, options, reps in cases:

        def call(fast, M=M, k=k, options=options):
            _eigh_top.USE_EIGH_TOP = fast
            return lorainne.randomized_svd(M, k, method="block_krylov", random_state=0, n_threads=1, **options)

        errors = []
        for fast in (False, True):
            Uk, Sk, Vtk = call(fast)
            errors.append(np.linalg.norm(M - (Uk * Sk) @ Vtk, 2) / sv[k])
        t_before, t_with = best_of([lambda call=call: call(False), lambda call=call: call(True)], reps)
        _eigh_top.USE_EIGH_TOP = True
        print(
            f"| {name} | {k} | {t_before * 1e3:.3f} | {t_with * 1e3:.3f} | {t_before / t_with:.2f} | "
            f"{errors[0]:.4f} | {errors[1]:.4f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    with threadpool_limits(1):
        bench_kernel(args.repeats)
        print()
        bench_calls(args.repeats)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
