"""The Tucker form of dynamical low-rank training (TDLRT), for convolution kernels and other
weight tensors: Zangrando, Schotthöfer, Ceruti, Kusch and Tudisco, "Rank-adaptive spectral pruning
of convolutional layers during training" (NeurIPS 2024); Ceruti, Kusch and Lubich's rank-adaptive
BUG integrator for Tucker tensors.

One step on ``W = C x_1 U_1 ... x_d U_d`` with the gradient ``G`` at W:

1. per mode i (K-step on the core's unfolding): ``Mat_i(C)^T = Q_i R_i``, ``K_i = U_i R_i^T``,
   ``K_i <- K_i - lr Mat_i(G x_{j != i} U_j^T) Q_i``, ``Uh_i = qr([K_i, U_i])``;
2. core Galerkin step on the augmented bases:
   ``Ch = C x_i (Uh_i^T U_i) - lr G x_i Uh_i^T`` (the augmented point is W itself);
3. truncated HOSVD of ``Ch``: per mode keep the smallest rank with
   ``||sigma_i[k:]|| <= tol ||Ch||``; ``C = Ch x_i P_i^T``, ``U_i = Uh_i P_i``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace

from .._validation import as_float_array, check_int, check_n_threads
from ..randomized import householder_qr
from ._dlrt import _check_grad, _check_truncation, keep_rank, qr_threads
from ._galore import check_positive_real


def mode_dot(xp, T, M, mode: int):
    """``T x_mode M``: multiply mode ``mode`` of ``T`` by the matrix ``M`` (J, I_mode)."""
    order = [mode] + [j for j in range(T.ndim) if j != mode]
    moved = xp.permute_dims(T, tuple(order))
    rest = moved.shape[1:]
    out = M @ xp.reshape(moved, (moved.shape[0], -1))
    out = xp.reshape(out, (M.shape[0], *rest))
    inverse = [0] * T.ndim
    for position, axis in enumerate(order):
        inverse[axis] = position
    return xp.permute_dims(out, tuple(inverse))


def unfold(xp, T, mode: int):
    order = [mode] + [j for j in range(T.ndim) if j != mode]
    return xp.reshape(xp.permute_dims(T, tuple(order)), (T.shape[mode], -1))


@dataclass
class TuckerLayer:
    """A weight tensor in Tucker form ``W = core x_1 U_1 ... x_d U_d`` with orthonormal factors.

    Attributes
    ----------
    core : array (r_1, ..., r_d)
    factors : list of arrays (n_i, r_i)
    """

    core: Any
    factors: list = field(default_factory=list)

    def __post_init__(self):
        self.core = as_float_array(self.core, "core")
        if not isinstance(self.factors, (list, tuple)) or len(self.factors) != self.core.ndim:
            raise ValueError(f"factors must be a list of {self.core.ndim} matrices (one per mode of core)")
        self.factors = [as_float_array(U, f"factors[{i}]", ndim=2) for i, U in enumerate(self.factors)]
        for i, U in enumerate(self.factors):
            if U.shape[1] != self.core.shape[i]:
                raise ValueError(
                    f"factors[{i}] must have {self.core.shape[i]} columns (mode {i} of core), got {tuple(U.shape)}"
                )

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.core.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(U.shape[0]) for U in self.factors)

    @property
    def n_params(self) -> int:
        return math.prod(self.ranks) + sum(n * r for n, r in zip(self.shape, self.ranks, strict=True))

    def to_dense(self):
        xp = array_namespace(self.core)
        W = self.core
        for i, U in enumerate(self.factors):
            W = mode_dot(xp, W, U, i)
        return W

    @classmethod
    def from_dense(cls, W, ranks) -> TuckerLayer:
        """Truncated HOSVD of ``W`` with the given per-mode ranks.

        Examples
        --------
        >>> import numpy as np
        >>> from lorainne.train import TuckerLayer
        >>> layer = TuckerLayer.from_dense(np.ones((4, 3, 2)), (1, 1, 1))
        >>> layer.ranks, bool(np.allclose(layer.to_dense(), 1.0))
        ((1, 1, 1), True)
        """
        W = as_float_array(W, "W")
        ranks = _check_ranks(ranks, W.shape)
        xp = array_namespace(W)
        factors = []
        for i in range(W.ndim):
            U, _, _ = xp.linalg.svd(unfold(xp, W, i), full_matrices=False)
            factors.append(U[:, : ranks[i]])
        core = W
        for i, U in enumerate(factors):
            core = mode_dot(xp, core, U.T, i)
        return cls(core, factors)


def _check_ranks(ranks, shape) -> tuple[int, ...]:
    if not isinstance(ranks, (tuple, list)) or len(ranks) != len(shape):
        raise ValueError(f"rank must be a tuple of {len(shape)} integers (one per mode), got {ranks!r}")
    return tuple(check_int(r, "rank", low=1, high=n) for r, n in zip(ranks, shape, strict=True))


def tdlrt_step(
    layer: TuckerLayer,
    loss_grad: Callable[[Any], Any],
    lr: float,
    tol: float | None = None,
    *,
    rank=None,
    max_rank: int | None = None,
    n_threads: int | None = None,
) -> TuckerLayer:
    """One rank-adaptive TDLRT step (Tucker augmented BUG) for a loss given by its dense gradient.

    Parameters
    ----------
    layer : TuckerLayer
    loss_grad : callable
        ``W -> dL/dW`` for the dense tensor W.
    lr : float
        Step size, finite and > 0.
    tol : float in (0, 1), optional
        Per-mode truncation: the smallest rank with ``||sigma_i[k:]|| <= tol ||core||``.
    rank : tuple of int, optional
        Fixed per-mode ranks instead of ``tol``.
    max_rank : int, optional
        Cap on every mode's rank with ``tol``.
    n_threads : int, optional
        Threads of the Rust Householder QR (see :func:`dlrt_kl_step`).

    Returns
    -------
    TuckerLayer

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import TuckerLayer, tdlrt_step
    >>> rng = np.random.default_rng(0)
    >>> target = TuckerLayer.from_dense(rng.standard_normal((8, 7, 6)), (2, 3, 2)).to_dense()
    >>> layer = TuckerLayer.from_dense(rng.standard_normal((8, 7, 6)), (4, 4, 4))
    >>> for _ in range(60):
    ...     layer = tdlrt_step(layer, lambda W: W - target, lr=0.5, tol=1e-6)
    >>> layer.ranks
    (2, 3, 2)
    """
    if not isinstance(layer, TuckerLayer):
        raise TypeError(f"layer must be a TuckerLayer, got {type(layer).__name__}")
    if not callable(loss_grad):
        raise TypeError(f"loss_grad must be a callable W -> dL/dW, got {type(loss_grad).__name__}")
    lr = check_positive_real(lr, "lr")
    tol, rank, max_rank = _check_truncation(tol, rank, max_rank, lambda r: _check_ranks(r, layer.shape))
    n_threads = check_n_threads(n_threads)
    C, factors = layer.core, layer.factors
    xp = array_namespace(C)
    G = _check_grad(loss_grad(layer.to_dense()), "loss_grad(W)", layer.shape, ndim=None)
    d = C.ndim
    # 1. K-steps, mode by mode, all from the same W.
    augmented = []
    for i in range(d):
        Mt = unfold(xp, C, i).T
        Q, R = householder_qr(Mt, n_threads=qr_threads(Mt, n_threads))  # Mat_i(C)^T = Q R
        K = factors[i] @ R.T
        H = G
        for j in range(d):
            if j != i:
                H = mode_dot(xp, H, factors[j].T, j)
        K = K - lr * (unfold(xp, H, i) @ Q)
        Y = xp.concat([K, factors[i]], axis=1)
        Uh, _ = householder_qr(Y, n_threads=qr_threads(Y, n_threads))
        augmented.append(Uh)
    # 2. Core Galerkin step on the augmented bases.
    core = C
    projected = G
    for i, Uh in enumerate(augmented):
        core = mode_dot(xp, core, Uh.T @ factors[i], i)
        projected = mode_dot(xp, projected, Uh.T, i)
    core = core - lr * projected
    # 3. Truncated HOSVD of the augmented core.
    new_factors, bases = [], []
    for i in range(d):
        P, sigma, _ = xp.linalg.svd(unfold(xp, core, i), full_matrices=False)
        if rank is not None:
            k = min(rank[i], int(sigma.shape[0]))
        else:
            values = [float(s) for s in sigma]
            if not all(math.isfinite(s) for s in values):
                raise ValueError("the core has NaN or infinite values: the step size or the gradient is not finite")
            k = keep_rank(values, tol)
            if max_rank is not None:
                k = min(k, max_rank)
        bases.append(P[:, :k])
        new_factors.append(augmented[i] @ P[:, :k])
    for i, P in enumerate(bases):
        core = mode_dot(xp, core, P.T, i)
    return TuckerLayer(core, new_factors)
