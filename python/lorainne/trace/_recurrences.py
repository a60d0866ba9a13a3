"""The Lanczos and Chebyshev recurrences behind :func:`trace_function`, :func:`trace_parametric`
and :func:`spectral_density`: the xp (array-API) reference over products with A, and
:class:`_Recurrences`, which dispatches to the Rust kernels (GIL released) when A is an explicit
NumPy matrix (dense or CSR). Also the Gauss quadrature of a Lanczos run and Chebyshev
interpolation coefficients.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from .._backend import core, is_scipy_sparse, numpy_dtype, to_host
from .._operators import MatrixOperator
from ._common import _backend_for, _device_of, _eps, _f64, _Products


def _lanczos_xp(matmat, V0, n_steps: int, eps: float):
    """Independent Lanczos runs, one per column of V0 (unit columns), advanced together in blocks,
    with full reorthogonalization (twice) of each run against its own basis.

    Returns ``(alpha, beta, length)`` as host float64 arrays: alpha (s, n_steps), beta
    (s, n_steps) (beta[:, j] couples steps j and j + 1) and the number of valid steps of each run
    (a run whose Krylov space is exhausted stops there; its later columns are zero).
    """
    from array_api_compat import array_namespace

    xp = array_namespace(V0)
    n, s = V0.shape
    dev = _device_of(V0)
    basis = xp.zeros((s, n_steps, n), dtype=V0.dtype, device=dev)  # run r's basis: basis[r, :j + 1, :]
    alphas, betas = [], []
    v, v_prev, beta_prev = V0, xp.zeros_like(V0), xp.zeros((s,), dtype=V0.dtype, device=dev)
    scale = xp.zeros((s,), dtype=V0.dtype, device=dev)
    active = xp.ones((s,), dtype=V0.dtype, device=dev)
    for j in range(n_steps):
        basis[:, j, :] = v.T
        w = matmat(v)
        alpha = xp.sum(v * w, axis=0)
        w = w - alpha * v - beta_prev * v_prev
        Vj = basis[:, : j + 1, :]  # (s, j + 1, n)
        for _ in range(2):  # full reorthogonalization, twice is enough; batched matmuls per run
            coefficients = Vj @ w.T[:, :, None]  # (s, j + 1, 1)
            w = w - (xp.matrix_transpose(Vj) @ coefficients)[:, :, 0].T
            alpha = alpha + coefficients[:, j, 0]
        beta = xp.linalg.vector_norm(w, axis=0)
        scale = xp.maximum(scale, xp.maximum(xp.abs(alpha), beta_prev))
        alive = xp.astype(beta > eps**0.75 * scale, V0.dtype) * active
        alphas.append(alpha * active)
        betas.append(beta * alive)
        safe = xp.where(alive > 0, beta, xp.ones_like(beta))
        v_prev, v = v, w / safe * alive
        beta_prev, active = beta * alive, alive
    alpha = to_host(xp.stack(alphas, axis=1), np.float64)
    beta = to_host(xp.stack(betas, axis=1), np.float64)
    length = np.full(s, n_steps, dtype=np.int64)
    for r in range(s):  # a run stops after its first vanishing beta
        zero = np.flatnonzero(beta[r, : n_steps - 1] == 0.0)
        if zero.size:
            length[r] = zero[0] + 1
    return alpha, beta, length


def _gauss_quadrature(alpha, beta, length):
    """Nodes and weights of the Gauss quadrature of each Lanczos run: the eigenvalues of the
    tridiagonal T and the squared first components of its eigenvectors (weights sum to 1).
    """
    s, k = alpha.shape
    nodes = np.zeros((s, k))
    weights = np.zeros((s, k))
    for r in range(s):
        size = int(length[r])
        T = np.diag(alpha[r, :size]) + np.diag(beta[r, : size - 1], 1) + np.diag(beta[r, : size - 1], -1)
        theta, U = np.linalg.eigh(T)
        nodes[r, :size], weights[r, :size] = theta, U[0, :] ** 2
        nodes[r, size:] = theta[-1]  # padding with zero weight
    return nodes, weights


def _chebyshev_moments_xp(matmat, X, center: float, half_width: float, n_steps: int, full: bool):
    """Chebyshev moments of A mapped to [-1, 1] (A_hat = (A - center) / half_width) from
    ``n_steps`` block products with the three-term recurrence V_{k+1} = 2 A_hat V_k - V_{k-1}.

    With the doubling identities T_{2k} = 2 T_k^2 - T_0 and T_{2k+1} = 2 T_{k+1} T_k - T_1,
    returns the moments mu_d = X^T T_d(A_hat) X for d = 0 .. 2 n_steps: an array
    (2 n_steps + 1, s, s) when ``full``, else its diagonals (2 n_steps + 1, s). float64.
    """
    from array_api_compat import array_namespace

    xp = array_namespace(X)

    def gram(P, R):
        P64, R64 = _f64(xp, P), _f64(xp, R)
        return P64.T @ R64 if full else xp.sum(P64 * R64, axis=0)

    def step(V):
        return (matmat(V) - center * V) / half_width

    moments = [None] * (2 * n_steps + 1)
    V_prev, V = X, step(X)
    moments[0] = gram(X, X)
    moments[1] = gram(X, V)
    for k in range(1, n_steps + 1):
        moments[2 * k] = 2 * gram(V, V) - moments[0]
        if k == n_steps:
            break
        V_next = 2 * step(V) - V_prev
        moments[2 * k + 1] = 2 * gram(V_next, V) - moments[1]
        V_prev, V = V, V_next
    return xp.stack(moments, axis=0)


class _Recurrences:
    """Lanczos and Chebyshev recurrences on A: in Rust when A is an explicit NumPy matrix
    (dense or CSR), else the xp reference over ``op.matmat``.
    """

    def __init__(self, A, op: MatrixOperator, backend: str, n_threads):
        explicit = (op.dense is not None and isinstance(op.dense, np.ndarray)) or is_scipy_sparse(A)
        self.op, self.n_threads = op, n_threads
        self.backend = _backend_for(A, op, backend, rust_kernel=explicit and _has_rust_trace())
        self.products = _Products(op)
        self.csr = None
        if self.backend == "rust":
            if op.dense is not None:
                self.dense = np.ascontiguousarray(op.dense)
            else:
                self.dense = None
                csr = A.tocsr().astype(numpy_dtype(op.dtype))
                csr.sum_duplicates()
                self.csr = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data, csr.shape[1])

    def lanczos(self, V0, n_steps: int):
        if self.backend != "rust":
            return _lanczos_xp(self.products, V0, n_steps, _eps(self.op))
        self.products.used += V0.shape[1] * n_steps
        V0 = np.ascontiguousarray(V0)
        if self.dense is not None:
            alpha, beta = core().trace_lanczos(self.dense, V0, n_steps, self.n_threads)
        else:
            alpha, beta = core().trace_lanczos_csr(*self.csr, V0, n_steps, self.n_threads)
        s = V0.shape[1]
        alpha, beta = np.reshape(alpha, (s, n_steps)), np.reshape(beta, (s, n_steps))
        length = np.full(s, n_steps, dtype=np.int64)
        for r in range(s):
            zero = np.flatnonzero(beta[r, : n_steps - 1] == 0.0)
            if zero.size:
                length[r] = zero[0] + 1
        return alpha, beta, length

    def chebyshev(self, X, center: float, half_width: float, n_steps: int, full: bool):
        if self.backend != "rust":
            return _chebyshev_moments_xp(self.products, X, center, half_width, n_steps, full)
        self.products.used += X.shape[1] * n_steps
        X = np.ascontiguousarray(X)
        if self.dense is not None:
            out = core().trace_chebyshev(self.dense, X, center, half_width, n_steps, full, self.n_threads)
        else:
            out = core().trace_chebyshev_csr(*self.csr, X, center, half_width, n_steps, full, self.n_threads)
        s = X.shape[1]
        return np.reshape(out, (2 * n_steps + 1, s, s) if full else (2 * n_steps + 1, s))


def _has_rust_trace() -> bool:
    try:
        return hasattr(core(), "trace_lanczos")
    except RuntimeError:
        return False


def _chebyshev_coefficients(
    f_on_nodes: Callable[[np.ndarray], np.ndarray], degree: int, lo: float, hi: float
) -> np.ndarray:
    """Chebyshev interpolation coefficients of f on [lo, hi] (degree + 1 of them, on the last
    axis), from f at the Chebyshev points of the first kind (a discrete cosine transform).
    """
    N = degree + 1
    j = np.arange(N)
    theta = np.pi * (j + 0.5) / N
    x = np.cos(theta)
    values = np.asarray(f_on_nodes((hi - lo) / 2 * x + (hi + lo) / 2), dtype=np.float64)
    # c_k = (2 / N) sum_j f(x_j) cos(k theta_j): SciPy's DCT-II is 2 sum_j v_j cos(k theta_j), in
    # O(N log N) time and O(N) memory per row (no N x N matrix of cosines).
    c = scipy.fft.dct(values, type=2, axis=-1) / N
    c[..., 0] /= 2
    return c
