"""Prony's method: a sum of exponentials (weighted Dirac measures on the line) from its moments."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validation import check_int


class PronyResult(NamedTuple):
    """``moments[k] = sum_i weights[i] * nodes[i] ** k``; nodes sorted by real part, then imaginary."""

    nodes: Any
    weights: Any


def _as_moments(moments, name: str = "moments") -> np.ndarray:
    if not isinstance(moments, np.ndarray):
        moments = np.asarray(moments)
    if moments.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {moments.shape}")
    if moments.dtype.kind not in "fiuc":
        raise TypeError(f"{name} has unsupported dtype {moments.dtype.name}")
    if not np.all(np.isfinite(moments)):
        raise ValueError(f"{name} contains NaN or infinity")
    return moments.astype(np.complex128 if moments.dtype.kind == "c" else np.float64)


def prony(moments, rank: int) -> PronyResult:
    """Recover ``rank`` nodes and weights from ``moments[k] = sum_i w_i z_i^k``, k = 0..N-1.

    The Hankel matrix ``H[i, j] = moments[i + j]`` ((N - rank) x (rank + 1)) has a one-dimensional
    kernel spanned by the coefficients of ``prod_i (z - z_i)``; its roots are the nodes (the
    kernel vector is the last right singular vector, which also makes the method a least-squares
    one when N > 2 rank). The weights solve the Vandermonde system ``V w = moments`` in least
    squares. Nodes and weights are real when the moments are real and the recovered imaginary
    parts are below 1e-10 of the largest node, complex otherwise.

    Parameters
    ----------
    moments : array of shape (N,), N >= 2 * rank
    rank : int

    Returns
    -------
    PronyResult

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.moments import prony
    >>> z, w = np.array([-0.5, 0.2, 0.9]), np.array([1.0, 2.0, 0.5])
    >>> res = prony([np.sum(w * z**k) for k in range(6)], 3)
    >>> np.allclose(res.nodes, z), np.allclose(res.weights, w)
    (True, True)
    """
    moments = _as_moments(moments)
    rank = check_int(rank, "rank", low=1)
    N = moments.shape[0]
    if N < 2 * rank:
        raise ValueError(f"moments must have at least 2 * rank = {2 * rank} entries, got {N}")
    H = np.array([moments[i : i + rank + 1] for i in range(N - rank)])
    scale = np.max(np.abs(H))
    if scale == 0:
        raise ValueError("moments are all zero: there is nothing to decompose")
    _, s, Vh = np.linalg.svd(H / scale)
    if s[-1] < 1e-13 * s[0] and rank > 1 and s[rank - 1] < 1e-10 * s[0]:
        raise ValueError(f"the moments have rank below {rank} (Hankel singular values {s})")
    coeffs = np.conj(Vh[-1])
    nodes = np.roots(coeffs[::-1])
    if nodes.shape[0] != rank:
        raise ValueError(f"the kernel polynomial has degree {nodes.shape[0]} < rank {rank}: the moments are degenerate")
    Vand = nodes[None, :] ** np.arange(N)[:, None]
    weights = np.linalg.lstsq(Vand, moments.astype(np.complex128), rcond=None)[0]
    if moments.dtype.kind == "f" and np.max(np.abs(nodes.imag)) <= 1e-10 * max(1.0, np.max(np.abs(nodes))):
        nodes = nodes.real
        weights = np.linalg.lstsq(Vand.real, moments, rcond=None)[0]
    order = np.lexsort((np.imag(nodes), np.real(nodes)))
    return PronyResult(nodes[order], weights[order])
