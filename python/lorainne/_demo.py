"""``lorainne demo``: every capability on built-in synthetic data, one table row each.

Each area contributes a function ``rows(rng) -> list[DemoRow]`` listed in ``SECTIONS``.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

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
    rows.append(DemoRow("randomized_svd", "2000x1000 float64, rank 40", f"error/optimal {error / optimal:.4f}", seconds))

    A32 = A.astype(np.float32)
    (U, S, Vt), seconds = timed(randomized_svd, A32, rank, random_state=0)
    error = np.linalg.norm(A32 - (U * S) @ Vt)
    rows.append(DemoRow("randomized_svd", "2000x1000 float32, rank 40", f"error/optimal {error / optimal:.4f}", seconds))

    Q0 = range_finder(A, rank, random_state=0)
    B = A + 1e-3 * rng.standard_normal(A.shape) / np.sqrt(A.size)  # the next "training step"
    Q1, seconds = timed(range_finder, B, rank, init=Q0, n_power_iter=1, random_state=1)
    error = np.linalg.norm(B - Q1 @ (Q1.T @ B)) / np.linalg.norm(B)
    rows.append(DemoRow("range_finder", "warm start, 1 power iteration", f"rel. error {error:.2e}", seconds))

    Q, seconds = timed(range_finder, A, 200, tol=1e-2, random_state=0)
    error = np.linalg.norm(A - Q @ (Q.T @ A)) / np.linalg.norm(A)
    rows.append(DemoRow("range_finder", f"adaptive tol=1e-2 -> {Q.shape[1]} columns", f"rel. error {error:.2e}", seconds))

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
        DemoRow("sinkhorn", f"{n} uniform vs {n} mixture pts, eps 0.02", f"{res.n_iter} it., marg. err {res.marginal_error:.1e}", seconds)
    )
    return rows


SECTIONS: list[Callable] = [linalg_rows, ot_rows]


def format_table(rows: list[DemoRow]) -> str:
    header = DemoRow("capability", "problem", "accuracy", 0.0)
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("capability", "problem", "accuracy")]
    lines = [f"{header.capability:<{widths[0]}}  {header.problem:<{widths[1]}}  {header.accuracy:<{widths[2]}}  time (s)"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r.capability:<{widths[0]}}  {r.problem:<{widths[1]}}  {r.accuracy:<{widths[2]}}  {r.seconds:8.3f}")
    return "\n".join(lines)
