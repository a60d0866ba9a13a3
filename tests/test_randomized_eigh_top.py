"""eigh_top (randomized/_eigh_top.py + rust/core/src/randomized/tridiagonal.rs): all eigenvalues and
the top-k eigenvectors of a small symmetric matrix, checked against NumPy's eigh on hard cases and
by hypothesis, and the two Gram routes that use it checked against their eigh versions.

The accuracy asked of every answer (c = 20): eigenvalues within c n u ||G|| of eigh's,
||G V - V diag(w_top)||_max <= c n u ||G||, |V^T V - I|_max <= c n u.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorainne import randomized_svd
from lorainne.randomized import _eigh_top
from lorainne.randomized._eigh_top import eigh_top, top_eigenpairs

pytest.importorskip("lorainne._core")

C = 20.0
U = np.finfo(np.float64).eps / 2


def assert_accurate(G, k, out):
    assert out is not None, "the fast route gave up"
    w, V = out
    n = G.shape[0]
    ref = np.linalg.eigh(G)[0]
    norm = max(np.abs(ref).max(), np.finfo(np.float64).tiny)
    assert w.shape == (n,) and V.shape == (n, k)
    assert np.all(np.diff(w) >= 0)
    assert np.abs(w - ref).max() <= C * n * U * norm
    assert np.abs(G @ V - V * w[n - k :]).max() <= C * n * U * norm
    assert np.abs(V.T @ V - np.eye(k)).max() <= C * n * U


def rotated(values, seed=0):
    n = len(values)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    G = (Q * values) @ Q.T
    return (G + G.T) / 2


def wilkinson(m):
    n = 2 * m + 1
    return np.diag(np.abs(np.arange(n) - m).astype(float)) + np.eye(n, k=1) + np.eye(n, k=-1)


def planted_gram(n=165, seed=0):
    # Z^T Z of a 2000 x n block with singular values i^-0.5: the block Krylov Gram route's matrix.
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((2000, n)))
    W, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Z = (Q * np.arange(1, n + 1) ** -0.5) @ W.T
    return Z.T @ Z


HARD = {
    "identity": (np.eye(50), 10),
    "multiple of identity, k = n": (7.5 * np.eye(30), 30),
    "zero": (np.zeros((40, 40)), 5),
    "repeated diagonal": (np.diag(np.repeat([1.0, 2.0, 3.0, 3.0], 12)), 20),
    "graded": (rotated(np.logspace(0, -15, 60)), 20),
    "graded, k = n": (rotated(np.logspace(0, -15, 60), seed=1), 60),
    "wilkinson 21": (wilkinson(10), 4),
    "wilkinson 41": (wilkinson(20), 10),
    "planted i^-0.5 gram": (planted_gram(), 50),
    "rank deficient": (rotated(np.r_[np.zeros(20), np.linspace(1, 2, 44)]), 10),
    "k = 1": (rotated(np.linspace(-1, 1, 64)), 1),
    "n = 3": (rotated([1.0, 2.0, 2.0]), 2),
}


@pytest.mark.parametrize("name", list(HARD))
def test_hard_cases_match_eigh(name):
    G, k = HARD[name]
    before = G.copy()
    assert_accurate(G, k, eigh_top(G, k))
    np.testing.assert_array_equal(G, before)  # the input is not modified


def test_digits_gram_with_its_zero_eigenvalues():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    A = sklearn_datasets.load_digits().data.astype(np.float64)
    G = A.T @ A
    assert_accurate(G, 10, eigh_top(G, 10))


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("k_last", [False, True])
def test_tiny_sizes(n, k_last):
    G = rotated(np.arange(1.0, n + 1))
    k = n if k_last else 1
    assert_accurate(G, k, eigh_top(G, k))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n", [2, 20])
def test_non_finite_input_gives_none(bad, n):
    G = np.eye(n)
    G[1, 0] = G[0, 1] = bad
    assert eigh_top(G, 1) is None
    w, V = top_eigenpairs(np.eye(n), 1)  # the caller's helper still answers finite input
    assert V.shape == (n, 1)


@pytest.mark.parametrize(
    "diagonal",
    [[1e-310, 2e-310, 3e-310], [5e-324] * 3, [1e-300, 2e-300, 3e-300, 5e-320], [2e-308, 1e-320, 3e-309]],
)
def test_subnormal_scales_give_none_or_an_accurate_answer(diagonal):
    # A subnormal largest entry has no power-of-two scale into [0.5, 1]: it once looped forever.
    G = np.diag(diagonal)
    out = eigh_top(G, 1)
    if out is not None:
        assert_accurate(G, 1, out)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="G must be a float64"):
        eigh_top(np.eye(3, dtype=np.float32), 1)
    with pytest.raises(TypeError, match="G must be a float64"):
        eigh_top([[1.0]], 1)
    with pytest.raises(ValueError, match="square"):
        eigh_top(np.ones((3, 2)), 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\], got 4"):
        eigh_top(np.eye(3), 4)
    with pytest.raises(ValueError, match="got 0"):
        eigh_top(np.eye(3), 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        eigh_top(np.eye(3), 1.0)


@st.composite
def symmetric_problems(draw):
    n = draw(st.integers(3, 70))
    k = draw(st.integers(1, n))
    kind = draw(st.sampled_from(["gaussian", "clustered", "graded", "low rank"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 2.0 ** draw(st.integers(-60, 60))
    if kind == "gaussian":
        X = rng.standard_normal((n, n))
        return scale * (X + X.T), k
    if kind == "clustered":
        values = rng.choice([-1.0, 0.5, 1.0, 1.0 + 1e-9], size=n)
    elif kind == "graded":
        values = np.logspace(0, -rng.uniform(1, 16), n)
    else:
        values = np.r_[rng.uniform(0.1, 1, max(n // 3, 1)), np.zeros(n - max(n // 3, 1))]
    return scale * rotated(values, seed=int(rng.integers(1 << 31))), k


@settings(max_examples=60, deadline=None)
@given(symmetric_problems())
def test_matches_eigh_on_random_symmetric_matrices(problem):
    G, k = problem
    assert_accurate(G, k, eigh_top(G, k))


def test_gram_routes_agree_with_their_eigh_versions(monkeypatch):
    # The two callers: block Krylov's Gram route (planted i^-0.5 matrix) and the small-side SVD
    # (a 300 x 40 matrix, block spanning its small side), with the fast route on and off.
    rng = np.random.default_rng(3)
    m, n = 600, 300
    Q, _ = np.linalg.qr(rng.standard_normal((m, n)))
    W, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.arange(1, n + 1) ** -0.5) @ W.T
    B = rng.standard_normal((300, 40)) * np.linspace(1, 0.1, 40)
    calls = []
    real = _eigh_top.eigh_top
    monkeypatch.setattr(_eigh_top, "eigh_top", lambda G, k: calls.append(k) or real(G, k))
    cases = [
        (A, 20, dict(method="block_krylov", n_power_iter=2, block_size=25)),
        (B, 5, dict(method="block_krylov", n_power_iter=0, block_size=40)),
    ]
    for M, rank, options in cases:
        results = []
        for fast in (True, False):
            monkeypatch.setattr(_eigh_top, "USE_EIGH_TOP", fast)
            results.append(randomized_svd(M, rank, random_state=0, n_threads=1, **options))
        (U1, S1, Vt1), (U0, S0, Vt0) = results
        np.testing.assert_allclose(S1, S0, rtol=1e-10)
        assert np.abs(np.abs(np.sum(U1 * U0, axis=0)) - 1).max() < 1e-8
        assert np.abs(np.abs(np.sum(Vt1 * Vt0, axis=1)) - 1).max() < 1e-8
    assert len(calls) >= 2, calls  # both routes went through eigh_top


def test_top_eigenpairs_keeps_eigh_for_many_vectors_and_other_types(monkeypatch):
    calls = []
    real = _eigh_top.eigh_top
    monkeypatch.setattr(_eigh_top, "eigh_top", lambda G, k: calls.append(k) or real(G, k))
    G = rotated(np.linspace(1, 2, 40))
    for M, k in [(G, 30), (G.astype(np.float32), 5), (G.astype(np.complex128), 5)]:
        w, V = top_eigenpairs(M, k)
        assert V.shape == (40, k)
        np.testing.assert_allclose(w, np.linalg.eigh(G)[0], atol=1e-5)
    assert calls == []
    top_eigenpairs(G, 20)
    assert calls == [20]
