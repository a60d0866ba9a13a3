"""The observed entries of a partially known matrix, in the three forms :func:`complete` accepts,
validated once and stored as CSR (rows) and CSC (columns, as the CSR of the transpose).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _backend
from .._validation import check_int


@dataclass(frozen=True)
class Observed:
    """Observed entries of an m x n matrix: ``rows`` as CSR, ``cols`` as the CSR of the transpose
    (int64 pointers; int32 or int64 indices, as SciPy gives them).
    """

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    t_indptr: np.ndarray
    t_indices: np.ndarray
    t_data: np.ndarray
    dtype: np.dtype

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def csr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def _float_dtype(dtype, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    raise TypeError(f"{name} has unsupported dtype {dtype.name}: use float32 or float64 (integers are promoted)")


def _from_coords(rows, cols, values, shape, name: str) -> Observed:
    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(values)
    if rows.ndim != 1 or cols.ndim != 1 or values.ndim != 1 or not (rows.shape == cols.shape == values.shape):
        raise ValueError(
            f"{name} as (rows, cols, values) needs three 1-D arrays of one length, got shapes "
            f"{rows.shape}, {cols.shape}, {values.shape}"
        )
    if rows.size == 0:
        raise ValueError(f"{name} has no observed entries")
    for arr, what in ((rows, "rows"), (cols, "cols")):
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: {what} must be integers, got dtype {arr.dtype.name}")
    dtype = _float_dtype(values.dtype, name)
    if shape is None:
        shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    if not (isinstance(shape, tuple) and len(shape) == 2):
        raise TypeError(f"shape must be a tuple (m, n), got {shape!r}")
    m, n = check_int(shape[0], "shape[0]", low=1), check_int(shape[1], "shape[1]", low=1)
    if rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n:
        raise ValueError(f"{name}: coordinates lie outside shape {(m, n)}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinity among the observed values")
    csr = sp.coo_matrix((values, (rows.astype(np.int64), cols.astype(np.int64))), shape=(m, n)).tocsr()
    if csr.nnz != rows.size:
        raise ValueError(f"{name} has duplicate coordinates ({rows.size - csr.nnz} repeated entries)")
    csr.sort_indices()
    return _with_columns((m, n), csr.indptr, csr.indices, csr.data, dtype, name)


def _with_columns(shape, indptr, indices, data, dtype, name: str) -> Observed:
    """The observations of a CSR matrix with sorted, unique indices in each row: its arrays as they
    are (the kernels read int32 or int64 indices; only the m + 1 pointers become int64 and values
    other than float64 are converted), the column side by the Rust counting sort over the columns
    (SciPy's CSR -> CSC conversion where the compiled core is missing), the values checked finite
    in the same pass. Not modified.
    """
    data = np.ascontiguousarray(data, dtype=np.float64)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=indices.dtype if indices.dtype in (np.int32, np.int64) else np.int64)
    try:
        core = _backend.core()
    except RuntimeError:
        core = None
    if core is not None:
        t_indptr, t_indices, t_data, finite = core.completion_transpose(indptr, indices, data, shape[1])
    else:
        t = sp.csr_matrix((data, indices, indptr), shape=shape).tocsc()
        t_indptr, t_indices, t_data = t.indptr.astype(np.int64), t.indices, t.data
        finite = bool(np.all(np.isfinite(data)))
    if not finite:
        raise ValueError(f"{name} contains NaN or infinity among the observed values")
    return Observed(tuple(int(v) for v in shape), indptr, indices, data, t_indptr, t_indices, t_data, dtype)


def as_observed(M_observed: Any, mask: Any = None, shape: Any = None, name: str = "M_observed") -> Observed:
    """Parse ``M_observed``: a SciPy sparse matrix (its stored entries, explicit zeros included,
    are the observations), a dense array with a boolean ``mask`` (True = observed; without a mask
    the finite entries are observed and NaN marks a missing one), or a tuple ``(rows, cols, values)``
    (with ``shape``, default one past the largest coordinates). The input is never modified.
    """
    if sp.issparse(M_observed):
        if mask is not None:
            raise ValueError("mask must be None when M_observed is a sparse matrix (its stored entries are observed)")
        _float_dtype(M_observed.dtype, name)
        if M_observed.ndim != 2:
            raise ValueError(f"{name} must be 2-D")
        if M_observed.format == "csr" and M_observed.has_canonical_format and M_observed.nnz > 0:
            csr = M_observed
            shape = tuple(int(v) for v in csr.shape)
            return _with_columns(shape, csr.indptr, csr.indices, csr.data, _float_dtype(csr.dtype, name), name)
        coo = sp.coo_matrix(M_observed)
        out = _from_coords(coo.row, coo.col, coo.data, tuple(int(s) for s in M_observed.shape), name)
        return replace(out, dtype=_float_dtype(M_observed.dtype, name))
    if isinstance(M_observed, tuple):
        if len(M_observed) != 3:
            raise ValueError(f"{name} as a tuple must be (rows, cols, values), got {len(M_observed)} items")
        if mask is not None:
            raise ValueError("mask must be None when M_observed is given as (rows, cols, values)")
        return _from_coords(*M_observed, shape, name)
    if not isinstance(M_observed, np.ndarray):
        raise TypeError(
            f"{name} must be a SciPy sparse matrix, a NumPy array or a tuple (rows, cols, values), "
            f"got {type(M_observed).__name__}"
        )
    if M_observed.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got an array of shape {M_observed.shape}")
    dtype = _float_dtype(M_observed.dtype, name)
    if mask is None:
        mask = np.isfinite(M_observed)
    else:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype.name}")
        if mask.shape != M_observed.shape:
            raise ValueError(f"mask must have the shape of M_observed {M_observed.shape}, got {mask.shape}")
    rows, cols = np.nonzero(mask)
    out = _from_coords(rows, cols, M_observed[rows, cols], tuple(M_observed.shape), name)
    return replace(out, dtype=dtype)
