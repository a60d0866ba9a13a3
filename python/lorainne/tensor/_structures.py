"""The results of tensor decompositions (``CPTensor``, ``TuckerTensor``), the Kolda-Bader
unfolding, and ``factor_match_score``.

Conventions (Kolda and Bader, "Tensor Decompositions and Applications", SIAM Review 2009):

* A tensor ``X`` of order N has shape ``(I_0, ..., I_{N-1})``; its factors are listed in mode
  order, ``factors[n]`` has shape ``(I_n, R)``.
* The mode-n unfolding ``X_(n)`` is the ``I_n x prod(I_k, k != n)`` matrix whose column index
  runs over the other modes with the *earliest* mode varying fastest, so that
  ``X_(n) = A_n diag(w) (A_{N-1} kr ... kr A_{n+1} kr A_{n-1} kr ... kr A_0)^T`` where ``kr`` is
  the Khatri-Rao (column-wise Kronecker) product. :func:`unfold` and :func:`fold` implement it.
  The kernels never form an unfolding: they read the C-ordered tensor in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace


def _kolda_bader_axes(ndim: int, mode: int) -> tuple[int, ...]:
    # C order varies the last axis fastest, so the other modes go in decreasing order.
    return (mode, *[k for k in range(ndim - 1, -1, -1) if k != mode])


def unfold(X, mode: int):
    """Mode-``mode`` unfolding of ``X`` in the Kolda-Bader convention (a copy).

    Parameters
    ----------
    X : array of order N >= 1
    mode : int
        0 <= mode < N.

    Returns
    -------
    array of shape (X.shape[mode], X.size // X.shape[mode])
        Column ``j`` holds the fibre whose other indices are ``j`` written in mixed radix with the
        earliest mode varying fastest.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.tensor import unfold
    >>> X = np.arange(24).reshape(3, 4, 2)
    >>> unfold(X, 1)[:, :3]
    array([[ 0,  8, 16],
           [ 2, 10, 18],
           [ 4, 12, 20],
           [ 6, 14, 22]])
    """
    xp = array_namespace(X)
    if not 0 <= mode < X.ndim:
        raise ValueError(f"mode must be in [0, {X.ndim}), got {mode}")
    moved = xp.permute_dims(X, _kolda_bader_axes(X.ndim, mode))
    return xp.reshape(moved, (X.shape[mode], -1))


def fold(M, mode: int, shape: Sequence[int]):
    """Inverse of :func:`unfold`: the tensor of ``shape`` whose mode-``mode`` unfolding is ``M``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.tensor import fold, unfold
    >>> X = np.arange(24.0).reshape(3, 4, 2)
    >>> bool(np.array_equal(fold(unfold(X, 2), 2, X.shape), X))
    True
    """
    xp = array_namespace(M)
    shape = tuple(int(s) for s in shape)
    axes = _kolda_bader_axes(len(shape), mode)
    moved = xp.reshape(M, tuple(shape[a] for a in axes))
    inverse = [0] * len(axes)
    for position, axis in enumerate(axes):
        inverse[axis] = position
    return xp.permute_dims(moved, tuple(inverse))


def khatri_rao(xp, matrices: Sequence[Any]):
    """Khatri-Rao product with the LAST matrix's row index varying fastest (C order), i.e. row
    ``(i_0, ..., i_k)`` in C order of ``prod_j matrices[j][i_j, :]``. ``xp`` is the namespace.
    """
    out = matrices[0]
    rank = out.shape[1]
    for m in matrices[1:]:
        out = xp.reshape(out[:, None, :] * m[None, :, :], (-1, rank))
    return out


def _host_floats(xp, x) -> list[float]:
    flat = xp.reshape(x, (-1,))
    return [float(flat[i]) for i in range(flat.shape[0])]


class CPTensor:
    """A CP (CANDECOMP/PARAFAC) tensor ``sum_r weights[r] a_0[:, r] o ... o a_{N-1}[:, r]``.

    Unpacks as ``weights, factors = cp`` (so ``tensorly.cp_to_tensor(cp)`` accepts it) and
    indexes as a pair. Factors are listed in mode order; ``factors[n]`` has shape ``(I_n, R)``.

    Attributes
    ----------
    weights : array (R,)
    factors : list of arrays (I_n, R)
    n_iter : int
        Sweeps run by the algorithm that produced it (0 when built by hand).
    errors : list of float
        Relative error ``||X - X_hat||_F / ||X||_F`` after each sweep (absolute error when
        ``X`` is zero).
    converged : bool
        Whether the stopping test was met (never from a stalled, rank-deficient start).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import CPTensor
    >>> cp = CPTensor(np.array([2.0]), [np.array([[1.0], [0.0]]), np.array([[1.0], [1.0]])])
    >>> weights, factors = cp
    >>> cp.shape, cp.rank
    ((2, 2), 1)
    >>> cp.to_tensor()
    array([[2., 2.],
           [0., 0.]])
    >>> round(cp.norm(), 6)
    2.828427
    """

    __slots__ = ("weights", "factors", "n_iter", "errors", "converged")

    def __init__(self, weights, factors, *, n_iter: int = 0, errors: Sequence[float] = (), converged: bool = False):
        factors = list(factors)
        if not factors:
            raise ValueError("factors must hold at least one matrix")
        rank = None
        for n, f in enumerate(factors):
            if not hasattr(f, "shape") or len(f.shape) != 2:
                raise ValueError(
                    f"factors[{n}] must be a 2-D array (I_n, rank), got "
                    f"{type(f).__name__} of shape {getattr(f, 'shape', None)}"
                )
            if rank is None:
                rank = f.shape[1]
            elif f.shape[1] != rank:
                raise ValueError(
                    "all factors must have the same number of columns: "
                    f"factors[0] has {rank}, factors[{n}] has {f.shape[1]}"
                )
        xp = array_namespace(factors[0])
        if weights is None:
            weights = xp.ones((rank,), dtype=factors[0].dtype)
        if tuple(weights.shape) != (rank,):
            raise ValueError(f"weights must have shape ({rank},), got {tuple(weights.shape)}")
        self.weights = weights
        self.factors = factors
        self.n_iter = int(n_iter)
        self.errors = [float(e) for e in errors]
        self.converged = bool(converged)

    # -- the (weights, factors) pair
    def __iter__(self):
        return iter((self.weights, self.factors))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.weights, self.factors)[index]

    def __repr__(self) -> str:
        return f"CPTensor(shape={self.shape}, rank={self.rank}, n_iter={self.n_iter}, converged={self.converged})"

    @property
    def rank(self) -> int:
        return int(self.factors[0].shape[1])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self.factors)

    def to_tensor(self):
        """The full tensor (array of ``shape``), in the factors' array library and dtype."""
        xp = array_namespace(self.factors[0])
        if len(self.factors) == 1:
            return xp.sum(self.factors[0] * self.weights[None, :], axis=1)
        left = khatri_rao(xp, [self.factors[0] * self.weights[None, :], *self.factors[1:-1]])
        return xp.reshape(left @ self.factors[-1].T, self.shape)

    def norm(self) -> float:
        """Frobenius norm, from the Gram matrices (never forms the tensor)."""
        xp = array_namespace(self.factors[0])
        gram = xp.ones((self.rank, self.rank), dtype=self.factors[0].dtype, device=_device(self.factors[0]))
        for f in self.factors:
            gram = gram * (f.T @ f)
        value = float(xp.sum(self.weights[:, None] * gram * self.weights[None, :]))
        return math.sqrt(max(value, 0.0))

    def normalize(self) -> CPTensor:
        """Columns of unit norm, the scales gathered in ``weights``, sorted by decreasing weight
        (zero columns stay zero). A new CPTensor; the model is unchanged.
        """
        xp = array_namespace(self.factors[0])
        weights = self.weights
        factors = []
        for f in self.factors:
            norms = xp.linalg.vector_norm(f, axis=0)
            safe = xp.where(norms > 0, norms, xp.ones_like(norms))
            factors.append(f / safe[None, :])
            weights = weights * norms
        signs = xp.where(weights < 0, -xp.ones_like(weights), xp.ones_like(weights))
        weights = weights * signs
        factors[0] = factors[0] * signs[None, :]
        order = xp.argsort(-weights, stable=True)
        return CPTensor(
            xp.take(weights, order),
            [xp.take(f, order, axis=1) for f in factors],
            n_iter=self.n_iter,
            errors=self.errors,
            converged=self.converged,
        )


class TuckerTensor:
    """A Tucker tensor ``core x_0 U_0 x_1 ... x_{N-1} U_{N-1}``; unpacks as ``core, factors``.

    Attributes
    ----------
    core : array of shape (R_0, ..., R_{N-1})
    factors : list of arrays (I_n, R_n)
    n_iter, errors, converged
        As in :class:`CPTensor`.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import TuckerTensor
    >>> t = TuckerTensor(np.ones((1, 1)), [np.array([[1.0], [2.0]]), np.array([[3.0]])])
    >>> t.to_tensor()
    array([[3.],
           [6.]])
    """

    __slots__ = ("core", "factors", "n_iter", "errors", "converged")

    def __init__(self, core, factors, *, n_iter: int = 0, errors: Sequence[float] = (), converged: bool = False):
        factors = list(factors)
        if core.ndim != len(factors):
            raise ValueError(f"core has {core.ndim} modes but {len(factors)} factors were given")
        for n, f in enumerate(factors):
            if len(f.shape) != 2 or f.shape[1] != core.shape[n]:
                raise ValueError(f"factors[{n}] must have shape (I_{n}, {core.shape[n]}), got {tuple(f.shape)}")
        self.core = core
        self.factors = factors
        self.n_iter = int(n_iter)
        self.errors = [float(e) for e in errors]
        self.converged = bool(converged)

    def __iter__(self):
        return iter((self.core, self.factors))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.core, self.factors)[index]

    def __repr__(self) -> str:
        return f"TuckerTensor(shape={self.shape}, rank={self.rank}, n_iter={self.n_iter}, converged={self.converged})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self.factors)

    @property
    def rank(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.core.shape)

    def to_tensor(self):
        """The full tensor, in the factors' array library and dtype."""
        return multi_mode_product(self.core, self.factors)


def mode_product(X, M, mode: int):
    """``X x_mode M``: multiplies mode ``mode`` of ``X`` by the matrix ``M`` (J x I_mode).

    Reads ``X`` through reshapes (views of a C-ordered array, no transposed copy): one GEMM for
    the first and last modes, a batched GEMM over the leading modes otherwise.
    """
    xp = array_namespace(X)
    shape = tuple(X.shape)
    left = 1
    for s in shape[:mode]:
        left *= s
    right = 1
    for s in shape[mode + 1 :]:
        right *= s
    size, rows = shape[mode], M.shape[0]
    new_shape = (*shape[:mode], rows, *shape[mode + 1 :])
    if right == 1:
        return xp.reshape(xp.reshape(X, (left, size)) @ M.T, new_shape)
    if left == 1:
        return xp.reshape(M @ xp.reshape(X, (size, right)), new_shape)
    return xp.reshape(M @ xp.reshape(X, (left, size, right)), new_shape)


def multi_mode_product(X, matrices: Sequence[Any], transpose: bool = False, skip: int | None = None, product=None):
    """``X x_0 M_0 x_1 ... `` (with ``M_k^T`` when ``transpose``), skipping mode ``skip``.

    The products that shrink the tensor most go first (the first one reads all of ``X``).
    ``product(X, M, mode)`` replaces :func:`mode_product` (a faster kernel).
    """
    product = mode_product if product is None else product

    def shrink(mode: int) -> float:  # size of the mode after the product / before
        return matrices[mode].shape[1 if transpose else 0] / X.shape[mode]

    # None entries (like ``skip``) leave their mode alone.
    for mode in sorted((m for m in range(len(matrices)) if m != skip and matrices[m] is not None), key=shrink):
        M = matrices[mode]
        X = product(X, M.T if transpose else M, mode)
    return X


def edge_mode_product(X, M, mode: int, n_threads: int | None = None):
    """:func:`mode_product`, by the Rust edge contraction (``lorainne._core.contract_edge``) for
    the first and last modes of large C-ordered NumPy tensors (3x faster than a single-threaded
    BLAS GEMM with so few columns), by :func:`mode_product` otherwise.
    """
    if (
        isinstance(X, np.ndarray)
        and isinstance(M, np.ndarray)
        and X.size >= 1 << 16
        and mode in (0, X.ndim - 1)
        and X.dtype in (np.float32, np.float64)
        and X.flags.c_contiguous
    ):
        from .._backend import _core

        if _core is not None:
            first = mode == 0
            out = _core.contract_edge(X, np.ascontiguousarray(M.T, dtype=X.dtype), first, n_threads)
            new_shape = (*X.shape[:mode], M.shape[0], *X.shape[mode + 1 :])
            return (np.ascontiguousarray(out.T) if first else out).reshape(new_shape)
    return mode_product(X, M, mode)


def _device(x):
    from array_api_compat import device

    return device(x)


def _as_cp_pair(value, name: str):
    if isinstance(value, CPTensor):
        return value.weights, value.factors
    try:
        weights, factors = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a CPTensor or a (weights, factors) pair, got {type(value).__name__}") from None
    factors = list(factors)
    if not factors:
        raise ValueError(f"{name} has no factors")
    if weights is None:
        xp = array_namespace(factors[0])
        weights = xp.ones((factors[0].shape[1],), dtype=factors[0].dtype)
    return weights, factors


def factor_match_score(a, b, *, consider_weights: bool = False) -> float:
    """Factor match score of two CP tensors: 1 means equal up to scaling and permutation.

    For components ``r`` of ``a`` and ``s`` of ``b`` the congruence is the product over modes of
    the absolute cosines ``|<a_n[:, r], b_n[:, s]>| / (||a_n[:, r]|| ||b_n[:, s]||)``; columns are
    matched one to one by the Hungarian method (``scipy.optimize.linear_sum_assignment``) and the
    score is the mean congruence over ``max(rank_a, rank_b)`` components (unmatched ones count 0).

    Parameters
    ----------
    a, b : CPTensor or (weights, factors)
        Same number of modes and mode sizes.
    consider_weights : bool, default False
        Also multiply each congruence by ``1 - |w_a - w_b| / max(w_a, w_b)`` where ``w`` is the
        norm of the rank-one component (pyttb's ``score`` penalty).

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        Different numbers of modes or mode sizes; NaN or infinity in a factor or in the weights.

    Notes
    -----
    The cosines are computed from columns first divided by their largest magnitude, so models
    of any finite scale (factors of 1e-200 or 1e200) score as models of unit scale.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import CPTensor, factor_match_score
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    >>> shuffled = CPTensor(None, [-2 * A[:, [2, 0, 1]], B[:, [2, 0, 1]]])
    >>> round(factor_match_score(CPTensor(None, [A, B]), shuffled), 12)
    1.0
    """
    from scipy.optimize import linear_sum_assignment

    wa, fa = _as_cp_pair(a, "a")
    wb, fb = _as_cp_pair(b, "b")
    if len(fa) != len(fb):
        raise ValueError(f"a has {len(fa)} modes and b has {len(fb)}")
    for n, (x, y) in enumerate(zip(fa, fb, strict=False)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"mode {n} has size {x.shape[0]} in a and {y.shape[0]} in b")
    ra, rb = fa[0].shape[1], fb[0].shape[1]
    congruence = np.ones((ra, rb))
    # Log-norms of the rank-one components: factors of any finite scale (1e-200 or 1e200) neither
    # underflow nor overflow.
    log_a = _finite_numpy(wa, "a", "weights")
    log_b = _finite_numpy(wb, "b", "weights")
    with np.errstate(divide="ignore"):
        log_a, log_b = np.log(np.abs(log_a)), np.log(np.abs(log_b))
    for n, (x, y) in enumerate(zip(fa, fb, strict=False)):
        x, log_nx = _unit_columns(_finite_numpy(x, "a", f"factor {n}"))
        y, log_ny = _unit_columns(_finite_numpy(y, "b", f"factor {n}"))
        log_a, log_b = log_a + log_nx, log_b + log_ny
        congruence *= np.abs(x.T @ y)
    if consider_weights:
        # 1 - |w_a - w_b| / max(w_a, w_b) = min / max = exp(-|log w_a - log w_b|); 1 when both are 0.
        both_zero = np.isneginf(log_a)[:, None] & np.isneginf(log_b)[None, :]
        with np.errstate(invalid="ignore"):
            gap = np.abs(np.subtract.outer(log_a, log_b))
        congruence *= np.where(both_zero, 1.0, np.exp(-np.where(np.isnan(gap), np.inf, gap)))
    rows, cols = linear_sum_assignment(-congruence)
    return float(np.sum(congruence[rows, cols]) / max(ra, rb))


def _finite_numpy(x, name: str, what: str) -> np.ndarray:
    x = _to_numpy(x).astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: {what} contains NaN or infinity")
    return x


def _unit_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to unit norm (zero columns stay zero) and the log of their norms, computed
    after dividing each column by its largest magnitude (no underflow for tiny columns).
    """
    peak = np.max(np.abs(x), axis=0) if x.shape[0] else np.zeros(x.shape[1])
    safe = np.where(peak > 0, peak, 1.0)
    scaled = x / safe[None, :]
    norms = np.linalg.norm(scaled, axis=0)
    with np.errstate(divide="ignore"):
        log_norms = np.where(peak > 0, np.log(np.where(peak > 0, norms, 1.0)) + np.log(safe), -np.inf)
    return scaled / np.where(norms > 0, norms, 1.0)[None, :], log_norms


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    try:
        return np.from_dlpack(x)
    except Exception:
        xp = array_namespace(x)
        return np.asarray(_host_floats(xp, x)).reshape(tuple(x.shape))
