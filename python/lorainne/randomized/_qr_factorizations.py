"""QR factorizations of a whole matrix: blocked Householder QR and CholeskyQR2 (public entry points).

Each validates at the boundary, picks a backend from its input (:func:`lorainne._backend.resolve`)
and runs either the Rust kernel (NumPy input) or the xp reference in :mod:`lorainne._qr`.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import _qr
from .._backend import core, resolve
from .._exact_scaling import rescaled_array, times_power_of_two
from .._validation import as_float_array, check_int, check_n_threads

logger = logging.getLogger("lorainne")


def _as_host_contiguous(A):
    """A NumPy array the Rust kernels read efficiently (C or F order; copies only if strided)."""
    if A.flags.c_contiguous or A.flags.f_contiguous:
        return A
    return np.ascontiguousarray(A)


def householder_qr(A, *, block_size: int | None = None, backend: str = "auto", n_threads: int | None = None):
    """Reduced QR factorization by blocked Householder reflections.

    ``A = Q @ R`` with ``Q`` (m, k) orthonormal columns and ``R`` (k, n) upper triangular with a
    nonnegative (real) diagonal, k = min(m, n); complex input gives ``Q^H Q = I``. On NumPy input
    (real or complex) the Rust kernel (faer's blocked Householder QR) runs; on other arrays the
    xp reference factors panels column by column and updates the trailing matrix in compact-WY
    form (three matmuls per panel), so the GPU does the bulk of the work in matmuls. Entries
    beyond about 1e+-77 (float64) are handled exactly: 2**k A is factored for a power of two and
    R scaled back (Q is the same).

    Parameters
    ----------
    A : array of shape (m, n)
        float32, float64, complex64 or complex128 (integers are promoted to float64). Not modified.
    block_size : int, optional
        Panel width. Default: chosen from the shape (Rust) or 32 (xp).
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
        See :func:`lorainne.backends`.
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores).

    Returns
    -------
    Q : array of shape (m, k)
    R : array of shape (k, n)

    Raises
    ------
    ValueError
        NaN/Inf, ndim != 2, an empty array, block_size < 1.
    TypeError
        Object or float16 dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import householder_qr
    >>> A = np.arange(12.0).reshape(4, 3) + np.eye(4, 3)
    >>> Q, R = householder_qr(A)
    >>> bool(np.allclose(Q @ R, A)), bool(np.allclose(Q.T @ Q, np.eye(3)))
    (True, True)
    """
    A = as_float_array(A, "A", ndim=2, allow_complex=True)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", low=1)
    n_threads = check_n_threads(n_threads)
    chosen = resolve(A, backend=backend)
    A, k = rescaled_array(A)
    if chosen == "rust":
        Q, R = core().householder_qr(_as_host_contiguous(A), block_size, n_threads)
    else:
        Q, R = _qr.householder_qr_xp(A, block_size)
    return Q, times_power_of_two(R, -k)


def cholesky_qr2(A, *, backend: str = "auto", n_threads: int | None = None):
    """Reduced QR factorization of a tall matrix by CholeskyQR2, with automatic fallbacks.

    CholeskyQR2 (two passes of ``G = X^T X = R^T R``, ``X <- X R^{-1}``) is the fastest
    orthonormalization of a tall-skinny matrix: all of its work is matmuls. It breaks down when
    cond(A) exceeds about u^{-1/2} (1e4 in float32, 1e8 in float64), so the result is checked:
    if a Cholesky factorization fails, or the last pass did not start from a Gram matrix close
    to the identity (so Q would not be orthonormal to working precision), a shifted CholeskyQR3
    (Fukaya et al. 2020; stable up to cond(A) ~ 1/u) is run, and Householder QR as a last resort
    (rank-deficient input). The path taken is logged at DEBUG level on the ``lorainne`` logger.
    Entries beyond about 1e+-77 (float64) are handled exactly: 2**k A is factored for a power of
    two and R scaled back (the Gram matrix would overflow or underflow otherwise).

    Parameters
    ----------
    A : array of shape (m, n), m >= n
        float32, float64, complex64 or complex128 (integers are promoted to float64). Complex
        input uses Gram matrices A^H A (Rust kernel on NumPy input, xp reference elsewhere). Not
        modified.
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores).

    Returns
    -------
    Q : array of shape (m, n)
        Orthonormal columns: ||Q^H Q - I|| is a small multiple of the unit roundoff.
    R : array of shape (n, n)
        Upper triangular with a nonnegative (real) diagonal.

    Raises
    ------
    ValueError
        NaN/Inf, ndim != 2, an empty array, or m < n.
    TypeError
        Object or float16 dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import cholesky_qr2
    >>> A = np.random.default_rng(0).standard_normal((1000, 20))
    >>> Q, R = cholesky_qr2(A)
    >>> float(np.linalg.norm(Q.T @ Q - np.eye(20))) < 1e-13
    True
    >>> bool(np.allclose(Q @ R, A))
    True
    """
    A = as_float_array(A, "A", ndim=2, allow_complex=True)
    m, n = A.shape
    if m < n:
        raise ValueError(
            f"cholesky_qr2 needs a tall matrix (m >= n), got A of shape {tuple(A.shape)}; use householder_qr"
        )
    n_threads = check_n_threads(n_threads)
    chosen = resolve(A, backend=backend)
    A, k = rescaled_array(A)
    if chosen == "rust":
        Q, R, method = core().cholesky_qr2(_as_host_contiguous(A), n_threads)
    else:
        Q, R, method = _qr.cholesky_qr2_xp(A)
    logger.debug("cholesky_qr2 on %s: %s", tuple(A.shape), _qr.METHOD_NAMES[method])
    return Q, times_power_of_two(R, -k)
