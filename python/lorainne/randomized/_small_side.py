"""The truncated SVD of a dense matrix whose block spans its small side (rank + oversamples >=
min(m, n)): the exact answer from the Gram matrix of that side, no random numbers.

A block of min(m, n) columns spans the whole range in one product, so every further pass of
subspace or block Krylov iteration is wasted; the sketch, its CholeskyQR (which breaks down and
falls back to Householder when A is rank deficient, as digits' constant-zero pixels make it) and
the Rayleigh-Ritz step then cost more than the SVD itself. Here, for m >= n (A^H otherwise):

1. ``G = A^H A`` (n x n, one pass, m n^2 flops; accumulated in float64/complex128 for float32
   input) and its eigendecomposition: the top-k eigenvectors V_k span the top right singular
   subspace up to ``sin(theta) <~ n eps ||A||_2^2 / (s_k^2 - s_{k+1}^2)``;
2. Rayleigh-Ritz on them: ``A V_k = Q R`` (CholeskyQR2, m x k), ``R = U_R S W^H``, so
   ``U = Q U_R`` and ``Vt = W^H V_k^H``: U is orthonormal to working precision whatever the
   conditioning of the Gram matrix, and ``||A - U S Vt||_2^2 <= s_{k+1}^2 + s_1^2 sin^2(theta)``.
   When the columns of A V_k are already orthogonal to working precision (checked on their k x k
   Gram matrix), that SVD is their normalization and the QR is skipped: the same A V_k V_k^H.

Squaring A in step 1 is what can cost accuracy: :func:`small_side_svd` returns None (the caller
runs its iteration instead) unless the bound above keeps the error within 1e-3 s_{k+1} (or at the
rounding level of A's dtype when s_{k+1} is at that level).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._conjugate import adjoint
from ._eigh_top import top_eigenpairs

# The error the Gram route may add to ||A - U S Vt||_2, relative to s_{k+1}.
RELATIVE_SLACK = 1e-3
# How far from orthogonal (in units of k eps) the columns of A V_k may be for their normalization to
# stand for the Rayleigh-Ritz step: CholeskyQR2 gave 0.4-0.7 k eps on digits (k = 10-40); digits' A V_k is at
# 1.5 k eps for k = 10 (normalized) and 2.3 k eps for k = 40 (falls back to the QR).
ORTHOGONALITY_SLACK = 2.0


def spans_small_side(size: int, shape: tuple[int, int]) -> bool:
    """Whether a block of ``size`` columns spans the whole range of an m x n matrix."""
    return size >= min(shape)


def small_side_svd(A: np.ndarray, rank: int, factor: Callable) -> tuple | None:
    """Top-``rank`` SVD (U, S, Vt) of the dense NumPy matrix A from the Gram matrix of its small
    side, or None when the Gram matrix's eigenvectors cannot be trusted to the slack above.
    ``factor(Y) -> (Q, R)`` is the caller's QR of a tall block (CholeskyQR2 with its fallbacks).
    """
    m, n = A.shape
    if m < n:  # A^H = U' S V'^H, so A = V' S U'^H
        out = small_side_svd(adjoint(np, A), rank, factor)
        if out is None:
            return None
        U, S, Vt = out
        return adjoint(np, Vt), S, adjoint(np, U)
    wide = np.promote_types(A.dtype, np.float64)  # float32 -> float64, complex64 -> complex128
    A_wide = A.astype(wide, copy=False)
    k = min(rank, n)
    # All eigenvalues ascending (for the gap test) and the top-k eigenvectors only (_eigh_top's fast
    # route for a real float64 Gram matrix, NumPy's eigh otherwise).
    eigenvalues, top_vectors = top_eigenpairs(adjoint(np, A_wide) @ A_wide, k)
    eigenvalues = np.maximum(eigenvalues[::-1], 0.0)
    top, below = eigenvalues[0], (eigenvalues[k] if k < n else 0.0)
    gap = eigenvalues[k - 1] - below
    if top == 0.0:  # A = 0: any orthonormal U and V do
        return None
    if not gap > 0.0:
        return None
    # Rounding in the Gram matrix (~ sqrt(m) eps ||A||^2, summed in random directions) and in eigh
    # (~ n eps ||G||), over the gap that separates the top k eigenvalues.
    sin_theta = 4 * (np.sqrt(m) + n) * np.finfo(np.float64).eps * top / gap
    floor = 10 * np.sqrt(n) * np.finfo(A.dtype).eps * np.sqrt(top)
    if np.sqrt(top) * sin_theta > max(RELATIVE_SLACK * np.sqrt(below), floor):
        return None
    V_k = np.ascontiguousarray(top_vectors[:, ::-1]).astype(A.dtype, copy=False)
    # (A V_k)^T as V_k^T A^T: k rows of m contiguous entries, which NumPy's BLAS forms and scales
    # faster than A V_k's m rows of k (0.7-0.8x the time on digits, k = 10).
    Yt = V_k.T @ A.T
    normalized = orthogonal_rows(Yt)
    if normalized is not None:  # A V_k = U diag(S) already: its Rayleigh-Ritz rotation is the identity
        Ut, S, order = normalized
        return Ut.T, S, adjoint(np, V_k if order is None else V_k[:, order])
    Q, R = factor(np.ascontiguousarray(Yt.T))
    U_R, S, Wh = np.linalg.svd(R)
    return Q @ U_R, S, Wh @ adjoint(np, V_k)


def orthogonal_rows(Yt: np.ndarray) -> tuple | None:
    """``(Ut, S, order)`` with ``Yt[order] = diag(S) Ut`` (order None: as is), S nonincreasing, when
    the rows of Yt are orthogonal to working precision (``|u_i^H u_j| <= ORTHOGONALITY_SLACK k eps``
    for the rows u_i of Ut); else None. Then ``Ut`` (rows) with S and the permutation ``order`` is
    the SVD of Yt.

    Rows that are orthogonal up to the rounding of an eigendecomposition come from a Rayleigh-Ritz
    step already done: here Yt = (A V_k)^T with V_k the Gram matrix's eigenvectors, in block Krylov's
    Gram route C = U_Bk^H B (``_krylov.gram_route_svd``). Normalizing them gives the approximation the
    QR route gives (A V_k V_k^H; Q U_Bk C) and skips the QR and the small SVD (on digits, their
    CholeskyQR2, SVD of R and Q U_R: ~0.17 of 1.2 ms, ``benches/RESULTS_randomized.md``).
    """
    k = Yt.shape[0]
    gram = Yt @ adjoint(np, Yt)  # the conjugate of (A V_k)^H (A V_k): same moduli, same diagonal
    squares = gram.diagonal().real
    if not squares.min() > 0.0:
        return None
    norms = np.sqrt(squares)
    cosines = np.abs(gram) / norms[:, None] / norms[None, :]
    np.fill_diagonal(cosines, 0.0)
    if cosines.max() > ORTHOGONALITY_SLACK * k * np.finfo(Yt.dtype).eps:
        return None
    order = None
    if np.any(norms[1:] > norms[:-1]):
        order = np.argsort(-norms, kind="stable")
        Yt, norms = Yt[order], norms[order]
    return Yt / norms[:, None].astype(Yt.dtype), norms.astype(np.finfo(Yt.dtype).dtype), order
