"""Jennrich's algorithm: a CP decomposition by simultaneous diagonalization of two slice mixtures."""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_random_state
from ..tensor import CPTensor


def _as_tensor3(T, name: str = "T") -> np.ndarray:
    if not isinstance(T, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(T).__name__}")
    if T.ndim != 3:
        raise ValueError(f"{name} must be 3-D, got shape {T.shape}")
    if T.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {T.shape}")
    if T.dtype.kind not in "fiu":
        raise TypeError(f"{name} has unsupported dtype {T.dtype.name}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} contains NaN or infinity")
    return T.astype(np.float64)


def jennrich(T, rank: int, *, random_state=None) -> CPTensor:
    """CP decomposition of a 3-way tensor by Jennrich's simultaneous diagonalization.

    For ``T = sum_r a_r o b_r o c_r`` with ``A`` (I x R) and ``B`` (J x R) of full column rank and
    no two columns of ``C`` parallel (so ``R <= min(I, J)``), the slice mixtures
    ``T(a) = sum_k a_k T[:, :, k] = A diag(C^T a) B^T`` for two random vectors share ``A``:
    after projecting on the top-R left/right singular spaces of the mode-1/mode-2 unfoldings
    (``U1^T T(a) U2``, R x R), the eigenvectors of ``T(a) T(b)^{-1}`` are ``U1^T A``. Then each row of
    ``A^+ T_(1)`` is the rank-one matrix ``b_r c_r^T`` (its top singular pair gives ``b_r`` and
    ``c_r``). Exact on noiseless data, a good start for ALS on noisy data (``lorainne.cp(...,
    init=jennrich(T, R).factors)``).

    Parameters
    ----------
    T : array of shape (I, J, K)
    rank : int, ``1 <= rank <= min(I, J)``
    random_state : None, int, Generator or RandomState

    Returns
    -------
    CPTensor
        Unit-norm factor columns, weights in ``weights``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import CPTensor, factor_match_score
    >>> from lorainne.moments import jennrich
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((6, 3)), rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    >>> T = np.einsum("ir,jr,kr->ijk", A, B, C)
    >>> est = jennrich(T, 3, random_state=0)
    >>> bool(factor_match_score(est, CPTensor(np.ones(3), [A, B, C])) > 0.9999)
    True
    """
    T = _as_tensor3(T)
    I, J, K = T.shape  # noqa: E741 - the usual names of the three dimensions
    rank = check_int(rank, "rank", low=1, high=min(I, J))
    rng = check_random_state(random_state)
    U1 = np.linalg.svd(T.reshape(I, J * K), full_matrices=False)[0][:, :rank]
    U2 = np.linalg.svd(T.transpose(1, 0, 2).reshape(J, I * K), full_matrices=False)[0][:, :rank]
    core = np.einsum("ia,ijk,jb->abk", U1, T, U2)
    a, b = rng.standard_normal(K), rng.standard_normal(K)
    Ma, Mb = core @ a, core @ b
    try:
        evals, evecs = np.linalg.eig(Ma @ np.linalg.inv(Mb))
    except np.linalg.LinAlgError as err:
        raise ValueError(f"T has no rank-{rank} structure Jennrich can use (singular slice mixture)") from err
    A = U1 @ evecs.real
    A /= np.linalg.norm(A, axis=0)
    BC = np.linalg.pinv(A) @ T.reshape(I, J * K)
    B, C, w = np.empty((J, rank)), np.empty((K, rank)), np.empty(rank)
    for r in range(rank):
        u, s, vt = np.linalg.svd(BC[r].reshape(J, K), full_matrices=False)
        B[:, r], C[:, r], w[r] = u[:, 0], vt[0], s[0]
    return CPTensor(w, [A, B, C])
