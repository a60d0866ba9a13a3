"""CQRRPT: CholeskyQR with randomization and pivoting (Melnichenko, Balabanov, Murray, Demmel,
Mahoney and Luszczek 2023; RandLAPACK's CQRRPT driver) for tall matrices.

1. Sketch: ``A_sk = S A`` with a sparse sign embedding S (d = ceil(gamma n) rows, 4 nonzeros
   +-1/2 per column of S, one in each of 4 blocks of d/4 rows: the block construction of
   OSNAP, Kane and Nelson 2014, whose rows are distinct by construction): O(4 m n) work, and S is
   a subspace embedding of range(A) with high probability, so the column geometry of A_sk is that
   of A up to a small distortion. Four nonzeros is RandLAPACK's setting for CQRRPT (its runtime
   benchmarks, d = 1.25 n); the sketch only preconditions, so a distortion of a few units costs
   nothing in accuracy, and eight nonzeros made S A ~1.5x slower (20000 x 100).
2. Pivot on the sketch: ``A_sk P = Q_sk R_sk`` by LAPACK's QR with column pivoting on the small
   d x n matrix; the numerical rank k is read from the diagonal of R_sk.
3. Precondition and orthonormalize: ``M = A P[:, :k] R_sk[:k, :k]^{-1}`` is well conditioned (the
   sketch's R is a preconditioner), so one CholeskyQR step ``M^T M = R_c^T R_c``, ``Q = M R_c^{-1}``
   is stable; ``R = R_c R_sk[:k, :]``.

All of the work on the m x n matrix is one sparse product, the gather of the pivoted columns and
three BLAS-3 calls (TRMM, SYRK, TRMM), against the BLAS-2-bound column pivoting of ``scipy.linalg.qr(pivoting=True)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack
import scipy.sparse

from .._validation import as_float_array, check_random_state

SKETCH_NONZEROS = 4


class CQRRPTResult(NamedTuple):
    """``A[:, pivots] ~ Q @ R``; unpacks as ``(Q, R, pivots, rank)``.

    Q (m, k) has orthonormal columns (Fortran-ordered), R (k, n) is upper trapezoidal (in the
    pivoted column order), ``pivots`` (n,) is a permutation of range(n), and ``rank`` = k is the
    numerical rank.
    """

    Q: Any
    R: Any
    pivots: Any
    rank: int


def _sparse_sign_sketch(rng: np.random.Generator, d: int, m: int, dtype) -> scipy.sparse.csc_matrix:
    """D x m sparse sign embedding: ``nnz`` distinct rows per column, entries +-1/sqrt(nnz).

    Block construction: the d rows are cut into ``nnz`` blocks and each column has one nonzero
    in each block, so its rows are distinct without the rejection loop of uniform sampling
    (which cost a sort of the m x nnz row indices, a sixth of the whole factorization at 20000 x 100).
    """
    nnz = min(SKETCH_NONZEROS, d)
    bounds = (np.arange(nnz + 1) * d) // nnz  # block b is rows [bounds[b], bounds[b + 1])
    widths = np.diff(bounds)
    index = np.int32 if m * nnz < 2**31 else np.int64  # SciPy's own index type: no conversion copy
    # One uniform draw per nonzero gives its row and its sign: floor(u * 2 w) = 2 row + sign bit,
    # both uniform and independent (the builder's cost halved against a second draw for the signs).
    draws = (rng.random((m, nnz)) * (2 * widths)[None, :]).astype(index)
    draws = np.minimum(draws, (2 * widths - 1).astype(index)[None, :])  # guards a random() rounding up
    rows = (draws >> 1) + bounds[:-1].astype(index)[None, :]
    scale = dtype.type(1.0 / math.sqrt(nnz))
    data = np.where((draws & 1).ravel() > 0, -scale, scale)
    indptr = np.arange(0, m * nnz + 1, nnz, dtype=index)
    return scipy.sparse.csc_matrix((data, rows.ravel(), indptr), shape=(d, m))


def _upper_inverse(R):
    inverse, info = scipy.linalg.lapack.get_lapack_funcs("trtri", (R,))(R, lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular factor (trtri info {info})")
    return inverse


def cqrrpt(A, *, sketch_factor: float = 1.25, rank_tol: float | None = None, random_state=None) -> CQRRPTResult:
    """Randomized QR with column pivoting of a tall matrix (CQRRPT).

    Parameters
    ----------
    A : ndarray (m, n), m >= n
        float32 or float64 NumPy array (integers are promoted). Not modified.
    sketch_factor : float, default 1.25
        gamma >= 1: the sketch has max(n + 1, ceil(gamma n)) rows, capped by m.
    rank_tol : float, optional
        Columns are kept while ``|R_sk[j, j]| > rank_tol * |R_sk[0, 0]|``. Default 10 n eps.
    random_state : None, int, numpy Generator or RandomState

    Returns
    -------
    CQRRPTResult
        ``(Q, R, pivots, rank)`` with ``A[:, pivots] ~ Q @ R``.

    Raises
    ------
    ValueError
        NaN/Inf, ndim != 2, empty A, m < n, sketch_factor < 1, rank_tol outside (0, 1).
    TypeError
        Complex, object or float16 dtypes; a non-NumPy array (this driver is NumPy-only).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.randomized import cqrrpt
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((2000, 30)) @ np.diag(10.0 ** (-np.arange(30.0) / 3)) @ rng.standard_normal((30, 40))
    >>> Q, R, piv, k = cqrrpt(A, random_state=0)
    >>> k, Q.shape, R.shape
    (30, (2000, 30), (30, 40))
    >>> bool(np.linalg.norm(A[:, piv] - Q @ R) <= 1e-12 * np.linalg.norm(A))
    True
    """
    if not isinstance(A, np.ndarray):
        raise TypeError(f"cqrrpt takes a NumPy array, got {type(A).__name__}")
    A = as_float_array(A, "A", ndim=2)
    m, n = A.shape
    if m < n:
        raise ValueError(f"cqrrpt needs a tall matrix (m >= n), got A of shape {A.shape}")
    if isinstance(sketch_factor, bool) or not isinstance(sketch_factor, (int, float)) or not sketch_factor >= 1:
        raise ValueError(f"sketch_factor must be a number >= 1, got {sketch_factor!r}")
    eps = float(np.finfo(A.dtype).eps)
    if rank_tol is None:
        rank_tol = 10 * n * eps
    elif isinstance(rank_tol, bool) or not isinstance(rank_tol, (int, float)) or not 0 < rank_tol < 1:
        raise ValueError(f"rank_tol must be a number in (0, 1), got {rank_tol!r}")
    rng = check_random_state(random_state)
    d = min(m, max(n + 1, math.ceil(sketch_factor * n)))
    S = _sparse_sign_sketch(rng, d, m, A.dtype)
    A_sk = np.asarray(S @ A)
    R_sk, pivots = scipy.linalg.qr(A_sk, mode="r", pivoting=True, check_finite=False)
    R_sk = R_sk[: min(d, n), :]
    diag = np.abs(np.diagonal(R_sk))
    if diag.size == 0 or diag[0] == 0:  # A = 0
        k = 0
    else:
        k = int(np.count_nonzero(diag > rank_tol * diag[0]))
        k = max(k, 1)
    if k == 0:
        return CQRRPTResult(np.zeros((m, 0), A.dtype), np.zeros((0, n), A.dtype), pivots, 0)
    R11 = R_sk[:k, :k]
    # The pivoted columns gathered into a Fortran-ordered copy (the rows of the transposed view):
    # BLAS's right-side trmm on it ran ~1.7x faster than the left-side transposed trmm on a C-ordered
    # gather, which more than pays for the strided gather (tail of the factorization 46 -> 36 ms at
    # 20000 x 100, 812 -> 685 ms at 50000 x 300, 1 thread, interleaved best of 9, load 5.6-6.2).
    A_k = A.T[pivots[:k]].T
    # The triangular inverses (LAPACK trtri, k x k) turn the two solves on the tall matrix into
    # triangular multiplies (BLAS trmm, in place) and the Gram matrix is one syrk: 3 m k^2 flops in
    # BLAS-3 kernels for the whole orthonormalization.
    trmm, syrk = scipy.linalg.blas.get_blas_funcs(("trmm", "syrk"), (A_k,))
    M = trmm(1.0, _upper_inverse(R11), A_k, side=1, lower=0, trans_a=0, overwrite_b=1)  # A_k R11^-1
    G = syrk(1.0, M, trans=1, lower=0)  # upper triangle of M^T M (all that Cholesky reads)
    try:
        R_c = scipy.linalg.cholesky(G, lower=False, check_finite=False)
        Q = trmm(1.0, _upper_inverse(R_c), M, side=1, lower=0, trans_a=0, overwrite_b=1)
    except np.linalg.LinAlgError:  # a sketch that failed to embed (probability ~0): Householder instead
        Q, R_c = np.linalg.qr(M)
    R = R_c @ R_sk[:k, :]
    return CQRRPTResult(Q.astype(A.dtype, copy=False), R.astype(A.dtype, copy=False), pivots, k)
