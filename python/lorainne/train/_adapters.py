"""Low-rank adapters: LoRA (Hu et al. 2022) with zero or PiSSA (Meng et al. 2024) initialization,
and NOLA (Koohpayegani et al., ICLR 2024) with bases from a counter-based generator, so the same
seed gives the same bits on every array library.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import core, numpy_dtype, resolve
from .._validation import as_float_array, check_int, check_n_threads, check_option, check_random_state
from ..randomized import randomized_svd
from . import _philox

LORA_INITS = ("zeros", "svd")


class LoRAInit(NamedTuple):
    """A LoRA adapter at initialization: ``W_eff = W + scale * B @ A``; unpacks as ``W, A, B, scale``.

    ``W`` is the frozen base (the input itself for ``init="zeros"``, the residual
    ``W - scale * B A`` for ``init="svd"``), ``A`` (r, n), ``B`` (m, r).
    """

    W: Any
    A: Any
    B: Any
    scale: float


def _check_scale(scale) -> float:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, numbers.Real)
        or not math.isfinite(float(scale))
        or float(scale) == 0
    ):
        raise ValueError(f"scale must be a finite nonzero number, got {scale!r}")
    return float(scale)


def lora_init(W, rank: int, *, scale: float = 1.0, init: str = "zeros", random_state=None) -> LoRAInit:
    """Initialize a LoRA adapter ``W + scale * B @ A`` of a weight ``W`` (m, n) = (out, in).

    Parameters
    ----------
    W : array (m, n)
        float32 or float64; not modified.
    rank : int
        Adapter rank, 1 <= rank <= min(m, n).
    scale : float, default 1
        LoRA's ``alpha / r``.
    init : {"zeros", "svd"}, default "zeros"
        "zeros": ``B = 0`` and ``A`` Gaussian with variance ``1 / n`` (the forward pass is
        unchanged and the base is ``W`` itself). "svd" (PiSSA): the principal triplets of
        :func:`lorainne.randomized_svd` give ``B = U sqrt(S / scale)``, ``A = sqrt(S / scale) Vt``
        and the base is the residual ``W - scale * B A``.
    random_state : None, int, numpy Generator or RandomState

    Returns
    -------
    LoRAInit

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import lora_init
    >>> W = np.random.default_rng(0).standard_normal((8, 6))
    >>> base, A, B, scale = lora_init(W, 2, init="svd", random_state=0)
    >>> A.shape, B.shape, bool(np.allclose(base + scale * B @ A, W))
    ((2, 6), (8, 2), True)
    """
    W = as_float_array(W, "W", ndim=2)
    m, n = W.shape
    rank = check_int(rank, "rank", low=1, high=min(m, n))
    scale = _check_scale(scale)
    init = check_option(init, "init", LORA_INITS)
    rng = check_random_state(random_state)
    xp = array_namespace(W)
    if init == "zeros":
        A = rng.standard_normal((rank, n)) / math.sqrt(n)
        A = xp.asarray(A.astype(numpy_dtype(W.dtype)), device=device(W))
        B = xp.zeros((m, rank), dtype=W.dtype, device=device(W))
        return LoRAInit(W, A, B, scale)
    if scale < 0:
        raise ValueError(f"init='svd' needs scale > 0, got {scale!r}")
    U, S, Vt = randomized_svd(W, rank, random_state=rng)
    root = xp.sqrt(S / scale)
    B = U * root[None, :]
    A = root[:, None] * Vt
    return LoRAInit(W - scale * (B @ A), A, B, scale)


def lora_merge(W, A, B, scale: float = 1.0):
    """The merged weight ``W + scale * B @ A`` (a new array; the inputs are not modified).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import lora_merge
    >>> lora_merge(np.zeros((2, 2)), np.ones((1, 2)), np.ones((2, 1)), scale=0.5)
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    W = as_float_array(W, "W", ndim=2)
    A = as_float_array(A, "A", ndim=2)
    B = as_float_array(B, "B", ndim=2)
    scale = _check_scale(scale)
    m, n = W.shape
    if A.shape[1] != n:
        raise ValueError(f"A must have {n} columns (the columns of W), got shape {tuple(A.shape)}")
    if tuple(B.shape) != (m, A.shape[0]):
        raise ValueError(f"B must have shape {(m, A.shape[0])} (rows of W, rank of A), got {tuple(B.shape)}")
    return W + scale * (B @ A)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (0 <= int(seed) < 2**64):
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return int(seed)


def _check_shape(shape, name="shape") -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ValueError(f"{name} must be a tuple of positive integers, got {shape!r}")
    return tuple(check_int(s, name, low=1) for s in shape)


def _rust_has(name: str) -> bool:
    try:
        return hasattr(core(), name)
    except RuntimeError:
        return False


def nola_basis(
    seed: int,
    shape,
    k: int,
    dtype: Any = None,
    *,
    stream: int = 0,
    xp=None,
    device=None,
    backend: str = "auto",
    n_threads: int | None = None,
):
    """``k`` random basis matrices of ``shape`` from the Philox4x32-10 counter-based generator.

    The entries are uniform on [-sqrt(3), sqrt(3)) (mean 0, variance 1), computed with integer
    operations, one exact conversion and one correctly rounded product, so the same
    ``(seed, stream, shape, k, dtype)`` gives identical bits from the Rust kernel, NumPy, CuPy,
    torch and ``array_api_strict`` (the layout is in ``lorainne/train/_philox.py``). The result
    is the first ``k * prod(shape)`` numbers of the stream in C order, so a longer request
    extends a shorter one.

    Parameters
    ----------
    seed : int in [0, 2^64)
    shape : tuple of int
        Shape of one basis matrix.
    k : int
        Number of basis matrices, >= 1.
    dtype : float32 or float64 of the target library, default float32
    stream : int in [0, 2^32), default 0
        Independent streams of one seed (NOLA's A and B bases use 0 and 1).
    xp : array namespace, optional
        Library of the result (default NumPy).
    device : optional
        Device of the result in that library.
    backend : {"auto", "rust", "numpy", "xp"}
        For NumPy results, "auto" runs the Rust kernel; "numpy" the xp reference.
    n_threads : int, optional
        Threads of the Rust kernel.

    Returns
    -------
    array (k, *shape)

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import nola_basis
    >>> a = nola_basis(7, (4, 3), 2)
    >>> a.shape, a.dtype
    ((2, 4, 3), dtype('float32'))
    >>> bool(np.array_equal(a, nola_basis(7, (4, 3), 2, backend="numpy")))
    True
    """
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    k = check_int(k, "k", low=1)
    stream = check_int(stream, "stream", low=0, high=2**32 - 1)
    n_threads = check_n_threads(n_threads)
    if xp is None:
        xp = array_namespace(np.empty(0))
    else:
        xp = array_namespace(xp.empty(0, device=device) if device is not None else xp.empty(0))
    dtype = xp.float32 if dtype is None else dtype
    if dtype not in (xp.float32, xp.float64):
        raise TypeError(f"dtype must be float32 or float64 of the target library, got {dtype!r}")
    size = k * math.prod(shape)
    if size > 2**40:
        raise ValueError(f"nola_basis: {size} numbers requested, more than 2^40")
    probe = xp.empty(0, dtype=dtype, device=device)
    chosen = resolve(probe, backend=backend, rust_kernel=_rust_has("philox_uniform"))
    if chosen == "rust":
        flat = core().philox_uniform(seed, stream, size, dtype == xp.float64, n_threads)
    else:
        flat = _philox.uniform_xp(xp, seed, stream, size, dtype, device)
    return xp.reshape(flat, (k, *shape))


def nola_delta(alpha, beta, seed: int, shape, rank: int, *, scale: float = 1.0, backend: str = "auto"):
    """NOLA's weight update ``scale * B @ A`` with ``A = sum_i alpha_i A_i`` and
    ``B = sum_j beta_j B_j``, the bases drawn by :func:`nola_basis` from ``seed`` (stream 0 for
    the ``A_i`` (rank, n), stream 1 for the ``B_j`` (m, rank)).

    Parameters
    ----------
    alpha : array (k_a,)
        Coefficients of the A bases (the trained parameters).
    beta : array (k_b,)
        Coefficients of the B bases.
    seed : int
    shape : (m, n)
        Shape of the weight.
    rank : int
    scale : float, default 1

    Returns
    -------
    array (m, n)
        Of alpha's library, device and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import nola_delta
    >>> nola_delta(np.ones(3), np.zeros(2), seed=0, shape=(5, 4), rank=2).shape
    (5, 4)
    """
    alpha = as_float_array(alpha, "alpha", ndim=1)
    beta = as_float_array(beta, "beta", ndim=1)
    if beta.dtype != alpha.dtype:
        raise ValueError(f"alpha and beta must have the same dtype, got {alpha.dtype} and {beta.dtype}")
    shape = _check_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (m, n), got {shape!r}")
    m, n = shape
    rank = check_int(rank, "rank", low=1)
    scale = _check_scale(scale)
    xp = array_namespace(alpha)
    dev = device(alpha)
    bases_A = nola_basis(seed, (rank, n), alpha.shape[0], alpha.dtype, stream=0, xp=xp, device=dev, backend=backend)
    bases_B = nola_basis(seed, (m, rank), beta.shape[0], alpha.dtype, stream=1, xp=xp, device=dev, backend=backend)
    A = xp.tensordot(alpha, bases_A, axes=1)
    B = xp.tensordot(beta, bases_B, axes=1)
    return scale * (B @ A)
