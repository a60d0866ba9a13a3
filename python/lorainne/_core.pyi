# Hand-written stubs of the compiled Rust module (checked with `python -m mypy.stubtest lorainne._core`).
# Arrays are NumPy float32/float64; the Python facade validates before calling.
from collections.abc import Callable
from typing import final

import numpy as np
from numpy.typing import NDArray

__version__: str

def default_threads() -> int: ...

# --- randomized linear algebra (rust/py/src/randomized.rs)
def matmul(
    a: NDArray[np.inexact], b: NDArray[np.inexact], n_threads: int | None = None, adjoint: bool = False
) -> NDArray[np.inexact]: ...
def max_abs(a: NDArray[np.floating], n_threads: int | None = None) -> float: ...
def tridiagonal_eigh_top(
    d: NDArray[np.float64], e: NDArray[np.float64], k: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None: ...
def householder_qr(
    a: NDArray[np.inexact], block_size: int | None = None, n_threads: int | None = None
) -> tuple[NDArray[np.inexact], NDArray[np.inexact]]: ...
def cholesky_qr2(
    a: NDArray[np.inexact], n_threads: int | None = None
) -> tuple[NDArray[np.inexact], NDArray[np.inexact], int]: ...
def range_finder(
    a: NDArray[np.inexact],
    start: NDArray[np.inexact],
    start_is_range: bool,
    n_power_iter: int,
    qr: str,
    n_threads: int | None = None,
) -> NDArray[np.inexact]: ...
def randomized_svd(
    a: NDArray[np.inexact],
    start: NDArray[np.inexact],
    start_is_range: bool,
    rank: int,
    n_power_iter: int,
    qr: str,
    n_threads: int | None = None,
) -> tuple[NDArray[np.inexact], NDArray[np.inexact], NDArray[np.inexact]]: ...

# --- trace and spectral density (rust/py/src/trace.rs); moments and coefficients come back flat (f64)
def trace_chebyshev(
    a: NDArray[np.floating],
    x: NDArray[np.floating],
    center: float,
    half_width: float,
    n_steps: int,
    full: bool,
    n_threads: int | None = None,
) -> NDArray[np.float64]: ...
def trace_chebyshev_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.floating],
    ncols: int,
    x: NDArray[np.floating],
    center: float,
    half_width: float,
    n_steps: int,
    full: bool,
    n_threads: int | None = None,
) -> NDArray[np.float64]: ...
def trace_lanczos(
    a: NDArray[np.floating], v0: NDArray[np.floating], n_steps: int, n_threads: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def trace_lanczos_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.floating],
    ncols: int,
    v0: NDArray[np.floating],
    n_steps: int,
    n_threads: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...

# --- tensor decompositions (rust/py/src/tensor.rs)
def mttkrp(
    x: NDArray[np.floating], factors: list[NDArray[np.floating]], mode: int, n_threads: int | None = None
) -> NDArray[np.floating]: ...
def cp_als(
    x: NDArray[np.floating],
    factors: list[NDArray[np.floating]],
    *,
    n_threads: int | None = None,
    n_iter_max: int,
    tol: float,
    l2_reg: float,
    norm_x_sq: float | None = None,
    nonnegative: bool = False,
    l1_reg: float = 0.0,
) -> tuple[list[NDArray[np.floating]], NDArray[np.float64], int, bool]: ...
def parafac2_project(
    x: NDArray[np.floating], rows: list[int], factors: list[NDArray[np.floating]], n_threads: int | None = None
) -> tuple[NDArray[np.floating], NDArray[np.floating], float]: ...
def cp_als_sparse(
    coords: NDArray[np.int64],
    values: NDArray[np.floating],
    shape: list[int],
    factors: list[NDArray[np.floating]],
    *,
    n_threads: int | None = None,
    n_iter_max: int,
    tol: float,
    l2_reg: float,
    norm_x_sq: float | None = None,
    nonnegative: bool = False,
    l1_reg: float = 0.0,
) -> tuple[list[NDArray[np.floating]], NDArray[np.float64], int, bool]: ...
def sparse_mttkrp(
    coords: NDArray[np.int64],
    values: NDArray[np.floating],
    shape: list[int],
    factors: list[NDArray[np.floating]],
    mode: int,
    n_threads: int | None = None,
) -> NDArray[np.floating]: ...
def contract_edge(
    x: NDArray[np.floating], u: NDArray[np.floating], first: bool, n_threads: int | None = None
) -> NDArray[np.floating]: ...

# --- entropic optimal transport (rust/py/src/ot.rs)
@final
class KernelStats:
    @property
    def near_blocks(self) -> int: ...
    @property
    def far_blocks(self) -> int: ...
    @property
    def pruned_blocks(self) -> int: ...
    @property
    def near_entries(self) -> int: ...
    @property
    def far_terms(self) -> int: ...
    @property
    def max_order(self) -> int: ...
    @property
    def far_cached(self) -> int: ...
    @property
    def far_rows(self) -> int: ...
    @property
    def far_general(self) -> int: ...
    @property
    def far_general_points(self) -> int: ...
    @property
    def cache_order(self) -> int: ...
    def to_dict(self) -> dict[str, int]: ...

@final
class SinkhornResult:
    @property
    def f(self) -> NDArray[np.float64]: ...
    @property
    def g(self) -> NDArray[np.float64]: ...
    @property
    def n_iter(self) -> int: ...
    @property
    def marginal_error(self) -> float: ...
    @property
    def converged(self) -> bool: ...
    @property
    def cost(self) -> float: ...
    @property
    def dual(self) -> float: ...
    @property
    def stats(self) -> KernelStats: ...
    @property
    def memory_bytes(self) -> int: ...

def sinkhorn_log(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    *,
    n_threads: int | None = None,
    callback: Callable[[int, float, float], bool] | None = None,
    eps: float,
    tol: float,
    n_iter_max: int,
    kernel_tol: float,
    leaf_size: int,
    eps_scaling: float | None = None,
    exact: bool = False,
    relax: bool = True,
    anderson: int = 0,
    coarse_leaf: int = 0,
    rho_a: float | None = None,
    rho_b: float | None = None,
    mass: float = 1.0,
    stored: bool = False,
) -> SinkhornResult: ...
def sinkhorn_log_symmetric(
    x: NDArray[np.float64],
    a: NDArray[np.float64],
    *,
    n_threads: int | None = None,
    callback: Callable[[int, float, float], bool] | None = None,
    eps: float,
    tol: float,
    n_iter_max: int,
    kernel_tol: float,
    leaf_size: int,
    eps_scaling: float | None = None,
    exact: bool = False,
    relax: bool = True,
    anderson: int = 0,
    coarse_leaf: int = 0,
    rho_a: float | None = None,
    rho_b: float | None = None,
    mass: float = 1.0,
    stored: bool = False,
) -> SinkhornResult: ...
def stored_kernel_apply(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    g_hat: NDArray[np.float64],
    f: NDArray[np.float64],
    g: NDArray[np.float64],
    eps: float,
    n_threads: int | None = None,
) -> tuple[tuple[NDArray[np.float64], float], tuple[NDArray[np.float64], float]]: ...
def stored_kernel_fused(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    f_hat: NDArray[np.float64],
    f: NDArray[np.float64],
    g: NDArray[np.float64],
    eps: float,
    omega: float = 1.0,
    damping: float = 1.0,
    shift: float | None = None,
    n_threads: int | None = None,
) -> tuple[tuple[NDArray[np.float64], float], NDArray[np.float64], tuple[NDArray[np.float64], float]]: ...

@final
class HierarchicalKernel:
    def __new__(
        cls, x: NDArray[np.float64], y: NDArray[np.float64], eps: float, tol: float, leaf_size: int, exact: bool = False
    ) -> HierarchicalKernel: ...
    def log_apply(
        self, log_v: NDArray[np.float64], transpose: bool = False, n_threads: int | None = None
    ) -> NDArray[np.float64]: ...
    def log_apply_columns(
        self,
        log_v: NDArray[np.float64],
        columns: NDArray[np.float64],
        transpose: bool = False,
        n_threads: int | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
    def stats(self) -> KernelStats: ...
    def memory_bytes(self) -> int: ...
    def tree_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]: ...

# --- low-rank training (rust/py/src/train.rs)
def philox_uniform(
    seed: int, stream: int, size: int, double: bool, n_threads: int | None = None
) -> NDArray[np.floating]: ...

# --- matrix completion (rust/py/src/completion.rs)
def completion_solve_rows(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int32] | NDArray[np.int64],
    data: NDArray[np.float64],
    factor: NDArray[np.float64],
    x0: NDArray[np.float64],
    reg: float,
    reg_under: float,
    solver: str,
    cg_max_iter: int,
    cg_tol: float,
    q: NDArray[np.float64],
    lam: NDArray[np.float64],
    n_threads: int | None = None,
    residual: bool = False,
) -> tuple[NDArray[np.float64], int, int, int, float]: ...
def completion_observed_error(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    n_threads: int | None = None,
) -> float: ...
def completion_csr_product(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int32] | NDArray[np.int64],
    data: NDArray[np.float64],
    x: NDArray[np.float64],
    n_threads: int | None = None,
    low_precision: bool = False,
) -> NDArray[np.float64]: ...
def completion_transpose(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int32] | NDArray[np.int64],
    data: NDArray[np.float64],
    n: int,
) -> tuple[NDArray[np.int64], NDArray[np.int32] | NDArray[np.int64], NDArray[np.float64], bool]: ...
