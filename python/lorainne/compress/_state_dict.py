"""Compress every 2-D weight of a state dict under one parameter budget."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from .._validation import check_option
from ._allocate import RankAllocation, allocate_ranks, named
from ._lowrank import METHODS, SOLVERS, low_rank


@dataclass(frozen=True)
class LayerReport:
    """One row of a :class:`CompressionReport`."""

    name: str
    shape: tuple
    rank: int | None  # None: kept dense
    params_before: int
    params_after: int
    weight_error: float  # ||W - A B||_F / ||W||_F
    data_error: float | None  # ||(W - A B) X||_F, from the covariance
    predicted_data_error: float | None  # the allocation's prediction of the same (svd-llm)


@dataclass(frozen=True, eq=False)
class CompressionReport:
    """Per-layer table of :func:`compress_state_dict`; ``str(report)`` prints it."""

    rows: list
    allocation: RankAllocation

    @property
    def params_before(self) -> int:
        return sum(row.params_before for row in self.rows)

    @property
    def params_after(self) -> int:
        return sum(row.params_after for row in self.rows)

    def __str__(self) -> str:
        head = ("layer", "shape", "rank", "before", "after", "rel.w.err", "data err", "predicted")
        lines = [f"{head[0]:<32} {head[1]:>12} {head[2]:>6} " + " ".join(f"{h:>10}" for h in head[3:])]
        fmt = lambda v: "-" if v is None else f"{v:10.4g}"  # noqa: E731
        for row in self.rows:
            rank = "dense" if row.rank is None else str(row.rank)
            shape = "x".join(map(str, row.shape))
            lines.append(
                f"{row.name[-32:]:<32} {shape:>12} {rank:>6} {row.params_before:>10} {row.params_after:>10} "
                f"{fmt(row.weight_error)} {fmt(row.data_error)} {fmt(row.predicted_data_error)}"
            )
        ratio = self.params_after / max(self.params_before, 1)
        totals = f"{self.params_before:>10} {self.params_after:>10}"
        lines.append(f"{'total':<32} {'':>12} {'':>6} {totals}   ({ratio:.1%} of the candidate layers' parameters)")
        return "\n".join(lines)


class CompressedStateDict(NamedTuple):
    """``tensors`` (the new state dict) and ``report``; unpacks as a pair."""

    tensors: dict
    report: CompressionReport


def _skip_rule(skip) -> Callable[[str], bool]:
    if skip is None:
        return lambda name: False
    if callable(skip):
        return lambda name: bool(skip(name))
    if isinstance(skip, str):
        skip = [skip]
    try:
        patterns = [str(p) for p in skip]
    except TypeError:
        raise TypeError(
            f"skip must be None, a callable name -> bool, or glob patterns, got {type(skip).__name__}"
        ) from None
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _is_candidate(array: Any) -> bool:
    dtype = getattr(array, "dtype", None)
    if getattr(array, "ndim", None) != 2 or dtype is None or min(array.shape) < 2:
        return False
    try:
        return array_namespace(array).isdtype(dtype, "real floating")
    except Exception:
        return False


def compress_state_dict(
    tensors,
    budget,
    *,
    stats=None,
    method: str = "svd-llm",
    skip=None,
    transpose: bool = False,
    round_to: int = 1,
    solver: str = "auto",
    random_state=None,
    callback: Callable[[str], Any] | None = None,
    n_threads: int | None = None,
) -> CompressedStateDict:
    """Compress the 2-D weights of a state dict under one parameter budget.

    The 2-D real floating arrays whose name ``skip`` does not exclude are the candidates;
    :func:`allocate_ranks` spreads the budget over them (a layer whose earned rank would reach
    its break-even rank stays dense), then :func:`low_rank` factorizes each one. A compressed
    weight ``name`` is replaced by ``name.A`` (out, r) and ``name.B`` (r, in), with
    ``name ~ name.A @ name.B``; every other entry is passed through untouched.

    Parameters
    ----------
    tensors : mapping name -> array
        Weights in (out, in) layout (``transpose=True`` for (in, out)); not modified.
    budget : float or int
        Fraction in (0, 1] of the candidates' parameters, or an absolute parameter count.
    stats : mapping name -> ActivationStats or covariance, optional
        Activation statistics of each candidate's inputs, keyed by the weight's name (needed by
        svd-llm and asvd; every candidate must have them, or be skipped).
    method : {"svd", "fwsvd", "asvd", "svd-llm"}, default "svd-llm"
        fwsvd is not available here (it needs a Fisher per weight: use :func:`low_rank`).
    skip : None, callable name -> bool, or glob pattern(s)
        Candidates to leave alone (``"*embed*"``, ``["lm_head.weight"]``, ...).
    transpose, round_to, solver, random_state, n_threads
        As in :func:`allocate_ranks` and :func:`low_rank`.
    callback : callable, optional
        Called with each layer's name after it is done (the CLI draws its progress bar with it).

    Returns
    -------
    CompressedStateDict
        ``tensors`` (new dict) and ``report`` (a :class:`CompressionReport`: layer, shape, rank,
        parameters before and after, relative weight error, data error, predicted data error).

    Raises
    ------
    ValueError
        No candidate, missing statistics, bad budget (see :func:`allocate_ranks`).

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import compress_state_dict
    >>> rng = np.random.default_rng(0)
    >>> sd = {"fc.weight": rng.standard_normal((64, 4)) @ rng.standard_normal((4, 48)), "fc.bias": np.zeros(64)}
    >>> new, report = compress_state_dict(sd, 0.5, method="svd")
    >>> sorted(new), new["fc.weight.A"].shape
    (['fc.bias', 'fc.weight.A', 'fc.weight.B'], (64, 4))
    """
    tensors = named(tensors, "tensors")
    method = check_option(method, "method", METHODS)
    if method == "fwsvd":
        raise ValueError("method='fwsvd' needs a Fisher per weight: call low_rank on each layer instead")
    solver = check_option(solver, "solver", SOLVERS)
    skipped = _skip_rule(skip)
    stats = {} if stats is None else named(stats, "stats")
    candidates = {name: W for name, W in tensors.items() if _is_candidate(W) and not skipped(str(name))}
    if not candidates:
        raise ValueError("tensors holds no 2-D floating weight to compress (after skip)")
    layer_stats = {name: stats[name] for name in candidates if name in stats}
    allocation = allocate_ranks(
        candidates, budget, method=method, stats=layer_stats, transpose=transpose, round_to=round_to
    )
    out: dict = {}
    rows = []
    for name, W in tensors.items():
        if name not in candidates:
            out[name] = W
            continue
        shape = tuple(int(s) for s in W.shape)
        dense_params = shape[0] * shape[1]
        rank = allocation.ranks[name]
        if name in allocation.dense:
            out[name] = W
            rows.append(
                LayerReport(
                    str(name), shape, None, dense_params, dense_params, 0.0, 0.0 if name in layer_stats else None, None
                )
            )
        elif rank == 0:  # the budget gave this layer nothing: zero-width factors, W is replaced by 0
            xp = array_namespace(W)
            out[f"{name}.A"] = xp.zeros((shape[0], 0), dtype=W.dtype)
            out[f"{name}.B"] = xp.zeros((0, shape[1]), dtype=W.dtype)
            loss = float(np.sqrt(allocation.layer_loss[name]))
            rows.append(
                LayerReport(
                    str(name),
                    shape,
                    0,
                    dense_params,
                    0,
                    1.0,
                    loss if method == "svd-llm" else None,
                    loss if method == "svd-llm" else None,
                )
            )
        else:
            f = low_rank(
                W,
                rank,
                method=method,
                covariance=layer_stats.get(name),
                transpose=transpose,
                solver=solver,
                random_state=random_state,
            )
            out[f"{name}.A"], out[f"{name}.B"] = f.A, f.B
            norm = (
                float(np.sqrt(allocation.spectra[name].sum()))
                if method == "svd"
                else float(array_namespace(W).linalg.vector_norm(W))
            )
            predicted = float(np.sqrt(allocation.layer_loss[name])) if method == "svd-llm" else None
            rows.append(
                LayerReport(
                    str(name),
                    shape,
                    rank,
                    dense_params,
                    f.n_params,
                    f.weight_error / max(norm, 1e-300),
                    f.data_error,
                    predicted,
                )
            )
        if callback is not None:
            callback(str(name))
    return CompressedStateDict(out, CompressionReport(rows, allocation))
