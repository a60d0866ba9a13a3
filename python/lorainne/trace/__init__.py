"""Randomized trace and spectral-density estimation for matrices known through products.

* :func:`trace` estimates tr(A) from at most ``n_matvec`` products with A: Hutchinson,
  Hutch++ (Meyer, Musco, Musco and Woodruff 2021), Nyström++ (Persson, Cortinovis and Kressner
  2022) and the exchangeable estimators XTrace / XNysTrace (Epperly, Tropp and Webber 2024).
* :func:`trace_function` estimates tr f(A) of a symmetric A by stochastic Lanczos quadrature
  (SLQ) or a Chebyshev expansion.
* :func:`trace_parametric` estimates tr f(t, A) for many values of a parameter t at the cost of
  one estimator: f(t, .) is expanded in Chebyshev polynomials of A and the random vectors are
  shared across t (Matti, He, Kressner and Lam 2025).
* :func:`spectral_density` estimates the Gaussian-smoothed spectral density of A.
* :func:`spectrum_bounds` estimates an interval holding the spectrum of a symmetric A.
* :func:`diagonal` estimates diag(A): XDiag, Diag++ or Hutchinson.
* :func:`funnystrom_trace` estimates tr f(A) of a PSD A for operator-monotone f (funNyström++).
* ``trace(A, tol=...)`` spends products until its error estimate meets a relative tolerance.

Every estimator runs on the ONE xp (array-API) reference written against
``array_api_compat``; random vectors are drawn on the host from a NumPy Generator and moved
with ``xp.asarray(..., device=...)``. The small dense algebra on m x m matrices (m = number of
random vectors) runs in float64. When A is an explicit NumPy matrix (dense or CSR), the
Chebyshev and Lanczos recurrences of :func:`trace_function`, :func:`trace_parametric`,
:func:`spectral_density` and :func:`spectrum_bounds` run in Rust with the GIL released.

The modules, one job each (imports go down this list only):

* ``_common``: counted products, random test vectors, small reductions, input checks,
  :class:`TraceEstimate`;
* ``_estimators``: the estimators of tr(A) and :func:`trace`;
* ``_recurrences``: the Lanczos and Chebyshev recurrences (xp reference, Rust dispatch), Gauss
  quadrature and Chebyshev coefficients;
* ``_bounds``: :func:`spectrum_bounds`;
* ``_functions``: :func:`trace_function`;
* ``_parametric``: :func:`trace_parametric`;
* ``_density``: :func:`spectral_density`;
* ``_diagonal``: :func:`diagonal` (XDiag, Diag++, Hutchinson);
* ``_adaptive``: the doubling rule of ``trace(A, tol=...)``;
* ``_funnystrom``: :func:`funnystrom_trace` (funNyström++, tr f(A) for operator-monotone f).

The tuples ``TRACE_METHODS``, ``FUNCTION_METHODS``, ``NAMED_FUNCTIONS``, ``PARAMETRIC_METHODS``
and ``DENSITY_METHODS`` list the accepted values of ``method`` (and of the named ``f``).
"""

from ._bounds import spectrum_bounds
from ._common import TraceEstimate
from ._density import DENSITY_METHODS, spectral_density
from ._diagonal import DIAGONAL_METHODS, DiagonalEstimate, diagonal
from ._estimators import TRACE_METHODS, trace
from ._functions import FUNCTION_METHODS, NAMED_FUNCTIONS, trace_function
from ._funnystrom import funnystrom_trace
from ._parametric import PARAMETRIC_METHODS, trace_parametric

__all__ = [
    "DENSITY_METHODS",
    "DIAGONAL_METHODS",
    "DiagonalEstimate",
    "FUNCTION_METHODS",
    "NAMED_FUNCTIONS",
    "PARAMETRIC_METHODS",
    "TRACE_METHODS",
    "TraceEstimate",
    "diagonal",
    "funnystrom_trace",
    "spectral_density",
    "spectrum_bounds",
    "trace",
    "trace_function",
    "trace_parametric",
]
