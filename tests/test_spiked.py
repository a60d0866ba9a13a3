"""Spiked random tensors: simulation, estimation and the random-matrix predictions (n = 80)."""

import numpy as np
import pytest

from lorainne.spiked import beta_of_lambda, spiked_estimate, spiked_prediction, spiked_tensor


def test_threshold_closed_form_and_monotone():
    p = spiked_prediction(2.0)
    assert p.beta_s == pytest.approx(2 / np.sqrt(3), abs=1e-12)
    lam = np.linspace(np.sqrt(8 / 3), 10, 400)
    assert np.all(np.diff(beta_of_lambda(lam)) > 0)
    for beta in (0.5, 1.0, 1.15):
        below = spiked_prediction(beta)
        assert not below.exists and np.isnan(below.alignment)
    assert spiked_prediction(1.16).exists


@pytest.mark.parametrize("beta", [1.5, 2.0, 3.0])
def test_alignment_and_debiased_weight_match_prediction(beta):
    # One draw's weight fluctuates by about W(x, y, z) / sqrt(N): sd 0.06 of beta_hat at n = 80
    # (measured over 40 draws per beta: mean bias within 0.002, sd 0.059-0.064). The mean of 16 draws
    # has sd 0.015, so the 0.06 bound is a 4-sigma test of the convention (with 5 draws it was
    # 2.2 sigma, and seeds 0-4 happened to fall 2.2 sigma low).
    p = spiked_prediction(beta)
    al, bh = [], []
    for rep in range(16):
        s = spiked_tensor(80, [beta], symmetric=False, random_state=rep)
        # from the truth: the ML fixed point (below about beta = 2 the unfolding start is
        # computationally too weak at n = 80, the known statistical-computational gap)
        est = spiked_estimate(s.T, 1, init=s.spikes, tol=1e-8)
        al.append(np.mean([abs(est.factors[m][:, 0] @ s.spikes[m][:, 0]) for m in range(3)]))
        bh.append(float(beta_of_lambda(est.weights[0])))
    assert abs(np.mean(al) - p.alignment) <= 0.03
    assert abs(np.mean(bh) - beta) <= 0.06


def test_debiased_weight_wrong_convention_fails():
    # the test above can fail: the raw weight lam (no bias correction) and a correction with the
    # noise scaled by sqrt(n) instead of sqrt(N = 3n) miss beta by far more than 0.06
    s = spiked_tensor(80, [2.0], symmetric=False, random_state=0)
    lam = spiked_estimate(s.T, 1, init=s.spikes).weights[0]
    assert abs(lam - 2.0) > 0.15
    assert abs(float(beta_of_lambda(lam * np.sqrt(3.0))) - 2.0) > 0.5


def test_unfolding_start_above_the_computational_threshold():
    s = spiked_tensor(80, [3.0], symmetric=False, random_state=0)
    est = spiked_estimate(s.T, 1)
    assert abs(est.factors[0][:, 0] @ s.spikes[0][:, 0]) == pytest.approx(spiked_prediction(3.0).alignment, abs=0.03)


def test_correlated_spikes_joint_estimate():
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    s = spiked_tensor(40, [8.0, 6.0], correlation=corr, symmetric=False, random_state=1)
    for m in range(3):
        np.testing.assert_allclose(s.spikes[m].T @ s.spikes[m], corr, atol=1e-12)
    est = spiked_estimate(s.T, 2)
    for m in range(3):
        cos = np.abs(est.factors[m].T @ s.spikes[m])
        assert np.all(cos.max(axis=0) > 0.9)


def test_symmetric_simulation():
    s = spiked_tensor(6, [2.0], random_state=0)
    T = s.T
    assert np.allclose(T, T.transpose(1, 0, 2)) and np.allclose(T, T.transpose(2, 1, 0))
    assert s.spikes[0] is not s.spikes[1] and np.array_equal(s.spikes[0], s.spikes[1])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: spiked_prediction(-1.0), "beta"),
        (lambda: spiked_prediction(2.0, order=4), "order"),
        (lambda: spiked_tensor(5, [1.0, np.nan]), "betas"),
        (lambda: spiked_tensor(2, [1.0, 1.0, 1.0]), "betas"),
        (lambda: spiked_tensor(5, [1.0, 1.0], correlation=np.eye(3)), "correlation"),
        (lambda: spiked_estimate(np.full((3, 3, 3), np.nan), 1), "T"),
        (lambda: spiked_estimate(np.ones((3, 3, 3)), 4), "rank"),
        (lambda: spiked_estimate(np.ones((3, 3, 3)), 1, init="truth"), "init"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_alignment_curve_and_plot():
    from lorainne.spiked import alignment_curve, plot_alignment

    c = alignment_curve([1.0, 2.5], n=30, n_repeats=2, random_state=0)
    assert np.isnan(c.predicted[0]) and abs(c.empirical[1] - c.predicted[1]) < 0.05
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = plot_alignment(c)
    assert len(ax.lines) >= 2
    import matplotlib.pyplot as plt

    plt.close("all")
