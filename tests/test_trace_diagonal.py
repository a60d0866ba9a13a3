"""Diagonal estimation (XDiag, Diag++, Hutchinson) and trace to a tolerance."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse
from scipy.sparse.linalg import aslinearoperator

from lorainne import ConvergenceWarning, trace
from lorainne.trace import DiagonalEstimate, diagonal


def psd(rng, s):
    n = len(s)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * s) @ U.T


def xdiag_brute_force(A, Om):
    """The XDiag definition: mean over i of diag(P_i A) + omega_i (.) (I - P_i) A omega_i,
    P_i the projection on span(A Omega without column i)."""
    Y = A @ Om
    estimates = []
    for i in range(Om.shape[1]):
        Q = np.linalg.qr(np.delete(Y, i, axis=1))[0]
        w = Om[:, i]
        estimates.append(np.sum(Q * (A.T @ Q), axis=1) + w * (A @ w - Q @ (Q.T @ (A @ w))))
    return np.mean(estimates, axis=0)


def test_xdiag_equals_its_leave_one_out_definition():
    rng = np.random.default_rng(0)
    n = 50
    A = psd(rng, 0.8 ** np.arange(n)) + 0.05 * rng.standard_normal((n, n))  # not symmetric
    est = diagonal(A, 16, random_state=1)
    Om = np.random.default_rng(1).integers(0, 2, size=(n, 8)).astype(float) * 2 - 1
    assert np.allclose(est.values, xdiag_brute_force(A, Om), atol=1e-12)
    assert isinstance(est, DiagonalEstimate) and est.n_matvec == 16


@pytest.mark.parametrize(
    "spectrum",
    [lambda i: 0.7**i, lambda i: (1.0 + i) ** -2.0, lambda i: (1.0 + i) ** -1.0],
    ids=["exp", "alg2", "alg1"],
)
def test_xdiag_most_accurate_and_error_estimate_calibrated(spectrum):
    rng = np.random.default_rng(2)
    n = 200
    A = psd(rng, spectrum(np.arange(n)))
    d = np.diag(A)
    errors = {m: [] for m in ("xdiag", "diag++", "hutchinson")}
    ratios = []
    for seed in range(6):
        for method in errors:
            est = diagonal(A, 60, method=method, random_state=seed)
            errors[method].append(np.linalg.norm(est.values - d))
            if method == "xdiag":
                ratios.append(est.error_estimate / errors[method][-1])
    mean = {k: np.mean(v) for k, v in errors.items()}
    assert mean["xdiag"] <= mean["diag++"] * 1.05
    assert mean["xdiag"] < mean["hutchinson"]
    assert 0.3 < np.median(ratios) < 5  # the error estimate has the right size


def test_diagonal_exact_low_rank_and_full_budget():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((80, 5))
    A = B @ B.T
    est = diagonal(A, 20, random_state=0)  # rank 5 < 10 sketch vectors: exact
    assert np.allclose(est.values, np.diag(A), atol=1e-10)
    C = rng.standard_normal((30, 30))
    exact = diagonal(C, 30, method="hutchinson")
    assert np.allclose(exact.values, np.diag(C)) and exact.error_estimate == 0.0 and exact.n_matvec == 30


def test_diagonal_inputs():
    rng = np.random.default_rng(4)
    A = psd(rng, 0.8 ** np.arange(60))
    copy = A.copy()
    ref = diagonal(A, 20, random_state=5)
    assert np.array_equal(A, copy)
    strict = diagonal(xps.asarray(A), 20, random_state=5)
    assert np.allclose(np.asarray(strict.values), ref.values)
    S = scipy.sparse.csr_matrix(A)
    assert np.allclose(diagonal(S, 20, random_state=5).values, ref.values)
    op = aslinearoperator(A)
    assert np.allclose(diagonal(op, 20, random_state=5).values, ref.values)
    f32 = diagonal(A.astype(np.float32), 20, random_state=5)
    assert f32.values.dtype == np.float32 and np.allclose(f32.values, ref.values, atol=1e-4)
    sym = diagonal(A, 20, symmetric=True, random_state=5)
    assert np.allclose(sym.values, ref.values)
    tiny = diagonal(A * 1e-300, 20, random_state=5)
    assert np.allclose(tiny.values * 1e300, ref.values)


def test_diagonal_bad_arguments():
    A = np.eye(5)
    with pytest.raises(ValueError, match="square"):
        diagonal(np.ones((3, 4)), 2)
    with pytest.raises(ValueError, match="n_matvec"):
        diagonal(A, 0)
    with pytest.raises(ValueError, match="method"):
        diagonal(A, 2, method="xtrace")
    with pytest.raises(TypeError, match="symmetric"):
        diagonal(A, 2, symmetric="yes")
    with pytest.raises(ValueError, match="NaN"):
        diagonal(np.full((3, 3), np.nan), 2)
    with pytest.raises(ValueError, match="backend"):
        diagonal(A, 2, backend="rust")


# --------------------------------------------------------------------------- trace(tol=...)


@pytest.mark.parametrize(
    "spectrum",
    [lambda i: 0.9**i, lambda i: (1.0 + i) ** -2.0, lambda i: 1.0 + 0.1 * np.sin(i)],
    ids=["exp", "alg", "flat"],
)
def test_adaptive_trace_meets_tol_in_95_percent(spectrum):
    """200 trials in all (67 per spectrum): |estimate - tr(A)| <= tol tr(A) in >= 95% of them."""
    rng = np.random.default_rng(6)
    n = 150
    s = spectrum(np.arange(n))
    A = psd(rng, s)
    tol = 1e-2
    hits, used = 0, []
    for trial in range(200 // 3 + 1):
        est = trace(A, tol=tol, psd=True, random_state=trial)
        hits += abs(est.value - s.sum()) <= tol * s.sum()
        used.append(est.n_matvec)
    assert hits >= 0.95 * (200 // 3 + 1)
    assert max(used) <= 3 * n


def test_adaptive_trace_budget_warning_and_arguments():
    rng = np.random.default_rng(7)
    A = psd(rng, (1.0 + np.arange(200)) ** -1.0)
    with pytest.warns(ConvergenceWarning, match="max_matvec=40"):
        est = trace(A, tol=1e-6, max_matvec=40, random_state=0)
    assert est.n_matvec <= 40
    with pytest.raises(ValueError, match="not both"):
        trace(A, 10, tol=0.1)
    with pytest.raises(TypeError, match="n_matvec"):
        trace(A)
    with pytest.raises(ValueError, match="max_matvec"):
        trace(A, 10, max_matvec=20)
    with pytest.raises(ValueError, match="tol"):
        trace(A, tol=2.0)
    with pytest.raises(ValueError, match="max_matvec"):
        trace(A, tol=0.1, max_matvec=0)
