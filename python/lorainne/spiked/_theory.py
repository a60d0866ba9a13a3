"""Random-matrix predictions for the rank-one asymmetric spiked cubic tensor (order 3)."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq

EDGE = float(np.sqrt(8.0 / 3.0))  # right edge of the limiting spectrum: g is real beyond it
BETA_S = 2.0 / np.sqrt(3.0)


class SpikedPrediction(NamedTuple):
    """Asymptotic prediction at signal strength ``beta`` (NaN fields when ``exists`` is False).

    ``lam``: the limit of the estimator's weight ``T(x_hat, y_hat, z_hat)``; ``alignment``: the
    limit of ``|<x, x_hat>|`` in each mode (the three are equal in the cubic case); ``beta_s``:
    the threshold; ``exists``: whether a spike-aligned critical point exists (``beta > beta_s``).
    """

    lam: float
    alignment: float
    beta_s: float
    exists: bool


def g(z):
    """``g(z) = 3/4 (-z + sqrt(z^2 - 8/3))`` for real ``z >= sqrt(8/3)`` (the cubic case's
    Stieltjes-type function, Seddik, Guillaud and Couillet 2024 with c_i = 1/3).
    """
    z = np.asarray(z, dtype=np.float64)
    return 0.75 * (-z + np.sqrt(np.maximum(z * z - 8.0 / 3.0, 0.0)))


def q(z):
    """The per-mode alignment ``q(z) = sqrt(1 - g(z)^2 / 3)``."""
    return np.sqrt(np.maximum(1.0 - g(z) ** 2 / 3.0, 0.0))


def beta_of_lambda(lam):
    """``beta = (lam + g(lam)) / q(lam)^3``: the inverse map, and the bias-corrected weight
    ``beta_hat`` when ``lam`` is the observed ``T(x_hat, y_hat, z_hat)``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    return (lam + g(lam)) / q(lam) ** 3


def spiked_prediction(beta: float, order: int = 3) -> SpikedPrediction:
    """Predicted weight and alignment of the maximum-likelihood (best rank-one) estimator of the
    asymmetric rank-one spiked cubic tensor ``T = beta x o y o z + W / sqrt(N)`` (n x n x n,
    unit x, y, z, W standard Gaussian, ``N = 3n``), as n grows.

    Following Seddik, Guillaud and Couillet ("When random tensors meet random matrices", Ann.
    Appl. Probab. 2024) in the cubic case: ``lam`` solves ``lam + g(lam) = beta q(lam)^3`` on the
    branch where ``beta_of_lambda`` increases, with ``g(z) = 3/4 (-z + sqrt(z^2 - 8/3))`` and
    ``q(z) = sqrt(1 - g(z)^2 / 3)``; the alignment of each mode is ``q(lam)``. A solution exists iff
    ``beta > beta_s = 2 / sqrt(3)`` (``beta_of_lambda`` increases on ``[sqrt(8/3), inf)`` from its value
    ``2 / sqrt(3)`` at the spectral edge; the tests check both). Only ``order = 3`` is implemented.

    Examples
    --------
    >>> from lorainne.spiked import spiked_prediction
    >>> p = spiked_prediction(2.0)
    >>> p.exists, round(p.beta_s, 4), 0.8 < p.alignment < 1.0
    (True, 1.1547, True)
    >>> spiked_prediction(1.0).exists
    False
    """
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if order != 3:
        raise ValueError(f"order must be 3 (the only case implemented), got {order!r}")
    lam_s = EDGE  # beta_of_lambda increases from the edge, where it equals 2 / sqrt(3)
    beta_s = float(beta_of_lambda(lam_s))
    if beta <= beta_s:
        return SpikedPrediction(float("nan"), float("nan"), beta_s, False)
    hi = max(2.0 * beta + 4.0, lam_s + 1.0)
    lam = brentq(lambda t: float(beta_of_lambda(t)) - beta, lam_s, hi, xtol=1e-14)
    return SpikedPrediction(float(lam), float(q(lam)), beta_s, True)
