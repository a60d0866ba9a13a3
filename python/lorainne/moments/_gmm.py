"""Means and weights of a spherical Gaussian mixture from its first three moments."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validation import check_int, check_random_state
from ._symmetric import orthogonal_power


class GMMMoments(NamedTuple):
    """A spherical mixture ``sum_i weights[i] N(means[i], sigma2 I)``."""

    means: Any
    weights: Any
    sigma2: float


def population_moments(means, weights, sigma2: float):
    """``(E x, E x x^T, E x o x o x)`` of the spherical mixture (means (k, d), weights (k,))."""
    mu, w = np.asarray(means, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    d = mu.shape[1]
    m1 = w @ mu
    M2 = np.einsum("r,ri,rj->ij", w, mu, mu) + sigma2 * np.eye(d)
    M3 = np.einsum("r,ri,rj,rk->ijk", w, mu, mu, mu) + sigma2 * _sym_e(m1)
    return m1, M2, M3


def _sym_e(m):
    """``sum_j (m o e_j o e_j + e_j o m o e_j + e_j o e_j o m)``."""
    d = m.shape[0]
    eye = np.eye(d)
    return np.einsum("i,jk->ijk", m, eye) + np.einsum("j,ik->ijk", m, eye) + np.einsum("k,ij->ijk", m, eye)


def gmm_moments(X, n_components: int, *, random_state=None) -> GMMMoments:
    """Method-of-moments estimate of a spherical Gaussian mixture with a common variance.

    For ``x ~ sum_i w_i N(mu_i, sigma^2 I)`` with ``k < d`` linearly independent means
    (Hsu and Kakade 2013; Anandkumar, Ge, Hsu, Kakade and Telgarsky 2014, section 3.2):
    ``sigma^2`` is the smallest eigenvalue of the covariance, ``M2 = E[x x^T] - sigma^2 I =
    sum_i w_i mu_i mu_i^T`` and ``M3 = E[x o x o x] - sigma^2 sum_j (m o e_j o e_j + ...) =
    sum_i w_i mu_i^{o3}`` with ``m = E x``. Whitening by ``W`` (``W^T M2 W = I``, d x k) makes
    ``M3(W, W, W) = sum_i w_i^{-1/2} v_i^{o3}`` orthogonally decomposable; the tensor power method
    returns ``(lam_i, v_i)``, and ``w_i = lam_i^{-2}``, ``mu_i = lam_i (W^T)^+ v_i``.

    Parameters
    ----------
    X : array of shape (N, d) of samples, or a tuple ``(m1, M2, M3)`` of the raw moments
        ``E x``, ``E x x^T``, ``E x o x o x`` (e.g. :func:`population_moments`).
    n_components : int, ``1 <= n_components < d``
    random_state : None, int, Generator or RandomState

    Returns
    -------
    GMMMoments
        Components sorted by decreasing weight.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.moments import gmm_moments, population_moments
    >>> mu = np.array([[2.0, 0, 0, 0], [0, 3.0, 0, 1], [0, 0, -2.0, 1]]); w = np.array([0.5, 0.3, 0.2])
    >>> est = gmm_moments(population_moments(mu, w, 0.5), 3, random_state=0)
    >>> np.allclose(est.weights, w), np.allclose(est.means, mu), round(est.sigma2, 6)
    (True, True, 0.5)
    """
    if isinstance(X, tuple):
        if len(X) != 3:
            raise ValueError(f"X as moments must be (m1, M2, M3), got {len(X)} items")
        m1, M2, M3 = (np.asarray(a, dtype=np.float64) for a in X)
        d = m1.shape[0] if m1.ndim == 1 else -1
        if m1.ndim != 1 or M2.shape != (d, d) or M3.shape != (d, d, d):
            raise ValueError(
                f"X moments must have shapes (d,), (d, d), (d, d, d), got {m1.shape}, {M2.shape}, {M3.shape}"
            )
        if not all(np.all(np.isfinite(a)) for a in (m1, M2, M3)):
            raise ValueError("X contains NaN or infinity")
    else:
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X must be a NumPy array or a tuple of moments, got {type(X).__name__}")
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"X must be 2-D with at least 2 samples, got shape {X.shape}")
        if X.dtype.kind not in "fiu":
            raise TypeError(f"X has unsupported dtype {X.dtype.name}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinity")
        X = X.astype(np.float64)
        d = X.shape[1]
        N = X.shape[0]
        m1 = X.mean(axis=0)
        M2 = X.T @ X / N
        M3 = np.einsum("ni,nj,nk->ijk", X, X, X, optimize=True) / N
    k = check_int(n_components, "n_components", low=1, high=d - 1)
    rng = check_random_state(random_state)
    cov = M2 - np.outer(m1, m1)
    sigma2 = float(np.linalg.eigvalsh(cov)[0])
    P2 = M2 - sigma2 * np.eye(d)
    P3 = M3 - sigma2 * _sym_e(m1)
    s, U = np.linalg.eigh(P2)
    s, U = s[::-1][:k], U[:, ::-1][:, :k]
    if not s[-1] > 1e-12 * s[0]:
        raise ValueError(f"the second moment has rank below n_components={k}: means are not independent")
    W = U / np.sqrt(s)
    Tw = np.einsum("ijk,ia,jb,kc->abc", P3, W, W, W)
    Tw = (
        Tw
        + Tw.transpose(1, 0, 2)
        + Tw.transpose(2, 1, 0)
        + Tw.transpose(0, 2, 1)
        + Tw.transpose(1, 2, 0)
        + Tw.transpose(2, 0, 1)
    ) / 6
    lam, V = orthogonal_power(Tw, k, rng)
    weights = 1.0 / lam**2
    means = (lam * (np.linalg.pinv(W.T) @ V)).T
    order = np.argsort(-weights)
    return GMMMoments(means[order], weights[order], sigma2)
