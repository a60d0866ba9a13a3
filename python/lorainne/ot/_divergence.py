"""The debiased Sinkhorn divergence: :func:`sinkhorn_divergence` and its result (the value and its three solves)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._sinkhorn import SinkhornProblem, SinkhornResult
from ._solve import _solve


class SinkhornDivergenceResult(NamedTuple):
    """The result of :func:`lorainne.sinkhorn_divergence`.

    Attributes
    ----------
    value : NumPy floating scalar
        ``S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2 + eps (sum(a) - sum(b))**2 / 2`` with ``OT``
        the ``dual`` of each solve (the mass term is Sejourne et al.'s for unbalanced problems;
        zero for balanced ones). In the points' floating dtype.
    xy, xx, yy : SinkhornResult
        The solves of ``OT(a, b)`` between x and y, and of the symmetric ``OT(a, a)`` on x and
        ``OT(b, b)`` on y (``g = f`` for those two).
    """

    value: Any
    xy: Any
    xx: Any
    yy: Any

    def gradient_x(self):
        """Gradient of ``value`` with respect to the points x, shape (n, d).

        ``xy.gradient_x() - xx.gradient_x()``: x enters ``OT(a, a)`` through both arguments, and by
        symmetry each contributes the same, so the half in front of it cancels (envelope theorem:
        the potentials are optimal, only the cost moves). Two kernel applications on the Rust
        path, one per solve (each with d extra columns sharing its traversal).
        """
        return self.xy.gradient_x() - self.xx.gradient_x()

    def gradient_y(self):
        """Gradient of ``value`` with respect to the points y, shape (m, d):
        ``xy.gradient_y() - yy.gradient_x()`` (see :meth:`gradient_x`).
        """
        return self.xy.gradient_y() - self.yy.gradient_x()


def _divergence(xy, xx, yy, eps: float, unbalanced: bool) -> SinkhornDivergenceResult:
    """The debiased value from the three solves (float64 arithmetic, the duals' dtype)."""
    value = float(xy.dual) - 0.5 * float(xx.dual) - 0.5 * float(yy.dual)
    if unbalanced:
        gap = float(xy.problem.a.sum()) - float(xy.problem.b.sum())
        value += 0.5 * eps * gap * gap
    return SinkhornDivergenceResult(type(xy.dual)(value), xy, xx, yy)


def sinkhorn_divergence(
    x,
    y,
    a=None,
    b=None,
    *,
    eps: float,
    reach: float | tuple[float | None, float | None] | None = None,
    log_a=None,
    log_b=None,
    method: str = "auto",
    tol: float = 1e-6,
    n_iter_max: int = 10000,
    eps_scaling: float | bool | None = None,
    kernel_tol: float | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
) -> SinkhornDivergenceResult:
    """The debiased Sinkhorn divergence between two weighted point clouds (Feydy et al. 2019).

    ``S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2`` with ``OT`` the entropic optimal transport value
    (the ``dual`` of :func:`sinkhorn`, which at the optimum equals the primal with its entropy
    term). Unlike ``OT`` itself it is zero for identical clouds, nonnegative, symmetric, and
    interpolates between the squared Wasserstein-2 distance (eps -> 0) and an energy distance (eps
    -> inf). With ``reach`` (unbalanced, module notes) the masses may differ and the mass term of
    Sejourne et al. (2019) is added, ``+ eps (sum(a) - sum(b))**2 / 2``, which keeps S nonnegative
    and zero only for equal measures. The symmetric problems ``OT(a, a)``, ``OT(b, b)`` are solved
    by the averaged update ``f <- (f + T(f)) / 2`` (one kernel application per iteration, fast
    convergence; in Rust for NumPy input).

    Parameters
    ----------
    x, y, a, b, eps, reach, log_a, log_b
        As in :func:`sinkhorn`.
    method, tol, n_iter_max, eps_scaling, kernel_tol, random_state, backend, n_threads, verbose
        As in :func:`sinkhorn`; the three solves share them (``tol`` applies to each).

    Returns
    -------
    SinkhornDivergenceResult
        ``value`` and the three :class:`SinkhornResult`: ``xy``, ``xx``, ``yy``; its
        ``gradient_x()`` / ``gradient_y()`` combine theirs.

    Raises
    ------
    ValueError, TypeError
        As :func:`sinkhorn`.

    Warns
    -----
    ConvergenceWarning
        When a solve reaches ``n_iter_max`` before ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import sinkhorn_divergence
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((200, 2))
    >>> bool(abs(sinkhorn_divergence(x, x, eps=0.01).value) < 1e-10)  # zero up to the duals' rounding
    True
    >>> s = sinkhorn_divergence(x, x + [0.1, 0.0], eps=0.01).value
    >>> bool(0.009 < s < 0.0101)  # about |t|^2 = 0.01 for a small translation t
    True
    """
    options = {
        "eps": eps,
        "reach": reach,
        "method": method,
        "tol": tol,
        "n_iter_max": n_iter_max,
        "eps_scaling": eps_scaling,
        "kernel_tol": kernel_tol,
        "random_state": random_state,
        "backend": backend,
        "n_threads": n_threads,
        "verbose": verbose,
    }
    fields, problem = _solve(x, y, a, b, log_a=log_a, log_b=log_b, name="sinkhorn_divergence", **options)
    xy = SinkhornResult(*fields, problem=SinkhornProblem(*problem))
    solved = []
    for points, w, log_w in ((x, a, log_a), (y, b, log_b)):
        fields, problem = _solve(
            points, None, w, None, log_a=log_w, symmetric=True, name="sinkhorn_divergence", **options
        )
        solved.append(SinkhornResult(*fields, problem=SinkhornProblem(*problem)))
    return _divergence(xy, solved[0], solved[1], float(xy.problem.eps), reach is not None)
