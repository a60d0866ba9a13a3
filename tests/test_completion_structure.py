"""The column side of the observations built in Rust (``_core.completion_transpose``, a counting
sort over the columns) against SciPy's ``tocsc()``, the kernels on int32 indices as on int64 ones,
and the observations the facade builds."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import _core
from lorainne.completion._observed import as_observed


def _raw_csr(rng, m, n, nnz, dtype):
    """The CSR arrays of m x n with ``nnz`` stored entries (int64 pointers, ``dtype`` indices):
    unsorted within rows, repeated coordinates kept (not summed), empty rows and columns where the
    draw leaves them."""
    rows = np.sort(rng.integers(0, m, nnz))
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    return indptr, rng.integers(0, n, nnz).astype(dtype), rng.standard_normal(nnz)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 30),
    n=st.integers(1, 30),
    nnz=st.integers(0, 120),
    dtype=st.sampled_from([np.int32, np.int64]),
    seed=st.integers(0, 2**16),
)
def test_transpose_matches_scipy_tocsc(m, n, nnz, dtype, seed):
    raw = _raw_csr(np.random.default_rng(seed), m, n, nnz, dtype)
    before = tuple(a.copy() for a in raw)
    t_indptr, t_indices, t_data, finite = _core.completion_transpose(*raw, n)
    S = sp.csr_matrix(tuple(reversed(raw)), shape=(m, n))  # SciPy may narrow the index dtype: same values
    assert S.nnz == nnz  # repeats not summed
    T = S.tocsc()  # the same stable counting sort: rows in order within each column, repeats kept
    np.testing.assert_array_equal(t_indptr, T.indptr)
    np.testing.assert_array_equal(t_indices, T.indices)
    np.testing.assert_array_equal(t_data, T.data)
    assert finite and t_indptr.dtype == np.int64 and t_indices.dtype == np.int32  # m < 2**31 rows
    # repeated coordinates stay separate entries; summed, both sides hold the same matrix
    back = sp.csr_matrix((t_data, t_indices, t_indptr), shape=(n, m))
    np.testing.assert_array_equal(back.toarray().T, S.toarray())
    for a, b in zip(before, raw, strict=True):
        np.testing.assert_array_equal(a, b)  # the input is only read


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 15),
    n=st.integers(1, 15),
    k=st.sampled_from([1, 3, 8, 20, 41]),
    density=st.floats(0.0, 1.0),
    solver=st.sampled_from(["cg", "exact"]),
    seed=st.integers(0, 2**16),
)
def test_kernels_read_int32_indices_as_int64(m, n, k, density, solver, seed):
    rng = np.random.default_rng(seed)
    S = sp.random(m, n, density=density, format="csr", random_state=rng)
    indptr, data = S.indptr.astype(np.int64), S.data
    F, x0 = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    lam, q = np.linalg.eigh(F.T @ F / n)
    rest = (data, F, x0, 1e-3, 0.1, solver, k, 1e-10, np.ascontiguousarray(q), np.maximum(lam, 0.0))
    wide = _core.completion_solve_rows(indptr, S.indices.astype(np.int64), *rest, residual=True)
    narrow = _core.completion_solve_rows(indptr, S.indices.astype(np.int32), *rest, residual=True)
    np.testing.assert_array_equal(wide[0], narrow[0])
    assert wide[1:] == narrow[1:]
    X = rng.standard_normal((n, 5))
    np.testing.assert_array_equal(
        _core.completion_csr_product(indptr, S.indices.astype(np.int32), data, X),
        _core.completion_csr_product(indptr, S.indices.astype(np.int64), data, X),
    )


@pytest.mark.parametrize(
    ("indptr", "indices", "n", "match"),
    [
        ([0, 1], [3], 3, "indices"),
        ([0, 1], [-1], 3, "indices"),
        ([0, 2], [0], 3, "indptr"),
        ([1, 1], [0], 3, "indptr"),
        ([0, 1, 0], [0], 3, "indptr"),
        ([0, 2, 1, 2], [0, 1], 3, "indptr"),
        ([], [], 3, "indptr"),
    ],
)
def test_transpose_and_kernels_reject_bad_structure(indptr, indices, n, match):
    data = np.ones(len(indices))
    for dtype in (np.int32, np.int64):
        with pytest.raises(ValueError, match=match):
            _core.completion_transpose(np.array(indptr, dtype=np.int64), np.array(indices, dtype=dtype), data, n)
    if len(indptr) == 2 and match == "indices":
        with pytest.raises(ValueError, match="indices"):
            _core.completion_csr_product(np.array(indptr), np.array(indices, dtype=np.int32), data, np.ones((n, 2)))


def test_transpose_reports_non_finite_values():
    for bad in (np.nan, np.inf, -np.inf):
        *_, finite = _core.completion_transpose(
            np.array([0, 1, 2], dtype=np.int64), np.array([1, 0], dtype=np.int32), np.array([1.0, bad]), 2
        )
        assert not finite


def test_observed_from_canonical_csr_reads_the_input_arrays_and_builds_columns_in_rust():
    S = sp.random(200, 150, density=0.05, format="csr", random_state=np.random.default_rng(1))
    S.sort_indices()
    assert S.indices.dtype == np.int32
    obs = as_observed(S)
    T = S.tocsc()
    assert np.shares_memory(obs.data, S.data) and np.shares_memory(obs.indices, S.indices)  # not copied
    np.testing.assert_array_equal(obs.t_indptr, T.indptr)
    np.testing.assert_array_equal(obs.t_indices, T.indices)
    np.testing.assert_array_equal(obs.t_data, T.data)
    assert obs.indptr.dtype == np.int64 and obs.indices.dtype == obs.t_indices.dtype == np.int32
    # float32 input: values widened once, the matrix's own arrays untouched
    S32 = S.astype(np.float32)
    data32 = S32.data.copy()
    obs32 = as_observed(S32)
    assert obs32.data.dtype == np.float64 and obs32.dtype == np.float32
    np.testing.assert_array_equal(S32.data, data32)
    np.testing.assert_array_equal(obs32.t_data, T.data.astype(np.float32).astype(np.float64))
