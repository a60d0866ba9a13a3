"""A pass-through of a Dask array's blocks that counts how often each block is read (bench_dask.py).

In a module of its own so that in-process workers run this function by reference (a function of
``__main__`` would be pickled by value, with a copy of the counter).
"""

from __future__ import annotations

import collections

READS: collections.Counter = collections.Counter()


def counted(block, block_info=None):
    READS[tuple(block_info[0]["chunk-location"])] += 1
    return block


def passes() -> float:
    """Reads per block since the last ``READS.clear()``: the passes over the matrix."""
    return sum(READS.values()) / max(1, len(READS))
