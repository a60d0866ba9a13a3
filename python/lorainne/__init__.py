"""lorainne: low-rank approximations for machine learning and scientific computing.

Rust kernels on the CPU, CuPy on the GPU, one array-API reference implementation behind both.
"""

from ._backend import backends
from ._warnings import ConvergenceWarning
from .ot import GaussianKernel, SinkhornResult, sinkhorn
from .randomized import SVDResult, cholesky_qr2, householder_qr, randomized_svd, range_finder

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "GaussianKernel",
    "SVDResult",
    "SinkhornResult",
    "backends",
    "cholesky_qr2",
    "householder_qr",
    "randomized_svd",
    "range_finder",
    "sinkhorn",
]
