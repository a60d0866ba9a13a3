"""Block Krylov with blocks narrower than the rank (``randomized_svd(..., block_size=b)``, b < rank):
a deeper space of narrow blocks reaches the optimal error on slowly decaying spectra."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import randomized_svd


def planted(rng, m, n, s):
    U, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (U * s) @ V.T


def error_over_optimal(A, result, optimal):
    U, S, Vt = result
    return np.linalg.norm(A - (U * S) @ Vt, 2) / optimal


@pytest.mark.parametrize("decay", [0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
@pytest.mark.parametrize("wide", [False, True])
def test_narrow_block_reaches_optimal_when_deep_enough(decay, dtype, wide):
    """Blocks of 6 columns for rank 20: depth 10 (66 columns) is within 2% of the optimal error in
    spectral norm, depth 3 (24 columns, 4 more than the rank) is not: the depth is what buys it."""
    rng = np.random.default_rng(0)
    n = 240
    s = (1.0 + np.arange(n)) ** -decay
    A = planted(rng, 500, n, s)
    if np.dtype(dtype).kind == "c":
        A = A * np.exp(1j * rng.uniform(0, 2 * np.pi, size=(1, n)))
    A = A.astype(dtype)
    if wide:
        A = np.ascontiguousarray(A.T)
    k = 20
    exact = np.linalg.svd(A.astype(np.complex128 if A.dtype.kind == "c" else np.float64), compute_uv=False)
    deep = randomized_svd(A, k, method="block_krylov", block_size=6, n_power_iter=10, random_state=1)
    shallow = randomized_svd(A, k, method="block_krylov", block_size=6, n_power_iter=3, random_state=1)
    assert deep.U.dtype == deep.Vt.dtype == A.dtype and deep.U.shape == (A.shape[0], k)
    assert error_over_optimal(A, deep, exact[k]) <= 1.02
    assert error_over_optimal(A, shallow, exact[k]) > 1.1
    rtol = 1e-4 if A.dtype in (np.float32, np.complex64) else 1e-8
    np.testing.assert_allclose(deep.S[:10], exact[:10], rtol=rtol)


def test_narrow_block_uses_fewer_columns_than_rank_plus_oversamples_at_equal_error():
    """On s_i = i^-1 at rank 30, blocks of 10 at depth 6 (7 blocks, 140 columns of products) are as
    accurate as the default block of 40 at depth 2 (240 columns)."""
    rng = np.random.default_rng(2)
    s = (1.0 + np.arange(300)) ** -1.0
    A = planted(rng, 600, 300, s)
    narrow = randomized_svd(A, 30, method="block_krylov", block_size=10, n_power_iter=6, random_state=0)
    default = randomized_svd(A, 30, method="block_krylov", n_power_iter=2, random_state=0)
    assert error_over_optimal(A, narrow, s[30]) <= 1.01
    assert error_over_optimal(A, narrow, s[30]) <= error_over_optimal(A, default, s[30]) * 1.005


@pytest.mark.parametrize("flip_sign", ["vt", False])
def test_default_block_is_rank_plus_oversamples_bit_for_bit(flip_sign):
    rng = np.random.default_rng(3)
    A = planted(rng, 300, 200, (1.0 + np.arange(200)) ** -0.7)
    ref = randomized_svd(A, 12, method="block_krylov", n_power_iter=2, random_state=4, flip_sign=flip_sign)
    same = randomized_svd(
        A, 12, method="block_krylov", n_power_iter=2, block_size=22, random_state=4, flip_sign=flip_sign
    )
    for a, b in zip(ref, same, strict=True):
        np.testing.assert_array_equal(a, b)
    other = randomized_svd(A, 12, method="block_krylov", n_power_iter=2, block_size=21, random_state=4)
    assert not np.array_equal(ref.S, other.S)


def test_narrow_block_on_the_array_api_path_matches_numpy():
    rng = np.random.default_rng(5)
    A = planted(rng, 120, 80, (1.0 + np.arange(80)) ** -1.0)
    ref = randomized_svd(A, 10, method="block_krylov", block_size=4, n_power_iter=5, random_state=0)
    got = randomized_svd(xps.asarray(A), 10, method="block_krylov", block_size=4, n_power_iter=5, random_state=0)
    np.testing.assert_allclose(np.asarray(got.S), ref.S, rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.asarray(got.U).T @ ref.U), np.eye(10), atol=1e-6)


def test_narrow_block_on_dask_matches_in_memory():
    da = pytest.importorskip("dask.array")
    import dask

    rng = np.random.default_rng(6)
    A = planted(rng, 400, 150, (1.0 + np.arange(150)) ** -1.0)
    D = da.from_array(A, chunks=(100, 150))
    with dask.config.set(scheduler="sync"):
        U, S, Vt = randomized_svd(D, 12, method="block_krylov", block_size=5, n_power_iter=5, random_state=2)
        U, Vt = U.compute(), Vt.compute()
    ref = randomized_svd(  # Dask keeps the basis on A's rows: in memory that is transpose=False
        A, 12, method="block_krylov", block_size=5, n_power_iter=5, random_state=2, backend="numpy", transpose=False
    )
    np.testing.assert_allclose(S, ref.S, rtol=1e-10)
    np.testing.assert_allclose((U * S) @ Vt, (ref.U * ref.S) @ ref.Vt, atol=1e-10)


def test_exhausted_space_with_narrow_blocks_gives_the_exact_svd():
    """(q + 1) b beyond min(m, n): the basis stops at min(m, n) columns and the answer is exact."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((90, 30))
    U, S, Vt = randomized_svd(A, 8, method="block_krylov", block_size=7, n_power_iter=6, random_state=0)
    np.testing.assert_allclose(S, np.linalg.svd(A, compute_uv=False)[:8], rtol=1e-10)
    np.testing.assert_allclose(U.T @ U, np.eye(8), atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block_size": 0}, ValueError, "block_size must be in \\[1, 40\\], got 0"),
        ({"block_size": 41}, ValueError, "block_size must be in \\[1, 40\\], got 41"),
        ({"block_size": 2.5}, TypeError, "block_size must be an integer, got 2.5"),
        ({"block_size": True}, TypeError, "block_size must be an integer, got True"),
        ({"block_size": "8"}, TypeError, "block_size must be an integer, got '8'"),
        ({"block_size": 3, "n_power_iter": 2}, ValueError, "block_size=3 at depth n_power_iter=2 gives"),
        ({"block_size": 2}, ValueError, "block_size=2 at depth n_power_iter=3"),  # "auto": depth 3, 8 < 10
        ({"block_size": 8, "method": "subspace"}, ValueError, "block_size=8 needs method='block_krylov'"),
    ],
)
def test_bad_block_size_is_refused_by_name(kwargs, error, match):
    A = np.random.default_rng(0).standard_normal((60, 40))
    before = A.copy()
    kwargs = {"method": "block_krylov", **kwargs}
    with pytest.raises(error, match=match):
        randomized_svd(A, 10, **kwargs)
    np.testing.assert_array_equal(A, before)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(5, 60),
    n=st.integers(5, 60),
    k=st.integers(1, 12),
    b=st.integers(1, 12),
    q=st.integers(0, 8),
    seed=st.integers(0, 2**16),
)
def test_narrow_blocks_give_orthonormal_factors_and_ordered_values(m, n, k, b, q, seed):
    k, b = min(k, m, n), min(b, m, n)
    if (q + 1) * b < k:
        q = -(-k // b) - 1  # the shallowest depth the block allows
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * (1.0 + np.arange(n)) ** -0.5
    U, S, Vt = randomized_svd(A, k, method="block_krylov", block_size=b, n_power_iter=q, random_state=seed)
    assert U.shape == (m, k) and S.shape == (k,) and Vt.shape == (k, n)
    np.testing.assert_allclose(U.T @ U, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(k), atol=1e-10)
    assert np.all(np.diff(S) <= 1e-12 * S[0]) and np.all(S >= 0)
    assert np.all(S <= np.linalg.svd(A, compute_uv=False)[:k] * (1 + 1e-10))  # Ritz values interlace
