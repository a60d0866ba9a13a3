"""Block Krylov subspace (Musco and Musco 2015) for the randomized SVD, with Rayleigh-Ritz.

The Krylov space ``span{A Omega, (A A^T) A Omega, ..., (A A^T)^q A Omega}`` is built one block
at a time and re-orthonormalized by blocks (each new block is projected off the basis twice, then
orthonormalized by CholeskyQR2 with its fallbacks), so rounding never collapses it the way the
plain power sequence would. Every product is kept for the Rayleigh-Ritz step:

* ``Z_j = A^T Q_j`` is both the seed of the next block (``A Z_j``) and the rows ``Q_j^T A`` of the
  projected matrix ``B = Q^T A``, so Rayleigh-Ritz costs no extra pass over A;
* ``A Z_j`` (before deflation) gives ``A V = [A Z_0, ..., A Z_j] U_B diag(S)^-1`` for free, hence
  the residual norms of every Ritz triplet without another pass.

Depth q (q + 1 blocks) costs 2 q + 2 passes over A, as q power iterations of subspace iteration
do, but keeps every block instead of the last one only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import device as array_device
from scipy.linalg.blas import get_blas_funcs
from scipy.linalg.lapack import get_lapack_funcs

from .._backend import is_dask_array, numpy_dtype
from .._conjugate import abs2, adjoint
from ._eigh_top import top_eigenpairs
from ._range_finder import _Products
from ._small_side import orthogonal_rows


class _Columns:
    """Blocks of columns side by side, and all of them as one array. NumPy blocks are copied into one
    Fortran-ordered buffer as they come (``capacity`` columns, grown by doubling up to ``limit``), so
    all of them together is a view of it: no concatenation of the whole basis per block, and the
    F-ordered operand BLAS takes without a copy. Other arrays are concatenated when asked (cached).
    """

    def __init__(self, xp: Any, capacity: int = 0, limit: int | None = None):
        self.xp, self.blocks, self.width = xp, [], 0
        self._capacity, self._limit = capacity, limit
        self._buffer = None
        self._joined = None

    def append(self, block) -> None:
        b = int(block.shape[1])
        if isinstance(block, np.ndarray):
            end = self.width + b
            if self._buffer is None or self._buffer.shape[1] < end:
                grown = 2 * end if self._limit is None else max(end, min(2 * end, self._limit))
                buffer = np.empty((block.shape[0], max(self._capacity, grown)), dtype=block.dtype, order="F")
                if self._buffer is not None:
                    buffer[:, : self.width] = self._buffer[:, : self.width]
                self._buffer = buffer
            self._buffer[:, self.width : end] = block
            block = self._buffer[:, self.width : end]
        self.blocks.append(block)
        self.width += b

    def all(self):
        if self._buffer is not None:
            return self._buffer[:, : self.width]
        if len(self.blocks) == 1:
            return self.blocks[0]
        if self._joined is None or self._joined.shape[1] != self.width:
            self._joined = self.xp.concat(self.blocks, axis=1)
        return self._joined


def _minus_product(matmul: Callable, Y, Q, C, overwrite: bool):
    """Y - Q C. On NumPy, one call of BLAS's gemm with beta = 1 (on Y itself when ``overwrite``: a
    temporary of the caller's) instead of a product and a subtraction that each allocate an m x b
    array: 0.21 against 0.43 ms at 2000 x 50 by 50, 0.37 against 0.84 at 2000 x 100 by 100 (1 thread).
    """
    if (
        isinstance(Y, np.ndarray)
        and isinstance(Q, np.ndarray)
        and isinstance(C, np.ndarray)
        and Y.dtype.char in "fdFD"
        and Q.dtype == Y.dtype == C.dtype
        and Y.flags.f_contiguous
    ):
        gemm = get_blas_funcs("gemm", (Q, C, Y))
        return gemm(-1.0, Q, C, beta=1.0, c=Y, overwrite_c=overwrite)
    return Y - matmul(Q, C)


def _frobenius(X: np.ndarray) -> float:
    """||X||_F by BLAS's nrm2, which scales as it sums: block Krylov's A Z is of the size of ||A||^2 and
    R^-1 of a nearly exhausted block large, whose squares overflow where NumPy's norm (a dot) would.
    """
    return float(get_blas_funcs("nrm2", (X,))(X.ravel(order="K")))


class BlockKrylov:
    """The growing block Krylov basis of one matrix (xp arrays, any backend via ``products``).
    ``capacity``: the columns the caller expects the basis to reach (a hint for NumPy's buffers).
    """

    def __init__(self, products: _Products, xp: Any, shape: tuple[int, int], dtype: Any, start, capacity: int = 0):
        self.products, self.xp, self.shape, self.dtype = products, xp, shape, dtype
        self.eps = float(np.finfo(numpy_dtype(dtype)).eps)
        self._Q = _Columns(xp, capacity, min(shape))  # orthonormal blocks Q_j (m, b_j)
        self._Z = _Columns(xp, capacity, min(shape))  # Z_j = A^T Q_j (n, b_j)
        self.AZ_blocks: list = []  # A Z_j (m, b_j), before deflation
        self.passes = 1
        self._next = start  # the next block to orthonormalize into the basis (A Omega at first)

    @property
    def Q_blocks(self) -> list:
        return self._Q.blocks

    @property
    def Z_blocks(self) -> list:
        return self._Z.blocks

    @property
    def size(self) -> int:
        return self._Q.width

    def _basis(self):
        return self._Q.all()

    def Z(self):
        """[Z_0, ..., Z_j] = A^H Q (n, size): B^H for B = Q^H A."""
        return self._Z.all()

    def projected_svd(self, k: int | None = None):
        """Top-k SVD of B = Q^T A = Z^T: Z = Q_z R_z (CholeskyQR2 with fallbacks, n x L), then the SVD
        of the small L x L matrix R_z^T = U_B S W^T, so Vt = W^T Q_z^T (cheaper than the SVD of the
        L x n matrix B itself, and as accurate: Q_z is orthonormal to working precision). Only the
        top k rows of Vt are formed (2 n L k flops instead of 2 n L^2). Returns (Zs, U_B, S, Vt) with
        all L columns of U_B and values of S.
        """
        xp = self.xp
        Zs = self.Z()
        Qz, Rz = self.products.qr(Zs)
        if Rz is None:  # Dask: R stays on the workers; Q_z^T Z is R_z up to rounding
            Rz = self.products.matmul(adjoint(xp, Qz), Zs)
        Ub, S, Wt = xp.linalg.svd(adjoint(xp, Rz), full_matrices=False)
        k = int(S.shape[0]) if k is None else min(k, int(S.shape[0]))
        return Zs, Ub, S, self.products.matmul(Wt[:k, :], adjoint(xp, Qz))

    def _deflate(self, Y):
        if not self.Q_blocks:
            return Y
        Q, mm = self._basis(), self.products.matmul
        # Twice is enough (Giraud, Langou and Rozloznik 2005); once left U^T U - I at 2e-13 - 4e-11 on
        # the bench's matrices (1e-14 twice). The second pass updates the first one's copy in place.
        for overwrite in (False, True):
            Y = _minus_product(mm, Y, Q, mm(adjoint(self.xp, Q), Y), overwrite)
        return Y

    def _add_block(self) -> bool:
        """Orthonormalize the pending block into the basis; False when the basis is full."""
        m, n = self.shape
        room = min(m, n) - self.size
        if room <= 0 or self._next is None:
            return False
        Y = self._next[:, :room] if self._next.shape[1] > room else self._next
        Qb, Rb = (self.products.basis_qr or self.products.qr)(self._deflate(Y))
        if self.Q_blocks and not self._surely_orthogonal(Y, Rb):
            Qb = self._orthogonal_to_basis(Qb)
        self._Q.append(Qb)
        self._next = None
        return True

    def _orthogonal_to_basis(self, Qb):
        """Qb (orthonormal) made orthogonal to the basis. When the deflated block was mostly rounding
        (an exhausted Krylov space, or entries of A 2**200 apart, whose small part a block cannot
        resolve), the QR's completion can lie in the basis again: the directions of Qb outside the
        basis are kept (singular values of its deflation above 1/2) and the others replaced by
        Gaussian directions projected off (any direction is as good once the space is exhausted; a
        fixed seed keeps the answer reproducible). LinAlgError rather than a basis that is not
        orthonormal.
        """
        xp, mm = self.xp, self.products.matmul
        # Repaired where two projections would have left more than rounding (a block through the normal
        # path: ~1e-16); an error only past sqrt(eps), the bound _surely_orthogonal certifies.
        if self._overlap(Qb) <= 64 * self.eps * math.sqrt(self.size + int(Qb.shape[1])):
            return Qb
        W, sigma, _ = xp.linalg.svd(self._deflate(Qb), full_matrices=False)
        kept = W[:, : int(xp.sum(xp.astype(sigma > 0.5, xp.int64)))]  # sigma nonincreasing
        missing = int(Qb.shape[1]) - int(kept.shape[1])
        if missing:
            host = np.random.default_rng(self.size).standard_normal((int(Qb.shape[0]), missing))
            fresh = xp.asarray(host.astype(numpy_dtype(self.dtype)), device=array_device(Qb))
            both = xp.concat([self._basis(), kept], axis=1)
            for _ in range(2):
                fresh = fresh - mm(both, mm(adjoint(xp, both), fresh))
            kept = xp.concat([kept, fresh], axis=1)
        Qb = self.products.orthonormalize(self._deflate(kept))
        overlap = self._overlap(Qb)
        if overlap > math.sqrt(self.eps):
            raise np.linalg.LinAlgError(f"block Krylov: a new block stays {overlap:.1e} from orthogonal to the basis")
        return Qb

    def _overlap(self, Qb) -> float:
        """The largest |Q^H Q_b|: how far the block is from orthogonal to the basis."""
        xp = self.xp
        return float(xp.max(xp.abs(self.products.matmul(adjoint(xp, self._basis()), Qb))))

    def _surely_orthogonal(self, Y, R) -> bool:
        """Whether Q_b = Y_d R^-1 (Y_d: Y deflated twice) is orthogonal to the basis to sqrt(eps),
        without the 2 m L b flops of Q^T Q_b: Q^T Y_d is at most ~ L eps ||Y||_F after two projections,
        so ||Q^T Q_b|| <= L eps ||Y||_F / s_min(R), and s_min(R) (b x b) is cheap. False (check it)
        when R is not at hand (Dask) or too small.
        """
        if R is None:
            return False
        if isinstance(R, np.ndarray) and isinstance(Y, np.ndarray):  # without the array-API wrappers (~0.15 ms)
            norm = _frobenius(Y)
            bound = 10 * self.size * self.eps * norm
            # s_min(R) >= 1 / ||R^-1||_F (0.3-0.5 s_min on the bench's blocks): a triangular inverse
            # costs ~0.02 ms against the SVD's ~0.17 at b = 55; the SVD only when this bound falls short.
            if R.dtype.char in "fd" and R.shape[0]:
                inverse, info = get_lapack_funcs("trtri", (R,))(R, lower=0)
                if info == 0 and bound <= math.sqrt(self.eps) / _frobenius(inverse):
                    return True
            smallest = float(np.linalg.svd(R, compute_uv=False)[-1]) if R.shape[0] else 0.0
        else:
            xp = self.xp
            smallest = float(xp.min(xp.linalg.svdvals(R))) if R.shape[0] else 0.0
            norm = float(xp.linalg.matrix_norm(Y))  # Frobenius; vector_norm copied an F-ordered Y to flatten it
        return smallest > 0 and 10 * self.size * self.eps * norm <= math.sqrt(self.eps) * smallest

    def extend(self, *, last: bool = False) -> bool:
        """One more block: Q_j from the pending product, then Z_j = A^T Q_j and (unless ``last``)
        A Z_j: 2 passes (1 when last). False (nothing done) when the basis spans min(m, n) columns.
        """
        if not self._add_block():
            return False
        Z = self.products.rmatmat(self.Q_blocks[-1])
        self._Z.append(Z)
        self.passes += 1
        if not last:
            AZ = self.products.matmat(Z)
            self.AZ_blocks.append(AZ)
            self.passes += 1
            self._next = AZ
        return True

    def rayleigh_ritz(self, k: int):
        """Top-k Ritz triplets of the current basis: (U, S, Vt, residuals) with residuals[i] =
        sqrt(||A v_i - s_i u_i||^2 + ||A^T u_i - s_i v_i||^2) computed from stored products.
        """
        xp, mm = self.xp, self.products.matmul
        Zs, Ub, S, Vt = self.projected_svd(k)  # Zs = B^T = A^T Q
        k = int(Vt.shape[0])
        Ub, S = Ub[:, :k], S[:k]
        U = mm(self._basis(), Ub)
        # A^T u_i - s_i v_i: A^T Q Ub = B^T Ub = V S exactly up to rounding; computed all the same.
        right = mm(Zs, Ub) - adjoint(xp, Vt) * S[None, :]
        # A v_i = A B^T Ub_i / s_i = [A Z] Ub_i / s_i.
        AZ = xp.concat(self.AZ_blocks, axis=1)
        tiny = float(S[0]) * self.eps if k else 0.0
        safe = xp.where(S > tiny, S, xp.ones_like(S))
        left = mm(AZ, Ub) / safe[None, :] - U * S[None, :]
        left = xp.where((S > tiny)[None, :], left, xp.zeros_like(left))
        residuals = xp.sqrt(xp.sum(abs2(xp, left), axis=0) + xp.sum(abs2(xp, right), axis=0))
        return U, S, Vt, residuals

    def ritz_values(self):
        """All singular values of B = Q^T A (nonincreasing)."""
        return self.xp.linalg.svdvals(self.Z())


# The Gram route's extra squared error is at most ~2 ||E|| (E: the rounding of B B^T, ||E|| <~ L u s_1^2),
# against s_{k+1}^2: taken only where that is below 1e-6 s_{k+1}^2 (error/optimal raised by < 1e-6).
GRAM_ROUTE_MARGIN = 1e6


def gram_route_svd(products: _Products, xp: Any, Z, rank: int, eps: float):
    """Top-``rank`` SVD of B = Z^H (L x n, Z = A^H Q) through the L x L Gram matrix, or None.

    The eigenvectors U_B of B B^H = Z^H Z (n L^2 flops, an L x L ``eigh``) give the subspace; the
    SVD of the small C = U_Bk^H B (rank x n, through the CholeskyQR2 of C^H) gives U_C S Vt
    orthonormal and S to working precision, and U = Q U_Bk U_C. This replaces the CholeskyQR2 of
    the n x L matrix Z and the L x L SVD. Whatever U_Bk's rounding error, U S Vt is B projected on
    span(U_Bk), whose error is at most s_{k+1}^2 + 2 ||E|| (E: the Gram matrix's rounding): None
    (use the QR route) when that could be above 1e-6 s_{k+1}^2, in single precision (u L s_1^2 too
    large), or on Dask. On NumPy, when C's rows are already orthogonal to working precision (a flat
    spectrum: s_1 / s_k small), its SVD is their normalization (``_small_side.orthogonal_rows``).
    """
    L = int(Z.shape[1])
    if is_dask_array(Z) or eps > 1e-12 or rank >= L:
        return None
    # The array library's own product: NumPy sees Z^H Z and runs BLAS's syrk (0.54 against faer's
    # 0.71 ms at 1000 x 150, 1 thread).
    G = adjoint(xp, Z) @ Z
    G = (G + adjoint(xp, G)) / 2  # exactly Hermitian for eigh
    # All eigenvalues (ascending, for the gap test) and the top-rank eigenvectors only: the fast
    # route of _eigh_top on NumPy float64, the array library's eigh otherwise.
    w, Ub_top = top_eigenpairs(G, rank, xp)
    top, below = float(w[L - 1]), float(w[L - rank - 1])
    if not below > GRAM_ROUTE_MARGIN * 2 * L * eps * top:
        return None
    Ubk = xp.flip(Ub_top, axis=1)
    if isinstance(Z, np.ndarray):
        # C = U_Bk^H B has rows orthogonal up to eigh's rounding: when they are to working precision
        # its SVD is their normalization (the same U S Vt = Q U_Bk C), and C's QR and SVD are skipped.
        C = adjoint(np, Ubk) @ adjoint(np, Z)
        normalized = orthogonal_rows(C)
        if normalized is not None:
            Vt, S, order = normalized
            return (Ubk if order is None else Ubk[:, order]), S, Vt
        Ch = adjoint(np, C)  # real: a Fortran-ordered view, not a second product Z U_Bk
    else:
        Ch = products.matmul(Z, Ubk)
    # C^H = Z U_Bk = Q_c R_c (CholeskyQR2, n x rank), C = R_c^H Q_c^H: the rank x rank SVD of R_c^H
    # gives C's (LAPACK's SVD of the wide rank x n C ran 2-3x slower).
    Qc, Rc = products.qr(Ch)
    if Rc is None:
        return None
    Uc, S, Wt = xp.linalg.svd(adjoint(xp, Rc), full_matrices=False)
    return products.matmul(Ubk, Uc), S, products.matmul(Wt, adjoint(xp, Qc))


def block_krylov_svd(
    products: _Products, xp: Any, shape, dtype, start, rank: int, depth: int, *, gram_route: bool = True
):
    """Block Krylov SVD of depth ``depth`` (depth + 1 blocks, 2 depth + 2 passes): (U, S, Vt).

    ``gram_route=False`` keeps the QR route's Rayleigh-Ritz (the one ``lorainne._dask_graph``
    mirrors): with no sign convention applied afterwards, the two routes' signs differ.
    """
    krylov = BlockKrylov(products, xp, shape, dtype, start, capacity=(depth + 1) * int(start.shape[1]))
    for j in range(depth + 1):
        if not krylov.extend(last=j == depth):
            break
    Z = krylov.Z()
    gram = gram_route_svd(products, xp, Z, rank, krylov.eps) if gram_route else None
    if gram is not None:
        Ub, S, Vt = gram
        return products.matmul(krylov._basis(), Ub), S, Vt
    _, Ub, S, Vt = krylov.projected_svd(rank)
    return products.matmul(krylov._basis(), Ub[:, :rank]), S[:rank], Vt
