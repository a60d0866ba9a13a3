"""Global rank allocation under a parameter budget, with the break-even rule."""

from __future__ import annotations

import heapq
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from .._backend import to_host
from .._validation import as_float_array, check_int, check_option
from ._lowrank import METHODS, _check_alpha, weighting

ZERO_GAIN = 1e-11  # squared singular values below this fraction of the largest count as zero


@dataclass(frozen=True, eq=False)
class RankAllocation:
    """The result of :func:`allocate_ranks`.

    Attributes
    ----------
    ranks : dict
        Layer name -> rank. A layer kept dense has rank ``min(out, in)`` and is listed in ``dense``.
    dense : frozenset
        Layers left dense: factorizing them at the rank they earned would not save parameters.
    n_params : int
        Parameters of the allocation (``r (out + in)`` per factorized layer, ``out in`` per dense one).
    budget : int
        The budget in parameters.
    dense_params : int
        Parameters of all the layers uncompressed.
    predicted_loss : float
        Sum over layers of the discarded ``sigma^2`` of the weighted matrices: the squared weight
        error for svd, the squared data error ``sum ||(W - A B) X||_F^2`` for svd-llm.
    layer_loss : dict
        Layer name -> its discarded ``sigma^2``.
    spectra : dict
        Layer name -> the squared singular values (numpy, descending) that were ranked.
    """

    ranks: dict
    dense: frozenset
    n_params: int
    budget: int
    dense_params: int
    predicted_loss: float
    layer_loss: dict
    spectra: dict = field(repr=False)


def check_budget(budget: Any, dense_params: int) -> int:
    """A budget as a parameter count: a fraction in (0, 1] of ``dense_params`` or a count >= 0."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(
            f"budget must be a number (a fraction in (0, 1] or a parameter count), got {type(budget).__name__}"
        )
    value = float(budget)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"budget must be a nonnegative finite number, got {budget!r}")
    if isinstance(budget, numbers.Integral) and value > 1:
        return int(budget)
    if value > 1:
        raise ValueError(f"budget must be a fraction in (0, 1] or an integer parameter count, got {budget!r}")
    if value == 0:
        return 0
    return int(np.floor(value * dense_params))


def named(layers, name: str) -> dict:
    """A mapping as a dict; a sequence as ``{index: item}``."""
    if isinstance(layers, Mapping):
        return dict(layers)
    if isinstance(layers, (list, tuple)):
        return dict(enumerate(layers))
    raise TypeError(f"{name} must be a mapping name -> array or a list of arrays, got {type(layers).__name__}")


def weighted_spectrum(W, method: str, stats, fisher, alpha: float) -> np.ndarray:
    """Squared singular values of the weighted matrix, descending (eigenvalues of its smaller Gram matrix)."""
    weights = weighting(W, method, covariance=stats, fisher=fisher, alpha=alpha)
    M = weights.M
    xp = array_namespace(M)
    G = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
    values = to_host(xp.linalg.eigvalsh(G), np.float64)[::-1]
    # Below rounding level of the Gram matrix's eigenvalues: zero (no parameter is spent on them).
    return np.where(values > ZERO_GAIN * max(float(values[0]), 0.0), values, 0.0)


def _layer_points(s2: np.ndarray, shape, round_to: int):
    """(cost, gain, rank, dense) of every choice of one layer: rank 0, each block below the
    break-even rank, and "dense" (rank min(out, in)).
    """
    out, n_in = shape
    prefix = np.concatenate([[0.0], np.cumsum(s2)])
    points = [
        (r * (out + n_in), float(prefix[r]), r, False)
        for r in range(0, len(s2) + 1, round_to)
        if r * (out + n_in) < out * n_in
    ]
    points.append((out * n_in, float(prefix[-1]), min(shape), True))
    return points


def _upper_hull(points):
    """Indices of the upper concave hull of (cost, gain) points sorted by cost (from the first)."""
    hull = [0]
    for j in range(1, len(points)):
        while len(hull) >= 2:
            a, b = points[hull[-2]], points[hull[-1]]
            # drop b if it lies on or below the segment a -> j
            if (b[1] - a[1]) * (points[j][0] - a[0]) <= (points[j][1] - a[1]) * (b[0] - a[0]):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _greedy(points: dict, hulls: dict, budget: int, forced_dense: frozenset):
    """Greedy by gain per parameter over the segments of each layer's concave hull of
    (parameters, captured sigma^2) choices; a segment that does not fit is walked point by point.
    Layers in ``forced_dense`` are dense from the start. Returns (position per layer, used, gain).
    """
    position = {name: (len(points[name]) - 1 if name in forced_dense else 0) for name in points}
    hull_step = {name: (len(hulls[name]) - 1 if name in forced_dense else 0) for name in points}
    used = sum(points[name][-1][0] for name in forced_dense)
    if used > budget:
        return None
    order = {name: i for i, name in enumerate(points)}
    heap: list = []

    def push(name):
        k = hull_step[name]
        hull = hulls[name]
        if k + 1 >= len(hull):
            return
        a, b = points[name][hull[k]], points[name][hull[k + 1]]
        if b[1] <= a[1]:
            return  # nothing left to gain
        heapq.heappush(heap, (-(b[1] - a[1]) / (b[0] - a[0]), order[name], name))

    for name in points:
        push(name)
    while heap:
        _, _, name = heapq.heappop(heap)
        pts, k = points[name], hull_step[name]
        target = hulls[name][k + 1]
        if used + pts[target][0] - pts[position[name]][0] <= budget:
            used += pts[target][0] - pts[position[name]][0]
            position[name], hull_step[name] = target, k + 1
            push(name)
            continue
        # The segment does not fit: take the points inside it while they fit, then stop this layer.
        for j in range(position[name] + 1, target):
            extra = pts[j][0] - pts[position[name]][0]
            if used + extra > budget or pts[j][1] <= pts[position[name]][1]:
                break
            used += extra
            position[name] = j
    # Fill what is left with single steps (any layer), best gain per parameter first.
    while True:
        steps = [
            ((pts[j][1] - pts[position[name]][1]) / (pts[j][0] - pts[position[name]][0]), name, j)
            for name, pts in points.items()
            for j in [position[name] + 1]
            if j < len(pts)
            and used + pts[j][0] - pts[position[name]][0] <= budget
            and pts[j][1] > pts[position[name]][1]
        ]
        if not steps:
            break
        _, name, j = max(steps, key=lambda step: step[0])
        used += points[name][j][0] - points[name][position[name]][0]
        position[name] = j
    return position, used, sum(points[name][position[name]][1] for name in points)


def greedy_allocation(spectra: dict, shapes: dict, budget: int, round_to: int = 1):
    """The greedy of :func:`_greedy`, improved by local search over which layers stay dense
    (greedy alone can miss a "dense" jump that the budget would have allowed: a knapsack item
    larger than the rest). Each round tries forcing one more layer dense and keeps the best.
    """
    points = {name: _layer_points(spectra[name], shapes[name], round_to) for name in spectra}
    hulls = {name: _upper_hull(points[name]) for name in spectra}
    forced: frozenset = frozenset()
    best = _greedy(points, hulls, budget, forced)
    while True:
        trials = [
            (f, _greedy(points, hulls, budget, forced | {name}))
            for name in points
            if name not in forced
            for f in [forced | {name}]
        ]
        trials = [(f, run) for f, run in trials if run is not None and run[2] > best[2] * (1 + 1e-12)]
        if not trials:
            break
        forced, best = max(trials, key=lambda item: item[1][2])
    position, used, _ = best
    ranks = {name: points[name][position[name]][2] for name in spectra}
    dense = {name for name in spectra if points[name][position[name]][3]}
    return ranks, dense, used


def allocate_ranks(
    layers,
    budget,
    *,
    method: str = "svd",
    stats=None,
    fisher=None,
    alpha: float = 0.5,
    transpose: bool = False,
    round_to: int = 1,
) -> RankAllocation:
    """Ranks of many layers under one parameter budget (global greedy allocation).

    Every singular triplet of every layer goes into one list, with gain ``sigma^2`` of the
    method's weighted matrix (whitened by the activation covariance for svd-llm, so the gain is
    the data loss it removes) and cost ``out + in`` parameters; triplets are taken greedily by
    gain per cost while the budget allows. A layer is never factorized at or above its break-even
    rank ``out * in / (out + in)``: once its next triplet would reach it, its remaining item is
    "stay dense" (gain: its whole tail; cost: the parameters up to ``out * in``), ranked the same way.

    Parameters
    ----------
    layers : mapping name -> array (out, in), or a list of arrays
    budget : float or int
        A fraction in (0, 1] of the layers' dense parameter count, or an integer number of
        parameters (> 1).
    method : {"svd", "fwsvd", "asvd", "svd-llm"}, default "svd"
    stats : mapping name -> ActivationStats or covariance array, optional
        Needed by asvd and svd-llm for every layer.
    fisher : mapping name -> array (out, in), optional
        Needed by fwsvd for every layer.
    alpha : float, default 0.5
        asvd's exponent.
    transpose : bool, default False
        The weights are stored (in, out).
    round_to : int, default 1
        Ranks are multiples of this (8 suits GPU kernels): the greedy takes blocks of that many triplets.

    Returns
    -------
    RankAllocation
        ``ranks``, ``dense``, ``n_params``, ``predicted_loss`` (sum of discarded ``sigma^2``), ...

    Raises
    ------
    ValueError
        Negative or non-finite budget, a fraction above 1, missing statistics, bad weights.
    TypeError
        A budget that is not a number, layers that are neither a mapping nor a list.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import allocate_ranks
    >>> rng = np.random.default_rng(0)
    >>> layers = {"a": rng.standard_normal((64, 8)) @ rng.standard_normal((8, 64)),
    ...           "b": rng.standard_normal((64, 64))}
    >>> alloc = allocate_ranks(layers, 0.5)
    >>> alloc.ranks["a"], alloc.n_params <= alloc.budget
    (8, True)
    """
    items = named(layers, "layers")
    if not items:
        raise ValueError("layers is empty")
    method = check_option(method, "method", METHODS)
    alpha = _check_alpha(alpha)
    round_to = check_int(round_to, "round_to", low=1)
    stats = {} if stats is None else named(stats, "stats")
    fisher = {} if fisher is None else named(fisher, "fisher")
    needs = {"svd-llm": stats, "asvd": stats, "fwsvd": fisher}.get(method)
    if needs is not None:
        missing = [name for name in items if name not in needs]
        if missing:
            kind = "fisher" if method == "fwsvd" else "stats"
            raise ValueError(f"method={method!r} needs {kind} for every layer; missing for {missing[:5]}")
    spectra, shapes = {}, {}
    for name, W in items.items():
        W = as_float_array(W, f"layers[{name!r}]", ndim=2)
        W = W.T if transpose else W
        shapes[name] = (int(W.shape[0]), int(W.shape[1]))
        spectra[name] = weighted_spectrum(W, method, stats.get(name), fisher.get(name), alpha)
    dense_params = sum(o * i for o, i in shapes.values())
    budget_params = check_budget(budget, dense_params)
    ranks, dense, used = greedy_allocation(spectra, shapes, budget_params, round_to)
    layer_loss = {name: (0.0 if name in dense else float(np.sum(spectra[name][ranks[name] :]))) for name in items}
    return RankAllocation(
        ranks, frozenset(dense), used, budget_params, dense_params, float(sum(layer_loss.values())), layer_loss, spectra
    )
