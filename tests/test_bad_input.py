"""One table of bad and unusual inputs, run through every public function.

Each input either gives the result of the same data as a contiguous float64 NumPy array (scaled
back where the problem is scale-equivariant) or raises ``ValueError``/``TypeError`` naming the
argument. Never an abort (the risky cases run in a subprocess), a Rust panic message, a hang, a
NaN result or a modified input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import lorainne

PYTHON_DIR = str(Path(lorainne.__file__).resolve().parents[1])  # the lorainne this test runs (built, installed)
RNG = np.random.default_rng(7)
MATRIX = RNG.standard_normal((14, 9))
SQUARE = RNG.standard_normal((12, 12))
PSD = SQUARE @ SQUARE.T / 12 + 0.5 * np.eye(12)
TENSOR = np.einsum("ir,jr,kr->ijk", *(RNG.random((n, 2)) for n in (5, 4, 3))) + 0.01 * RNG.random((5, 4, 3))
POINTS_X, POINTS_Y = RNG.random((9, 2)), RNG.random((11, 2))
GRID = np.linspace(-1.0, 5.0, 7)


@dataclass
class Case:
    """A public function seen through its main array argument.

    ``run(x, s)`` calls the function with ``x`` as the argument ``arg`` (the other arguments
    scaled by ``s`` where the problem needs it) and returns arrays that ``x`` determines;
    scaling the data by ``s`` scales them by ``s ** power`` (None: not scale-equivariant).
    """

    name: str
    arg: str
    data: np.ndarray
    run: Callable
    power: float | None = 1.0
    sparse: bool = False  # takes SciPy sparse matrices
    symmetric: bool = False  # needs a symmetric matrix (negative strides reverse both axes)
    min_ndim: int = 2
    rtol: float = 1e-7
    keeps_dtype: bool = True  # float32 in, float32 out (False: host float64 results)
    xfail: dict[str, str] = field(default_factory=dict)


def _svd(x, s):
    return lorainne.randomized_svd(x, 3, random_state=0).S


def _range(x, s):
    Q = lorainne.range_finder(x, 3, random_state=0, n_oversamples=0)
    return Q @ Q.conj().T


def _hqr(x, s):
    return np.abs(lorainne.householder_qr(x)[1])


def _cqr(x, s):
    return np.abs(lorainne.cholesky_qr2(x)[1])


def _cp(x, s):
    return lorainne.cp(x, 2, random_state=0, n_iter_max=15, tol=0).to_tensor()


def _tucker(x, s):
    return lorainne.tucker(x, (2, 2, 2) if x.ndim == 3 else 2, random_state=0).to_tensor()


def _nmf(x, s):
    result = lorainne.nmf(x, 2, random_state=0, n_iter_max=15, tol=0)
    return result.W @ result.H


def _sinkhorn(x, s):
    y = POINTS_Y[:, : x.shape[1]] if x.ndim == 2 else POINTS_Y[:, 0]
    return np.array([lorainne.sinkhorn(x, y * s, eps=0.5 * s * s, tol=1e-9).cost])


def _kernel(x, s):
    y = POINTS_Y[:, : x.shape[1]] if x.ndim == 2 else POINTS_Y[:, 0]
    return lorainne.GaussianKernel(x, y * s, 0.5 * s * s, method="dense").matvec(np.ones(len(y)))


def _trace(x, s):
    return np.array([lorainne.trace(x, 40, random_state=0).value])


def _trace_function(x, s):
    return np.array([lorainne.trace_function(x, "sqrt", n_vectors=6, degree=12, random_state=0).value])


def _parametric(x, s):
    return lorainne.trace_parametric(
        x, lambda t, lam: np.exp(-t * lam), GRID[:3] / s, n_vectors=6, degree=12, random_state=0
    )


def _density(x, s):
    return lorainne.spectral_density(x, GRID * s, sigma=0.5 * s, n_vectors=6, degree=30, random_state=0)


def _bounds(x, s):
    return np.array(lorainne.spectrum_bounds(x, random_state=0))


CASES = [
    Case("randomized_svd", "A", MATRIX, _svd, sparse=True),
    Case("range_finder", "A", MATRIX, _range, power=0.0, sparse=True),
    Case("householder_qr", "A", MATRIX, _hqr),
    Case("cholesky_qr2", "A", MATRIX, _cqr),
    Case("cp", "X", TENSOR, _cp, rtol=1e-6),
    Case("tucker", "X", TENSOR, _tucker),
    Case("nmf", "X", np.abs(MATRIX), _nmf, sparse=True, rtol=1e-6),
    Case("sinkhorn", "x", POINTS_X, _sinkhorn, power=2.0, min_ndim=1, rtol=1e-6, keeps_dtype=False),
    Case("GaussianKernel", "x", POINTS_X, _kernel, power=0.0, min_ndim=1, keeps_dtype=False),
    Case("trace", "A", PSD, _trace, sparse=True, symmetric=True, keeps_dtype=False),
    Case("trace_function", "A", PSD, _trace_function, power=0.5, sparse=True, symmetric=True, keeps_dtype=False),
    Case("trace_parametric", "A", PSD, _parametric, power=0.0, sparse=True, symmetric=True, keeps_dtype=False),
    Case("spectral_density", "A", PSD, _density, power=-1.0, sparse=True, symmetric=True, keeps_dtype=False),
    Case("spectrum_bounds", "A", PSD, _bounds, sparse=True, symmetric=True, rtol=1e-6, keeps_dtype=False),
]
CASE = {c.name: c for c in CASES}


def _memmap(x: np.ndarray, tmp_path: Path) -> np.ndarray:
    m = np.memmap(tmp_path / "m.dat", dtype=x.dtype, mode="w+", shape=x.shape)
    m[...] = x
    m.flush()
    return np.memmap(tmp_path / "m.dat", dtype=x.dtype, mode="r", shape=x.shape)


def _reversed(x: np.ndarray, case: Case) -> np.ndarray:
    return x[::-1, ::-1] if case.symmetric else x[::-1]


def _readonly(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.flags.writeable = False
    return x


# name -> (transform(x, case, tmp_path), expectation): "same" = the contiguous float64 result,
# an exception type = that error naming the argument.
VARIANTS = {
    "nan": (lambda x, c, p: np.where(np.arange(x.size).reshape(x.shape) == 1, np.nan, x), ValueError),
    "inf": (lambda x, c, p: np.where(np.arange(x.size).reshape(x.shape) == 1, np.inf, x), ValueError),
    "empty": (lambda x, c, p: x[:0], ValueError),
    "0-d": (lambda x, c, p: np.asarray(x.flat[0]), ValueError),
    "1-d": (lambda x, c, p: x[:, 0] if c.symmetric else x.ravel(), ValueError),
    "int64": (lambda x, c, p: np.round(x * 10).astype(np.int64), "same"),
    "int8": (lambda x, c, p: np.round(x * 10).astype(np.int8), "same"),
    "bool": (lambda x, c, p: x > 0.3, "same"),
    "float32": (lambda x, c, p: x.astype(np.float32), "float32"),
    "float16": (lambda x, c, p: x.astype(np.float16), TypeError),
    "complex": (lambda x, c, p: x.astype(np.complex128), TypeError),
    "object": (lambda x, c, p: x.astype(object), TypeError),
    "fortran": (lambda x, c, p: np.asfortranarray(x), "same"),
    "negative strides": (lambda x, c, p: _reversed(x, c), "same"),
    "every other": (lambda x, c, p: x[::2] if not c.symmetric else x[::2, ::2], "same"),
    "read-only": (lambda x, c, p: _readonly(x), "same"),
    "memmap": (lambda x, c, p: _memmap(x, p), "same"),
}
# Functions that take complex input (issue 14): a real matrix stored as complex gives the real
# result ("same"), or a finite result ("runs": range_finder's complex sketch is another sketch).
COMPLEX_INPUT = {"randomized_svd": "same", "householder_qr": "same", "cholesky_qr2": "same", "trace": "same"}
COMPLEX_INPUT["range_finder"] = "runs"
SPARSE_FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok", "csr_array"]


def _same_data(x) -> np.ndarray:
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    return np.array(x.real if np.iscomplexobj(x) else x, dtype=np.float64, order="C")


def _snapshot(x):
    if sp.issparse(x):
        return x.toarray().copy()
    return np.array(x, copy=True)


def _assert_untouched(x, before):
    after = x.toarray() if sp.issparse(x) else np.asarray(x)
    np.testing.assert_array_equal(after, before)


def _check_error(error: BaseException, case: Case) -> None:
    assert "panic" not in str(error).lower(), error
    assert case.arg in str(error), f"{type(error).__name__} does not name {case.arg!r}: {error}"


def _result(case: Case, x, s: float = 1.0) -> list[np.ndarray]:
    out = case.run(x, s)
    arrays = [np.asarray(a) for a in (out if isinstance(out, tuple) else (out,))]
    for a in arrays:
        assert np.all(np.isfinite(a)), f"{case.name}: non-finite result"
    return arrays


def _compare(case: Case, got, want, rtol=None):
    for g, w in zip(got, want, strict=True):
        scale = max(float(np.max(np.abs(w))), 1e-300)
        np.testing.assert_allclose(g, w, rtol=rtol or case.rtol, atol=(rtol or case.rtol) * scale)


def _applicable(case: Case, variant: str) -> bool:
    if variant == "1-d" and case.min_ndim == 1:
        return False
    if variant in ("every other",) and case.name == "cholesky_qr2":
        return False  # 7 x 9 is wide: a documented ValueError, tested below
    return True


@pytest.mark.parametrize(
    ("name", "variant"),
    [(c.name, v) for c in CASES for v in VARIANTS if _applicable(c, v)],
)
def test_array_variants(name, variant, tmp_path):
    case = CASE[name]
    transform, expected = VARIANTS[variant]
    if variant == "complex" and name in COMPLEX_INPUT:
        expected = COMPLEX_INPUT[name]
    x = transform(case.data, case, tmp_path)
    before = _snapshot(x)
    if expected == "runs":
        _result(case, x)
    elif isinstance(expected, type):
        with pytest.raises(expected) as info:
            case.run(x, 1.0)
        _check_error(info.value, case)
    else:
        reference_input = _same_data(x)
        try:
            want = _result(case, reference_input)
        except ValueError as error:  # a 0/1 matrix need not be positive definite, nor a tensor of rank 2
            if variant != "bool":
                raise
            with pytest.raises(ValueError) as info:
                case.run(x, 1.0)
            assert str(info.value) == str(error)
        else:
            got = _result(case, x)
            _compare(case, got, want, rtol=1e-3 if expected == "float32" else None)
            if expected == "float32" and case.keeps_dtype:
                assert all(g.dtype == np.float32 for g in got)
    _assert_untouched(x, before)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [(c.name, f) for c in CASES for f in SPARSE_FORMATS if c.min_ndim == 2 and c.data.ndim == 2],
)
def test_scipy_sparse_formats(name, fmt):
    case = CASE[name]
    dense = np.where(np.abs(case.data) > 0.4, case.data, 0.0)
    if case.symmetric:
        dense = (dense + dense.T) / 2 + 3 * np.eye(len(dense))
    x = sp.csr_array(dense) if fmt == "csr_array" else sp.csr_matrix(dense).asformat(fmt)
    before = _snapshot(x)
    if case.sparse:
        _compare(case, _result(case, x), _result(case, dense))
    else:
        with pytest.raises(TypeError, match=r"sparse .*toarray\(\)") as info:
            case.run(x, 1.0)
        _check_error(info.value, case)
    _assert_untouched(x, before)


SCALE_XFAIL: dict = {}


@pytest.mark.parametrize(
    ("name", "exponent"),
    [
        pytest.param(c.name, e, marks=pytest.mark.xfail(strict=True, reason=SCALE_XFAIL[(c.name, e)]))
        if (c.name, e) in SCALE_XFAIL
        else (c.name, e)
        for c in CASES
        if c.power is not None
        for e in (-200, 200)
    ],
)
def test_scaled_by_1e200(name, exponent):
    # Scale by an exact power of two near 1e+-200, so that only the algorithm can lose accuracy.
    case = CASE[name]
    # OT scales eps by the square of the points' scale: points at 1e+-100 put eps at 1e+-200.
    s = 2.0 ** round(exponent * np.log2(10) / (2 if case.name in ("sinkhorn", "GaussianKernel") else 1))
    x = case.data * s
    want = [w * s**case.power for w in _result(case, case.data)]
    _compare(case, _result(case, x, s), want, rtol=1e-6)


# --------------------------------------------------------------------------- ranks, tolerances, weights

RANKED = {
    "randomized_svd": lambda r: lorainne.randomized_svd(MATRIX, r, random_state=0),
    "range_finder": lambda r: lorainne.range_finder(MATRIX, r, random_state=0),
    "cp": lambda r: lorainne.cp(TENSOR, r, random_state=0, n_iter_max=2, tol=0),
    "tucker": lambda r: lorainne.tucker(TENSOR, r, random_state=0, n_iter_max=2),  # rank=None: full rank
    "nmf": lambda r: lorainne.nmf(np.abs(MATRIX), r, random_state=0, n_iter_max=2, tol=0),
}
RANKS = [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError), ("2", TypeError), (None, TypeError)]


@pytest.mark.parametrize("name", sorted(RANKED))
@pytest.mark.parametrize(("rank", "error"), RANKS)
def test_bad_ranks(name, rank, error):
    if name == "tucker" and rank is None:
        assert lorainne.tucker(TENSOR, None).core.shape == TENSOR.shape  # tensorly's convention: full rank
        return
    with pytest.raises(error, match="rank"):
        RANKED[name](rank)


TOO_LARGE = {
    "randomized_svd": "lorainne.randomized_svd(np.ones((14, 9)), 10)",
    "range_finder": "lorainne.range_finder(np.ones((14, 9)), 10**5)",
    "cp": "lorainne.cp(np.ones((2, 2, 2)), 100000, n_iter_max=1)",
    "tucker": "lorainne.tucker(np.ones((5, 4, 3)), (6, 2, 2))",
    "nmf": "lorainne.nmf(np.ones((14, 9)), 10**5)",
}


@pytest.mark.parametrize(
    "name",
    [n for n in TOO_LARGE],
)
def test_rank_far_too_large_is_a_value_error_in_a_subprocess(name):
    # Run apart: a rank-sized allocation used to abort the whole process.
    code = f"""
    import numpy as np, lorainne
    try:
        {TOO_LARGE[name]}
    except ValueError as error:
        print("ValueError", error)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": PYTHON_DIR, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.startswith("ValueError") and "rank" in result.stdout, result.stdout


TOLERANCES = [
    ("randomized_svd", lambda t: lorainne.randomized_svd(MATRIX, 3, tol=t), (0.0, -1e-3, 1.0, np.nan)),
    ("range_finder", lambda t: lorainne.range_finder(MATRIX, 3, tol=t), (0.0, -1.0)),
    ("cp", lambda t: lorainne.cp(TENSOR, 2, tol=t), (-1e-8, 1.0, np.inf)),
    ("tucker", lambda t: lorainne.tucker(TENSOR, 2, tol=t), (-1e-8, np.nan)),
    ("nmf", lambda t: lorainne.nmf(np.abs(MATRIX), 2, tol=t), (-1e-8,)),
    ("sinkhorn", lambda t: lorainne.sinkhorn(POINTS_X, POINTS_Y, eps=0.5, tol=t), (0.0, -1e-6)),
    ("sinkhorn kernel_tol", lambda t: lorainne.sinkhorn(POINTS_X, POINTS_Y, eps=0.5, kernel_tol=t), (0.0,)),
    ("GaussianKernel", lambda t: lorainne.GaussianKernel(POINTS_X, POINTS_Y, 0.5, tol=t), (0.0, -1.0)),
]


@pytest.mark.parametrize(("name", "call", "values"), TOLERANCES, ids=[t[0] for t in TOLERANCES])
def test_tolerances_at_or_below_zero(name, call, values):
    for value in values:
        with pytest.raises(ValueError, match="tol"):
            call(value)


WEIGHTS = {
    "short a": (dict(a=np.ones(8) / 8), ValueError, "a"),
    "2-D b": (dict(b=np.ones((11, 1)) / 11), ValueError, "b"),
    "negative a": (dict(a=np.r_[-1.0, np.ones(8) / 4]), ValueError, "a"),
    "NaN b": (dict(b=np.r_[np.nan, np.ones(10) / 10]), ValueError, "b"),
    "zero a": (dict(a=np.zeros(9)), ValueError, "a"),
    "complex a": (dict(a=np.ones(9, complex) / 9), TypeError, "a"),
    "y of another dimension": (dict(y=RNG.random((11, 3))), ValueError, "y"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_mismatched_weights_and_points(case):
    kwargs, error, name = WEIGHTS[case]
    args = dict(x=POINTS_X, y=POINTS_Y, eps=0.5) | kwargs
    snapshot = {k: np.array(v, copy=True) for k, v in kwargs.items()}
    with pytest.raises(error, match=rf"\b{name}\b"):
        lorainne.sinkhorn(**args)
    for k, v in snapshot.items():
        np.testing.assert_array_equal(kwargs[k], v)


def test_weights_as_python_lists():
    want = lorainne.sinkhorn(POINTS_X, POINTS_Y, eps=0.5).cost
    assert lorainne.sinkhorn(POINTS_X, POINTS_Y, [1 / 9] * 9, [], eps=0.5).cost == pytest.approx(want)


@pytest.mark.parametrize("shape", [(2.9, 3, 4), "234"])
def test_sparse_tensor_shape_must_be_integers(shape):
    with pytest.raises((TypeError, ValueError), match="shape"):
        lorainne.SparseTensor(np.zeros((1, 3), dtype=np.int64), np.ones(1), shape)


@pytest.mark.parametrize(
    ("coords", "values", "shape", "error", "name"),
    [
        (np.zeros((1, 3), np.int64), np.ones(1), (2, 3), ValueError, "coords"),
        (np.full((1, 3), 5), np.ones(1), (2, 3, 4), ValueError, "coords"),
        (np.full((1, 3), -1), np.ones(1), (2, 3, 4), ValueError, "coords"),
        (np.zeros((1, 3), np.int64), np.array([np.nan]), (2, 3, 4), ValueError, "values"),
        (np.zeros((1, 3), np.int64), np.ones(2), (2, 3, 4), ValueError, "values"),
        (np.zeros((1, 3), np.float64) + 0.5, np.ones(1), (2, 3, 4), TypeError, "coords"),
    ],
)
def test_sparse_tensor_bad_parts(coords, values, shape, error, name):
    with pytest.raises(error, match=name):
        lorainne.SparseTensor(coords, values, shape)


def test_factor_match_score_of_bad_models():
    model = lorainne.cp(TENSOR, 2, random_state=0, n_iter_max=5, tol=0)
    assert lorainne.factor_match_score(model, model) == pytest.approx(1.0)
    with pytest.raises(TypeError):
        lorainne.factor_match_score(model, TENSOR)


def _finite_or_named_error(call, name):
    try:
        out = call()
    except (ValueError, TypeError) as error:
        assert name in str(error) and "panic" not in str(error).lower()
        return
    values = [out.value, out.error_estimate] if hasattr(out, "error_estimate") else [np.asarray(out)]
    assert all(np.all(np.isfinite(v)) for v in values), out


@pytest.mark.parametrize(
    ("call", "name"),
    [
        pytest.param(
            lambda: lorainne.trace(np.zeros((80, 80)), 30, random_state=0),
            "A",
        ),
        pytest.param(
            lambda: lorainne.trace_function(-PSD, "log", n_vectors=4, degree=8, method="chebyshev", random_state=0),
            "A",
        ),
        (lambda: lorainne.trace_function(-PSD, "log", n_vectors=4, degree=8, random_state=0), "A"),
        (lambda: lorainne.trace(np.eye(12), 30, random_state=0), "A"),
    ],
)
def test_degenerate_matrices_give_finite_values_or_named_errors(call, name):
    with np.errstate(all="raise"):
        _finite_or_named_error(call, name)
