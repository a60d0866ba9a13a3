"""Tensor decompositions by alternating least squares: CP (plain, nonnegative, regularized,
masked, sparse), Tucker (HOSVD, HOOI, nonnegative) and NMF.

Unfolding convention: Kolda-Bader (see :func:`unfold`); factors are listed in mode order,
``factors[n]`` has shape ``(I_n, R)``.
"""

from ._als import INITS as CP_INITS
from ._block_term import BlockTermTensor, block_term
from ._cmtf import CMTFResult, cmtf
from ._confac import ConfacTensor, confac, max_principal_angle
from ._cp import cp
from ._decouple import DecoupledFunction, decouple
from ._dedicom import DedicomTensor, dedicom
from ._jennrich import jennrich
from ._nmf import NMFResult, nmf
from ._parafac2 import Parafac2Tensor, parafac2
from ._paratuck2 import Paratuck2Tensor, paratuck2
from ._sparse import SparseTensor
from ._structures import CPTensor, TuckerTensor, factor_match_score, fold, unfold
from ._tucker import METHODS as TUCKER_METHODS
from ._tucker import tucker

__all__ = [
    "DecoupledFunction",
    "decouple",
    "DedicomTensor",
    "dedicom",
    "Paratuck2Tensor",
    "paratuck2",
    "ConfacTensor",
    "confac",
    "max_principal_angle",
    "BlockTermTensor",
    "CP_INITS",
    "TUCKER_METHODS",
    "CMTFResult",
    "CPTensor",
    "NMFResult",
    "Parafac2Tensor",
    "SparseTensor",
    "TuckerTensor",
    "block_term",
    "cmtf",
    "cp",
    "factor_match_score",
    "fold",
    "jennrich",
    "nmf",
    "parafac2",
    "tucker",
    "unfold",
]
