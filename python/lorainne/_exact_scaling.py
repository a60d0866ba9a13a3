"""Exact power-of-two rescaling of inputs whose entries are too large or too small.

The randomized algorithms, the QR factorizations and the trace estimators form squares, Gram
matrices and norms of their input: with float64 entries beyond about 1e+-150 those overflow or
underflow (float32: 1e+-19) and the answer is silently wrong. A problem that is scale-equivariant
(SVD, QR, tr(A), tr log(A), ...) is solved instead on ``2**k A``, with ``k`` chosen so that the
largest entry is in [0.5, 1); the result is scaled back. Multiplying by a power of two is exact
(no rounding) unless an entry leaves the normal range, so nothing is lost.

Only inputs whose largest magnitude lies outside ``[2**-band, 2**band]`` are rescaled (band =
256 in float64, 32 in float32): ordinary inputs are used as given, without a copy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from ._backend import core, is_linear_operator, is_scipy_sparse, numpy_dtype

_RESCALABLE = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


def _float_kind(dtype: Any) -> np.dtype | None:
    """The NumPy float32/float64 (or complex64/complex128) dtype of ``dtype``, or None for any other
    dtype. A complex dtype's limits are those of its real part, which is what rescaling needs.
    """
    try:
        host = numpy_dtype(dtype)
    except TypeError:
        return None
    return host if host in _RESCALABLE else None


def scale_exponent(max_abs: float, dtype: Any, band_divisor: int = 4) -> int:
    """The k such that ``max_abs * 2**k`` lies in [0.5, 1), or 0 when no rescaling is needed.

    No rescaling: ``max_abs`` inside [2**-band, 2**band] (band = maxexp / band_divisor: 256 in
    float64 and 32 in float32 by default), zero, NaN or infinite (validation rejects the last two
    later).
    """
    host = _float_kind(dtype)
    if host is None or not (max_abs > 0 and math.isfinite(max_abs)):
        return 0
    exponent = math.frexp(max_abs)[1]
    band = _band(host, band_divisor)
    return 0 if -band <= exponent <= band else -exponent


def _band(host: np.dtype, band_divisor: int = 4) -> int:
    """The exponent bound of the safe band: maxexp / band_divisor (256 in float64, 32 in float32)."""
    return np.finfo(host).maxexp // band_divisor


def times_power_of_two(x: Any, k: int):
    """``x * 2**k`` for an array of any array-API library, exactly (in steps whose factors are
    representable in x's dtype). ``k == 0`` returns ``x`` itself.
    """
    if k == 0:
        return x
    step = np.finfo(numpy_dtype(x.dtype)).maxexp - 2
    while k:
        s = max(-step, min(step, k))
        x = x * (2.0**s)
        k -= s
    return x


def scalar_times_power_of_two(value: float, k: int) -> float:
    """``value * 2**k`` for a Python float (inf when the true value overflows)."""
    if k == 0:
        return float(value)
    with np.errstate(over="ignore", under="ignore"):
        return float(np.ldexp(np.float64(value), k))


def max_abs(A: Any) -> float | None:
    """The largest |entry| of a float32/float64 dense array or SciPy sparse matrix; None for
    operators, other dtypes and empty inputs (those are not rescaled).
    """
    if is_scipy_sparse(A):
        if _float_kind(A.dtype) is None:
            return None
        if A.nnz == 0:
            return 0.0
        data = A.tocoo().data if not hasattr(A, "data") or A.format in ("dok", "lil") else A.data
        return float(np.max(np.abs(data))) if data.size else None
    if is_linear_operator(A) or not (isinstance(A, np.ndarray) or is_array_api_obj(A)):
        return None
    if _float_kind(A.dtype) is None or math.prod(A.shape) == 0:
        return None
    return _largest_magnitude(array_namespace(A), A)


def _largest_magnitude(xp, A) -> float:
    """The largest |a_ij|, NaN or inf when an entry is not finite: for a contiguous real NumPy A in one
    read by the Rust kernel (NaN for any non-finite entry), else from its max and min (no temporary |A|
    of A's size), else from |A| (one reduction: a lazy Dask array is read once).
    """
    if isinstance(A, np.ndarray) and A.dtype.kind == "f":
        if A.dtype.itemsize in (4, 8) and (A.flags.c_contiguous or A.flags.f_contiguous):
            try:
                kernels = core()
            except RuntimeError:  # no compiled module: NumPy's two reads
                kernels = None
            if kernels is not None:
                return kernels.max_abs(A, 1)  # memory-bound: one thread reads as fast
        return max(float(A.max()), -float(A.min()))
    return float(xp.max(xp.abs(A)))


def rescaled(A: Any, *, even: bool = False) -> tuple[Any, int]:
    """``(2**k A, k)`` for a dense array or SciPy sparse matrix whose entries are outside the safe
    band (see the module docstring), else ``(A, 0)``. The input is never modified: rescaling copies.
    Operators (LinearOperator, objects with ``matmat``) are returned as given with k = 0. With
    ``even``, k is even (so that 2**(k/2), for square roots, is exact too).
    """
    return rescaled_finite(A, even=even)[:2]


def rescaled_finite(A: Any, *, even: bool = False) -> tuple[Any, int, bool]:
    """:func:`rescaled` and whether its read of A proved every entry finite: True for a dense NumPy
    float array whose largest magnitude is finite (NaN and inf make it NaN or inf), so the caller
    may skip its own finiteness pass over A; False when unknown (or not finite: the caller's check
    then raises).
    """
    largest = max_abs(A)
    if largest is None:
        return A, 0, False
    finite = isinstance(A, np.ndarray) and math.isfinite(largest)
    k = scale_exponent(largest, A.dtype)
    if even and k % 2:
        k += 1
    if k == 0:
        return A, 0, finite
    if is_scipy_sparse(A):
        scaled = A.tocsr(copy=True)
        scaled.data = times_power_of_two(scaled.data, k)
        return scaled, k, finite
    return times_power_of_two(A, k), k, finite


# A sketch vouches for A's scale only where an entry beyond the band would, but for a probability of at most
# 2**-SKETCH_CONFIDENCE_BITS, have shown in it (:func:`sketch_vouches`).
SKETCH_CONFIDENCE_BITS = 60


def sketch_vouches(sketch_largest: float, start_largest: float, n: int, columns: int, dtype: Any) -> bool:
    """Whether a Gaussian sketch Y = A Omega (Omega: n x ``columns``, largest |omega| ``start_largest``;
    largest |y| ``sketch_largest``, NaN when Y is not finite) proves what the read of A in
    :func:`rescaled_finite` would, so that read can be skipped: A finite and :func:`scale_exponent` 0.

    * Finite: a NaN or infinite a_il makes y_ij non-finite for every j (inf * omega is +-inf or NaN).
    * No entry below the band: |y_ij| <= n max|a| max|omega| (up to rounding), so a largest |y| of at
      least 2**(1 - band) n max|omega| proves max|a| >= 2**-band.
    * No entry above the band, but for a probability below 2**-60: given the other entries of Omega,
      y_ij = a_il omega_lj + c has a density at most 1 / (|a_il| sqrt(2 pi)), so
      P(|y_ij| < 2**-t |a_il|) < 2**-t; the columns are independent, so with t = ceil(60 / columns)
      a largest |y| below 2**(band - t) leaves an |a_il| > 2**band a chance under 2**-60.

    False (read A) otherwise: NaN or inf in Y, a sketch outside that band, or too few columns for it.
    """
    host = _float_kind(dtype)
    if host is None or host.kind != "f" or columns < 1 or not math.isfinite(sketch_largest):
        return False
    band = _band(host)  # scale_exponent's band
    margin = -(-SKETCH_CONFIDENCE_BITS // columns)
    low = math.ldexp(n * start_largest, 1 - band)  # twice the bound: room for the sums' rounding
    return low <= sketch_largest <= math.ldexp(1.0, band - margin)


def rescaled_array(A: Any) -> tuple[Any, int]:
    """``(2**k A, k)`` for a validated dense float array (k = 0, A itself, inside the safe band)."""
    xp = array_namespace(A)
    k = scale_exponent(_largest_magnitude(xp, A), A.dtype)
    return times_power_of_two(A, k), k
