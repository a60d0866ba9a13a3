"""xp reference of the QR factorizations (array API only: runs on NumPy, CuPy, torch, ...).

Both return R with a nonnegative (real) diagonal, so the factorization is unique for full-rank input
and equals the Rust kernels' (``rust/core/src/randomized/qr.rs``) up to rounding. Complex input is
factored with conjugate transposes throughout (the reflectors are LAPACK's: H = I - tau v v^H with a
real beta); the real paths are unchanged (the helpers of ``_conjugate`` are no-ops on real arrays).
"""

from __future__ import annotations

import array_api_compat as compat
from array_api_compat import array_namespace

from ._conjugate import adjoint, conj, real_part, unit_phases

# Method codes shared with the Rust kernel.
CHOLESKY_QR2, SHIFTED_CHOLESKY_QR3, HOUSEHOLDER = 0, 1, 2
METHOD_NAMES = {CHOLESKY_QR2: "CholeskyQR2", SHIFTED_CHOLESKY_QR3: "shifted CholeskyQR3", HOUSEHOLDER: "Householder"}

# A Gram matrix this close to I (Frobenius) means the next CholeskyQR pass leaves Q orthonormal
# to working precision: its orthogonality error is O(u cond(X)^2) with cond(X)^2 <= 3.
_GRAM_ACCEPT = 0.5
_MAX_EXTRA_PASSES = 3
DEFAULT_BLOCK_SIZE = 32


def _upper(xp, W, k):
    """The upper trapezoid of the first k rows of W (the array API has no triu)."""
    rows = xp.arange(k, device=compat.device(W))[:, None]
    cols = xp.arange(W.shape[1], device=compat.device(W))[None, :]
    return xp.where(rows <= cols, W[:k, :], xp.zeros_like(W[:k, :]))


def _make_diagonal_nonnegative(xp, Q, R):
    """Q D, D^H R with D the unit phases of diag(R): Q R unchanged, diag(R) real and >= 0."""
    phases = unit_phases(xp, xp.linalg.diagonal(R[:, : R.shape[0]]))
    return Q * phases[None, :], R * conj(xp, phases)[:, None]


def householder_qr_xp(A, block_size: int | None = None):
    """Reduced blocked Householder QR: panels factored column by column, the trailing matrix
    updated by the compact-WY form I - V T V^H (three matmuls), Q formed the same way.
    """
    xp = array_namespace(A)
    m, n = A.shape
    k = min(m, n)
    dev = compat.device(A)
    nb = max(1, min(block_size or DEFAULT_BLOCK_SIZE, k))
    W = xp.asarray(A, copy=True)
    blocks = []
    for j0 in range(0, k, nb):
        b = min(nb, k - j0)
        panel = W[j0:, j0 : j0 + b]
        V = xp.zeros((m - j0, b), dtype=A.dtype, device=dev)
        T = xp.zeros((b, b), dtype=A.dtype, device=dev)
        for c in range(b):
            x = panel[c:, c]
            norm_x = xp.linalg.vector_norm(x)
            alpha = x[0]
            one = xp.ones_like(alpha)
            # beta is real (LAPACK's zlarfg), with the sign opposite to Re(alpha): no cancellation.
            sign = xp.where(real_part(xp, alpha) >= 0, one, -one)
            beta = -sign * xp.astype(norm_x, A.dtype)
            nonzero = norm_x > 0
            v = xp.where(nonzero, x / xp.where(nonzero, alpha - beta, one), xp.zeros_like(x))
            v[0] = one
            tau = xp.where(nonzero, (beta - alpha) / xp.where(nonzero, beta, one), xp.zeros_like(alpha))
            if c + 1 < b:  # H^H trailing, H = I - tau v v^H
                trailing = panel[c:, c + 1 :]
                panel[c:, c + 1 :] = trailing - (conj(xp, tau) * v)[:, None] * (conj(xp, v) @ trailing)[None, :]
            panel[c, c] = beta
            panel[c + 1 :, c] = xp.zeros_like(x[1:])
            V[c:, c] = v
            # Compact WY, H_1 ... H_c = I - V T V^H: T[:c, c] = -tau T[:c, :c] V[:, :c]^H v
            if c > 0:
                T[:c, c] = -tau * (T[:c, :c] @ (adjoint(xp, V[:, :c]) @ V[:, c]))
            T[c, c] = tau
        W[j0:, j0 : j0 + b] = panel
        if j0 + b < n:
            C = W[j0:, j0 + b :]
            W[j0:, j0 + b :] = C - V @ (adjoint(xp, T) @ (adjoint(xp, V) @ C))
        blocks.append((j0, V, T))
    R = _upper(xp, W, k)
    Q = xp.zeros((m, k), dtype=A.dtype, device=dev)
    Q[:k, :] = xp.eye(k, dtype=A.dtype, device=dev)
    for j0, V, T in reversed(blocks):
        C = Q[j0:, j0:]
        Q[j0:, j0:] = C - V @ (T @ (adjoint(xp, V) @ C))
    return _make_diagonal_nonnegative(xp, Q, R)


def solve_upper_right(B, R):
    """B R^{-1} for upper-triangular R, with the library's triangular solver where it has one."""
    xp = array_namespace(B)
    if compat.is_numpy_namespace(xp):
        from scipy.linalg import solve_triangular

        return solve_triangular(R, B.T, trans="T", lower=False, check_finite=False).T
    if compat.is_cupy_namespace(xp):
        from cupyx.scipy.linalg import solve_triangular

        return solve_triangular(R, B.T, trans="T", lower=False).T
    if compat.is_torch_namespace(xp):
        import torch

        return torch.linalg.solve_triangular(R, B, upper=True, left=False)
    return xp.linalg.solve(R.T, B.T).T


def _cholesky_pass(X, G, shift: float = 0.0):
    """One CholeskyQR pass: (X R^{-1}, R) with G + shift I = R^T R, or None on breakdown."""
    xp = array_namespace(X)
    if shift:
        G = G + shift * xp.eye(G.shape[0], dtype=G.dtype, device=compat.device(G))
    try:
        L = xp.linalg.cholesky(G)
    except Exception:  # numpy/torch raise on a non-positive pivot; CuPy returns NaN instead
        return None
    if not bool(xp.all(xp.isfinite(L))) or not bool(xp.all(real_part(xp, xp.linalg.diagonal(L)) > 0)):
        return None
    R = adjoint(xp, L)
    return solve_upper_right(X, R), R


def _refine(X, R):
    """Extra CholeskyQR passes until one started from a Gram matrix near I."""
    xp = array_namespace(X)
    identity = xp.eye(X.shape[1], dtype=X.dtype, device=compat.device(X))
    for _ in range(_MAX_EXTRA_PASSES):
        G = adjoint(xp, X) @ X
        close = float(xp.linalg.vector_norm(G - identity)) <= _GRAM_ACCEPT
        result = _cholesky_pass(X, G)
        if result is None:
            return None
        X, R_pass = result
        R = R_pass @ R
        if close:
            return (X, R) if bool(xp.all(xp.isfinite(X))) else None
    return None


def cholesky_qr2_xp(A):
    """CholeskyQR2 with fallbacks: returns (Q, R, method code). A must be tall (m >= n)."""
    xp = array_namespace(A)
    m, n = A.shape
    G = adjoint(xp, A) @ A
    first = _cholesky_pass(A, G)
    if first is not None:
        refined = _refine(*first)
        if refined is not None:
            return (*refined, CHOLESKY_QR2)
    # Shifted CholeskyQR (Fukaya, Kannan, Nakatsukasa, Yamamoto, Yanagisawa 2020):
    # s = 11 (m n + n (n + 1)) u ||A||_F^2 keeps Cholesky alive up to cond(A) ~ 1/u.
    unit_roundoff = float(xp.finfo(A.dtype).eps) / 2
    trace = float(xp.sum(real_part(xp, xp.linalg.diagonal(G))))
    shift = 11.0 * (m * n + n * (n + 1)) * unit_roundoff * trace
    if shift > 0:
        first = _cholesky_pass(A, G, shift)
        if first is not None:
            refined = _refine(*first)
            if refined is not None:
                return (*refined, SHIFTED_CHOLESKY_QR3)
    return (*householder_qr_xp(A), HOUSEHOLDER)


def cholesky_qr2_blas(Y):
    """CholeskyQR2 of a real NumPy Y (m >= n > 0) through BLAS and LAPACK, R^{-1} applied as a
    triangular product (``trtri`` then ``trmm``) rather than a triangular solve: (Q, R), or None when
    Y is not such an array or a pass fails (the caller then runs ``cholesky_qr2`` with its fallbacks).

    As in ``cholesky_qr2``, the second pass must start from a Gram matrix within ``_GRAM_ACCEPT`` of I,
    so Q is orthonormal to working precision. The explicit inverse leaves Q R - Y at u cond(Y) ||Y||
    (a solve: u ||Y||): for a basis (Q alone matters) such as block Krylov's, not where R's singular
    values are the answer. OpenBLAS's ``trsm`` of m x n by n x n ran at 0.25x the rate of ``trmm``
    (2000 x 50, 1 thread): 0.9-1.0 against the Rust kernel's 1.4 ms for the whole factorization.
    """
    import numpy as np
    from scipy.linalg.blas import get_blas_funcs
    from scipy.linalg.lapack import get_lapack_funcs

    if not (isinstance(Y, np.ndarray) and Y.ndim == 2 and Y.dtype.char in "fd" and Y.shape[0] >= Y.shape[1] > 0):
        return None
    syrk, trmm = get_blas_funcs(("syrk", "trmm"), (Y,))
    potrf, trtri = get_lapack_funcs(("potrf", "trtri"), (Y,))
    X, R = np.array(Y, order="F"), None  # this call's own copy, updated in place
    for second in (False, True):
        G = syrk(1.0, X, trans=1)  # the upper triangle of X^T X
        if second:
            diagonal, strict = np.diagonal(G), np.triu(G, 1)
            distance2 = float(np.sum((diagonal - 1.0) ** 2) + 2.0 * np.sum(strict * strict))
            if not distance2 <= _GRAM_ACCEPT**2:  # NaN included
                return None
        U, info = potrf(G, lower=0, overwrite_a=1, clean=1)
        if info != 0 or not (np.all(np.isfinite(np.diagonal(U))) and np.all(np.diagonal(U) > 0)):
            return None
        inverse, info = trtri(U, lower=0)
        if info != 0 or not np.all(np.isfinite(inverse)):
            return None
        X = trmm(1.0, inverse, X, side=1, lower=0, overwrite_b=1)
        R = U if R is None else trmm(1.0, U, R, side=0, lower=0)
    return X, R
