"""Neural-network weight compression: low-rank factorizations of dense layers (truncated,
Fisher-weighted, activation-aware and whitened SVD), global rank allocation under a parameter
budget, NF4 quantization and LQ-LoRA, CP / Tucker-2 factorizations of convolutions, and
compression of a whole state dict (safetensors in and out).

Layout convention: a dense layer is ``y = W x`` with W of shape (out, in) (torch
``Linear.weight``); functions taking weights accept ``transpose=True`` for (in, out) layouts.
"""

from ._allocate import RankAllocation, allocate_ranks
from ._lowrank import LowRankFactors, low_rank
from ._stats import ActivationStats, load_stats, save_stats

__all__ = [
    "ActivationStats",
    "LowRankFactors",
    "RankAllocation",
    "allocate_ranks",
    "load_stats",
    "low_rank",
    "save_stats",
]
