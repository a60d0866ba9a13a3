"""Products with a solved entropic plan without forming it: P v, P^T u, the barycentric map, the
gradients of the dual with respect to the points, and the sparse plan of the near field.

Everything is computed from the potentials through the kernel's log-domain apply,
``log sum_j exp(log_w_j - C_ij / eps)``, with ``log_w = log b + g / eps`` (or, transposed,
``log a + f / eps``):

* ``(P v)_i = a_i exp(f_i / eps) sum_j b_j exp((g_j - C_ij) / eps) v_j``. A column of ``v`` with
  one sign is one kernel application with ``log_w + log|v|``: relative error <= the kernel's tol
  entry by entry, however many decades ``v`` spans. A signed column is split into its positive
  and negative parts (two applications): each part keeps that relative accuracy, so the error is
  <= tol (P |v|)_i; the cancellation between the parts is inherent to signed data. Splitting beats
  shifting by the minimum, whose error tol (P (v - min v) + |min v| P 1)_i is never smaller.
* The barycentric map ``T_i = sum_j P_ij y_j / (P 1)_i`` needs no ``a`` nor ``f`` (they cancel):
  the coordinates are mapped onto [0, 1] by their minimum and spread (the plan does not change),
  and the kernel applies ``P 1`` and the d coordinate columns in ONE traversal on the Rust path
  (the same blocks; each far-field block's moments for all columns in one pass over its source
  node): one application instead of d + 1. The error is <= 2 tol times the spread of ``y``, not
  its distance from the origin.
* The gradient of the dual with respect to ``x`` is ``2 (P 1)_i (x_i - T_i)``: one kernel
  application (with d extra columns), O(n + m) memory on the hierarchical path.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, to_host
from .._exact_scaling import times_power_of_two
from .._validation import as_float_array, check_int, check_real
from ._kernel import DEFAULT_LEAF_SIZE, GaussianKernel
from ._scale import _scale_exponent
from ._xp import _safe_log

#: Rows of the plan processed at once by ``plan_sparse`` at most ...
SPARSE_ROW_BLOCK = 4096
#: ... and fewer when their candidates would exceed this many (about 60 bytes each while in flight).
SPARSE_CANDIDATES = 2**23
#: ``plan_sparse`` groups the target points in at most this many bands of ``log b + g / eps``.
SPARSE_MAX_BANDS = 64


class _LogKernel:
    """``log sum_j exp(log_w_j - C_ij / eps)`` (or the transpose) over a problem's points: the Rust
    kernel (hierarchical, or exact on the same trees for ``method="dense"``: O(n + m) memory either
    way) for NumPy problems, the dense array-API kernel otherwise.
    """

    def __init__(self, problem):
        self.problem = problem
        x, y, eps = problem.x, problem.y, problem.eps
        self.rust = problem.backend == "rust"
        if self.rust:
            k = _scale_exponent(x, y, eps, with_cost=False)  # exact: C / eps does not change
            self._kernel = core().HierarchicalKernel(
                times_power_of_two(np.ascontiguousarray(x, dtype=np.float64), k),
                times_power_of_two(np.ascontiguousarray(y, dtype=np.float64), k),
                math.ldexp(eps, 2 * k),
                problem.kernel_tol,
                DEFAULT_LEAF_SIZE,
                problem.method == "dense",
            )
        else:
            self._kernel = GaussianKernel(x, y, eps, method="dense")
        self.applications = 0

    def __call__(self, log_w, transpose: bool):
        """The log-domain apply; ``log_w`` float64 in the problem's library, -inf allowed."""
        self.applications += 1
        if not self.rust:
            K = self._kernel
            return K.log_rmatvec(log_w) if transpose else K.log_matvec(log_w)
        # the kernel sees log_w <= 0 (its bounds are absolute in the log domain), shifted back after
        top = float(np.max(log_w))
        top = top if math.isfinite(top) else 0.0
        out = self._kernel.log_apply(np.ascontiguousarray(log_w - top), transpose, self.problem.n_threads)
        return out + top

    def columns(self, log_w, V, transpose: bool):
        """``(log sum_j exp(log_w_j - C_ij / eps), R)`` with ``R[i, c] = sum_j exp(log_w_j - C_ij /
        eps) V[j, c] / sum_j exp(log_w_j - C_ij / eps)`` for ``V`` (m, k) with entries in [0, 1]:
        one application on the Rust path (the columns share its traversal and far-field passes),
        1 + k on the dense array-API path.
        """
        self.applications += 1
        if not self.rust:
            xp = array_namespace(log_w)
            log_total = self(log_w, transpose)
            self.applications -= 1
            ratios = [xp.exp(self(log_w + _safe_log(xp, V[:, c]), transpose) - log_total) for c in range(V.shape[1])]
            return log_total, xp.stack(ratios, axis=1)
        top = float(np.max(log_w))
        top = top if math.isfinite(top) else 0.0
        out, ratios = self._kernel.log_apply_columns(
            np.ascontiguousarray(log_w - top), np.ascontiguousarray(V.T), transpose, self.problem.n_threads
        )
        return out + top, ratios


def _require_problem(result):
    if result.problem is None:
        raise ValueError(
            "this SinkhornResult carries no problem (it was built by hand); plan products need the result of sinkhorn()"
        )
    return result.problem


def _sides(result, transpose: bool):
    """(xp, source points, source weights, source potential, target points, target weights,
    target potential) as float64 arrays of the result's library, P read from the source side.
    """
    problem = _require_problem(result)
    xp = array_namespace(result.f)
    dev = device(result.f)
    a = xp.asarray(problem.a, device=dev)
    b = xp.asarray(problem.b, device=dev)
    f, g = xp.astype(result.f, xp.float64), xp.astype(result.g, xp.float64)
    x, y = xp.astype(problem.x, xp.float64), xp.astype(problem.y, xp.float64)
    if transpose:
        return xp, y, b, g, x, a, f
    return xp, x, a, f, y, b, g


def _log_target_weights(xp, w, pot, eps):
    return _safe_log(xp, w) + pot / eps


def plan_apply(result, v, transpose: bool, name: str):
    """``P v`` (``transpose``: ``P^T v``) for v of shape (m,) or (m, k); see the module notes."""
    xp, _, a, f, _, b, g = _sides(result, transpose)
    problem = result.problem
    size = b.shape[0]
    if problem.backend == "rust":
        v = np.asarray(to_host(as_float_array(v, name)))
    v = as_float_array(v, name)
    if v.ndim not in (1, 2) or v.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},) or ({size}, k), got shape {tuple(v.shape)}")
    vector = v.ndim == 1
    V = xp.astype(xp.reshape(v, (size, 1)) if vector else v, xp.float64)
    kernel = _LogKernel(problem)
    log_w = _log_target_weights(xp, b, g, problem.eps)
    log_left = _safe_log(xp, a) + f / problem.eps
    columns = []
    for c in range(V.shape[1]):
        col = V[:, c]
        out = xp.zeros(a.shape[0], dtype=xp.float64, device=device(a))
        for sign in (1.0, -1.0):
            part = col * sign
            if bool(xp.any(part > 0)):
                logs = kernel(log_w + _safe_log(xp, xp.where(part > 0, part, xp.zeros_like(part))), transpose)
                out = out + sign * xp.exp(log_left + logs)
        columns.append(out)
    out = columns[0] if vector else xp.stack(columns, axis=1)
    return xp.astype(out, result.f.dtype)


def map_and_mass(result, transpose: bool, kernel: _LogKernel | None = None):
    """The barycentric map of the source points (n, d) and the plan's row masses ``P 1`` (n,)."""
    xp, _, a, f, y, b, g = _sides(result, transpose)
    problem = result.problem
    kernel = _LogKernel(problem) if kernel is None else kernel
    log_w = _log_target_weights(xp, b, g, problem.eps)
    # the coordinates mapped onto [0, 1] (a translation and a scaling: the plan does not change)
    low = xp.min(y, axis=0)
    spread = xp.max(y, axis=0) - low
    spread = xp.where(spread > 0, spread, xp.ones_like(spread))
    V = xp.clip((y - low) / spread, 0.0, 1.0)
    log_total, ratios = kernel.columns(log_w, V, transpose)
    mass = xp.exp(_safe_log(xp, a) + f / problem.eps + log_total)
    return low + ratios * spread, mass


def barycentric_map(result):
    """``T_i = sum_j P_ij y_j / (P 1)_i`` for every source point, shape (n, d)."""
    T, _ = map_and_mass(result, False)
    return xp_cast(T, result.f)


def gradient(result, transpose: bool):
    """``2 sum_j P_ij (x_i - y_j) = 2 (P 1)_i (x_i - T_i)`` (transposed: the same for y)."""
    xp, x, *_ = _sides(result, transpose)
    T, mass = map_and_mass(result, transpose)
    return xp_cast(2.0 * mass[:, None] * (x - T), result.f)


def xp_cast(arr, like):
    xp = array_namespace(like)
    return xp.astype(arr, like.dtype)


def plan_sparse(result, threshold, k):
    """The near field of the plan as a SciPy CSR matrix (see ``SinkhornResult.plan_sparse``)."""
    import scipy.sparse
    from scipy.spatial import cKDTree

    problem = _require_problem(result)
    threshold = check_real(threshold, "threshold", low=0.0, high=1.0, low_open=True, high_open=True)
    if k is not None:
        k = check_int(k, "k", low=1)
    host = _HostPlan(result)
    kernel = _LogKernel(problem)
    log_w = host.log_b + host.g / host.eps
    log_total = np.asarray(to_host(kernel(log_w if host.rust else _as(result.f, log_w), False)), dtype=np.float64)
    n, m = host.x.shape[0], host.y.shape[0]
    # entries outside the candidate balls carry < threshold/4 of each row together: each < row/(4m/threshold)
    floor = log_total + math.log(threshold / (4.0 * m))
    band_trees = [(idx, top, cKDTree(host.y[idx])) for idx, top in _bands(log_w, float(np.min(floor)))]
    order = cKDTree(host.x).indices  # rows in tree order: each block of rows is spatially compact
    step = _block_rows(host, band_trees, floor)
    rows, cols, vals = [], [], []
    for start in range(0, n, step):
        block = order[start : start + step]
        local, c = _candidates(host, band_trees, floor[block], block, cKDTree)
        if local.size == 0:
            continue
        r = block[local]
        logterm = log_w[c] - ((host.x[r] - host.y[c]) ** 2).sum(axis=1) / host.eps
        keep = _keep(local, logterm - log_total[r], block.size, threshold, k)
        r, c, logterm = r[keep], c[keep], logterm[keep]
        value = np.exp(host.log_a[r] + host.f[r] / host.eps + logterm)
        nonzero = value > 0
        rows.append(r[nonzero])
        cols.append(c[nonzero])
        vals.append(value[nonzero])
    if rows:
        rows_all, cols_all, vals_all = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        rows_all = cols_all = np.zeros(0, dtype=np.int64)
        vals_all = np.zeros(0)
    P = scipy.sparse.csr_matrix((vals_all, (rows_all, cols_all)), shape=(n, m))
    P.sort_indices()
    return P


def _as(like, arr):
    xp = array_namespace(like)
    return xp.asarray(arr, device=device(like))


class _HostPlan:
    """The problem's data as float64 NumPy arrays (plan_sparse works on the host)."""

    def __init__(self, result):
        problem = result.problem
        self.rust = problem.backend == "rust"
        self.x = np.ascontiguousarray(to_host(problem.x), dtype=np.float64)
        self.y = np.ascontiguousarray(to_host(problem.y), dtype=np.float64)
        self.f = np.asarray(to_host(result.f), dtype=np.float64)
        self.g = np.asarray(to_host(result.g), dtype=np.float64)
        with np.errstate(divide="ignore"):
            self.log_a, self.log_b = np.log(problem.a), np.log(problem.b)
        self.eps = problem.eps


def _bands(log_w, floor: float):
    """Target indices grouped by ``log_w`` in bands of width <= max(1, range / SPARSE_MAX_BANDS),
    each with its maximum; targets below ``floor`` (negligible for every row) are left out.
    """
    useful = np.flatnonzero(log_w >= floor)
    if useful.size == 0:
        return []
    lw = log_w[useful]
    top, low = float(lw.max()), float(lw.min())
    count = max(1, min(SPARSE_MAX_BANDS, math.ceil(top - low)))
    edges = np.minimum(((lw - low) / max(top - low, 1e-300) * count).astype(np.int64), count - 1)
    out = []
    for band in range(count):
        idx = useful[edges == band]
        if idx.size:
            out.append((idx, float(log_w[idx].max())))
    return out


def _block_rows(host, band_trees, floor) -> int:
    """Rows per block so that a block's candidates stay near ``SPARSE_CANDIDATES`` (counted
    exactly on a sample of 64 rows: the count per row is what the near field is).
    """
    sample = np.random.default_rng(0).choice(len(floor), size=min(64, len(floor)), replace=False)
    per_row = 1.0
    for _, top, band_tree in band_trees:
        reach = top - floor[sample]
        live = reach >= 0
        if np.any(live):
            radius = np.sqrt(host.eps * reach[live])
            per_row += float(band_tree.query_ball_point(host.x[sample][live], radius, return_length=True).sum()) / len(
                sample
            )
    return int(min(SPARSE_ROW_BLOCK, max(1, SPARSE_CANDIDATES // (2 * per_row))))


def _candidates(host, band_trees, floor, block, tree_class):
    """(positions in ``block``, target indices) of the entries whose upper bound
    ``max_band(log_w) - C_ij / eps`` reaches the row's ``floor``: per band, one dual-tree search
    of the block's largest radius (in C), then each row's own radius.
    """
    rows, cols = [], []
    tree = None
    for idx, top, band_tree in band_trees:
        reach = top - floor
        if float(reach.max()) < 0.0:
            continue
        if tree is None:
            tree = tree_class(host.x[block])
        found = tree.sparse_distance_matrix(band_tree, math.sqrt(host.eps * float(reach.max())), output_type="ndarray")
        near = found["v"] ** 2 <= host.eps * reach[found["i"]]
        rows.append(found["i"][near])
        cols.append(idx[found["j"][near]])
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _keep(rows, log_rel, n_rows: int, threshold: float, k):
    """Per row, the largest entries until all but threshold/2 of the candidates' mass is kept (at
    most ``k``): a mask over the candidates.
    """
    rel = np.exp(log_rel)
    # by row, then by decreasing mass: one float key (1 / (1 + rel) in (1/2, 1] orders masses down
    # to ~1e-12 of the row; below that the order is arbitrary, which only makes the kept set larger)
    order = np.argsort(rows + 1.0 / (1.0 + rel))
    rows_sorted, rel_sorted = rows[order], rel[order]
    total = np.bincount(rows_sorted, weights=rel_sorted, minlength=n_rows)
    counts = np.bincount(rows_sorted, minlength=n_rows)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    before = np.cumsum(rel_sorted) - rel_sorted  # mass before each entry, all rows together
    before -= before[starts[rows_sorted]]  # ... and within its row
    keep_sorted = before < (1.0 - threshold / 2.0) * total[rows_sorted]
    if k is not None:
        rank = np.arange(rows_sorted.size) - starts[rows_sorted]
        keep_sorted &= rank < k
    keep = np.zeros(rows.size, dtype=bool)
    keep[order] = keep_sorted
    return keep
