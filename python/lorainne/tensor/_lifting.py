"""The algebraic lifting start of PARATUCK-2: ``X_k = A D_k(G) F D_k(H) B^T`` from null spaces and
one eigenvalue problem (after Usevich, "An algebraic algorithm for the ParaTuck-2 decomposition",
arXiv:2302.00922: lift the slices, the kernel of a structured matrix gives A and B).

The construction used here, for ranks ``R <= N1``, ``S <= N2`` and ``K >= R(R+1)S(S+1)/4``:

1. Compress: ``Y_k = U_A^H X_k conj(U_B)`` (``R x S``), so ``Y_k = A~ D_k(G) F D_k(H) B~^T`` with
   ``A~``, ``B~`` invertible; the mode-3 fibres are ``y_ij = sum_rs A~_ir B~_js F_rs (g_r * h_s)``.
2. Lift: the Hadamard products ``y_a * y_b`` of every pair of fibres (``K x n(n+1)/2``, ``n = RS``)
   lie in the span of the ``R(R+1)S(S+1)/4`` vectors ``g_r g_r' h_s h_s'``; the kernel of that
   matrix (``C(R,2) C(S,2)`` quadratic forms ``Q``) holds the relations among them. In the
   coordinates of the true terms such a ``Q`` vanishes on every pair of terms sharing an ``r``
   (and on every pair sharing an ``s``).
3. Hence ``(p kron I_S)^T Q (p kron I_S) = 0`` for every Q exactly when ``p`` is a column of ``A~``:
   linear in ``P = p p^T``, whose solutions are ``span{a~_r a~_r^T}``; two of them are
   diagonalized together (the eigenvectors of ``P_1 P_2^{-1}`` are the ``a~_r``). ``B~`` alike.
4. ``Z_k = A~^{-1} Y_k B~^{-T} = diag(g_k) F diag(h_k)``: G, H and F from rank-one fits.

Exact (to rounding) on noiseless data, no iterations; with noise the kernels are the smallest
singular vectors, a start for ALS. NumPy on the host (the matrices are small); results go back to
X's library.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import to_host
from ._confac import _eigenvectors


def lifting_min_slices(R: int, S: int) -> int:
    """The number of slices the lifting needs: the products ``g_r g_r' h_s h_s'`` must be independent."""
    return R * (R + 1) * S * (S + 1) // 4


def _sym_pairs(n):
    return [(a, b) for a in range(n) for b in range(a, n)]


def _kernel(M, dim):
    """The ``dim`` right singular vectors of the smallest singular values (columns)."""
    _, _, Vh = np.linalg.svd(M, full_matrices=True)
    return Vh[Vh.shape[0] - dim :].T


def _quadratic_forms(Y):
    """The kernel of the Hadamard lifting of the fibres of ``Y`` (R x S x K), as symmetric n x n forms."""
    R, S, K = Y.shape
    n = R * S
    fibres = Y.reshape(n, K)  # row a = (i, j) with a = i S + j
    pairs = _sym_pairs(n)
    lifted = np.stack([fibres[a] * fibres[b] for a, b in pairs], axis=1)  # K x n(n+1)/2
    dim = n * (n + 1) // 2 - lifting_min_slices(R, S)
    kernel = _kernel(lifted, dim)
    forms = []
    for v in kernel.T:
        Q = np.zeros((n, n), dtype=Y.dtype)
        for (a, b), value in zip(pairs, v, strict=True):
            if a == b:
                Q[a, a] = value
            else:  # the lifted column y_a * y_b stands for the two symmetric entries
                Q[a, b] = Q[b, a] = value / 2
        forms.append(Q)
    return forms


def _columns_from_forms(forms, R, S, side):
    """The columns of A~ (side 0) or B~ (side 1): the symmetric P with ``(p kron I)^T Q (p kron I) = 0``
    for every form span ``{a_r a_r^T}``; two of them are diagonalized together.
    """
    m = R if side == 0 else S
    other = S if side == 0 else R
    pairs = _sym_pairs(m)
    rows = []
    for Q in forms:
        Q4 = Q.reshape(R, S, R, S)
        # block (i, i') of Q along the chosen side: an other x other matrix
        blocks = Q4.transpose(0, 2, 1, 3) if side == 0 else Q4.transpose(1, 3, 0, 2)
        columns = []
        for a, b in pairs:
            block = blocks[a, b] + (blocks[b, a] if a != b else 0)
            columns.append(block.reshape(other * other))
        rows.append(np.stack(columns, axis=1))
    system = np.concatenate(rows, axis=0)
    if m == 1:
        return np.ones((1, 1), dtype=system.dtype)
    kernel = _kernel(system, m)
    sym = []
    for v in kernel.T:
        P = np.zeros((m, m), dtype=system.dtype)
        for (a, b), value in zip(pairs, v, strict=True):
            P[a, b] = P[b, a] = value
        sym.append(P)
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal(m), rng.standard_normal(m)
    P1 = sum(w * P for w, P in zip(w1, sym, strict=True))
    P2 = sum(w * P for w, P in zip(w2, sym, strict=True))
    E = _eigenvectors(P1 @ np.linalg.pinv(P2), real=system.dtype.kind == "f")
    return E / np.linalg.norm(E, axis=0)


def _rank_one(M):
    """``u, v`` with ``M ~ u v^T`` (the leading singular pair, the scale in u)."""
    U, s, Vh = np.linalg.svd(M, full_matrices=False)
    return U[:, 0] * s[0], Vh[0]


def lifting(X, R: int, S: int):
    """The lifting start ``(A, G, F, H, B)`` of a PARATUCK-2 model with ``X_k = A diag(G[k]) F
    diag(H[k]) B^T`` (X of shape N1 x N2 x K, in X's library). See the module docstring.
    """
    xp = array_namespace(X)
    Xh = np.asarray(to_host(X))
    N1, N2, K = Xh.shape
    UA = np.linalg.svd(Xh.reshape(N1, -1), full_matrices=False)[0][:, :R]
    UB = np.linalg.svd(np.transpose(Xh, (1, 0, 2)).reshape(N2, -1), full_matrices=False)[0][:, :S]
    Y = np.einsum("ir,js,ijk->rsk", UA.conj(), UB.conj(), Xh)
    forms = _quadratic_forms(Y)
    At = _columns_from_forms(forms, R, S, 0)
    Bt = _columns_from_forms(forms, R, S, 1)
    Z = np.einsum("ri,sj,ijk->rsk", np.linalg.pinv(At), np.linalg.pinv(Bt), Y)  # F_rs G_kr H_ks
    # H from the row of Z with the most energy, then G and F row by row (rank-one fits of the quotients)
    top = int(np.argmax(np.sum(np.abs(Z) ** 2, axis=(1, 2))))
    H = Z[top].T.copy()  # K x S, with F[top] = 1 and G[:, top] = 1
    safe = np.where(np.abs(H) > 0, H, 1.0)
    G = np.empty((K, R), dtype=Z.dtype)
    F = np.empty((R, S), dtype=Z.dtype)
    for r in range(R):
        g, f = _rank_one((Z[r] / safe.T).T)  # K x S = g_r f_r^T
        G[:, r], F[r] = g, f
    A, B = UA @ At, UB @ Bt
    out = [A, G, F, H, B]
    dtype = Xh.dtype
    return [xp.asarray(np.ascontiguousarray(f, dtype=dtype), device=device(X)) for f in out]
