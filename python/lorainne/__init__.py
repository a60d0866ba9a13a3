"""lorainne: low-rank approximations for machine learning and scientific computing.

Rust kernels on the CPU, CuPy on the GPU, one array-API reference implementation behind both.
"""

from importlib.metadata import PackageNotFoundError, version

from . import completion, compress, moments, spiked, train
from ._backend import backends
from ._warnings import ConvergenceWarning
from .completion import CompletionResult, complete, sense
from .ot import GaussianKernel, SinkhornResult, barycenter, sinkhorn, sinkhorn_divergence
from .randomized import SVDResult, cholesky_qr2, householder_qr, randomized_svd, range_finder, svd_certified
from .tensor import (
    BlockTermTensor,
    CMTFResult,
    ConfacTensor,
    CPTensor,
    DecoupledFunction,
    DedicomTensor,
    NMFResult,
    Parafac2Tensor,
    Paratuck2Tensor,
    SparseTensor,
    TuckerTensor,
    block_term,
    cmtf,
    confac,
    cp,
    decouple,
    dedicom,
    factor_match_score,
    max_principal_angle,
    nmf,
    parafac2,
    paratuck2,
    tucker,
)
from .trace import TraceEstimate, diagonal, spectral_density, spectrum_bounds, trace, trace_function, trace_parametric

try:  # one version, written in the Cargo workspace and read by maturin into the package metadata
    __version__ = version("lorainne")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BlockTermTensor",
    "CMTFResult",
    "CPTensor",
    "CompletionResult",
    "ConfacTensor",
    "ConvergenceWarning",
    "DecoupledFunction",
    "DedicomTensor",
    "GaussianKernel",
    "NMFResult",
    "Parafac2Tensor",
    "Paratuck2Tensor",
    "SVDResult",
    "SinkhornResult",
    "SparseTensor",
    "TraceEstimate",
    "TuckerTensor",
    "backends",
    "barycenter",
    "block_term",
    "cholesky_qr2",
    "cmtf",
    "complete",
    "completion",
    "compress",
    "confac",
    "cp",
    "decouple",
    "dedicom",
    "diagonal",
    "factor_match_score",
    "householder_qr",
    "max_principal_angle",
    "moments",
    "nmf",
    "parafac2",
    "paratuck2",
    "randomized_svd",
    "range_finder",
    "sense",
    "sinkhorn",
    "sinkhorn_divergence",
    "spectral_density",
    "spectrum_bounds",
    "spiked",
    "svd_certified",
    "trace",
    "trace_function",
    "trace_parametric",
    "train",
    "tucker",
]
