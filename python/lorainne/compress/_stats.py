"""Streaming activation statistics of one layer: X X^T (float64), mean |x_j| and the sample count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from .._backend import to_host
from .._validation import as_float_array, check_int


class ActivationStats:
    """Streaming statistics of the inputs of one dense layer ``y = W x``.

    Accumulates, batch by batch, the (uncentred) covariance ``C = X X^T = sum_n x_n x_n^T`` in
    float64, the sum of ``|x_j|`` per input channel and the sample count. Batches are arrays of
    shape (n, in) of any array-API library (NumPy, CuPy, torch, ...); the sums stay in that library
    and on its device. Only the statistics are kept, never the activations, so one pass over a
    calibration set costs O(in^2) memory per layer; the eigendecomposition (or Cholesky factor) of
    ``C`` is computed once, at the end (the Swift-SVD observation: one factorization of a streamed
    covariance replaces an SVD per batch).

    Parameters
    ----------
    n_features : int, optional
        The layer's input width; taken from the first batch when omitted.

    Attributes
    ----------
    covariance : array (in, in), float64
        ``sum_n x_n x_n^T`` (not divided by the count: ``||E X||_F^2 = tr(E C E^T)`` for any E).
    abs_sum : array (in,), float64
        ``sum_n |x_n|`` per channel.
    n_samples : int

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import ActivationStats
    >>> X = np.random.default_rng(0).standard_normal((1000, 8))
    >>> stats = ActivationStats()
    >>> for batch in np.split(X, 4):
    ...     _ = stats.update(batch)
    >>> bool(np.allclose(stats.covariance, X.T @ X)), stats.n_samples
    (True, 1000)
    """

    def __init__(self, n_features: int | None = None):
        self.n_features = None if n_features is None else check_int(n_features, "n_features", low=1)
        self.covariance: Any = None
        self.abs_sum: Any = None
        self.n_samples = 0

    def update(self, batch) -> ActivationStats:
        """Add a batch of activations of shape (n, in) (a 1-D array is one sample). Returns self."""
        if getattr(batch, "ndim", None) == 1:
            batch = array_namespace(batch).reshape(batch, (1, -1))
        batch = as_float_array(batch, "batch", ndim=2)
        xp = array_namespace(batch)
        if self.n_features is None:
            self.n_features = int(batch.shape[1])
        if batch.shape[1] != self.n_features:
            raise ValueError(
                f"batch must have {self.n_features} columns (the layer's inputs), got shape {tuple(batch.shape)}"
            )
        x = xp.astype(batch, xp.float64)
        gram = x.T @ x
        absum = xp.sum(xp.abs(x), axis=0)
        if self.covariance is None:
            self.covariance, self.abs_sum = gram, absum
        else:
            self.covariance = self.covariance + gram
            self.abs_sum = self.abs_sum + absum
        self.n_samples += int(batch.shape[0])
        return self

    def merge(self, other: ActivationStats) -> ActivationStats:
        """Add another accumulator's statistics (for example from another worker). Returns self."""
        if not isinstance(other, ActivationStats):
            raise TypeError(f"other must be an ActivationStats, got {type(other).__name__}")
        if other.n_samples == 0:
            return self
        if self.n_samples == 0:
            self.n_features, self.covariance, self.abs_sum, self.n_samples = (
                other.n_features,
                other.covariance,
                other.abs_sum,
                other.n_samples,
            )
            return self
        if other.n_features != self.n_features:
            raise ValueError(f"other has {other.n_features} features, this accumulator {self.n_features}")
        self.covariance = self.covariance + other.covariance
        self.abs_sum = self.abs_sum + other.abs_sum
        self.n_samples += other.n_samples
        return self

    @property
    def mean_abs(self):
        """Mean absolute activation per input channel, ``abs_sum / n_samples``."""
        self._check_filled()
        return self.abs_sum / self.n_samples

    def eigh(self):
        """Eigenvalues (ascending, clipped at 0) and eigenvectors of the covariance: one EVD per layer."""
        self._check_filled()
        xp = array_namespace(self.covariance)
        values, vectors = xp.linalg.eigh(self.covariance)
        return xp.clip(values, 0.0, None), vectors

    def _check_filled(self) -> None:
        if self.n_samples == 0:
            raise ValueError("ActivationStats holds no samples yet: call update(batch) first")

    @classmethod
    def from_arrays(cls, covariance, abs_sum, n_samples: int) -> ActivationStats:
        """Rebuild an accumulator from its saved arrays (see :func:`save_stats`)."""
        covariance = as_float_array(covariance, "covariance", ndim=2)
        if covariance.shape[0] != covariance.shape[1]:
            raise ValueError(f"covariance must be square, got shape {tuple(covariance.shape)}")
        abs_sum = as_float_array(abs_sum, "abs_sum", ndim=1)
        if abs_sum.shape[0] != covariance.shape[0]:
            raise ValueError(f"abs_sum must have {covariance.shape[0]} entries, got {abs_sum.shape[0]}")
        stats = cls(int(covariance.shape[0]))
        xp = array_namespace(covariance)
        stats.covariance = xp.astype(covariance, xp.float64)
        stats.abs_sum = xp.astype(abs_sum, xp.float64)
        stats.n_samples = check_int(n_samples, "n_samples", low=1)
        return stats

    def __repr__(self) -> str:
        return f"ActivationStats(n_features={self.n_features}, n_samples={self.n_samples})"


def save_stats(path, stats: dict[str, ActivationStats]) -> None:
    """Write a mapping ``layer name -> ActivationStats`` to an .npz file (no pickle).

    Keys are ``NAME.covariance``, ``NAME.abs_sum``, ``NAME.n_samples``; :func:`load_stats` reads
    them back, and ``lorainne compress --stats`` takes the file.
    """
    arrays = {}
    for name, item in stats.items():
        if not isinstance(item, ActivationStats):
            raise TypeError(f"stats[{name!r}] must be an ActivationStats, got {type(item).__name__}")
        item._check_filled()
        arrays[f"{name}.covariance"] = to_host(item.covariance, np.float64)
        arrays[f"{name}.abs_sum"] = to_host(item.abs_sum, np.float64)
        arrays[f"{name}.n_samples"] = np.asarray(item.n_samples, dtype=np.int64)
    np.savez(Path(path), **arrays)


def load_stats(path) -> dict[str, ActivationStats]:
    """Read an .npz file written by :func:`save_stats` (``allow_pickle=False``: no code runs)."""
    out: dict[str, ActivationStats] = {}
    with np.load(Path(path), allow_pickle=False) as data:
        names = sorted({key.rsplit(".", 1)[0] for key in data.files if key.endswith(".covariance")})
        for name in names:
            missing = [f"{name}.{part}" for part in ("abs_sum", "n_samples") if f"{name}.{part}" not in data.files]
            if missing:
                raise ValueError(f"{path}: missing {missing}")
            out[name] = ActivationStats.from_arrays(
                data[f"{name}.covariance"], data[f"{name}.abs_sum"], int(data[f"{name}.n_samples"])
            )
    return out
