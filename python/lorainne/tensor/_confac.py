"""CONFAC / PARALIND: CP with constrained (linearly dependent) factors, ``X = [[A Psi, B Phi, C Omega]]``,
by ALS on the xp path, real or complex, with fixed (known) factors and masks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import to_host
from .._validation import check_int, check_random_state
from ._als import Run, end_of_sweep, warn_unconverged
from ._cplx import (
    ExactStopRule,
    as_like,
    check_data,
    conj,
    cp3,
    draw,
    herm,
    leading_left,
    mttkrp3,
    solve_right,
    sq_norm,
)
from ._modelkit import ModelResult, check_array_mask, check_common, relative


class ConfacTensor(ModelResult):
    """``X = [[A Psi, B Phi, C Omega]]``: unpacks as ``A, B, C``; :attr:`constraints` holds
    ``(Psi, Phi, Omega)`` and :attr:`factors` the effective CP factors ``(A Psi, B Phi, C Omega)``.
    """

    _fields = ("A", "B", "C")

    def __init__(self, A, B, C, *, constraints, **run):
        super().__init__(A, B, C, **run)
        self.constraints = tuple(constraints)

    @property
    def factors(self) -> tuple:
        return tuple(f @ c for f, c in zip(self, self.constraints, strict=True))

    def to_tensor(self):
        xp = array_namespace(self.A)
        return cp3(xp, *self.factors)


def max_principal_angle(U, V) -> float:
    """The largest principal angle (radians) between the column spaces of ``U`` and ``V`` (real or
    complex, same number of rows): 0 when one space contains the other. The comparison for the
    partially unique factors of a PARALIND/CONFAC model (columns tied by a constraint matrix are
    determined only up to their span).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import max_principal_angle
    >>> U = np.random.default_rng(0).standard_normal((6, 2))
    >>> max_principal_angle(U, U @ np.array([[1.0, 2.0], [3.0, -1.0]])) < 1e-12
    True
    """
    U = check_data(U, "U", ndim=2)
    V = check_data(V, "V", ndim=2)
    if U.shape[0] != V.shape[0]:
        raise ValueError(f"U and V must have the same number of rows, got {U.shape[0]} and {V.shape[0]}")
    xp = array_namespace(U)
    dtype = U.dtype if U.dtype == V.dtype else xp.result_type(U.dtype, V.dtype)
    QU, _ = xp.linalg.qr(xp.astype(U, dtype))
    QV, _ = xp.linalg.qr(xp.astype(V, dtype))
    if QU.shape[1] > QV.shape[1]:
        QU, QV = QV, QU
    # sine of the largest angle, accurate for small angles: ||(I - QV QV^H) QU||_2
    residual = QU - QV @ (herm(xp, QV) @ QU)
    sine = float(xp.max(xp.linalg.svdvals(residual)))
    return math.asin(min(1.0, sine))


def _check_constraints(constraints, rank, X):
    xp = array_namespace(X)
    if constraints is None:
        eye = xp.eye(rank, dtype=X.dtype)
        return (eye, eye, eye)
    if not isinstance(constraints, (tuple, list)) or len(constraints) != 3:
        raise ValueError(
            f"constraints must be a triple (Psi, Phi, Omega) of matrices (None for identity), got {constraints!r}"
        )
    out = []
    for n, (M, name) in enumerate(zip(constraints, ("Psi", "Phi", "Omega"), strict=True)):
        if M is None:
            out.append(xp.eye(rank, dtype=X.dtype))
            continue
        if not hasattr(M, "shape") or len(M.shape) != 2:
            raise ValueError(f"constraints[{n}] ({name}) must be a 2-D matrix, got {M!r}")
        if int(M.shape[1]) != rank:
            raise ValueError(f"constraints[{n}] ({name}) must have rank={rank} columns, got shape {tuple(M.shape)}")
        if int(M.shape[0]) < 1:
            raise ValueError(f"constraints[{n}] ({name}) must have at least one row, got shape {tuple(M.shape)}")
        out.append(as_like(M, X, f"constraints[{n}]"))
    return tuple(out)


def _check_fixed(fixed, X, widths):
    if fixed is None:
        return {}
    if not isinstance(fixed, dict):
        raise TypeError(f"fixed must be a dict {{mode: factor}}, got {type(fixed).__name__}")
    out = {}
    for mode, F in fixed.items():
        if isinstance(mode, bool) or mode not in (0, 1, 2):
            raise ValueError(f"fixed keys must be modes 0, 1 or 2, got {mode!r}")
        if not hasattr(F, "shape") or tuple(F.shape) != (X.shape[mode], widths[mode]):
            raise ValueError(
                f"fixed[{mode}] must have shape {(X.shape[mode], widths[mode])}, got {tuple(getattr(F, 'shape', ()))}"
            )
        out[mode] = as_like(F, X, f"fixed[{mode}]")
    if len(out) == 3:
        raise ValueError("fixed holds all three factors: nothing left to estimate")
    return out


def confac(
    X,
    rank: int,
    *,
    constraints=None,
    fixed: dict | None = None,
    mask=None,
    init="auto",
    n_iter_max: int = 500,
    tol: float = 1e-10,
    n_init: int = 1,
    random_state=None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> ConfacTensor:
    """CONFAC / PARALIND: ``X = sum_f (A psi_f) o (B phi_f) o (C omega_f)``, i.e. the CP model
    ``X = [[A Psi, B Phi, C Omega]]`` whose factors are tied by constraint matrices.

    PARALIND (Bro, Harshman, Sidiropoulos, Lundy 2009) when ``Psi, Phi, Omega`` are general;
    CONFAC (de Almeida, Favier, Mota 2008) when their columns are canonical vectors (component
    ``f`` uses column ``Psi[:, f].argmax()`` of A, ...). ``constraints=None`` is plain CP.

    ALS with the normal equations written with conjugate transposes, so complex data (wireless
    uses) works as real: the A-update is ``A = X_(1) conj(C_e kr B_e) Psi^H pinv(Psi V Psi^H)``
    with ``V = (C_e^T conj C_e) * (B_e^T conj B_e)``, ``B_e = B Phi``, ``C_e = C Omega``; B and C alike.
    Factors in ``fixed`` (pilot symbols, a known array response: semi-blind use) are never updated.
    With a mask the unobserved entries are imputed from the model before each sweep (EM-ALS);
    the error is measured on the observed entries. Runs on the array-API path (NumPy, CuPy, torch).

    Uniqueness: a factor whose columns are each used by components with otherwise distinct
    partners is unique up to scale and permutation; components tied to one column of A determine
    their B and C columns only up to the span of those columns (compare those with
    :func:`max_principal_angle`).

    Parameters
    ----------
    X : 3-D array (I, J, K)
        float32/float64/complex64/complex128, finite. Not modified.
    rank : int
        Number of components ``F`` (columns of each constraint matrix).
    constraints : (Psi, Phi, Omega) or None
        Matrices of shapes ``(R1, F)``, ``(R2, F)``, ``(R3, F)``; a None entry is the identity.
    fixed : dict {mode: factor}, optional
        Known factors (shape ``(X.shape[mode], R_mode)``), kept as given.
    mask : boolean array of X's shape, optional
        True = observed.
    init : {"auto", "jennrich", "random", "svd"} or ConfacTensor or (A, B, C)
        "jennrich": the algebraic start (simultaneous diagonalization, :func:`jennrich`) on two
        modes whose constraint matrices are square and invertible and whose sizes are >= rank,
        the third factor by least squares; exact on noiseless data (the tied columns included).
        "auto" (default): with a fixed factor of full column rank, the semi-blind algebraic start
        (X contracted with its pseudo-inverse leaves one rank-one matrix per component), else
        "jennrich" when it applies, else "random". With a mask the starts see zero-filled data.
        "random": Gaussian factors (complex Gaussian for complex X). "svd": A from the leading
        left singular vectors of ``X_(1)``, Gaussian B and C.
    n_iter_max, tol, n_init, random_state, verbose, callback
        As for :func:`cp` (the callback receives the effective factors as a CPTensor).

    Returns
    -------
    ConfacTensor
        ``A, B, C`` with ``n_iter``, ``errors`` (relative, on observed entries), ``converged``.

    Raises
    ------
    ValueError
        Constraint shapes that do not match ``rank``, fixed factors of the wrong shape, NaN, a
        mask of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import confac
    >>> rng = np.random.default_rng(0)
    >>> Psi = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # components 0 and 1 share a column of A
    >>> A, B, C = rng.standard_normal((8, 2)), rng.standard_normal((7, 3)), rng.standard_normal((6, 3))
    >>> X = np.einsum("if,jf,kf->ijk", A @ Psi, B, C)
    >>> model = confac(X, 3, constraints=(Psi, None, None), random_state=0)
    >>> bool(model.errors[-1] < 1e-8)
    True
    """
    rank, n_iter_max, tol, callback, verbose = check_common(rank, n_iter_max, tol, callback, verbose)
    X = check_data(X, "X", ndim=3)
    cons = _check_constraints(constraints, rank, X)
    widths = [int(c.shape[0]) for c in cons]
    fixed = _check_fixed(fixed, X, widths)
    mask = check_array_mask(mask, X)
    n_init = check_int(n_init, "n_init", low=1)
    rng = check_random_state(random_state)
    best = None
    for attempt in range(n_init):
        factors = _start(X, cons, rank, init if attempt == 0 else "random", rng, fixed, mask)
        run = _loop(X, factors, cons, fixed, mask, n_iter_max, tol, callback, verbose)
        if best is None or run.final_error < best.final_error:
            best = run
    warn_unconverged(best, tol, "confac", n_iter_max, stacklevel=2)
    return ConfacTensor(
        *best.factors,
        constraints=cons,
        n_iter=len(best.errors),
        errors=best.errors,
        converged=best.status == "converged",
    )


def _start(X, cons, rank, init, rng, fixed, mask):
    widths = [int(c.shape[0]) for c in cons]
    xp = array_namespace(X)
    if isinstance(init, (ConfacTensor, tuple, list)):
        parts = list(init)
        if len(parts) != 3:
            raise ValueError(f"init must hold three factors (A, B, C), got {len(parts)}")
        out = []
        for n, F in enumerate(parts):
            if not hasattr(F, "shape") or tuple(F.shape) != (X.shape[n], widths[n]):
                raise ValueError(
                    f"init factor {n} must have shape {(X.shape[n], widths[n])}, got {getattr(F, 'shape', None)}"
                )
            out.append(as_like(F, X, f"init factor {n}"))
    elif init == "auto" and _semiblind_mode(X, cons, rank, fixed) is not None:
        return _semiblind_start(X if mask is None else xp.where(mask, X, xp.zeros_like(X)), cons, rank, fixed)
    elif init == "jennrich" or (init == "auto" and _jennrich_modes(X, cons, rank) is not None):
        if _jennrich_modes(X, cons, rank) is None:
            raise ValueError("init='jennrich' needs two modes with square invertible constraints and size >= rank")
        return _jennrich_start(X if mask is None else xp.where(mask, X, xp.zeros_like(X)), cons, rank, rng, fixed)
    elif init in ("random", "auto"):
        out = [draw(xp, rng, (X.shape[n], widths[n]), X.dtype, X) for n in range(3)]
    elif init == "svd":
        # The leading left singular vectors of X_(1) for A (its column space), Gaussian B and C: the
        # first sweep then solves for B and C given that space (singular vectors of the other modes
        # would pair columns arbitrarily across modes, which stalls PARALIND models).
        data = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
        k = min(widths[0], X.shape[0])
        U = leading_left(xp, xp.reshape(data, (X.shape[0], -1)), k)
        if k < widths[0]:
            U = xp.concat([U, draw(xp, rng, (X.shape[0], widths[0] - k), X.dtype, X)], axis=1)
        out = [U] + [draw(xp, rng, (X.shape[n], widths[n]), X.dtype, X) for n in (1, 2)]
    else:
        raise ValueError(f"init must be 'auto', 'jennrich', 'svd', 'random', a ConfacTensor or (A, B, C), got {init!r}")
    for mode, F in fixed.items():
        out[mode] = F
    return out


def _update(xp, data, factors, cons, mode):
    """The least-squares update of one factor given the others (conjugate-transposed normal equations)."""
    eff = [f @ c for f, c in zip(factors, cons, strict=True)]
    V = None
    for n in range(3):
        if n != mode:
            g = eff[n].T @ conj(xp, eff[n])
            V = g if V is None else V * g
    M = mttkrp3(xp, data, [conj(xp, f) for f in eff], mode) @ herm(xp, cons[mode])
    return solve_right(xp, M, cons[mode] @ V @ herm(xp, cons[mode]))


def _jennrich_modes(X, cons, rank):
    """Two modes whose constraint matrix is square and invertible and whose size is >= rank (their
    effective factors can have full column rank), or None.
    """
    xp = array_namespace(X)
    good = []
    for n, c in enumerate(cons):
        if c.shape[0] == rank and X.shape[n] >= rank:
            s = xp.linalg.svdvals(c)
            if float(xp.min(s)) > 1e-8 * float(xp.max(s)):
                good.append(n)
    good.sort(key=lambda n: -X.shape[n])
    return tuple(sorted(good[:2])) if len(good) >= 2 else None


def _semiblind_mode(X, cons, rank, fixed):
    """A fixed mode whose effective factor has full column rank (rank <= its size), or None."""
    xp = array_namespace(X)
    for mode, F in fixed.items():
        if X.shape[mode] >= rank:
            s = xp.linalg.svdvals(F @ cons[mode])
            if float(xp.min(s)) > 1e-8 * float(xp.max(s)):
                return mode
    return None


def _semiblind_start(X, cons, rank, fixed):
    """The start from a known factor (semi-blind use): contracting X with the pseudo-inverse of the
    known effective factor leaves one rank-one matrix ``u_f v_f^T`` per component; the first other
    mode's factor is ``[u_f] pinv(Psi)`` (each u_f phase-normalized so tied copies agree), the
    last by least squares. Exact on noiseless data.
    """
    xp = array_namespace(X)
    m = _semiblind_mode(X, cons, rank, fixed)
    p, q = (n for n in range(3) if n != m)
    pinv = xp.linalg.pinv(fixed[m] @ cons[m])  # (F, size_m)
    Z = xp.permute_dims(xp.tensordot(X, pinv, axes=([m], [1])), (2, 0, 1))  # (F, size_p, size_q)
    us, gs = [], []
    for f in range(rank):
        U, _, _ = xp.linalg.svd(Z[f, ...], full_matrices=False)
        u = U[:, 0]
        top = u[int(xp.argmax(xp.abs(u)))]
        u = u * (conj(xp, top) / xp.abs(top))
        us.append(u)
        gs.append(Z[f, ...].T @ conj(xp, u))  # Z_f = u_f g_f^T
    factors = [None, None, None]
    for n, F in fixed.items():
        factors[n] = F
    if p not in fixed and q not in fixed:
        pair = _propagate(xp, us, gs, cons[p], cons[q])
        if pair is not None:
            factors[p], factors[q] = pair
            return factors
    if p not in fixed:
        factors[p] = xp.stack(us, axis=1) @ xp.linalg.pinv(cons[p])
    if q not in fixed:
        factors[q] = xp.zeros((X.shape[q], cons[q].shape[0]), dtype=X.dtype)
        factors[q], _ = _update(xp, X, factors, cons, q)
    return factors


def _canonical(xp, c):
    """(row index, value) of the one nonzero of each column of a CONFAC constraint matrix, or None."""
    host = np.asarray(to_host(c))
    nonzero = host != 0
    if not np.all(nonzero.sum(axis=0) == 1):
        return None
    rows = nonzero.argmax(axis=0)
    return [int(r) for r in rows], [v.item() for v in host[rows, np.arange(host.shape[1])]]


def _propagate(xp, us, gs, Psi, Phi):
    """CONFAC factors from per-component rank-one terms ``u_f g_f^T = psi_f a_{i(f)} (phi_f b_{j(f)})^T``:
    walk the bipartite graph of shared columns so that every component gets consistent scales
    (a tied column fixes its partner's scale). None when a constraint is not canonical.
    """
    ca, cb = _canonical(xp, Psi), _canonical(xp, Phi)
    if ca is None or cb is None:
        return None
    (ia, va), (ib, vb) = ca, cb
    rank = len(us)
    a = [None] * Psi.shape[0]
    b = [None] * Phi.shape[0]
    pending = set(range(rank))
    while pending:
        progress = False
        for f in sorted(pending):
            i, j = ia[f], ib[f]
            if a[i] is None and b[j] is None:
                continue
            if a[i] is not None:
                kappa = xp.sum(
                    conj(xp, us[f]) * (a[i] * float(va[f]) if not np.iscomplexobj(va) else a[i] * complex(va[f]))
                )
                if b[j] is None:
                    b[j] = gs[f] / (kappa * vb[f])
            else:
                target = b[j] * vb[f]
                mu = xp.sum(conj(xp, gs[f]) * target) / xp.sum(conj(xp, gs[f]) * gs[f])
                a[i] = us[f] / (mu * va[f])
            pending.discard(f)
            progress = True
        if not progress:  # a new connected part: anchor its first component
            f = min(pending)
            a[ia[f]] = us[f] / va[f]
    like = us[0]
    A = xp.stack([c if c is not None else xp.zeros_like(like) for c in a], axis=1)
    B = xp.stack([c if c is not None else xp.zeros_like(gs[0]) for c in b], axis=1)
    return A, B


def _jennrich_start(X, cons, rank, rng, fixed):
    """Simultaneous diagonalization on two untied modes, the third factor by least squares: exact
    on noiseless data, tied columns included (a tied block is a repeated eigenvalue: any basis of
    its eigenspace is an exact decomposition of the block).
    """
    xp = array_namespace(X)
    a, b = _jennrich_modes(X, cons, rank)
    rest = 3 - a - b
    Fa, Fb = simultaneous_diagonalization(X, rank, (a, b), rng)
    # The components come out in eigenvalue order; the constraint of the third mode ties them in
    # a given order: pick the order in which the unconstrained third factor E fits E D = F Psi.
    eye = xp.eye(rank, dtype=X.dtype)
    effective = [None, None, None]
    effective[a], effective[b] = Fa, Fb
    effective[rest] = xp.zeros((X.shape[rest], rank), dtype=X.dtype)
    effective[rest], _ = _update(xp, X, effective, (eye, eye, eye), rest)
    order = _tie_order(np.asarray(to_host(effective[rest])), np.asarray(to_host(cons[rest])))
    index = xp.asarray(np.asarray(order), device=device(X))
    factors = [None, None, None]
    factors[a] = xp.take(Fa, index, axis=1) @ xp.linalg.inv(cons[a])
    factors[b] = xp.take(Fb, index, axis=1) @ xp.linalg.inv(cons[b])
    for mode, F in fixed.items():
        factors[mode] = F
    if rest not in fixed:
        factors[rest] = draw(xp, rng, (X.shape[rest], cons[rest].shape[0]), X.dtype, X)
        factors[rest], _ = _update(xp, X, factors, cons, rest)
    return factors


def _tie_order(E, Psi):
    """The column order ``p`` of ``E`` for which ``E[:, p] D = F Psi`` has a solution with diagonal
    ``D`` (``D (I - Psi^+ Psi)``-weighted columns of E dependent): the smallest relative singular
    value of the linear map ``d -> E[:, p] diag(d) N``, N the projector on Psi's null space. The
    identity when Psi has full column rank (any order fits) or for more than 6 components.
    """
    rank = E.shape[1]
    N = np.eye(rank) - np.linalg.pinv(Psi) @ Psi
    if rank > 6 or np.linalg.norm(N) < 1e-8:
        return list(range(rank))
    best, best_score = list(range(rank)), np.inf
    En = E / np.linalg.norm(E, axis=0)
    tied = [f for f in range(rank) if np.linalg.norm(N[f]) > 1e-8]  # components Psi ties to others
    for p in itertools.permutations(range(rank)):
        L = np.stack([np.outer(En[:, p[f]], N[f]).ravel() for f in tied], axis=1)
        s = np.linalg.svd(L, compute_uv=False)
        score = s[-1] / max(s[0], np.finfo(float).tiny)
        if score < best_score:
            best, best_score = list(p), score
    return best


def _eigenvectors(M, real: bool):
    """Eigenvectors of a diagonalizable M, with each cluster of (numerically) repeated eigenvalues
    replaced by an orthonormal basis of its eigenspace: the null space of ``M - mean(cluster) I``
    (real for real M). ``eig`` alone returns, for a rounded-apart double eigenvalue, vectors of
    arbitrary phase whose real parts can be parallel.
    """
    n = M.shape[0]
    values, E = np.linalg.eig(M)
    scale = max(float(np.max(np.abs(values))), np.finfo(M.dtype).tiny)
    tol = 1e-6 * scale
    done = np.zeros(n, dtype=bool)
    out = np.empty((n, n), dtype=M.dtype if not real else np.result_type(M.dtype, np.float32))
    if not real:
        out = out.astype(np.result_type(M.dtype, np.complex64))
    col = 0
    for r in range(n):
        if done[r]:
            continue
        cluster = np.flatnonzero((np.abs(values - values[r]) <= tol) & ~done)
        done[cluster] = True
        if len(cluster) == 1 and real and abs(values[r].imag) > 0:
            # a genuine conjugate pair (noisy data): its real invariant subspace, by real and imaginary parts
            partner = int(np.argmin(np.where(done, np.inf, np.abs(values - np.conj(values[r])))))
            done[partner] = True
            Q, _ = np.linalg.qr(np.stack([E[:, r].real, E[:, r].imag], axis=1))
            out[:, col : col + 2] = Q
            col += 2
            continue
        if len(cluster) == 1:
            out[:, col] = E[:, r].real if real else E[:, r]
        else:
            centre = np.mean(values[cluster])
            shift = M - (centre.real if real else centre) * np.eye(n)
            _, _, Vh = np.linalg.svd(shift)
            out[:, col : col + len(cluster)] = Vh[n - len(cluster) :].conj().T
        col += len(cluster)
    return out


def simultaneous_diagonalization(X, rank, modes, rng):
    """Effective CP factors of modes ``(a, b)`` of a 3-way X (full column rank there) by Jennrich's
    eigenvectors of ``T_1 pinv(T_2)`` (``T_k`` the slices compressed to ``rank x rank``). Repeated
    eigenvalues (tied components) are allowed: on real data a rounded-apart conjugate pair is
    replaced by its real and imaginary parts, a real basis of the same eigenspace. Mode b from
    ``E^{-1} T_1``. Host NumPy for the eigenproblem; results in X's library.
    """
    xp = array_namespace(X)
    a, b = modes
    rest = 3 - a - b
    Z = np.asarray(to_host(xp.permute_dims(X, (a, b, rest))))
    Ua = np.linalg.svd(Z.reshape(Z.shape[0], -1), full_matrices=False)[0][:, :rank]
    Ub = np.linalg.svd(np.transpose(Z, (1, 0, 2)).reshape(Z.shape[1], -1), full_matrices=False)[0][:, :rank]
    T = np.einsum("ia,jb,ijk->abk", Ua.conj(), Ub.conj(), Z)
    w, v = rng.standard_normal(T.shape[2]), rng.standard_normal(T.shape[2])
    T1, T2 = T @ w, T @ v
    E = _eigenvectors(T1 @ np.linalg.pinv(T2), real=Z.dtype.kind == "f")
    E = E / np.linalg.norm(E, axis=0)
    Fb = Ub @ (np.linalg.pinv(E) @ T1).T
    out = [np.asarray(Ua @ E, dtype=Z.dtype), np.asarray(Fb, dtype=Z.dtype)]
    return [xp.asarray(f, device=device(X)) for f in out]


def _loop(X, factors, cons, fixed, mask, n_iter_max, tol, callback, verbose):
    xp = array_namespace(X)
    factors = list(factors)
    data = X if mask is None else xp.where(mask, X, xp.zeros_like(X))
    norm_sq = sq_norm(xp, data)
    stop = ExactStopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    for _ in range(n_iter_max):
        if mask is not None:
            model = cp3(xp, *[f @ c for f, c in zip(factors, cons, strict=True)])
            data = xp.where(mask, X, model)
        degenerate = False
        for mode in range(3):
            if mode in fixed:
                continue
            factors[mode], bad = _update(xp, data, factors, cons, mode)
            degenerate = degenerate or bad
        eff = [f @ c for f, c in zip(factors, cons, strict=True)]
        residual = data - cp3(xp, *eff)
        if mask is not None:
            residual = xp.where(mask, residual, xp.zeros_like(residual))
        errors.append(relative(sq_norm(xp, residual), norm_sq))
        state = end_of_sweep(stop, degenerate, callback, verbose, eff, errors, xp)
        if state is not None:
            status = state
            break
    return Run(factors, errors, status)
