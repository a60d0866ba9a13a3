"""Exact power-of-two rescaling of OT problems: points times 2**k, eps times 4**k."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

#: Spreads within [2**-SCALE_FREE, 2**SCALE_FREE] are solved as given (nothing over- or underflows).
SCALE_FREE = 32


def _scale_exponent(x, y, eps: float, *, with_cost: bool = True) -> int:
    """The power of two ``k`` with which the problem is solved: points times ``2**k``, eps times
    ``4**k`` (exact: C / eps, the plan and the marginal errors do not change; potentials, cost and
    dual scale by ``4**k``). ``k`` brings the spread of the points (the largest side of their joint
    bounding box) into [0.5, 1), as long as eps times ``4**k`` stays within [2**-1000, 2**1000];
    ``k = 0`` when the spread is already moderate. Raises ValueError when squared distances / eps
    (or, ``with_cost``, the squared distances themselves) exceed the float64 range.
    """
    xp = array_namespace(x)
    x64, y64 = xp.astype(x, xp.float64), xp.astype(y, xp.float64)
    hi = xp.maximum(xp.max(x64, axis=0), xp.max(y64, axis=0))
    lo = xp.minimum(xp.min(x64, axis=0), xp.min(y64, axis=0))
    half_spread = float(xp.max(hi / 2 - lo / 2))  # halves first: hi - lo may overflow
    e = math.frexp(eps)[1]
    k_min, k_max = -((1000 + e) // 2), (1000 - e) // 2
    k = -math.frexp(half_spread)[1] - 1 if half_spread > 0.0 else 0
    log2_diam2 = 2.0 * (math.log2(half_spread) + 1.0) + math.log2(x.shape[1]) if half_spread > 0.0 else -math.inf
    if with_cost and log2_diam2 > 1020.0:
        raise ValueError(
            f"x and y span {2.0 * half_spread:.3g} (per coordinate): their squared distances, the cost and the "
            "potentials exceed the float64 range; rescale the points (and eps by the square of that factor)"
        )
    if log2_diam2 - math.log2(eps) > 1000.0:
        raise ValueError(
            f"eps = {eps!r} is too small for points spread over {2.0 * half_spread:.3g} (per coordinate): "
            "squared distances / eps reach 2**1000 and exceed the float64 range; raise eps"
        )
    if abs(k) <= SCALE_FREE and k_min <= 0 <= k_max:
        return 0
    return min(max(k, k_min), k_max)
