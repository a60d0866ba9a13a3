"""The exact small-side SVD that runs when the block spans min(m, n) columns."""

from __future__ import annotations

import numpy as np
import pytest

from lorainne import randomized_svd
from lorainne.randomized._small_side import small_side_svd


def _digits_like(rng, m, n, dtype):
    """Rank-deficient like scikit-learn's digits: some columns identically zero, a decaying spectrum."""
    A = rng.standard_normal((m, n)) @ np.diag(1.0 / (1.0 + np.arange(n))) @ rng.standard_normal((n, n))
    A[:, :: max(1, n // 8)] = 0.0
    if np.dtype(dtype).kind == "c":
        A = A + 1j * rng.standard_normal((m, n)) @ np.diag(1.0 / (1.0 + np.arange(n))) @ rng.standard_normal((n, n))
    return A.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("shape", [(600, 40), (40, 600)])
@pytest.mark.parametrize("method", ["block_krylov", "subspace"])
def test_block_spanning_the_small_side_gives_the_exact_svd(shape, dtype, method):
    rng = np.random.default_rng(0)
    A = _digits_like(rng, *shape, dtype)
    copy = A.copy()
    k = 7
    assert small_side_svd(A, k, np.linalg.qr) is not None  # the exact path runs, not the iteration
    U, S, Vt = randomized_svd(A, k, n_oversamples=min(shape), method=method, n_power_iter=0, random_state=1)
    assert np.array_equal(A, copy) and U.dtype == dtype and S.dtype == np.finfo(dtype).dtype
    exact = np.linalg.svd(A.astype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64), compute_uv=False)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(S, exact[:k], rtol=200 * eps * exact[0] / exact[k - 1])
    assert np.linalg.norm(U.conj().T @ U - np.eye(k)) < 100 * eps
    assert np.linalg.norm(Vt @ Vt.conj().T - np.eye(k)) < 100 * eps
    error = np.linalg.norm(A - (U * S) @ Vt, 2)
    assert error <= (1 + 1e-3) * exact[k] + 100 * eps * exact[0]


def test_small_side_declines_when_the_gap_is_not_resolved():
    """Equal s_k and s_{k+1}: the Gram matrix cannot pick the top-k subspace; the caller iterates,
    and the answer is still a best rank-k approximation."""
    rng = np.random.default_rng(3)
    m, n, k = 300, 20, 5
    U0, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V0, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.array([10.0, 9, 8, 7, 6, 6, 5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    A = (U0 * s) @ V0.T
    assert small_side_svd(A, k, np.linalg.qr) is None
    assert small_side_svd(A, k - 1, np.linalg.qr) is not None
    U, S, Vt = randomized_svd(A, k, n_oversamples=n, method="block_krylov", n_power_iter=1, random_state=0)
    np.testing.assert_allclose(S, s[:k], rtol=1e-12)
    assert np.linalg.norm(A - (U * S) @ Vt, 2) <= s[k] * (1 + 1e-10)


def test_small_side_matches_iteration_on_digits():
    from sklearn.datasets import load_digits

    D = load_digits().data
    k = 10
    exact = np.linalg.svd(D, compute_uv=False)
    U, S, Vt = randomized_svd(D, k, n_oversamples=54, method="block_krylov", n_power_iter=0, random_state=0)
    assert np.linalg.norm(D - (U * S) @ Vt, 2) <= (1 + 1e-10) * exact[k]
    U2, S2, Vt2 = randomized_svd(D, k, n_oversamples=10, method="block_krylov", n_power_iter=3, random_state=0)
    np.testing.assert_allclose(S, S2, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("shape", [(600, 40), (40, 600)])
def test_normalized_columns_match_the_qr_route(shape, dtype, monkeypatch):
    """Orthogonal columns of A V_k are normalized instead of factored: same U, S, Vt to rounding."""
    import lorainne.randomized._small_side as small_side

    rng = np.random.default_rng(5)
    A = _digits_like(rng, *shape, dtype)
    k = 6
    taken = []
    orthogonal_rows = small_side.orthogonal_rows
    monkeypatch.setattr(small_side, "orthogonal_rows", lambda Yt: taken.append(orthogonal_rows(Yt)) or taken[-1])
    fast = randomized_svd(A, k, n_oversamples=min(shape), method="block_krylov", n_power_iter=0, random_state=0)
    assert taken[-1] is not None  # the normalization ran
    monkeypatch.setattr(small_side, "ORTHOGONALITY_SLACK", -1.0)
    factored = randomized_svd(A, k, n_oversamples=min(shape), method="block_krylov", n_power_iter=0, random_state=0)
    assert taken[-1] is None  # the QR route ran
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(fast.S, factored.S, rtol=50 * eps)
    scale = float(factored.S[0] / factored.S[k - 1])  # the rounding of V_k grows with s_1 / s_k
    np.testing.assert_allclose(fast.U, factored.U, atol=100 * eps * scale)
    np.testing.assert_allclose(fast.Vt, factored.Vt, atol=100 * eps * scale)
    assert np.abs(fast.U.conj().T @ fast.U - np.eye(k)).max() <= 2 * k * eps * 1.01
    assert fast.U.dtype == dtype and fast.S.dtype == np.finfo(dtype).dtype


def test_columns_not_orthogonal_are_factored():
    """Rows of Yt that are not orthogonal to working precision, or a zero row, are refused."""
    from lorainne.randomized._small_side import orthogonal_rows

    rng = np.random.default_rng(2)
    Yt = np.linalg.qr(rng.standard_normal((300, 4)))[0].T * np.array([[1.0], [3.0], [2.0], [0.5]])
    Ut, S, order = orthogonal_rows(Yt)
    np.testing.assert_array_equal(order, [1, 2, 0, 3])
    np.testing.assert_allclose(S, [3.0, 2.0, 1.0, 0.5], rtol=1e-14)
    np.testing.assert_allclose(S[:, None] * Ut, Yt[order], rtol=1e-14)
    bent = Yt.copy()
    bent[0] += 1e-12 * Yt[1]  # a cosine of ~3e-12, far above 2 k eps
    assert orthogonal_rows(bent) is None
    bent[0] = 0.0
    assert orthogonal_rows(bent) is None


def test_seeded_generator_is_built_on_first_use_with_the_same_numbers():
    """The plan's generator for a seed is seeded when first used; the same numbers, checks and errors."""
    import copy
    import pickle

    from lorainne._validation import check_random_state, lazy_random_state

    for seed in (0, 7, np.random.SeedSequence(3)):
        deferred = lazy_random_state(seed)
        assert deferred._generator is None
        np.testing.assert_array_equal(deferred.standard_normal(5), check_random_state(seed).standard_normal(5))
        again = pickle.loads(pickle.dumps(copy.deepcopy(deferred)))
        np.testing.assert_array_equal(again.standard_normal(3), deferred.standard_normal(3))
    generator = np.random.default_rng(1)
    assert lazy_random_state(generator) is generator
    legacy = np.random.RandomState(2)
    lazy_random_state(legacy)
    assert legacy.randint(10**6) != np.random.RandomState(2).randint(10**6)  # advanced now, as before
    for bad, error in ((-1, ValueError), (True, TypeError), ("0", TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="random_state"):
            lazy_random_state(bad)
    with pytest.raises(TypeError, match="random_state"):
        randomized_svd(np.eye(4), 2, n_oversamples=4, random_state="seed")
