"""Real-or-complex pieces of the structured models on the xp path (CONFAC/PARALIND, PARATUCK-2,
DEDICOM, decoupling): the data check that admits complex64/complex128, the conjugate transpose,
the Hermitian Gram solve, the third-order MTTKRP, and starts drawn on the host.

Every normal equation of these models is written with conjugate transposes, so the same code
serves real and complex data. Imports only ``_modelkit`` and shared modules.
"""

from __future__ import annotations

import logging

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import numpy_dtype

logger = logging.getLogger("lorainne")

_COMPLEX_HINT = "use float32, float64, complex64 or complex128 (integers are promoted to float64)"


def is_complex(xp, dtype) -> bool:
    return bool(xp.isdtype(dtype, "complex floating"))


def check_data(X, name: str, *, ndim: int | None = None, finite: bool = True):
    """``X`` as a float32/float64/complex64/complex128 array of its own library (integers and bool
    promoted to float64; never modified in place), checked for ``ndim``, emptiness and finiteness.
    """
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(X).__name__}")
    if isinstance(X, np.ndarray):
        kind, size = X.dtype.kind, X.dtype.itemsize
        if kind in "iub":
            X = X.astype(np.float64)
        elif not ((kind == "f" and size in (4, 8)) or (kind == "c" and size in (8, 16))):
            raise TypeError(f"{name} has unsupported dtype {X.dtype}: {_COMPLEX_HINT}")
    else:
        xp = array_namespace(X)
        if xp.isdtype(X.dtype, ("integral", "bool")):
            X = xp.astype(X, xp.float64)
        elif X.dtype not in (xp.float32, xp.float64, xp.complex64, xp.complex128):
            raise TypeError(f"{name} has unsupported dtype {X.dtype}: {_COMPLEX_HINT}")
    xp = array_namespace(X)
    if ndim is not None and X.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got an array of shape {tuple(X.shape)}")
    if any(int(s) == 0 for s in X.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(X.shape)}")
    if finite and not bool(xp.all(xp.isfinite(X))):
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def as_like(M, X, name: str):
    """A user matrix moved to X's library and device and cast to X's dtype (a copy, checked finite)."""
    xp = array_namespace(X)
    if isinstance(M, np.ndarray) and M.dtype.kind == "c" and not is_complex(xp, X.dtype):
        raise TypeError(f"{name} is complex but X is real")
    M = xp.asarray(M, device=device(X))
    if not (xp.isdtype(M.dtype, "numeric")):
        raise TypeError(f"{name} must be numeric, got dtype {M.dtype}")
    if is_complex(xp, M.dtype) and not is_complex(xp, X.dtype):
        raise TypeError(f"{name} is complex but X is real")
    M = xp.astype(M, X.dtype, copy=True)
    if not bool(xp.all(xp.isfinite(M))):
        raise ValueError(f"{name} contains NaN or infinity")
    return M


def conj(xp, M):
    return xp.conj(M) if is_complex(xp, M.dtype) else M


def herm(xp, M):
    """The conjugate transpose ``M^H`` (``M^T`` for real data)."""
    return conj(xp, M).T


def real_dtype(xp, dtype):
    if dtype == xp.complex64:
        return xp.float32
    if dtype == xp.complex128:
        return xp.float64
    return dtype


def solve_right(xp, M, V):
    """``M @ pinv(V)`` for a Hermitian positive semidefinite ``V`` (eigenvalues below
    ``n eps max`` dropped). Returns (solution, degenerate).
    """
    n = V.shape[0]
    V = (V + herm(xp, V)) / 2
    w, Q = xp.linalg.eigh(V)
    eps = xp.finfo(w.dtype).eps
    top = float(xp.max(w))
    keep = w > n * eps * max(top, 0.0)
    inverse = xp.where(keep, 1.0 / xp.where(keep, w, xp.ones_like(w)), xp.zeros_like(w))
    inverse = xp.astype(inverse, V.dtype)
    return ((M @ Q) * inverse[None, :]) @ herm(xp, Q), (top <= 0 or not bool(xp.all(keep)))


def solve_rows(xp, rhs, V):
    """Row ``k`` of ``rhs`` (K x n) times ``pinv(V[k])`` for a stack of Hermitian positive
    semidefinite ``V`` (K x n x n), by one batched eigendecomposition; returns (rows, degenerate).
    """
    n = V.shape[-1]
    V = (V + xp.permute_dims(conj(xp, V), (0, 2, 1))) / 2
    w, Q = xp.linalg.eigh(V)
    eps = xp.finfo(w.dtype).eps
    top = xp.max(w, axis=1, keepdims=True)
    keep = w > n * eps * xp.clip(top, min=0.0)
    inverse = xp.astype(xp.where(keep, 1.0 / xp.where(keep, w, xp.ones_like(w)), xp.zeros_like(w)), V.dtype)
    coords = xp.sum(rhs[:, :, None] * Q, axis=1) * inverse  # rhs Q diag(1/w): K x n
    rows = xp.sum(coords[:, None, :] * conj(xp, Q), axis=2)  # ... Q^H
    return rows, not bool(xp.all(keep))


def lstsq(xp, Z, Y):
    """Least-squares ``argmin_W ||Z W - Y||`` through the normal equations (``Z^H Z`` pseudo-inverted)."""
    G = herm(xp, Z) @ Z
    sol, _ = solve_right(xp, herm(xp, herm(xp, Z) @ Y), G)
    return herm(xp, sol)


def mttkrp3(xp, X, factors, mode: int):
    """``X_(mode) (F_c kr F_b)`` of a 3-way X for the two other factors, without conjugation
    (callers pass ``conj(F)`` for the normal equations), shape ``(X.shape[mode], R)``.
    """
    A, B, C = factors
    if mode == 0:
        T = xp.tensordot(X, C, axes=([2], [0]))  # I x J x R
        return xp.sum(T * B[None, :, :], axis=1)
    if mode == 1:
        T = xp.tensordot(X, C, axes=([2], [0]))  # I x J x R
        return xp.sum(T * A[:, None, :], axis=0)
    T = xp.tensordot(X, B, axes=([1], [0]))  # I x K x R
    return xp.sum(T * A[:, None, :], axis=0)


def cp3(xp, A, B, C):
    """The 3-way tensor ``[[A, B, C]]``: one matmul ``A (B kr C)^T`` (row-major Khatri-Rao)."""
    n1, J, K, R = A.shape[0], B.shape[0], C.shape[0], A.shape[1]
    kr = xp.reshape(B[:, None, :] * C[None, :, :], (J * K, R))
    return xp.reshape(A @ kr.T, (n1, J, K))


def sq_norm(xp, x) -> float:
    return float(xp.sum(xp.abs(x) ** 2))


def draw(xp, rng, shape, dtype, like):
    """Standard (complex) normal entries drawn on the host by ``rng``, moved to ``like``'s device."""
    host = rng.standard_normal(shape)
    if is_complex(xp, dtype):
        host = (host + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
    return xp.asarray(host.astype(numpy_dtype(dtype), copy=False), device=device(like))


def leading_left(xp, M, k: int):
    """The ``k`` leading left singular vectors of a matrix (by the eigenvectors of ``M M^H``)."""
    w, Q = xp.linalg.eigh(M @ herm(xp, M))
    return xp.flip(Q, axis=1)[:, :k]


def model_end_of_sweep(stop, degenerate, callback, verbose, name, state, errors):
    """After a sweep of a structured model: log, call ``callback(state, rel_error)`` with the model
    result ``state``, then the stop status ("callback" first) or None to go on.
    """
    if verbose:
        logger.info("%s: sweep %d, relative error %.6g", name, len(errors), errors[-1])
    if callback is not None and bool(callback(state, errors[-1])):
        return "callback"
    return stop(errors, bool(degenerate))


class ExactStopRule:
    """``_als.StopRule`` for loops whose errors are exact residual norms (not the cheap CP formula,
    whose cancellation limits it to ``sqrt(eps)``): converged when the relative error is below
    ``100 eps`` or changed by less than ``max(tol, 4 eps)`` between sweeps; "stalled" instead of
    "converged" for a rank-deficient model; None (go on) with ``tol == 0``.
    """

    def __init__(self, tol: float, dtype):
        self.tol = tol
        self.eps = float(np.finfo(numpy_dtype(dtype)).eps)

    def __call__(self, errors, degenerate) -> str | None:
        if self.tol <= 0 or not errors:
            return None
        if errors[-1] <= 100 * self.eps:
            return "converged"
        if len(errors) >= 2 and abs(errors[-2] - errors[-1]) < max(self.tol, 4 * self.eps):
            return "stalled" if degenerate else "converged"
        return None
