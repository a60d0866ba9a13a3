"""Multivariate moments: points and weights of a finitely supported measure from its Hankel matrix."""

from __future__ import annotations

import itertools
from math import comb
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .._validation import check_int, check_random_state
from ._prony import _as_moments


class MomentDecomposition(NamedTuple):
    """``moments[alpha] = sum_i weights[i] * prod_j points[i, j] ** alpha[j]``."""

    points: Any
    weights: Any


def monomials(dim: int, degree: int) -> list[tuple[int, ...]]:
    """Exponents of the monomials in ``dim`` variables of total degree <= ``degree``, in the order
    :func:`moment_decomposition` reads its moments: by degree, then lexicographically decreasing
    (``1, x, y, x^2, xy, y^2, ...`` in two variables).

    >>> monomials(2, 2)
    [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    """
    dim = check_int(dim, "dim", low=1)
    degree = check_int(degree, "degree", low=0)
    out: list[tuple[int, ...]] = []
    for d in range(degree + 1):
        level = [c for c in itertools.product(range(d, -1, -1), repeat=dim) if sum(c) == d]
        out.extend(sorted(level, reverse=True))
    return out


def moments_of(points, weights, degree: int) -> np.ndarray:
    """The moments of ``sum_i weights[i] delta_{points[i]}`` up to ``degree``, in :func:`monomials` order."""
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    exps = np.array(monomials(points.shape[1], degree))
    return np.prod(points[None, :, :] ** exps[:, None, :], axis=2) @ weights


def moment_decomposition(moments, rank: int, *, dim: int, random_state=None) -> MomentDecomposition:
    """Recover ``rank`` points of R^dim and their weights from the moments of the measure
    ``sum_i w_i delta_{xi_i}``.

    The moments are given up to an odd total degree ``2t + 1`` (``len(moments) = C(2t+1+dim, dim)``
    in :func:`monomials` order) with ``C(t + dim, dim) >= rank``. The Hankel matrix
    ``H[alpha, beta] = m_{alpha + beta}`` on the monomials of degree <= t has rank ``rank``;
    column-pivoted QR picks ``rank`` columns (a monomial basis B of the quotient algebra) and then
    ``rank`` rows A, making ``H_AB`` invertible. The shifted matrices ``H_j[alpha, beta] =
    m_{alpha + beta + e_j}`` give the multiplication matrices ``M_j = H_AB^{-1} H_j`` of the
    coordinates, which commute and share the eigenvectors; a random combination ``sum_j c_j M_j``
    is diagonalized and each ``M_j`` read in its eigenbasis gives the j-th coordinates (the
    moment-matrix method of Mourrain and coauthors, cf. TensorDec.jl). The weights are the
    least-squares solution of the Vandermonde system over all moments.

    Why an odd degree: with moments of degree <= 2t only, the shifted matrices need rows or
    columns of degree < t and then do not have rank ``rank`` in general. For 5 points of R^2 this
    is not a limitation of the method: their moments of degree <= 4 are the coefficients of the
    ternary quartic ``sum_i w_i (x0 + xi_i . x)^4``, and a quartic that is a sum of 5 fourth powers
    has a one-parameter family of such decompositions (Clebsch; the exceptional case of
    Alexander and Hirschowitz), so infinitely many 5-point measures share those moments
    (``tests/test_moments.py`` constructs a second one). Degree <= 5 determines them.

    Parameters
    ----------
    moments : array of shape (C(2t+1+dim, dim),)
    rank : int
    dim : int
    random_state : None, int, Generator or RandomState
        Draws the combination of the multiplication matrices.

    Returns
    -------
    MomentDecomposition
        ``points`` (rank, dim) and ``weights`` (rank,), real (the real parts: complex points mean
        the moments are not those of a real measure of this rank).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.moments import moment_decomposition, moments_of
    >>> pts, w = np.array([[0.1, 0.5], [-0.4, 0.2], [0.7, -0.3]]), np.array([1.0, 0.5, 2.0])
    >>> res = moment_decomposition(moments_of(pts, w, 3), 3, dim=2, random_state=0)
    >>> order = np.argsort(res.points[:, 0])
    >>> np.allclose(res.points[order], pts[np.argsort(pts[:, 0])])
    True
    """
    dim = check_int(dim, "dim", low=1)
    rank = check_int(rank, "rank", low=1)
    moments = _as_moments(moments)
    if moments.dtype.kind == "c":
        raise TypeError("moments must be real for moment_decomposition")
    N = moments.shape[0]
    D = 0
    while comb(D + dim, dim) < N:
        D += 1
    if comb(D + dim, dim) != N or D % 2 == 0:
        valid = [comb(2 * t + 1 + dim, dim) for t in range(4)]
        raise ValueError(
            f"moments must list all moments of degree <= 2t + 1 in dim = {dim} variables "
            f"(length one of {valid}, ...), got length {N}"
        )
    t = (D - 1) // 2
    base = monomials(dim, t)
    if len(base) < rank:
        raise ValueError(
            f"rank {rank} exceeds {len(base)}, the number of monomials of degree <= {t}: give more moments"
        )
    index = {e: i for i, e in enumerate(monomials(dim, D))}

    def m(e):
        return moments[index[e]]

    def add(a, b):
        return tuple(x + y for x, y in zip(a, b, strict=True))

    H = np.array([[m(add(a, b)) for b in base] for a in base])
    scale = np.max(np.abs(H))
    if scale == 0:
        raise ValueError("moments are all zero: there is nothing to decompose")
    _, R, cols = scipy.linalg.qr(H, pivoting=True)
    diag = np.abs(np.diag(R))
    if diag[rank - 1] <= 1e-12 * diag[0]:
        raise ValueError(f"the Hankel matrix has rank below {rank}: the measure has fewer points")
    cols = cols[:rank]
    _, _, rows = scipy.linalg.qr(H[:, cols].T, pivoting=True)
    rows = rows[:rank]
    A_, B_ = [base[i] for i in rows], [base[i] for i in cols]
    H_ab = H[np.ix_(rows, cols)]
    unit = np.eye(dim, dtype=int)
    mult = [
        np.linalg.solve(H_ab, np.array([[m(add(add(a, b), tuple(unit[j]))) for b in B_] for a in A_]))
        for j in range(dim)
    ]
    c = check_random_state(random_state).standard_normal(dim)
    _, P = np.linalg.eig(sum(cj * Mj for cj, Mj in zip(c, mult, strict=True)))
    Pinv = np.linalg.inv(P)
    points = np.stack([np.diag(Pinv @ Mj @ P) for Mj in mult], axis=1).real
    exps = np.array(monomials(dim, D))
    V = np.prod(points[None, :, :] ** exps[:, None, :], axis=2)
    weights = np.linalg.lstsq(V, moments, rcond=None)[0]
    return MomentDecomposition(points, weights)
