"""Shared pieces of the structured tensor models (PARAFAC2, CMTF, block terms, ...): the result
base class that unpacks like a tuple, argument checks and small dense helpers.

Imports ``_als`` and ``_structures`` only; the model modules import this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from array_api_compat import array_namespace, device

from .._validation import as_float_array, check_int, check_verbose
from ._als import check_callback, check_tol0


class ModelResult:
    """Base of the structured-model results: ``_fields`` name the parts that unpack and index
    like a tuple; ``n_iter``, ``errors`` and ``converged`` describe the run that produced it.
    """

    _fields: tuple[str, ...] = ()

    def __init__(self, *parts, n_iter: int = 0, errors: Sequence[float] = (), converged: bool = False):
        if len(parts) != len(self._fields):
            raise ValueError(f"{type(self).__name__} takes {len(self._fields)} parts {self._fields}, got {len(parts)}")
        for name, part in zip(self._fields, parts, strict=True):
            setattr(self, name, part)
        self.n_iter = int(n_iter)
        self.errors = [float(e) for e in errors]
        self.converged = bool(converged)

    def __iter__(self):
        return iter(tuple(getattr(self, name) for name in self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __getitem__(self, index):
        return tuple(self)[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_iter={self.n_iter}, converged={self.converged})"


def check_common(rank, n_iter_max, tol, callback, verbose, low_rank: int = 1):
    """The shared scalar checks of the public model functions."""
    rank = check_int(rank, "rank", low=low_rank)
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_tol0(tol)
    callback = check_callback(callback)
    verbose = check_verbose(verbose)
    return rank, n_iter_max, tol, callback, verbose


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_matrix(X, name: str):
    return as_float_array(X, name, ndim=2)


def check_array_mask(mask, X, name: str = "mask"):
    """A boolean array of X's shape (0/1 numeric accepted), in X's namespace; None passes."""
    if mask is None:
        return None
    xp = array_namespace(X)
    if not hasattr(mask, "shape") or tuple(mask.shape) != tuple(X.shape):
        raise ValueError(f"{name} must have shape {tuple(X.shape)}, got {tuple(getattr(mask, 'shape', ()))}")
    mxp = array_namespace(mask)
    if mask.dtype != mxp.bool:
        if isinstance(mask, np.ndarray) and mask.dtype.kind in "iuf" and np.all((mask == 0) | (mask == 1)):
            mask = mask.astype(bool)
        else:
            raise TypeError(f"{name} must be a boolean array (True = observed), got dtype {mask.dtype}")
    if mxp is not xp:
        mask = xp.asarray(mask, device=device(X))
    if not bool(xp.any(mask)):
        raise ValueError(f"{name} observes no entry")
    return mask


def sq_norm(xp, x) -> float:
    """``||x||^2`` of a real array in one pass (``vector_norm`` squares into a temporary first: 7x
    slower on a 200^3 tensor with NumPy); as ``vector_norm``, not guarded against overflow.
    """
    flat = xp.reshape(x, (-1,))
    return float(xp.vecdot(flat, flat))


def relative(error_sq: float, norm_sq: float) -> float:
    error_sq = max(error_sq, 0.0)
    return math.sqrt(error_sq / norm_sq) if norm_sq > 0 else math.sqrt(error_sq)


def lstsq_right(xp, M, V):
    """``M @ pinv(V)`` for a Hermitian positive semidefinite ``V`` (eigenvalues below
    ``n eps max`` dropped). Returns (solution, degenerate).
    """
    n = V.shape[0]
    eps = xp.finfo(V.dtype).eps
    w, Q = xp.linalg.eigh(V)
    top = float(xp.max(w))
    keep = w > n * eps * max(top, 0.0)
    inverse = xp.where(keep, 1.0 / xp.where(keep, w, xp.ones_like(w)), xp.zeros_like(w))
    return ((M @ Q) * inverse[None, :]) @ Q.T, (top <= 0 or not bool(xp.all(keep)))


def normalize_columns(xp, factors):
    """Unit-norm columns; returns (weights, factors) with weights the product of the norms
    (a zero column keeps norm 1).
    """
    rank = factors[0].shape[1]
    weights = xp.ones((rank,), dtype=factors[0].dtype, device=device(factors[0]))
    out = []
    for f in factors:
        norms = xp.linalg.vector_norm(f, axis=0)
        safe = xp.where(norms > 0, norms, xp.ones_like(norms))
        out.append(f / safe[None, :])
        weights = weights * xp.where(norms > 0, norms, xp.zeros_like(norms))
    return weights, out
