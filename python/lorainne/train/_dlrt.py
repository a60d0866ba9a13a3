"""Dynamical low-rank training: the rank-adaptive augmented BUG integrator of DLRT.

Schotthöfer, Zangrando, Kusch, Ceruti and Tudisco, "Low-rank lottery tickets: finding efficient
low-rank neural networks via matrix differential equations" (NeurIPS 2022); Ceruti, Kusch and
Lubich, "A rank-adaptive robust integrator for dynamical low-rank approximation" (BIT 2022).

A layer ``W = U S V^T`` takes one explicit Euler step of the gradient flow per call:

1. K-step and L-step (one gradient ``G`` at ``W``): ``K = U S - lr G V``, ``L = V S^T - lr G^T U``;
2. augmentation: ``Uh = qr([K, U])``, ``Vh = qr([L, V])`` (rank up to 2r);
3. S-step (Galerkin on the augmented core): ``Sh = (Uh^T U) S (V^T Vh) - lr Uh^T G' Vh`` with
   ``G'`` the gradient at ``Uh Sh0 Vh^T``, which equals ``W`` since ``U`` and ``V`` lie in the
   augmented spans;
4. truncation: SVD of the 2r x 2r core, keeping the smallest rank with
   ``||sigma[r:]|| <= tol ||sigma||``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from .._validation import as_float_array, check_int, check_n_threads
from ..randomized import householder_qr
from ._galore import check_positive_real


@dataclass
class LowRankLayer:
    """A weight matrix in factored form ``W = U @ S @ V.T``.

    Attributes
    ----------
    U : array (m, r)
        Orthonormal columns.
    S : array (r, r)
        The core (diagonal after a truncation, full after an S-step).
    V : array (n, r)
        Orthonormal columns.
    """

    U: Any
    S: Any
    V: Any

    def __post_init__(self):
        self.U = as_float_array(self.U, "U", ndim=2)
        self.S = as_float_array(self.S, "S", ndim=2)
        self.V = as_float_array(self.V, "V", ndim=2)
        r = self.U.shape[1]
        if tuple(self.S.shape) != (r, self.V.shape[1]) or self.V.shape[1] != r:
            raise ValueError(
                f"S must be (r, r) with r the columns of U and V, got U {tuple(self.U.shape)}, "
                f"S {tuple(self.S.shape)}, V {tuple(self.V.shape)}"
            )

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.U.shape[0]), int(self.V.shape[0]))

    @property
    def n_params(self) -> int:
        """Stored numbers: ``(m + n) r + r^2``."""
        m, n = self.shape
        return (m + n) * self.rank + self.rank**2

    def to_dense(self):
        return self.U @ self.S @ self.V.T

    @classmethod
    def from_dense(cls, W, rank: int) -> LowRankLayer:
        """The best rank-``rank`` factorization of ``W`` (truncated SVD).

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne.train import LowRankLayer
        >>> layer = LowRankLayer.from_dense(np.eye(4), 2)
        >>> layer.rank, layer.shape
        (2, (4, 4))
        """
        W = as_float_array(W, "W", ndim=2)
        rank = check_int(rank, "rank", low=1, high=min(W.shape))
        xp = array_namespace(W)
        U, s, Vt = xp.linalg.svd(W, full_matrices=False)
        return cls(U[:, :rank], _diag(xp, s[:rank]), Vt[:rank, :].T)


def _diag(xp, s):
    return s[:, None] * xp.eye(s.shape[0], dtype=s.dtype, device=device(s))


@dataclass
class AugmentedLayer:
    """The state between the K/L-step and the S-step: bases ``U`` (m, l), ``V`` (n, l) with
    l <= 2r and the core ``S`` (l, l) of the unchanged ``W`` in them.
    """

    U: Any
    S: Any
    V: Any

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])


def _check_layer(layer, name="layer"):
    if not isinstance(layer, (LowRankLayer, AugmentedLayer)):
        raise TypeError(f"{name} must be a LowRankLayer, got {type(layer).__name__}")


def _check_grad(grad, name, shape, ndim=2):
    grad = as_float_array(grad, name, ndim=ndim)
    if tuple(grad.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(grad.shape)}")
    return grad


SMALL = 1 << 16  # below this many entries a QR runs on one thread: a pool costs more than it saves


def qr_threads(Y, n_threads):
    if n_threads is None and Y.shape[0] * Y.shape[1] <= SMALL:
        return 1
    return n_threads


def _augment(xp, new, old, n_threads=None):
    """Orthonormal basis of span([new, old]) with at most min(rows, 2r) columns."""
    Y = xp.concat([new, old], axis=1)
    Q, _ = householder_qr(Y, n_threads=qr_threads(Y, n_threads))
    return Q


def dlrt_kl_step(layer: LowRankLayer, grad_K, grad_L, lr: float, *, n_threads: int | None = None) -> AugmentedLayer:
    """K-step and L-step, then augmentation of the bases by QR.

    Parameters
    ----------
    layer : LowRankLayer
        ``W = U S V^T`` of rank r.
    grad_K : array (m, r)
        ``dL/dK`` at ``K = U S`` (with V fixed): ``G @ V`` for the dense gradient ``G``.
    grad_L : array (n, r)
        ``dL/dL`` at ``L = V S^T`` (with U fixed): ``G.T @ U``.
    lr : float
        Step size, finite and > 0.
    n_threads : int, optional
        Threads of the Rust Householder QR (NumPy input). Default: one thread for matrices of at
        most 65536 entries, all cores above.

    Returns
    -------
    AugmentedLayer
        ``Uh = qr([K, U])``, ``Vh = qr([L, V])`` and the core ``(Uh^T U) S (V^T Vh)`` of the
        unchanged W, ready for :func:`dlrt_s_step`.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import LowRankLayer, dlrt_kl_step
    >>> layer = LowRankLayer.from_dense(np.diag([3.0, 2.0, 1.0, 0.0]), 2)
    >>> G = np.ones((4, 4))
    >>> aug = dlrt_kl_step(layer, G @ layer.V, G.T @ layer.U, lr=0.1)
    >>> aug.rank
    4
    """
    _check_layer(layer)
    lr = check_positive_real(lr, "lr")
    U, S, V = layer.U, layer.S, layer.V
    r = layer.rank
    grad_K = _check_grad(grad_K, "grad_K", (U.shape[0], r))
    grad_L = _check_grad(grad_L, "grad_L", (V.shape[0], r))
    xp = array_namespace(U)
    K = U @ S - lr * grad_K
    L = V @ S.T - lr * grad_L
    n_threads = check_n_threads(n_threads)
    Uh = _augment(xp, K, U, n_threads)
    Vh = _augment(xp, L, V, n_threads)
    Sh = (Uh.T @ U) @ S @ (V.T @ Vh)
    return AugmentedLayer(Uh, Sh, Vh)


def dlrt_s_step(layer: AugmentedLayer, grad_S, lr: float) -> AugmentedLayer:
    """Galerkin step on the augmented core: ``S <- S - lr * grad_S``.

    ``grad_S`` (l, l) is ``Uh^T G Vh`` for the dense gradient ``G`` at ``Uh S Vh^T``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import LowRankLayer, dlrt_kl_step, dlrt_s_step
    >>> layer = LowRankLayer.from_dense(np.diag([3.0, 2.0, 1.0]), 1)
    >>> G = np.eye(3)
    >>> aug = dlrt_kl_step(layer, G @ layer.V, G.T @ layer.U, lr=0.1)
    >>> dlrt_s_step(aug, aug.U.T @ G @ aug.V, lr=0.1).S.shape
    (2, 2)
    """
    _check_layer(layer)
    lr = check_positive_real(lr, "lr")
    grad_S = _check_grad(grad_S, "grad_S", tuple(layer.S.shape))
    return AugmentedLayer(layer.U, layer.S - lr * grad_S, layer.V)


def keep_rank(sigma: list[float], tol: float) -> int:
    """Smallest k >= 1 with ``||sigma[k:]|| <= tol ||sigma||`` (sigma nonincreasing, host floats)."""
    total = sum(s * s for s in sigma)
    tail = 0.0
    k = len(sigma)
    for j in range(len(sigma) - 1, 0, -1):  # tail = sum sigma[j:]^2
        tail += sigma[j] ** 2
        if tail <= tol * tol * total:
            k = j
        else:
            break
    return max(k, 1)


def _check_truncation(tol, rank, max_rank, check_rank=None):
    """The truncation options (exactly one of tol and rank); ``check_rank`` checks a given rank
    (default: one integer >= 1).
    """
    if (tol is None) == (rank is None):
        raise ValueError(f"give exactly one of tol and rank, got tol={tol!r}, rank={rank!r}")
    if tol is not None:
        tol = check_positive_real(tol, "tol")
        if tol >= 1:
            raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if rank is not None:
        rank = check_int(rank, "rank", low=1) if check_rank is None else check_rank(rank)
    if max_rank is not None:
        max_rank = check_int(max_rank, "max_rank", low=1)
    return tol, rank, max_rank


def dlrt_truncate(
    layer: AugmentedLayer, tol: float | None = None, *, rank: int | None = None, max_rank: int | None = None
) -> LowRankLayer:
    """Truncate the augmented core by its SVD: ``S = P diag(sigma) Q^T``, keep k columns.

    Parameters
    ----------
    layer : AugmentedLayer or LowRankLayer
    tol : float in (0, 1), optional
        Keep the smallest k with ``||sigma[k:]|| <= tol ||sigma||`` (DLRT's relative threshold
        theta).
    rank : int, optional
        Keep exactly ``min(rank, l)`` columns instead.
    max_rank : int, optional
        Cap on k with ``tol``.

    Returns
    -------
    LowRankLayer
        ``U P[:, :k]``, ``diag(sigma[:k])``, ``V Q[:, :k]``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import LowRankLayer, dlrt_truncate
    >>> layer = LowRankLayer(np.eye(4, 3), np.diag([1.0, 1e-3, 1e-9]), np.eye(5, 3))
    >>> dlrt_truncate(layer, 1e-2).rank
    1
    """
    _check_layer(layer)
    tol, rank, max_rank = _check_truncation(tol, rank, max_rank)
    xp = array_namespace(layer.S)
    P, sigma, Qt = xp.linalg.svd(layer.S, full_matrices=False)
    if rank is not None:
        k = min(rank, int(sigma.shape[0]))
    else:
        values = [float(s) for s in sigma]  # at most 2r numbers
        if not all(math.isfinite(s) for s in values):
            raise ValueError(
                "the core has NaN or infinite singular values: the step size or the gradient is not finite"
            )
        k = keep_rank(values, tol)
        if max_rank is not None:
            k = min(k, max_rank)
    return LowRankLayer(layer.U @ P[:, :k], _diag(xp, sigma[:k]), layer.V @ Qt[:k, :].T)


def dlrt_step(
    layer: LowRankLayer,
    loss_grad: Callable[[Any], Any],
    lr: float,
    tol: float | None = None,
    *,
    rank: int | None = None,
    max_rank: int | None = None,
    reevaluate: bool = False,
    n_threads: int | None = None,
) -> LowRankLayer:
    """One rank-adaptive DLRT step (augmented BUG) for a loss given by its dense gradient.

    ``loss_grad(W)`` returns ``dL/dW`` (m, n) for a dense ``W``. The K/L-step uses
    ``G = loss_grad(U S V^T)``; the S-step needs the gradient at ``Uh Sh0 Vh^T``, which is the
    same matrix W (U and V lie in the augmented spans), so by default ``G`` is reused and each step
    costs one gradient. ``reevaluate=True`` calls ``loss_grad`` a second time at the augmented
    point, as the method is written for a network trained through its factors (useful when
    ``loss_grad`` draws a fresh mini-batch per call).

    Parameters
    ----------
    layer : LowRankLayer
    loss_grad : callable
        ``W -> dL/dW``, an array of W's shape.
    lr : float
        Step size, finite and > 0.
    tol, rank, max_rank
        Truncation, see :func:`dlrt_truncate` (exactly one of ``tol`` and ``rank``).
    reevaluate : bool, default False
    n_threads : int, optional
        See :func:`dlrt_kl_step`.

    Returns
    -------
    LowRankLayer

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import LowRankLayer, dlrt_step
    >>> rng = np.random.default_rng(0)
    >>> target = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))
    >>> layer = LowRankLayer.from_dense(rng.standard_normal((30, 20)), 6)
    >>> for _ in range(60):
    ...     layer = dlrt_step(layer, lambda W: W - target, lr=0.5, tol=1e-6)
    >>> layer.rank, float(np.linalg.norm(layer.to_dense() - target)) < 1e-8
    (3, True)
    """
    _check_layer(layer)
    if not callable(loss_grad):
        raise TypeError(f"loss_grad must be a callable W -> dL/dW, got {type(loss_grad).__name__}")
    _check_truncation(tol, rank, max_rank)
    G = _check_grad(loss_grad(layer.to_dense()), "loss_grad(W)", layer.shape)
    aug = dlrt_kl_step(layer, G @ layer.V, G.T @ layer.U, lr, n_threads=n_threads)
    if reevaluate:
        G = _check_grad(loss_grad(aug.U @ aug.S @ aug.V.T), "loss_grad(W)", layer.shape)
    aug = dlrt_s_step(aug, aug.U.T @ G @ aug.V, lr)
    return dlrt_truncate(aug, tol, rank=rank, max_rank=max_rank)
