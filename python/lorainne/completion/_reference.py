"""NumPy reference of one alternating-minimization half-step (the Rust kernel's specification).

Row by row, the same arithmetic as ``rust/core/src/completion/solve.rs``: exact ridge solves of the
k x k normal equations, or preconditioned CG from the warm start with the shared preconditioner
``P_i = (|Omega_i| / n) Q diag(lam) Q^T + reg_i I``.
"""

from __future__ import annotations

import numpy as np


def solve_rows_reference(
    indptr, indices, data, factor, x0, reg, reg_under, solver, cg_max_iter, cg_tol, q, lam, residual=False
):
    """Returns ``(x, cg_iterations, underdetermined, empty, sq_residual)`` like
    ``_core.completion_solve_rows`` (``sq_residual``: the new rows' squared residual over their
    observed entries when ``residual``, else 0).
    """
    m, k = x0.shape
    n = factor.shape[0]
    x = np.array(x0, dtype=np.float64, copy=True)
    total, under, empty = 0, 0, 0
    for i in range(m):
        a, b = int(indptr[i]), int(indptr[i + 1])
        if a == b:
            x[i] = 0.0
            empty += 1
            continue
        F = factor[indices[a:b]]
        reg_i = reg
        if b - a < k:
            under += 1
            reg_i = max(reg, reg_under)
        rhs = F.T @ data[a:b]
        if solver == "exact":
            G = F.T @ F + reg_i * np.eye(k)
            try:
                x[i] = np.linalg.solve(G, rhs)
            except np.linalg.LinAlgError:
                x[i] = np.linalg.lstsq(G, rhs, rcond=None)[0]
            continue
        c = (b - a) / n
        denom = c * lam + reg_i
        denom = np.where(denom > 0, denom, 1.0)

        def prec(r):
            return q @ ((q.T @ r) / denom)  # noqa: B023 - used inside this iteration only

        xi = x[i]
        r = rhs - (F.T @ (F @ xi) + reg_i * xi)
        target = cg_tol * np.linalg.norm(rhs)
        if np.linalg.norm(r) <= target:
            continue
        z = prec(r)
        p = z.copy()
        rz = r @ z
        it = 0
        while it < cg_max_iter:
            ap = F.T @ (F @ p) + reg_i * p
            pap = p @ ap
            if not (pap > 0 and rz > 0):
                break
            alpha = rz / pap
            xi = xi + alpha * p
            r = r - alpha * ap
            it += 1
            if np.linalg.norm(r) <= target:
                break
            z = prec(r)
            rz_new = r @ z
            p = z + (rz_new / rz) * p
            rz = rz_new
        x[i] = xi
        total += it
    sq = observed_error_reference(indptr, indices, data, x, factor) if residual else 0.0
    return x, total, under, empty, sq


def observed_error_reference(indptr, indices, data, u, v):
    rows = np.repeat(np.arange(u.shape[0]), np.diff(indptr))
    pred = np.einsum("ij,ij->i", u[rows], v[indices])
    return float(np.sum((data - pred) ** 2))
