"""The algebraic CP start by simultaneous diagonalization (Jennrich; Leurgans, Ross and Abel 1993).

Imports ``_structures`` and ``_validation`` only, so ``_als`` may import it for ``cp(init="jennrich")``.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, device

from .._validation import check_int, check_random_state
from ._structures import CPTensor


def _host(X) -> np.ndarray:
    if isinstance(X, np.ndarray):
        return X
    try:
        return np.asarray(X)
    except (TypeError, RuntimeError):  # CuPy, torch on a device
        from ._structures import _to_numpy

        return _to_numpy(X)


def _check(X, rank, modes):
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"X must be an array, got {type(X).__name__}")
    A = _host(X)
    if A.dtype.kind in "iub":
        A = A.astype(np.float64)
    if A.dtype.kind not in "fc" or A.dtype.itemsize < 4 or A.dtype == np.float16:
        raise TypeError(f"X has unsupported dtype {A.dtype}: use float32/float64/complex64/complex128")
    if A.ndim < 3:
        raise ValueError(f"X must have at least 3 modes, got shape {A.shape}")
    if A.size == 0:
        raise ValueError(f"X must not be empty, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("X contains NaN or infinity")
    rank = check_int(rank, "rank", low=1)
    if modes is None:
        order = sorted(range(A.ndim), key=lambda n: -A.shape[n])
        modes = tuple(sorted(order[:2]))
    else:
        if not isinstance(modes, (tuple, list)) or len(modes) != 2:
            raise ValueError(f"modes must be a pair of distinct modes, got {modes!r}")
        modes = tuple(check_int(m, "modes", low=0, high=A.ndim - 1) for m in modes)
        if modes[0] == modes[1]:
            raise ValueError(f"modes must be a pair of distinct modes, got {modes!r}")
    for m in modes:
        if A.shape[m] < rank:
            raise ValueError(
                f"rank must be <= the size of modes {modes} (full column rank needed there), "
                f"got rank={rank} and shape {A.shape}"
            )
    return A, rank, modes


def _leading(M, rank):
    U, _, _ = np.linalg.svd(M, full_matrices=False)
    return U[:, :rank]


def jennrich(X, rank: int, *, modes=None, random_state=None) -> CPTensor:
    """CP factors of ``X`` by simultaneous diagonalization (Jennrich's algorithm).

    Exact on a noiseless CP tensor of rank ``R`` whose factors on ``modes`` (two modes) have full
    column rank and whose remaining modes, combined, have no two parallel columns; no
    iterations. Steps: ``U_a``, ``U_b`` the leading ``R`` left singular vectors of the two
    unfoldings; the core ``T = X x_a U_a^H x_b U_b^H`` (``R x R x prod(rest)``); two random
    combinations ``T_1 = sum_k w_k T_k``, ``T_2 = sum_k v_k T_k`` of its slices; the eigenvectors
    of ``T_1 pinv(T_2)`` give ``A_a = U_a E``; then row ``r`` of ``E^{-1} T_k`` over ``k`` is the
    rank-one ``c_r b_r^T`` (one SVD per component) giving ``A_b`` and the combined other modes, which
    are split by the leading singular vectors of each unfolding of the rank-one remainder. With
    noise the eigenvectors are taken real for real ``X`` (a start for ALS: ``cp(X, R,
    init=jennrich(X, R))``).

    Parameters
    ----------
    X : array of order >= 3
        float32/float64/complex64/complex128 (integers promoted), finite. NumPy work on the host;
        the result goes back to X's array library.
    rank : int
        At most the size of each of ``modes``.
    modes : pair of int, optional
        The two modes with full column rank (default: the two largest).
    random_state : None, int or Generator
        Draws the two slice combinations.

    Returns
    -------
    CPTensor
        Normalized; ``n_iter == 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import cp, factor_match_score
    >>> from lorainne.tensor import jennrich
    >>> rng = np.random.default_rng(0)
    >>> true = [rng.standard_normal((n, 4)) for n in (10, 9, 8)]
    >>> X = np.einsum("ir,jr,kr->ijk", *true)
    >>> start = jennrich(X, 4, random_state=0)
    >>> factor_match_score(start, (None, true)) > 0.999999
    True
    >>> cp(X, 4, init=start).n_iter <= 2
    True
    """
    A, rank, (a, b) = _check(X, rank, modes)
    rng = check_random_state(random_state)
    rest = [n for n in range(A.ndim) if n not in (a, b)]
    Z = np.transpose(A, (a, b, *rest)).reshape(A.shape[a], A.shape[b], -1)
    Ua = _leading(Z.reshape(Z.shape[0], -1), rank)
    Ub = _leading(np.transpose(Z, (1, 0, 2)).reshape(Z.shape[1], -1), rank)
    T = np.einsum("ia,jb,ijk->abk", Ua.conj(), Ub.conj(), Z)
    w, v = rng.standard_normal(T.shape[2]), rng.standard_normal(T.shape[2])
    T1, T2 = T @ w, T @ v
    _, E = np.linalg.eig(T1 @ np.linalg.pinv(T2))
    if A.dtype.kind == "f":
        E = E.real
    E = E / np.linalg.norm(E, axis=0)
    S = np.einsum("ra,abk->rbk", np.linalg.pinv(E), T)  # S[r] = c_r b_r^T (R x K after transpose)
    factor_b = np.empty((rank, rank), dtype=E.dtype)
    combined = np.empty((T.shape[2], rank), dtype=E.dtype)
    for r in range(rank):
        U, s, Vh = np.linalg.svd(S[r].T, full_matrices=False)  # (K, R) = c_r b_r^T
        combined[:, r] = U[:, 0] * s[0]
        factor_b[:, r] = Vh[0]
    factors = [None] * A.ndim
    factors[a], factors[b] = Ua @ E, Ub @ factor_b
    sizes = [A.shape[n] for n in rest]
    if len(rest) == 1:
        factors[rest[0]] = combined
    else:  # split each combined column (a vectorized rank-one tensor) mode by mode
        for n in rest:
            factors[n] = np.empty((A.shape[n], rank), dtype=E.dtype)
        for r in range(rank):
            block = combined[:, r].reshape(sizes)
            vectors = []
            for i in range(len(rest)):
                unfolded = np.moveaxis(block, i, 0).reshape(sizes[i], -1)
                vectors.append(np.linalg.svd(unfolded, full_matrices=False)[0][:, 0])
            core = block
            for u in vectors:
                core = np.tensordot(u.conj(), core, axes=(0, 0))
            vectors[0] = vectors[0] * core
            for n, u in zip(rest, vectors, strict=True):
                factors[n][:, r] = u
    dtype = np.result_type(A.dtype, np.float32)
    factors = [np.asarray(f, dtype=dtype) for f in factors]
    weights = np.ones(rank, dtype=np.finfo(dtype).dtype)
    if not isinstance(X, np.ndarray) and A.dtype.kind == "f":
        xp = array_namespace(X)
        weights = xp.asarray(weights, device=device(X))
        factors = [xp.asarray(f, device=device(X)) for f in factors]
    return CPTensor(weights, factors).normalize()
