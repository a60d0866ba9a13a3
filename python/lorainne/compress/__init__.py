"""Neural-network weight compression: low-rank factorizations of dense layers (truncated,
Fisher-weighted, activation-aware and whitened SVD), global rank allocation under a parameter
budget, NF4 quantization and LQ-LoRA, CP / Tucker-2 factorizations of convolutions, and
compression of a whole state dict (safetensors in and out).

Layout convention: a dense layer is ``y = W x`` with W of shape (out, in) (torch
``Linear.weight``); functions taking weights accept ``transpose=True`` for (in, out) layouts.
"""

from ._allocate import RankAllocation, allocate_ranks
from ._conv import ConvFactorization, conv_cp, conv_tucker2, filter_cp
from ._lowrank import LowRankFactors, low_rank
from ._quant import BitAllocation, LQLoRAResult, QuantizedTensor, lq_lora, lq_lora_budget, nf4_dequantize, nf4_quantize
from ._state_dict import CompressedStateDict, CompressionReport, LayerReport, compress_state_dict
from ._stats import ActivationStats, load_stats, save_stats

__all__ = [
    "ActivationStats",
    "BitAllocation",
    "ConvFactorization",
    "conv_cp",
    "conv_tucker2",
    "filter_cp",
    "LQLoRAResult",
    "QuantizedTensor",
    "lq_lora",
    "lq_lora_budget",
    "nf4_dequantize",
    "nf4_quantize",
    "CompressedStateDict",
    "CompressionReport",
    "LayerReport",
    "LowRankFactors",
    "RankAllocation",
    "allocate_ranks",
    "compress_state_dict",
    "load_stats",
    "low_rank",
    "save_stats",
]
