"""The matrix as the randomized algorithms see it: products with blocks of vectors.

``as_operator`` wraps a dense array of any array-API library, a SciPy sparse matrix or a SciPy
``LinearOperator`` behind one small interface (``matmat``, ``rmatmat``, ``frobenius_norm``),
so the xp reference never branches on the input's kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace

from ._backend import is_linear_operator, is_scipy_sparse
from ._validation import as_float_array, float_dtype_of


@dataclass(frozen=True)
class MatrixOperator:
    """Products with a fixed m x n matrix (dense, sparse or implicit)."""

    shape: tuple[int, int]
    dtype: Any
    xp: Any
    device: Any
    matmat: Callable[[Any], Any]
    rmatmat: Callable[[Any], Any]
    frobenius_norm: Callable[[], float | None]
    dense: Any = None  # the validated dense array, when A is one


def as_operator(A: Any, name: str = "A") -> MatrixOperator:
    """Validate ``A`` and wrap it. Inputs are never modified (promotions copy)."""
    if is_scipy_sparse(A):
        return _sparse_operator(A, name)
    if is_linear_operator(A):
        return _linear_operator(A, name)
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        raise TypeError(f"{name} must be a 2-D array, a SciPy sparse matrix or a LinearOperator, got {type(A).__name__}")
    if isinstance(A, np.ndarray) and A.dtype.kind == "O":
        raise TypeError(f"{name} has unsupported dtype object: use float32 or float64")
    dense = as_float_array(A, name, ndim=2)
    xp = array_namespace(dense)
    from array_api_compat import device

    return MatrixOperator(
        shape=tuple(dense.shape),
        dtype=dense.dtype,
        xp=xp,
        device=device(dense),
        matmat=lambda X: dense @ X,
        rmatmat=lambda X: dense.T @ X,
        frobenius_norm=lambda: float(xp.linalg.vector_norm(dense)),
        dense=dense,
    )


def _sparse_operator(A: Any, name: str) -> MatrixOperator:
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
    dtype = float_dtype_of(A, name)
    if any(s == 0 for s in A.shape):
        raise ValueError(f"{name} must not be empty, got shape {A.shape}")
    csr = A.tocsr().astype(dtype, copy=True)
    csr.sum_duplicates()
    if not np.all(np.isfinite(csr.data)):
        raise ValueError(f"{name} contains NaN or infinity")
    csc_t = csr.T.tocsr()  # A^T in CSR: products with A^T stay row-parallel and cache friendly
    xp = array_namespace(np.empty(0))
    return MatrixOperator(
        shape=tuple(csr.shape),
        dtype=dtype,
        xp=xp,
        device="cpu",
        matmat=lambda X: np.asarray(csr @ X),
        rmatmat=lambda X: np.asarray(csc_t @ X),
        frobenius_norm=lambda: float(np.linalg.norm(csr.data)),
    )


def _linear_operator(A: Any, name: str) -> MatrixOperator:
    if len(A.shape) != 2:
        raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
    dtype = float_dtype_of(A, name)
    xp = array_namespace(np.empty(0))

    def checked(result, what):
        result = np.asarray(result, dtype=dtype)
        if not np.all(np.isfinite(result)):
            raise ValueError(f"{name}.{what} returned NaN or infinity")
        return result

    def rmatmat(X):
        try:
            return checked(A.rmatmat(X), "rmatmat")
        except (NotImplementedError, TypeError) as error:  # SciPy raises TypeError when rmatvec is None
            raise ValueError(f"{name} is a LinearOperator without rmatvec/rmatmat; the range finder needs products with A^T") from error

    return MatrixOperator(
        shape=tuple(A.shape),
        dtype=dtype,
        xp=xp,
        device="cpu",
        matmat=lambda X: checked(A.matmat(X), "matmat"),
        rmatmat=rmatmat,
        frobenius_norm=lambda: None,
    )
