"""Factorized convolutions: CP (Lebedev et al. 2015), Tucker-2 (Kim et al. 2016) and per-filter CP (NORTON).

Kernels are in torch order, K of shape (T, S, kh, kw): T output channels, S input channels. Every
factorization returns the kernels of a pipeline of ordinary (grouped) convolutions, torch layout
``(out, in / groups, kh, kw)``, whose composition is the convolution by the reconstructed kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._backend import to_host
from .._validation import as_float_array, check_int, check_random_state
from ..tensor import cp, tucker


def conv2d(x: np.ndarray, K: np.ndarray, *, groups: int = 1) -> np.ndarray:
    """Valid 2-D cross-correlation (torch's ``conv2d``, no bias, stride 1) of x (N, C, H, W) by
    K (O, C / groups, kh, kw): the NumPy reference the pipelines are checked with.
    """
    n, c, h, w = x.shape
    o, c_g, kh, kw = K.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # N, C, Ho, Wo, kh, kw
    windows = windows.reshape(n, groups, c // groups, h - kh + 1, w - kw + 1, kh, kw)
    kernels = K.reshape(groups, o // groups, c_g, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", windows, kernels, optimize=True)
    return out.reshape(n, o, h - kh + 1, w - kw + 1)


@dataclass(frozen=True, eq=False)
class ConvFactorization:
    """A pipeline of convolutions replacing one (T, S, kh, kw) convolution.

    Attributes
    ----------
    kind : str
        "cp", "tucker2" or "filter_cp".
    kernels : list of numpy arrays
        Torch layout ``(out, in / groups, kh, kw)``, applied in order.
    groups : list of int
        The ``groups`` of each stage (depthwise stages have groups = channels).
    shape : tuple
        The original kernel's shape.
    """

    kind: str
    kernels: list
    groups: list
    shape: tuple

    @property
    def n_params(self) -> int:
        return int(sum(k.size for k in self.kernels))

    @property
    def dense_params(self) -> int:
        return int(np.prod(self.shape))

    def flops(self, height: int, width: int) -> int:
        """Multiply-adds for one image whose every stage outputs ``height x width`` (stride 1, "same")."""
        return int(sum(k.shape[0] * k.shape[1] * k.shape[2] * k.shape[3] for k in self.kernels)) * height * width

    def dense_flops(self, height: int, width: int) -> int:
        return self.dense_params * height * width

    def apply(self, x: np.ndarray, padding: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Run the pipeline on x (N, S, H, W) (NumPy reference): zero padding, then valid convolutions."""
        ph, pw = padding
        h = np.pad(np.asarray(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        for kernel, groups in zip(self.kernels, self.groups, strict=True):
            h = conv2d(h, kernel, groups=groups)
        return h

    def to_kernel(self) -> np.ndarray:
        """The reconstructed (T, S, kh, kw) kernel (the impulse response of the pipeline)."""
        T, S, kh, kw = self.shape
        impulse = np.zeros((S, S, 2 * kh - 1, 2 * kw - 1))
        impulse[np.arange(S), np.arange(S), kh - 1, kw - 1] = 1.0
        response = self.apply(impulse)  # (S, T, kh, kw): correlation with a delta flips the kernel
        return np.transpose(response, (1, 0, 2, 3))[:, :, ::-1, ::-1].copy()


def _check_kernel(K):
    K = as_float_array(K, "K", ndim=4)
    return to_host(K, np.float64)


def conv_cp(K, rank: int, *, n_iter_max: int = 500, tol: float = 1e-8, random_state=None) -> ConvFactorization:
    """CP factorization of a convolution (Lebedev et al. 2015): 1x1 -> kh x 1 depthwise -> 1 x kw
    depthwise -> 1x1, from ``K ~ sum_r w_r a_T[:, r] o a_S[:, r] o a_h[:, r] o a_w[:, r]`` by :func:`lorainne.cp`.

    Parameters
    ----------
    K : array (T, S, kh, kw)
    rank : int >= 1
    n_iter_max, tol, random_state
        Passed to :func:`lorainne.cp`.

    Returns
    -------
    ConvFactorization
        Kernels (R, S, 1, 1), (R, 1, kh, 1), (R, 1, 1, kw), (T, R, 1, 1); ``n_params``
        ``R (S + kh + kw + T)``; ``flops(H, W)``; ``apply``; ``to_kernel``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import conv_cp
    >>> rng = np.random.default_rng(0)
    >>> K = np.einsum("ta,sa,ia,ja->tsij", *(rng.standard_normal((n, 3)) for n in (16, 8, 3, 3)))
    >>> f = conv_cp(K, 3, random_state=0)
    >>> f.n_params, f.dense_params
    (90, 1152)
    >>> float(np.linalg.norm(f.to_kernel() - K) / np.linalg.norm(K)) < 1e-6
    True
    """
    K = _check_kernel(K)
    rank = check_int(rank, "rank", low=1)
    T, S, kh, kw = K.shape
    weights, (a_t, a_s, a_h, a_w) = cp(K, rank, n_iter_max=n_iter_max, tol=tol, random_state=random_state)
    kernels = [
        a_s.T[:, :, None, None].copy(),
        a_h.T[:, None, :, None].copy(),
        a_w.T[:, None, None, :].copy(),
        (a_t * weights[None, :])[:, :, None, None].copy(),
    ]
    return ConvFactorization("cp", kernels, [1, rank, rank, 1], (T, S, kh, kw))


def conv_tucker2(K, ranks, *, n_iter_max: int = 100, random_state=None) -> ConvFactorization:
    """Tucker-2 factorization of a convolution (Kim et al. 2016): 1x1 (S -> R_S) -> kh x kw
    (R_S -> R_T) -> 1x1 (R_T -> T), from :func:`lorainne.tucker` on the two channel modes (the
    spatial modes kept whole).

    Parameters
    ----------
    K : array (T, S, kh, kw)
    ranks : (R_T, R_S)
        1 <= R_T <= T, 1 <= R_S <= S.

    Returns
    -------
    ConvFactorization
        Kernels (R_S, S, 1, 1), (R_T, R_S, kh, kw), (T, R_T, 1, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import conv_tucker2
    >>> K = np.random.default_rng(0).standard_normal((32, 16, 3, 3))
    >>> f = conv_tucker2(K, (8, 4), random_state=0)
    >>> [k.shape for k in f.kernels]
    [(4, 16, 1, 1), (8, 4, 3, 3), (32, 8, 1, 1)]
    """
    K = _check_kernel(K)
    T, S, kh, kw = K.shape
    try:
        r_t, r_s = ranks
    except (TypeError, ValueError):
        raise ValueError(f"ranks must be a pair (R_T, R_S), got {ranks!r}") from None
    r_t = check_int(r_t, "ranks[0]", low=1, high=T)
    r_s = check_int(r_s, "ranks[1]", low=1, high=S)
    core, (u_t, u_s, u_h, u_w) = tucker(K, (r_t, r_s, kh, kw), n_iter_max=n_iter_max, random_state=random_state)
    middle = np.einsum("abij,hi,wj->abhw", core, u_h, u_w)
    kernels = [u_s.T[:, :, None, None].copy(), middle, u_t[:, :, None, None].copy()]
    return ConvFactorization("tucker2", kernels, [1, 1, 1], (T, S, kh, kw))


def filter_cp(K, rank: int, *, n_iter_max: int = 500, tol: float = 1e-8, random_state=None) -> ConvFactorization:
    """Per-filter CP (NORTON, Zniyed et al.): each filter ``K[t]`` (S, kh, kw) is a rank-R CP tensor.

    Pipeline: 1x1 (S -> T R) -> kh x 1 depthwise -> 1 x kw depthwise -> grouped 1x1 (T groups of
    R -> 1). Parameters: ``T R (S + kh + kw + 1)``.

    Returns
    -------
    ConvFactorization
        Kernels (T R, S, 1, 1), (T R, 1, kh, 1), (T R, 1, 1, kw), (T, R, 1, 1) with groups
        (1, T R, T R, T).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import filter_cp
    >>> rng = np.random.default_rng(0)
    >>> K = np.einsum("tsa,tia,tja->tsij", *(rng.standard_normal((4, n, 2)) for n in (6, 3, 3)))
    >>> f = filter_cp(K, 2, random_state=0)
    >>> f.n_params, f.groups
    (104, [1, 8, 8, 4])
    """
    K = _check_kernel(K)
    rank = check_int(rank, "rank", low=1)
    T, S, kh, kw = K.shape
    rng = check_random_state(random_state)
    a_s, a_h, a_w, w = [], [], [], []
    for t in range(T):
        weights, (fs, fh, fw) = cp(K[t], rank, n_iter_max=n_iter_max, tol=tol, random_state=rng)
        a_s.append(fs.T)
        a_h.append(fh.T)
        a_w.append(fw.T)
        w.append(weights)
    kernels = [
        np.concatenate(a_s)[:, :, None, None],
        np.concatenate(a_h)[:, None, :, None],
        np.concatenate(a_w)[:, None, None, :],
        np.stack(w)[:, :, None, None],
    ]
    return ConvFactorization("filter_cp", kernels, [1, T * rank, T * rank, T], (T, S, kh, kw))
