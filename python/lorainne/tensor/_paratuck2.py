"""PARATUCK-2 (``X_k = A diag(CA[k]) T diag(CB[k]) B^T``) by the ALS of Bro (1998) with the algebraic
lifting start, real or complex, on the xp path.
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
    model_end_of_sweep,
    solve_right,
    solve_rows,
    sq_norm,
)
from ._lifting import lifting, lifting_min_slices
from ._modelkit import ModelResult, check_common, relative


class Paratuck2Tensor(ModelResult):
    """``X_k = A diag(CA[k]) T diag(CB[k]) B^T``: unpacks as ``A, CA, T, CB, B``.

    Shapes ``A (N1, R)``, ``CA (K, R)``, ``T (R, S)``, ``CB (K, S)``, ``B (N2, S)``. Normalization:
    A, B, CA and CB have unit-norm columns (the scales in T). The model leaves one scale per slice
    undetermined (``CA[k] * g``, ``CB[k] / g``); compare ``CA[k, r] T[r, s] CB[k, s]``.
    """

    _fields = ("A", "CA", "T", "CB", "B")

    def to_tensor(self):
        return _model(array_namespace(self.A), self.A, self.CA, self.T, self.CB, self.B)


def _model(xp, A, G, F, H, B):
    core = G[:, :, None] * F[None, :, :] * H[:, None, :]  # K x R x S
    return xp.permute_dims(A @ core @ B.T, (1, 2, 0))  # K x N1 x N2 -> N1 x N2 x K


def normalize(xp, A, G, F, H, B):
    """Unit-norm columns of A, B, G and H, the scales moved into F."""

    def unit(M):
        norms = xp.sqrt(xp.sum(xp.abs(M) ** 2, axis=0))
        norms = xp.where(norms > 0, norms, xp.ones_like(norms))
        return M / xp.astype(norms, M.dtype)[None, :], xp.astype(norms, M.dtype)

    A, a = unit(A)
    B, b = unit(B)
    G, g = unit(G * a[None, :])
    H, h = unit(H * b[None, :])
    return A, G, F * g[:, None] * h[None, :], H, B


def _diag_normal(xp, X, left, right):
    """The normal equations of ``X_k ~ left diag(c_k) right_k`` for every k (``right`` of shape
    K x R x N2): ``(left^H left) * conj(right_k right_k^H) c_k = diag(left^H X_k right_k^H)``,
    as stacked (K x R x R) matrices and (K x R) right-hand sides.
    """
    LL = herm(xp, left) @ left
    WW = right @ xp.permute_dims(conj(xp, right), (0, 2, 1))  # K x R x R
    normal = LL[None, :, :] * conj(xp, WW)
    P = herm(xp, left) @ xp.permute_dims(X, (2, 0, 1))  # K x R x N2
    rhs = xp.sum(P * conj(xp, right), axis=2)  # diag(left^H X_k right_k^H)
    return normal, rhs


def _re(xp, x):
    return xp.real(x) if xp.isdtype(x.dtype, "complex floating") else x


def _row_objective(xp, x, M, V):
    """``Re(x_i V x_i^H) - 2 Re(x_i M_i^H)`` per row i: the loss of the row-form problem ``x V = M``
    up to a constant. ``V`` is one Hermitian matrix or a stack (one per row).
    """
    xV = x @ V if V.ndim == 2 else xp.sum(x[:, :, None] * V, axis=1)
    return _re(xp, xp.sum(xV * conj(xp, x), axis=1)) - 2 * _re(xp, xp.sum(x * conj(xp, M), axis=1))


def guarded_rows(xp, old, new, M, V):
    """Keep each row of ``new`` only where it does not raise its quadratic loss above ``old``'s: the
    normal equations square the conditioning, and on a nearly degenerate model (diverging components)
    a rounded solution can be worse than the current rows. Makes every ALS step non-increasing.
    """
    better = _row_objective(xp, new, M, V) <= _row_objective(xp, old, M, V)
    return xp.where(better[:, None], new, old)


def _diag_solve(xp, normal, rhs, old=None):
    # row form: c_k normal_k^T = rhs_k, and normal_k^T = conj(normal_k) (Hermitian)
    Nc = xp.astype(conj(xp, normal), rhs.dtype)
    new, bad = solve_rows(xp, rhs, Nc)
    return (new if old is None else guarded_rows(xp, old, new, rhs, Nc)), bad


def _diag_update(xp, X, left, right, old=None):
    """Rows ``c_k`` of ``X_k ~ left diag(c_k) right_k`` for every k, by least squares."""
    return _diag_solve(xp, *_diag_normal(xp, X, left, right), old=old)


def _update_G(xp, X, A, F, H, B, old=None):
    """CA given the rest: ``X_k = A diag(g_k) (F D_H B^T)``."""
    return _diag_update(xp, X, A, (F[None, :, :] * H[:, None, :]) @ B.T, old)


def _update_H(xp, X, A, G, F, B, old=None):
    """CB given the rest: ``X_k^T = B diag(h_k) (A D_G F)^T``."""
    left_t = xp.permute_dims(A @ (G[:, :, None] * F[None, :, :]), (0, 2, 1))  # K x S x N1
    return _diag_update(xp, xp.permute_dims(X, (1, 0, 2)), B, left_t, old)


def _update_F(xp, X, A, G, H, B, old=None):
    """T given the rest: normal matrix ``((A^H A) kron (B^H B)) * (sum_k conj(g_k h_k) (g_k h_k)^T)``."""
    K = X.shape[2]
    R, S = A.shape[1], B.shape[1]
    gh = xp.reshape(G[:, :, None] * H[:, None, :], (K, R * S))
    AA, BB = herm(xp, A) @ A, herm(xp, B) @ B
    kron = xp.reshape(AA[:, None, :, None] * BB[None, :, None, :], (R * S, R * S))
    normal = kron * (herm(xp, gh) @ gh)
    P = herm(xp, A) @ xp.permute_dims(X, (2, 0, 1)) @ conj(xp, B)  # K x R x S
    rhs = xp.sum(conj(xp, xp.reshape(gh, (K, R, S))) * P, axis=0)
    rhs = xp.reshape(rhs, (1, R * S))
    Nc = xp.astype(conj(xp, normal), X.dtype)
    sol, bad = solve_right(xp, rhs, Nc)
    if old is not None:
        sol = guarded_rows(xp, xp.reshape(old, (1, R * S)), sol, rhs, Nc)
    return xp.reshape(sol, (R, S)), bad


def refine_core(xp, X, A, G, F, H, B, sweeps: int = 20):
    """A few exact least-squares updates of CA, CB and T with A and B held (the lifting's A and B
    are its accurate part; its rank-one fits of the rest are crude under noise).
    """
    for _ in range(sweeps):
        G, _ = _update_G(xp, X, A, F, H, B, G)
        H, _ = _update_H(xp, X, A, G, F, B, H)
        F, _ = _update_F(xp, X, A, G, H, B, F)
    return A, G, F, H, B


def _sweep(xp, X, A, G, F, H, B):
    """One ALS sweep of Bro's updates (A, B, CA, CB, T), each an exact least-squares step."""
    # A: X_k = A W_k, W_k = D_G F D_H B^T (R x N2)
    W = G[:, :, None] * (F[None, :, :] * H[:, None, :]) @ B.T  # K x R x N2
    Xk = xp.permute_dims(X, (2, 0, 1))  # K x N1 x N2
    WH = xp.permute_dims(conj(xp, W), (0, 2, 1))
    M = xp.sum(Xk @ WH, axis=0)
    V = xp.sum(W @ WH, axis=0)
    new, b1 = solve_right(xp, M, V)
    A = guarded_rows(xp, A, new, M, V)
    # B: X_k^T = B V_k^T, V_k = A D_G F D_H (N1 x S)
    Vk = A @ (G[:, :, None] * F[None, :, :] * H[:, None, :])  # K x N1 x S
    M = xp.sum(xp.permute_dims(Xk, (0, 2, 1)) @ conj(xp, Vk), axis=0)
    Gm = xp.sum(xp.permute_dims(Vk, (0, 2, 1)) @ conj(xp, Vk), axis=0)
    new, b2 = solve_right(xp, M, Gm)
    B = guarded_rows(xp, B, new, M, Gm)
    G, b3 = _update_G(xp, X, A, F, H, B, G)
    H, b4 = _update_H(xp, X, A, G, F, B, H)
    F, b5 = _update_F(xp, X, A, G, H, B, F)
    return (A, G, F, H, B), bool(b1 or b2 or b3 or b4 or b5)


def paratuck2(
    X,
    ranks,
    *,
    init="lifting",
    n_iter_max: int = 1000,
    tol: float = 1e-10,
    n_init: int = 1,
    random_state=None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> Paratuck2Tensor:
    """PARATUCK-2: ``X_k = A diag(CA[k]) T diag(CB[k]) B^T`` for the frontal slices ``X_k = X[:, :, k]``.

    ``A`` (N1 x R) and ``B`` (N2 x S) are the two loading matrices, ``T`` (R x S) the interaction
    matrix, ``CA`` (K x R) and ``CB`` (K x S) the slice weights of the two layers (Harshman and
    Lundy 1996). ALS with Bro's (1998) updates: A, B and T by least squares over all slices, each
    row of CA and CB by a small least-squares solve per slice; every step is exact, so the loss
    never increases. Conjugate transposes throughout: complex data (wireless uses) works as real.

    ``init="lifting"``: the algebraic start (after Usevich, arXiv:2302.00922): the slices are
    compressed to ``R x S``, their mode-3 fibres lifted to pairwise Hadamard products, whose kernel
    gives quadratic forms that vanish exactly on the columns of A (and of B); a small null space and
    one eigenvalue problem give A and B, then CA, T, CB follow from rank-one fits. Exact on
    noiseless data with no iteration; needs ``R <= N1``, ``S <= N2`` and
    ``K >= R(R+1)S(S+1)/4`` (for ``(R, S) = (2, 3)``: 18 slices).

    Parameters
    ----------
    X : 3-D array (N1, N2, K)
        float32/float64/complex64/complex128, finite. Not modified.
    ranks : (int, int)
        ``(R, S)``.
    init : {"lifting", "random"} or Paratuck2Tensor
    n_iter_max, tol, n_init, random_state, verbose, callback
        As for :func:`cp` (``n_iter_max=0`` returns the start; further starts of ``n_init`` are
        random). The callback receives the current Paratuck2Tensor.

    Returns
    -------
    Paratuck2Tensor
        Normalized (see the class); ``errors`` are relative Frobenius errors per sweep.

    Raises
    ------
    ValueError
        Ranks not positive or larger than ``N1``/``N2``; ``init="lifting"`` with too few slices;
        NaN or infinity; X not 3-D.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import paratuck2
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((6, 2)), rng.standard_normal((7, 3))
    >>> CA, T, CB = rng.standard_normal((20, 2)), rng.standard_normal((2, 3)), rng.standard_normal((20, 3))
    >>> X = np.einsum("ir,kr,rs,ks,js->ijk", A, CA, T, CB, B)
    >>> start = paratuck2(X, (2, 3), n_iter_max=0)  # the lifting alone
    >>> bool(np.linalg.norm(start.to_tensor() - X) < 1e-8 * np.linalg.norm(X))
    True
    """
    _, n_iter_max, tol, callback, verbose = check_common(1, n_iter_max, tol, callback, verbose)
    X = check_data(X, "X", ndim=3)
    if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
        raise ValueError(f"ranks must be a pair (R, S), got {ranks!r}")
    R = check_int(ranks[0], "ranks[0] (R)", low=1, high=X.shape[0])
    S = check_int(ranks[1], "ranks[1] (S)", low=1, high=X.shape[1])
    n_init = check_int(n_init, "n_init", low=1)
    rng = check_random_state(random_state)
    best = None
    for attempt in range(n_init):
        start = _start(X, R, S, init if attempt == 0 else "random", rng)
        run = _loop(X, start, n_iter_max, tol, callback, verbose)
        if best is None or run.final_error < best.final_error:
            best = run
    warn_unconverged(best, tol, "paratuck2", n_iter_max, stacklevel=2)
    xp = array_namespace(X)
    parts = normalize(xp, *best.factors)
    return Paratuck2Tensor(*parts, n_iter=len(best.errors), errors=best.errors, converged=best.status == "converged")


def _start(X, R, S, init, rng):
    xp = array_namespace(X)
    N1, N2, K = X.shape
    if isinstance(init, Paratuck2Tensor):
        shapes = ((N1, R), (K, R), (R, S), (K, S), (N2, S))
        out = []
        for name, part, shape in zip(Paratuck2Tensor._fields, init, shapes, strict=True):
            if tuple(part.shape) != shape:
                raise ValueError(f"init.{name} must have shape {shape}, got {tuple(part.shape)}")
            out.append(as_like(part, X, f"init.{name}"))
        return out
    if init == "lifting":
        need = lifting_min_slices(R, S)
        if K < need:
            raise ValueError(
                f"init='lifting' needs K >= R(R+1)S(S+1)/4 = {need} slices for ranks ({R}, {S}), got K={K}; "
                "use init='random'"
            )
        return list(refine_core(xp, X, *lifting(X, R, S)))
    if init == "random":
        scale = (sq_norm(xp, X) / (N1 * N2 * K)) ** 0.5
        A = draw(xp, rng, (N1, R), X.dtype, X)
        B = draw(xp, rng, (N2, S), X.dtype, X)
        G = draw(xp, rng, (K, R), X.dtype, X)
        H = draw(xp, rng, (K, S), X.dtype, X)
        F = draw(xp, rng, (R, S), X.dtype, X) * scale
        return [A, G, F, H, B]
    raise ValueError(f"init must be 'lifting', 'random' or a Paratuck2Tensor, got {init!r}")


def _loop(X, factors, n_iter_max, tol, callback, verbose):
    xp = array_namespace(X)
    factors = list(factors)
    norm_sq = sq_norm(xp, X)
    stop = ExactStopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    if n_iter_max == 0:
        errors = []
    for _ in range(n_iter_max):
        factors, degenerate = _sweep(xp, X, *factors)
        factors = list(normalize(xp, *factors))
        errors.append(relative(sq_norm(xp, X - _model(xp, *factors)), norm_sq))
        state = model_end_of_sweep(
            stop,
            degenerate,
            callback,
            verbose,
            "paratuck2",
            Paratuck2Tensor(*factors, n_iter=len(errors), errors=errors),
            errors,
        )
        if state is not None:
            status = state
            break
    if not errors:  # n_iter_max == 0: the start as it is
        return Run(factors, [relative(sq_norm(xp, X - _model(xp, *factors)), norm_sq)], "max_iter")
    return Run(factors, errors, status)
