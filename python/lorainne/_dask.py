"""The pieces of the xp paths that Dask cannot run lazily as written, done the Dask way.

The xp reference of each algorithm runs on ``dask.array`` as it does on NumPy: products with the
data stay lazy and run on the workers. Three kinds of step need care on Dask, and live here:

* Tall-skinny orthonormalization (:func:`orthonormalize`): CholeskyQR2 with its Gram matrices
  (k x k) reduced on the workers and factored on the client, or Dask's TSQR
  (``dask.array.linalg.tsqr``) as the Householder method and the fallback. The basis is persisted
  on the workers once per product with A, so later steps never recompute the chain of products.
* The SVD of the small projection ``B = Q^T A`` (:func:`svd_from_projection`): B^T (n x l) is
  orthonormalized on the workers, only its l x l triangle comes to the client.
* Sums of per-chunk partial results (:func:`tree_sum`): a tree reduction on the workers.

Nothing here brings an n-sized array to the client: the ``.compute()`` calls fetch k x k
matrices, k pivots or scalars. Dask is imported lazily (only when a Dask array was passed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _qr


def _da():
    import dask.array as da

    return da


def _persist(x):
    """``x.persist()``: on a distributed client the blocks stay on the workers."""
    return x.persist()


def _one_column_chunk(Y):
    """Y rechunked to one block of columns, with row blocks at least as tall as Y is wide (TSQR's need)."""
    rows, cols = Y.shape
    row_chunks = Y.chunks[0]
    if len(Y.chunks[1]) == 1 and min(row_chunks) >= cols:
        return Y
    if min(row_chunks) >= cols:
        return Y.rechunk({1: -1})
    target = max(cols, max(row_chunks))
    return Y.rechunk({0: min(rows, target), 1: -1})


def _times_inverse_upper(Y, R: np.ndarray):
    """``Y R^{-1}`` block by block of rows (R upper triangular, on the client): the same triangular
    solve as the in-memory path, applied to each row block.
    """
    return Y.map_blocks(_qr.solve_upper_right, R, dtype=Y.dtype)


def _gram(X) -> np.ndarray:
    """``X^T X`` reduced on the workers, k x k on the client."""
    return np.asarray((X.T @ X).compute())


def _cholesky_pass(X, G: np.ndarray, shift: float = 0.0):
    """As ``_qr._cholesky_pass``, with the k x k factorization on the client and X R^{-1} on the workers."""
    if shift:
        G = G + shift * np.eye(G.shape[0], dtype=G.dtype)
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(L)) or not np.all(np.diagonal(L) > 0):
        return None
    R = L.T
    return _persist(_times_inverse_upper(X, R)), R


def _refine(X, R):
    """As ``_qr._refine``: extra passes until one started from a Gram matrix near I."""
    identity = np.eye(X.shape[1], dtype=np.dtype(X.dtype))
    for _ in range(_qr._MAX_EXTRA_PASSES):
        G = _gram(X)
        close = float(np.linalg.norm(G - identity)) <= _qr._GRAM_ACCEPT
        result = _cholesky_pass(X, G)
        if result is None:
            return None
        X, R_pass = result
        R = R_pass @ R
        if close:
            return X, R
    return None


def tsqr(Y):
    """Reduced QR of a tall Dask array by TSQR (``dask.array.linalg.tsqr``), R with a nonnegative
    diagonal (the convention of every lorainne QR). Q persisted on the workers, R on the client.
    """
    da = _da()
    Y = _persist(_one_column_chunk(Y))
    Q, R = da.linalg.tsqr(Y)
    R = np.asarray(R.compute())
    signs = np.where(np.diagonal(R) < 0, -1.0, 1.0).astype(R.dtype)
    return _persist(Q * signs[None, :]), R * signs[:, None]


def cholesky_qr2(Y):
    """CholeskyQR2 of a tall Dask array with the fallbacks of ``_qr.cholesky_qr2_xp`` (shifted
    CholeskyQR3, then TSQR instead of the in-memory Householder QR). Returns (Q, R, method code).
    """
    Y = _persist(_one_column_chunk(Y))
    m, n = Y.shape
    G = _gram(Y)
    first = _cholesky_pass(Y, G)
    if first is not None:
        refined = _refine(*first)
        if refined is not None:
            return (*refined, _qr.CHOLESKY_QR2)
    unit_roundoff = float(np.finfo(G.dtype).eps) / 2
    shift = 11.0 * (m * n + n * (n + 1)) * unit_roundoff * float(np.trace(G))
    if shift > 0:
        first = _cholesky_pass(Y, G, shift)
        if first is not None:
            refined = _refine(*first)
            if refined is not None:
                return (*refined, _qr.SHIFTED_CHOLESKY_QR3)
    return (*tsqr(Y), _qr.HOUSEHOLDER)


def orthonormalize(Y, qr: str = "auto"):
    """Orthonormal basis of the columns of a tall Dask array (persisted on the workers)."""
    if qr == "householder":
        return tsqr(Y)[0]
    return cholesky_qr2(Y)[0]


def _sign_pivots(basis) -> np.ndarray:
    """+-1 per row of ``basis`` (k x n, lazy): the sign of its largest-magnitude entry (the first
    one on ties, as ``argmax``). Brings 2k numbers to the client.
    """
    da = _da()
    where = np.asarray(da.argmax(da.abs(basis), axis=1).compute())
    pivots = np.asarray(basis.vindex[np.arange(basis.shape[0]), where].compute())
    return np.where(pivots < 0, -1.0, 1.0).astype(np.dtype(basis.dtype))


def svd_from_projection(Q, B, rank: int, convention: str | None, qr: str = "auto"):
    """``U, S, Vt`` of ``Q B`` (Q m x l orthonormal, B = Q^T A of shape l x n), top ``rank`` triplets.

    ``B^T = Q2 R2`` is orthonormalized on the workers; the SVD of the l x l ``R2^T = W S Z^T`` runs
    on the client, so ``U = Q W`` and ``Vt = (Q2 Z)^T`` stay lazy Dask arrays; ``S`` is NumPy.
    Signs follow ``randomized._flip_signs`` (computed from 2 rank pivots on the client).
    """
    Q2, R2 = tsqr(B.T) if qr == "householder" else cholesky_qr2(B.T)[:2]
    W, S, Zt = np.linalg.svd(R2.T, full_matrices=False)
    W, S, Z = W[:, :rank], S[:rank], Zt[:rank, :].T
    U = Q @ W
    Vt = (Q2 @ Z).T
    if convention is not None:
        signs = _sign_pivots(Vt if convention == "vt" else U.T)
        U, Vt = U * signs[None, :], Vt * signs[:, None]
    return U, S, Vt


def tree_sum(parts: list[Any]):
    """Sum of a list of equally shaped Dask arrays by pairwise (tree) reduction: depth log2(len)."""
    parts = list(parts)
    while len(parts) > 1:
        paired = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return parts[0]


class _Linalg:
    """``array_api_compat``'s Dask ``linalg`` with ``cholesky`` returning the LOWER factor, as the
    array API specifies (array_api_compat 1.16 with Dask 2026.8 returns Dask's default, the upper one).
    """

    def __init__(self, linalg):
        self._linalg = linalg

    def __getattr__(self, name):
        return getattr(self._linalg, name)

    def cholesky(self, x, /, *, upper: bool = False):
        return _da().linalg.cholesky(x, lower=not upper)


class _Namespace:
    """The Dask array namespace of ``array_api_compat`` with the fix of :class:`_Linalg`."""

    def __init__(self, xp):
        self._xp = xp
        self.linalg = _Linalg(xp.linalg)

    def __getattr__(self, name):
        return getattr(self._xp, name)


def namespace(x):
    """The array namespace lorainne's xp paths use for the Dask array ``x``."""
    from array_api_compat import array_namespace

    return _Namespace(array_namespace(x))


def persisted(product):
    """``product`` whose (n x k) results are persisted on the workers, so that the estimators'
    later steps (several small ``.compute()`` calls) never recompute the products with A.
    """

    def apply(X):
        return product(X).persist()

    return apply


def persist_if_dask(x):
    """``x.persist()`` for a Dask array (its blocks stay on the workers), ``x`` itself otherwise: an
    iterative xp loop calls it on its state so that each step's graph does not hold all earlier steps.
    """
    from ._backend import is_dask_array

    return x.persist() if is_dask_array(x) else x
