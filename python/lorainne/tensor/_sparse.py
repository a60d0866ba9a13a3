"""Sparse tensors (COO, entries sorted in C order) and CP on them."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import core, resolve
from .._validation import float_dtype_of
from . import _xp
from ._als import (
    RUST_STATUS,
    SPARSE_INITS,
    Run,
    StopRule,
    end_of_sweep,
    finish,
    given_init,
    report_start,
    start_error,
    unscaled_callback,
)
from ._guard import check_cp_rank, scale_exponent, times_power_of_two
from ._structures import CPTensor


class SparseTensor:
    """A sparse tensor in coordinate (COO) form.

    Parameters
    ----------
    coords : integer array of shape (nnz, N)
        Row ``k`` holds the N indices of entry ``k`` (pyttb's ``subs`` layout).
    values : array of shape (nnz,) or (nnz, 1)
        float32 or float64 (integers are promoted to float64). Duplicated coordinates are summed.
        The (nnz, 1) column of pyttb's ``sptensor.vals`` is accepted.
    shape : tuple of N ints
        Python or NumPy integers (not floats, bools or a string).

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
        Non-integer coordinates or sizes in ``shape``, complex or object values.

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
        shape = _check_shape(shape)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]  # pyttb's vals layout (nnz, 1)
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

    def _times_power_of_two(self, exponent: int) -> SparseTensor:
        """The same entries times ``2**exponent`` (exact), sharing the coordinates."""
        if exponent == 0:
            return self
        out = object.__new__(SparseTensor)
        out.coords, out.shape = self.coords, self.shape
        out.values = np.ascontiguousarray(times_power_of_two(self.values, exponent))
        return out

    def __repr__(self) -> str:
        return f"SparseTensor(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"


def _check_shape(shape) -> tuple[int, ...]:
    """A tuple of Python ints from a sequence of integers; floats (2.9), bools and strings ("234") are rejected."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}")
    sizes = tuple(shape)
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"shape must be a sequence of ints, got {shape!r} (entry {s!r})")
    return tuple(int(s) for s in sizes)


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
    normalize=True,
    fixed=(),
    callback_at_init=False,
) -> CPTensor:
    """CP of a SparseTensor (the arguments checked by :func:`lorainne.cp`): the Rust sparse loop, or the
    NumPy reference sweep with a sparse MTTKRP (always with ``fixed`` modes).
    """
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 modes, got shape {X.shape}")
    check_cp_rank(rank, X.shape, X.dtype.itemsize)
    if nonnegative and np.any(X.values < 0):
        raise ValueError("X has negative entries, but nonnegative=True")
    chosen = resolve(X.values, backend="numpy" if backend == "xp" else backend)
    if chosen not in ("rust", "numpy"):
        raise ValueError(f"a SparseTensor runs on backend 'rust' or 'numpy', got {backend!r}")
    if fixed:
        chosen = "numpy"  # the Rust loop updates every mode
    extra = (nonnegative, l1)
    xp = _xp_numpy()
    stop = StopRule(tol, X.dtype)
    exponent = scale_exponent(float(np.max(np.abs(X.values))) if X.nnz else 0.0, X.dtype)
    X = X._times_power_of_two(-exponent)
    callback = unscaled_callback(callback, exponent)
    norm_x_sq = float(np.dot(X.values.astype(np.float64), X.values.astype(np.float64)))
    best = None
    for attempt in range(n_init):
        start = init if attempt == 0 else "random"
        factors = _sparse_initial_factors(X, rank, start, rng, nonnegative)
        if not isinstance(start, str):
            factors[-1] = times_power_of_two(factors[-1], -exponent)
        errors: list[float] = []
        status = "max_iter"
        if callback_at_init and callback is not None:
            error = start_error(None, factors, norm_x_sq, product=lambda fs, m: sparse_mttkrp_numpy(X, fs, m))
            if report_start(callback, factors, error):
                status = "callback"
        if status == "callback":
            run = Run(factors, errors, status)
        elif chosen == "rust" and callback is None and not verbose and n_iter_max > 0:
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
                        fixed=fixed,
                    )
                    degenerate = result.degenerate
                    errors.append(_xp.relative_error(norm_x_sq, result))
                    if (l2 or l1) and not fixed:
                        _xp.balance(xp, factors, grams, l2, l1)
                state = end_of_sweep(stop, degenerate, callback, verbose, factors, errors, xp)
                if state is not None:
                    status = state
                    break
            run = Run(factors, errors, status)
        if best is None or run.final_error < best.final_error:
            best = run
    # cp -> cp_sparse -> finish: warn for cp's caller
    return finish(best, tol, "cp", n_iter_max, stacklevel=4, normalize=normalize, exponent=exponent)


def _xp_numpy():
    from array_api_compat import array_namespace

    return array_namespace(np.empty(0))


def _sparse_initial_factors(X: SparseTensor, rank: int, init, rng, nonnegative: bool) -> list:
    """SVD start from the sparse unfoldings, restricted to their nonzero rows and columns (memory
    O(nnz + sum(I_n) R), whatever the dense size: the unfolding of a (10^6)^3 tensor with a few
    entries has 10^12 columns, all but a few of them zero).
    """
    if not isinstance(init, str):
        return given_init(init, _ShapeOnly(X), rank, nonnegative)
    if init not in SPARSE_INITS:
        raise ValueError(f"init must be one of {SPARSE_INITS} or a CPTensor for a SparseTensor, got {init!r}")
    factors = []
    for mode, size in enumerate(X.shape):
        if init == "random":
            f = rng.standard_normal((size, rank)).astype(X.dtype)
        else:
            f = _sparse_left_vectors(X, mode, rank, rng, scale=mode == 0)
        factors.append(np.abs(f) if nonnegative else f)
    return factors


def _sparse_left_vectors(X: SparseTensor, mode: int, rank: int, rng, scale: bool) -> np.ndarray:
    """``rank`` columns for mode ``mode``: the leading left singular vectors of the unfolding ``X_(mode)``
    (times the singular values when ``scale``), then Gaussian columns beyond the unfolding's rank.

    Zero rows and columns do not change the nonzero singular values, and zero rows have zero
    left singular vectors: the SVD runs on the submatrix of the nonzero rows and columns
    (at most nnz of each), and its rows are scattered back.
    """
    import scipy.sparse

    size = X.shape[mode]
    U = np.zeros((size, rank), dtype=X.dtype)
    k = 0
    if X.nnz:
        rows, row_index = np.unique(X.coords[:, mode], return_inverse=True)
        others = [c for c in range(X.ndim) if c != mode]
        _, column_index = np.unique(X.coords[:, others], axis=0, return_inverse=True)
        n_columns = int(column_index.max()) + 1
        matrix = scipy.sparse.csr_matrix(
            (X.values, (row_index.reshape(-1), column_index.reshape(-1))), shape=(rows.size, n_columns)
        )
        k = min(rank, rows.size, n_columns)
        vectors, singular = _gram_left_vectors(matrix, k, rng)
        U[rows, :k] = vectors * singular[None, :] if scale else vectors
    if k < rank:
        U[:, k:] = rng.standard_normal((size, rank - k)).astype(X.dtype) / math.sqrt(size)
    return U


def _gram_left_vectors(matrix, k: int, rng):
    """Leading left singular vectors/values of a sparse unfolding from its Gram matrix
    ``G = M M^T`` (a sparse product of the nonzero rows), by a randomized range finder on G with
    one power iteration (or exactly, by ``eigh``, for a small G).
    """
    gram = (matrix @ matrix.T).tocsr()
    size = gram.shape[0]
    if size <= k + 10:
        w, V = np.linalg.eigh(gram.toarray())
        U = V[:, ::-1][:, :k]
    else:
        width = k + 10
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
