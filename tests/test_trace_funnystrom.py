"""funNyström++: tr f(A) for PSD A and operator-monotone f."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest

from lorainne.trace import funnystrom_trace


def psd(rng, lam):
    U, _ = np.linalg.qr(rng.standard_normal((len(lam), len(lam))))
    return (U * lam) @ U.T


@pytest.mark.parametrize("spectrum", ["exp", "alg"])
@pytest.mark.parametrize("which", ["log1p", "ratio"])
def test_funnystrom_accuracy_and_correction(spectrum, which):
    rng = np.random.default_rng(0)
    n = 300
    i = np.arange(n)
    lam = 100 * 0.8**i if spectrum == "exp" else 100 * (1.0 + i) ** -2.0
    f, fn = ("log1p", np.log1p) if which == "log1p" else (lambda x: x / (x + 1.0),) * 2
    A = psd(rng, lam)
    true = float(np.sum(fn(lam)))
    plain = [funnystrom_trace(A, f, rank=30, random_state=s) for s in range(4)]
    corrected = [funnystrom_trace(A, f, rank=30, n_vectors=10, random_state=s) for s in range(4)]
    # operator-monotone f: the Nyström part alone underestimates; the Hutchinson correction helps
    assert all(est.value <= true * (1 + 1e-10) for est in plain)
    err_plain = np.mean([abs(e.value - true) for e in plain])
    err_corrected = np.mean([abs(e.value - true) for e in corrected])
    assert err_corrected < err_plain
    assert err_corrected / true < 0.03
    assert all(e.n_matvec == 30 + 10 * 20 for e in corrected)
    assert all(np.isfinite(e.error_estimate) for e in corrected)


def test_funnystrom_inputs_and_errors():
    rng = np.random.default_rng(1)
    lam = 0.7 ** np.arange(60)
    A = psd(rng, lam)
    ref = funnystrom_trace(A, "log1p", rank=20, n_vectors=4, random_state=0)
    strict = funnystrom_trace(xps.asarray(A), "log1p", rank=20, n_vectors=4, random_state=0)
    assert strict.value == pytest.approx(ref.value, rel=1e-10)
    assert funnystrom_trace(np.zeros((5, 5)), "log1p", rank=2).value == 0.0
    with pytest.raises(ValueError, match="f\\(0\\) = 0"):
        funnystrom_trace(A, np.exp, rank=5)
    with pytest.raises(ValueError, match="log1p"):
        funnystrom_trace(A, "log", rank=5)
    with pytest.raises(TypeError, match="callable"):
        funnystrom_trace(A, 3, rank=5)
    with pytest.raises(ValueError, match="rank"):
        funnystrom_trace(A, "log1p", rank=61)
    with pytest.raises(ValueError, match="positive semidefinite"):
        funnystrom_trace(-A, "log1p", rank=10)
