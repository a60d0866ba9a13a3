"""The result of :func:`lorainne.ot.sinkhorn_divergence`: the debiased value and its three solves."""

from __future__ import annotations

from typing import Any, NamedTuple


class SinkhornDivergenceResult(NamedTuple):
    """The result of :func:`lorainne.sinkhorn_divergence`.

    Attributes
    ----------
    value : NumPy floating scalar
        ``S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2 + eps (sum(a) - sum(b))**2 / 2`` with ``OT``
        the ``dual`` of each solve (the mass term is Sejourne et al.'s for unbalanced problems;
        zero for balanced ones). In the points' floating dtype.
    xy, xx, yy : SinkhornResult
        The solves of ``OT(a, b)`` between x and y, and of the symmetric ``OT(a, a)`` on x and
        ``OT(b, b)`` on y (``g = f`` for those two).
    """

    value: Any
    xy: Any
    xx: Any
    yy: Any

    def gradient_x(self):
        """Gradient of ``value`` with respect to the points x, shape (n, d).

        ``xy.gradient_x() - xx.gradient_x()``: x enters ``OT(a, a)`` through both arguments, and by
        symmetry each contributes the same, so the half in front of it cancels (envelope theorem:
        the potentials are optimal, only the cost moves).
        """
        return self.xy.gradient_x() - self.xx.gradient_x()

    def gradient_y(self):
        """Gradient of ``value`` with respect to the points y, shape (m, d):
        ``xy.gradient_y() - yy.gradient_x()`` (see :meth:`gradient_x`).
        """
        return self.xy.gradient_y() - self.yy.gradient_x()


def _divergence(xy, xx, yy, eps: float, unbalanced: bool) -> SinkhornDivergenceResult:
    """The debiased value from the three solves (float64 arithmetic, the duals' dtype)."""
    value = float(xy.dual) - 0.5 * float(xx.dual) - 0.5 * float(yy.dual)
    if unbalanced:
        gap = float(xy.problem.a.sum()) - float(xy.problem.b.sum())
        value += 0.5 * eps * gap * gap
    return SinkhornDivergenceResult(type(xy.dual)(value), xy, xx, yy)
