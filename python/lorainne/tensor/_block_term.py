"""Rank-(L_r, L_r, 1) block-term decomposition by ALS (De Lathauwer and Nion 2008), with
nonnegative and Stokes (second-order cone) constraints.

Every update is a CP-type MTTKRP on the factors with ``C`` repeated ``L_r`` times per block (the
Rust kernel on NumPy input, the xp reference otherwise) followed by a small solve.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, resolve
from .._validation import check_int, check_n_threads, check_random_state
from . import _xp
from ._als import Run, StopRule, check_tensor, end_of_sweep, gaussian, sketched_left_vectors, warn_unconverged
from ._modelkit import ModelResult, check_common, lstsq_right, relative, sq_norm

CONSTRAINTS = (None, "nonnegative", "stokes")


class BlockTermTensor(ModelResult):
    """``X = sum_r (A_r B_r^T) o c_r``: unpacks as ``A, B, C`` (``A``, ``B`` lists of the
    ``I x L_r`` and ``J x L_r`` block factors, ``C`` of shape ``K x R`` with unit-norm columns).
    The blocks ``A_r B_r^T`` (:attr:`blocks`) and ``c_r`` are what the model determines.
    """

    _fields = ("A", "B", "C")

    @property
    def blocks(self) -> list:
        """The ``I x J`` matrices ``A_r B_r^T``."""
        return [a @ b.T for a, b in zip(self.A, self.B, strict=True)]

    def to_tensor(self):
        xp = array_namespace(self.C)
        out = None
        for r, E in enumerate(self.blocks):
            term = E[:, :, None] * self.C[:, r][None, None, :]
            out = term if out is None else out + term
        return out if out is not None else xp.zeros(())


def _project_cone(xp, c):
    """Euclidean projection of each column of ``c`` (4 x R) onto ``{c_0 >= ||c_1:||}``."""
    t = c[0, :]
    x = c[1:, :]
    norm = xp.linalg.vector_norm(x, axis=0)
    inside = norm <= t
    polar = norm <= -t
    scale = (t + norm) / 2.0
    safe = xp.where(norm > 0, norm, xp.ones_like(norm))
    top = xp.where(inside, t, xp.where(polar, xp.zeros_like(t), scale))
    rest = xp.where(inside, x, xp.where(polar, xp.zeros_like(x), scale[None, :] * x / safe[None, :]))
    return xp.concat([top[None, :], rest], axis=0)


def block_term(
    X,
    ranks_L,
    *,
    constraint: str | None = None,
    init="svd",
    n_iter_max: int = 500,
    tol: float = 1e-10,
    n_init: int = 1,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> BlockTermTensor:
    """Rank-(L_r, L_r, 1) block-term decomposition ``X ~ sum_r (A_r B_r^T) o c_r`` by ALS.

    ``A = [A_1 .. A_R]`` (``I x sum L``), ``B`` (``J x sum L``), ``C`` (``K x R``). With ``C_e``
    the matrix that repeats ``c_r`` ``L_r`` times, ``A`` and ``B`` are CP least-squares updates
    on the factors ``(A, B, C_e)``; ``C = X_(2) E pinv(E^T E)`` with ``E = [vec(A_r B_r^T)]``,
    whose MTTKRP and Gram are block sums of the CP ones. After each sweep ``c_r`` is scaled to
    unit norm (the scale moves into ``A_r``).

    Parameters
    ----------
    X : 3-D array (I, J, K)
        float32/float64, finite. Not modified.
    ranks_L : sequence of int
        ``L_r >= 1`` per block (``R = len(ranks_L)``), each ``<= min(I, J)``.
    constraint : {None, "nonnegative", "stokes"}
        "nonnegative": A, B, C >= 0 (HALS column updates). "stokes": ``K == 4`` and every ``c_r``
        a physical Stokes vector ``c_0 >= ||(c_1, c_2, c_3)||`` (each ``c_r`` updated by block
        coordinate descent and projected onto the second-order cone, exact for that block), the
        spatial factors A, B >= 0.
    init : {"svd", "random"} or BlockTermTensor
    n_iter_max, tol, n_init, random_state, backend, n_threads, verbose, callback
        As for :func:`cp` (the callback receives the factors ``[A, B, C_e]``).

    Returns
    -------
    BlockTermTensor

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import block_term
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((12, 4)), rng.standard_normal((10, 4)), rng.standard_normal((6, 2))
    >>> X = np.einsum("il,jl,kl->ijk", A, B, C[:, [0, 0, 1, 1]])
    >>> model = block_term(X, [2, 2], random_state=0)
    >>> model.errors[-1] < 1e-7, [a.shape for a in model.A]
    (True, [(12, 2), (12, 2)])
    """
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    _, n_iter_max, tol, callback, verbose = check_common(1, n_iter_max, tol, callback, verbose)
    X = check_tensor(X, "X")
    xp = array_namespace(X)
    if X.ndim != 3:
        raise ValueError(f"X must be 3-D (I, J, K), got shape {tuple(X.shape)}")
    if isinstance(ranks_L, (str, bytes)) or not hasattr(ranks_L, "__len__") or len(ranks_L) == 0:
        raise ValueError(f"ranks_L must be a non-empty sequence of positive integers, got {ranks_L!r}")
    ranks_L = [check_int(L, "ranks_L", low=1, high=min(X.shape[0], X.shape[1])) for L in ranks_L]
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    if constraint == "stokes" and X.shape[2] != 4:
        raise ValueError(f"constraint='stokes' needs a third mode of size 4 (S0..S3), got shape {tuple(X.shape)}")
    if constraint == "nonnegative" and bool(xp.any(X < 0)):
        raise ValueError("X has negative entries, but constraint='nonnegative'")
    n_init = check_int(n_init, "n_init", low=1)
    n_threads = check_n_threads(n_threads)
    rng = check_random_state(random_state)
    rust = resolve(X, backend=backend, rust_kernel=isinstance(X, np.ndarray)) == "rust"
    if rust:
        X = np.ascontiguousarray(X)
    best = None
    for attempt in range(n_init):
        factors = _start(X, ranks_L, init if attempt == 0 else "random", rng, constraint, rust, n_threads)
        run = _loop(X, ranks_L, factors, constraint, rust, n_threads, n_iter_max, tol, callback, verbose)
        if best is None or run.final_error < best.final_error:
            best = run
    warn_unconverged(best, tol, "block_term", n_iter_max, stacklevel=2)
    A, B, C = best.factors
    edges = np.cumsum([0, *ranks_L])
    return BlockTermTensor(
        [A[:, edges[r] : edges[r + 1]] for r in range(len(ranks_L))],
        [B[:, edges[r] : edges[r + 1]] for r in range(len(ranks_L))],
        C,
        n_iter=len(best.errors),
        errors=best.errors,
        converged=best.status == "converged",
    )


def _start(X, ranks_L, init, rng, constraint, rust, n_threads):
    xp = array_namespace(X)
    total, R = sum(ranks_L), len(ranks_L)
    if isinstance(init, BlockTermTensor):
        A = xp.concat(list(init.A), axis=1)
        B = xp.concat(list(init.B), axis=1)
        parts = [A, B, init.C]
        for n, (f, shape) in enumerate(
            zip(parts, ((X.shape[0], total), (X.shape[1], total), (X.shape[2], R)), strict=True)
        ):
            if tuple(f.shape) != shape:
                raise ValueError(f"init factor {n} must have shape {shape}, got {tuple(f.shape)}")
        return [xp.astype(xp.asarray(f, device=device(X)), X.dtype, copy=True) for f in parts]
    if init == "random":
        factors = [gaussian(xp, rng, (n, k), X.dtype, X) for n, k in zip(X.shape, (total, total, R), strict=True)]
    elif init == "svd":
        factors = []
        for mode, k in enumerate((total, total, R)):
            size = X.shape[mode]
            rest = X.shape[0] * X.shape[1] * X.shape[2] // size
            kk = min(k, size, rest)
            U, s = sketched_left_vectors(X, mode, kk, rng, rust=rust, n_threads=n_threads)
            if kk < k:
                U = xp.concat([U, gaussian(xp, rng, (size, k - kk), X.dtype, X) / size**0.5], axis=1)
            factors.append(U)
        factors[0] = factors[0] * float(xp.linalg.vector_norm(X)) ** (1 / 3)
    else:
        raise ValueError(f"init must be 'svd', 'random' or a BlockTermTensor, got {init!r}")
    if constraint is not None:
        factors = [xp.abs(f) for f in factors]
    return factors


def _loop(X, ranks_L, factors, constraint, rust, n_threads, n_iter_max, tol, callback, verbose):
    xp = array_namespace(X)
    R, total = len(ranks_L), sum(ranks_L)
    owner_np = np.zeros((total, R), dtype=np.float64)
    start = 0
    for r, L in enumerate(ranks_L):
        owner_np[start : start + L, r] = 1.0
        start += L
    owner = xp.asarray(owner_np, dtype=X.dtype, device=device(X))
    A, B, C = factors
    norm_x_sq = sq_norm(xp, X)
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    hals = constraint is not None

    def product(fs, mode):
        if rust:
            return core().mttkrp(X, [np.ascontiguousarray(f) for f in fs], mode, n_threads)
        return _xp.mttkrp(xp, X, fs, mode)

    for _ in range(n_iter_max):
        degenerate = False
        Ce = C @ owner.T  # (K, sum L)
        CeG = Ce.T @ Ce
        for mode in (0, 1):
            fs = [A, B, Ce]
            other = B if mode == 0 else A
            V = (other.T @ other) * CeG
            M = product(fs, mode)
            if hals:
                new = _xp.hals_columns(xp, fs[mode], M, V, 0.0, 0.0, True)
            else:
                new, bad = lstsq_right(xp, M, V)
                degenerate = degenerate or bad
            if mode == 0:
                A = new
            else:
                B = new
        M = product([A, B, Ce], 2) @ owner  # X_(2) E  (K, R)
        G = owner.T @ ((A.T @ A) * (B.T @ B)) @ owner  # E^T E  (R, R)
        if constraint is None:
            C, bad = lstsq_right(xp, M, G)
            degenerate = degenerate or bad
        elif constraint == "nonnegative":
            C = _xp.hals_columns(xp, C, M, G, 0.0, 0.0, True)
        else:
            C = _stokes_columns(xp, C, M, G)
        inner = float(xp.sum(M * C))
        model_sq = float(xp.sum((C.T @ C) * G))
        errors.append(relative(norm_x_sq - 2.0 * inner + model_sq, norm_x_sq))
        norms = xp.linalg.vector_norm(C, axis=0)  # unit-norm c_r, scale into A_r
        safe = xp.where(norms > 0, norms, xp.ones_like(norms))
        C = C / safe[None, :]
        A = A * (safe @ owner.T)[None, :]
        degenerate = degenerate or not bool(xp.all(norms > 0))
        state = end_of_sweep(stop, degenerate, callback, verbose, [A, B, C @ owner.T], errors, xp)
        if state is not None:
            status = state
            break
    if errors:
        model = _model(xp, A, B, C, owner)
        errors[-1] = relative(sq_norm(xp, X - model), norm_x_sq)
    return Run([A, B, C], errors, status)


def _model(xp, A, B, C, owner):
    Ce = C @ owner.T
    return xp.sum(A[:, None, None, :] * B[None, :, None, :] * Ce[None, None, :, :], axis=3)


def _stokes_columns(xp, C, M, G):
    """Block coordinate descent over the columns ``c_r``: the objective in ``c_r`` is
    ``G[r, r] ||c_r - t_r||^2 + const``, so the exact constrained step is the cone projection of ``t_r``.
    """
    R = C.shape[1]
    columns = [C[:, r] for r in range(R)]
    for r in range(R):
        g = float(G[r, r])
        if g <= 0:
            continue
        current = xp.stack(columns, axis=1)
        target = (M[:, r] - current @ G[:, r] + columns[r] * g) / g
        columns[r] = _project_cone(xp, target[:, None])[:, 0]
    return xp.stack(columns, axis=1)
