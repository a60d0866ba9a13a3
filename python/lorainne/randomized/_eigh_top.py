"""The top eigenpairs of a small dense symmetric matrix, faster than a full ``eigh``.

The randomized SVD's Gram routes (``_krylov.gram_route_svd``, ``_small_side.small_side_svd``) use
all eigenvalues of an L x L Gram matrix (for their gap tests) but only its top-k eigenvectors.
LAPACK's ``dsyevd`` spends most of its time on the tridiagonal stage for all L vectors (and its
subset drivers ``dsyevr``/``dsyevx`` ran slower still, ``benches/RESULTS_randomized.md``). Here:

1. ``dsytrd`` (SciPy's LAPACK): G = Q T Q^T, T tridiagonal;
2. ``lorainne._core.tridiagonal_eigh_top`` (``rust/core/src/randomized/tridiagonal.rs``): all
   eigenvalues of T by vectorized Sturm counts with Newton steps, the top-k eigenvectors by inverse
   iteration (LAPACK dstein's cluster rules), each residual checked;
3. ``dormqr`` applies Q's reflectors to those k vectors only;

and the k x k Gram matrix of the result is checked: ``|V^T V - I| <= ORTHOGONALITY_SLACK n eps``.
Any failed check returns None, and :func:`top_eigenpairs` then runs NumPy's ``eigh``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import lapack

from .._backend import core

# The module-level switch (benches compare the two routes in one process): False runs eigh always.
USE_EIGH_TOP = True
# Accepted |V^T V - I| entries, in units of n eps; the eigenvalues' bracket is 2 n u ||T|| and each
# residual ||T v - w v||_inf is checked against 10 n u ||T||_1 in Rust.
ORTHOGONALITY_SLACK = 20.0
# top_eigenpairs takes the fast route for k <= this fraction of n: eigh / eigh_top measured 1.44 at
# (64, 48), 1.37 at (165, 80), 1.31 at (400, 150), but 0.92 at (165, 150) and 0.71 at (400, 300)
# (1 thread; benches/RESULTS_randomized.md), where inverse iteration's clusters cost more than eigh.
MAX_TOP_FRACTION = 0.5


def eigh_top(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """All eigenvalues (ascending) of the real symmetric matrix G and the eigenvectors of its k
    largest, or None when the checks of the fast route fail.

    Parameters
    ----------
    G : numpy.ndarray
        n x n, float64, symmetric (its lower triangle is read). Not modified.
    k : int
        Number of top eigenvectors, ``1 <= k <= n``.

    Returns
    -------
    (w, V) or None
        ``w`` all n eigenvalues ascending (as ``np.linalg.eigh``), ``V`` the n x k eigenvectors of
        ``w[n-k:]`` in that order (as ``np.linalg.eigh(G)[1][:, n-k:]`` up to signs), orthonormal
        to ``ORTHOGONALITY_SLACK n eps``. None for non-finite G or when a check fails.

    Raises
    ------
    TypeError
        If G is not a float64 NumPy array or k is not an integer.
    ValueError
        If G is not square or k is not in [1, n].

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.randomized._eigh_top import eigh_top
    >>> G = np.diag([1.0, 4.0, 2.0, 3.0])
    >>> w, V = eigh_top(G, 2)
    >>> [round(float(x), 6) for x in w]
    [1.0, 2.0, 3.0, 4.0]
    >>> np.round(np.abs(V), 6).tolist()
    [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    if not isinstance(G, np.ndarray) or G.dtype != np.float64:
        raise TypeError(f"G must be a float64 NumPy array, got {type(G).__name__} {getattr(G, 'dtype', '')}")
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
        raise ValueError(f"G must be a non-empty square matrix, got shape {G.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {k!r}")
    n = G.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    k = int(k)
    if n <= 2:  # nothing to reduce; NumPy's eigh on 1 x 1 and 2 x 2 costs microseconds
        if not np.isfinite(G).all():
            return None
        w, V = np.linalg.eigh(G)
        return w, V[:, n - k :]
    c, d, e, tau, info = lapack.dsytrd(G, lower=1)
    if info != 0:
        return None
    try:
        kernel = core().tridiagonal_eigh_top
    except RuntimeError:  # no compiled module: the callers' eigh
        return None
    out = kernel(d, e, k)
    if out is None:
        return None
    w, rows = out
    V = rows.T  # n x k, Fortran order: the layout dormqr works in
    # dsytrd(lower) stores Q = H_1 ... H_{n-1} as the QR reflectors of G[1:, :n-1]: Q = diag(1, Q')
    # with Q' what dormqr applies (LAPACK's dormtr does the same).
    V[1:], _, info = lapack.dormqr("L", "N", c[1:, : n - 1], tau[: n - 1], V[1:], lwork=64 * k)
    if info != 0 or not np.isfinite(V).all():
        return None
    gram = V.T @ V
    gram[np.diag_indices(k)] -= 1.0
    if not np.abs(gram).max() <= ORTHOGONALITY_SLACK * n * np.finfo(np.float64).eps:
        return None
    return w, V


def top_eigenpairs(G: Any, k: int, xp: Any = np) -> tuple[Any, Any]:
    """``(w, V)``: all eigenvalues of the Hermitian G ascending and the eigenvectors of the k
    largest (ascending): :func:`eigh_top` for a float64 NumPy G and k <= ``MAX_TOP_FRACTION`` n
    (while ``USE_EIGH_TOP``), else, or when it returns None, ``xp.linalg.eigh``.
    """
    fast = type(G) is np.ndarray and G.dtype == np.float64 and k <= MAX_TOP_FRACTION * G.shape[0]
    if USE_EIGH_TOP and fast:
        out = eigh_top(G, k)
        if out is not None:
            return out
    w, V = xp.linalg.eigh(G)
    return w, V[:, int(G.shape[0]) - k :]
