"""Warnings lorainne emits."""


class ConvergenceWarning(UserWarning):
    """An iterative method stopped at its iteration or size limit before meeting its tolerance."""
