"""Complex Hermitian A for :func:`trace`: the estimators run on the real symmetric embedding.

A = X + i Y Hermitian (X symmetric, Y antisymmetric) has the real symmetric embedding
E = [[X, -Y], [Y, X]] of size 2n: each eigenvalue of A appears twice in E (E is PSD when A is), so
tr(A) = tr(E) / 2, and one product with E is one complex product with A: E [u; v] = [Re w; Im w],
w = A (u + i v). Every estimator of tr(A) thus runs unchanged on E and its estimate and error
estimate are halved; the products counted are complex products with A. The price: E's dominant
eigenspaces have twice A's dimension, so the low-rank parts of Hutch++/XTrace/XNysTrace capture
A's top k eigenvalues with 2k vectors instead of k (a native complex sketch would need k).
"""

from __future__ import annotations

import scipy.sparse.linalg

from .._backend import is_scipy_sparse
from .._operators import MatrixOperator
from ._common import TraceEstimate, _eps, _Products


def check_hermitian(op: MatrixOperator, A, name: str = "A") -> None:
    """A complex explicit matrix must be Hermitian (operators are trusted): tr(A) is then real."""
    if op.dense is not None:
        xp, D = op.xp, op.dense
        gap = float(xp.linalg.vector_norm(D - xp.conj(D).T))
        size = float(xp.linalg.vector_norm(D))
    elif is_scipy_sparse(A):
        gap = float(scipy.sparse.linalg.norm(A - A.conj().T))
        size = float(scipy.sparse.linalg.norm(A))
    else:
        return
    if gap > 1e3 * _eps(op) * max(size, 1e-300):
        raise ValueError(
            f"{name} is complex but not Hermitian (||A - A^H||_F / ||A||_F = {gap / size:.2e}): trace "
            "takes complex A only when Hermitian (its trace is then real)"
        )


def real_embedding(op: MatrixOperator) -> MatrixOperator:
    """The operator E = [[Re A, -Im A], [Im A, Re A]] (2n x 2n, real) of a complex A."""
    xp, n = op.xp, op.shape[0]
    real = xp.real(xp.zeros((1,), dtype=op.dtype, device=op.device)).dtype  # complex64 -> float32

    def matmat(X):
        Z = xp.astype(X[:n, :], op.dtype) + xp.astype(X[n:, :], op.dtype) * 1j
        W = op.matmat(Z)
        return xp.concat([xp.real(W), xp.imag(W)], axis=0)

    return MatrixOperator(
        shape=(2 * n, 2 * n),
        dtype=real,
        xp=xp,
        device=op.device,
        matmat=matmat,
        rmatmat=matmat,  # E is symmetric
        frobenius_norm=lambda: None,
    )


def exact_trace(op: MatrixOperator, budget: int) -> TraceEstimate:
    """tr(A) of a complex A from the n products A e_j (Re of the diagonal), in blocks."""
    xp, n = op.xp, op.shape[0]
    products = _Products(op, budget)
    total, block = 0.0, 256
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = xp.arange(n, device=op.device)[:, None]
        cols = xp.arange(start, stop, device=op.device)[None, :]
        E = xp.astype(rows == cols, op.dtype)
        total += float(xp.sum(xp.astype(xp.real(products(E) * E), xp.float64)))
    return TraceEstimate(total, 0.0, products.used)


def halved(estimate: TraceEstimate) -> TraceEstimate:
    """tr(A) = tr(E) / 2 (the products are counted once: one product with E is one with A)."""
    return TraceEstimate(estimate.value / 2, estimate.error_estimate / 2, estimate.n_matvec)
