"""The randomized range finder (subspace iteration, adaptive randQB) and its plan and products.

Every function validates at the boundary, picks a backend from its input
(:func:`lorainne._backend.resolve`) and runs either the Rust kernel (NumPy input) or the xp
reference (any array-API library: NumPy, CuPy, torch, ``array_api_strict``).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, is_numpy_namespace

from .. import _dask, _dask_graph, _qr
from .._backend import core, is_dask_array, numpy_dtype, resolve
from .._conjugate import abs2, adjoint, is_complex
from .._exact_scaling import max_abs, rescaled_finite, sketch_vouches
from .._operators import MatrixOperator, as_operator, dask_operator
from .._validation import as_float_array, check_int, check_n_threads, check_option, check_tol, lazy_random_state
from .._warnings import ConvergenceWarning
from ._dask_run import deferred_checks, one_graph
from ._qr_factorizations import _as_host_contiguous

logger = logging.getLogger("lorainne")

QR_METHODS = ("auto", "cholesky_qr2", "householder")
FLIP_SIGNS = ("vt", "u")


class SVDResult(NamedTuple):
    """A truncated SVD, ``A ~ U @ diag(S) @ Vt``; unpacks as ``U, S, Vt``.

    ``S`` is nonincreasing. With the default ``flip_sign="vt"`` each row of ``Vt`` has its
    largest-magnitude entry positive; with ``flip_sign="u"`` (or True, scikit-learn's convention)
    each column of ``U`` does. Either way the result is deterministic for a given seed.
    """

    U: Any
    S: Any
    Vt: Any


class _Plan(NamedTuple):
    """The validated arguments of range_finder / randomized_svd."""

    op: MatrixOperator  # of 2**scale A
    rank: int
    size: int  # columns of the sketch: rank + oversamples, capped by min(m, n) (or the size asked)
    n_power_iter: int
    qr: str
    init: Any
    tol: float | None
    rng: np.random.Generator
    backend: str
    n_threads: int | None
    scale: int  # the operator is 2**scale A (exact rescaling of entries beyond ~1e+-77)
    # A sparse matrix or operator on the host (backend "auto"): its products stay SciPy's, the dense
    # block algebra (orthonormalization, products of bases) runs in the Rust kernels.
    host_kernels: bool = False
    # Dask: False when the checks of A (finite, scale) are left to the one-graph path (``_dask_run.one_graph``).
    dask_checked: bool = True
    # A dense NumPy A whose checks (finite, scale) ride on the first sketch (:func:`checked_sketch`).
    checks_deferred: bool = False


def auto_power_iterations(rank: int, shape: tuple[int, int], warm_start: bool = False) -> int:
    """The power iterations ``n_power_iter="auto"`` runs: scikit-learn's rule (7 when
    rank < 0.1 min(m, n), else 4); 2 from a warm start (``init``), already near the subspace.
    """
    if warm_start:
        return 2
    return 7 if rank < 0.1 * min(shape) else 4


def _plan(
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
    size=None,
    *,
    allow_complex=False,
    one_graph=True,
    block_size=None,
    defer_checks=False,
) -> _Plan:
    """The validated arguments. ``one_graph``: the caller runs a Dask A through ``lorainne._dask_graph``
    when it can (no ``init``, no ``tol``, CholeskyQR2), which checks A in its own first pass.
    ``block_size``: the columns of the sketch (block Krylov's block width, checked here against
    min(m, n)) instead of rank + n_oversamples. ``defer_checks``: the caller passes its first sketch
    through :func:`checked_sketch`, so a dense real NumPy A on the Rust backend is not read for its
    checks here (``checks_deferred``).
    """
    defer_checks = defer_checks and init is None and tol is None and _deferrable(A)
    if is_dask_array(A):  # finiteness and max |a_ij| are checked with the first sketch, below
        if is_complex(A):
            raise TypeError("A is a complex Dask array: the Dask path takes float32 or float64")
        A, scale = as_float_array(A, "A", ndim=2, finite=False), 0
        op = dask_operator(A)
    else:
        if defer_checks:
            scale, finite = 0, True  # vouched for by the first sketch, or checked then
        else:
            A, scale, finite = rescaled_finite(A)  # one read of a dense NumPy A: scale and finiteness
        op = as_operator(A, "A", allow_complex=allow_complex, finite_checked=finite)
    m, n = op.shape
    if size is not None:
        size = check_int(size, "size", low=1, high=min(m, n))
        if rank is not None:
            raise ValueError(f"give rank or size, not both (got rank={rank!r}, size={size})")
        if tol is not None:
            raise ValueError(f"size={size} asks for a fixed number of columns; it cannot be combined with tol={tol!r}")
        rank = size
    elif rank is None:
        raise TypeError("range_finder needs rank (rank + n_oversamples columns) or size= (exactly size columns)")
    rank = check_int(rank, "rank", low=1, high=min(m, n))
    n_oversamples = check_int(n_oversamples, "n_oversamples", low=0)
    if isinstance(n_power_iter, str):
        check_option(n_power_iter, "n_power_iter", ("auto",))
        n_power_iter = auto_power_iterations(rank, (m, n), warm_start=init is not None)
    else:
        n_power_iter = check_int(n_power_iter, "n_power_iter", low=0)
    qr = check_option(qr, "qr", QR_METHODS)
    tol = check_tol(tol)
    if tol is not None:
        floor = float(np.sqrt(np.finfo(numpy_dtype(op.dtype)).eps))
        if tol < floor:
            raise ValueError(
                f"tol={tol} is below sqrt(machine epsilon) = {floor:.1e} "
                f"for {op.dtype}: the error estimate cannot certify it"
            )
        if op.frobenius_norm() is None:
            raise ValueError(
                "tol needs ||A||_F, which a LinearOperator does not give: pass a dense or sparse A, or a fixed rank"
            )
    n_threads = check_n_threads(n_threads)
    rng = lazy_random_state(random_state)  # the small side draws no random numbers
    if init is not None:
        init = as_float_array(init, "init", ndim=2, allow_complex=is_complex(op))
        if is_complex(init) and not is_complex(op):  # never drop an imaginary part silently
            raise TypeError(f"init is {init.dtype} but A is real ({op.dtype}): pass a real init")
        if init.shape[0] != m:
            raise ValueError(f"init must have {m} rows (the rows of A), got shape {tuple(init.shape)}")
        if init.shape[1] > min(m, n):
            raise ValueError(f"init has {init.shape[1]} columns, more than min(m, n) = {min(m, n)}")
        if init.dtype != op.dtype:
            init = array_namespace(init).astype(init, op.dtype)
    dense = op.dense
    has_kernel = dense is not None and isinstance(dense, np.ndarray)
    chosen = resolve(A, init, backend=backend, rust_kernel=has_kernel)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", low=1, high=min(m, n))
    columns = size if size is not None else block_size if block_size is not None else min(rank + n_oversamples, m, n)
    # Sparse matrices and operators on the host (a duck-typed operator resolves to "xp" but multiplies
    # NumPy blocks: its namespace is NumPy's).
    host_kernels = (
        backend == "auto"
        and chosen in ("numpy", "xp")
        and dense is None
        and is_numpy_namespace(op.xp)
        and not is_complex(op)
        and _core_available()
    )
    dask_checked = True
    if is_dask_array(A) and one_graph and init is None and tol is None and qr != "householder":
        dask_checked = False  # the checks ride on the first product of the one graph
    elif is_dask_array(A):  # one pass over A: its checks and (without init or tol) the first sketch A Omega
        A, scale, first = _dask.first_pass(A, "A", rng, columns if init is None and tol is None else None)
        op = dask_operator(A, first)
    plan = _Plan(
        op, rank, columns, n_power_iter, qr, init, tol, rng, chosen, n_threads, scale, host_kernels, dask_checked
    )
    if defer_checks and (chosen != "rust" or columns >= min(m, n)):  # no sketch (the exact small side) or not ours
        return completed_checks(plan._replace(checks_deferred=True))
    return plan._replace(checks_deferred=defer_checks)


def _deferrable(A) -> bool:
    """A dense real float NumPy A the Rust kernels multiply as it is (see :func:`checked_sketch`)."""
    return (
        isinstance(A, np.ndarray)
        and A.ndim == 2
        and A.size > 0
        and A.dtype in (np.float32, np.float64)
        and (A.flags.c_contiguous or A.flags.f_contiguous)
    )


def completed_checks(plan: _Plan) -> _Plan:
    """The plan with the deferred checks of its dense A done: ValueError when A is not finite, the
    exact rescaling when its entries are beyond the safe band.
    """
    if not plan.checks_deferred:
        return plan
    A, scale, finite = rescaled_finite(plan.op.dense)
    op = as_operator(A, "A", finite_checked=finite)  # raises when A is not finite
    return plan._replace(op=op, scale=scale, checks_deferred=False)


def checked_sketch(plan: _Plan, start, sketch, adjoint_sketch: bool = False):
    """(plan, A Omega) with the plan's deferred checks settled by the sketch itself (``start`` = Omega,
    Gaussian) where it vouches for them (:func:`lorainne._exact_scaling.sketch_vouches`: A finite and
    inside the band that needs no rescaling, which saves the read of A: ~1.3 ms at 2000 x 1000), else
    by reading A (:func:`completed_checks`) and, if A was rescaled, the sketch computed again
    (A^H Omega when ``adjoint_sketch``: the same argument holds for A^H's entries).
    """
    if not plan.checks_deferred:
        return plan, sketch
    rows, columns = int(start.shape[0]), int(start.shape[1])
    if sketch_vouches(max_abs(sketch), max_abs(start), rows, columns, sketch.dtype):
        return plan._replace(checks_deferred=False), sketch
    checked = completed_checks(plan)
    if checked.scale == 0:
        return checked, sketch
    products = _products(checked)
    return checked, (products.rmatmat if adjoint_sketch else products.matmat)(start)


def _core_available() -> bool:
    try:
        core()
    except RuntimeError:
        return False
    return True


def _gaussian(plan: _Plan, rows: int, cols: int):
    """Standard normal block drawn on the host (same numbers on every backend), then moved; complex
    standard normal (real and imaginary parts of variance 1/2) for a complex A.
    """
    dtype = numpy_dtype(plan.op.dtype)
    block = plan.rng.standard_normal((rows, cols))
    if dtype.kind == "c":
        block = (block + 1j * plan.rng.standard_normal((rows, cols))) * np.sqrt(0.5)
    block = block.astype(dtype, copy=False)
    return plan.op.xp.asarray(block, device=plan.op.device)


def _start(plan: _Plan):
    """The starting block: (Omega, False) to sketch A Omega, or (basis, True) for a warm start."""
    m, n = plan.op.shape
    if plan.init is None:
        return _gaussian(plan, n, plan.size), False
    k = plan.init.shape[1]
    if k >= plan.size:
        return plan.init[:, : plan.size], True
    extra = plan.op.matmat(_gaussian(plan, n, plan.size - k))
    return plan.op.xp.concat([plan.init, extra], axis=1), True


def _orthonormalize(plan: _Plan, Y):
    if plan.host_kernels:
        if plan.qr == "householder":
            return core().householder_qr(Y, None, plan.n_threads)[0]
        return core().cholesky_qr2(Y, plan.n_threads)[0]
    if plan.backend == "dask":  # one graph per pass, basis persisted; checks deferred when op.checks is a list
        return _dask.orthonormalize(Y, plan.qr, getattr(plan.op, "checks", None))
    if plan.qr == "householder":
        return _qr.householder_qr_xp(Y)[0]
    return _qr.cholesky_qr2_xp(Y)[0]


def _factor(plan: _Plan, Y):
    """(Q, R) with Y = Q R by the plan's QR (R None on Dask, where it stays on the workers)."""
    if plan.backend == "rust" or plan.host_kernels:
        if plan.qr == "householder":
            return tuple(core().householder_qr(Y, None, plan.n_threads)[:2])
        return tuple(core().cholesky_qr2(Y, plan.n_threads)[:2])
    if plan.backend == "dask":
        return _orthonormalize(plan, Y), None
    if plan.qr == "householder":
        return _qr.householder_qr_xp(Y)
    return _qr.cholesky_qr2_xp(Y)[:2]


def _range_finder_xp(plan: _Plan, start, start_is_range: bool):
    """Subspace iteration, re-orthonormalized after every product (xp reference)."""
    op = plan.op
    if start_is_range:
        Q, n_iter = _orthonormalize(plan, start), max(1, plan.n_power_iter)
    else:
        Q, n_iter = _orthonormalize(plan, op.matmat(start)), plan.n_power_iter
    for _ in range(n_iter):
        Z = _orthonormalize(plan, op.rmatmat(Q))
        Q = _orthonormalize(plan, op.matmat(Z))
    return Q


class _Products(NamedTuple):
    """The products the adaptive range finder needs: from the Rust kernels (dense NumPy A) or
    from the xp reference (every other input). The loop itself is written once.
    """

    matmat: Callable
    rmatmat: Callable
    matmul: Callable
    orthonormalize: Callable
    qr: Callable  # Y -> (Q, R), R None where the backend keeps it on the workers (Dask)
    # Y -> (Q, R) where only Q matters (a basis; Q R = Y to u cond(Y)): ``_qr.cholesky_qr2_blas`` first.
    basis_qr: Callable | None = None


# A^H X for a real C-ordered A through NumPy's BLAS as (X^T A)^T (A streamed row by row), or faer's GEMM.
# faer's kernels here are its AVX2 ones (the AVX-512 ones, faer's "nightly" feature, ran no faster at these
# shapes). OpenBLAS's AVX-512 kernels ran A^T X at 1.0-1.2x faer's rate (2000 x 1000 and 854 x 1920,
# blocks of 50-80, 1 thread), its Haswell (AVX2) kernels at 0.6x: block Krylov 5-8% faster with BLAS on
# the first, 18-19% slower on the second (benches/RESULTS_randomized.md). None: BLAS where NumPy's BLAS
# runs AVX-512 kernels (:func:`blas_runs_avx512`); True or False forces one.
BLAS_ADJOINT_PRODUCT: bool | None = None

# OpenBLAS's names (``openblas_get_corename``) of the cores it runs AVX-512 kernels on.
_OPENBLAS_AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


@functools.cache
def blas_runs_avx512() -> bool:
    """Whether NumPy's BLAS runs AVX-512 kernels: the CPU has AVX512F (NumPy's own detection) and, where
    threadpoolctl can tell, no OpenBLAS loaded runs a core without them (OPENBLAS_CORETYPE=Haswell on an
    AVX-512 CPU runs the AVX2 kernels). Decided once per process, so a run's products never change route.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - NumPy moved its private table
        return False
    if not __cpu_features__.get("AVX512F", False):
        return False
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return True
    with warnings.catch_warnings():  # it may warn about other runtimes loaded (OpenMP): not ours to say
        warnings.simplefilter("ignore")
        libraries = threadpool_info()
    cores = [str(info.get("architecture", "")).lower() for info in libraries if info.get("internal_api") == "openblas"]
    return all(core in _OPENBLAS_AVX512_CORES for core in cores)


def _adjoint_product(kernels, dense, threads: int | None) -> Callable:
    """X -> A^H X for the Rust backend's dense A."""
    blas = blas_runs_avx512() if BLAS_ADJOINT_PRODUCT is None else BLAS_ADJOINT_PRODUCT
    if blas and dense.dtype.kind == "f" and dense.flags.c_contiguous:
        return lambda X: (X.T @ dense).T
    return lambda X: kernels.matmul(dense, X, threads, True)


def _products(plan: _Plan) -> _Products:
    if plan.backend == "rust":
        kernels, dense, threads = core(), _as_host_contiguous(plan.op.dense), plan.n_threads
        return _Products(
            matmat=lambda X: kernels.matmul(dense, X, threads),
            rmatmat=_adjoint_product(kernels, dense, threads),  # A^H X
            matmul=lambda a, b: kernels.matmul(a, b, threads),
            orthonormalize=lambda Y: _factor(plan, Y)[0],
            qr=lambda Y: _factor(plan, Y),
            basis_qr=None if plan.qr == "householder" else lambda Y: _qr.cholesky_qr2_blas(Y) or _factor(plan, Y),
        )
    if plan.host_kernels:
        kernels, threads = core(), plan.n_threads
        return _Products(
            plan.op.matmat,
            plan.op.rmatmat,
            lambda a, b: kernels.matmul(a, b, threads),
            lambda Y: _orthonormalize(plan, Y),
            lambda Y: _factor(plan, Y),
        )
    return _Products(
        plan.op.matmat,
        plan.op.rmatmat,
        lambda a, b: a @ b,
        lambda Y: _orthonormalize(plan, Y),
        lambda Y: _factor(plan, Y),
    )


def _adaptive_range_finder(plan: _Plan):
    """Smallest basis with ||A - Q Q^T A||_F <= tol ||A||_F (blocked randQB, Martinsson and
    Voronin 2016), at most ``rank`` columns. Returns (Q, B = Q^T A).
    """
    op, xp = plan.op, plan.op.xp
    products = _products(plan)
    m, n = op.shape
    norm2 = op.frobenius_norm() ** 2
    target = plan.tol**2 * norm2
    residual = norm2  # ||A - Q B||_F^2 = ||A||_F^2 - ||B||_F^2
    block = max(1, min(plan.rank, 16))
    Q = xp.zeros((m, 0), dtype=op.dtype, device=op.device)
    B = xp.zeros((0, n), dtype=op.dtype, device=op.device)

    def deflate(Y):  # project out the current basis, twice for orthogonality
        if Q.shape[1] == 0:
            return Y
        for _ in range(2):
            Y = Y - products.matmul(Q, products.matmul(adjoint(xp, Q), Y))
        return Y

    while Q.shape[1] < plan.rank and residual > target:
        b = min(block, plan.rank - Q.shape[1])
        Y = deflate(products.matmat(_gaussian(plan, n, b)))
        for _ in range(plan.n_power_iter):
            Z = products.orthonormalize(products.rmatmat(products.orthonormalize(Y)))
            Y = deflate(products.matmat(Z))
        Q_new = products.orthonormalize(deflate(Y))
        B_new = adjoint(xp, products.rmatmat(Q_new))
        Q, B = xp.concat([Q, Q_new], axis=1), xp.concat([B, B_new], axis=0)
        residual = norm2 - float(xp.sum(abs2(xp, B)))
    # Keep the fewest leading singular directions of B that still meet the target.
    Ub, S, Vt = xp.linalg.svd(B, full_matrices=False)
    energies = [float(s) ** 2 for s in S]  # at most `rank` numbers: host arithmetic is fine
    tail = [sum(energies[j:]) for j in range(len(energies) + 1)]  # tail[j] = sum of S[j:]^2
    keep = next((j for j in range(1, len(tail)) if max(residual, 0.0) + tail[j] <= target), Q.shape[1])
    if max(residual, 0.0) > target:
        warnings.warn(
            f"range_finder: rank {plan.rank} reaches a relative error of {np.sqrt(max(residual, 0) / norm2):.3g}, "
            f"above tol={plan.tol}; returning {plan.rank} columns",
            ConvergenceWarning,
            stacklevel=3,
        )
    logger.debug("adaptive range finder: %d columns for tol=%g", keep, plan.tol)
    return products.matmul(Q, Ub[:, :keep]), (S[:keep, None] * Vt[:keep, :])


def range_finder(
    A,
    rank: int | None = None,
    *,
    size: int | None = None,
    n_oversamples: int = 10,
    n_power_iter: int | str = "auto",
    qr: str = "auto",
    init=None,
    tol: float | None = None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
):
    """Orthonormal basis Q of an approximate dominant range of A (randomized subspace iteration).

    ``Q`` has ``rank + n_oversamples`` columns (capped by min(m, n)) and ``Q @ (Q.T @ A)``
    approximates A nearly as well as its best rank-``rank`` approximation. Note: scikit-learn's
    ``randomized_range_finder(A, size=k, ...)`` returns exactly k columns; pass ``size=k``
    (instead of ``rank``) for the same here. The basis is re-orthonormalized after every product
    with A or A^T, so power iterations never lose accuracy to rounding (scikit-learn's float32
    default does).

    Entries beyond about 1e+-77 (float64; 1e+-9 in float32) are handled by running on
    ``2**k A`` for an exact power of two (the basis of 2**k A is that of A), so inputs scaled by
    1e-300 or 1e300 give the same Q as the unscaled ones. A LinearOperator is used as given.

    Parameters
    ----------
    A : array (m, n), SciPy sparse matrix or SciPy LinearOperator
        Dense arrays of any array-API library (NumPy, CuPy, torch, ...). float32, float64,
        complex64 or complex128; integers are promoted to float64. Complex A is sketched with
        complex Gaussian test matrices and conjugate transposes (the Rust kernels on a dense
        NumPy A, the xp reference elsewhere; a LinearOperator's ``rmatmat`` is the product with
        A^H). Not modified.
    rank : int
        Target rank, 1 <= rank <= min(m, n). With ``tol``, the largest rank allowed. Give
        ``rank`` or ``size``.
    size : int, optional
        Exactly ``size`` columns (1 <= size <= min(m, n)), no oversampling: scikit-learn's
        ``randomized_range_finder(A, size=...)``. Not with ``rank`` or ``tol``.
    n_oversamples : int, default 10
        Extra sketch columns beyond ``rank``.
    n_power_iter : int or "auto", default "auto"
        Subspace iterations (each one product with A^T and one with A). "auto" is
        scikit-learn's rule: 7 when rank (or size) < 0.1 min(m, n), else 4; 2 with ``init``
        (a warm start is already close). Measured on scikit-learn's own noisy test matrices
        (``make_low_rank_matrix``, 100 x 500, rank 10, 6 seeds; scikit-learn's tolerance:
        1.5e-3 on the top 10 singular values): with tail strength 0.5, 2 iterations miss on
        every seed (up to 1e-2), 4 (what "auto" gives here) reach 2e-4 - 6e-4; with tail
        strength 1.0 (a flat spectrum), 2 miss by up to 3e-2, 4 give 1.5e-3 - 4e-3
        (scikit-learn's default gives 2.0e-3: its own test passes ``n_iter=5``), 5 give
        <= 1.4e-3, 7 give <= 2.5e-4. The time grows with the 2 q + 1 products: 4 iterations
        cost about 1.7x, 7 about 3x the time of 2. For a faster, rougher answer pass 1 or 2;
        for flat spectra pass 7 or more.
    qr : {"auto", "cholesky_qr2", "householder"}, default "auto"
        Orthonormalization between products. "auto" is CholeskyQR2 with its fallbacks (fastest,
        see :func:`cholesky_qr2`); "householder" always uses Householder QR.
    init : array (m, k), optional
        Warm start: a previous basis (for example the Q of the last training step when tracking
        a gradient subspace). Replaces the random sketch; missing columns are filled with a
        random sketch, and at least one power iteration runs.
    tol : float, optional
        Adaptive mode: return the smallest basis (at most ``rank`` columns, no oversampling) with
        ||A - Q Q^T A||_F <= tol ||A||_F. Needs a dense or sparse A (a LinearOperator has no ||A||_F).
        Warns :class:`lorainne.ConvergenceWarning` if ``rank`` columns do not reach ``tol``.
    random_state : None, int, numpy Generator or RandomState
        Seed of the Gaussian test matrix (drawn on the host, so every backend sees the same one).
    backend : {"auto", "rust", "numpy", "cupy", "xp"}
    n_threads : int, optional
        Threads of the Rust kernel (default: all cores).

    Returns
    -------
    Q : array (m, l)
        Orthonormal columns, in the input's array library, device and dtype; l = ``size``, or
        min(rank + n_oversamples, m, n), or (with ``tol``) the rank reached.

    Raises
    ------
    ValueError
        NaN/Inf, ndim != 2, empty A, rank or size outside [1, min(m, n)], both rank and size,
        size with tol, negative n_oversamples or n_power_iter, n_power_iter a string other than
        "auto", unknown ``qr`` or ``backend``, ``init`` of the wrong shape, tol outside (0, 1).
    TypeError
        Object or float16 dtypes; a complex ``init`` with a real A; neither rank nor size given.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import range_finder
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 200))
    >>> Q = range_finder(A, 8, random_state=0)
    >>> Q.shape
    (300, 18)
    >>> float(np.linalg.norm(A - Q @ (Q.T @ A)) / np.linalg.norm(A)) < 1e-12
    True
    >>> range_finder(A, size=8, random_state=0).shape      # scikit-learn's size: exactly 8 columns
    (300, 8)
    """
    plan = _plan(
        A, rank, n_oversamples, n_power_iter, qr, init, tol, random_state, backend, n_threads, size, allow_complex=True
    )
    if plan.tol is not None:
        return _adaptive_range_finder(plan)[0]
    if plan.backend == "dask" and not plan.dask_checked:  # one graph, one gather
        n_iter = plan.n_power_iter
        plan, outcome = one_graph(plan, lambda A, omega, held: _dask_graph.range_finder(A, omega, n_iter, held))
        return outcome.value[0] if outcome is not None else _range_finder_xp(plan, *_start(plan))
    if plan.backend == "dask":
        return deferred_checks(plan, lambda p: (_range_finder_xp(p, *_start(p)),))[0]
    start, start_is_range = _start(plan)
    if plan.backend == "rust":
        return core().range_finder(
            _as_host_contiguous(plan.op.dense),
            start,
            start_is_range,
            plan.n_power_iter,
            _rust_qr(plan.qr),
            plan.n_threads,
        )
    return _range_finder_xp(plan, start, start_is_range)


def _rust_qr(qr: str) -> str:
    return "householder" if qr == "householder" else "cholesky"
