"""Randomized linear algebra: QR factorizations, the randomized range finder, the randomized SVD
(subspace iteration or block Krylov) and the self-certifying SVD.

The modules, one job each (imports go down this list only):

* ``_qr_factorizations``: :func:`householder_qr`, :func:`cholesky_qr2`;
* ``_range_finder``: :func:`range_finder`, the validated plan and the products shared by the
  drivers, :class:`SVDResult`;
* ``_krylov``: the block Krylov basis (Musco and Musco 2015) with its Rayleigh-Ritz step;
* ``_svd``: :func:`randomized_svd` (``method="subspace" | "block_krylov"``);
* ``_certified``: :func:`svd_certified`, block Krylov grown until a rank or tolerance is
  certified, with residual norms and an a-posteriori error bound;
* ``_cqrrpt``: :func:`cqrrpt`, randomized QR with column pivoting (CholeskyQR on a sketch-pivoted,
  sketch-preconditioned matrix).
"""

from ._certified import CertifiedSVD, chernoff_factor, svd_certified
from ._cqrrpt import CQRRPTResult, cqrrpt
from ._qr_factorizations import cholesky_qr2, householder_qr
from ._range_finder import SVDResult, auto_power_iterations, range_finder
from ._svd import SVD_METHODS, auto_krylov_depth, randomized_svd

__all__ = [
    "CQRRPTResult",
    "CertifiedSVD",
    "SVDResult",
    "SVD_METHODS",
    "auto_krylov_depth",
    "auto_power_iterations",
    "chernoff_factor",
    "cholesky_qr2",
    "cqrrpt",
    "householder_qr",
    "randomized_svd",
    "range_finder",
    "svd_certified",
]
