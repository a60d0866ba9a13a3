"""PARAFAC2 by the ALS of Kiers, ten Berge and Bro (1999), in tensorly's convention.

Each iteration: the orthonormal projections ``P_k`` (polar factor of ``X_k C diag(A[k]) B^T``,
one small SVD per slice), the projected ``K x R x J`` tensor ``Y[k] = P_k^T X_k``, then one CP
sweep on ``Y`` (the Rust ``cp_als`` sweep on NumPy input, the xp reference otherwise). Without a
mask, slices taller than wide are first replaced by the triangular factor of their QR (exact: the
iterates only depend on ``X_k^T X_k``), so an iteration reads ``K J^2`` numbers, not ``sum I_k J``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, resolve
from .._validation import as_float_array, check_int, check_n_threads, check_random_state
from . import _xp
from ._als import Run, StopRule, end_of_sweep, gaussian, warn_unconverged
from ._modelkit import ModelResult, check_bool, check_common, normalize_columns, relative, sq_norm


class Parafac2Tensor(ModelResult):
    """A PARAFAC2 model: slice ``k`` is ``P_k B diag(weights * A[k]) C^T``.

    Unpacks as ``weights, (A, B, C), projections`` like tensorly's ``Parafac2Tensor``, so
    ``tensorly.parafac2_tensor.parafac2_to_slices(result)`` accepts it.

    Attributes
    ----------
    weights : array (R,)
    factors : list [A (K, R), B (R, R), C (J, R)]
    projections : list of K arrays (I_k, R) with orthonormal columns
    n_iter, errors, converged
        As for :class:`CPTensor`.
    """

    _fields = ("weights", "factors", "projections")

    @property
    def rank(self) -> int:
        return int(self.factors[0].shape[1])

    def to_slices(self) -> list:
        """The K modelled slices ``P_k B diag(weights * A[k]) C^T``."""
        A, B, C = self.factors
        array_namespace(A)
        scaled = A * self.weights[None, :] if self.weights is not None else A
        return [P @ ((B * scaled[k, :][None, :]) @ C.T) for k, P in enumerate(self.projections)]

    def to_tensor(self):
        """The slices stacked into a K x I x J array (all slices must have the same I)."""
        slices = self.to_slices()
        return array_namespace(slices[0]).stack(slices, axis=0)


SMALL = 1 << 16  # entries of the projected tensor below which the Rust sweep runs on one thread

# --------------------------------------------------------------------------- checks and starts


def _check_slices(slices):
    if hasattr(slices, "shape") and hasattr(slices, "dtype"):
        if len(slices.shape) != 3:
            raise ValueError(f"slices must be a 3-D array or a list of 2-D arrays, got shape {tuple(slices.shape)}")
        X = as_float_array(slices, "slices")
        return [X[k, ...] for k in range(X.shape[0])], X
    if not isinstance(slices, (list, tuple)) or not slices:
        raise TypeError(f"slices must be a 3-D array or a non-empty list of 2-D arrays, got {type(slices).__name__}")
    out = [as_float_array(s, f"slices[{k}]", ndim=2) for k, s in enumerate(slices)]
    xp = array_namespace(out[0])
    J = out[0].shape[1]
    for k, s in enumerate(out):
        if s.shape[1] != J:
            raise ValueError(f"slices must all have the same number of columns J={J}; slices[{k}] has {s.shape[1]}")
        if array_namespace(s) is not xp:
            raise TypeError("slices must all come from the same array library")
    dtype = out[0].dtype
    if any(s.dtype != dtype for s in out):
        dtype = xp.float64
        out = [xp.astype(s, dtype) for s in out]
    return out, None


def _check_masks(mask, slices, stacked):
    if mask is None:
        return None
    xp = array_namespace(slices[0])
    if hasattr(mask, "shape") and not isinstance(mask, (list, tuple)):
        if stacked is None or tuple(mask.shape) != tuple(stacked.shape):
            raise ValueError(f"mask must be a list of boolean arrays of the slices' shapes, got shape {mask.shape}")
        mask = [mask[k, ...] for k in range(mask.shape[0])]
    if not isinstance(mask, (list, tuple)) or len(mask) != len(slices):
        raise ValueError(f"mask must be a list of {len(slices)} boolean arrays, one per slice")
    out = []
    for k, (m, s) in enumerate(zip(mask, slices, strict=True)):
        if not hasattr(m, "shape") or tuple(m.shape) != tuple(s.shape):
            raise ValueError(f"mask[{k}] must have shape {tuple(s.shape)}, got {tuple(getattr(m, 'shape', ()))}")
        if isinstance(m, np.ndarray) and m.dtype.kind in "iuf" and np.all((m == 0) | (m == 1)):
            m = m.astype(bool)
        if m.dtype != array_namespace(m).bool:
            raise TypeError(f"mask[{k}] must be a boolean array (True = observed), got dtype {m.dtype}")
        out.append(xp.asarray(m, device=device(s)))
    if not any(bool(xp.any(m)) for m in out):
        raise ValueError("mask observes no entry")
    return out


def _projections(xp, X, rows, A, B, C):
    """``P_k = U V^T`` from the thin SVD ``X_k C diag(A[k]) B^T = U S V^T`` (tensorly's choice), for
    all slices at once on the zero-padded stack ``X`` (K, I_max, J); ``rows`` (K, I_max, 1) is 1 on
    the real rows (padded rows of ``P_k`` are zeroed: they are nonzero only for a rank-deficient
    ``M_k``).
    """
    K, top, J = X.shape
    R = C.shape[1]
    XC = xp.reshape(xp.reshape(X, (K * top, J)) @ C, (K, top, R))  # one GEMM over all slices
    M = xp.reshape(xp.reshape(XC * A[:, None, :], (K * top, R)) @ B.T, (K, top, R))
    U, _, Vh = xp.linalg.svd(M, full_matrices=False)
    return (U @ Vh) * rows


def _model(A, B, C, P):
    """The modelled slices on the padded stack: ``P_k B diag(A[k]) C^T``."""
    return P @ ((B[None, :, :] * A[:, None, :]) @ C.T)


def _pad(xp, slices):
    """(stack (K, I_max, J) with zero rows appended, row indicator (K, I_max, 1))."""
    K, J = len(slices), slices[0].shape[1]
    top = max(s.shape[0] for s in slices)
    dtype, where = slices[0].dtype, device(slices[0])
    if all(s.shape[0] == top for s in slices):
        return xp.stack(slices, axis=0), xp.ones((K, top, 1), dtype=dtype, device=where)
    out, rows = [], []
    for s in slices:
        extra = top - s.shape[0]
        zeros = xp.zeros((extra, J), dtype=dtype, device=where)
        out.append(xp.concat([s, zeros], axis=0) if extra else s)
        rows.append(xp.concat([xp.ones((s.shape[0], 1), dtype=dtype, device=where), zeros[:, :1]], axis=0))
    return xp.stack(out, axis=0), xp.stack(rows, axis=0)


def _start(init, slices, rank, rng, xp, nonnegative):
    """(A, B, C) of a start: "svd" (tensorly's: A = 1, B = I, C the leading right singular
    vectors of the stacked slices), "random", or a given Parafac2Tensor / (weights, factors[, P]).
    """
    K, J = len(slices), slices[0].shape[1]
    dtype, where = slices[0].dtype, device(slices[0])
    if isinstance(init, str):
        if init == "svd":
            gram = sum((s.T @ s for s in slices[1:]), slices[0].T @ slices[0])
            w, V = xp.linalg.eigh(gram)
            C = xp.flip(V, axis=1)[:, :rank]
            A = xp.ones((K, rank), dtype=dtype, device=where)
            B = xp.eye(rank, dtype=dtype, device=where)
            return [A, B, xp.abs(C) if nonnegative else C]
        if init == "random":
            A, B, C = (gaussian(xp, rng, shape, dtype, slices[0]) for shape in ((K, rank), (rank, rank), (J, rank)))
            return [xp.abs(A), B, xp.abs(C)] if nonnegative else [A, B, C]
        raise ValueError(f"init must be 'svd', 'random' or a Parafac2Tensor, got {init!r}")
    try:
        parts = tuple(init)
        weights, factors = parts[0], list(parts[1])
    except (TypeError, IndexError) as exc:
        raise TypeError(f"init must be 'svd', 'random' or a Parafac2Tensor, got {type(init).__name__}") from exc
    if len(factors) != 3:
        raise ValueError(f"init must hold 3 factors (A, B, C), got {len(factors)}")
    shapes = ((K, rank), (rank, rank), (J, rank))
    out = []
    for n, (f, shape) in enumerate(zip(factors, shapes, strict=True)):
        if tuple(f.shape) != shape:
            raise ValueError(f"init factor {n} must have shape {shape}, got {tuple(f.shape)}")
        f = xp.astype(xp.asarray(f, device=where), dtype, copy=True)
        if not bool(xp.all(xp.isfinite(f))):
            raise ValueError(f"init factor {n} contains NaN or infinity")
        out.append(f)
    if weights is not None:
        out[1] = out[1] * xp.astype(xp.asarray(weights, device=where), dtype)[None, :]
    return out


# --------------------------------------------------------------------------- the loop


def _cp_sweep(xp, Y, factors, rust, nonnegative, n_threads, norm_y_sq):
    """One CP sweep on the projected tensor; returns (factors, |Y - model|^2, degenerate)."""
    if rust:
        if n_threads is None and math.prod(Y.shape) < SMALL:
            n_threads = 1  # a pool costs more than the sweep of a small projected tensor
        out, errors, _, degenerate = core().cp_als(
            np.ascontiguousarray(Y),
            [np.ascontiguousarray(f) for f in factors],
            n_iter_max=1,
            tol=-1.0,
            l2_reg=0.0,
            n_threads=n_threads,
            norm_x_sq=norm_y_sq,
        )
        return list(out), (float(errors[0]) ** 2) * norm_y_sq, bool(degenerate)
    factors = list(factors)
    grams = [f.T @ f for f in factors]
    if not nonnegative:
        result = _xp.sweep(xp, Y, factors, grams)
        return factors, max(norm_y_sq - 2.0 * result.inner + result.model_norm_sq, 0.0), result.degenerate
    degenerate = False
    M = V = None
    for mode in range(3):  # A and C nonnegative by HALS columns, B by least squares
        V = _xp.gram_hadamard(xp, grams, mode, factors[0])
        M = _xp.mttkrp(xp, Y, factors, mode)
        if mode == 1:
            factors[1], bad = _xp.solve_gram(xp, V, M)
            degenerate = degenerate or bad
        else:
            factors[mode] = _xp.hals_columns(xp, factors[mode], M, V, 0.0, 0.0, True)
        grams[mode] = factors[mode].T @ factors[mode]
    inner = float(xp.sum(M * factors[2]))
    degenerate = degenerate or _xp._collapsed(xp, grams)
    return factors, max(norm_y_sq - 2.0 * inner + float(xp.sum(V * grams[2])), 0.0), degenerate


def parafac2(
    slices,
    rank: int,
    *,
    nonnegative: bool = False,
    mask=None,
    init="svd",
    n_iter_max: int = 200,
    tol: float = 1e-8,
    n_init: int = 1,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> Parafac2Tensor:
    """PARAFAC2 decomposition by alternating least squares (Kiers, ten Berge and Bro 1999).

    Slice ``k`` (``I_k x J``; ``I_k`` may differ between slices) is modelled as

        ``X_k ~ P_k B diag(A[k]) C^T``,  ``P_k^T P_k = I``,

    with ``A`` of shape ``K x R``, ``B`` of ``R x R``, ``C`` of ``J x R`` (tensorly's convention:
    the evolving mode is the rows, ``B_k = P_k B`` has a constant cross product ``B^T B``). Each
    iteration sets ``P_k = U V^T`` from the thin SVD of ``X_k C diag(A[k]) B^T`` (the best
    orthonormal ``P_k``), projects ``Y[k] = P_k^T X_k`` (a ``K x R x J`` tensor) and runs one CP
    sweep on ``Y`` in mode order A, B, C. From the same start the iterates are those of
    tensorly's ``parafac2(..., n_iter_parafac=1, linesearch=False)``. Without a mask, slices with
    more rows than columns are first replaced by the triangular factor of their QR: the iterates
    depend on the slices only through ``X_k^T X_k``, so this is exact, and an iteration then reads
    ``K J^2`` numbers instead of ``sum_k I_k J`` (the returned projections are those of the slices).

    The relative error ``sqrt(sum_k ||X_k - model_k||^2 / sum_k ||X_k||^2)`` is computed each
    iteration without forming the model (``||X||^2 - ||Y||^2 + ||Y - CP||^2``, with the
    projections of that iteration); the last entry of ``errors`` is recomputed exactly from the
    returned model.

    Parameters
    ----------
    slices : 3-D array (K, I, J) or list of K 2-D arrays (I_k, J)
        float32/float64, finite, all with J columns. Not modified.
    rank : int
        R >= 1, at most J.
    nonnegative : bool, default False
        Nonnegative ``A`` and ``C`` (HALS column updates on the xp path). ``B`` stays free: ``P_k B``
        could not be constrained anyway.
    mask : list of boolean arrays of the slices' shapes (or a 3-D array), optional
        True where observed; missing entries are imputed by EM (first with each slice's observed
        mean, then with the model), the error is measured on observed entries.
    init : {"svd", "random"} or Parafac2Tensor, default "svd"
        "svd": ``A = 1``, ``B = I``, ``C`` the leading right singular vectors of the stacked
        slices (tensorly's "svd" start). A given model is copied (weights folded into ``B``).
    n_iter_max, tol, n_init, random_state, backend, n_threads, verbose, callback
        As for :func:`cp`; ``callback(state, rel_error)`` gets the CP factors ``[A, B, C]``.

    Returns
    -------
    Parafac2Tensor
        Unit-norm columns of A, B and C with the scales in ``weights``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import parafac2
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.uniform(0.5, 1.5, (8, 3)), rng.standard_normal((3, 3)), rng.standard_normal((12, 3))
    >>> P = [np.linalg.qr(rng.standard_normal((n, 3)))[0] for n in (20, 25, 30, 22, 21, 27, 24, 26)]
    >>> slices = [P[k] @ B @ np.diag(A[k]) @ C.T for k in range(8)]
    >>> model = parafac2(slices, 3, random_state=0, n_iter_max=2000, tol=1e-12)
    >>> model.errors[-1] < 1e-6
    True
    >>> weights, (A_hat, B_hat, C_hat), projections = model
    >>> [p.shape for p in projections[:2]]
    [(20, 3), (25, 3)]
    """
    rank, n_iter_max, tol, callback, verbose = check_common(rank, n_iter_max, tol, callback, verbose)
    nonnegative = check_bool(nonnegative, "nonnegative")
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    n_init = check_int(n_init, "n_init", low=1)
    slices, stacked = _check_slices(slices)
    xp = array_namespace(slices[0])
    J = slices[0].shape[1]
    if rank > J:
        raise ValueError(f"rank must be <= J={J} (the number of columns of the slices), got {rank}")
    masks = _check_masks(mask, slices, stacked)
    if nonnegative and any(bool(xp.any(s < 0)) for s in slices):
        raise ValueError("slices have negative entries, but nonnegative=True")
    chosen = resolve(*slices, backend=backend, rust_kernel=all(isinstance(s, np.ndarray) for s in slices))
    rust = chosen == "rust" and not nonnegative
    best = None
    for attempt in range(n_init):
        run = _run(
            slices, masks, rank, init if attempt == 0 else "random", rng, xp, nonnegative, rust, n_threads,
            n_iter_max, tol, callback, verbose,
        )  # fmt: skip
        if best is None or run[0].final_error < best[0].final_error:
            best = run
    run, projections = best
    warn_unconverged(run, tol, "parafac2", n_iter_max, stacklevel=2)
    A, B, C = run.factors
    weights, factors = normalize_columns(xp, [A, B, C])
    return Parafac2Tensor(
        weights, factors, projections, n_iter=len(run.errors), errors=run.errors, converged=run.status == "converged"
    )


def _compress(xp, slices):
    """Exact compression (Kiers, ten Berge and Bro 1999): a slice with more rows than columns is
    replaced by the ``J x J`` triangular factor ``R_k`` of ``X_k = Q_k R_k``. The projections are
    ``Q_k`` times those of ``R_k``, the projected tensor ``P_k^T X_k`` and the fit are unchanged, and
    each iteration reads ``J^2`` instead of ``I_k J`` entries per slice.
    """
    out = []
    for s in slices:
        if s.shape[0] <= s.shape[1]:
            out.append(s)
        elif isinstance(s, np.ndarray):
            out.append(np.linalg.qr(s, mode="r"))  # R only: Q is never formed
        else:
            out.append(xp.linalg.qr(s)[1])
    return out


def _slice_projections(xp, slices, A, B, C):
    """``P_k`` of each (uncompressed, ragged) slice, as :func:`_projections` computes them."""
    out = []
    for k, s in enumerate(slices):
        U, _, Vh = xp.linalg.svd(((s @ C) * A[k, :][None, :]) @ B.T, full_matrices=False)
        out.append(U @ Vh)
    return out


def _run(slices, masks, rank, init, rng, xp, nonnegative, rust, n_threads, n_iter_max, tol, callback, verbose):
    compressed = masks is None and any(s.shape[0] > s.shape[1] for s in slices)
    work = _compress(xp, slices) if compressed else slices
    factors = _start(init, work, rank, rng, xp, nonnegative)
    X, rows = _pad(xp, work)
    observed = None
    if masks is not None:
        observed, _ = _pad(xp, [xp.astype(m, X.dtype) for m in masks])
        observed = observed > 0
    norm_x_sq = sq_norm(xp, X if observed is None else xp.where(observed, X, xp.zeros_like(X)))

    def masked_error(model):
        return relative(sq_norm(xp, xp.where(observed, X - model, xp.zeros_like(X))), norm_x_sq)

    if observed is None:
        data = X
    elif isinstance(init, str):  # each slice's observed mean
        zero = xp.where(observed, X, xp.zeros_like(X))
        counts = xp.sum(xp.astype(observed, X.dtype), axis=(1, 2))
        means = xp.sum(zero, axis=(1, 2)) / xp.where(counts > 0, counts, xp.ones_like(counts))
        data = xp.where(observed, X, means[:, None, None] * rows)
    else:
        data = xp.where(observed, X, _model(*factors, _projections(xp, X, rows, *factors)))
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    projected_with = factors  # the factors of the last projections
    projections = _projections(xp, data, rows, *factors)
    sizes = [s.shape[0] for s in work]
    threads = 1 if n_threads is None and math.prod(X.shape) < SMALL else n_threads
    for _ in range(n_iter_max):
        projected_with = factors
        if rust:  # one pass over each slice, padding skipped
            projections, Y, norm_y_sq = core().parafac2_project(data, sizes, list(factors), n_threads=threads)
        else:
            projections = _projections(xp, data, rows, *factors)
            Y = xp.matrix_transpose(projections) @ data  # (K, R, J)
            norm_y_sq = sq_norm(xp, Y)
        norm_data_sq = norm_x_sq if observed is None else sq_norm(xp, data)
        factors, cp_error_sq, degenerate = _cp_sweep(xp, Y, factors, rust, nonnegative, n_threads, norm_y_sq)
        if observed is None:
            errors.append(relative(norm_data_sq - norm_y_sq + cp_error_sq, norm_x_sq))
        else:
            model = _model(*factors, projections)
            errors.append(masked_error(model))
            data = xp.where(observed, X, model)
        state = end_of_sweep(stop, degenerate, callback, verbose, factors, errors, xp)
        if state is not None:
            status = state
            break
    if errors:  # the last error, exactly (on the compressed slices: the same residual norm)
        model = _model(*factors, projections)
        errors[-1] = relative(sq_norm(xp, X - model), norm_x_sq) if observed is None else masked_error(model)
    if compressed:
        projections = _slice_projections(xp, slices, *projected_with)
    else:
        projections = [projections[k, : s.shape[0], :] for k, s in enumerate(slices)]
    return Run(factors, errors, status), projections
