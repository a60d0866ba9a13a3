"""CQRRPT: randomized QR with column pivoting."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from lorainne.randomized import CQRRPTResult, cqrrpt


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3000, 40), (500, 200), (200, 1)])
def test_cqrrpt_factorization(shape, dtype):
    rng = np.random.default_rng(0)
    m, n = shape
    A = (rng.standard_normal((m, n)) * np.logspace(0, -3, n)).astype(dtype)
    copy = A.copy()
    result = cqrrpt(A, random_state=1)
    assert isinstance(result, CQRRPTResult) and np.array_equal(A, copy)
    Q, R, piv, k = result
    eps = np.finfo(dtype).eps
    assert k == n and sorted(piv) == list(range(n))
    assert Q.dtype == dtype and R.dtype == dtype
    assert np.linalg.norm(Q.T.astype(float) @ Q - np.eye(k)) < 100 * n * eps
    assert np.linalg.norm(A[:, piv] - Q @ R) <= 100 * n * eps * np.linalg.norm(A)
    assert np.allclose(np.tril(R[:, :k], -1), 0)


def test_cqrrpt_reveals_rank_and_pivots_like_qrcp():
    rng = np.random.default_rng(2)
    m, n, r = 4000, 60, 12
    A = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    Q, R, piv, k = cqrrpt(A, random_state=0)
    assert k == r and Q.shape == (m, r) and R.shape == (r, n)
    assert np.linalg.norm(A[:, piv] - Q @ R) <= 1e-12 * np.linalg.norm(A)
    # graded columns: the diagonal of R decays like LAPACK's QRCP's (rank revealing)
    B = rng.standard_normal((m, n)) * (10.0 ** -np.linspace(0, 10, n))[rng.permutation(n)]
    _, R1, _, k1 = cqrrpt(B, random_state=0)
    R2 = scipy.linalg.qr(B, mode="r", pivoting=True)[0]
    d1, d2 = np.abs(np.diag(R1)), np.abs(np.diag(R2))[:k1]
    assert np.all(np.abs(np.log10(d1 / d2)) < 1.0)
    assert np.all(np.diff(np.log10(d1)) < 0.5)


def test_cqrrpt_zero_and_bad_inputs():
    Q, R, piv, k = cqrrpt(np.zeros((50, 4)), random_state=0)
    assert k == 0 and Q.shape == (50, 0) and R.shape == (0, 4)
    with pytest.raises(ValueError, match="tall"):
        cqrrpt(np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        cqrrpt(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="sketch_factor"):
        cqrrpt(np.ones((5, 2)), sketch_factor=0.5)
    with pytest.raises(ValueError, match="rank_tol"):
        cqrrpt(np.ones((5, 2)), rank_tol=2.0)
    with pytest.raises(TypeError, match="NumPy"):
        cqrrpt([[1.0, 2.0]])
    with pytest.raises(TypeError, match="complex"):
        cqrrpt(np.ones((5, 2), dtype=complex))
