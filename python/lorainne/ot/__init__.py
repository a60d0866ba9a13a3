"""Entropic optimal transport: log-domain Sinkhorn on dense or k-d tree hierarchical Gibbs kernels.

Conventions (used everywhere in this module):

* cost matrix ``C_ij = |x_i - y_j|^2`` (squared Euclidean distance, no 1/2 factor);
* ``eps`` is absolute (in the units of ``C``), not relative to ``max C``;
* the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with potentials ``f``, ``g``;
* ``cost = sum_ij P_ij C_ij``, ``dual = a . f + b . g``;
* ``marginal_error = |P 1 - a|_1 + |P^T 1 - b|_1`` at the returned potentials; ``tol`` bounds it
  relative to the total mass: ``marginal_error <= tol * sum(a)``;
* uniform weights (``1/n``, ``1/m``) when ``a`` or ``b`` is None or empty (POT's ``a = []``).

Unbalanced OT (``reach``, item of issue 13). With ``rho = reach**2`` (``rho_a``, ``rho_b`` for a
pair of reaches), ``sinkhorn`` solves

    OT(a, b) = min_{P >= 0}  <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)

with the generalized ``KL(p | q) = sum p log(p / q) - p + q`` (masses may differ, sum(a) != sum(b)
is allowed). Its dual is

    max_{f, g}  rho_a <a, 1 - exp(-f / rho_a)> + rho_b <b, 1 - exp(-g / rho_b)>
                - eps (sum_ij a_i b_j exp((f_i + g_j - C_ij) / eps) - sum(a) sum(b)),

maximized by the damped updates ``f_i = -rho_a / (rho_a + eps) * eps * log sum_j b_j exp((g_j -
C_ij) / eps)`` (and likewise g with rho_b); the plan has the same formula as in the balanced case,
and at the optimum ``P 1 = a exp(-f / rho_a)``, ``P^T 1 = b exp(-g / rho_b)``. A side with
``rho = inf`` has its marginal fixed (update undamped, its dual term ``<a, f>``); both infinite is
the balanced problem. For an unbalanced problem the result's fields are:

* ``cost = <P, C> + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)`` at the returned plan (the objective
  without the entropy term; for balanced problems ``<P, C>`` as before);
* ``dual`` = the dual objective above at the returned potentials (at the optimum it equals the
  primal, ``cost + eps KL(P | a b^T)``); balanced problems keep ``a . f + b . g``;
* ``marginal_error = |P 1 - a exp(-f / rho_a)|_1 + |P^T 1 - b exp(-g / rho_b)|_1``: the L1
  violation of the optimality conditions in units of mass (the balanced error when rho = inf),
  and ``tol`` bounds it by ``tol * sum(a)``. Unbalanced problems are solved in the caller's masses
  (not invariant under a change of mass).

Over-relaxation stays on: the unbalanced dual is strictly concave, so the iteration linearizes to a
two-block Gauss-Seidel on a definite Hessian, for which SOR converges for omega in (0, 2)
(Ostrowski-Reich) and the same rate-based choice of omega applies; the race against the plain run
still guards the final stage. Conventions of the peers: POT's ``ot.unbalanced.sinkhorn_unbalanced(a,
b, M, reg=eps, reg_m=rho, reg_type="kl")`` with ``M = C`` solves the same problem (its reported
``total_cost`` drops the ``- p + q`` mass terms of the KLs). GeomLoss (p = 2) uses the cost
``|x - y|^2 / 2``, ``eps = blur**2`` and ``rho = reach**2``: its problem with ``(blur, reach)`` is half
of lorainne's with ``eps = 2 blur**2`` and ``reach = sqrt(2) * reach``; its reported OT value
differs from ``dual`` by the constant ``eps (sum(a) + sum(b)) / 2 - eps sum(a) sum(b)``, which
cancels in a Sinkhorn divergence.

Every balanced problem is solved on unit masses and, when the points span more than 2**32 or less than
2**-32, on points scaled by a power of two 2**k with eps (and rho) scaled by 4**k. Both are exact (the plan
and C / eps do not change), so data at any scale float64 can hold gives the rescaled answer:
``sinkhorn(2**k x, 2**k y, eps=4**k eps)`` returns ``4**k`` times the cost and the potentials.

Three kernels do the work. ``method="dense"`` evaluates every entry (log-sum-exp over all pairs,
O(n m) time per iteration; the Rust path stores nothing of size n x m, the xp path forms C).
``method="hierarchical"`` (Rust, NumPy input) partitions the points with k-d trees and applies the
kernel through dense near-field blocks, far-field blocks expanded with an entrywise *relative*
error bound, and pruned blocks whose contribution is provably below the tolerance; memory is
O(n + m). ``method="matrix"`` (Rust, NumPy input) stores the log-domain stabilized kernel in
float32 (4 n m bytes, refused above 4 GB) and reads it once per iteration, with a run-time error
bound. The whole Sinkhorn loop runs in Rust with the GIL released.

Accuracy and cost of the hierarchical kernel. For boxes I, J with centres c_I, c_J and radii
r_I, r_J, ``exp(-|x-y|^2/eps) = exp(-|c_I-c_J|^2/eps) alpha_i beta_j exp(2 (x-c_I).(y-c_J)/eps)``;
only the last factor is expanded (Taylor, total degree p chosen per block from
T = 2 r_I r_J / eps <= 0.5 with the remainder bound e^T T^(p+1)/(p+1)!), in the log domain with
per-block max-shifts, so each far-field entry has *relative* error <= tol/4 however small it is.
Blocks are pruned only when a rigorous upper bound of their contribution is below
tol/2 / (#source leaves) of a rigorous lower bound of every target's total. Together:
``|log_matvec - exact| <= tol`` entrywise. The price of relative accuracy: each point interacts
with every source within about sqrt(eps log(1/tol)), so the work per application is about
(number of partner boxes) x (expansion terms) per point -- O(n) in n with a constant that depends
on eps, d and tol (about 6e3 multiply-adds per point at eps = 0.01, d = 2, tol = 1e-7, n = 1e4).
The hot loops are compiled twice, baseline x86-64 and AVX2 + FMA, chosen at run time.

Iterations. eps-scaling (stages from the squared diameter down to eps, each only to marginal
error 1e-2 with a kernel tolerance to match) warm-starts the final stage, whose iterations are
accelerated (``acceleration=``): by default with Anderson mixing of the map f -> F(G(f)) over the
last 8 iterations (g stays the plain G(f), so every measured pair has exact column marginals; an
error above twice the best so far restarts the mixing), or over-relaxed with the SOR factor
omega = 2 / (1 + sqrt(1 - theta)) read off the measured linear rate theta of the first plain ones
(56 iterations instead of 198 to 1e-6 at eps = 0.01 on 2-D mixtures, 114 instead of 892 at
eps = 0.002). With the hierarchical kernel and at least 2000 points per cloud, the stages before
the last run on coarse clouds (``multiscale=``: one point per k-d tree leaf of at most 8 at the leaf's
weighted centroid, with its weight) and the final stage starts from the c-transform of the coarse
potential onto the full clouds; at n = 1e4, eps = 0.01 Anderson and the multiscale start together
take 30-36 iterations (15-16 on the full clouds) where over-relaxation took 59-64 on the full clouds.
See benches/RESULTS_ot.md for the timings.
A schedule is never much worse than none: the plain run at eps (``eps_scaling=False``) makes its
first iteration before the schedule (returned at once if it already meets ``tol``, as on a grid
with x = y), and when the final stage stalls (its measured rate predicts more than 10 times the
iterations it has run, and at least 1000) the two race, one iteration each in turn, the first to
reach ``tol`` winning: at most about twice the plain run's iterations plus those before the stall.
For d > 3 the expansions have too many terms to pay off and the kernel falls back to pruned
dense blocks (correct, not faster).

Inputs. Dimensions up to 10 (and beyond) are exact on both kernels; measured time per iteration at
n = m = 3000, x and y uniform on the unit cube, eps = 0.005 d (a fixed fraction of the mean squared
distance d / 6), one thread, best of 3 on a loaded 2-core machine (benches/RESULTS_ot_unbalanced.md):

    d                          2     3     4     6     8     10
    hierarchical / dense      0.70  1.02  1.48  1.24  0.98  1.19

so the tree pays off in 2-D (and more so at larger n, O(n) against O(n^2) work), breaks even in
3-D, and from d = 4 on ``method="dense"`` (also O(n + m) memory in Rust) is as fast or faster;
``method="auto"`` picks the tree beyond 1e5 pairs in 1-D and 2-D; in 3 or more dimensions it
stores the float32 stabilized kernel (``method="matrix"``, one read per iteration) when its
4 n m bytes fit in 1 GiB (n = m = 16,384), and the tree beyond that; pass ``method="dense"`` for
d >= 4 at larger n, or ``method="hierarchical"`` to keep memory O(n + m).
float32 points are solved in float64 (the kernel bound holds as for float64 input) and the
potentials, cost and dual come back in float32. Duplicate points are fine on both kernels (the
tree puts identical points in one leaf; equal points get equal potentials), and so are zero
weights (those points take no part in the marginals).
"""

from __future__ import annotations

from ._barycenter import BarycenterResult, barycenter
from ._divergence import SinkhornDivergenceResult, sinkhorn_divergence
from ._kernel import DEFAULT_LEAF_SIZE, KERNEL_METHODS, GaussianKernel
from ._sinkhorn import SinkhornProblem, SinkhornResult, sinkhorn
from ._solve import AUTO_DENSE_PAIRS, METHODS

__all__ = [
    "AUTO_DENSE_PAIRS",
    "DEFAULT_LEAF_SIZE",
    "KERNEL_METHODS",
    "METHODS",
    "BarycenterResult",
    "GaussianKernel",
    "SinkhornDivergenceResult",
    "SinkhornProblem",
    "SinkhornResult",
    "barycenter",
    "sinkhorn",
    "sinkhorn_divergence",
]
