"""lorainne: low-rank approximations for machine learning and scientific computing.

Rust kernels on the CPU, CuPy on the GPU, one array-API reference implementation behind both.
"""

from importlib.metadata import PackageNotFoundError, version

from . import compress
from ._backend import backends
from ._warnings import ConvergenceWarning
from .ot import GaussianKernel, SinkhornResult, sinkhorn
from .randomized import SVDResult, cholesky_qr2, householder_qr, randomized_svd, range_finder, svd_certified
from .tensor import CPTensor, NMFResult, SparseTensor, TuckerTensor, cp, factor_match_score, nmf, tucker
from .trace import TraceEstimate, diagonal, spectral_density, spectrum_bounds, trace, trace_function, trace_parametric

try:  # one version, written in the Cargo workspace and read by maturin into the package metadata
    __version__ = version("lorainne")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CPTensor",
    "ConvergenceWarning",
    "GaussianKernel",
    "NMFResult",
    "SVDResult",
    "SinkhornResult",
    "SparseTensor",
    "TraceEstimate",
    "TuckerTensor",
    "backends",
    "cholesky_qr2",
    "compress",
    "cp",
    "diagonal",
    "factor_match_score",
    "householder_qr",
    "nmf",
    "randomized_svd",
    "range_finder",
    "sinkhorn",
    "spectral_density",
    "spectrum_bounds",
    "svd_certified",
    "trace",
    "trace_function",
    "trace_parametric",
    "tucker",
]
