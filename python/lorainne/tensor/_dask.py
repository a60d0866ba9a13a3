"""CP-ALS on a Dask tensor: the xp sweep with its MTTKRP computed chunk by chunk on the workers.

The tensor stays a ``dask.array.Array`` chunked along any modes; the factors (I_n x R each) and the
R x R Gram matrices live on the client as NumPy arrays. Each MTTKRP is one pass over the tensor:
every chunk multiplies its block by the slices of the other factors that it meets (the same
``_xp.mttkrp`` as in memory, on the block), giving a partial (I_n block x R); partials of the chunks
that share a range of mode n are summed by Dask's tree reduction (``sum(split_every=...)``), and
only the I_n x R result comes to the client, where the R x R solve of the sweep runs. The sweep,
stopping rule, reporting and normalization are the in-memory ones (``_xp.sweep`` with
``product=``), so from the same start the iterates equal those in memory up to rounding.
"""

from __future__ import annotations

import math

import numpy as np

from . import _xp
from ._als import Run, StopRule, end_of_sweep, gaussian, given_init, random_init
from ._structures import fold, mode_product, multi_mode_product, unfold


def _block_mttkrp(block, *, factors, mode: int, block_info=None):
    """The partial MTTKRP of one chunk, shaped (1, ..., I_block, ..., 1, R) for the reduction."""
    location = block_info[0]["array-location"]
    slices = [f[a:b] for f, (a, b) in zip(factors, location, strict=True)]
    partial = _xp.mttkrp(np, np.asarray(block), slices, mode)
    shape = [1] * block.ndim + [partial.shape[1]]
    shape[mode] = partial.shape[0]
    return partial.reshape(shape)


def mttkrp(X, factors: list, mode: int, split_every: int = 4) -> np.ndarray:
    """``X_(mode) @ (Khatri-Rao of the other factors)`` of a Dask tensor, (I_mode, R) NumPy on the client."""
    return _reduced_per_chunk(X, _block_mttkrp, factors, mode, factors[0].shape[1], split_every)


def _reduced_per_chunk(X, block_product, factors: list, mode: int, width: int, split_every: int) -> np.ndarray:
    """Sum over the chunks of ``block_product`` (each chunk's (I_block, width) partial, placed at its
    mode-``mode`` range) by a tree reduction over the other modes; (I_mode, width) NumPy on the client.
    """
    import dask.array as da

    chunks = tuple(X.chunks[n] if n == mode else (1,) * len(X.chunks[n]) for n in range(X.ndim)) + ((width,),)
    partials = da.map_blocks(
        block_product,
        X,
        factors=tuple(factors),  # a keyword: passed whole to every chunk, not aligned with X's blocks
        mode=mode,
        chunks=chunks,
        new_axis=[X.ndim],
        dtype=X.dtype,
        meta=np.empty((0,) * (X.ndim + 1), dtype=X.dtype),
    )
    others = tuple(n for n in range(X.ndim) if n != mode)
    return np.asarray(da.sum(partials, axis=others, split_every=split_every).compute())


def _left_vectors(X, mode: int, k: int, rng, oversample: int = 10):
    """``_als.sketched_left_vectors`` on a Dask tensor: the sketch MTTKRP per chunk, the QR on the
    client, and ``B B^T`` (width x width) of the projection ``Q^T X_(mode)`` reduced on the workers.
    """
    import dask.array as da

    size = X.shape[mode]
    rest = math.prod(int(s) for n, s in enumerate(X.shape) if n != mode)
    width = min(k + oversample, size, rest)
    dtype = np.dtype(X.dtype)
    host = np.empty(0, dtype=dtype)
    sketch = [
        np.asarray(gaussian(np, rng, (s, width), dtype, host)) if n != mode else np.zeros((s, width), dtype=dtype)
        for n, s in enumerate(X.shape)
    ]
    Y = mttkrp(X, sketch, mode)
    Q, _ = np.linalg.qr(Y)
    projected = da.tensordot(X, Q, axes=([mode], [0]))  # other modes..., width
    axes = list(range(X.ndim - 1))
    BBt = np.asarray(da.tensordot(projected, projected, axes=(axes, axes)).compute())
    w, V = np.linalg.eigh(BBt)
    U = Q @ np.flip(V[:, -k:], axis=1)
    return U, np.sqrt(np.clip(np.flip(w[-k:], axis=0), 0.0, None))


def svd_init(X, rank: int, rng, nonnegative: bool, *, left_vectors=None, nonzero: bool | None = None) -> list:
    """``_als.svd_init`` on a Dask tensor (same random numbers, same steps; NumPy factors).
    ``left_vectors(X, mode, k, rng)`` replaces :func:`_left_vectors` (sparse chunks); ``nonzero``
    when already known saves the pass that finds it.
    """
    dtype = np.dtype(X.dtype)
    left_vectors = _left_vectors if left_vectors is None else left_vectors
    nonzero = bool((X != 0).any()) if nonzero is None else nonzero
    total = math.prod(int(s) for s in X.shape)
    factors = []
    for mode, size in enumerate(X.shape):
        k = min(rank, size, total // size)
        if nonzero:
            U, singular = left_vectors(X, mode, k, rng)
            if mode == 0:
                U = U * singular[None, :]
        else:
            U = np.zeros((size, k), dtype=dtype)
        if k < rank:
            extra = rng.standard_normal((size, rank - k)).astype(dtype, copy=False) / math.sqrt(size)
            U = np.concatenate([U, extra], axis=1)
        factors.append(np.abs(U) if nonnegative else U)
    return factors


def initial_factors(X, rank: int, init, rng, nonnegative: bool, **svd_options) -> list:
    """The start on the client (NumPy factors): "svd", "random" or a given CPTensor."""
    if isinstance(init, str):
        if init == "svd":
            return svd_init(X, rank, rng, nonnegative, **svd_options)
        if init == "random":
            return [np.asarray(f) for f in random_init(_Shaped(X), rank, rng, nonnegative)]
        raise ValueError(f"init={init!r} is not available on a Dask tensor: use 'svd', 'random' or a CPTensor")
    return [np.asarray(f) for f in given_init(init, _Shaped(X), rank, nonnegative)]


class _Shaped:
    """A stand-in for X in the starts that only read its shape, ndim and dtype (NumPy namespace)."""

    def __init__(self, X):
        self.shape, self.ndim, self.dtype = tuple(X.shape), X.ndim, np.dtype(X.dtype)
        self.device = "cpu"

    def __array_namespace__(self, api_version=None):
        return np


def als(
    X, factors, *, n_iter_max, tol, l2, l1, nonnegative, callback, verbose, fixed=(), product=None, norm_x_sq=None
) -> Run:
    """``_cp.als_xp`` without a mask, on a Dask tensor: NumPy factors, MTTKRP per chunk
    (``product(factors, mode)`` and ``norm_x_sq`` given by the sparse-chunk path).
    """
    stop = StopRule(tol, X.dtype)
    factors = [np.asarray(f) for f in factors]
    grams = [f.T @ f for f in factors]
    errors: list[float] = []
    if norm_x_sq is None:
        norm_x_sq = float((X * X).sum().compute())
    if product is None:

        def product(fs, mode):
            return mttkrp(X, fs, mode)

    status = "max_iter"
    for _ in range(n_iter_max):
        result = _xp.sweep(np, X, factors, grams, l2=l2, l1=l1, nonnegative=nonnegative, product=product, fixed=fixed)
        errors.append(_xp.relative_error(norm_x_sq, result))
        if (l2 or l1) and not fixed:
            _xp.balance(np, factors, grams, l2, l1)
        state = end_of_sweep(stop, result.degenerate, callback, verbose, factors, errors, np)
        if state is not None:
            status = state
            break
    return Run(factors, errors, status)


# --------------------------------------------------------------------------- Tucker (HOSVD / HOOI)


def _quiet_sum_of_squares(x, axis=None, keepdims=False):
    with np.errstate(over="ignore"):
        return np.sum(x * x, axis=axis, keepdims=keepdims)


def _quiet_sum(x, axis=None, keepdims=False):
    with np.errstate(over="ignore"):
        return np.sum(x, axis=axis, keepdims=keepdims)


def checked(X):
    """``(X, ||X||^2, max |x|)`` of a Dask tensor, after the checks of ``check_tensor``, in ONE pass
    (min, max and the sum of squares computed together: NaN and infinities propagate into them).
    """
    import dask
    import dask.array as da

    from .._validation import as_float_array

    X = as_float_array(X, "X", finite=False, sparse_hint="")
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 modes, got an array of shape {tuple(X.shape)}")
    squares = da.reduction(X, _quiet_sum_of_squares, _quiet_sum, dtype=X.dtype)  # inf, no warning, if huge
    lo, hi, squares = (float(v) for v in dask.compute(X.min(), X.max(), squares))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("X contains NaN or infinity")
    return X, squares, max(-lo, hi)


def squared_norm(X) -> float:
    return float((X * X).sum().compute())


def _block_contraction(block, *, factors, mode: int, block_info=None):
    """``unfold(X_b x_{k != mode} U_k^T, mode)`` of one chunk (U_k restricted to the chunk's rows),
    shaped (1, ..., I_block, ..., 1, prod R) for the reduction.
    """
    location = block_info[0]["array-location"]
    matrices = [None if k == mode else f[a:b] for k, (f, (a, b)) in enumerate(zip(factors, location, strict=True))]
    partial = unfold(multi_mode_product(np.asarray(block), matrices, transpose=True), mode)
    shape = [1] * block.ndim + [partial.shape[1]]
    shape[mode] = partial.shape[0]
    return partial.reshape(shape)


def contraction(X, factors: list, mode: int, split_every: int = 4) -> np.ndarray:
    """``unfold(X x_{k != mode} U_k^T, mode)`` of a Dask tensor, (I_mode, prod_{k != mode} R_k) NumPy
    on the client: one pass over X, each chunk's partial product summed by a tree reduction.
    """
    width = math.prod(int(f.shape[1]) for k, f in enumerate(factors) if k != mode)
    return _reduced_per_chunk(X, _block_contraction, factors, mode, width, split_every)


def core_from(M, factors: list, mode: int, shape) -> np.ndarray:
    """The Tucker core ``X x_k U_k^T`` from ``M = contraction(X, factors, mode)`` (no other pass)."""
    ranks = [int(f.shape[1]) for f in factors]
    ranks[mode] = shape[mode]
    return mode_product(fold(M, mode, ranks), factors[mode].T, mode)


def hosvd_left_vectors(X, mode: int, k: int, rng, small: list):
    """The leading left singular vectors of ``X_(mode)`` as ``_tucker._hosvd_factors``: exact SVD of
    an unfolding of at most 200,000 entries (X computed once, into ``small``), the Khatri-Rao
    sketch of the CP start (:func:`_left_vectors`) otherwise.
    """
    if X.shape[mode] * (math.prod(X.shape) // X.shape[mode]) <= 200_000:
        if not small:
            small.append(np.asarray(X.compute()))
        return np.linalg.svd(unfold(small[0], mode), full_matrices=False)[0]
    return _left_vectors(X, mode, k, rng)[0]
