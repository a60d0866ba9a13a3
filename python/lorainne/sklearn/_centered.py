"""The implicitly centered matrix A - 1 mu^T as an operator: products never densify a sparse A."""

from __future__ import annotations

import numpy as np


class CenteredOperator:
    """Products with ``A - 1 mu^T`` (``mu`` the column means of A) for the randomized solvers.

    ``matmat(X) = A X - 1 (mu^T X)``, ``rmatmat(Y) = A^T Y - mu (1^T Y)``, and
    ``frobenius_norm() = sqrt(||A||_F^2 - m ||mu||^2)`` (exact: sum_ij (a_ij - mu_j)^2).
    """

    def __init__(self, A, mean):
        self.A, self.mean = A, np.asarray(mean)
        self.shape = A.shape
        self.dtype = np.dtype(A.dtype)
        # A^T in CSR once: products with A^T stay row-parallel (CSC's scatter is ~2x slower per product).
        self._At = A.T.tocsr() if hasattr(A, "tocsr") else A.T

    def matmat(self, X):
        X = np.asarray(X)
        return np.asarray(self.A @ X) - (self.mean @ X)[None, :]

    def rmatmat(self, Y):
        Y = np.asarray(Y)
        return np.asarray(self._At @ Y) - self.mean[:, None] * Y.sum(axis=0)[None, :]

    def frobenius_norm(self) -> float:
        A = self.A
        squares = float((A.multiply(A)).sum()) if hasattr(A, "multiply") else float(np.sum(A * A))
        return float(np.sqrt(max(squares - A.shape[0] * float(self.mean @ self.mean), 0.0)))
