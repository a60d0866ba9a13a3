"""Decoupling multivariate functions through a CP decomposition of stacked Jacobians
(Dreesen, Ishteva, Schoukens 2015): ``f(u) ~ W g(V^T u) + c`` with univariate polynomial branches g_i.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_int, check_random_state
from .._warnings import ConvergenceWarning
from ._cp import cp
from ._cplx import check_data


class DecoupledFunction:
    """``f(u) = W g(V^T u) + offset`` with ``g_i(z) = sum_d coefficients[i, d] z^d``.

    Attributes: ``W`` (m x r), ``V`` (n x r, unit-norm columns), ``coefficients`` (r x (degree+1),
    ``g_i(0) = 0``: the constants are in ``offset``), ``offset`` (m,; zeros when only Jacobians
    were given), ``n_iter``, ``errors`` (relative errors of the CP of the Jacobian tensor),
    ``converged``, ``fit_error`` (relative error of the polynomial fits of the branch derivatives).
    Call it on ``u`` of shape (n,) or (N, n); :meth:`jacobian` gives ``W diag(g'(V^T u)) V^T``.
    """

    def __init__(self, W, V, coefficients, offset, *, n_iter, errors, converged, fit_error):
        self.W, self.V, self.coefficients, self.offset = W, V, coefficients, offset
        self.n_iter, self.errors, self.converged = int(n_iter), [float(e) for e in errors], bool(converged)
        self.fit_error = float(fit_error)

    @property
    def rank(self) -> int:
        return self.W.shape[1]

    def branches(self, z):
        """``g_i(z[:, i])`` for ``z`` of shape (N, r)."""
        powers = z[:, :, None] ** np.arange(self.coefficients.shape[1])[None, None, :]
        return np.sum(powers * self.coefficients[None, :, :], axis=2)

    def _inputs(self, u):
        u = np.asarray(u, dtype=np.result_type(self.V.dtype, np.float64) if np.iscomplexobj(u) else self.V.dtype)
        single = u.ndim == 1
        u = np.atleast_2d(u)
        if u.shape[1] != self.V.shape[0]:
            raise ValueError(f"u must have {self.V.shape[0]} entries per point, got shape {u.shape}")
        return u, single

    def __call__(self, u):
        u, single = self._inputs(u)
        out = self.branches(u @ self.V) @ self.W.T + self.offset[None, :]
        return out[0] if single else out

    def jacobian(self, u):
        u, single = self._inputs(u)
        z = u @ self.V
        d = np.arange(1, self.coefficients.shape[1])
        derivative = np.sum(d * z[:, :, None] ** (d - 1) * self.coefficients[None, :, 1:], axis=2)  # N x r
        out = np.einsum("ir,kr,jr->kij", self.W, derivative, self.V)
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"DecoupledFunction(outputs={self.W.shape[0]}, inputs={self.V.shape[0]}, rank={self.rank})"


def _finite_jacobians(f, points, m):
    """Central differences (step ``eps^(1/3)`` times the scale of each coordinate)."""
    N, n = points.shape
    J = np.empty((N, m, n))
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(points))
    for j in range(n):
        step = np.zeros(n)
        for k in range(N):
            step[:] = 0.0
            step[j] = h[k, j]
            J[k, :, j] = (np.asarray(f(points[k] + step)) - np.asarray(f(points[k] - step))) / (2 * h[k, j])
    return J


def decouple(
    jacobians,
    points,
    rank: int,
    *,
    jacobian=None,
    degree: int = 3,
    n_iter_max: int = 2000,
    tol: float = 1e-14,
    n_init: int = 3,
    random_state=None,
) -> DecoupledFunction:
    """Decouple a multivariate function: ``f(u) ~ W g(V^T u) + c`` (Dreesen, Ishteva, Schoukens
    2015), each ``g_i`` a univariate polynomial of ``degree``.

    The Jacobians ``J(u_k) = W diag(g'(V^T u_k)) V^T`` at N points, stacked as an ``m x n x N``
    tensor, form the CP model ``[[W, V, H]]`` with ``H[k, i] = g_i'(v_i^T u_k)``: a CP of rank r
    (:func:`cp`, ALS from Jennrich's algebraic start when ``n, N >= r``, else from the SVD start)
    gives W, V and H; each column of H is then fitted by a polynomial of degree
    ``degree - 1`` in ``z = v_i^T u_k`` (least squares on the Vandermonde matrix), integrated to
    ``g_i`` (``g_i(0) = 0``). When ``f`` is given, the constant ``c`` is the mean residual of the
    decoupled model at the points; from Jacobians alone it is 0.

    Parameters
    ----------
    jacobians : array (N, m, n) or callable
        The Jacobians of f at ``points`` (real), or f itself: ``f(u)`` of an (n,) array returns an
        (m,) array.
    points : array (N, n)
        The sampling points ``u_k``.
    rank : int
        Number of branches r.
    jacobian : callable, optional
        With a callable f: ``jacobian(u)`` returns the (m, n) Jacobian; without it, central
        differences (accurate to about ``1e-10`` relative).
    degree : int, default 3
        Degree of the polynomials g_i (>= 1); needs at least ``degree`` points.
    n_iter_max, tol, n_init, random_state
        Passed to :func:`cp` on the Jacobian tensor.

    Returns
    -------
    DecoupledFunction

    Raises
    ------
    ValueError
        Shapes that do not match, NaN, ``degree < 1``, fewer points than ``degree``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import decouple
    >>> rng = np.random.default_rng(0)
    >>> W, V = rng.standard_normal((2, 2)), rng.standard_normal((3, 2))
    >>> f = lambda u: W @ np.array([(V[:, 0] @ u) ** 3, (V[:, 1] @ u) ** 2])
    >>> J = lambda u: W @ np.diag([3 * (V[:, 0] @ u) ** 2, 2 * (V[:, 1] @ u)]) @ V.T
    >>> points = rng.standard_normal((30, 3))
    >>> model = decouple(f, points, 2, jacobian=J, random_state=0)
    >>> u = rng.standard_normal(3)
    >>> bool(np.allclose(model(u), f(u), rtol=1e-8, atol=1e-8))
    True
    """
    rank = check_int(rank, "rank", low=1)
    degree = check_int(degree, "degree", low=1)
    n_init = check_int(n_init, "n_init", low=1)
    points = np.asarray(check_data(points, "points", ndim=2), dtype=np.float64)
    N, n = points.shape
    f = None
    if callable(jacobians):
        f = jacobians
        values = np.array([np.asarray(f(u), dtype=np.float64) for u in points])
        if values.ndim != 2 or values.shape[0] != N:
            raise ValueError(f"f must return an (m,) array for each point, got shape {values.shape[1:]}")
        if not np.all(np.isfinite(values)):
            raise ValueError("f returned NaN or infinity at some points")
        m = values.shape[1]
        if jacobian is not None:
            if not callable(jacobian):
                raise TypeError(f"jacobian must be callable u -> (m, n) array, got {type(jacobian).__name__}")
            J = np.array([np.asarray(jacobian(u), dtype=np.float64) for u in points])
        else:
            J = _finite_jacobians(f, points, m)
    else:
        if jacobian is not None:
            raise ValueError("jacobian is only used with a callable f; pass the Jacobians as the first argument")
        J = np.asarray(check_data(jacobians, "jacobians", ndim=3))
        if np.iscomplexobj(J):
            raise TypeError("jacobians must be real")
        J = J.astype(np.float64, copy=False)
    if J.shape[0] != N or J.shape[2] != n:
        raise ValueError(
            f"jacobians must have shape (N, m, n) = ({N}, m, {n}) for points of shape {points.shape}, got {J.shape}"
        )
    if not np.all(np.isfinite(J)):
        raise ValueError("jacobians contain NaN or infinity")
    if N < degree:
        raise ValueError(f"need at least degree={degree} points, got {N}")
    m = J.shape[1]
    tensor = np.ascontiguousarray(np.transpose(J, (1, 2, 0)))  # m x n x N
    rng = check_random_state(random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol ~ 0: the run is judged by its fit below
        # Jennrich's algebraic start when V (n x r) and H (N x r) can have full column rank: the usual
        # decoupling shapes have few outputs (m < r), where ALS from an SVD start swamps
        init = "jennrich" if min(n, N) >= rank else "svd"
        model = cp(tensor, rank, init=init, n_iter_max=n_iter_max, tol=tol, n_init=n_init, random_state=rng)
    Wf, Vf, Hf = model.factors
    H = Hf * model.weights[None, :]
    wn = np.linalg.norm(Wf, axis=0)
    vn = np.linalg.norm(Vf, axis=0)
    W, V, H = Wf / wn, Vf / vn, H * (wn * vn)[None, :]
    Z = points @ V  # N x r
    coefficients = np.zeros((rank, degree + 1))
    residual_sq, total_sq = 0.0, 0.0
    for i in range(rank):
        vander = Z[:, i, None] ** np.arange(degree)[None, :]  # g_i' has degree - 1
        c, *_ = np.linalg.lstsq(vander, H[:, i], rcond=None)
        residual_sq += float(np.sum((vander @ c - H[:, i]) ** 2))
        total_sq += float(np.sum(H[:, i] ** 2))
        coefficients[i, 1:] = c / np.arange(1, degree + 1)
    offset = np.zeros(m)
    result = DecoupledFunction(
        W,
        V,
        coefficients,
        offset,
        n_iter=model.n_iter,
        errors=model.errors,
        converged=model.converged,
        fit_error=np.sqrt(residual_sq / total_sq) if total_sq > 0 else 0.0,
    )
    if f is not None:
        result.offset = np.mean(values - result(points), axis=0)
    return result
