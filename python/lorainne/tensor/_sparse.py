"""Sparse tensors (COO, entries sorted in C order) and CP on them."""

from __future__ import annotations

import math

import numpy as np

from .._backend import core, resolve
from .._validation import float_dtype_of
from . import _xp
from ._als import INITS, RUST_STATUS, Run, StopRule, end_of_sweep, finish, given_init
from ._structures import CPTensor


class SparseTensor:
    """A sparse tensor in coordinate (COO) form.

    Parameters
    ----------
    coords : integer array of shape (nnz, N)
        Row ``k`` holds the N indices of entry ``k`` (pyttb's ``subs`` layout).
    values : array of shape (nnz,)
        float32 or float64 (integers are promoted to float64). Duplicated coordinates are summed.
    shape : tuple of N ints

    Attributes
    ----------
    coords : int64 array (nnz, N), sorted in C (row-major) order, no duplicates
    values : array (nnz,)
    shape : tuple
    nnz : int
    ndim : int
    dtype

    Raises
    ------
    ValueError
        Coordinates out of range or negative, NaN/Inf values, mismatched lengths, N < 1.
    TypeError
        Non-integer coordinates, complex or object values.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import SparseTensor
    >>> X = np.zeros((2, 3, 2)); X[0, 1, 1] = 2.0; X[1, 2, 0] = -1.0
    >>> S = SparseTensor.from_dense(X)
    >>> S.nnz, S.shape
    (2, (2, 3, 2))
    >>> bool(np.array_equal(S.to_dense(), X))
    True
    """

    __slots__ = ("coords", "values", "shape")

    def __init__(self, coords, values, shape):
        coords = np.asarray(coords)
        values = np.asarray(values)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a sequence of ints, got {shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must hold at least one positive size, got {shape}")
        if coords.ndim == 1 and coords.size == 0:
            coords = coords.reshape(0, len(shape))
        if coords.ndim != 2 or coords.shape[1] != len(shape):
            raise ValueError(f"coords must have shape (nnz, {len(shape)}), got {coords.shape}")
        if coords.dtype.kind not in "iu":
            raise TypeError(f"coords must be integers, got dtype {coords.dtype}")
        dtype = float_dtype_of(values, "values")
        if values.ndim != 1 or values.shape[0] != coords.shape[0]:
            raise ValueError(f"values must have shape ({coords.shape[0]},), got {values.shape}")
        values = values.astype(dtype, copy=True)
        if not np.all(np.isfinite(values)):
            raise ValueError("values contains NaN or infinity")
        coords = coords.astype(np.int64, copy=True)
        bounds = np.asarray(shape, dtype=np.int64)
        if coords.size and (np.any(coords < 0) or np.any(coords >= bounds[None, :])):
            bad = int(np.flatnonzero(np.any((coords < 0) | (coords >= bounds[None, :]), axis=1))[0])
            raise ValueError(f"coords row {bad} = {coords[bad].tolist()} is out of range for shape {shape}")
        # Sort in C order and sum duplicates.
        linear = np.ravel_multi_index(tuple(coords.T), shape) if coords.size else np.zeros(0, dtype=np.int64)
        order = np.argsort(linear, kind="stable")
        linear, coords, values = linear[order], coords[order], values[order]
        if linear.size > 1 and np.any(linear[1:] == linear[:-1]):
            unique, starts = np.unique(linear, return_index=True)
            values = np.add.reduceat(values, starts).astype(dtype, copy=False)
            coords = coords[starts]
        self.coords = np.ascontiguousarray(coords)
        self.values = np.ascontiguousarray(values)
        self.shape = shape

    @classmethod
    def from_dense(cls, X) -> SparseTensor:
        """The nonzero entries of a dense NumPy array."""
        X = np.asarray(X)
        coords = np.argwhere(X != 0)
        return cls(coords, X[tuple(coords.T)], X.shape)

    def to_dense(self) -> np.ndarray:
        """A dense NumPy array (zeros where no entry is stored)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        if self.nnz:
            np.add.at(out, tuple(self.coords.T), self.values)
        return out

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self):
        return self.values.dtype

    def norm(self) -> float:
        return float(np.linalg.norm(self.values))

    def __repr__(self) -> str:
        return f"SparseTensor(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"


def sparse_mttkrp_numpy(X: SparseTensor, factors, mode: int):
    """Reference sparse MTTKRP: ``M[i, :] = sum_{entries with i_mode = i} v * prod_{k != mode} A_k[i_k, :]``."""
    rank = factors[0].shape[1]
    rows = X.values[:, None] * np.ones((1, rank), dtype=X.dtype)
    for k, f in enumerate(factors):
        if k != mode:
            rows = rows * f[X.coords[:, k], :]
    out = np.zeros((X.shape[mode], rank), dtype=X.dtype)
    for r in range(rank):
        out[:, r] = np.bincount(X.coords[:, mode], weights=rows[:, r], minlength=X.shape[mode])
    return out


def cp_sparse(
    X: SparseTensor,
    rank,
    *,
    init,
    n_iter_max,
    tol,
    nonnegative,
    l2,
    l1,
    n_init,
    rng,
    backend,
    n_threads,
    verbose,
    callback,
) -> CPTensor:
    """CP of a SparseTensor (the arguments checked by :func:`lorainne.cp`): the Rust sparse loop, or the
    NumPy reference sweep with a sparse MTTKRP.
    """
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 modes, got shape {X.shape}")
    if nonnegative and np.any(X.values < 0):
        raise ValueError("X has negative entries, but nonnegative=True")
    chosen = resolve(X.values, backend="numpy" if backend == "xp" else backend)
    if chosen not in ("rust", "numpy"):
        raise ValueError(f"a SparseTensor runs on backend 'rust' or 'numpy', got {backend!r}")
    extra = (nonnegative, l1)
    xp = _xp_numpy()
    stop = StopRule(tol, X.dtype)
    norm_x_sq = float(np.dot(X.values.astype(np.float64), X.values.astype(np.float64)))
    best = None
    for attempt in range(n_init):
        start = init if attempt == 0 else "random"
        factors = _sparse_initial_factors(X, rank, start, rng, nonnegative)
        errors: list[float] = []
        status = "max_iter"
        if chosen == "rust" and callback is None and not verbose and n_iter_max > 0:
            factors, errs, code, _ = core().cp_als_sparse(
                X.coords,
                X.values,
                list(X.shape),
                factors,
                n_iter_max=n_iter_max,
                tol=tol,
                l2_reg=l2,
                n_threads=n_threads,
                norm_x_sq=None,
                nonnegative=extra[0],
                l1_reg=extra[1],
            )
            run = Run(list(factors), [float(e) for e in errs], RUST_STATUS[code])
        else:
            grams = [f.T @ f for f in factors]
            for _ in range(n_iter_max):
                if chosen == "rust":
                    factors, one, _, degenerate = core().cp_als_sparse(
                        X.coords,
                        X.values,
                        list(X.shape),
                        factors,
                        n_iter_max=1,
                        tol=-1.0,
                        l2_reg=l2,
                        n_threads=n_threads,
                        norm_x_sq=norm_x_sq,
                        nonnegative=extra[0],
                        l1_reg=extra[1],
                    )
                    factors = list(factors)
                    errors.append(float(one[0]))
                else:
                    result = _xp.sweep(
                        xp,
                        None,
                        factors,
                        grams,
                        l2=l2,
                        l1=l1,
                        nonnegative=nonnegative,
                        product=lambda fs, m: sparse_mttkrp_numpy(X, fs, m),
                    )
                    degenerate = result.degenerate
                    errors.append(_xp.relative_error(norm_x_sq, result))
                    if l2 or l1:
                        _xp.balance(xp, factors, grams, l2, l1)
                state = end_of_sweep(stop, degenerate, callback, verbose, factors, errors, xp)
                if state is not None:
                    status = state
                    break
            run = Run(factors, errors, status)
        if best is None or run.final_error < best.final_error:
            best = run
    return finish(best, tol, "cp", n_iter_max, stacklevel=4)  # cp -> cp_sparse -> finish: warn for cp's caller


def _xp_numpy():
    from array_api_compat import array_namespace

    return array_namespace(np.empty(0))


def _sparse_initial_factors(X: SparseTensor, rank: int, init, rng, nonnegative: bool) -> list:
    """SVD start from the sparse unfoldings (SciPy sparse matrices, through their Gram matrices)."""
    import scipy.sparse

    if not isinstance(init, str):
        return given_init(init, _ShapeOnly(X), rank, nonnegative)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS} or a CPTensor, got {init!r}")
    factors = []
    for mode, size in enumerate(X.shape):
        if init == "random":
            f = rng.standard_normal((size, rank)).astype(X.dtype)
        else:
            others = [k for k in range(X.ndim - 1, -1, -1) if k != mode]  # Kolda-Bader column order
            columns = (
                np.ravel_multi_index(tuple(X.coords[:, others].T), tuple(X.shape[k] for k in others))
                if X.nnz
                else np.zeros(0, np.int64)
            )
            n_columns = math.prod(X.shape) // size
            matrix = scipy.sparse.csr_matrix((X.values, (X.coords[:, mode], columns)), shape=(size, n_columns))
            k = min(rank, size, n_columns)
            if X.nnz:
                U, S = _gram_left_vectors(matrix, k, rng)
                if mode == 0:
                    U = U * S[None, :]
            else:
                U = np.zeros((size, k), dtype=X.dtype)
            if k < rank:
                U = np.concatenate([U, rng.standard_normal((size, rank - k)).astype(X.dtype) / math.sqrt(size)], axis=1)
            f = U.astype(X.dtype, copy=False)
        factors.append(np.abs(f) if nonnegative else f)
    return factors


def _gram_left_vectors(matrix, k: int, rng):
    """Leading left singular vectors/values of a sparse unfolding from its Gram matrix
    ``G = M M^T`` (I_n x I_n, a sparse product: no dense test matrix with a row per column of
    the unfolding), by a randomized range finder on G with one power iteration.
    """
    gram = (matrix @ matrix.T).tocsr()
    size = gram.shape[0]
    width = min(k + 10, size)
    omega = rng.standard_normal((size, width)).astype(matrix.dtype)
    Q, _ = np.linalg.qr(np.asarray(gram @ omega))
    Q, _ = np.linalg.qr(np.asarray(gram @ Q))
    small = Q.T @ np.asarray(gram @ Q)
    w, V = np.linalg.eigh((small + small.T) / 2)
    U = Q @ V[:, ::-1][:, :k]
    return U.astype(matrix.dtype, copy=False), np.sqrt(np.clip(w[::-1][:k], 0, None)).astype(matrix.dtype)


class _ShapeOnly:
    """Stands in for a dense X when validating a given start against a SparseTensor."""

    def __init__(self, X: SparseTensor):
        self.shape, self.ndim, self.dtype = X.shape, X.ndim, X.dtype
        self._like = np.empty(0, dtype=X.dtype)

    def __array_namespace__(self, api_version=None):
        from array_api_compat import array_namespace

        return array_namespace(self._like)

    @property
    def device(self):
        return "cpu"
