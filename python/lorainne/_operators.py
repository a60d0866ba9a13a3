"""The matrix as the randomized algorithms see it: products with blocks of vectors.

``as_operator`` wraps a dense array of any array-API library, a SciPy sparse matrix, a SciPy
``LinearOperator`` or any object with ``shape`` and ``matmat`` (or ``matvec``) behind one small
interface (``matmat``, ``rmatmat``, ``frobenius_norm``), so the xp reference never branches on the
input's kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from . import _dask
from ._backend import is_dask_array, is_linear_operator, is_scipy_sparse
from ._conjugate import is_complex
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


def as_operator(
    A: Any, name: str = "A", *, allow_complex: bool = False, finite_checked: bool = False
) -> MatrixOperator:
    """Validate ``A`` and wrap it. Inputs are never modified (promotions copy).

    With ``allow_complex`` (callers whose algebra uses conjugate transposes), complex dense arrays,
    sparse matrices and LinearOperators are accepted and ``rmatmat`` is the product with A^H;
    otherwise a complex A raises ``TypeError`` naming it. ``finite_checked``: the caller has proved
    a dense A finite (:func:`lorainne._exact_scaling.rescaled_finite`), so its pass is not repeated.
    """
    if is_scipy_sparse(A):
        return _sparse_operator(A, name, allow_complex)
    if is_linear_operator(A):
        return _linear_operator(A, name, allow_complex)
    if _is_duck_operator(A):
        return _duck_operator(A, name)
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        raise TypeError(
            f"{name} must be a 2-D array, a SciPy sparse matrix or a LinearOperator, got {type(A).__name__}"
        )
    if isinstance(A, np.ndarray) and A.dtype.kind == "O":
        raise TypeError(f"{name} has unsupported dtype object: use float32 or float64")
    dense = as_float_array(A, name, ndim=2, allow_complex=allow_complex, finite=not finite_checked)
    xp = array_namespace(dense)
    from array_api_compat import device

    if is_dask_array(dense):
        if is_complex(dense):
            raise TypeError(f"{name} is a complex Dask array: the Dask path takes float32 or float64")
        return dask_operator(dense)
    matmat, rmatmat = (lambda X: dense @ X), (lambda X: dense.T @ X)
    if is_complex(dense):  # A^H X = (X^H A)^H: conjugates the small blocks, never a copy of A
        rmatmat = lambda X: xp.conj(xp.conj(X).T @ dense).T  # noqa: E731
    return MatrixOperator(
        shape=tuple(dense.shape),
        dtype=dense.dtype,
        xp=xp,
        device=device(dense),
        matmat=matmat,
        rmatmat=rmatmat,
        frobenius_norm=lambda: float(xp.linalg.vector_norm(dense)),
        dense=dense,
    )


@dataclass(frozen=True)
class DaskOperator(MatrixOperator):
    """A Dask matrix's operator; ``checks``: a list collecting the deferred verdicts of the
    orthonormalizations (``_dask.cholesky_qr2``), or None to check each one as it is computed.
    """

    checks: list | None = None


def dask_operator(dense: Any, first_product: tuple[str, Any] | None = None) -> DaskOperator:
    """The operator of a validated 2-D float Dask array: products persisted on the workers, the
    namespace's cholesky fixed. ``first_product`` = (name of X, A @ X) is a product already computed
    with the validation pass (``_dask.first_pass``), handed out once instead of computed again.
    """
    xp = _dask.namespace(dense)
    wait = not _dask.held_between_passes(dense)  # stream A: one pass in flight at a time
    return DaskOperator(
        shape=tuple(dense.shape),
        dtype=dense.dtype,
        xp=xp,
        device="cpu",
        matmat=_dask.persisted(lambda X: dense @ X, first_product, wait),
        rmatmat=_dask.persisted(lambda X: dense.T @ X, wait=wait),
        frobenius_norm=lambda: float(xp.linalg.vector_norm(dense)),
        dense=dense,
    )


def _sparse_operator(A: Any, name: str, allow_complex: bool = False) -> MatrixOperator:
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
    dtype = float_dtype_of(A, name, allow_complex=allow_complex)
    if any(s == 0 for s in A.shape):
        raise ValueError(f"{name} must not be empty, got shape {A.shape}")
    csr = A.tocsr().astype(dtype, copy=True)
    csr.sum_duplicates()
    if not np.all(np.isfinite(csr.data)):
        raise ValueError(f"{name} contains NaN or infinity")
    # A^H in CSR: products with A^H stay row-parallel and cache friendly.
    csc_t = (csr.conj() if dtype.kind == "c" else csr).T.tocsr()
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


def _linear_operator(A: Any, name: str, allow_complex: bool = False) -> MatrixOperator:
    if len(A.shape) != 2:
        raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
    dtype = float_dtype_of(A, name, allow_complex=allow_complex)
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
            raise ValueError(
                f"{name} is a LinearOperator without rmatvec/rmatmat; the range finder needs products with A^T"
            ) from error

    return MatrixOperator(
        shape=tuple(A.shape),
        dtype=dtype,
        xp=xp,
        device="cpu",
        matmat=lambda X: checked(A.matmat(X), "matmat"),
        rmatmat=rmatmat,
        frobenius_norm=lambda: None,
    )


def _is_duck_operator(A: Any) -> bool:
    """An object that is not an array but multiplies blocks (``matmat``) or vectors (``matvec``)."""
    if isinstance(A, np.ndarray) or hasattr(A, "__array_namespace__"):
        return False
    return hasattr(A, "shape") and (callable(getattr(A, "matmat", None)) or callable(getattr(A, "matvec", None)))


def _duck_operator(A: Any, name: str) -> MatrixOperator:
    """Any object with ``shape`` and ``matmat``/``matvec`` (and optionally ``rmatmat``/``rmatvec``
    and ``dtype``): products run on NumPy blocks; a ``matvec``-only object is called column by column.
    """
    try:
        shape = tuple(int(s) for s in A.shape)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}.shape must be a pair of integers, got {A.shape!r}") from error
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D, got shape {shape}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"{name} must not be empty, got shape {shape}")
    dtype = np.dtype(np.float64)
    if getattr(A, "dtype", None) is not None:
        try:
            declared = np.dtype(A.dtype)
        except TypeError as error:
            raise TypeError(f"{name} has unsupported dtype {A.dtype!r}: use float32 or float64") from error
        if declared.kind == "f" and declared.itemsize in (4, 8):
            dtype = declared
        elif declared.kind not in "iub":
            raise TypeError(
                f"{name} has unsupported dtype {declared.name}: use "
                "float32 or float64 (integers are promoted to float64)"
            )
    xp = array_namespace(np.empty(0))

    def blockwise(block_fn, vector_fn, what):
        def apply(X):
            X = np.asarray(X)
            if block_fn is not None:
                result = np.asarray(block_fn(X), dtype=dtype)
            else:
                result = np.stack(
                    [np.asarray(vector_fn(X[:, j]), dtype=dtype).reshape(-1) for j in range(X.shape[1])], axis=1
                )
            expected = (shape[0] if what == "matmat" else shape[1], X.shape[1])
            result = result.reshape(expected) if result.size == expected[0] * expected[1] else result
            if result.shape != expected:
                raise ValueError(f"{name}.{what} returned shape {result.shape}, expected {expected}")
            if not np.all(np.isfinite(result)):
                raise ValueError(f"{name}.{what} returned NaN or infinity")
            return result

        return apply

    matmat = blockwise(getattr(A, "matmat", None), getattr(A, "matvec", None), "matmat")
    block_t, vector_t = getattr(A, "rmatmat", None), getattr(A, "rmatvec", None)
    if callable(block_t) or callable(vector_t):
        rmatmat = blockwise(block_t if callable(block_t) else None, vector_t, "rmatmat")
    else:

        def rmatmat(X):
            raise ValueError(f"{name} has no rmatmat/rmatvec; this computation needs products with A^T")

    return MatrixOperator(
        shape=shape, dtype=dtype, xp=xp, device="cpu", matmat=matmat, rmatmat=rmatmat, frobenius_norm=_declared_norm(A)
    )


def _declared_norm(A: Any) -> Callable[[], float | None]:
    """An operator may declare its ||A||_F with a ``frobenius_norm()`` method (implicit centering)."""
    declared = getattr(A, "frobenius_norm", None)
    return (lambda: float(declared())) if callable(declared) else (lambda: None)
