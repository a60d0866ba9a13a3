"""Backend selection: which implementation runs a call, chosen from its inputs.

There is no global backend state. Each public function calls :func:`resolve` with its array
arguments and its ``backend=`` keyword:

* ``"auto"``: a CuPy array runs the xp path on the GPU (``"cupy"``); a NumPy array (or a
  SciPy sparse matrix / ``LinearOperator``) runs the Rust kernel where the function has one
  (``"rust"``) and the xp path on NumPy otherwise (``"numpy"``); any other array-API array
  (torch, ``array_api_strict``, ...) runs the xp path (``"xp"``); a ``dask.array.Array`` runs the
  xp path on Dask's namespace (``"dask"``: lazy results, small pieces on the client).
* ``"rust" | "numpy" | "cupy" | "xp" | "dask"`` force one; forcing one the input cannot run on raises
  ``ValueError`` saying why.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import array_api_compat.numpy  # noqa: F401  (eager: see below)
import numpy as np

# ``array_api_compat.array_namespace`` imports its NumPy wrapper on first use. Done inside a call,
# that import holds a module lock; a ``fork()`` from another thread at that moment leaves the child
# waiting on a lock whose owner does not exist there. Importing it here keeps the hot path free of
# imports (tests/test_concurrency.py checks that no public call imports a module).

BACKENDS = ("auto", "rust", "numpy", "cupy", "xp", "dask")

try:  # the compiled core is optional at import time so that a broken build still explains itself
    from . import _core
except ImportError as _error:  # pragma: no cover - exercised only on a broken install
    _core = None
    _CORE_IMPORT_ERROR: ImportError | None = _error
else:
    _CORE_IMPORT_ERROR = None


def core():
    """The compiled Rust module, or raise ``RuntimeError`` explaining why it is missing."""
    if _core is None:
        raise RuntimeError(f"the lorainne Rust core is not available: {_CORE_IMPORT_ERROR}")
    return _core


def is_cupy_array(x: Any) -> bool:
    # Checked without importing CuPy: importing it initializes CUDA, which is slow and may fail.
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_dask_array(x: Any) -> bool:
    # Checked without importing Dask (slow to import): a Dask array exists only if dask.array is loaded.
    array = sys.modules.get("dask.array")
    return array is not None and isinstance(x, array.Array)


def is_scipy_sparse(x: Any) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(x)


def is_linear_operator(x: Any) -> bool:
    linalg = sys.modules.get("scipy.sparse.linalg")
    return linalg is not None and isinstance(x, linalg.LinearOperator)


def is_host_input(x: Any) -> bool:
    """NumPy arrays, SciPy sparse matrices and LinearOperators: the inputs Rust kernels serve."""
    return isinstance(x, np.ndarray) or is_scipy_sparse(x) or is_linear_operator(x)


def numpy_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of the same name as an array library's dtype (``torch.float32`` -> float32)."""
    if isinstance(dtype, np.dtype):  # NumPy's own (and CuPy's): no round trip through its name
        return dtype
    return np.dtype(str(dtype).split(".")[-1])


def to_host(x: Any, dtype: Any = None) -> np.ndarray:
    """Any array as a NumPy array on the host (of ``dtype`` if given): CuPy through ``.get()``,
    others through ``np.asarray``, DLPack or a list.

    For small results (eigenvalues, coefficients, weights) only: it copies device data.
    """
    if is_cupy_array(x):
        x = x.get()
    try:
        return np.asarray(x, dtype=dtype)
    except Exception:  # array_api_strict and friends: go through DLPack or a list
        try:
            return np.asarray(np.from_dlpack(x), dtype=dtype)
        except Exception:
            return np.asarray(x.tolist() if hasattr(x, "tolist") else list(x), dtype=dtype)


def resolve(*arrays: Any, backend: str = "auto", rust_kernel: bool = True) -> str:
    """Pick the backend that runs a call.

    Parameters
    ----------
    *arrays
        The call's array arguments (None entries are ignored).
    backend : {"auto", "rust", "numpy", "cupy", "xp", "dask"}
        The user's choice.
    rust_kernel : bool
        Whether the function has a Rust kernel for these inputs.

    Returns
    -------
    str
        One of ``"rust"``, ``"numpy"``, ``"cupy"``, ``"xp"``, ``"dask"`` (any Dask array input, with
        ``backend`` "auto", "xp" or "dask": the xp path on Dask's namespace).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne._backend import resolve
    >>> resolve(np.ones((3, 2)))
    'rust'
    >>> resolve(np.ones((3, 2)), backend="numpy")
    'numpy'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    present = [a for a in arrays if a is not None]
    all_host = all(is_host_input(a) for a in present)
    any_cupy = any(is_cupy_array(a) for a in present)
    if any(is_dask_array(a) for a in present) and backend in ("auto", "xp", "dask"):
        return "dask"
    if backend == "dask":
        raise ValueError("backend='dask' needs dask.array inputs; wrap the data with dask.array.from_array first")
    if backend == "auto":
        if any_cupy:
            return "cupy"
        if all_host:
            return "rust" if (rust_kernel and _core is not None) else "numpy"
        return "xp"
    if backend == "rust":
        if not rust_kernel:
            raise ValueError("backend='rust': this function has no Rust kernel for these inputs; use 'auto' or 'numpy'")
        if not all_host:
            kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in present if not is_host_input(a)})
            raise ValueError(f"backend='rust' needs NumPy or SciPy inputs, got {kinds}")
        core()
        return "rust"
    if backend == "numpy" and not all_host:
        raise ValueError("backend='numpy' needs NumPy or SciPy inputs; use backend='xp' for other array libraries")
    if backend == "cupy" and not (present and all(is_cupy_array(a) for a in present)):
        raise ValueError("backend='cupy' needs CuPy arrays; move the data with cupy.asarray first")
    return backend


def backends() -> dict[str, Any]:
    """Report what this installation can run.

    Returns
    -------
    dict
        ``{"rust": {...}, "numpy": {...}, "cupy": {...}, "xp": {...}}`` with availability,
        versions, the default thread count of Rust kernels and the CUDA devices CuPy sees.

    Examples
    --------
    >>> import lorainne
    >>> info = lorainne.backends()
    >>> info["rust"]["available"]
    True
    >>> info["rust"]["default_threads"] >= 1
    True
    """
    report: dict[str, Any] = {
        "rust": {
            "available": _core is not None,
            "version": getattr(_core, "__version__", None),
            "default_threads": _core.default_threads() if _core is not None else None,
            "error": None if _CORE_IMPORT_ERROR is None else str(_CORE_IMPORT_ERROR),
        },
        "numpy": {"available": True, "version": np.__version__},
        "cupy": {"available": False, "version": None, "devices": []},
        "xp": {"available": True, "array_api_compat": _version_of("array_api_compat")},
    }
    if importlib.util.find_spec("cupy") is not None:
        try:
            cupy = importlib.import_module("cupy")
            count = cupy.cuda.runtime.getDeviceCount()
            names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(count)]
            report["cupy"] = {"available": count > 0, "version": cupy.__version__, "devices": names}
        except Exception as error:  # no driver, no device: CuPy is installed but unusable
            report["cupy"] = {"available": False, "version": _version_of("cupy"), "devices": [], "error": str(error)}
    return report


def _version_of(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return None
