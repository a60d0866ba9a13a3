"""The self-certifying SVD: block Krylov grown until a rank or a tolerance is certified.

Two certificates come with every answer, neither costing a pass of its own:

* ``residual_norms``: for each Ritz triplet, sqrt(||A v_i - s_i u_i||^2 + ||A^T u_i - s_i v_i||^2),
  from products the Krylov iteration keeps (see ``_krylov``). Divided by sqrt(2) it is the residual
  of the unit vector (u_i, v_i)/sqrt(2) for the symmetric matrix [[0, A], [A^T, 0]], so some
  singular value of A lies within ``residual_norms[i] / sqrt(2)`` of ``S[i]``.
* ``error_bound``: a probabilistic upper bound on ||A - U diag(S) Vt||_F from an independent
  Gaussian sketch A Omega_e (r columns, drawn separately and multiplied in the first pass, so it
  is independent of the answer it checks). With E the error and X = ||E Omega_e||_F^2 / r, the
  Chernoff bound of the lower tail of a weighted chi-square sum gives, for any E and t < 1,
  P(X <= t ||E||_F^2) <= (t e^(1 - t))^(r/2) (the product prod_j (1 + 2 theta w_j) over the
  normalized squared singular values w_j of E is >= 1 + 2 theta, the rank-one case). So
  ||E||_F <= sqrt(X / t) with t the root of (t e^(1 - t))^(r/2) = ``failure_probability``.
  ``spectral_error_bound`` is Halko, Martinsson and Tropp's (2011, Lemma 4.1) bound
  ||E||_2 <= alpha sqrt(2/pi) max_i ||E omega_i||, failing with probability alpha^(-r).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, NamedTuple

from .._exact_scaling import times_power_of_two
from .._validation import check_int, check_tol
from .._warnings import ConvergenceWarning
from ._krylov import BlockKrylov
from ._range_finder import SVDResult, _gaussian, _plan, _products
from ._svd import _check_flip_sign, _flip_signs


class CertifiedSVD(NamedTuple):
    """A truncated SVD with its certificates. ``U, S, Vt = result.svd`` (or ``result[:3]``).

    Attributes
    ----------
    U, S, Vt : arrays
        The truncated SVD ``A ~ U @ diag(S) @ Vt`` (the conventions of :class:`SVDResult`).
    residual_norms : array (k,)
        sqrt(||A v_i - s_i u_i||^2 + ||A^T u_i - s_i v_i||^2) for each triplet.
    error_bound : float
        Upper bound on ||A - U diag(S) Vt||_F holding with probability >= 1 - failure_probability.
    spectral_error_bound : float
        Upper bound on ||A - U diag(S) Vt||_2 holding with probability >= 1 - failure_probability.
    error_estimate : float
        The unbiased estimate sqrt(||E Omega_e||_F^2 / r) of ||A - U diag(S) Vt||_F.
    relative_error : float or None
        ||A - U diag(S) Vt||_F / ||A||_F from the identity ||A||_F^2 - sum S^2 (Rayleigh-Ritz
        makes it exact up to rounding); None when ||A||_F is unknown (a LinearOperator).
    passes : int
        Passes over A (products of A or A^T with a block), the error sketch's included.
    converged : bool
        Whether the rank or tolerance asked for was certified within ``max_passes``.
    failure_probability : float
        The failure probability of the two error bounds.
    """

    U: Any
    S: Any
    Vt: Any
    residual_norms: Any
    error_bound: float
    spectral_error_bound: float
    error_estimate: float
    relative_error: float | None
    passes: int
    converged: bool
    failure_probability: float

    @property
    def svd(self) -> SVDResult:
        return SVDResult(self.U, self.S, self.Vt)


def chernoff_factor(n_vectors: int, failure_probability: float) -> float:
    """T in (0, 1) with (t e^(1 - t))^(r/2) = failure_probability: ||E||_F^2 <= X / t w.p. >= 1 - delta."""
    target = math.log(failure_probability) / (n_vectors / 2)  # ln t + 1 - t = target < 0
    low, high = 1e-300, 1.0
    for _ in range(200):
        mid = math.sqrt(low * high) if high / low > 4 else (low + high) / 2
        if math.log(mid) + 1 - mid < target:
            low = mid
        else:
            high = mid
    return low


def _check_probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < float(value) < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _select_rank(energies: list[float], norm2: float, tol: float) -> int | None:
    """Fewest leading Ritz values with ||A||_F^2 - sum s_i^2 <= tol ||A||_F^2 (None: not enough)."""
    captured = 0.0
    for k, e in enumerate(energies, start=1):
        captured += e
        if norm2 - captured <= tol * norm2:
            return k
    return None


def svd_certified(
    A,
    *,
    rank: int | None = None,
    tol: float | None = None,
    max_rank: int | None = None,
    max_passes: int | None = None,
    block_size: int | None = None,
    residual_tol: float = 1e-3,
    n_error_vectors: int = 20,
    failure_probability: float = 1e-6,
    flip_sign: bool | str = "vt",
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> CertifiedSVD:
    """Truncated SVD by block Krylov iteration, deepened until a rank or a tolerance is certified.

    Give ``rank`` or ``tol``:

    * ``rank=k``: the Krylov space (blocks of ``block_size`` columns) grows, 2 passes over A per
      block, until the k Ritz triplets have ``residual_norms <= residual_tol * S[0]`` (the
      RandLAPACK ABRIK check), or ``max_passes`` is spent.
    * ``tol=f``: the variance fraction left out. The rank returned is the smallest k whose Ritz
      approximation has ||A - U diag(S) Vt||_F^2 <= f ||A||_F^2 (so ``1 - f`` of the variance is
      explained; Rayleigh-Ritz makes ||A - U_k S_k V_k^T||_F^2 = ||A||_F^2 - sum_{i<=k} S_i^2
      exact), and the space grows until that rank stops moving (the energy it captures grew by less
      than 2% of f ||A||_F^2 over the last block) and at least one block lies beyond it. At most
      ``max_rank`` columns. Needs ||A||_F: a dense or sparse A.

    Non-convergence within ``max_passes`` (or ``max_rank`` too small for ``tol``) warns
    :class:`lorainne.ConvergenceWarning` and returns the best answer found, ``converged=False``.

    Parameters
    ----------
    A : array (m, n), SciPy sparse matrix or LinearOperator
        float32 or float64 (integers are promoted). Not modified.
    rank : int, optional
        The number of triplets to certify, 1 <= rank <= min(m, n).
    tol : float, optional
        Variance fraction left out, in (0, 1).
    max_rank : int, optional
        With ``tol``: the largest rank returned (default min(m, n)).
    max_passes : int, optional
        Passes over A allowed, >= 3 (default 41: 1 + 2 per block, 20 blocks).
    block_size : int, optional
        Columns per Krylov block. Default rank + 10 (``rank``) or 32 (``tol``), capped by min(m, n).
    residual_tol : float, default 1e-3
        With ``rank``: the residual norms certified, relative to the largest singular value.
    n_error_vectors : int, default 20
        Columns r of the independent error sketch (multiplied in the first pass).
    failure_probability : float, default 1e-6
        Probability that ``error_bound`` (or ``spectral_error_bound``) is below the true error.
        With r = 20 and 1e-6 the Frobenius bound is sqrt(X / t), t = 0.10 (3.2x the estimate).
    flip_sign, random_state, backend, n_threads
        As :func:`lorainne.randomized_svd`.

    Returns
    -------
    CertifiedSVD

    Raises
    ------
    ValueError
        Both or neither of rank and tol (TypeError for neither), rank or max_rank outside
        [1, min(m, n)], tol/residual_tol/failure_probability outside (0, 1), max_passes < 3,
        tol on a LinearOperator, and the input errors of :func:`lorainne.randomized_svd`.
    TypeError
        Neither rank nor tol; non-integer sizes; unsupported dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.randomized import svd_certified
    >>> rng = np.random.default_rng(0)
    >>> U0, _ = np.linalg.qr(rng.standard_normal((400, 200)))
    >>> V0, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    >>> A = (U0 * 0.9 ** np.arange(200)) @ V0.T
    >>> res = svd_certified(A, tol=1e-2, random_state=0)   # explain 99% of the variance
    >>> res.S.shape[0], res.converged, res.relative_error ** 2 <= 1e-2
    (22, True, True)
    >>> bool(np.linalg.norm(A - (res.U * res.S) @ res.Vt) <= res.error_bound)
    True
    >>> res = svd_certified(A, rank=5, random_state=0)
    >>> bool(res.residual_norms.max() <= 1e-3 * res.S[0]), res.passes
    (True, 7)
    """
    convention = _check_flip_sign(flip_sign)
    if rank is not None and tol is not None:
        raise ValueError(f"give rank or tol, not both (got rank={rank!r}, tol={tol!r})")
    if rank is None and tol is None:
        raise TypeError("svd_certified needs rank= (triplets to certify) or tol= (variance fraction left out)")
    tol = check_tol(tol)
    residual_tol = _check_probability(residual_tol, "residual_tol")
    failure_probability = _check_probability(failure_probability, "failure_probability")
    n_error_vectors = check_int(n_error_vectors, "n_error_vectors", low=1)
    max_passes = 41 if max_passes is None else check_int(max_passes, "max_passes", low=3)
    plan = _plan(
        A, rank if rank is not None else 1, 0, 0, "auto", None, None, random_state, backend, n_threads, one_graph=False
    )
    op, xp = plan.op, plan.op.xp
    m, n = op.shape
    small = min(m, n)
    if rank is not None:
        rank = plan.rank
        if max_rank is not None:
            raise ValueError(f"max_rank={max_rank!r} goes with tol; with rank={rank} it has no meaning")
        default_block = rank + 10
    else:
        max_rank = small if max_rank is None else check_int(max_rank, "max_rank", low=1, high=small)
        default_block = 32
    block = min(small, default_block if block_size is None else check_int(block_size, "block_size", low=1))
    norm = op.frobenius_norm()
    if tol is not None and norm is None:
        raise ValueError("tol needs ||A||_F, which a LinearOperator does not give: pass a dense or sparse A, or rank")
    norm2 = None if norm is None else norm * norm

    products = _products(plan)
    Omega = _gaussian(plan, n, block)
    Omega_e = _gaussian(plan, n, n_error_vectors)
    Y = products.matmat(xp.concat([Omega, Omega_e], axis=1))  # the first pass: sketch and error sketch
    krylov = BlockKrylov(products, xp, (m, n), op.dtype, Y[:, :block])
    Y_e = Y[:, block:]

    converged, chosen, last_captured = False, None, None
    while krylov.passes + 2 <= max_passes and krylov.extend():
        if rank is not None:
            U, S, Vt, res = krylov.rayleigh_ritz(rank)
            if int(S.shape[0]) >= rank and float(xp.max(res)) <= residual_tol * float(S[0]):
                converged = True
                break
            continue
        energies = [float(s) ** 2 for s in krylov.ritz_values()]
        k = _select_rank(energies, norm2, tol)
        if k is not None and k > max_rank:
            k = None
        if k is not None:
            captured = sum(energies[:k])
            stable = chosen == k and last_captured is not None and captured - last_captured <= 0.02 * tol * norm2
            chosen, last_captured = k, captured
            if stable and k <= krylov.size - block:
                converged = True
                break
        if krylov.size >= small or (chosen is None and krylov.size >= max_rank + block and k is None):
            break
    if not krylov.Z_blocks:  # max_passes too small for even one block: make the first one
        krylov.extend()
    if tol is not None:
        energies = [float(s) ** 2 for s in krylov.ritz_values()]
        k = _select_rank(energies, norm2, tol)
        if k is None or k > max_rank:
            k = min(max_rank, len(energies))
            converged = False
        elif krylov.size >= small:  # the basis spans the whole range: the answer is exact
            converged = True
        rank = k
    U, S, Vt, res = krylov.rayleigh_ritz(rank)
    if tol is None:  # the basis may have filled up (exact answer) before the check ran
        converged = int(S.shape[0]) >= rank and float(xp.max(res)) <= residual_tol * float(S[0])
    if not converged:
        what = f"tol={tol}" if tol is not None else f"residual_tol={residual_tol} for rank {rank}"
        warnings.warn(
            f"svd_certified: {what} not certified within max_passes={max_passes} "
            f"(basis of {krylov.size} columns); returning the best answer found",
            ConvergenceWarning,
            stacklevel=2,
        )
    # The a-posteriori error sketch: E Omega_e = A Omega_e - U S Vt Omega_e (no pass over A).
    E = Y_e - products.matmul(U * S[None, :], products.matmul(Vt, Omega_e))
    E64 = xp.astype(E, xp.float64)
    column_norms2 = [float(v) for v in xp.sum(E64 * E64, axis=0)]
    estimate2 = sum(column_norms2) / n_error_vectors
    t = chernoff_factor(n_error_vectors, failure_probability)
    alpha = failure_probability ** (-1.0 / n_error_vectors)
    bound = math.sqrt(estimate2 / t)
    spectral = alpha * math.sqrt(2 / math.pi) * math.sqrt(max(column_norms2))
    relative = None
    if norm2:
        relative = math.sqrt(max(norm2 - sum(float(s) ** 2 for s in S), 0.0) / norm2)
    U, Vt = _flip_signs(xp, U, Vt, convention)
    k = -plan.scale
    return CertifiedSVD(
        U,
        times_power_of_two(S, k),
        Vt,
        times_power_of_two(res, k),
        math.ldexp(bound, k),
        math.ldexp(spectral, k),
        math.ldexp(math.sqrt(estimate2), k),
        relative,
        krylov.passes,
        converged,
        failure_probability,
    )
