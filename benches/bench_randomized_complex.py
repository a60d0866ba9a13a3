"""Complex input: the Rust kernels (faer, complex) against the xp reference on NumPy's BLAS and
against numpy.linalg / scipy.linalg, one thread, interleaved, best of k.

    PYTHONPATH=python python benches/bench_randomized_complex.py [--repeats 5]

Rows: QR of a tall complex matrix (Householder and CholeskyQR2 against numpy.linalg.qr) and the
randomized SVD of a planted complex matrix (subspace and block Krylov, Rust against the xp path
with the same random numbers; scikit-learn has no complex randomized SVD: #30736). Accuracy
beside each time: ||QR - A|| / ||A|| and ||Q^H Q - I|| for QR, max |S - S_exact| / S_0 for the SVD.
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

import lorainne  # noqa: E402
from _common import best_time, cpu_flags, git_revision, markdown_table  # noqa: E402


def complex_gaussian(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def planted(rng, m, n, spectrum):
    k = len(spectrum)
    U, _ = np.linalg.qr(complex_gaussian(rng, m, k))
    V, _ = np.linalg.qr(complex_gaussian(rng, n, k))
    return (U * spectrum) @ V.conj().T


def interleaved(contenders: dict, repeats: int) -> dict:
    """{name: (best time, last result)}, each contender timed once per round."""
    best = {name: (float("inf"), None) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t, result = best_time(fn, 1)
            best[name] = (min(best[name][0], t), result)
    return best


def qr_rows(repeats: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    rows = []
    for m, n in [(20000, 100), (5000, 300)]:
        A = complex_gaussian(rng, m, n)
        contenders = {
            "numpy.linalg.qr": lambda: np.linalg.qr(A),
            "lorainne.householder_qr (rust)": lambda: lorainne.householder_qr(A, backend="rust", n_threads=1),
            "lorainne.householder_qr (xp)": lambda: lorainne.householder_qr(A, backend="numpy"),
            "lorainne.cholesky_qr2 (rust)": lambda: lorainne.cholesky_qr2(A, backend="rust", n_threads=1),
            "lorainne.cholesky_qr2 (xp)": lambda: lorainne.cholesky_qr2(A, backend="numpy"),
        }
        timed = interleaved(contenders, repeats)
        base = timed["numpy.linalg.qr"][0]
        for name, (t, (Q, R)) in timed.items():
            residual = np.linalg.norm(Q @ R - A) / np.linalg.norm(A)
            orthogonality = np.linalg.norm(Q.conj().T @ Q - np.eye(n))
            rows.append(
                [f"{m}x{n}", name, f"{1e3 * t:.1f}", f"{base / t:.2f}", f"{residual:.1e}", f"{orthogonality:.1e}"]
            )
    return rows


def svd_rows(repeats: int) -> list[list[str]]:
    rng = np.random.default_rng(1)
    rows = []
    m, n, k = 4000, 1500, 50
    spectrum = np.arange(1, 201, dtype=float) ** -0.5
    A = planted(rng, m, n, spectrum)
    for method in ("subspace", "block_krylov"):
        contenders = {
            f"{backend}": (
                lambda backend=backend: lorainne.randomized_svd(
                    A, k, method=method, random_state=0, backend=backend, n_threads=1
                )
            )
            for backend in ("rust", "numpy")
        }
        timed = interleaved(contenders, repeats)
        base = timed["numpy"][0]
        for backend, (t, result) in timed.items():
            error = np.max(np.abs(result.S - spectrum[:k])) / spectrum[0]
            rows.append([f"{m}x{n}, k={k}", method, backend, f"{1e3 * t:.1f}", f"{base / t:.2f}", f"{error:.1e}"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"commit {git_revision()}; CPU flags: {', '.join(cpu_flags())}; load average {load[0]:.1f}")
    print()
    print("QR of complex128 (1 thread; speedup = numpy.linalg.qr's time / this time)")
    print()
    header = ["shape", "method", "time (ms)", "speedup", "||QR-A||/||A||", "||QhQ-I||_F"]
    print(markdown_table(header, qr_rows(args.repeats)))
    print()
    print("Randomized SVD of complex128, s_i = i^-0.5 (1 thread; speedup = the xp path's time / this time)")
    print()
    header = ["matrix", "method", "backend", "time (ms)", "speedup", "max|S - S_exact|/S_0"]
    print(markdown_table(header, svd_rows(args.repeats)))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
