"""Block Krylov's Rayleigh-Ritz through the L x L Gram matrix (``_krylov.gram_route_svd``) against
the QR route (CholeskyQR2 of Z, then the SVD of its triangular factor), and its guard."""

from __future__ import annotations

import numpy as np
import pytest

from lorainne import randomized_svd
from lorainne.randomized import _krylov


def planted(rng, m, n, s):
    U, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (U * s) @ V.T


def spectral_error(A, U, S, Vt):
    return np.linalg.norm(A - (U * S) @ Vt, 2)


def spy_on_gram_route(monkeypatch):
    """Records what each call of ``gram_route_svd`` returned (None: the QR route ran)."""
    results = []
    original = _krylov.gram_route_svd

    def spy(*args):
        results.append(original(*args))
        return results[-1]

    monkeypatch.setattr(_krylov, "gram_route_svd", spy)
    return results


@pytest.mark.parametrize("backend", ["auto", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_gram_route_matches_the_qr_route(monkeypatch, backend, dtype):
    rng = np.random.default_rng(1)
    m, n, k = 300, 200, 12
    s = (1.0 + np.arange(n)) ** -1.0
    A = planted(rng, m, n, s)
    if dtype == np.complex128:
        A = A + 1j * planted(rng, m, n, s)
        s = np.linalg.svd(A, compute_uv=False)
    taken = spy_on_gram_route(monkeypatch)
    kwargs = dict(n_oversamples=8, n_power_iter=2, method="block_krylov", random_state=0, backend=backend)
    gram = randomized_svd(A, k, **kwargs)
    assert taken[-1] is not None  # the spectrum (s_13 / s_1 ~ 1/13) allows the Gram route
    monkeypatch.setattr(_krylov, "GRAM_ROUTE_MARGIN", np.inf)
    qr = randomized_svd(A, k, **kwargs)
    assert taken[-1] is None
    for U, S, Vt in (gram, qr):
        assert np.linalg.norm(U.conj().T @ U - np.eye(k)) < 1e-13
        assert np.linalg.norm(Vt @ Vt.conj().T - np.eye(k)) < 1e-13
        assert np.all(np.diff(S) <= 0)
    np.testing.assert_allclose(gram.S, qr.S, rtol=1e-10)
    np.testing.assert_allclose(gram.S, s[:k], rtol=2e-2)
    err_gram, err_qr = spectral_error(A, *gram), spectral_error(A, *qr)
    assert err_gram <= 1.05 * s[k]
    assert abs(err_gram - err_qr) <= 1e-8 * s[k]


def test_gram_route_declines_steep_spectra_and_single_precision(monkeypatch):
    rng = np.random.default_rng(2)
    m, n, k = 200, 120, 6
    # s_{k+1} / s_1 = 1e-7: the Gram matrix's rounding (~L u s_1^2) is not negligible against s_{k+1}^2.
    s = np.concatenate([np.ones(k), 1e-7 * (1.0 + np.arange(n - k)) ** -1.0])
    A = planted(rng, m, n, s)
    taken = spy_on_gram_route(monkeypatch)
    U, S, Vt = randomized_svd(A, k, n_oversamples=6, n_power_iter=1, method="block_krylov", random_state=0)
    assert taken[-1] is None
    assert spectral_error(A, U, S, Vt) <= 1.05 * s[k]
    U, S, Vt = randomized_svd(A.astype(np.float32), k, n_oversamples=6, n_power_iter=1, method="block_krylov")
    assert taken[-1] is None  # float32: u L s_1^2 is too coarse
    assert np.linalg.norm(Vt @ Vt.T - np.eye(k)) < 1e-5


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_gram_route_normalized_rows_match_its_qr(monkeypatch, dtype):
    """C = U_Bk^H B with rows orthogonal to working precision is normalized, not factored: the
    same U, S, Vt to rounding as the CholeskyQR2 of C^H and its SVD."""
    from lorainne.randomized import _small_side

    rng = np.random.default_rng(4)
    m, n, k = 300, 200, 12
    s = (1.0 + np.arange(n)) ** -0.5
    A = planted(rng, m, n, s) + (1j * planted(rng, m, n, s) if dtype == np.complex128 else 0)
    normalized = []
    orthogonal_rows = _krylov.orthogonal_rows
    monkeypatch.setattr(_krylov, "orthogonal_rows", lambda C: normalized.append(orthogonal_rows(C)) or normalized[-1])
    kwargs = dict(n_oversamples=8, n_power_iter=2, method="block_krylov", random_state=0)
    fast = randomized_svd(A, k, **kwargs)
    assert normalized[-1] is not None
    monkeypatch.setattr(_small_side, "ORTHOGONALITY_SLACK", -1.0)
    factored = randomized_svd(A, k, **kwargs)
    assert normalized[-1] is None
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(fast.S, factored.S, rtol=100 * eps)
    np.testing.assert_allclose(fast.U, factored.U, atol=1e-12)
    np.testing.assert_allclose(fast.Vt, factored.Vt, atol=1e-12)
    assert np.abs(fast.Vt @ fast.Vt.conj().T - np.eye(k)).max() <= 2 * k * eps * 1.01
    assert abs(spectral_error(A, *fast) - spectral_error(A, *factored)) <= 1e-12 * s[k]
