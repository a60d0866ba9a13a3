"""Tensor decompositions by alternating least squares: CP (plain, nonnegative, regularized,
masked, sparse), Tucker (HOSVD, HOOI) and NMF.

Unfolding convention: Kolda-Bader (see :func:`unfold`); factors are listed in mode order.
"""

from ._cp import cp
from ._sparse import SparseTensor
from ._structures import CPTensor, TuckerTensor, factor_match_score, fold, unfold

__all__ = ["CPTensor", "SparseTensor", "TuckerTensor", "cp", "factor_match_score", "fold", "unfold"]
