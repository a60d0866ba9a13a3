"""``lorainne demo``: every capability on built-in synthetic data, one table row each.

Each area contributes a function ``rows(rng) -> list[DemoRow]`` listed in ``SECTIONS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class DemoRow(NamedTuple):
    capability: str
    problem: str
    accuracy: str
    seconds: float


def timed(fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def decaying_matrix(rng, m: int, n: int, decay: float = 0.9, dtype=np.float64):
    """A = U diag(decay^i) V^T with random orthonormal U, V; returns (A, singular values)."""
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = decay ** np.arange(k)
    return ((U * s) @ V.T).astype(dtype), s


def linalg_rows(rng) -> list[DemoRow]:
    from . import cholesky_qr2, householder_qr, randomized_svd, range_finder

    rows = []
    A, s = decaying_matrix(rng, 2000, 1000, decay=0.97)
    rank = 40
    optimal = np.sqrt(np.sum(s[rank:] ** 2))
    (U, S, Vt), seconds = timed(randomized_svd, A, rank, random_state=0)
    error = np.linalg.norm(A - (U * S) @ Vt)
    rows.append(
        DemoRow("randomized_svd", "2000x1000 float64, rank 40", f"error/optimal {error / optimal:.4f}", seconds)
    )

    A32 = A.astype(np.float32)
    (U, S, Vt), seconds = timed(randomized_svd, A32, rank, random_state=0)
    error = np.linalg.norm(A32 - (U * S) @ Vt)
    rows.append(
        DemoRow("randomized_svd", "2000x1000 float32, rank 40", f"error/optimal {error / optimal:.4f}", seconds)
    )

    Q0 = range_finder(A, rank, random_state=0)
    B = A + 1e-4 * rng.standard_normal(A.shape) / np.sqrt(A.size)  # the next "training step"
    Q1, seconds = timed(range_finder, B, rank, init=Q0, n_power_iter=1, random_state=1)
    optimal = np.sqrt(np.sum(s[Q1.shape[1] :] ** 2))  # B's spectrum is A's up to 1e-4
    error = np.linalg.norm(B - Q1 @ (Q1.T @ B))
    rows.append(
        DemoRow(
            "range_finder",
            f"warm start, 1 power iteration, {Q1.shape[1]} columns",
            f"error/optimal {error / optimal:.4f}",
            seconds,
        )
    )

    Q, seconds = timed(range_finder, A, 200, tol=1e-2, random_state=0)
    error = np.linalg.norm(A - Q @ (Q.T @ A)) / np.linalg.norm(A)
    rows.append(
        DemoRow("range_finder", f"adaptive tol=1e-2 -> {Q.shape[1]} columns", f"rel. error {error:.2e}", seconds)
    )

    T = rng.standard_normal((20000, 100))
    (Q, R), seconds = timed(householder_qr, T)
    orth = np.linalg.norm(Q.T @ Q - np.eye(100))
    rows.append(DemoRow("householder_qr", "20000x100 float64", f"||Q'Q-I|| {orth:.1e}", seconds))

    left, _ = np.linalg.qr(rng.standard_normal((20000, 100)))
    right, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    ill = ((left * np.logspace(0, -6, 100)) @ right).astype(np.float32)  # cond 1e6
    (Q, R), seconds = timed(cholesky_qr2, ill)
    orth = np.linalg.norm(Q.T.astype(np.float64) @ Q - np.eye(100))
    rows.append(DemoRow("cholesky_qr2", "20000x100 float32, cond 1e6", f"||Q'Q-I|| {orth:.1e}", seconds))
    return rows


def trace_rows(rng) -> list[DemoRow]:
    import scipy.sparse as sp

    from . import spectral_density, trace, trace_function

    rows = []
    n = 600
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.arange(1, n + 1) ** -2.0
    A = (U * lam) @ U.T
    exact = lam.sum()
    for method in ("hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace"):
        est, seconds = timed(trace, A, 60, method=method, random_state=0)
        rows.append(
            DemoRow(
                f"trace {method}",
                f"{n}x{n}, eigenvalues i^-2, 60 products",
                f"rel. error {abs(est.value - exact) / exact:.1e} (est. {est.error_estimate / exact:.1e})",
                seconds,
            )
        )
    k = 50
    L1 = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    L = (sp.kron(L1, sp.eye(k)) + sp.kron(sp.eye(k), L1) + 0.05 * sp.eye(k * k)).tocsr()
    d = 2 - 2 * np.cos(np.pi * np.arange(1, k + 1) / (k + 1))
    logdet = np.sum(np.log(np.add.outer(d, d) + 0.05))
    est, seconds = timed(trace_function, L, "log", n_vectors=40, degree=30, random_state=0)
    rows.append(
        DemoRow(
            "trace_function slq",
            "log det, 50x50 grid Laplacian + 0.05 I",
            f"rel. error {abs(est.value - logdet) / logdet:.1e}",
            seconds,
        )
    )
    lam = np.sort(rng.uniform(0, 1, 200))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    B = (V * lam) @ V.T
    t = np.linspace(-0.1, 1.1, 400)
    sigma = 0.01
    exact_phi = np.exp(-((t[:, None] - lam[None, :]) ** 2) / (2 * sigma**2)).mean(axis=1) / (sigma * np.sqrt(2 * np.pi))
    for method, vectors in (("nystrom++", 40), ("kpm", 80)):
        phi, seconds = timed(
            spectral_density,
            B,
            t,
            sigma=sigma,
            n_vectors=vectors,
            method=method,
            spectrum_bounds=(-0.05, 1.05),
            random_state=0,
        )
        l1 = float(np.trapezoid(np.abs(phi - exact_phi), t))
        rows.append(
            DemoRow(
                f"spectral_density {method}",
                "200x200, sigma 0.01, 400 points, equal products",
                f"L1 error {l1:.1e}",
                seconds,
            )
        )
    return rows


def tensor_rows(rng) -> list[DemoRow]:
    import scipy.sparse

    from . import CPTensor, SparseTensor, TuckerTensor, cp, factor_match_score, nmf, tucker

    def planted(shape, rank, noise, sparsity=None, nonnegative=False):
        factors = [rng.random((n, rank)) if nonnegative else rng.standard_normal((n, rank)) for n in shape]
        if sparsity is not None:
            factors = [f * (rng.random(f.shape) < sparsity) for f in factors]
        clean = CPTensor(None, factors).to_tensor()
        E = rng.standard_normal(shape)
        X = clean + E * noise * np.linalg.norm(clean) / np.linalg.norm(E)
        return (np.abs(X) if nonnegative else X), factors, clean

    rows = []
    X, true, clean = planted((100, 100, 100), 10, 0.01)
    noise = np.linalg.norm(X - clean) / np.linalg.norm(X)
    model, seconds = timed(cp, X, 10, random_state=0)
    rows.append(
        DemoRow(
            "cp",
            "100^3 rank 10, 1% noise",
            f"err/noise {model.errors[-1] / noise:.3f}, FMS {factor_match_score(model, (None, true)):.4f}",
            seconds,
        )
    )

    X, true, clean = planted((60, 50, 40, 30), 6, 0.01)
    noise = np.linalg.norm(X - clean) / np.linalg.norm(X)
    model, seconds = timed(cp, X, 6, random_state=0)
    rows.append(
        DemoRow(
            "cp",
            "60x50x40x30 rank 6, 1% noise",
            f"err/noise {model.errors[-1] / noise:.3f}, FMS {factor_match_score(model, (None, true)):.4f}",
            seconds,
        )
    )

    X, true, clean = planted((80, 70, 60), 8, 0.01, nonnegative=True)
    model, seconds = timed(cp, X, 8, nonnegative=True, random_state=0, n_iter_max=300, tol=1e-6)
    rows.append(
        DemoRow(
            "cp nonnegative",
            "80x70x60 rank 8 (HALS)",
            f"rel. error {model.errors[-1]:.4f}, FMS {factor_match_score(model, (None, true)):.4f}",
            seconds,
        )
    )

    X, true, clean = planted((40, 35, 30), 5, 0.0)
    mask = rng.random(X.shape) < 0.5
    model, seconds = timed(cp, np.where(mask, X, 0.0), 5, mask=mask, random_state=0, n_iter_max=500, tol=1e-10)
    missing = np.linalg.norm((model.to_tensor() - X)[~mask]) / np.linalg.norm(X[~mask])
    rows.append(DemoRow("cp mask", "40x35x30 rank 5, 50% missing", f"missing-entry error {missing:.1e}", seconds))

    X, true, clean = planted((150, 120, 100), 5, 0.0, sparsity=0.2)
    S = SparseTensor.from_dense(X)
    model, seconds = timed(cp, S, 5, random_state=0, n_iter_max=200)
    rows.append(
        DemoRow("cp sparse", f"150x120x100, {S.nnz} nonzeros, rank 5", f"rel. error {model.errors[-1]:.1e}", seconds)
    )

    core = rng.standard_normal((10, 10, 10))
    U = [np.linalg.qr(rng.standard_normal((100, 10)))[0] for _ in range(3)]
    X = TuckerTensor(core, U).to_tensor()
    E = rng.standard_normal(X.shape)
    X = X + 0.01 * E * np.linalg.norm(X) / np.linalg.norm(E)
    model, seconds = timed(tucker, X, 10, random_state=0)
    rows.append(DemoRow("tucker", "100^3 ranks 10 (HOOI), 1% noise", f"rel. error {model.errors[-1]:.4f}", seconds))

    W = scipy.sparse.random(2000, 10, density=0.3, random_state=1).toarray()
    H = scipy.sparse.random(10, 1000, density=0.3, random_state=2).toarray()
    A = scipy.sparse.csr_matrix(W @ H)
    result, seconds = timed(nmf, A, 10, random_state=0, n_iter_max=300)
    rows.append(
        DemoRow("nmf", f"sparse 2000x1000, {A.nnz} nonzeros, rank 10", f"rel. error {result.errors[-1]:.1e}", seconds)
    )
    return rows


def ot_rows(rng) -> list[DemoRow]:
    from . import sinkhorn

    rows = []
    n = 1000
    x = rng.random((n, 2))
    y = 0.5 * rng.random((n, 2)) ** 2 + 0.25
    ref = sinkhorn(x, y, eps=0.01, method="dense")
    res, seconds = timed(sinkhorn, x, y, eps=0.01, method="hierarchical")
    rows.append(
        DemoRow(
            "sinkhorn",
            f"{n} vs {n} pts 2-D, eps 0.01, hierarchical",
            f"cost rel. diff vs dense {abs(res.cost - ref.cost) / ref.cost:.1e}, marg. err {res.marginal_error:.1e}",
            seconds,
        )
    )
    n = 5000
    x = rng.random((n, 2))
    centres = np.array([[0.2, 0.3], [0.7, 0.8], [0.75, 0.25]])
    y = centres[rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((n, 2))
    res, seconds = timed(sinkhorn, x, y, eps=0.02, tol=1e-4)
    rows.append(
        DemoRow(
            "sinkhorn",
            f"{n} uniform vs {n} mixture pts, eps 0.02",
            f"{res.n_iter} it., marg. err {res.marginal_error:.1e}",
            seconds,
        )
    )
    return rows


SECTIONS: list[Callable] = [linalg_rows, tensor_rows, ot_rows, trace_rows]


def format_table(rows: list[DemoRow]) -> str:
    header = DemoRow("capability", "problem", "accuracy", 0.0)
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("capability", "problem", "accuracy")]
    lines = [
        f"{header.capability:<{widths[0]}}  {header.problem:<{widths[1]}}  {header.accuracy:<{widths[2]}}  time (s)"
    ]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(
            f"{r.capability:<{widths[0]}}  {r.problem:<{widths[1]}}  {r.accuracy:<{widths[2]}}  {r.seconds:8.3f}"
        )
    return "\n".join(lines)
