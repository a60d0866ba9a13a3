"""Philox4x32-10 counter-based generator on the array API (the xp reference of the Rust kernel).

Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011). Every
word is a pure function of (key, counter), so the stream is the same on every library and device
and any slice of it can be generated without the rest. The 32x32 -> 64-bit products are formed
from 16-bit halves in int64, which every array library has (torch has no full uint32 arithmetic).

Layout (shared with ``rust/core/src/train/philox.rs``): the key is the 64-bit seed split into two
32-bit words (low first); block ``b`` of a stream uses the counter ``(b mod 2^32, b div 2^32,
stream, 0)``. float32 element ``e`` takes word ``e mod 4`` of block ``e div 4`` and keeps its top 24
bits; float64 element ``e`` takes words ``2(e mod 2)`` and ``2(e mod 2) + 1`` of block ``e div 2``
and keeps 27 + 26 = 53 bits. The integer ``i`` (24 or 53 bits) becomes
``(i - 2^(bits-1)) * (sqrt(3) / 2^(bits-1))``: one exact integer-to-float conversion and one
correctly rounded product, so NumPy, Rust, CuPy and torch give the same bits. The values are
uniform on [-sqrt(3), sqrt(3)): mean 0, variance 1.
"""

from __future__ import annotations

import math
from typing import Any

M0, M1 = 0xD2511F53, 0xCD9E8D57  # multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # key increments (golden ratio, sqrt(3) - 1)
MASK32 = 0xFFFFFFFF
SQRT3 = math.sqrt(3.0)
ROUNDS = 10


def _mulhilo(xp, a: int, b):
    """(hi, lo) 32-bit words of the 64-bit product of the constant ``a`` and the words ``b``
    (int64 arrays holding values in [0, 2^32)).
    """
    a_lo, a_hi = a & 0xFFFF, a >> 16
    p_lo = b * a_lo  # < 2^48
    p_hi = b * a_hi  # < 2^48
    mid = p_lo + ((p_hi & 0xFFFF) << 16)  # < 2^49
    lo = mid & MASK32
    hi = (p_hi >> 16) + (mid >> 32)
    return hi & MASK32, lo


def philox4x32(xp, counters: list, key: tuple[int, int]) -> list:
    """Ten Philox rounds on four int64 arrays of 32-bit counter words; returns the four output words."""
    c0, c1, c2, c3 = counters
    k0, k1 = key
    for r in range(ROUNDS):
        hi0, lo0 = _mulhilo(xp, M0, c0)
        hi1, lo1 = _mulhilo(xp, M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r + 1 < ROUNDS:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return [c0, c1, c2, c3]


def split_seed(seed: int) -> tuple[int, int]:
    return seed & MASK32, (seed >> 32) & MASK32


def uniform_xp(xp, seed: int, stream: int, size: int, dtype: Any, device: Any = None):
    """``size`` values of the stream, uniform on [-sqrt(3), sqrt(3)), as a 1-D array of ``dtype``."""
    double = dtype == xp.float64
    per_block = 2 if double else 4
    n_blocks = -(-size // per_block)
    blocks = xp.arange(n_blocks, dtype=xp.int64, device=device)
    zero = xp.zeros_like(blocks)
    counters = [blocks & MASK32, blocks >> 32, zero + (stream & MASK32), zero]
    words = philox4x32(xp, counters, split_seed(seed))
    if double:
        a = xp.stack([words[0], words[2]], axis=1)  # element 2b uses words (0, 1), 2b + 1 uses (2, 3)
        b = xp.stack([words[1], words[3]], axis=1)
        ints = ((a >> 5) << 26) + (b >> 6)  # 53 bits
        half, scale = 2**52, SQRT3 / 2.0**52
    else:
        ints = xp.stack(words, axis=1) >> 8  # 24 bits
        half, scale = 2**23, SQRT3 / 2.0**23
    ints = xp.reshape(ints, (-1,))[:size] - half
    return xp.astype(ints, dtype) * xp.asarray(scale, dtype=dtype, device=device)
