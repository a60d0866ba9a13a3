"""The randomized SVD: subspace iteration (Halko, Martinsson and Tropp 2011) or block Krylov
(Musco and Musco 2015), then the SVD of the small projected matrix (Rayleigh-Ritz).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import device

from .. import _dask, _dask_graph
from .._backend import core
from .._conjugate import adjoint, conj, is_complex, unit_phases
from .._exact_scaling import times_power_of_two
from .._validation import check_option
from ._dask_run import deferred_checks, one_graph
from ._krylov import block_krylov_svd
from ._range_finder import (
    FLIP_SIGNS,
    SVDResult,
    _adaptive_range_finder,
    _as_host_contiguous,
    _factor,
    _gaussian,
    _plan,
    _products,
    _range_finder_xp,
    _rust_qr,
    _start,
    checked_sketch,
)
from ._small_side import small_side_svd, spans_small_side

SVD_METHODS = ("subspace", "block_krylov")


def auto_krylov_depth(rank: int, shape: tuple[int, int]) -> int:
    """The depth ``n_power_iter="auto"`` gives ``method="block_krylov"``: 3 (2 * 3 + 2 = 8 passes).

    Depth 2 already reached ||A - U S Vt||_2 <= 1.01 s_{k+1} on every matrix of
    ``benches/RESULTS_randomized.md`` (s_i = i^-0.5 and i^-1, sample images, digits; k = 50), where
    subspace iteration needed 3 to 8 power iterations; 3 keeps a margin for flatter spectra.
    """
    return 3


def _check_krylov_width(block_size: int, depth: int, rank: int) -> None:
    """A block narrower than the rank needs depth + 1 blocks of at least ``rank`` columns together:
    the Rayleigh-Ritz step picks the top ``rank`` of the (depth + 1) block_size Ritz vectors.
    """
    if (depth + 1) * block_size < rank:
        raise ValueError(
            f"block_size={block_size} at depth n_power_iter={depth} gives (depth + 1) * block_size = "
            f"{(depth + 1) * block_size} columns, fewer than rank={rank}: widen the block or deepen the space"
        )


def _check_flip_sign(flip_sign) -> str | None:
    """The convention "vt", "u" or None (no flip); True is scikit-learn's flip_sign=True ("u")."""
    if isinstance(flip_sign, (bool, np.bool_)):
        return "u" if flip_sign else None
    if not isinstance(flip_sign, str):
        raise TypeError(f"flip_sign must be 'vt', 'u', True or False, got {flip_sign!r}")
    return check_option(flip_sign, "flip_sign", FLIP_SIGNS)


def _flip_signs(xp, U, Vt, convention: str | None = "vt"):
    """Make the largest-magnitude entry of each row of Vt ("vt") or of each column of U ("u",
    scikit-learn's ``svd_flip`` with ``u_based_decision=True``) positive (real and positive for
    complex input: U D, D^H Vt with D diagonal unimodular); None leaves the signs.
    """
    if convention is None:
        return U, Vt
    basis = Vt if convention == "vt" else U.T
    if isinstance(basis, np.ndarray) and basis.dtype.kind == "f":  # the same signs, without array-API dispatch
        pivots = basis[np.arange(basis.shape[0]), np.argmax(np.abs(basis), axis=1)]
        signs = np.where(pivots < 0, -1, 1).astype(basis.dtype)
        if U.flags.writeable and Vt.flags.writeable and not np.may_share_memory(U, Vt):
            # U and Vt are this call's own arrays: flipped in place, without two new ones.
            U *= signs[None, :]
            Vt *= signs[:, None]
            return U, Vt
        return U * signs[None, :], Vt * signs[:, None]
    k, n = basis.shape
    where = xp.argmax(xp.abs(basis), axis=1) + xp.arange(k, device=device(basis)) * n
    phases = unit_phases(xp, xp.take(xp.reshape(basis, (-1,)), where))
    if convention == "u":
        phases = conj(xp, phases)
    return U * phases[None, :], Vt * conj(xp, phases)[:, None]


def _gathered_s(plan, U, Vt, S):
    """Dask: S (NumPy) and the deferred checks of the orthonormalizations in one gather; None when
    a check failed (``deferred_checks`` runs again with eager checks).
    """
    accepted, (S,) = _dask.verify(plan.op.checks or [], S)
    return (U, Vt, S) if accepted else None


def _dask_svd(plan, method: str, auto: bool, convention: str | None) -> SVDResult:
    """A Dask A through ``lorainne._dask_graph`` (U, Vt lazy, S NumPy); on a failed orthonormalization
    check, the step-by-step path with its fallbacks from the same random numbers.
    """
    rank = plan.rank
    if method == "block_krylov":
        depth = auto_krylov_depth(plan.rank, plan.op.shape) if auto else plan.n_power_iter
        plan, outcome = one_graph(
            plan, lambda A, omega, held: _dask_graph.block_krylov_svd(A, omega, depth, rank, convention, held)
        )
        if outcome is None:
            p, xp = plan, plan.op.xp
            first = p.op.matmat(_start(p)[0])
            U, S, Vt = block_krylov_svd(
                _products(p), xp, p.op.shape, p.op.dtype, first, rank, depth, gram_route=convention is not None
            )
            U, Vt = _flip_signs(xp, U, Vt, convention)
            U, Vt, S = _gathered_s(p, U, Vt, S)
    else:
        n_iter = plan.n_power_iter
        plan, outcome = one_graph(
            plan, lambda A, omega, held: _dask_graph.subspace_svd(A, omega, n_iter, rank, convention, held)
        )
        if outcome is None:
            Q = _range_finder_xp(plan, *_start(plan))
            U, S, Vt = _dask.svd_from_projection(Q, plan.op.rmatmat(Q).T, rank, convention, plan.qr)
    if outcome is not None:
        (U, Vt), S = outcome.value, outcome.S
    return SVDResult(U, times_power_of_two(S, -plan.scale), Vt)


def _check_transpose(transpose) -> bool | str:
    """``transpose`` as "auto", True or False; ValueError naming it otherwise."""
    if isinstance(transpose, str) and transpose == "auto":
        return "auto"
    if not isinstance(transpose, (bool, np.bool_)):
        raise ValueError(f"transpose must be 'auto', True or False, got {transpose!r}")
    return bool(transpose)


def _resolve_transpose(transpose, plan) -> bool:
    """Whether block Krylov runs on A^H (see ``randomized_svd``'s ``transpose``)."""
    transpose = _check_transpose(transpose)
    if transpose == "auto":
        m, n = plan.op.shape
        return m > n and plan.init is None and plan.backend != "dask"
    if transpose and plan.init is not None:
        raise ValueError("transpose=True cannot take init (a warm start is a basis of A's columns, not of A^H's)")
    if transpose and plan.backend == "dask":
        raise ValueError("transpose=True is not supported for a Dask A: its basis stays chunked with A's rows")
    return bool(transpose)


def _oriented(products, transposed: bool):
    """The products of A^H (A X and A^H X swapped) when ``transposed``, else ``products``."""
    return products._replace(matmat=products.rmatmat, rmatmat=products.matmat) if transposed else products


def _small_side(plan):
    """The exact SVD when the block spans min(m, n) columns of a dense NumPy A (no iteration can
    do better, and one Gram matrix costs about one pass); None when it does not apply.
    """
    dense = plan.op.dense
    if (
        plan.backend not in ("rust", "numpy")
        or plan.tol is not None
        or plan.init is not None
        or not isinstance(dense, np.ndarray)
        or not spans_small_side(plan.size, plan.op.shape)
    ):
        return None
    return small_side_svd(_as_host_contiguous(dense), plan.rank, lambda Y: _factor(plan, Y))


def randomized_svd(
    A,
    rank: int,
    *,
    n_oversamples: int = 10,
    n_power_iter: int | str = "auto",
    flip_sign: bool | str = "vt",
    qr: str = "auto",
    init=None,
    tol: float | None = None,
    method: str = "subspace",
    block_size: int | None = None,
    transpose: bool | str = "auto",
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> SVDResult:
    """Truncated SVD by the randomized range finder (Halko, Martinsson and Tropp 2011) or by
    block Krylov iteration (Musco and Musco 2015).

    Computes Q = :func:`range_finder` (A), then the SVD of the small matrix Q^H A. Complex A
    (complex64/complex128; the Rust kernels on a dense NumPy A, except block Krylov, which "auto"
    keeps on NumPy's BLAS) uses conjugate transposes; then U is unitary in its columns,
    ``A ~ U @ diag(S) @ Vt`` with Vt's rows the conjugated right singular vectors
    (``numpy.linalg.svd``'s convention), and the sign convention makes the chosen pivot entry real
    and positive.
    Arguments are those of :func:`range_finder` (``size`` excepted); with ``tol`` the returned
    rank is the smallest meeting ||A - U diag(S) Vt||_F <= tol ||A||_F (at most ``rank``).

    ``n_power_iter="auto"`` (the default) is scikit-learn's rule: 7 power iterations when
    rank < 0.1 min(m, n), else 4 (2 from a warm start ``init``); see :func:`range_finder` for
    the measurements behind it. Pass an int for a fixed number (the default was 2 before).

    Entries beyond about 1e+-77 (float64) are handled exactly: the SVD of 2**k A is computed for
    a power of two 2**k and S is scaled back, so ``randomized_svd(A * 1e-300, r)`` gives the
    singular values of ``randomized_svd(A, r)`` times 1e-300 (U and Vt unchanged).

    With ``method="block_krylov"`` the basis is the whole block Krylov space
    ``[A Omega, (A A^T) A Omega, ..., (A A^T)^q A Omega]`` (q = ``n_power_iter``, blocks of
    rank + n_oversamples columns, re-orthonormalized block by block) instead of its last block,
    and the SVD is the Rayleigh-Ritz projection on it. Both methods make 2 q + 2 passes over A;
    on slowly decaying spectra block Krylov reaches a given accuracy with fewer of them
    (``benches/RESULTS_randomized.md``). It runs on every backend (on NumPy input the products use
    the Rust matmul and CholeskyQR2 kernels, except the products with A^T of a real C-ordered A,
    which run as (Y^T A)^T through NumPy's BLAS where it runs AVX-512 kernels, and the projection
    updates and the CholeskyQR2 of real basis blocks, which run through SciPy's BLAS and LAPACK,
    faster at these shapes: ``n_threads`` does not reach them; pin BLAS with threadpoolctl). For a
    rank or accuracy certified by residual norms and an a-posteriori error bound, see
    :func:`lorainne.randomized.svd_certified`.

    When the block (rank + n_oversamples) spans min(m, n) columns of a dense NumPy A, every
    method gives the exact truncated SVD; it is then computed directly from the Gram matrix of
    the small side and a Rayleigh-Ritz step (one pass for the Gram matrix, one for A V_k, no
    random numbers), when the gap below s_k lets the Gram matrix resolve the top-k singular
    subspace (``randomized/_small_side.py``); otherwise the iteration runs as usual.

    Parameters
    ----------
    method : {"subspace", "block_krylov"}, default "subspace"
        Subspace (power) iteration, or block Krylov. ``n_power_iter="auto"`` is the depth
        :func:`auto_krylov_depth` for block Krylov. ``tol`` needs ``"subspace"``. For block
        Krylov the block (rank + n_oversamples) matters as much as the depth: a wider block at a
        smaller depth often costs less (depth 1 with 20-30 oversamples reached 1.01 s_{k+1} at
        k = 50 on the sample images and on s_i = i^-1, where 10 oversamples needed depth 2;
        ``benches/RESULTS_randomized.md``).
    block_size : int, optional
        ``method="block_krylov"`` only: the width b of each Krylov block, so the basis has
        (q + 1) b columns (q = ``n_power_iter``). None (the default) is rank + n_oversamples, the
        block of every earlier version (the same result, bit for bit). A block narrower than the
        rank is allowed (Meyer, Musco and Musco 2024: on slowly decaying spectra the depth, the
        degree of the Krylov polynomial, matters more than the width, so a deeper space of narrow
        blocks reaches the same accuracy with fewer columns of products); (q + 1) b must be at
        least ``rank`` (the Rayleigh-Ritz step keeps the top ``rank`` of its (q + 1) b Ritz vectors),
        and a useful space has some room beyond it, e.g. (q + 1) b >= rank + 10. 1 <= b <= min(m, n).
        Each pass reads all of A whatever b, so very narrow blocks (b << 20) pay in memory traffic.
        A warm start ``init`` wider than b is cut to its first b columns.
    transpose : {"auto", True, False}, default "auto"
        Block Krylov (subspace iteration takes "auto" and False, both A as given; scikit-learn's
        ``randomized_svd`` has the argument too): run on A^H, so the basis, its projections and its
        CholeskyQR2 live on A's shorter side, and return the SVD of A. ``"auto"``: when m > n and
        without ``init`` (a warm start is a basis of A's columns), except on Dask (its basis stays
        chunked with A's rows). The start block is then Gaussian m x b instead of n x b, so a seed
        gives other (equally good) numbers than ``transpose=False``, the orientation of every version
        before. 4-8% less time at 2000 x 1000, b = 40-55; 13% at 20000 x 200
        (``benches/RESULTS_randomized.md``).
    flip_sign : {"vt", "u", True, False}, default "vt"
        The sign convention (singular vectors are unique up to sign):

        * ``"vt"`` (default): the largest-magnitude entry of each row of Vt is positive.
        * ``"u"`` or ``True``: the largest-magnitude entry of each column of U is positive,
          scikit-learn's ``randomized_svd(..., flip_sign=True)`` (``svd_flip`` with
          ``u_based_decision=True``).
        * ``False``: no flip; the signs are those the computation produced (they depend on the
          seed and the backend).

        Other arguments: see :func:`range_finder`.

    Returns
    -------
    SVDResult
        ``(U, S, Vt)`` with U (m, rank), S (rank,), Vt (rank, n), in the input's array library,
        device and dtype. Unpacks as a 3-tuple.

    Raises
    ------
    ValueError, TypeError
        As :func:`range_finder`; a ``flip_sign`` other than "vt", "u", True or False; a
        ``block_size`` that is not an integer (TypeError), outside [1, min(m, n)], with
        (n_power_iter + 1) * block_size < rank, or given with ``method="subspace"`` (ValueError); a
        ``transpose`` other than "auto", True or False, or True with ``method="subspace"``, with
        ``init`` or with a Dask A (ValueError).
    numpy.linalg.LinAlgError
        Block Krylov only, not seen in practice: a new block that stays away from orthogonal to the
        basis after its repair (its directions outside the basis kept, the others replaced by
        Gaussian ones projected off).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import randomized_svd
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((500, 5)) @ rng.standard_normal((5, 400))
    >>> U, S, Vt = randomized_svd(A, 5, random_state=0)
    >>> U.shape, S.shape, Vt.shape
    ((500, 5), (5,), (5, 400))
    >>> bool(np.allclose(U * S @ Vt, A))
    True

    Block Krylov with blocks of 10 columns for rank 30 (depth 6: 7 blocks, 70 columns) on a slowly
    decaying spectrum, within 1% of the optimal error ||A - A_30||_2 = s_31:

    >>> s = 1.0 / np.arange(1, 301)
    >>> Ua, _ = np.linalg.qr(rng.standard_normal((600, 300)))
    >>> Va, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    >>> A = (Ua * s) @ Va.T
    >>> U, S, Vt = randomized_svd(A, 30, method="block_krylov", block_size=10, n_power_iter=6, random_state=0)
    >>> error = np.linalg.norm(A - U * S @ Vt, 2) / s[30]
    >>> bool(error <= 1.01)
    True
    """
    convention = _check_flip_sign(flip_sign)
    method = check_option(method, "method", SVD_METHODS)
    if method == "block_krylov":
        if tol is not None:
            raise ValueError(
                f"tol={tol!r} needs method='subspace'; for block Krylov to a tolerance use svd_certified(A, tol=...)"
            )
        if isinstance(n_power_iter, str):
            check_option(n_power_iter, "n_power_iter", ("auto",))
            auto = True
            n_power_iter = 0
        else:
            auto = False
    else:
        auto = False
        if block_size is not None:
            raise ValueError(
                f"block_size={block_size!r} needs method='block_krylov' (subspace's block is rank + n_oversamples)"
            )
        if _check_transpose(transpose) is True:
            raise ValueError("transpose=True needs method='block_krylov' (subspace runs on A as given)")
    plan = _plan(
        A,
        rank,
        n_oversamples,
        n_power_iter,
        qr,
        init,
        tol,
        random_state,
        backend,
        n_threads,
        allow_complex=True,
        block_size=block_size,
        defer_checks=method == "block_krylov",
    )
    if block_size is not None:
        _check_krylov_width(
            plan.size, auto_krylov_depth(plan.rank, plan.op.shape) if auto else plan.n_power_iter, plan.rank
        )
    xp = plan.op.xp
    transposed = _resolve_transpose(transpose, plan) if method == "block_krylov" else False
    if plan.backend == "dask" and not plan.dask_checked:  # one graph, one gather (lorainne._dask_graph)
        return _dask_svd(plan, method, auto, convention)
    exact = _small_side(plan)
    if exact is not None:
        U, S, Vt = exact
        U, Vt = _flip_signs(xp, U, Vt, convention)
        return SVDResult(U, times_power_of_two(S, -plan.scale), Vt)
    if method == "block_krylov":
        depth = auto_krylov_depth(plan.rank, plan.op.shape) if auto else plan.n_power_iter
        if backend == "auto" and plan.backend == "rust" and is_complex(plan.op):
            # Its many small complex products ran at 0.70x NumPy's zgemm in the Rust kernels
            # (benches/RESULTS_randomized.md, complex input); backend="rust" still runs them.
            plan = plan._replace(backend="numpy")

        def krylov(p):
            m, n = p.op.shape
            if transposed:  # A^H's Krylov space: its start is Gaussian m x b, its "A^H X" is A X
                start, start_is_range = _gaussian(p, m, p.size), False
            else:
                start, start_is_range = _start(p)
            if not start_is_range:  # A's checks, if deferred, settled by the sketch
                p, start = checked_sketch(p, start, _oriented(_products(p), transposed).matmat(start), transposed)
            # flip_sign=False: LAPACK's signs, as the Dask graph gives them (it mirrors the QR route).
            route = convention is not None
            shape = (n, m) if transposed else (m, n)
            U, S, Vt = block_krylov_svd(
                _oriented(_products(p), transposed), xp, shape, p.op.dtype, start, p.rank, depth, gram_route=route
            )
            if transposed:  # A^H = U S Vt gives A = Vt^H S U^H
                U, Vt = adjoint(xp, Vt), adjoint(xp, U)
            return (*_flip_signs(xp, U, Vt, convention), times_power_of_two(S, -p.scale))

        U, Vt, S = deferred_checks(plan, krylov, _gathered_s) if plan.backend == "dask" else krylov(plan)
        return SVDResult(U, S, Vt)
    if plan.tol is not None:
        Q, B = _adaptive_range_finder(plan)
        rank = Q.shape[1]
    elif plan.backend == "rust":
        start, start_is_range = _start(plan)
        U, S, Vt = core().randomized_svd(
            _as_host_contiguous(plan.op.dense),
            start,
            start_is_range,
            plan.rank,
            plan.n_power_iter,
            _rust_qr(plan.qr),
            plan.n_threads,
        )
        U, Vt = _flip_signs(xp, U, Vt, convention)
        return SVDResult(U, times_power_of_two(S, -plan.scale), Vt)
    elif plan.backend == "dask":  # U and Vt lazy, S on the client; one gather for all the checks
        U, S, Vt = deferred_checks(
            plan,
            lambda p: (_range_finder_xp(p, *_start(p)),),
            lambda p, Q: _dask.svd_from_projection(Q, p.op.rmatmat(Q).T, rank, convention, p.qr, p.op.checks),
        )
        return SVDResult(U, times_power_of_two(S, -plan.scale), Vt)
    else:
        Q = _range_finder_xp(plan, *_start(plan))
        B = adjoint(xp, plan.op.rmatmat(Q))
    if plan.backend == "dask":  # (tol=) U and Vt lazy, S on the client
        U, S, Vt = _dask.svd_from_projection(Q, B, rank, convention, plan.qr)
        return SVDResult(U, times_power_of_two(S, -plan.scale), Vt)
    Ub, S, Vt = xp.linalg.svd(B, full_matrices=False)
    U, Vt = _flip_signs(xp, Q @ Ub[:, :rank], Vt[:rank, :], convention)
    return SVDResult(U, times_power_of_two(S[:rank], -plan.scale), Vt)
