"""Tucker decomposition: HOSVD and HOOI (orthonormal factors), nonnegative Tucker (HALS factor
updates, multiplicative core updates), masked Tucker (EM imputation). xp reference only.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import is_dask_array, resolve
from .._validation import check_int, check_n_threads, check_option, check_random_state, check_verbose
from . import _dask, _dask_sparse, _xp
from ._als import (
    Run,
    StopRule,
    check_callback,
    check_mask,
    check_tensor,
    check_tol0,
    gaussian,
    sketched_left_vectors,
    warn_unconverged,
)
from ._guard import scale_exponent, times_power_of_two
from ._structures import TuckerTensor, edge_mode_product, mode_product, multi_mode_product, unfold

logger = logging.getLogger("lorainne")

METHODS = ("hooi", "hosvd")


def _check_ranks(rank, shape) -> tuple[int, ...]:
    if rank is None:
        return tuple(int(s) for s in shape)  # full multilinear rank, as tensorly's rank=None
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool):
        rank = check_int(rank, "rank", low=1)
        return tuple(min(rank, s) for s in shape)
    try:
        if isinstance(rank, (str, bytes)):
            raise TypeError
        ranks = tuple(rank)
    except TypeError:
        raise TypeError(f"rank must be an int or a sequence of ints, got {rank!r}") from None
    if len(ranks) != len(shape):
        raise ValueError(f"rank must give one rank per mode ({len(shape)}), got {ranks}")
    return tuple(check_int(r, f"rank[{n}]", low=1, high=shape[n]) for n, r in enumerate(ranks))


def complete_basis(xp, U, k: int, rng):
    """``U``'s first ``k`` columns, completed to ``k`` orthonormal columns when it has fewer (as
    tensorly's SVD completes an orthonormal basis): Gaussian columns orthogonalized against ``U``
    (twice, for orthogonality to working precision) by a QR. Needs ``k <= U.shape[0]``.
    """
    have = U.shape[1]
    if have >= k:
        return U[:, :k]
    extra = gaussian(xp, rng, (U.shape[0], k - have), U.dtype, U)
    for _ in range(2):
        extra = extra - U @ (U.T @ extra)
        extra, _ = xp.linalg.qr(extra)
    return xp.concat([U, extra], axis=1)


def _leading_left_vectors(xp, M, k: int, rng):
    """The k leading left singular vectors of M (exact SVD of small matrices, randomized otherwise),
    completed to an orthonormal basis of k columns when M has fewer than k columns.
    """
    from ..randomized import randomized_svd

    if min(M.shape) <= 2 * k + 10 or M.shape[0] * M.shape[1] <= 250_000:
        U, _, _ = xp.linalg.svd(M, full_matrices=False)
        return complete_basis(xp, U, k, rng)
    return randomized_svd(M, k, random_state=rng)[0]


def _hosvd_factors(xp, X, ranks, rng, rust=False, n_threads=None):
    """Exact truncated HOSVD for small tensors; for large ones the Khatri-Rao-sketched range
    finder of :func:`lorainne.cp`'s SVD start (two passes over X per mode, no unfolded copy).
    """
    factors = []
    for n, r in enumerate(ranks):
        if X.shape[n] * (math.prod(X.shape) // X.shape[n]) <= 200_000:
            U = xp.linalg.svd(unfold(X, n), full_matrices=False)[0]
        else:
            U = sketched_left_vectors(X, n, r, rng, rust=rust, n_threads=n_threads)[0]
        factors.append(complete_basis(xp, U, r, rng))
    return factors


def _split(shape) -> int:
    """The smallest s with I_0 ... I_{s-1} >= I_s ... I_{N-1}, within 1..N-1 (as the Rust CP sweep)."""
    total = math.prod(shape)
    left = 1
    for s in range(1, len(shape)):
        left *= shape[s - 1]
        if left * left >= total:
            return s
    return len(shape) - 1


def _core_of(X, factors, product=None):
    return multi_mode_product(X, factors, transpose=True, product=product)


def _masked_error_and_imputation(xp, X, mask, core, factors, norm_x_sq):
    """Relative error on the observed entries, and X with its missing entries filled by the model (EM)."""
    model = multi_mode_product(core, factors)
    residual = xp.where(mask, X - model, xp.zeros_like(X))
    error = float(xp.linalg.vector_norm(residual)) / math.sqrt(norm_x_sq) if norm_x_sq > 0 else 0.0
    return error, xp.where(mask, X, model)


def _end_of_sweep(core, factors, errors, stop: StopRule, callback, verbose):
    """Log, call back, test the stopping rule: the stop status, or None to go on."""
    if verbose:
        logger.info("tucker: sweep %d, relative error %.6g", len(errors), errors[-1])
    if callback is not None and callback(
        TuckerTensor(core, list(factors), n_iter=len(errors), errors=errors), errors[-1]
    ):
        return "callback"
    return stop(errors, False)


def _hooi(xp, X, factors, n_iter_max, tol, rng, callback, verbose, norm_x_sq, mask=None, data=None, product=None):
    stop = StopRule(tol, X.dtype)
    errors: list[float] = []
    status = "max_iter"
    data = X if data is None else data
    last = len(factors) - 1
    split = _split(data.shape)
    for _ in range(n_iter_max):
        # Two-level dimension tree: one pass over X for the modes before the split, one after.
        for half in (range(split), range(split, last + 1)):
            others = [k for k in range(last + 1) if k not in half]
            partial = multi_mode_product(
                data, [f if k in others else None for k, f in enumerate(factors)], transpose=True, product=product
            )
            for n in half:
                Y = multi_mode_product(
                    partial, [f if (k in half and k != n) else None for k, f in enumerate(factors)], transpose=True
                )
                factors[n] = _leading_left_vectors(xp, unfold(Y, n), factors[n].shape[1], rng)
        core = mode_product(Y, factors[last].T, last)  # Y of the last mode: no extra pass over X
        if mask is None:
            errors.append(
                math.sqrt(max(norm_x_sq - float(xp.sum(core * core)), 0.0) / norm_x_sq) if norm_x_sq > 0 else 0.0
            )
        else:
            error, data = _masked_error_and_imputation(xp, X, mask, core, factors, norm_x_sq)
            errors.append(error)
        state = _end_of_sweep(core, factors, errors, stop, callback, verbose)
        if state is not None:
            status = state
            break
    return Run(factors, errors, status), _core_of(data, factors, product)


def _nonnegative_tucker(xp, X, factors, core, n_iter_max, tol, callback, verbose, norm_x_sq, mask=None, data=None):
    """HALS updates of each factor (the Tucker model is linear in it), then accelerated projected
    gradient steps (FISTA) on the core, whose problem is a small nonnegative least squares with
    Hessian ``kron(U_n^T U_n)``.
    """
    stop = StopRule(tol, X.dtype)
    tiny = 1e-12 if X.dtype == xp.float64 else 1e-7
    errors: list[float] = []
    status = "max_iter"
    data = X if data is None else data
    ndim = len(factors)
    for _ in range(n_iter_max):
        for n in range(ndim):
            grams = [f.T @ f for f in factors]
            # X_(n) ~ U_n B^T with B^T = G_(n) (kron of the other U_k)^T
            M = unfold(multi_mode_product(data, factors, transpose=True, skip=n), n) @ unfold(core, n).T
            GW = multi_mode_product(core, grams, skip=n)  # core x_k (U_k^T U_k), k != n
            V = unfold(GW, n) @ unfold(core, n).T
            factors[n] = _xp.hals_columns(xp, factors[n], M, V, 0.0, 0.0, True)
            # Unit columns, the scale moved into the core (keeps the two blocks balanced).
            norms = xp.linalg.vector_norm(factors[n], axis=0)
            norms = xp.where(norms > 0, norms, xp.ones_like(norms))
            factors[n] = factors[n] / norms[None, :]
            core = mode_product(core, _diag(xp, norms), n)
        grams = [f.T @ f for f in factors]
        numerator = multi_mode_product(data, factors, transpose=True)
        core = _core_fista(xp, core, numerator, grams, tiny)
        model_inner = float(xp.sum(core * numerator))
        model_sq = float(xp.sum(core * multi_mode_product(core, grams)))
        if mask is None:
            errors.append(
                math.sqrt(max(norm_x_sq - 2 * model_inner + model_sq, 0.0) / norm_x_sq) if norm_x_sq > 0 else 0.0
            )
        else:
            error, data = _masked_error_and_imputation(xp, X, mask, core, factors, norm_x_sq)
            errors.append(error)
        state = _end_of_sweep(core, factors, errors, stop, callback, verbose)
        if state is not None:
            status = state
            break
    return Run(factors, errors, status), core


def _diag(xp, values):
    return values[:, None] * xp.eye(values.shape[0], dtype=values.dtype, device=device(values))


def _core_fista(xp, core, target, grams, tiny, steps: int = 25):
    """``min_{G >= 0} 1/2 <G, G x_n grams_n> - <G, target>`` by FISTA from ``core``."""
    lipschitz = 1.0
    for g in grams:
        lipschitz *= float(xp.max(xp.linalg.eigvalsh(g)))
    if lipschitz <= tiny:
        return core
    zero = xp.zeros_like(core)
    y, t = core, 1.0
    for _ in range(steps):
        gradient = multi_mode_product(y, grams) - target
        new = xp.maximum(y - gradient / lipschitz, zero)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = new + ((t - 1.0) / t_new) * (new - core)
        core, t = new, t_new
    return core


def tucker(
    X,
    rank=None,
    *,
    method: str = "hooi",
    init="svd",
    n_iter_max: int = 100,
    tol: float = 1e-8,
    nonnegative: bool = False,
    mask=None,
    random_state=None,
    backend: str = "auto",
    n_threads: int | None = None,
    verbose: bool | int = 0,
    callback: Callable | None = None,
) -> TuckerTensor:
    """Tucker decomposition ``X ~ core x_0 U_0 x_1 U_1 ... x_{N-1} U_{N-1}``.

    ``method="hosvd"``: each ``U_n`` holds the leading left singular vectors of the Kolda-Bader
    unfolding ``X_(n)`` and the core is ``X x_n U_n^T`` (one pass, no iterations).
    ``method="hooi"``: higher-order orthogonal iteration from that start: each sweep replaces
    ``U_n`` by the leading left singular vectors of ``(X x_{k != n} U_k^T)_(n)``. The relative
    error comes from the core, ``||X||^2 - ||core||^2`` (orthonormal factors), and the loop stops
    when it changed by less than ``tol``.

    Parameters
    ----------
    X : array of order N >= 2
        float32 or float64 (integers are promoted); any array-API library, or a ``dask.array``
        chunked along any modes (each contraction runs chunk by chunk on the workers; core and
        factors come back as NumPy; no ``mask`` or ``nonnegative``). Not modified. Any
        finite scale: data whose largest magnitude is below ``2^-128`` or above ``2^128``
        (float32: ``2^-16``, ``2^16``) is decomposed after an exact power-of-two rescaling and the
        core is scaled back.
    rank : int, sequence of N ints, or None
        Multilinear rank; an int is used for every mode (capped by the mode's size). None: the
        full rank ``X.shape`` (tensorly's ``rank=None``), or the ranks of ``init`` when given.
        A rank above the product of the other ranks is kept: the factor's columns beyond the
        rank of its unfolding complete an orthonormal basis, as tensorly's do.
    method : {"hooi", "hosvd"}, default "hooi"
    init : {"svd", "random"}, TuckerTensor or (core, factors), default "svd"
        Start of HOOI / nonnegative Tucker: HOSVD (exact for small unfoldings, by the
        Khatri-Rao-sketched range finder of :func:`cp` for large ones), or random orthonormal
        factors. With ``nonnegative=True`` the "svd" start (absolute values of the HOSVD
        factors) is often a poor one: "random" usually converges much faster. A TuckerTensor
        or ``(core, factors)`` pair (tensorly's form) is copied and used as given: HOOI starts
        from its factors, nonnegative Tucker from its core and factors (then nonnegative).
    n_iter_max : int, default 100
    tol : float, default 1e-8
        Stopping tolerance on the change of the relative error between two sweeps; 0 runs
        exactly ``n_iter_max`` sweeps. (tensorly's ``tucker`` defaults to ``tol=1e-4``, on the
        same quantity; its ``non_negative_tucker`` to 1e-4 as well.)
    nonnegative : bool, default False
        Nonnegative core and factors (HALS factor updates, multiplicative core updates); the
        factors are then not orthonormal. X must have no negative entries.
    mask : boolean array of X's shape, optional
        True where observed; missing entries are imputed by EM (HOOI or nonnegative only).
    random_state : None, int, numpy Generator or RandomState
    backend : {"auto", "numpy", "cupy", "xp"}
        Tucker runs the xp reference on every backend; with "auto" on NumPy input, the mode
        products on the first and last modes of the full tensor (the passes over X) and the
        sketch of the SVD start run in Rust.
    n_threads : int, optional
        Threads of the Rust contractions (default: all cores; BLAS picks its own threads).
    verbose : bool or int, default 0
    callback : callable, optional
        ``callback(state: TuckerTensor, rel_error) -> bool``; True stops.

    Returns
    -------
    TuckerTensor
        ``core`` (rank) and ``factors`` (I_n x R_n), with ``n_iter``, ``errors``, ``converged``.

    Raises
    ------
    ValueError
        NaN/Inf, order < 2, a rank outside [1, I_n], unknown method/init, an init of the wrong
        shapes or with NaN/Inf (or negative entries with ``nonnegative=True``), mask of the
        wrong shape, negative entries with ``nonnegative=True``.
    TypeError
        Unsupported dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne import tucker
    >>> rng = np.random.default_rng(0)
    >>> core = rng.standard_normal((3, 2, 2))
    >>> U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip((10, 9, 8), core.shape)]
    >>> X = np.einsum("abc,ia,jb,kc->ijk", core, *U)
    >>> t = tucker(X, (3, 2, 2), random_state=0)
    >>> t.rank, t.errors[-1] < 1e-7
    ((3, 2, 2), True)
    """
    if _dask_sparse.has_sparse_chunks(X):
        raise TypeError(
            "X is a Dask array of sparse chunks: tucker takes dense chunks (X.map_blocks(lambda b: b.todense())); "
            "cp takes sparse.COO chunks"
        )
    on_dask = is_dask_array(X)
    if on_dask:  # finiteness, max |x| and ||X||^2 in one pass over the chunks
        X, dask_norm_sq, largest = _dask.checked(X)
    else:
        X = check_tensor(X, "X")
    xp = np if on_dask else array_namespace(X)  # on Dask: NumPy factors and core on the client
    given = None if isinstance(init, str) else _as_tucker_pair(init)
    if given is not None and rank is None:
        rank = tuple(int(s) for s in given[0].shape)
    ranks = _check_ranks(rank, X.shape)
    method = check_option(method, "method", METHODS)
    if isinstance(init, str) and init not in ("svd", "random"):
        raise ValueError(f"init must be 'svd', 'random' or a TuckerTensor, got {init!r}")
    n_iter_max = check_int(n_iter_max, "n_iter_max", low=0)
    tol = check_tol0(tol)
    n_threads = check_n_threads(n_threads)
    verbose = check_verbose(verbose)
    callback = check_callback(callback)
    rng = check_random_state(random_state)
    if on_dask and (mask is not None or nonnegative):
        raise ValueError("mask and nonnegative=True are not supported on a Dask tensor: compute X first")
    mask = check_mask(mask, X, xp)
    if nonnegative and bool(xp.any(X < 0)):
        raise ValueError("X has negative entries, but nonnegative=True")
    if method == "hosvd" and (mask is not None or nonnegative):
        raise ValueError("method='hosvd' has no mask or nonnegative variant: use method='hooi'")
    if method == "hosvd" and given is not None:
        raise ValueError("method='hosvd' computes its factors from X: a given init needs method='hooi'")
    exponent = scale_exponent(largest if on_dask else float(xp.max(xp.abs(X))), X.dtype)
    X = times_power_of_two(X, -exponent)
    if callback is not None and exponent:
        user_callback = callback

        def callback(state, error):
            core = times_power_of_two(state.core, exponent)
            return user_callback(TuckerTensor(core, state.factors, n_iter=state.n_iter, errors=state.errors), error)

    chosen = resolve(X, backend=backend, rust_kernel=False)
    rust_sketch = chosen == "numpy" and isinstance(X, np.ndarray) and backend == "auto"
    # Rust edge contractions on NumPy input
    product = (lambda T, M, mode: edge_mode_product(T, M, mode, n_threads)) if rust_sketch else None

    if on_dask:
        args = (method, given, init, n_iter_max, tol, rng, callback, verbose, exponent, dask_norm_sq)
        return _tucker_dask(X, ranks, *args)
    if mask is not None:
        observed = xp.where(mask, X, xp.zeros_like(X))
        norm_x_sq = float(xp.linalg.vector_norm(observed)) ** 2
        mean = float(xp.sum(observed)) / float(xp.sum(xp.astype(mask, X.dtype)))
        data = xp.where(mask, X, xp.full(X.shape, mean, dtype=X.dtype, device=device(X)))
    else:
        norm_x_sq = float(xp.linalg.vector_norm(X)) ** 2
        data = X
    given_core = None
    if given is not None:
        given_core, factors = _given_start(xp, X, given, ranks, nonnegative)
        given_core = times_power_of_two(given_core, -exponent)
    elif init == "svd":
        factors = _hosvd_factors(xp, data, ranks, rng, rust=rust_sketch, n_threads=n_threads)
    else:
        factors = [xp.linalg.qr(gaussian(xp, rng, (s, r), X.dtype, X))[0] for s, r in zip(X.shape, ranks, strict=False)]
    if method == "hosvd":
        core = _core_of(X, factors, product)
        error = math.sqrt(max(norm_x_sq - float(xp.sum(core * core)), 0.0) / norm_x_sq) if norm_x_sq > 0 else 0.0
        core = times_power_of_two(core, exponent)
        return TuckerTensor(core, factors, n_iter=1, errors=[error], converged=True)
    if nonnegative:
        factors = [xp.abs(f) for f in factors]
        core = xp.abs(_core_of(data, factors)) if given_core is None else given_core
        run, core = _nonnegative_tucker(xp, X, factors, core, n_iter_max, tol, callback, verbose, norm_x_sq, mask, data)
    else:
        run, core = _hooi(xp, X, factors, n_iter_max, tol, rng, callback, verbose, norm_x_sq, mask, data, product)
    warn_unconverged(run, tol, "tucker", n_iter_max, stacklevel=2)
    core = times_power_of_two(core, exponent)
    return TuckerTensor(
        core, run.factors, n_iter=len(run.errors), errors=run.errors, converged=run.status == "converged"
    )


def _tucker_dask(X, ranks, method, given, init, n_iter_max, tol, rng, callback, verbose, exponent, norm_sq):
    """HOSVD / HOOI of a Dask tensor: each contraction ``X x_{k != n} U_k^T`` is one pass over the
    chunks reduced by a tree (``_dask.contraction``), the SVDs run on the client on I_n x prod R
    matrices, as in memory (same steps, same random numbers: the same iterates from the same start).
    HOOI contracts all other modes for each mode (N passes per sweep; in memory a dimension tree
    shares them: 2 passes); the core comes from the last mode's contraction, as in memory.
    """
    norm_x_sq = _dask.squared_norm(X) if exponent else norm_sq
    if given is not None:
        core, factors = _given_start(np, X, given, ranks, False)
    elif init == "svd":
        small: list = []
        factors = []
        for n, r in enumerate(ranks):  # per mode, as in memory: the same random numbers in the same order
            factors.append(complete_basis(np, _dask.hosvd_left_vectors(X, n, r, rng, small), r, rng))
    else:
        host = np.empty(0, dtype=np.dtype(X.dtype))
        shapes = zip(X.shape, ranks, strict=True)
        factors = [np.linalg.qr(gaussian(np, rng, shape, X.dtype, host))[0] for shape in shapes]
    last = X.ndim - 1

    def error_of(core):
        return math.sqrt(max(norm_x_sq - float(np.sum(core * core)), 0.0) / norm_x_sq) if norm_x_sq > 0 else 0.0

    if method == "hosvd":
        core = _dask.core_from(_dask.contraction(X, factors, last), factors, last, X.shape)
        error = error_of(core)
        return TuckerTensor(times_power_of_two(core, exponent), factors, n_iter=1, errors=[error], converged=True)
    stop, errors, status, core = StopRule(tol, X.dtype), [], "max_iter", None
    for _ in range(n_iter_max):
        for n in range(X.ndim):
            M = _dask.contraction(X, factors, n)
            factors[n] = _leading_left_vectors(np, M, factors[n].shape[1], rng)
        core = _dask.core_from(M, factors, last, X.shape)
        errors.append(error_of(core))
        state = _end_of_sweep(core, factors, errors, stop, callback, verbose)
        if state is not None:
            status = state
            break
    if core is None:  # no sweep ran
        core = _dask.core_from(_dask.contraction(X, factors, last), factors, last, X.shape)
    run = Run(factors, errors, status)
    warn_unconverged(run, tol, "tucker", n_iter_max, stacklevel=3)
    core = times_power_of_two(core, exponent)
    return TuckerTensor(core, factors, n_iter=len(errors), errors=errors, converged=status == "converged")


def _as_tucker_pair(init):
    if isinstance(init, TuckerTensor):
        return init.core, list(init.factors)
    try:
        core, factors = init
        factors = list(factors)
    except (TypeError, ValueError):
        raise TypeError(
            f"init must be 'svd', 'random', a TuckerTensor or a (core, factors) pair, got {type(init).__name__}"
        ) from None
    if not hasattr(core, "shape"):
        raise TypeError(f"init core must be an array, got {type(core).__name__}")
    return core, factors


def _given_start(xp, X, given, ranks, nonnegative):
    """A (core, factors) start checked against X and ``ranks``, copied to X's library, device and dtype."""
    core, factors = given
    if len(factors) != X.ndim or tuple(core.shape) != tuple(ranks):
        raise ValueError(
            f"init must have a core of shape {tuple(ranks)} and {X.ndim} factors, got a core of shape "
            f"{tuple(core.shape)} and {len(factors)} factors"
        )
    out = []
    for n, f in enumerate([core, *factors]):
        name = "init core" if n == 0 else f"init factor {n - 1}"
        if n and tuple(f.shape) != (X.shape[n - 1], ranks[n - 1]):
            raise ValueError(f"{name} must have shape ({X.shape[n - 1]}, {ranks[n - 1]}), got {tuple(f.shape)}")
        f = xp.astype(xp.asarray(f, device=device(X)), X.dtype, copy=True)  # never modify the caller's start
        if not bool(xp.all(xp.isfinite(f))):
            raise ValueError(f"{name} contains NaN or infinity")
        if nonnegative and bool(xp.any(f < 0)):
            raise ValueError(f"{name} has negative entries, but nonnegative=True")
        out.append(f)
    return out[0], out[1:]
