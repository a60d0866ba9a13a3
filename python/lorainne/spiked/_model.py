"""The multi-spiked random tensor model: simulation and the rank-r (joint) ALS estimator."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validation import check_int, check_random_state
from ..tensor import CPTensor


class SpikedTensor(NamedTuple):
    """``T = sum_i betas[i] x_i^(1) o ... o x_i^(d) + W / sqrt(N)``; ``spikes[m]`` is (n, r)."""

    T: Any
    spikes: list
    betas: Any


def _spikes(n, r, correlation, rng):
    Q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    if correlation is None:
        return Q
    L = np.linalg.cholesky(correlation)
    return Q @ L.T  # unit columns with Gram matrix `correlation`


def spiked_tensor(n: int, betas, *, order: int = 3, correlation=None, symmetric: bool = True, random_state=None):
    """Simulate a multi-spiked random tensor (n x ... x n, ``order`` modes).

    Convention of Seddik, Guillaud and Couillet (2024): ``T = sum_i beta_i x_i^(1) o ... o x_i^(d)
    + W / sqrt(N)`` with unit spikes, ``W`` of standard Gaussian entries and ``N = d n`` (the sum of
    the dimensions). With ``symmetric=True`` every mode has the same spikes ``x_i`` and ``W`` is
    replaced by its symmetrization (the average over the d! permutations of the modes, times
    ``sqrt(d!)`` so each off-diagonal entry keeps unit variance); otherwise each mode draws its own.
    ``correlation`` (r x r, positive definite, unit diagonal) is the Gram matrix of the spikes of
    each mode.

    Returns
    -------
    SpikedTensor

    Examples
    --------
    >>> from lorainne.spiked import spiked_tensor
    >>> s = spiked_tensor(10, [3.0], symmetric=False, random_state=0)
    >>> s.T.shape, len(s.spikes)
    ((10, 10, 10), 3)
    """
    import itertools
    import math

    n = check_int(n, "n", low=2)
    order = check_int(order, "order", low=2, high=6)
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or not np.all(np.isfinite(betas)) or np.any(betas < 0):
        raise ValueError(f"betas must be a 1-D array of finite numbers >= 0, got {betas!r}")
    r = betas.shape[0]
    if r > n:
        raise ValueError(f"betas has {r} spikes, more than n = {n}")
    if correlation is not None:
        correlation = np.asarray(correlation, dtype=np.float64)
        if (
            correlation.shape != (r, r)
            or not np.allclose(np.diag(correlation), 1)
            or not np.allclose(correlation, correlation.T)
        ):
            raise ValueError(f"correlation must be a symmetric ({r}, {r}) matrix with unit diagonal")
        if np.linalg.eigvalsh(correlation)[0] <= 0:
            raise ValueError("correlation must be positive definite")
    rng = check_random_state(random_state)
    if symmetric:
        X = _spikes(n, r, correlation, rng)
        spikes = [X] * order
    else:
        spikes = [_spikes(n, r, correlation, rng) for _ in range(order)]
    W = rng.standard_normal((n,) * order)
    if symmetric:
        perms = list(itertools.permutations(range(order)))
        W = sum(W.transpose(p) for p in perms) / math.sqrt(len(perms))
    letters = "abcdef"[:order]
    signal = np.einsum(",".join(f"{c}r" for c in letters) + ",r->" + letters, *spikes, betas)
    return SpikedTensor(signal + W / np.sqrt(order * n), [s.copy() for s in spikes], betas)


def _unfold(T, mode):
    return np.moveaxis(T, mode, 0).reshape(T.shape[mode], -1)


def _khatri_rao(mats):
    out = mats[0]
    for M in mats[1:]:
        out = np.einsum("ir,jr->ijr", out, M).reshape(-1, M.shape[1])
    return out


def spiked_estimate(T, rank: int, *, init="unfolding", n_iter_max: int = 500, tol: float = 1e-12) -> CPTensor:
    """Estimate the spikes of a spiked tensor by rank-``rank`` ALS (power iteration for rank 1).

    All components are updated jointly (least squares against the other modes' factors), not by
    deflation: with correlated spikes deflation biases every later component. The start is the
    top-``rank`` left singular vectors of each mode's unfolding (``"unfolding"``), the true spikes
    (``"truth"``: pass ``init=spiked.spikes`` as a list; for studying the ML fixed point), or a list
    of arrays (n_m, rank). Returns unit factor columns and ``weights = T(x_hat, y_hat, z_hat)``-like
    least-squares weights (for rank 1 exactly the estimator's ``lam``).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.spiked import spiked_estimate, spiked_tensor
    >>> s = spiked_tensor(30, [4.0], symmetric=False, random_state=0)
    >>> est = spiked_estimate(s.T, 1)
    >>> bool(abs(est.factors[0][:, 0] @ s.spikes[0][:, 0]) > 0.9)
    True
    """
    if not isinstance(T, np.ndarray):
        raise TypeError(f"T must be a NumPy array, got {type(T).__name__}")
    if T.ndim < 2 or T.size == 0:
        raise ValueError(f"T must have at least 2 nonempty modes, got shape {T.shape}")
    if T.dtype.kind not in "fiu":
        raise TypeError(f"T has unsupported dtype {T.dtype.name}")
    if not np.all(np.isfinite(T)):
        raise ValueError("T contains NaN or infinity")
    T = T.astype(np.float64)
    d = T.ndim
    rank = check_int(rank, "rank", low=1, high=min(T.shape))
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=1)
    if isinstance(init, str):
        if init == "unfolding":
            factors = [np.linalg.svd(_unfold(T, m), full_matrices=False)[0][:, :rank] for m in range(d)]
        elif init == "truth":
            raise ValueError("init='truth' needs the spikes: pass init=spiked.spikes (a list of arrays)")
        else:
            raise ValueError(f"init must be 'unfolding' or a list of arrays, got {init!r}")
    else:
        factors = [np.asarray(F, dtype=np.float64)[:, :rank].copy() for F in init]
        if len(factors) != d or any(F.shape != (T.shape[m], rank) for m, F in enumerate(factors)):
            raise ValueError(f"init must be a list of {d} arrays of shapes (n_m, {rank})")
    factors = [F / np.linalg.norm(F, axis=0) for F in factors]
    weights = np.ones(rank)
    prev = np.inf
    for _ in range(n_iter_max):
        for m in range(d):
            others = [factors[j] for j in range(d) if j != m]
            G = np.ones((rank, rank))
            for F in others:
                G *= F.T @ F
            A = _unfold(T, m) @ _khatri_rao(others) @ np.linalg.pinv(G)
            weights = np.linalg.norm(A, axis=0)
            factors[m] = A / np.where(weights > 0, weights, 1.0)
        fit = np.linalg.norm(weights)
        if abs(fit - prev) <= tol * fit:
            break
        prev = fit
    return CPTensor(weights, factors)
