"""Empirical against predicted alignment of the rank-one spiked cubic tensor estimator."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validation import check_int, check_random_state
from ._model import spiked_estimate, spiked_tensor
from ._theory import spiked_prediction


class AlignmentCurve(NamedTuple):
    """Per ``beta``: the predicted alignment (NaN below the threshold) and the empirical mean and
    standard deviation over ``n_repeats`` tensors (mean over the three modes).
    """

    betas: Any
    predicted: Any
    empirical: Any
    empirical_std: Any
    beta_s: float


def alignment_curve(betas, n: int = 80, *, n_repeats: int = 5, init: str = "truth", random_state=None):
    """Simulate ``T = beta x o y o z + W / sqrt(3n)`` and compare the estimator's alignment to
    :func:`spiked_prediction`. ``init="truth"`` starts ALS at the spikes (the ML fixed point the
    theory describes); ``"unfolding"`` is the practical start (fails below about beta ~ n^(1/4)).

    >>> from lorainne.spiked import alignment_curve
    >>> c = alignment_curve([3.0], n=40, n_repeats=2, random_state=0)
    >>> bool(abs(c.empirical[0] - c.predicted[0]) < 0.05)
    True
    """
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    n = check_int(n, "n", low=2)
    n_repeats = check_int(n_repeats, "n_repeats", low=1)
    if init not in ("truth", "unfolding"):
        raise ValueError(f"init must be 'truth' or 'unfolding', got {init!r}")
    rng = check_random_state(random_state)
    pred, mean, std = [], [], []
    for beta in betas:
        p = spiked_prediction(float(beta))
        pred.append(p.alignment)
        vals = []
        for _ in range(n_repeats):
            s = spiked_tensor(n, [beta], symmetric=False, random_state=rng)
            est = spiked_estimate(s.T, 1, init=s.spikes if init == "truth" else "unfolding")
            vals.append(np.mean([abs(est.factors[m][:, 0] @ s.spikes[m][:, 0]) for m in range(3)]))
        mean.append(np.mean(vals))
        std.append(np.std(vals))
    return AlignmentCurve(betas, np.array(pred), np.array(mean), np.array(std), spiked_prediction(0.0).beta_s)


def plot_alignment(curve: AlignmentCurve, ax=None):
    """Plot an :class:`AlignmentCurve` (needs matplotlib); returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(curve.betas, curve.predicted, "-", label="predicted (random matrix theory)")
    ax.errorbar(curve.betas, curve.empirical, yerr=curve.empirical_std, fmt="o", label="empirical")
    ax.axvline(curve.beta_s, color="gray", ls=":", label=r"$\beta_s = 2/\sqrt{3}$")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel("alignment per mode")
    ax.legend()
    return ax
