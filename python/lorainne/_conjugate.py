"""Conjugate transposes for the xp references, so one code path serves real and complex input.

For a real dtype every helper returns its argument's plain counterpart (``X.T``, ``x``, ``x * x``)
without a copy, so the real paths run exactly the arithmetic they ran before complex support.
"""

from __future__ import annotations

from typing import Any


def is_complex(x: Any) -> bool:
    """Whether ``x`` (an array or a dtype's owner) has a complex floating dtype."""
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    if kind is not None:  # NumPy dtypes answer at once
        return kind == "c"
    name = str(getattr(x, "dtype", ""))
    return "complex" in name


def conj(xp: Any, x: Any):
    """The complex conjugate of ``x``; ``x`` itself when real."""
    return xp.conj(x) if is_complex(x) else x


def adjoint(xp: Any, X: Any):
    """The conjugate transpose X^H of a 2-D array (``X.T`` when real)."""
    return xp.conj(X).T if is_complex(X) else X.T


def real_part(xp: Any, x: Any):
    """The real part of ``x``; ``x`` itself when real."""
    return xp.real(x) if is_complex(x) else x


def abs2(xp: Any, x: Any):
    """|x|^2 elementwise, real (``x * x`` when real)."""
    if is_complex(x):
        re, im = xp.real(x), xp.imag(x)
        return re * re + im * im
    return x * x


def unit_phases(xp: Any, x: Any):
    """The unit phases x / |x| elementwise (the signs of a real x), 1 where x == 0: the unimodular
    factors that make a diagonal nonnegative or a pivot positive.
    """
    if is_complex(x):
        magnitude = xp.abs(x)
        safe = xp.where(magnitude > 0, magnitude, xp.ones_like(magnitude))
        phase = x / xp.astype(safe, x.dtype)
        return xp.where(magnitude > 0, phase, xp.ones_like(x))
    one = xp.ones_like(x)
    return xp.where(x < 0, -one, one)
