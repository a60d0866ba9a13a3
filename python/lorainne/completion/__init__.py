"""Low-rank recovery from partial and indirect observations.

- :func:`complete`: matrix completion by alternating minimization, row regressions solved by
  preconditioned CG (approximate, O(|Omega| k) per step) or exactly, in Rust.
- :func:`sense`: matrix sensing by gradient descent on an over-parameterized factorization,
  implicitly regularized toward low rank by a small initialization.
"""

from ._altmin import CompletionResult, CompletionState, complete
from ._sensing import SensingResult, sense

__all__ = ["CompletionResult", "CompletionState", "SensingResult", "complete", "sense"]
