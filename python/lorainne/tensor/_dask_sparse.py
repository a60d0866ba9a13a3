"""CP-ALS on a Dask tensor whose chunks are ``sparse.COO`` arrays (the pydata ``sparse`` package).

The tensor stays a ``dask.array.Array`` of sparse chunks, chunked along any modes; the factors
(I_n x R each) and the R x R Gram matrices live on the client as NumPy arrays, as on the dense Dask
path (:mod:`._dask`). Each MTTKRP is one pass: every chunk hands its COO entries (coordinates local
to the chunk) with the rows of the other factors that the chunk meets to the Rust sparse MTTKRP
(``_core.sparse_mttkrp``, the kernel of the in-memory ``SparseTensor``); the partials (I_n block x R)
of the chunks that share a range of mode n are summed by Dask's tree reduction, and only the
I_n x R result comes to the client. The sweep, stopping rule and error formula are the in-memory
ones (``_xp.sweep`` with ``product=``), so from the same start the iterates equal those of
``cp(SparseTensor)`` up to rounding.

The "svd" start is the dense Dask start (:func:`._dask.svd_init`: same random numbers, same steps,
so equal to ``cp`` of the densified Dask tensor): a Khatri-Rao-sketched MTTKRP per mode, its QR on the
client, and ``B B^T`` of ``B = Q^T X_(n)`` summed over slabs of X rechunked to one block along mode n
(each slab's ``X_(n)^T Q`` only on its nonzero columns: never a dense unfolding).
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np

from .._backend import core, is_dask_array
from . import _dask
from ._als import Run, finish, report_start, start_error, unscaled_callback
from ._guard import check_cp_rank, scale_exponent, times_power_of_two

_AS_COO = "sparse chunks must be sparse.COO (convert them with X.map_blocks(sparse.COO))"
_STATS = 5  # per chunk: min, max, exponent of max |x|, sum of squares / 4^exponent, stored entries


def has_sparse_chunks(X) -> bool:
    """True for a Dask array whose chunks are sparse (its ``_meta``: pydata ``sparse`` or SciPy)."""
    if not is_dask_array(X):
        return False
    meta = getattr(X, "_meta", None)
    pydata = sys.modules.get("sparse")
    scipy_sparse = sys.modules.get("scipy.sparse")
    return (pydata is not None and isinstance(meta, pydata.SparseArray)) or (
        scipy_sparse is not None and scipy_sparse.issparse(meta)
    )


def _coo(block):
    """The chunk as a ``sparse.COO`` with fill value 0 (a NumPy chunk, as Dask may make of an empty
    one, is converted).
    """
    import sparse

    if isinstance(block, np.ndarray):
        block = sparse.COO.from_numpy(block)
    elif not isinstance(block, sparse.COO):
        raise TypeError(f"X has a chunk of type {type(block).__name__}: {_AS_COO}")
    if block.fill_value != 0:
        raise ValueError(f"X has a chunk with fill_value={block.fill_value.item()!r}: only 0 is supported")
    return block


def _block_stats(block):
    """Min, max, the exponent e of max |x|, the sum of squares of ``x / 2^e`` (no overflow) and the
    number of stored entries of one chunk, shaped (1, ..., 1, 5).
    """
    data = np.asarray(_coo(block).data, dtype=np.float64)
    out = np.zeros(_STATS)
    if data.size:
        lo, hi = float(data.min()), float(data.max())
        peak = max(-lo, hi)
        exponent = math.frexp(peak)[1] if math.isfinite(peak) and peak > 0 else 0
        scaled = np.ldexp(data, -exponent)
        out[:] = min(lo, 0.0), max(hi, 0.0), exponent, float(np.dot(scaled, scaled)), data.size
    return out.reshape((1,) * block.ndim + (_STATS,))


def checked(X):
    """``(X, s, e, max |x|, min(x, 0))`` of a Dask tensor of sparse chunks after its checks, in ONE
    pass (NaN and infinities propagate into min and max), with ``||X||^2 = s 4^e`` (no overflow or
    underflow at any scale); integer and bool chunks become float64 (lazily).
    """
    import dask.array as da

    pydata = sys.modules.get("sparse")
    if pydata is None or not isinstance(X._meta, pydata.COO):
        raise TypeError(f"X is a Dask array of {type(X._meta).__name__} chunks: {_AS_COO}")
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 modes, got an array of shape {tuple(X.shape)}")
    if any(math.isnan(s) for s in X.shape):
        raise ValueError("X has unknown chunk sizes: call X.compute_chunk_sizes() first")
    if any(s == 0 for s in X.shape):
        raise ValueError(f"X must not be empty, got shape {tuple(X.shape)}")
    kind = np.dtype(X.dtype).kind
    if kind in "iub":
        X = X.astype(np.float64)
    elif kind != "f" or np.dtype(X.dtype).itemsize not in (4, 8):
        raise TypeError(f"X has unsupported dtype {X.dtype}: use float32 or float64 (integers are promoted to float64)")
    chunks = tuple((1,) * len(c) for c in X.chunks) + ((_STATS,),)
    stats = da.map_blocks(
        _block_stats, X, chunks=chunks, new_axis=[X.ndim], dtype=np.float64, meta=np.empty((0,) * (X.ndim + 1))
    )
    stats = np.asarray(stats.compute()).reshape(-1, _STATS)  # n_chunks x 5 numbers, nothing n-sized
    lo, hi = float(stats[:, 0].min()), float(stats[:, 1].max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("X contains NaN or infinity")
    peak = max(-lo, hi)
    stored = stats[:, 4] > 0
    top = int(stats[stored, 2].max()) if stored.any() else 0  # not 0 of an empty chunk: tiny data would underflow
    # sum of squares / 4^top (every term <= its chunk's count); scaled back by the caller's exponent
    scaled = float(sum(math.ldexp(s, 2 * (int(e) - top)) for e, s in zip(stats[:, 2], stats[:, 3], strict=True)))
    return X, scaled, top, peak, lo


def _block_mttkrp(block, *, factors, mode: int, exponent: int, n_threads: int, block_info=None):
    """The partial MTTKRP of one chunk by the Rust sparse kernel, shaped (1, ..., I_block, ..., 1, R)."""
    location = block_info[0]["array-location"]
    slices = [np.ascontiguousarray(f[a:b]) for f, (a, b) in zip(factors, location, strict=True)]
    coords, values = _entries(block, factors[0].dtype, exponent)
    partial = core().sparse_mttkrp(coords, values, list(block.shape), slices, mode, n_threads)
    shape = [1] * block.ndim + [partial.shape[1]]
    shape[mode] = partial.shape[0]
    return partial.reshape(shape)


def _entries(block, dtype, exponent: int):
    """(nnz, N) int64 coordinates local to the chunk and the values divided by ``2**exponent``."""
    coo = _coo(block)
    coords = np.ascontiguousarray(coo.coords.T, dtype=np.int64)
    values = np.ascontiguousarray(times_power_of_two(np.asarray(coo.data, dtype=dtype), -exponent))
    return coords, values


def mttkrp(X, factors: list, mode: int, *, exponent: int = 0, n_threads: int = 1, split_every: int = 4):
    """``X_(mode) @ (Khatri-Rao of the other factors)`` of X / 2^exponent, (I_mode, R) NumPy on the client."""
    block = functools.partial(_block_mttkrp, exponent=exponent, n_threads=n_threads)
    return _dask._reduced_per_chunk(X, block, factors, mode, factors[0].shape[1], split_every)


def _block_projected_gram(block, *, Q, mode: int, exponent: int):
    """``Z^T Z`` for ``Z = X_(mode)^T Q`` of one slab (the whole of mode ``mode``), Z only on the
    slab's nonzero columns; shaped (1, ..., 1, width, width).
    """
    import scipy.sparse

    coords, values = _entries(block, Q.dtype, exponent)
    others = [k for k in range(block.ndim) if k != mode]
    width = Q.shape[1]
    if values.size == 0:
        gram = np.zeros((width, width), dtype=Q.dtype)
    else:
        linear = np.ravel_multi_index(tuple(coords[:, others].T), tuple(block.shape[k] for k in others))
        columns, column = np.unique(linear, return_inverse=True)
        unfolded_t = scipy.sparse.csr_matrix(
            (values, (column.reshape(-1), coords[:, mode])), shape=(columns.size, block.shape[mode])
        )
        Z = np.asarray(unfolded_t @ Q)
        gram = Z.T @ Z
    return gram.reshape((1,) * block.ndim + (width, width))


def _left_vectors(X, mode: int, k: int, rng, *, exponent: int, n_threads: int, oversample: int = 10):
    """:func:`._dask._left_vectors` on sparse chunks (same random numbers and steps)."""
    import dask.array as da

    size = X.shape[mode]
    rest = math.prod(int(s) for n, s in enumerate(X.shape) if n != mode)
    width = min(k + oversample, size, rest)
    dtype = np.dtype(X.dtype)
    sketch = [
        rng.standard_normal((s, width)).astype(dtype, copy=False) if n != mode else np.zeros((s, width), dtype=dtype)
        for n, s in enumerate(X.shape)
    ]
    Y = mttkrp(X, sketch, mode, exponent=exponent, n_threads=n_threads)
    Q, _ = np.linalg.qr(Y)
    slabs = X.rechunk({mode: -1})
    chunks = tuple((1,) * len(c) for c in slabs.chunks) + ((width,), (width,))
    grams = da.map_blocks(
        _block_projected_gram,
        slabs,
        Q=Q,
        mode=mode,
        exponent=exponent,
        chunks=chunks,
        new_axis=[X.ndim, X.ndim + 1],
        dtype=dtype,
        meta=np.empty((0,) * (X.ndim + 2), dtype=dtype),
    )
    BBt = np.asarray(da.sum(grams, axis=tuple(range(X.ndim)), split_every=4).compute())
    w, V = np.linalg.eigh(BBt)
    U = Q @ np.flip(V[:, -k:], axis=1)
    return U, np.sqrt(np.clip(np.flip(w[-k:], axis=0), 0.0, None))


def cp_sparse_chunks(
    X,
    rank: int,
    *,
    init,
    n_iter_max,
    tol,
    nonnegative,
    l2,
    l1,
    n_init,
    rng,
    backend,
    n_threads,
    verbose,
    callback,
    normalize=True,
    fixed=(),
    callback_at_init=False,
):
    """CP of a Dask tensor of ``sparse.COO`` chunks (the arguments checked by :func:`lorainne.cp`)."""
    if backend not in ("auto", "xp", "dask"):
        raise ValueError(f"a Dask tensor of sparse chunks runs on backend 'auto' or 'dask', got {backend!r}")
    X, scaled_sq, top, peak, low = checked(X)
    check_cp_rank(rank, X.shape, np.dtype(X.dtype).itemsize)
    if nonnegative and low < 0:
        raise ValueError("X has negative entries, but nonnegative=True")
    exponent = scale_exponent(peak, X.dtype)
    norm_x_sq = math.ldexp(scaled_sq, 2 * (top - exponent))  # ||X / 2^exponent||^2
    threads = 1 if n_threads is None else n_threads  # per chunk: the workers already run chunks in parallel
    callback = unscaled_callback(callback, exponent)

    def product(fs, mode):
        return mttkrp(X, fs, mode, exponent=exponent, n_threads=threads)

    left_vectors = functools.partial(_left_vectors, exponent=exponent, n_threads=threads)
    best = None
    for attempt in range(n_init):
        start = init if attempt == 0 else "random"
        factors = _dask.initial_factors(X, rank, start, rng, nonnegative, left_vectors=left_vectors, nonzero=peak > 0)
        if not isinstance(start, str):
            factors[-1] = times_power_of_two(factors[-1], -exponent)
        if (
            callback_at_init
            and callback is not None
            and report_start(callback, factors, start_error(None, factors, norm_x_sq, product=product))
        ):
            run = Run(factors, [], "callback")
        elif n_iter_max == 0:
            run = Run(factors, [], "max_iter")
        else:
            run = _dask.als(
                X,
                factors,
                n_iter_max=n_iter_max,
                tol=tol,
                l2=l2,
                l1=l1,
                nonnegative=nonnegative,
                callback=callback,
                verbose=verbose,
                fixed=fixed,
                product=product,
                norm_x_sq=norm_x_sq,
            )
        if best is None or run.final_error < best.final_error:
            best = run
    # cp -> cp_sparse_chunks -> finish: warn for cp's caller
    return finish(best, tol, "cp", n_iter_max, stacklevel=4, normalize=normalize, exponent=exponent)
