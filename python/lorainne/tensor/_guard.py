"""Guards of the tensor solvers against inputs that would otherwise break them: ranks far above what
the data supports, allocations that cannot succeed, and data whose scale under- or overflows the
squares and products the solvers form.

Scaling: every decomposition here is scale-equivariant (``X -> c X`` multiplies the weights or the
core by ``c``, leaves the factors and the relative errors alone). Data whose largest magnitude lies
outside ``[2^-m, 2^m]`` (``m`` = an eighth of the dtype's exponent range: 128 for float64, 16 for
float32) is multiplied by an exact power of two that brings it into ``[0.5, 1)``, decomposed, and
the result multiplied back: no rounding is added, and ``||X||^2`` no longer overflows (entries
above ~1e154 in float64) or underflows (below ~1e-154).
"""

from __future__ import annotations

import math
import os

from .. import _exact_scaling
from .._exact_scaling import times_power_of_two  # noqa: F401  (the solvers import it from here)


def scale_exponent(peak: float, dtype) -> int:
    """``e`` such that ``data / 2**e`` has its largest magnitude in ``[0.5, 1)`` when ``peak`` (the
    largest magnitude) is outside the band above, else 0 (the data is left alone).
    """
    return -_exact_scaling.scale_exponent(peak, dtype, band_divisor=8)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(nbytes: int, what: str) -> None:
    """MemoryError naming the size when ``nbytes`` exceeds this machine's physical memory (checked
    before any allocation, so the process is never aborted by the allocator).
    """
    total = physical_memory()
    if total is not None and nbytes > total:
        raise MemoryError(
            f"{what} needs about {nbytes / 2**30:.3g} GiB ({nbytes} bytes), more than this machine's "
            f"{total / 2**30:.3g} GiB of memory"
        )


def cp_rank_limit(shape) -> int:
    """``prod(shape)``, the number of entries: a CP model with more components than the data has
    entries is rejected. (Every tensor of the shape has CP rank at most ``prod(shape) /
    max(shape)``, the number of fibres of its longest mode; ranks between the two are allowed,
    as tensorly allows them, but cannot fit better.)
    """
    return math.prod(int(s) for s in shape)


def check_cp_rank(rank: int, shape, itemsize: int, name: str = "cp") -> None:
    """ValueError for a rank above :func:`cp_rank_limit`, MemoryError when the factors, their Gram
    matrices and the solver's work arrays (about ``itemsize (4 sum(I_n) R + 4 N R^2)`` bytes)
    cannot fit in memory.
    """
    limit = cp_rank_limit(shape)
    if rank > limit:
        raise ValueError(
            f"rank={rank} is above the number of entries of a tensor of shape {tuple(shape)} ({limit}); "
            f"every tensor of this shape has CP rank <= prod(shape) / max(shape) = {limit // max(shape)}"
        )
    ndim = len(shape)
    nbytes = itemsize * (4 * sum(int(s) for s in shape) * rank + 4 * ndim * rank * rank)
    check_memory(nbytes, f"{name} with rank={rank} on shape {tuple(shape)}")
