# Hand-written stubs of the compiled Rust module (checked with `python -m mypy.stubtest lorainne._core`).
# Arrays are NumPy float32/float64; the Python facade validates before calling.
import numpy as np
from numpy.typing import NDArray

__version__: str

def default_threads() -> int: ...

# --- randomized linear algebra (rust/py/src/linalg.rs)
def matmul(a: NDArray[np.floating], b: NDArray[np.floating], n_threads: int | None = None) -> NDArray[np.floating]: ...
def householder_qr(a: NDArray[np.floating], block_size: int | None = None, n_threads: int | None = None) -> tuple[NDArray[np.floating], NDArray[np.floating]]: ...
def cholesky_qr2(a: NDArray[np.floating], n_threads: int | None = None) -> tuple[NDArray[np.floating], NDArray[np.floating], int]: ...
def range_finder(
    a: NDArray[np.floating], start: NDArray[np.floating], start_is_range: bool, n_power_iter: int, qr: str, n_threads: int | None = None
) -> NDArray[np.floating]: ...
def randomized_svd(
    a: NDArray[np.floating],
    start: NDArray[np.floating],
    start_is_range: bool,
    rank: int,
    n_power_iter: int,
    qr: str,
    n_threads: int | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]: ...
