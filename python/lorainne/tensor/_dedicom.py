"""Three-way DEDICOM (``X_k = A diag(D[k]) R diag(D[k]) A^T``) by ASALSAN-style alternating updates
(Bader, Harshman, Kolda 2007), real or complex, on the xp path.
"""

from __future__ import annotations

from collections.abc import Callable

from array_api_compat import array_namespace

from .._validation import check_int, check_random_state
from ._als import Run, warn_unconverged
from ._cplx import (
    ExactStopRule,
    as_like,
    check_data,
    conj,
    draw,
    herm,
    leading_left,
    model_end_of_sweep,
    solve_right,
    solve_rows,
    sq_norm,
)
from ._modelkit import ModelResult, check_common, relative
from ._paratuck2 import _update_F


class DedicomTensor(ModelResult):
    """``X_k = A diag(D[k]) R diag(D[k]) A^T``: unpacks as ``A, R, D`` (``A`` of shape N x P with
    unit-norm columns, ``R`` of P x P, ``D`` of K x P with unit-norm columns; the scales in R).
    """

    _fields = ("A", "R", "D")

    def to_tensor(self):
        return _model(array_namespace(self.A), self.A, self.R, self.D)


def _model(xp, A, R, D):
    core = D[:, :, None] * R[None, :, :] * D[:, None, :]  # K x P x P
    return xp.permute_dims(A @ core @ A.T, (1, 2, 0))


def _normalize(xp, A, R, D):
    def norms(M):
        n = xp.sqrt(xp.sum(xp.abs(M) ** 2, axis=0))
        return xp.astype(xp.where(n > 0, n, xp.ones_like(n)), M.dtype)

    a, d = norms(A), norms(D)
    s = a * d
    return A / a[None, :], R * s[:, None] * s[None, :], D / d[None, :]


def _loss(xp, X, A, R, D) -> float:
    return sq_norm(xp, X - _model(xp, A, R, D))


def _line_search(xp, X, old, candidate, current: float, build):
    """Step from ``old`` toward ``candidate`` (halving up to 24 times) while the loss decreases:
    the ASALSAN updates of A and D are not exact minimizers (A and D appear twice).
    """
    step = 1.0
    for _ in range(25):
        trial = old + step * (candidate - old)
        loss = _loss(xp, X, *build(trial))
        if loss <= current:
            return trial, loss
        step /= 2
    return old, current


def _slice_losses(xp, X, A, R, D):
    residual = X - _model(xp, A, R, D)
    return xp.sum(xp.abs(residual) ** 2, axis=(0, 1))


def _slice_search(xp, X, A, R, D, candidate):
    """The D step with a backtracking search per slice (the loss is a sum over slices and row k of
    D enters slice k only), each row halving its step until its slice's loss decreases.
    """
    current = _slice_losses(xp, X, A, R, D)
    step = xp.ones((D.shape[0],), dtype=xp.float64)
    accepted = xp.zeros((D.shape[0],), dtype=xp.bool)
    best = D
    for _ in range(25):
        trial = D + xp.astype(step, D.dtype)[:, None] * (candidate - D)
        losses = _slice_losses(xp, X, A, R, trial)
        better = (losses < current) & ~accepted
        best = xp.where(better[:, None], trial, best)
        current = xp.where(better, losses, current)
        accepted = accepted | better
        if bool(xp.all(accepted)):
            break
        step = xp.where(accepted, step, step / 2)
    return best, float(xp.sum(current))


def _gauss_newton_D(xp, X, A, R, D):
    """The Gauss-Newton step of every row of D: ``J_k`` has columns ``a_p u_p^T + v_p a_p^T`` with
    ``u_p`` the rows of ``R D_k A^T`` and ``v_p`` the columns of ``A D_k R`` (the model is
    holomorphic in D, so ``J^H J`` and ``J^H r`` serve complex data).
    """
    K, P = D.shape
    N = A.shape[0]
    U = (R[None, :, :] * D[:, None, :]) @ A.T  # K x P x N: R D_k A^T
    V = A @ (D[:, :, None] * R[None, :, :])  # K x N x P: A D_k R
    J = A[None, :, None, :] * xp.permute_dims(U, (0, 2, 1))[:, None, :, :] + V[:, :, None, :] * A[None, None, :, :]
    J = xp.reshape(J, (K, N * N, P))
    residual = xp.reshape(xp.permute_dims(X - _model(xp, A, R, D), (2, 0, 1)), (K, N * N, 1))
    JH = xp.permute_dims(conj(xp, J), (0, 2, 1))
    normal = JH @ J
    rhs = (JH @ residual)[:, :, 0]
    steps, _ = solve_rows(xp, rhs, xp.astype(conj(xp, normal), X.dtype))
    return steps


def _sweep(xp, X, A, R, D, loss):
    K = X.shape[2]
    W = D[:, :, None] * R[None, :, :] * D[:, None, :]  # K x P x P
    num, den = None, None
    for k in range(K):
        U = W[k, ...] @ A.T  # X_k = A U_k (right copy of A held)
        V = W[k, ...].T @ A.T  # X_k^T = A V_k
        n_k = X[:, :, k] @ herm(xp, U) + X[:, :, k].T @ herm(xp, V)
        d_k = U @ herm(xp, U) + V @ herm(xp, V)
        num = n_k if num is None else num + n_k
        den = d_k if den is None else den + d_k
    candidate, bad = solve_right(xp, num, den)
    A, loss = _line_search(xp, X, A, candidate, loss, lambda T: (T, R, D))
    R, bad_r = _update_F(xp, X, A, D, D, A)
    loss = _loss(xp, X, A, R, D)
    # D: a Gauss-Newton step per slice (row k of D enters slice k only; P unknowns each)
    candidate = D + _gauss_newton_D(xp, X, A, R, D)
    D, loss = _slice_search(xp, X, A, R, D, candidate)
    return A, R, D, loss, bool(bad or bad_r)


def dedicom(
    X,
    rank: int,
    *,
    init="random",
    n_iter_max: int = 1000,
    tol: float = 1e-10,
    n_init: int = 1,
    random_state=None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> DedicomTensor:
    """Three-way DEDICOM: ``X_k = A diag(D[k]) R diag(D[k]) A^T`` (Harshman 1978; Kiers 1993).

    ``A`` (N x P) the loadings, ``R`` (P x P, asymmetric) the interactions among the P aspects,
    ``D`` (K x P) their weight in each slice; the symmetric special case of PARATUCK-2 (B = A,
    CB = CA). ASALSAN-style updates (Bader, Harshman, Kolda 2007): R by exact least squares, A by
    the least-squares step with one copy of A held (both equations ``X_k`` and ``X_k^T``), D by
    a Gauss-Newton step per slice (P unknowns each); the A step is damped by a backtracking
    line search and each slice's D step by its own, so the loss never increases. Complex data uses conjugate transposes.

    Parameters
    ----------
    X : 3-D array (N, N, K)
        float32/float64/complex64/complex128, square finite slices. Not modified.
    rank : int
        P, at most N.
    init : {"random", "svd"} or DedicomTensor
        "random" (default): Gaussian A and D, R by least squares. "svd": A from the leading
        eigenvectors of ``sum_k X_k X_k^H + X_k^H X_k``, D = 1. DEDICOM has local minima: use
        ``n_init`` > 1 (the lifting start of PARATUCK-2 does not apply as such: with B = A the
        mode-3 terms of ``(p, q)`` and ``(q, p)`` are parallel).
    n_iter_max, tol, n_init, random_state, verbose, callback
        As for :func:`cp` (the callback receives the current DedicomTensor).

    Returns
    -------
    DedicomTensor

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import dedicom
    >>> rng = np.random.default_rng(0)
    >>> A, R, D = rng.standard_normal((8, 2)), rng.standard_normal((2, 2)), rng.standard_normal((10, 2))
    >>> X = np.einsum("ip,kp,pq,kq,jq->ijk", A, D, R, D, A)
    >>> model = dedicom(X, 2, n_init=3, random_state=0)
    >>> bool(model.errors[-1] < 1e-6)
    True
    """
    rank, n_iter_max, tol, callback, verbose = check_common(rank, n_iter_max, tol, callback, verbose)
    X = check_data(X, "X", ndim=3)
    if X.shape[0] != X.shape[1]:
        raise ValueError(f"X must have square slices (N, N, K), got shape {tuple(X.shape)}")
    rank = check_int(rank, "rank", low=1, high=X.shape[0])
    n_init = check_int(n_init, "n_init", low=1)
    rng = check_random_state(random_state)
    xp = array_namespace(X)
    best = None
    for attempt in range(n_init):
        A, R, D = _start(X, rank, init if attempt == 0 else "random", rng)
        run = _loop(X, A, R, D, n_iter_max, tol, callback, verbose)
        if best is None or run.final_error < best.final_error:
            best = run
    warn_unconverged(best, tol, "dedicom", n_iter_max, stacklevel=2)
    A, R, D = _normalize(xp, *best.factors)
    return DedicomTensor(A, R, D, n_iter=len(best.errors), errors=best.errors, converged=best.status == "converged")


def _start(X, rank, init, rng):
    xp = array_namespace(X)
    N, _, K = X.shape
    if isinstance(init, DedicomTensor):
        out = []
        for name, part, shape in zip(DedicomTensor._fields, init, ((N, rank), (rank, rank), (K, rank)), strict=True):
            if tuple(part.shape) != shape:
                raise ValueError(f"init.{name} must have shape {shape}, got {tuple(part.shape)}")
            out.append(as_like(part, X, f"init.{name}"))
        return out
    if init == "svd":
        S = sum(X[:, :, k] @ herm(xp, X[:, :, k]) + herm(xp, X[:, :, k]) @ X[:, :, k] for k in range(K))
        A = leading_left(xp, S, rank)
        D = xp.ones((K, rank), dtype=X.dtype)
    elif init == "random":
        A = draw(xp, rng, (N, rank), X.dtype, X)
        D = draw(xp, rng, (K, rank), X.dtype, X)
    else:
        raise ValueError(f"init must be 'svd', 'random' or a DedicomTensor, got {init!r}")
    R, _ = _update_F(xp, X, A, D, D, A)
    return [A, R, D]


def _loop(X, A, R, D, n_iter_max, tol, callback, verbose):
    xp = array_namespace(X)
    norm_sq = sq_norm(xp, X)
    stop = ExactStopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    loss = _loss(xp, X, A, R, D)
    for _ in range(n_iter_max):
        A, R, D, loss, degenerate = _sweep(xp, X, A, R, D, loss)
        A, R, D = _normalize(xp, A, R, D)
        errors.append(relative(loss, norm_sq))
        state = model_end_of_sweep(
            stop,
            degenerate,
            callback,
            verbose,
            "dedicom",
            DedicomTensor(A, R, D, n_iter=len(errors), errors=errors),
            errors,
        )
        if state is not None:
            status = state
            break
    if not errors:
        errors = [relative(loss, norm_sq)]
    return Run([A, R, D], errors, status)
