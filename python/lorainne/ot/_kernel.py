"""``GaussianKernel``: the Gibbs kernel as a reusable operator (hierarchical in Rust, or dense)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from .._backend import core, resolve
from .._exact_scaling import times_power_of_two
from .._validation import as_float_array, check_int, check_n_threads, check_option, check_tol
from ._checks import _check_eps, _points
from ._scale import _scale_exponent
from ._xp import _lse, _safe_log, _sq_dists

KERNEL_METHODS = ("hierarchical", "dense")
DEFAULT_LEAF_SIZE = 32
#: ``GaussianKernel.log_matvec`` shifts ``log_v`` by its maximum when that exceeds this in magnitude.
LOG_SHIFT_FROM = 1e3


class GaussianKernel:
    """The Gibbs kernel ``K_ij = exp(-|x_i - y_j|^2 / eps)`` as a reusable operator.

    ``method="hierarchical"`` (NumPy input, Rust) builds a k-d tree on each point set once and
    applies K through near-field dense blocks, far-field blocks with an entrywise *relative*
    error bound and provably negligible (pruned) blocks: ``log_matvec`` has absolute error
    <= ``tol`` and ``matvec`` (v >= 0) relative error <= ``tol``, entry by entry, however many
    decades ``v`` spans. Memory is O(n + m); nothing of size n x m is stored.
    ``method="dense"`` evaluates every entry (any array-API library; O(n m) memory per call).

    Parameters
    ----------
    x : array of shape (n, d)
    y : array of shape (m, d)
    eps : float
        Kernel width (absolute), > 0.
    method : {"hierarchical", "dense"}
    tol : float
        Relative error bound of the hierarchical kernel, in (0, 1).
    leaf_size : int, optional
        Points per k-d tree leaf (default 32).
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores). Results do not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import GaussianKernel
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((2000, 2)), rng.random((1500, 2))
    >>> K = GaussianKernel(x, y, 0.01, tol=1e-6)
    >>> v = rng.random(1500)
    >>> exact = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 0.01) @ v
    >>> float(np.max(np.abs(K.matvec(v) / exact - 1))) <= 1e-6
    True
    >>> K.stats()["memory_bytes"] < 2000 * 1500 * 8 / 20
    True
    """

    def __init__(
        self,
        x,
        y,
        eps,
        *,
        method: str = "hierarchical",
        tol: float = 1e-6,
        leaf_size: int | None = None,
        n_threads: int | None = None,
    ):
        x = _points(x, "x")
        y = _points(y, "y")
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                "x and y must have the same dimension d, got x of "
                f"shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
            )
        self.eps = _check_eps(eps)
        self.method = check_option(method, "method", KERNEL_METHODS)
        tol = check_tol(tol)
        self.tol = 1e-6 if tol is None else tol
        self.leaf_size = DEFAULT_LEAF_SIZE if leaf_size is None else check_int(leaf_size, "leaf_size", low=1)
        self.n_threads = check_n_threads(n_threads)
        self.shape = (x.shape[0], y.shape[0])
        self.dtype = x.dtype
        # the kernel of points times 2**k with eps times 4**k is the same (exact): unit spread
        k = _scale_exponent(x, y, self.eps, with_cost=False)
        self._k, self._eps_k = k, math.ldexp(self.eps, 2 * k)
        self._x, self._y = x, y
        self._rust = None
        if self.method == "hierarchical":
            if resolve(x, y) != "rust":
                raise ValueError(
                    "method='hierarchical' needs NumPy input and the Rust "
                    "core; use method='dense' for other array libraries"
                )
            self._rust = core().HierarchicalKernel(
                times_power_of_two(np.ascontiguousarray(x, dtype=np.float64), k),
                times_power_of_two(np.ascontiguousarray(y, dtype=np.float64), k),
                self._eps_k,
                self.tol,
                self.leaf_size,
            )

    def __repr__(self) -> str:
        return f"GaussianKernel(shape={self.shape}, eps={self.eps}, method={self.method!r}, tol={self.tol})"

    def _check_log(self, log_v, size: int, name: str):
        xp = array_namespace(log_v)
        log_v = as_float_array(log_v, name, ndim=1, finite=False)
        if log_v.shape[0] != size:
            raise ValueError(f"{name} must have {size} entries, got shape {tuple(log_v.shape)}")
        if bool(xp.any(xp.isnan(log_v))) or bool(xp.any(log_v == xp.inf)):
            raise ValueError(f"{name} contains NaN or +infinity")
        return log_v

    def _log_apply(self, log_v, transpose: bool, name: str):
        size = self.shape[0] if transpose else self.shape[1]
        log_v = self._check_log(log_v, size, name)
        xp = array_namespace(log_v)
        # log sum_j exp(log_v_j - C_ij/eps) = top + the same of log_v - top: the kernel sees log_v <= 0
        # (its bounds lose everything to rounding at |log_v| ~ 1e20), added back at the end
        top = float(xp.max(log_v))
        top = top if (math.isfinite(top) and abs(top) > LOG_SHIFT_FROM) else 0.0
        if self._rust is not None:
            lv = np.ascontiguousarray(log_v, dtype=np.float64)
            out = self._rust.log_apply(lv - top if top else lv, transpose, self.n_threads)
            return (out + top if top else out).astype(log_v.dtype, copy=False)
        x = times_power_of_two(xp.astype(self._x, xp.float64), self._k)
        y = times_power_of_two(xp.astype(self._y, xp.float64), self._k)
        C = _sq_dists(xp, x, y)
        lv = xp.astype(log_v, xp.float64) - top
        if transpose:
            out = _lse(xp, lv[:, None] - C / self._eps_k, axis=0)
        else:
            out = _lse(xp, lv[None, :] - C / self._eps_k, axis=1)
        return xp.astype(out + top, log_v.dtype)

    def log_matvec(self, log_v):
        """``log sum_j exp(log_v_j - C_ij / eps)`` for each i; absolute error <= tol. -inf allowed."""
        return self._log_apply(log_v, False, "log_v")

    def log_rmatvec(self, log_u):
        """``log sum_i exp(log_u_i - C_ij / eps)`` for each j (the transpose)."""
        return self._log_apply(log_u, True, "log_u")

    def _apply(self, v, transpose: bool, name: str):
        size = self.shape[0] if transpose else self.shape[1]
        v = as_float_array(v, name, ndim=1)
        xp = array_namespace(v)
        if v.shape[0] != size:
            raise ValueError(f"{name} must have {size} entries, got shape {tuple(v.shape)}")
        if bool(xp.any(v < 0)):
            raise ValueError(
                f"{name} must be nonnegative (use log_matvec with signs "
                f"handled separately), got min {float(xp.min(v))!r}"
            )
        return xp.exp(self._log_apply(_safe_log(xp, v), transpose, name))

    def matvec(self, v):
        """``K @ v`` for v >= 0, entrywise relative error <= tol."""
        return self._apply(v, False, "v")

    def rmatvec(self, u):
        """``K.T @ u`` for u >= 0, entrywise relative error <= tol."""
        return self._apply(u, True, "u")

    def stats(self) -> dict:
        """Memory and block statistics: ``memory_bytes`` (held by the operator),
        ``dense_bytes`` (what the n x m kernel would take), tree sizes, and the block counts of
        the last application (near/far/pruned blocks, dense entries, far-field terms, max order;
        far blocks by path: ``far_cached`` from the monomial caches, ``far_rows`` building their rows,
        ``far_general`` on the scalar path, with ``far_general_points``; ``cache_order``).
        """
        n, m = self.shape
        info: dict[str, Any] = {"method": self.method, "shape": self.shape, "dense_bytes": 8 * n * m}
        if self._rust is None:
            info["memory_bytes"] = 8 * n * m  # the dense path forms C on each call
            return info
        info["memory_bytes"] = int(self._rust.memory_bytes())
        (nx, lx), (ny, ly) = self._rust.tree_sizes()
        info.update({"x_tree_nodes": nx, "x_tree_leaves": lx, "y_tree_nodes": ny, "y_tree_leaves": ly})
        info.update(self._rust.stats().to_dict())
        return info
