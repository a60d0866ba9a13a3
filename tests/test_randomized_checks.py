"""The one-read input check (Rust ``max_abs``: largest magnitude, NaN on any non-finite entry) that
the randomized SVD's validation uses instead of NumPy's max, min and sum, and block Krylov's
products with A^T through NumPy's BLAS as (Y^T A)^T against faer's product."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import _exact_scaling, randomized_svd, range_finder
from lorainne._backend import core
from lorainne.randomized import _range_finder

shapes = st.tuples(st.integers(1, 70), st.integers(1, 70))


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from([np.float32, np.float64]),
    order=st.sampled_from(["C", "F"]),
    scale=st.sampled_from([1e-300, 1e-30, 1.0, 1e30, 1e300]),
    seed=st.integers(0, 2**31 - 1),
)
def test_max_abs_equals_numpy(shape, dtype, order, scale, seed):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:  # inside float32's range
        scale = min(max(scale, 1e-30), 1e30)
    A = np.asarray(rng.standard_normal(shape) * scale, dtype=dtype, order=order)
    expected = float(np.max(np.abs(A)))
    for threads in (1, 2):
        assert core().max_abs(A, threads) == expected


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 300_000),
    where=st.floats(0, 1, exclude_max=True),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_max_abs_is_nan_on_a_non_finite_entry(size, where, bad, dtype):
    values = np.full(size, -2.5, dtype=dtype)
    values[int(where * size)] = bad
    for threads in (1, 2):
        assert np.isnan(core().max_abs(values, threads))


def test_max_abs_of_an_empty_array_is_zero_and_strided_input_is_refused():
    assert core().max_abs(np.zeros((0, 3)), 1) == 0.0
    with pytest.raises(ValueError, match="contiguous"):
        core().max_abs(np.ones((6, 6))[:, ::2], 1)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_rescaled_finite_reports_what_its_read_proved(layout, dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 30)).astype(dtype)
    A = {"C": A, "F": np.asfortranarray(A), "strided": A[:, ::2]}[layout]
    scaled, k, finite = _exact_scaling.rescaled_finite(A * 1e-200 if dtype == np.float64 else A)
    assert finite
    if dtype == np.float64:
        assert k > 0 and np.max(np.abs(scaled)) < 1.0
    B = A.copy()
    B[3, 4] = np.nan
    assert not _exact_scaling.rescaled_finite(B)[2]
    # Integers are promoted later, by the caller's own checks: nothing proved here.
    assert not _exact_scaling.rescaled_finite(np.arange(6).reshape(2, 3))[2]


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["subspace", "block_krylov"])
def test_non_finite_input_is_refused_and_never_modified(layout, bad, method):
    A = np.random.default_rng(1).standard_normal((60, 40))
    A[7, 8] = bad  # an even column: kept by the strided view
    A = {"C": A, "F": np.asfortranarray(A), "strided": A[:, ::2]}[layout]
    before = A.copy()
    with pytest.raises(ValueError, match="A contains NaN or infinity"):
        randomized_svd(A, 5, method=method, random_state=0)
    with pytest.raises(ValueError, match="A contains NaN or infinity"):
        range_finder(A, 5, random_state=0)
    np.testing.assert_array_equal(A, before)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_krylov_blas_adjoint_product_matches_faer(monkeypatch, order, dtype):
    """The A^T Y products through NumPy's BLAS give block Krylov's answer to rounding (faer's
    product is the reference; an F-ordered A keeps faer's product, so both arms agree exactly)."""
    rng = np.random.default_rng(2)
    m, n, k = 400, 250, 15
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = np.asarray((U * (1.0 + np.arange(n)) ** -1.0) @ V.T, dtype=dtype, order=order)
    results = {}
    for blas in (False, True):
        monkeypatch.setattr(_range_finder, "BLAS_ADJOINT_PRODUCT", blas)
        results[blas] = randomized_svd(A, k, n_power_iter=2, method="block_krylov", random_state=3, n_threads=1)
    eps = np.finfo(dtype).eps
    (U0, S0, Vt0), (U1, S1, Vt1) = results[False], results[True]
    np.testing.assert_allclose(S1, S0, rtol=200 * eps)
    # Singular vectors agree to rounding over the gap; the sign convention fixes their signs.
    gap = float(np.min(np.abs(np.diff(S0.astype(np.float64)))))
    tol = 200 * eps * float(S0[0]) / gap
    assert np.max(np.abs(U1 - U0)) < tol and np.max(np.abs(Vt1 - Vt0)) < tol
    Y = rng.standard_normal((m, 7)).astype(dtype)
    dense = _range_finder._as_host_contiguous(A)
    monkeypatch.setattr(_range_finder, "BLAS_ADJOINT_PRODUCT", True)
    product = _range_finder._adjoint_product(core(), dense, 1)(Y)
    np.testing.assert_allclose(product, A.T.astype(np.float64) @ Y, rtol=0, atol=50 * eps * np.abs(A).sum(0).max())


def _spectrum_matrix(rng, m, n, dtype, order="C"):
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return np.asarray((U * (1.0 + np.arange(n)) ** -0.5) @ V.T, dtype=dtype, order=order)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_krylov_checks_on_the_sketch_skip_the_read_and_change_nothing(monkeypatch, order, dtype):
    """An ordinary A is not read for its checks (the sketch vouches for them), and the answer is
    bit for bit the one of the eager checks."""
    A = _spectrum_matrix(np.random.default_rng(4), 120, 80, dtype, order)
    reads = []
    eager = _range_finder.rescaled_finite
    monkeypatch.setattr(_range_finder, "rescaled_finite", lambda X, **kw: reads.append(X.shape) or eager(X, **kw))
    deferred = randomized_svd(A, 6, n_power_iter=2, method="block_krylov", random_state=5)
    assert reads == []
    monkeypatch.setattr(_range_finder, "_deferrable", lambda X: False)
    checked = randomized_svd(A, 6, n_power_iter=2, method="block_krylov", random_state=5)
    assert reads == [A.shape]
    for got, expected in zip(deferred, checked, strict=True):
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    exponent=st.sampled_from([-1000, -600, -300, -257, -200, 0, 200, 255, 257, 300, 600, 1000]),
    where=st.tuples(st.integers(0, 59), st.integers(0, 39)),
    lone=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_krylov_scales_like_the_eager_checks(exponent, where, lone, seed):
    """Entries far outside the band, all of them or one (the sketch must notice a lone giant): the checks
    on the sketch give the eager read's answer bit for bit, 2**e times the unscaled A's singular values
    (to rounding), and a lone giant is resolved to rounding on both backends."""
    rng = np.random.default_rng(seed)
    A = _spectrum_matrix(rng, 60, 40, np.float64)
    if lone:  # one entry 2**e, the rest as they were: near-optimal to rounding, as LAPACK's SVD sees it
        B = A.copy()
        B[where] = 2.0**exponent if exponent < 1000 else 1e300
        s = np.linalg.svd(B, compute_uv=False)
        for backend in ("auto", "numpy"):  # Rust kernels (checks on the sketch) and the xp reference
            U, S, Vt = randomized_svd(B, 5, n_power_iter=1, method="block_krylov", random_state=seed, backend=backend)
            assert np.all(np.isfinite(S)) and np.all(np.isfinite(U)) and np.all(np.isfinite(Vt))
            assert S[0] <= s[0] * (1 + 1e-12)  # Ritz values of an orthonormal basis never exceed s_1
            if exponent >= 60:  # the lone entry is the top singular value, to rounding
                assert abs(S[0] - s[0]) <= 1e-12 * s[0]
            error = np.linalg.norm(B - (U * S) @ Vt, 2)
            assert error <= 1.3 * s[5] + 1e3 * np.finfo(np.float64).eps * s[0], (backend, error, s[5])
        return
    k = min(max(exponent, -1074 + 60), 1023 - 10)  # 2**k A stays normal: an exact scaling
    B = A * 2.0**k
    deferred = randomized_svd(B, 5, n_power_iter=1, method="block_krylov", random_state=seed)
    with pytest.MonkeyPatch.context() as patch:  # the eager read of A decides instead of the sketch
        patch.setattr(_range_finder, "_deferrable", lambda X: False)
        eager = randomized_svd(B, 5, n_power_iter=1, method="block_krylov", random_state=seed)
    for got, expected in zip(deferred, eager, strict=True):
        np.testing.assert_array_equal(got, expected)
    # Scale-equivariant: exactly where 2**k A is rescaled or far inside the band; near its edge
    # (|a_ij| ~ 2**255) the fourth powers in block Krylov's Gram matrices take the fallbacks.
    base = randomized_svd(A, 5, n_power_iter=1, method="block_krylov", random_state=seed)
    np.testing.assert_allclose(deferred.S, base.S * 2.0**k, rtol=1e-13)


def test_sketch_vouches_only_inside_the_band():
    vouches = _exact_scaling.sketch_vouches
    F64, F32 = np.dtype(np.float64), np.dtype(np.float32)
    assert vouches(30.0, 4.0, 1000, 55, F64)
    assert not vouches(np.nan, 4.0, 1000, 55, F64)
    assert not vouches(np.inf, 4.0, 1000, 55, F64)
    assert not vouches(2.0**255, 4.0, 1000, 55, F64)  # above 2**(256 - 2)
    assert vouches(2.0**253, 4.0, 1000, 55, F64)
    assert not vouches(2.0**-250, 4.0, 1000, 55, F64)  # below 2**-255 * 1000 * 4
    assert vouches(30.0, 4.0, 1000, 55, F32)
    assert not vouches(2.0**31, 4.0, 1000, 55, F32)
    assert not vouches(1.0, 4.0, 1000, 1, F32)  # one column: no band is safe in float32
    assert vouches(1.0, 4.0, 1000, 1, F64)
    assert not vouches(2.0**197, 4.0, 1000, 1, F64)  # one column: 60 bits of margin
    assert not vouches(1.0, 4.0, 1000, 55, np.dtype(np.complex128))


@pytest.mark.parametrize("core_name", ["SkylakeX", "Haswell", "Zen"])
def test_adjoint_product_route_follows_the_blas_kernels(monkeypatch, core_name):
    """BLAS's (X^T A)^T only where NumPy's BLAS runs AVX-512 kernels (faer's AVX2 GEMM is faster than
    OpenBLAS's AVX2 kernels at A^T X); decided once, so a run never changes route."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from numpy._core._multiarray_umath import __cpu_features__

    monkeypatch.setattr(
        threadpoolctl, "threadpool_info", lambda: [{"internal_api": "openblas", "architecture": core_name}]
    )
    _range_finder.blas_runs_avx512.cache_clear()
    try:
        expected = bool(__cpu_features__.get("AVX512F")) and core_name == "SkylakeX"
        assert _range_finder.blas_runs_avx512() is expected
        monkeypatch.setattr(_range_finder, "BLAS_ADJOINT_PRODUCT", None)
        A = np.random.default_rng(0).standard_normal((30, 20))
        X = np.random.default_rng(1).standard_normal((30, 4))
        product = _range_finder._adjoint_product(core(), A, 1)(X)
        np.testing.assert_allclose(product, A.T @ X, rtol=1e-12, atol=1e-12)
    finally:
        _range_finder.blas_runs_avx512.cache_clear()
