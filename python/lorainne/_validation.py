"""Checks run once at the public boundary. Each error names the argument and the value received."""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ._backend import is_linear_operator, is_scipy_sparse


def describe_dtype(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


def float_dtype_of(x: Any, name: str, *, allow_complex: bool = False):
    """The working float dtype of ``x``: float32/float64 kept, integers and bool promoted to
    float64; complex64/complex128 kept when ``allow_complex`` (the functions that handle complex
    input pass it). Other dtypes raise ``TypeError`` naming the argument and the dtype.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    accepted = "float32, float64, complex64 or complex128" if allow_complex else "float32 or float64"
    if is_scipy_sparse(x) or is_linear_operator(x) or isinstance(x, np.ndarray):
        kind = np.dtype(dtype).kind if dtype is not None else "O"
        if kind == "f" and np.dtype(dtype).itemsize in (4, 8):
            return np.dtype(dtype)
        if allow_complex and kind == "c" and np.dtype(dtype).itemsize in (8, 16):
            return np.dtype(dtype)
        if kind in "iub":
            return np.dtype(np.float64)
        raise TypeError(
            f"{name} has unsupported dtype {describe_dtype(dtype)}: use {accepted} (integers are promoted to float64)"
        )
    xp = array_namespace(x)
    if dtype == xp.float32 or dtype == xp.float64:
        return dtype
    if allow_complex and (dtype == xp.complex64 or dtype == xp.complex128):
        return dtype
    if xp.isdtype(dtype, ("integral", "bool")):
        return xp.float64
    raise TypeError(
        f"{name} has unsupported dtype {describe_dtype(dtype)}: use {accepted} (integers are promoted to float64)"
    )


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | None = None,
    finite: bool = True,
    sparse_hint: str = "",
    allow_complex: bool = False,
):
    """Return ``x`` as a float32/float64 array of its own library (never modified in place:
    promotion copies), after checking ``ndim``, emptiness and finiteness. With
    ``allow_complex``, complex64/complex128 arrays are kept as they are.

    A SciPy sparse matrix raises ``TypeError`` saying what to pass instead (``sparse_hint`` adds
    the caller's own sparse alternative).
    """
    if is_scipy_sparse(x):
        raise TypeError(
            f"{name} is a SciPy sparse {type(x).__name__}, which this function does not take: "
            f"pass a dense array ({name}.toarray()){sparse_hint}"
        )
    dtype = float_dtype_of(x, name, allow_complex=allow_complex)
    xp = array_namespace(x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got an array of shape {tuple(x.shape)}")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    if finite and not _all_finite(xp, x):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def _all_finite(xp, x) -> bool:
    """Whether every entry of x is finite. A finite sum proves it in one pass without the n-entry
    boolean temporary of isfinite (NaN and +-inf make the sum NaN or inf); a sum that overflowed
    on finite entries falls back to the entrywise check.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is the expected slow case
        if bool(xp.isfinite(xp.sum(x))):
            return True
    return bool(xp.all(xp.isfinite(x)))


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]``: ``TypeError`` for anything that is not an integer (bools
    included: ``True`` is not a count), ``ValueError`` for an integer out of range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str | None = None,
) -> float:
    """A finite real number in the interval given by ``low``/``high`` (closed unless ``*_open``).

    The one rule of the package: ``TypeError`` when ``value`` is not a real number (a string,
    None, a bool, a complex, an array), ``ValueError`` when it is one but outside the interval
    or not finite. ``what`` replaces the generated description of the interval in the message.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    number = float(value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if not np.isfinite(number) or below or above:
        if what is None:
            left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
            right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
            what = f"a finite number in {left}, {right}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def check_option(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {allowed}, got {value!r} of type {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_verbose(verbose: Any) -> int:
    """``verbose`` as an int level: ``False``/``True`` are 0/1 (as in tensorly, POT and
    scikit-learn), integers >= 0 are levels (2 logs every sweep or every 100 iterations).
    Every public function taking ``verbose`` uses this check.
    """
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be a bool or an integer >= 0, got {verbose!r}")
    return check_int(verbose, "verbose", low=0)


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask where the OS has one)."""
    counter = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if counter is not None:
        count = counter()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count()
    return max(1, count or 1)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside lorainne."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def check_n_threads(n_threads: Any) -> int | None:
    """``None`` (all CPUs the process may use) or an integer >= 1.

    A count above :func:`available_cpus` is capped at it with a ``UserWarning``: Rust kernels
    keep one pool of worker threads per size, so more threads than CPUs only adds start-up time
    and contention (1000 threads made a 60 x 40 problem take seconds) and a huge count would
    exhaust the process's threads.
    """
    if n_threads is None:
        return None
    n_threads = check_int(n_threads, "n_threads", low=1)
    limit = available_cpus()
    if n_threads > limit:
        warnings.warn(
            f"n_threads={n_threads} is more than the {limit} CPUs this process may use; using {limit}",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
        n_threads = limit
    return n_threads


def check_tol(tol: Any, name: str = "tol", *, allow_zero: bool = False) -> float | None:
    """``None`` or a relative tolerance in (0, 1) (``[0, 1)`` with ``allow_zero``)."""
    if tol is None:
        return None
    what = "a number in [0, 1) (0 runs exactly n_iter_max iterations)" if allow_zero else "a number in (0, 1)"
    return check_real(tol, name, low=0.0, high=1.0, low_open=not allow_zero, high_open=True, what=what)


def check_random_state(random_state: Any) -> np.random.Generator:
    """None, an int seed, a ``np.random.Generator`` or a ``np.random.RandomState``."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, (bool, np.bool_)):
            raise TypeError(
                f"random_state must be None, an int, a numpy Generator or RandomState, got {random_state!r}"
            )
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(f"random_state must be a nonnegative integer seed, got {random_state!r}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Derive a Generator from the legacy state so the caller's stream advances.
        return np.random.default_rng(random_state.randint(0, 2**63 - 1, dtype=np.int64))
    raise TypeError(
        f"random_state must be None, an int, a numpy Generator or RandomState, got {type(random_state).__name__}"
    )


class _SeededGenerator:
    """``np.random.default_rng(seed)``, built on first use (attribute access), for a path that may
    draw nothing: the exact small-side SVD skips the ~15-40 us of seeding a PCG64 for nothing.
    """

    __slots__ = ("_generator", "_seed")

    def __init__(self, seed):
        self._seed, self._generator = seed, None

    def __getattr__(self, name: str):
        if name.startswith("_"):  # unset slots, copy and pickle hooks: never the Generator's
            raise AttributeError(name)
        if self._generator is None:
            self._generator = np.random.default_rng(self._seed)
        return getattr(self._generator, name)


def lazy_random_state(random_state: Any):
    """:func:`check_random_state` with the same checks and errors, but a seed (None, an int, a
    ``SeedSequence``) gives a Generator seeded on first use: the same numbers as
    ``np.random.default_rng(seed)`` (None: fresh entropy then). A Generator is returned as is and a
    ``RandomState`` advanced now, as :func:`check_random_state` does.
    """
    is_seed = random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence))
    if not is_seed or isinstance(random_state, (bool, np.bool_)):
        return check_random_state(random_state)
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        return check_random_state(random_state)  # raises
    return _SeededGenerator(random_state)
