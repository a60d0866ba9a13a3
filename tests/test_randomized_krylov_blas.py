"""Block Krylov's BLAS paths on NumPy: the CholeskyQR2 of a basis block (``_qr.cholesky_qr2_blas``),
the deflation's in-place subtraction (``_krylov._minus_product``), the column buffers
(``_krylov._Columns``), each against the plain computation, and whole calls with and without them."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import _qr, cholesky_qr2, randomized_svd
from lorainne._qr import cholesky_qr2_blas
from lorainne.randomized import _krylov, _range_finder


def conditioned(rng, m, n, log_cond, dtype=np.float64):
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return np.asfortranarray((U * np.logspace(0, -log_cond, n)) @ V.T).astype(dtype)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 120),
    extra=st.integers(0, 60),
    log_cond=st.floats(0.0, 6.0),
    dtype=st.sampled_from([np.float32, np.float64]),
    order=st.sampled_from(["C", "F"]),
    seed=st.integers(0, 2**16),
)
def test_cholesky_qr2_blas_against_the_kernel(m, extra, log_cond, dtype, order, seed):
    n = max(1, min(m, 40) - (seed % 3))
    rng = np.random.default_rng(seed)
    cond = log_cond if dtype == np.float64 else min(log_cond, 2.0)  # CholeskyQR2 needs cond < u^-1/2
    Y = np.asarray(conditioned(rng, m + extra, n, cond, dtype), order=order)
    before = Y.copy()
    out = cholesky_qr2_blas(Y)
    assert np.array_equal(Y, before)  # the input is never modified
    Q_ref, R_ref = cholesky_qr2(Y)
    if out is None:  # a failed pass: the caller runs the kernel instead
        return
    Q, R = out
    u = np.finfo(dtype).eps
    assert Q.dtype == R.dtype == dtype and Q.shape == Y.shape and R.shape == (n, n)
    assert np.array_equal(R, np.triu(R)) and np.all(np.diagonal(R) > 0)
    assert np.linalg.norm(Q.T.astype(np.float64) @ Q - np.eye(n)) <= 50 * n * u
    residual = np.linalg.norm(Q.astype(np.float64) @ R - Y) / np.linalg.norm(Y)
    assert residual <= 50 * n * u * 10**cond  # u cond(Y) ||Y||: the explicit inverse
    # the same factorization as the kernel's (unique: R's diagonal positive)
    assert np.linalg.norm(R - R_ref) <= 100 * n * u * 10**cond * np.linalg.norm(R_ref)
    assert np.linalg.norm(Q - Q_ref) <= 100 * n * u * 10**cond * np.sqrt(n)


def test_cholesky_qr2_blas_declines_what_it_cannot_factor():
    rng = np.random.default_rng(0)
    assert cholesky_qr2_blas(rng.standard_normal((5, 8))) is None  # wide
    assert cholesky_qr2_blas(np.zeros((6, 0))) is None
    assert cholesky_qr2_blas(rng.standard_normal((9, 3)) + 1j) is None  # complex: the kernel's
    assert cholesky_qr2_blas(np.arange(12).reshape(6, 2)) is None  # integers
    assert cholesky_qr2_blas(np.zeros((8, 3))) is None  # Cholesky breaks down
    deficient = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 6))
    assert cholesky_qr2_blas(deficient) is None
    assert cholesky_qr2_blas(conditioned(rng, 200, 20, 12)) is None  # cond 1e12: the second Gram is far from I
    Y = rng.standard_normal((40, 4))
    Y[3, 1] = np.nan
    assert cholesky_qr2_blas(Y) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_minus_product_is_y_minus_q_c(dtype, order, overwrite):
    rng = np.random.default_rng(1)
    Q = np.asfortranarray(rng.standard_normal((70, 12)).astype(dtype))
    C = np.asfortranarray(rng.standard_normal((12, 5)).astype(dtype))
    Y = np.asarray(rng.standard_normal((70, 5)).astype(dtype), order=order)
    expected = Y - Q @ C
    before = Y.copy()
    out = _krylov._minus_product(lambda a, b: a @ b, Y, Q, C, overwrite)
    tol = 50 * np.finfo(dtype).eps * np.abs(Q) @ np.abs(C)
    assert out.dtype == dtype and np.all(np.abs(out - expected) <= tol + tol.max())
    if not overwrite:
        assert np.array_equal(Y, before)


@pytest.mark.parametrize("capacity", [0, 3, 20])
def test_columns_join_blocks_as_concatenation(capacity):
    rng = np.random.default_rng(2)
    blocks = [rng.standard_normal((9, b)) for b in (3, 4, 2, 5)]
    for xp, wrap in ((np, np.asarray), (xps, xps.asarray)):
        columns = _krylov._Columns(xp, capacity, limit=9)
        for j, block in enumerate(blocks):
            columns.append(wrap(block))
            joined = np.asarray(columns.all())
            assert np.array_equal(joined, np.concatenate(blocks[: j + 1], axis=1))
            assert columns.width == joined.shape[1] and len(columns.blocks) == j + 1
        assert [np.asarray(b).shape[1] for b in columns.blocks] == [3, 4, 2, 5]
        if xp is np:
            assert columns.all().flags.f_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_krylov_with_and_without_the_blas_paths(monkeypatch, dtype):
    """The same approximation within rounding, U and Vt orthonormal to working precision."""
    rng = np.random.default_rng(3)
    m, n, k = 400, 300, 15
    s = (1.0 + np.arange(n)) ** -1.0
    U0, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V0, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = ((U0 * s) @ V0.T).astype(dtype)
    A_before = A.copy()
    factored = []

    def counted(Y):
        factored.append(cholesky_qr2_blas(Y))
        return factored[-1]

    monkeypatch.setattr(_qr, "cholesky_qr2_blas", counted)
    fast = randomized_svd(A, k, n_power_iter=3, method="block_krylov", random_state=0)
    assert np.array_equal(A, A_before)
    assert len(factored) == 4 and all(f is not None for f in factored)  # every block of depth 3
    original = _range_finder._products
    monkeypatch.setattr(_krylov, "_minus_product", lambda matmul, Y, Q, C, overwrite: Y - matmul(Q, C))
    monkeypatch.setattr(_range_finder, "_products", lambda plan: original(plan)._replace(basis_qr=None))
    monkeypatch.setattr("lorainne.randomized._svd._products", _range_finder._products)
    plain = randomized_svd(A, k, n_power_iter=3, method="block_krylov", random_state=0)
    u = np.finfo(dtype).eps
    for result in (fast, plain):
        U, S, Vt = (np.asarray(x, dtype=np.float64) for x in result)
        assert np.linalg.norm(U.T @ U - np.eye(k)) <= 200 * u
        assert np.linalg.norm(Vt @ Vt.T - np.eye(k)) <= 200 * u
    error = [np.linalg.norm(A - (U * S) @ Vt, 2) / s[k] for U, S, Vt in (fast, plain)]
    assert error[0] < 1.01 and abs(error[0] - error[1]) <= 1e3 * u
    assert np.allclose(fast.S, plain.S, rtol=100 * u)
    # the same singular vectors (the sign convention makes them comparable)
    assert np.allclose(fast.U, plain.U, atol=1e3 * u) and np.allclose(fast.Vt, plain.Vt, atol=1e3 * u)
