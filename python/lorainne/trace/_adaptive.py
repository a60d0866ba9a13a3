"""Trace to a requested accuracy: the estimator is rerun with doubled budgets (fresh vectors) until
z * error_estimate <= tol * |value|, z = 2 (the error estimate is a standard error, so the
tolerance is met in about 95% of runs when the estimate is calibrated), or ``max_matvec`` is spent.
The products of the discarded runs are counted in what is reported: doubling spends at most twice
what the last run used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from .._warnings import ConvergenceWarning
from ._common import TraceEstimate

CONFIDENCE_Z = 2.0
START_BUDGET = 16


def adaptive_estimate(run: Callable[[int], TraceEstimate], tol: float, max_matvec: int, n: int) -> TraceEstimate:
    """Run ``run(budget)`` for budgets 16, 32, 64, ... (n, the exact trace, once a doubled budget
    reaches it) until the error estimate meets ``tol`` or the next run would pass ``max_matvec``;
    returns the last estimate with the products of all runs counted.
    """
    used, budget, estimate = 0, min(START_BUDGET, n, max_matvec), None
    while True:
        estimate = run(budget)
        used += estimate.n_matvec
        if CONFIDENCE_Z * estimate.error_estimate <= tol * abs(estimate.value):
            return TraceEstimate(estimate.value, estimate.error_estimate, used)
        budget = min(2 * budget, n)
        if used + budget > max_matvec or estimate.error_estimate == 0:
            break
    assert estimate is not None
    relative = estimate.error_estimate / abs(estimate.value) if estimate.value else math.inf
    warnings.warn(
        f"trace: tol={tol} not reached within max_matvec={max_matvec} (estimated relative standard "
        f"error {relative:.2e} after {used} products)",
        ConvergenceWarning,
        stacklevel=3,
    )
    return TraceEstimate(estimate.value, estimate.error_estimate, used)
