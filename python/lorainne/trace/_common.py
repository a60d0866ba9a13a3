"""Small helpers shared by the trace estimators: the counted products, random test vectors, the
float64 reductions, input checks and :class:`TraceEstimate`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse.linalg

from .._backend import is_host_input, is_scipy_sparse, numpy_dtype, resolve
from .._operators import MatrixOperator, as_operator
from .._validation import check_int


class TraceEstimate(NamedTuple):
    """An estimate of a trace; unpacks as ``(value, error_estimate, n_matvec)``; ``float(est)``
    is the value.

    ``error_estimate`` estimates the standard error of ``value`` (the true error is within two
    estimates in most trials); it is 0 for an exact result and ``inf`` when the budget left no
    room for one. ``n_matvec`` is the number of products with A (matrix-vector products; a block
    of k columns counts k) actually used.
    """

    value: float
    error_estimate: float
    n_matvec: int

    def __float__(self) -> float:
        return float(self.value)


class _Products:
    """Products with A in blocks, counted; never more than ``budget`` columns in all."""

    def __init__(self, op: MatrixOperator, budget: int | None = None):
        self.op, self.budget, self.used = op, budget, 0

    def __call__(self, X):
        k = X.shape[1]
        if self.budget is not None and self.used + k > self.budget:  # pragma: no cover - an internal bug
            raise RuntimeError(f"internal error: {self.used + k} products requested, budget {self.budget}")
        self.used += k
        return self.op.matmat(X)


def _draw(op: MatrixOperator, rng: np.random.Generator, n: int, k: int, kind: str):
    """Random test vectors drawn on the host, moved to A's library, device and dtype."""
    if kind == "rademacher":
        block = rng.integers(0, 2, size=(n, k)).astype(np.float64) * 2.0 - 1.0
    else:
        block = rng.standard_normal((n, k))
    block = block.astype(numpy_dtype(op.dtype), copy=False)
    return op.xp.asarray(block, device=op.device)


def _f64(xp, x):
    return xp.astype(x, xp.float64)


def _column_dots(xp, X, Y):
    return xp.sum(X * Y, axis=0)


def _std_error(xp, samples) -> float:
    """Standard error of the mean of the 1-D array ``samples``."""
    k = samples.shape[0]
    if k < 2:
        return math.inf
    mean = xp.mean(samples)
    variance = float(xp.sum((samples - mean) ** 2)) / (k - 1)
    return math.sqrt(max(variance, 0.0) / k)


def _eps(op: MatrixOperator) -> float:
    return float(np.finfo(numpy_dtype(op.dtype)).eps)


def _square_operator(A, name: str = "A", *, allow_complex: bool = False) -> MatrixOperator:
    op = as_operator(A, name, allow_complex=allow_complex)
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} must be square, got shape {op.shape}")
    return op


def _check_count(value: Any, name: str) -> int:
    return check_int(value, name, low=1)


def _backend_for(A, op: MatrixOperator, backend: str, rust_kernel: bool) -> str:
    anchor = A if (op.dense is not None or is_host_input(A)) else None
    return resolve(anchor, backend=backend, rust_kernel=rust_kernel)


def _device_of(x):
    from array_api_compat import device

    return device(x)


def _check_symmetric(op: MatrixOperator, A, name: str = "A"):
    """Symmetry check for explicit matrices (operators are trusted)."""
    if op.dense is not None:
        xp, D = op.xp, op.dense
        gap = float(xp.linalg.vector_norm(D - D.T))
        size = float(xp.linalg.vector_norm(D))
    elif is_scipy_sparse(A):
        gap = float(scipy.sparse.linalg.norm(A - A.T))
        size = float(scipy.sparse.linalg.norm(A))
    else:
        return
    if gap > 1e3 * _eps(op) * max(size, 1e-300):
        raise ValueError(f"{name} must be symmetric: ||A - A^T||_F / ||A||_F = {gap / size:.2e}")


def _unit_rademacher(op: MatrixOperator, rng, k: int):
    n = op.shape[0]
    return _draw(op, rng, n, k, "rademacher") / math.sqrt(n)
