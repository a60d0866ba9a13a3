"""Waring (symmetric CP) decomposition of a symmetric third-order tensor, and the orthogonal
tensor power method shared with the Gaussian-mixture moment estimator.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_option, check_random_state
from ..tensor import CPTensor, cp, jennrich

METHODS = ("moments", "power", "als")


def _as_tensor3(T, name: str = "T") -> np.ndarray:
    if not isinstance(T, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(T).__name__}")
    if T.ndim != 3:
        raise ValueError(f"{name} must be 3-D, got shape {T.shape}")
    if T.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {T.shape}")
    if T.dtype.kind not in "fiu":
        raise TypeError(f"{name} has unsupported dtype {T.dtype.name}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} contains NaN or infinity")
    return T.astype(np.float64)


def orthogonal_power(T, rank: int, rng, *, n_restarts: int = 10, n_iter: int = 100):
    """Robust tensor power method with deflation (Anandkumar et al. 2014) for a symmetric tensor
    close to ``sum_r lam_r v_r^{o3}`` with orthonormal ``v_r``. Returns ``(lam, V)``.
    """
    n = T.shape[0]
    T = T.copy()
    lams, vecs = [], []
    for _ in range(rank):
        best, best_val = None, -np.inf
        for _ in range(n_restarts):
            v = rng.standard_normal(n)
            v /= np.linalg.norm(v)
            for _ in range(n_iter):
                w = np.einsum("ijk,j,k->i", T, v, v)
                nw = np.linalg.norm(w)
                if nw == 0:
                    break
                w /= nw
                done = np.linalg.norm(w - v) < 1e-15
                v = w
                if done:
                    break
            val = np.einsum("ijk,i,j,k->", T, v, v, v)
            if val > best_val:
                best, best_val = v, val
        v = best
        for _ in range(n_iter):  # polish the winner
            w = np.einsum("ijk,j,k->i", T, v, v)
            v = w / np.linalg.norm(w)
        lam = float(np.einsum("ijk,i,j,k->", T, v, v, v))
        lams.append(lam)
        vecs.append(v)
        T -= lam * np.einsum("i,j,k->ijk", v, v, v)
    return np.array(lams), np.stack(vecs, axis=1)


def _symmetric_weights(T, V):
    """Least-squares weights of ``T ~ sum_r lam_r v_r^{o3}`` for fixed unit columns ``V``."""
    KR = np.einsum("ir,jr,kr->ijkr", V, V, V).reshape(-1, V.shape[1])
    return np.linalg.lstsq(KR, T.reshape(-1), rcond=None)[0]


def symmetric_cp(T, rank: int, *, method: str = "moments", random_state=None) -> CPTensor:
    """Waring decomposition ``T = sum_r lam_r v_r o v_r o v_r`` of a symmetric n x n x n tensor.

    The methods:

    * ``"moments"``: Jennrich's simultaneous diagonalization (:func:`jennrich`) of the symmetric
      tensor, i.e. the generalized eigenvectors of two random contractions ``T(a) T(b)^{-1}`` — the
      Hankel / moment-matrix route for order 3, exact for ``rank <= n`` and linearly independent
      ``v_r``;
    * ``"power"``: the robust tensor power method with deflation (Anandkumar, Ge, Hsu, Kakade and
      Telgarsky 2014), exact for orthogonal ``v_r`` (an odeco tensor), otherwise only approximate;
    * ``"als"``: :func:`lorainne.cp` (ALS) started from the ``"moments"`` solution, then
      symmetrized (for noisy tensors).

    The weights ``lam`` are refitted by least squares on unit vectors ``v_r`` and returned as
    ``weights``; the three factors are the same array ``V``.

    Parameters
    ----------
    T : array of shape (n, n, n), symmetric (checked to 1e-8 relative)
    rank : int, ``1 <= rank <= n``
    method : {"moments", "power", "als"}
    random_state : None, int, Generator or RandomState

    Returns
    -------
    CPTensor

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import CPTensor, factor_match_score
    >>> from lorainne.moments import symmetric_cp
    >>> rng = np.random.default_rng(0)
    >>> V = rng.standard_normal((5, 3)); T = np.einsum("r,ir,jr,kr->ijk", [1.0, -2.0, 0.5], V, V, V)
    >>> est = symmetric_cp(T, 3, random_state=0)
    >>> bool(factor_match_score(est, CPTensor(np.ones(3), [V, V, V])) > 0.999)
    True
    """
    T = _as_tensor3(T)
    n = T.shape[0]
    if T.shape != (n, n, n):
        raise ValueError(f"T must be cubic (n, n, n), got shape {T.shape}")
    sym = max(np.linalg.norm(T - T.transpose(p)) for p in ((1, 0, 2), (0, 2, 1), (2, 1, 0)))
    if sym > 1e-8 * np.linalg.norm(T):
        raise ValueError(f"T must be symmetric (largest asymmetry {sym:.3g})")
    rank = check_int(rank, "rank", low=1, high=n)
    method = check_option(method, "method", METHODS)
    rng = check_random_state(random_state)
    if method in ("moments", "als"):
        est = jennrich(T, rank, random_state=rng)
        if method == "als":
            est = cp(T, rank, init=est, n_iter_max=200, tol=1e-12, random_state=rng)
        V = np.asarray(est.factors[0], dtype=np.float64)
        V = V / np.linalg.norm(V, axis=0)
    else:
        _, V = orthogonal_power(T, rank, rng)
    lam = _symmetric_weights(T, V)
    return CPTensor(lam, [V, V.copy(), V.copy()])
