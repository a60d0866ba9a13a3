"""Coupled matrix-tensor factorization (CMTF) by ALS (Acar, Kolda and Dunlavy 2011, Figure 5), the
algorithm of tensorly's ``coupled_matrix_tensor_3d_factorization`` with MTTKRPs (Rust on NumPy
input) and normal equations instead of least squares on unfolded copies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, resolve
from .._validation import check_int, check_n_threads, check_random_state
from . import _xp
from ._als import Run, StopRule, check_tensor, end_of_sweep, given_init, random_init, svd_init, warn_unconverged
from ._modelkit import ModelResult, check_array_mask, check_common, check_matrix, lstsq_right, relative, sq_norm
from ._structures import CPTensor, unfold


class CMTFResult(ModelResult):
    """A coupled matrix-tensor model ``X ~ [[w; A_0, ..., A_{N-1}]]``, ``Y ~ [[g; A_c, V]]``.

    Unpacks as ``tensor_cp, matrix_cp, errors`` like the output of tensorly's
    ``coupled_matrix_tensor_3d_factorization`` (both parts are :class:`CPTensor`, normalized;
    ``errors`` here are relative errors, see :func:`cmtf`).
    """

    _fields = ("tensor_cp", "matrix_cp", "errors")


def _product(X, factors, mode, rust, n_threads):
    if rust:
        return core().mttkrp(X, [np.ascontiguousarray(f) for f in factors], mode, n_threads)
    return _xp.mttkrp(array_namespace(X), X, factors, mode)


def cmtf(
    X,
    Y,
    rank: int,
    *,
    coupled_mode: int = 0,
    mask=None,
    matrix_mask=None,
    init="svd",
    n_iter_max: int = 100,
    tol: float = 1e-8,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> CMTFResult:
    """Coupled matrix-tensor factorization by alternating least squares.

    Fits ``X ~ [[A_0, ..., A_{N-1}]]`` and ``Y ~ A_c V^T`` with ``A_c`` (``c = coupled_mode``)
    shared, minimizing ``||X - [[A_0, ..., A_{N-1}]]||^2 + ||Y - A_c V^T||^2``. Each sweep updates
    ``V = Y^T A_c pinv(A_c^T A_c)``, then the uncoupled factors in decreasing mode order, then
    ``A_c = (X_(c) K_c + Y V) pinv(V_c + V^T V)`` (``X_(c) K_c`` the MTTKRP, ``V_c`` the Hadamard
    product of the other Gram matrices). With ``coupled_mode=0`` this is the order and the update
    of tensorly's ``coupled_matrix_tensor_3d_factorization``: from the same start the iterates
    agree (tensorly solves each step by least squares on the unfolding; here by the normal
    equations, equal for full-rank factors).

    The relative error ``sqrt((||X - X_hat||^2 + ||Y - Y_hat||^2) / (||X||^2 + ||Y||^2))`` (on the
    observed entries with masks) is recorded per sweep (tensorly records the unnormalized squared
    error); the loop stops when it changes by less than ``tol``.

    Parameters
    ----------
    X : array of order N >= 2
        float32/float64, finite. Not modified.
    Y : 2-D array (X.shape[coupled_mode], M)
    rank : int
    coupled_mode : int, default 0
    mask, matrix_mask : boolean arrays of X's / Y's shape, optional
        True where observed; missing entries are imputed by EM (the model after each sweep).
    init : {"svd", "random"} or CPTensor, default "svd"
        "svd": the randomized SVD start of :func:`cp` for the uncoupled factors and the leading
        left singular vectors (times the singular values) of ``[X_(c), Y]`` for ``A_c``. A
        CPTensor of X is copied (its weights pulled into the last factor).
    n_iter_max, tol, random_state, backend, n_threads, verbose, callback
        As for :func:`cp`.

    Returns
    -------
    CMTFResult
        ``tensor_cp`` (CPTensor of X), ``matrix_cp`` (CPTensor ``(gamma, [A_c, V])`` of Y),
        ``errors``; ``n_iter`` and ``converged``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import cmtf
    >>> rng = np.random.default_rng(0)
    >>> A, B, C, V = (rng.standard_normal((n, 3)) for n in (20, 15, 10, 30))
    >>> X, Y = np.einsum("ir,jr,kr->ijk", A, B, C), A @ V.T
    >>> tensor_cp, matrix_cp, errors = cmtf(X, Y, 3, random_state=0)
    >>> errors[-1] < 1e-6
    True
    """
    rank, n_iter_max, tol, callback, verbose = check_common(rank, n_iter_max, tol, callback, verbose)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    X = check_tensor(X, "X")
    xp = array_namespace(X)
    coupled_mode = check_int(coupled_mode, "coupled_mode", low=0, high=X.ndim - 1)
    Y = check_matrix(Y, "Y")
    if array_namespace(Y) is not xp:
        raise TypeError("X and Y must come from the same array library")
    if Y.shape[0] != X.shape[coupled_mode]:
        raise ValueError(
            f"Y must have X.shape[coupled_mode]={X.shape[coupled_mode]} rows (coupled_mode={coupled_mode}), "
            f"got shape {tuple(Y.shape)}"
        )
    if Y.dtype != X.dtype:
        X, Y = xp.astype(X, xp.float64), xp.astype(Y, xp.float64)
    mask = check_array_mask(mask, X, "mask")
    matrix_mask = check_array_mask(matrix_mask, Y, "matrix_mask")
    chosen = resolve(X, Y, backend=backend, rust_kernel=isinstance(X, np.ndarray))
    rust = chosen == "rust"
    if rust:
        X = np.ascontiguousarray(X)
    c = coupled_mode
    fill_x = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
    fill_y = Y if matrix_mask is None else xp.where(matrix_mask, Y, xp.zeros_like(Y))
    if isinstance(init, str):
        if init not in ("svd", "random"):
            raise ValueError(f"init must be 'svd', 'random' or a CPTensor, got {init!r}")
        if init == "svd":
            factors = svd_init(fill_x, rank, rng, False, n_threads, rust)
            coupled = xp.concat([unfold(fill_x, c), fill_y], axis=1)
            w, Q = xp.linalg.eigh(coupled @ coupled.T)
            k = min(rank, Q.shape[1])
            lead = xp.flip(Q, axis=1)[:, :k] * xp.sqrt(xp.clip(xp.flip(w, axis=0)[:k], min=0.0))[None, :]
            factors[c] = xp.concat([lead, factors[c][:, k:]], axis=1) if k < rank else lead
        else:
            factors = random_init(X, rank, rng)
    else:
        factors = given_init(init, X, rank, False)
    run, V = _loop(X, Y, factors, c, mask, matrix_mask, rust, n_threads, n_iter_max, tol, callback, verbose)
    warn_unconverged(run, tol, "cmtf", n_iter_max, stacklevel=2)
    ones = xp.ones((rank,), dtype=X.dtype, device=device(X))
    tensor_cp = CPTensor(ones, run.factors).normalize()
    matrix_cp = CPTensor(ones, [run.factors[c], V]).normalize()
    done = dict(n_iter=len(run.errors), converged=run.status == "converged")
    for part in (tensor_cp, matrix_cp):
        part.n_iter, part.errors, part.converged = done["n_iter"], list(run.errors), done["converged"]
    return CMTFResult(tensor_cp, matrix_cp, list(run.errors), errors=run.errors, **done)


def _loop(X, Y, factors, c, mask, matrix_mask, rust, n_threads, n_iter_max, tol, callback, verbose):
    xp = array_namespace(X)
    ndim = X.ndim
    order = [n for n in range(ndim - 1, -1, -1) if n != c] + [c]
    data_x = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
    data_y = Y if matrix_mask is None else xp.where(matrix_mask, Y, xp.zeros_like(Y))
    norm_x_sq, norm_y_sq = sq_norm(xp, data_x), sq_norm(xp, data_y)  # constant without masks
    norm_sq = norm_x_sq + norm_y_sq
    if mask is not None:  # EM starts from the observed mean
        count = float(xp.sum(xp.astype(mask, X.dtype)))
        data_x = xp.where(mask, X, xp.full(X.shape, float(xp.sum(data_x)) / count, dtype=X.dtype, device=device(X)))
        if rust:
            data_x = np.ascontiguousarray(data_x)
    if matrix_mask is not None:
        count = float(xp.sum(xp.astype(matrix_mask, Y.dtype)))
        data_y = xp.where(
            matrix_mask, Y, xp.full(Y.shape, float(xp.sum(data_y)) / count, dtype=Y.dtype, device=device(Y))
        )
    grams = [f.T @ f for f in factors]
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    V = xp.zeros((Y.shape[1], factors[0].shape[1]), dtype=X.dtype, device=device(X))
    for _ in range(n_iter_max):
        V, degenerate = lstsq_right(xp, data_y.T @ factors[c], grams[c])
        VtV = V.T @ V
        for mode in order:
            G = _xp.gram_hadamard(xp, grams, mode, factors[0])
            M = _product(data_x, factors, mode, rust, n_threads)
            if mode == c:
                YV = data_y @ V
                factors[mode], bad = lstsq_right(xp, M + YV, G + VtV)
            else:
                factors[mode], bad = lstsq_right(xp, M, G)
            degenerate = degenerate or bad
            grams[mode] = factors[mode].T @ factors[mode]
        A = factors[c]
        if mask is None and matrix_mask is None:
            tensor_sq = norm_x_sq - 2.0 * float(xp.sum(M * A)) + float(xp.sum(G * grams[c]))
            matrix_sq = norm_y_sq - 2.0 * float(xp.sum(YV * A)) + float(xp.sum(VtV * grams[c]))
            errors.append(relative(tensor_sq + matrix_sq, norm_sq))
        else:
            model_x = CPTensor(None, factors).to_tensor()
            model_y = A @ V.T
            residual = 0.0
            if mask is None:
                residual += sq_norm(xp, X - model_x)
            else:
                residual += sq_norm(xp, xp.where(mask, X - model_x, xp.zeros_like(X)))
                data_x = xp.where(mask, X, model_x)
                if rust:
                    data_x = np.ascontiguousarray(data_x)
            if matrix_mask is None:
                residual += sq_norm(xp, Y - model_y)
            else:
                residual += sq_norm(xp, xp.where(matrix_mask, Y - model_y, xp.zeros_like(Y)))
                data_y = xp.where(matrix_mask, Y, model_y)
            errors.append(relative(residual, norm_sq))
        state = end_of_sweep(stop, degenerate, callback, verbose, factors, errors, xp)
        if state is not None:
            status = state
            break
    if errors and mask is None and matrix_mask is None:  # the last error, exactly (the formula above
        # loses digits below sqrt(eps))
        residual = sq_norm(xp, X - CPTensor(None, factors).to_tensor()) + sq_norm(xp, Y - factors[c] @ V.T)
        errors[-1] = relative(residual, norm_sq)
    return Run(factors, errors, status), V
