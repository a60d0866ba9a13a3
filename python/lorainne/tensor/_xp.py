"""xp (array-API) reference of the ALS-family kernels: MTTKRP, Gram solves, ALS and HALS sweeps.

No ``np.`` calls here: this module runs unchanged on NumPy, CuPy, torch and ``array_api_strict``.
The Rust kernels (``rust/core/src/tensor/``) are checked against it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from array_api_compat import device

from ._structures import khatri_rao


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def mttkrp(xp, X, factors, mode: int):
    """``X_(mode) @ (Khatri-Rao of the other factors)`` (Kolda-Bader order), shape (I_mode, R).

    Contracts the larger side of ``mode`` first with one matmul on a reshape of ``X`` (a view for
    C-ordered data), so neither an unfolded copy of ``X`` nor the full Khatri-Rao product is formed:
    the intermediate has ``R * X.size / max(left, right)`` entries.
    """
    shape = tuple(X.shape)
    rank = factors[0].shape[1]
    size = shape[mode]
    left = _prod(shape[:mode])
    right = _prod(shape[mode + 1 :])
    ones = xp.ones((1, rank), dtype=X.dtype, device=device(X))
    kr_left = khatri_rao(xp, [ones, *factors[:mode]])  # (left, R)
    kr_right = khatri_rao(xp, [ones, *factors[mode + 1 :]])  # (right, R)
    if right >= left:
        partial = xp.reshape(xp.reshape(X, (left * size, right)) @ kr_right, (left, size, rank))
        return xp.sum(partial * kr_left[:, None, :], axis=0)
    partial = xp.reshape(kr_left.T @ xp.reshape(X, (left, size * right)), (rank, size, right))
    return xp.sum(partial * kr_right.T[:, None, :], axis=2).T


def gram_hadamard(xp, grams, skip: int | None, like):
    rank = like.shape[1]
    out = xp.ones((rank, rank), dtype=like.dtype, device=device(like))
    for n, g in enumerate(grams):
        if n != skip:
            out = out * g
    return out


def solve_gram(xp, V, M):
    """``M @ pinv(V)`` for a symmetric positive semidefinite ``V`` (eigenvalues below
    ``R * eps * max eigenvalue`` are dropped). Returns (solution, degenerate) where degenerate
    means some eigenvalue was dropped (a rank-deficient model).
    """
    rank = V.shape[0]
    eps = xp.finfo(V.dtype).eps
    w, Q = xp.linalg.eigh(V)
    top = float(xp.max(w))
    threshold = rank * eps * top
    keep = w > threshold
    inverse = xp.where(keep, 1.0 / xp.where(keep, w, xp.ones_like(w)), xp.zeros_like(w))
    degenerate = top <= 0 or not bool(xp.all(keep))
    return ((M @ Q) * inverse[None, :]) @ Q.T, degenerate


def hals_columns(xp, A, M, V, l2: float, l1: float, nonnegative: bool):
    """One pass of column updates of ``A`` for ``min 1/2||X_(n) - A K^T||^2 + l2/2 ||A||^2 +
    l1 |A|_1`` (HALS / coordinate descent by columns), with ``M = X_(n) K`` and ``V = K^T K``.
    Returns the new A (a column stays put where ``V[r, r] + l2 == 0``).
    """
    rank = A.shape[1]
    columns = [A[:, r] for r in range(rank)]
    for r in range(rank):
        denominator = float(V[r, r]) + l2
        if denominator <= 0:
            continue
        current = xp.stack(columns, axis=1)
        numerator = M[:, r] - current @ V[:, r] + columns[r] * V[r, r]
        if nonnegative:
            numerator = xp.clip(numerator - l1, min=0.0) if l1 else xp.clip(numerator, min=0.0)
        elif l1:
            numerator = xp.sign(numerator) * xp.clip(xp.abs(numerator) - l1, min=0.0)
        columns[r] = numerator / denominator
    return xp.stack(columns, axis=1)


class SweepResult(NamedTuple):
    inner: float  # <X, model>
    model_norm_sq: float  # ||model||^2
    degenerate: bool


def sweep(
    xp, X, factors: list, grams: list, *, l2: float = 0.0, l1: float = 0.0, nonnegative: bool = False, product=None
) -> SweepResult:
    """One ALS (or HALS when ``nonnegative`` or ``l1``) sweep over modes 0..N-1, in place.

    ``grams[n]`` is kept equal to ``factors[n].T @ factors[n]``. ``product(factors, mode)`` is the
    MTTKRP (default: :func:`mttkrp` of the dense ``X``). The fit terms come from the last
    mode's MTTKRP: ``<X, model> = sum(M_{N-1} * A_{N-1})`` and ``||model||^2 = sum(V * G_{N-1})``.
    """
    degenerate = False
    ndim = len(factors)
    hals = nonnegative or l1 > 0
    M = V = None
    for mode in range(ndim):
        V = gram_hadamard(xp, grams, mode, factors[0])
        M = mttkrp(xp, X, factors, mode) if product is None else product(factors, mode)
        if hals:
            factors[mode] = hals_columns(xp, factors[mode], M, V, l2, l1, nonnegative)
            if float(xp.max(V)) <= 0:
                degenerate = True
        else:
            regularized = V + l2 * xp.eye(V.shape[0], dtype=V.dtype, device=device(V)) if l2 else V
            factors[mode], bad = solve_gram(xp, regularized, M)
            degenerate = degenerate or bad
        grams[mode] = factors[mode].T @ factors[mode]
    last = factors[-1]
    inner = float(xp.sum(M * last))
    model_norm_sq = float(xp.sum(V * grams[-1]))
    if not degenerate and hals:
        degenerate = _collapsed(xp, grams)
    return SweepResult(inner, model_norm_sq, degenerate)


def _collapsed(xp, grams) -> bool:
    """A column that is zero in some factor (HALS can zero a whole component)."""
    for g in grams:
        if bool(xp.any(xp.linalg.diagonal(g) <= 0)):
            return True
    return False


def relative_error(norm_x_sq: float, result: SweepResult) -> float:
    residual_sq = max(norm_x_sq - 2.0 * result.inner + result.model_norm_sq, 0.0)
    if norm_x_sq > 0:
        return math.sqrt(residual_sq / norm_x_sq)
    return math.sqrt(residual_sq)


def balance(xp, factors: list, grams: list, l2: float, l1: float):
    """Rescale each component's columns so that the penalty is equal across modes (the model is
    unchanged): the penalty of component r is scale-invariant in the product of its column norms,
    and is smallest when all of them equal the N-th root of that product. Uses the l2 norms when
    ``l2 > 0``, the l1 norms otherwise.
    """
    ndim = len(factors)
    use_l2 = l2 > 0
    norms = [xp.linalg.vector_norm(f, axis=0, ord=2 if use_l2 else 1) for f in factors]
    product = norms[0]
    for n in norms[1:]:
        product = product * n
    positive = product > 0
    target = product ** (1.0 / ndim)
    for mode in range(ndim):
        scale = xp.where(
            positive, target / xp.where(positive, norms[mode], xp.ones_like(norms[mode])), xp.ones_like(target)
        )
        factors[mode] = factors[mode] * scale[None, :]
        grams[mode] = grams[mode] * scale[:, None] * scale[None, :]
