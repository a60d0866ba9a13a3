"""The column side of the observations built in Rust (``_core.completion_both_sides``, a counting
sort over the columns) against SciPy's ``tocsc()``, and the observations the facade builds from it."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import _core
from lorainne.completion._observed import as_observed


def _raw_csr(rng, m, n, nnz, dtype):
    """The CSR arrays of m x n with ``nnz`` stored entries: unsorted within rows, repeated
    coordinates kept (not summed), empty rows and columns where the draw leaves them."""
    rows = np.sort(rng.integers(0, m, nnz))
    indptr = np.zeros(m + 1, dtype=dtype)
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
def test_both_sides_match_scipy_tocsc(m, n, nnz, dtype, seed):
    raw = _raw_csr(np.random.default_rng(seed), m, n, nnz, dtype)
    before = tuple(a.copy() for a in raw)
    indptr, indices, t_indptr, t_indices, t_data, finite = _core.completion_both_sides(*raw, n)
    S = sp.csr_matrix(tuple(reversed(raw)), shape=(m, n))  # SciPy may narrow the index dtype: same values
    assert S.nnz == nnz  # repeats not summed
    T = S.tocsc()  # the same stable counting sort: rows in order within each column, repeats kept
    np.testing.assert_array_equal(t_indptr, T.indptr)
    np.testing.assert_array_equal(t_indices, T.indices)
    np.testing.assert_array_equal(t_data, T.data)
    assert finite and t_indptr.dtype == t_indices.dtype == indptr.dtype == np.int64
    np.testing.assert_array_equal(indptr, raw[0])
    if dtype == np.int32:
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(indices, raw[1])
    else:
        assert indices is None  # int64 already: the input's array serves
    # repeated coordinates stay separate entries; summed, both sides hold the same matrix
    back = sp.csr_matrix((t_data, t_indices, t_indptr), shape=(n, m))
    np.testing.assert_array_equal(back.toarray().T, S.toarray())
    for a, b in zip(before, raw, strict=True):
        np.testing.assert_array_equal(a, b)  # the input is only read


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
def test_both_sides_reject_bad_structure(indptr, indices, n, match):
    data = np.ones(len(indices))
    with pytest.raises(ValueError, match=match):
        _core.completion_both_sides(np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int64), data, n)


def test_both_sides_report_non_finite_values():
    for bad in (np.nan, np.inf, -np.inf):
        *_, finite = _core.completion_both_sides(
            np.array([0, 1, 2], dtype=np.int32), np.array([1, 0], dtype=np.int32), np.array([1.0, bad]), 2
        )
        assert not finite


def test_observed_from_canonical_csr_uses_the_rust_columns_without_copying_values():
    S = sp.random(200, 150, density=0.05, format="csr", random_state=np.random.default_rng(1))
    S.sort_indices()
    obs = as_observed(S)
    T = S.tocsc()
    assert obs.data is S.data or np.shares_memory(obs.data, S.data)  # float64 values: not copied
    np.testing.assert_array_equal(obs.t_indptr, T.indptr)
    np.testing.assert_array_equal(obs.t_indices, T.indices)
    np.testing.assert_array_equal(obs.t_data, T.data)
    assert obs.indices.dtype == obs.t_indices.dtype == np.int64
    # float32 input: values widened once, the matrix's own arrays untouched
    S32 = S.astype(np.float32)
    data32 = S32.data.copy()
    obs32 = as_observed(S32)
    assert obs32.data.dtype == np.float64 and obs32.dtype == np.float32
    np.testing.assert_array_equal(S32.data, data32)
    np.testing.assert_array_equal(obs32.t_data, T.data.astype(np.float32).astype(np.float64))
