"""Moments, Hankel matrices and symmetric tensors: decompositions that recover points, weights and
components from moments (Prony, multivariate moment matrices, Waring / symmetric CP, Jennrich's
simultaneous diagonalization, Gaussian mixtures by the method of moments).
"""

from ..tensor import jennrich  # one implementation, shared with cp(init="jennrich")
from ._gmm import GMMMoments, gmm_moments, population_moments
from ._multivariate import MomentDecomposition, moment_decomposition, moments_of, monomials
from ._prony import PronyResult, prony
from ._symmetric import symmetric_cp

__all__ = [
    "GMMMoments",
    "MomentDecomposition",
    "PronyResult",
    "gmm_moments",
    "jennrich",
    "moment_decomposition",
    "moments_of",
    "monomials",
    "population_moments",
    "prony",
    "symmetric_cp",
]
