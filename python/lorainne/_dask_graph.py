"""The randomized range finder and SVD of a Dask matrix as ONE task graph (subspace iteration, block Krylov).

The xp reference (``randomized/``) on Dask arrays makes every product, Gram matrix and triangular
solve a Dask operation of its own: about 11 scheduling steps per power iteration, each costing tens
of milliseconds of scheduler time. Here the same arithmetic (CholeskyQR2 after every product, block
Krylov's two projections, the Rayleigh-Ritz SVD of the projected matrix) is written as tasks on
the blocks of A:

* a product with A is one task per block of A, which also computes what the next global step needs
  from its result (its Gram matrix, or its projection on the Krylov basis), and the last triangular
  solve of the basis it multiplies (a product with R^{-1}, formed once by the task that factors);
* a product with A^T is one task per block and one sum per block column (a tree of at most
  ``_FAN_IN`` parts per task); on a matrix chunked by rows only, the sum also orthonormalizes the
  n x l result in memory (CholeskyQR2 with its fallbacks, as ``_qr.cholesky_qr2_xp``);
* CholeskyQR2 of a tall result is two sums of l x l Gram matrices, each one small task that also
  factors and inverts the l x l factor, with the solves done per block;
* the checks of A (finiteness, max |a_ij| for the exact rescaling) ride on the first product.

Per power iteration: 6 scheduling steps (a product with A^T, its sum, a product with A, two Gram
sums, a solve). The whole computation is submitted at once and ONE gather brings S, the checks of A
and the verdicts of the orthonormalizations (the checks of ``_qr._refine``; block Krylov's overlap
check) to the client; U and Vt (or Q) stay on the workers. A failed verdict (a CholeskyQR2
breakdown) makes the caller run the step-by-step path with its fallbacks. When A is not held
between passes (``_dask.held_between_passes``) each pass is persisted and awaited before the next
one is submitted, so that Dask reads A anew at every pass instead of holding it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import _dask, _qr

_FAN_IN = 32  # partial products summed by one task of a reduction tree
_PANEL_BYTES = 1 << 20  # rows of A read at once by the first product: its checks read them from cache


# --------------------------------------------------------------------------- tasks (NumPy, one block)


def _block(part, factor):
    """The block of a (possibly deferred) CholeskyQR2: ``part[0] R2^{-1}`` with factor = (G2, R2, R2^{-1}),
    or ``part[0]`` itself when final (factor None).
    """
    return part[0] if factor is None else part[0] @ factor[2]


def _inverse_upper(R):
    """R^{-1} of an upper triangular l x l R by back substitution, formed once per factorization so
    that each block's solve is a matmul. (Multiplying by R^{-1} keeps the span of the columns exactly
    and errs like a triangular solve, u cond(R); LAPACK's threaded solve of a tiny R costs
    milliseconds on a loaded machine, this microseconds.) NaN or infinity for a singular R.
    """
    n = R.shape[0]
    inverse = np.zeros_like(R)
    for i in range(n - 1, -1, -1):
        row = -(R[i, i + 1 :] @ inverse[i + 1 :, :])
        row[i] += 1.0
        inverse[i, :] = row / R[i, i]
    return inverse


def _basis_row(pairs):
    """One row block of a basis made of several blocks of columns: ((part, factor), ...)."""
    blocks = [_block(part, factor) for part, factor in pairs]
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)


def _product_and_extremes(a, x):
    """(a @ x, min(a), max(a)) reading a once: row panels small enough for the checks to hit the cache.
    min and max propagate NaN, so a non-finite entry shows as a non-finite extreme.
    """
    rows = max(8, _PANEL_BYTES // max(1, a.itemsize * a.shape[1]))
    out = np.empty((a.shape[0], x.shape[1]), dtype=np.result_type(a, x))
    lo, hi = np.inf, -np.inf
    for start in range(0, a.shape[0], rows):
        panel = a[start : start + rows]
        out[start : start + rows] = panel @ x
        lo, hi = np.minimum(lo, panel.min()), np.maximum(hi, panel.max())
    return out, float(lo), float(hi)


def _product(a, part, factor, columns, checks, transpose=False):
    """(a @ x or a^T @ x, min(a), max(a)), x the block of ``part`` (its first ``columns`` columns)."""
    x = _block(part, factor)
    if columns is not None:
        x = x[:, :columns]
    if transpose:
        return a.T @ x, None, None
    if checks:
        return _product_and_extremes(a, x)
    return a @ x, None, None


def _then(kind, Y, basis):
    """What the next global step needs from a block Y: its Gram matrix, its projection on the basis, or nothing."""
    if kind == "gram":
        return Y.T @ Y
    if kind == "project":
        return _basis_row(basis).T @ Y
    return None


def _row_product(kind, basis, a, part, factor, columns, checks):
    """One block row of A (one block of columns): (Y = a x, then, min a, max a)."""
    Y, lo, hi = _product(a, part, factor, columns, checks)
    return Y, _then(kind, Y, basis), lo, hi


def _partial_product(a, part, factor, columns, checks):
    return _product(a, part, factor, columns, checks)


def _row_sum(kind, basis, *partials):
    """One block row of A over several blocks of columns: the sum of the partial products, then ``kind``."""
    Y = _sum([p[0] for p in partials])
    lows = [p[1] for p in partials if p[1] is not None]
    highs = [p[2] for p in partials if p[2] is not None]
    lo = float(np.min(lows)) if lows else None
    hi = float(np.max(highs)) if highs else None
    return Y, _then(kind, Y, basis), lo, hi


def _sum(arrays):
    total = arrays[0]
    for x in arrays[1:]:
        total = total + x
    return total


def _rproduct(a, part, factor):
    return a.T @ _block(part, factor)


def _partial_sum(*parts):
    return _sum(list(parts))


def _column(kind, *parts):
    """The sum of one block column of A^T Q: with ``kind`` "qr" orthonormalized in memory (Q, R, method),
    "gram" (W, W^T W) for a blocked CholeskyQR2, "raw" (W,).
    """
    W = _sum(list(parts))
    if kind == "qr":
        return _qr.cholesky_qr2_xp(W)
    if kind == "gram":
        return W, W.T @ W
    return (W,)


def _sum_of_small(*rows):
    """The sum of the small pieces (index 1) of several blocks."""
    return _sum([r[1] for r in rows])


def _sum_and_factor(*rows):
    """(G, R, R^{-1}): the sum of the blocks' Gram matrices (index 1), its upper Cholesky factor and
    the factor's inverse (NaN on breakdown).
    """
    G = _sum_of_small(*rows)
    R = _dask._upper_cholesky(G)
    return G, R, _inverse_upper(R)


def _verdict(first, second) -> bool:
    """The checks of ``_qr._refine`` on the blocked CholeskyQR2 (``_dask._verdict``)."""
    return _dask._verdict(first[:2], second[:2])


def _solve_and_gram(row, factored):
    X = row[0] @ factored[2]
    return X, X.T @ X


def _one_block_qr(row):
    """CholeskyQR2 with its fallbacks of a one-block result, in memory: (Q, R, method)."""
    return _qr.cholesky_qr2_xp(row[0])


def _deflate(kind, basis, row, coefficients):
    """Y - Qb C for the block row Qb of the basis and the summed projection C, then ``kind``."""
    Y = row[0] - _basis_row(basis) @ coefficients
    return Y, _then(kind, Y, basis)


def _overlap(basis, part, factor):
    return _basis_row(basis).T @ _block(part, factor)


def _overlap_small(bound, *parts) -> bool:
    """Block Krylov's check: the new block is orthogonal to the basis (max |Qb^T Q| <= bound)."""
    return bool(np.max(np.abs(_sum(list(parts)))) <= bound)


def _extremes(*rows):
    return float(np.min([r[2] for r in rows])), float(np.max([r[3] for r in rows]))


def _nan_like_svd(Zs, rank, width):
    nan = np.full((width, rank), np.nan, dtype=Zs.dtype)
    return nan, np.full(rank, np.nan, dtype=Zs.dtype), np.full((rank, Zs.shape[0]), np.nan, dtype=Zs.dtype)


def _flip_vt(Ub, Vt):
    """``randomized._flip_signs`` with the "vt" convention, on a Vt held in one block."""
    signs = _dask._signs_of_pivots(Vt.dtype, _dask._block_pivots(Vt))
    return Ub * signs[None, :], Vt * signs[:, None]


def _ritz_one_block(rank, flip_vt, earlier, *partials):
    """Rayleigh-Ritz on the projected matrix B = Q^T A held in one block: B^T = Zs = [earlier blocks,
    the sum of ``partials``] (n x L), Zs = Qz Rz (CholeskyQR2 with fallbacks), SVD of the L x L
    Rz^T = Ub S Wt, Vt = Wt Qz^T. Returns (Ub, S, Vt), the top ``rank`` triplets; NaN on breakdown.
    """
    Zs = np.concatenate([e[0] for e in earlier] + [_sum(list(partials))], axis=1)
    Qz = _qr.cholesky_qr2_xp(Zs)[0]
    Rz = Qz.T @ Zs
    if not np.all(np.isfinite(Rz)):
        return _nan_like_svd(Zs, rank, Zs.shape[1])
    Ub, S, Wt = np.linalg.svd(Rz.T, full_matrices=False)
    Ub, S, Vt = Ub[:, :rank], S[:rank], Wt[:rank, :] @ Qz.T
    if flip_vt:
        Ub, Vt = _flip_vt(Ub, Vt)
    return Ub, S, Vt


def _concat_gram(earlier, *partials):
    """One block column of Zs (earlier blocks and the sum of ``partials``) and its Gram matrix."""
    Zs = np.concatenate([e[0] for e in earlier] + [_sum(list(partials))], axis=1)
    return Zs, Zs.T @ Zs


def _rz_part(part, factor, column):
    return _block(part, factor).T @ column[0]


def _small_svd(rank, *rz_parts):
    """SVD of Rz^T = (Qz^T Zs)^T summed over the blocks of columns: (Ub, S, Wt), top ``rank``."""
    Rz = _sum(list(rz_parts))
    if not np.all(np.isfinite(Rz)):
        return (
            np.full((Rz.shape[1], rank), np.nan, dtype=Rz.dtype),
            np.full(rank, np.nan, dtype=Rz.dtype),
            np.full((rank, Rz.shape[0]), np.nan, dtype=Rz.dtype),
        )
    Ub, S, Wt = np.linalg.svd(Rz.T, full_matrices=False)
    return Ub[:, :rank], S[:rank], Wt[:rank, :]


def _vt_block(part, factor, small):
    return small[2] @ _block(part, factor).T


def _u_block(basis, small):
    return _basis_row(basis) @ small[0]


def _item(value, index):
    return value[index]


def _pivots(block, transpose):
    return _dask._block_pivots(block.T if transpose else block)


def _times_signs(block, signs, axis):
    return block * (signs[None, :] if axis == 1 else signs[:, None])


def _summary(small, extremes, *verdicts):
    """The only values the client gathers: S, (min A, max A) and whether every verdict holds."""
    S = None if small is None else small[1]
    return S, extremes, all(bool(v) for v in verdicts)


# --------------------------------------------------------------------------- the graph builder


class _Quiet:
    """A task function run without floating-point warnings: the first graph runs on A as given, and
    entries beyond ~1e+-77 overflow its Gram matrices before the checks of A call for the rescaled
    run (whose arithmetic is the in-memory one's).
    """

    def __init__(self, fn):
        self.fn, self.__name__ = fn, fn.__name__

    def __call__(self, *args):
        with np.errstate(all="ignore"):
            return self.fn(*args)


@dataclass(frozen=True)
class Basis:
    """Blocks of an orthonormal basis (or of a product), one Delayed per block: block i is
    ``parts[i][0] R2^{-1}`` with ``factor`` = (G2, R2, R2^{-1}) a deferred last CholeskyQR2 solve, or
    ``parts[i][0]`` when ``factor`` is None.
    """

    parts: list
    factor: Any = None

    def pairs(self, i):
        return (self.parts[i], self.factor)


class Outcome(NamedTuple):
    """What one submitted graph gives: the lazy results (persisted), S (NumPy or None), the extremes
    of A (lo, hi) and whether every orthonormalization passed its checks.
    """

    value: tuple
    S: Any
    extremes: tuple[float, float]
    accepted: bool


class _Graph:
    """Tasks on the blocks of one Dask matrix A (m x n, p x r blocks)."""

    def __init__(self, A, held: bool):
        import dask

        self.delayed = lambda fn: dask.delayed(_Quiet(fn), pure=False)
        self.blocks = A.to_delayed()
        self.rows, self.cols = A.chunks
        self.shape = A.shape
        self.dtype = np.dtype(A.dtype)
        self.held = held
        self.verdicts: list = []
        self.extremes = None

    def start(self, omega: np.ndarray) -> Basis:
        """The Gaussian block Omega (n x l, on the client) as one graph literal per block of columns."""
        import dask
        from dask.base import tokenize

        parts, start = [], 0
        for width in self.cols:
            block = omega[start : start + width]
            parts.append(dask.delayed((block,), name=f"lorainne-omega-{tokenize(block)}"))
            start += width
        return Basis(parts)

    def _pass_done(self, values: list) -> list:
        """A pass over A is complete: when A is not held between passes, compute it and wait, so
        that the next pass reads A anew (its blocks are not kept for it).
        """
        if self.held:
            return values
        import dask

        values = list(dask.persist(*values, optimize_graph=False))
        client = _dask._client()
        if client is not None:
            from distributed import futures_of, wait

            with client.as_current():
                wait(futures_of(values))
        return values

    def matmat(self, Z: Basis, kind: str, basis=(), columns=None, checks=False) -> list:
        """A Z, one task per block row: (Y_i, then_i, lo_i, hi_i) with then_i as in :func:`_then`."""
        task = self.delayed
        rows = []
        for i in range(len(self.rows)):
            basis_row = tuple(b.pairs(i) for b in basis)
            if len(self.cols) == 1:
                rows.append(task(_row_product)(kind, basis_row, self.blocks[i, 0], *Z.pairs(0), columns, checks))
            else:
                partials = [
                    task(_partial_product)(self.blocks[i, j], *Z.pairs(j), columns, checks)
                    for j in range(len(self.cols))
                ]
                rows.append(task(_row_sum)(kind, basis_row, *partials))
        rows = self._pass_done(rows)
        if checks:
            self.extremes = task(_extremes)(*rows)
        return rows

    def rmatmat(self, Q: Basis) -> list:
        """A^T Q: per block column the partial products, reduced by a tree to at most ``_FAN_IN``."""
        task = self.delayed
        columns = []
        for j in range(len(self.cols)):
            parts = [task(_rproduct)(self.blocks[i, j], *Q.pairs(i)) for i in range(len(self.rows))]
            while len(parts) > _FAN_IN:
                parts = [task(_partial_sum)(*parts[s : s + _FAN_IN]) for s in range(0, len(parts), _FAN_IN)]
            columns.append(parts)
        if self.held:
            return columns
        flat = iter(self._pass_done([part for parts in columns for part in parts]))
        return [[next(flat) for _ in parts] for parts in columns]

    def column_basis(self, partials: list) -> Basis:
        """Orthonormal basis of A^T Q from its partial products (CholeskyQR2, in memory on one block)."""
        task = self.delayed
        if len(partials) == 1:
            return Basis([task(_column)("qr", *partials[0])])
        return self.orthonormalize([task(_column)("gram", *p) for p in partials])

    def raw_columns(self, partials: list) -> Basis:
        task = self.delayed
        return Basis([task(_column)("raw", *p) for p in partials])

    def orthonormalize(self, rows: list) -> Basis:
        """CholeskyQR2 of the blocks ``rows`` (each (Y_i, Y_i^T Y_i, ...)): two Gram sums, each one
        task that also factors; the last solve is left to the tasks that use the basis. Its verdict
        (the checks of ``_qr._refine``) joins ``self.verdicts``. One block: in memory, with fallbacks.
        """
        task = self.delayed
        if len(rows) == 1:
            return Basis([task(_one_block_qr)(rows[0])])
        first = task(_sum_and_factor)(*rows)
        solved = [task(_solve_and_gram)(row, first) for row in rows]
        second = task(_sum_and_factor)(*solved)
        self.verdicts.append(task(_verdict)(first, second))
        return Basis(solved, second)

    def deflate(self, rows: list, basis: list, kind: str) -> list:
        """One projection of the block rows off the basis (Y - Q (Q^T Y)), then ``kind``."""
        task = self.delayed
        coefficients = task(_sum_of_small)(*rows)
        return [task(_deflate)(kind, tuple(b.pairs(i) for b in basis), row, coefficients) for i, row in enumerate(rows)]

    def check_overlap(self, new: Basis, basis: list, bound: float) -> None:
        task = self.delayed
        parts = [task(_overlap)(tuple(b.pairs(i) for b in basis), *new.pairs(i)) for i in range(len(self.rows))]
        self.verdicts.append(task(_overlap_small)(bound, *parts))

    def materialize(self, Q: Basis, width: int):
        """The basis as a Dask array (one block per block row of A)."""
        import dask.array as da

        task = self.delayed
        blocks = [task(_block)(*Q.pairs(i)) for i in range(len(self.rows))]
        return blocks, lambda persisted: da.concatenate(
            [da.from_delayed(b, shape=(h, width), dtype=self.dtype) for b, h in zip(persisted, self.rows, strict=True)]
        )

    def ritz(self, earlier: list, partials: list, basis: list, rank: int, convention: str | None):
        """U, Vt blocks and the small SVD of the Rayleigh-Ritz step on Zs = B^T = [earlier, A^T Q_last]."""
        task = self.delayed
        if len(self.cols) == 1:
            small = task(_ritz_one_block)(rank, convention == "vt", [e.parts[0] for e in earlier], *partials[0])
            vt = [task(_item)(small, 2)]
        else:
            columns = [task(_concat_gram)([e.parts[j] for e in earlier], *partials[j]) for j in range(len(self.cols))]
            Qz = self.orthonormalize(columns)
            rz = [task(_rz_part)(*Qz.pairs(j), columns[j]) for j in range(len(self.cols))]
            small = task(_small_svd)(rank, *rz)
            vt = [task(_vt_block)(*Qz.pairs(j), small) for j in range(len(self.cols))]
        u = [task(_u_block)(tuple(b.pairs(i) for b in basis), small) for i in range(len(self.rows))]
        flip_here = convention == "u" or (convention == "vt" and len(self.cols) > 1)
        if flip_here:
            side, transpose = (vt, False) if convention == "vt" else (u, True)
            pivots = [task(_pivots)(b, transpose) for b in side]
            signs = task(_dask._signs_of_pivots)(self.dtype, *pivots)
            u = [task(_times_signs)(b, signs, 1) for b in u]
            vt = [task(_times_signs)(b, signs, 0) for b in vt]
        return u, vt, small

    def submit(self, blocks: list, small=None):
        """Persist ``blocks`` (the results) with the summary in ONE graph and gather the summary."""
        import dask

        task = self.delayed
        summary = task(_summary)(small, self.extremes, *self.verdicts)
        *blocks, summary = dask.persist(*blocks, summary, optimize_graph=False)
        S, extremes, accepted = summary.compute()
        return blocks, S, extremes, accepted


# --------------------------------------------------------------------------- the algorithms


def _first_basis(graph: _Graph, omega: np.ndarray) -> Basis:
    return graph.orthonormalize(graph.matmat(graph.start(omega), "gram", checks=True))


def _subspace(graph: _Graph, omega: np.ndarray, n_power_iter: int) -> Basis:
    """Subspace iteration: Q = orth(A Omega), then Z = orth(A^T Q), Q = orth(A Z) per iteration."""
    Q = _first_basis(graph, omega)
    for _ in range(n_power_iter):
        Z = graph.column_basis(graph.rmatmat(Q))
        Q = graph.orthonormalize(graph.matmat(Z, "gram"))
    return Q


def _unpack(graph: _Graph, u, vt, small, rank):
    import dask.array as da

    blocks, S, extremes, accepted = graph.submit([*u, *vt], small)
    u, vt = blocks[: len(u)], blocks[len(u) :]
    U = da.concatenate(
        [da.from_delayed(b, shape=(h, rank), dtype=graph.dtype) for b, h in zip(u, graph.rows, strict=True)]
    )
    Vt = da.concatenate(
        [da.from_delayed(b, shape=(rank, w), dtype=graph.dtype) for b, w in zip(vt, graph.cols, strict=True)], axis=1
    )
    return Outcome((U, Vt), S, extremes, accepted)


def range_finder(A, omega: np.ndarray, n_power_iter: int, held: bool) -> Outcome:
    """Q of subspace iteration from the sketch A Omega, as ``_range_finder_xp``: value (Q,)."""
    graph = _Graph(A, held)
    Q = _subspace(graph, omega, n_power_iter)
    blocks, build = graph.materialize(Q, omega.shape[1])
    blocks, _, extremes, accepted = graph.submit(blocks)
    return Outcome((build(blocks),), None, extremes, accepted)


def subspace_svd(A, omega, n_power_iter: int, rank: int, convention: str | None, held: bool) -> Outcome:
    """The randomized SVD by subspace iteration (2 q + 2 passes over A): value (U, Vt), S NumPy."""
    graph = _Graph(A, held)
    Q = _subspace(graph, omega, n_power_iter)
    u, vt, small = graph.ritz([], graph.rmatmat(Q), [Q], rank, convention)
    return _unpack(graph, u, vt, small, rank)


def block_krylov_svd(A, omega, depth: int, rank: int, convention: str | None, held: bool) -> Outcome:
    """Block Krylov SVD as ``randomized._krylov.block_krylov_svd`` (2 depth + 2 passes over A): each
    new block A Z_j is projected off the basis twice, then orthonormalized; B^T = [Z_0, ..., Z_q].
    """
    graph = _Graph(A, held)
    m, n = graph.shape
    bound = math.sqrt(float(np.finfo(graph.dtype).eps))
    basis = [_first_basis(graph, omega)]
    widths = [omega.shape[1]]
    earlier: list[Basis] = []
    for j in range(depth + 1):
        partials = graph.rmatmat(basis[-1])
        room = min(m, n) - sum(widths)
        if j == depth or room <= 0:
            break
        Z = graph.raw_columns(partials)
        earlier.append(Z)
        width = min(widths[-1], room)
        rows = graph.matmat(Z, "project", basis, columns=width if width < widths[-1] else None)
        rows = graph.deflate(rows, basis, "project")
        rows = graph.deflate(rows, basis, "gram")
        new = graph.orthonormalize(rows)
        graph.check_overlap(new, basis, bound)
        basis.append(new)
        widths.append(width)
    u, vt, small = graph.ritz(earlier, partials, basis, rank, convention)
    return _unpack(graph, u, vt, small, rank)
