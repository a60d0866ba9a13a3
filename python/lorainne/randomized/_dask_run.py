"""How the randomized algorithms run on a Dask matrix: as one graph (``lorainne._dask_graph``) or
step by step with the orthonormalizations' checks deferred to one gather (the xp reference).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

from .. import _dask
from .._backend import numpy_dtype
from .._exact_scaling import scale_exponent, times_power_of_two
from .._operators import dask_operator

logger = logging.getLogger("lorainne")


def deferred_checks(plan, run: Callable, finish: Callable | None = None):
    """``run(plan)`` on Dask with every pass submitted at once: the orthonormalizations' checks are
    deferred (``op.checks``) and gathered in one round trip, by ``finish(plan, *run's results)`` or
    by :func:`lorainne._dask.verify`. On a failed check (a CholeskyQR2 breakdown) it runs again from
    the same random numbers with each orthonormalization checked as it is computed (and its fallbacks).
    """
    state = plan.rng.bit_generator.state
    deferred = plan._replace(op=dataclasses.replace(plan.op, checks=[]))
    result = run(deferred)
    result = finish(deferred, *result) if finish else (result if _dask.verify(deferred.op.checks)[0] else None)
    if result is not None:
        return result
    logger.debug("dask: a deferred orthonormalization check failed; running again with eager checks")
    plan.rng.bit_generator.state = state
    result = run(plan)
    return finish(plan, *result) if finish else result


def one_graph(plan, build: Callable):
    """``build(A, Omega, held)`` (a ``lorainne._dask_graph`` algorithm: one graph, one gather), with
    the checks of A it gathers: NaN or infinity raises; entries beyond ~1e+-77 run it again on 2**k A
    (same Omega). Returns (plan, outcome), the plan of the matrix used (its ``scale``), and outcome
    None when an orthonormalization failed its checks: the caller then runs the step-by-step path
    with its fallbacks from the same random numbers (the generator is put back).
    """
    state = plan.rng.bit_generator.state
    dtype = numpy_dtype(plan.op.dtype)
    omega = plan.rng.standard_normal((plan.op.shape[1], plan.size)).astype(dtype, copy=False)  # as _gaussian
    held = _dask.held_between_passes(plan.op.dense)
    outcome = build(plan.op.dense, omega, held)
    lo, hi = outcome.extremes
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("A contains NaN or infinity")
    k = scale_exponent(max(-lo, hi), dtype)
    if k:
        plan = plan._replace(op=dask_operator(times_power_of_two(plan.op.dense, k)), scale=k)
        outcome = build(plan.op.dense, omega, held)
    if outcome.accepted:
        return plan, outcome
    logger.debug("dask: a deferred orthonormalization check failed; running again with eager checks")
    plan.rng.bit_generator.state = state
    return plan, None
