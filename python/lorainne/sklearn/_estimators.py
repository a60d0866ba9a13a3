"""scikit-learn estimators on lorainne's randomized SVD: RandomizedSVD (TruncatedSVD-compatible)
and PCA (centering done implicitly for sparse input).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from lorainne.randomized import randomized_svd, svd_certified
from lorainne.sklearn._centered import CenteredOperator


def _check_n_components(n_components, n_samples: int, n_features: int):
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Real):
        raise TypeError(f"n_components must be an int or a float in (0, 1), got {n_components!r}")
    if isinstance(n_components, numbers.Integral):
        limit = min(n_samples, n_features)
        if not 1 <= n_components <= limit:
            raise ValueError(
                f"n_components={n_components} must be in [1, min(n_samples, n_features)] = [1, {limit}] "
                f"(got n_samples={n_samples}, n_features={n_features})"
            )
        return int(n_components)
    if not 0.0 < float(n_components) < 1.0:
        raise ValueError(f"a float n_components is a variance fraction in (0, 1), got {n_components!r}")
    return float(n_components)


def _centered_squares(X, rows: int = 512) -> float:
    """||X - 1 mean^T||_F^2 in float64, by blocks of rows: np.var(X, axis=0) would allocate a
    centered copy of X (a full extra pass and n_samples x n_features of memory).
    """
    mean = X.mean(axis=0, dtype=np.float64)
    total = 0.0
    for start in range(0, X.shape[0], rows):
        block = X[start : start + rows] - mean
        total += float(np.einsum("ij,ij->", block, block))
    return total


class _RandomizedBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    _center = False

    def __init__(
        self,
        n_components=2,
        *,
        method="block_krylov",
        n_oversamples=10,
        n_power_iter="auto",
        random_state=None,
        n_threads=None,
    ):
        self.n_components = n_components
        self.method = method
        self.n_oversamples = n_oversamples
        self.n_power_iter = n_power_iter
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, y=None):
        """Fit the model on X (n_samples, n_features), dense or sparse."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit on X and return its projection (n_samples, n_components)."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        n_samples, n_features = X.shape
        k = _check_n_components(self.n_components, n_samples, n_features)
        if self.method not in ("subspace", "block_krylov"):
            raise ValueError(f"method must be 'subspace' or 'block_krylov', got {self.method!r}")
        sparse = scipy.sparse.issparse(X)
        if self._center:
            self.mean_ = np.asarray(X.mean(axis=0)).ravel().astype(X.dtype)
            A = CenteredOperator(X, self.mean_) if sparse else X - self.mean_
        else:
            A = X
        if isinstance(k, float):
            result = svd_certified(
                A, tol=1.0 - k, flip_sign="u", random_state=self.random_state, n_threads=self.n_threads
            )
            U, S, Vt = result.svd
        else:
            U, S, Vt = randomized_svd(
                A,
                k,
                n_oversamples=self.n_oversamples,
                n_power_iter=self.n_power_iter,
                method=self.method,
                flip_sign="u",
                random_state=self.random_state,
                n_threads=self.n_threads,
            )
        U, S, Vt = np.asarray(U), np.asarray(S), np.asarray(Vt)
        self.components_ = Vt
        self.n_components_ = Vt.shape[0]
        self.singular_values_ = S
        Z = U * S[None, :]
        self._set_variances(X, A, Z, S, n_samples)
        return Z

    def transform(self, X):
        """Project X on the components."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        Z = np.asarray(X @ self.components_.T)
        if self._center:
            Z = Z - (self.mean_ @ self.components_.T)[None, :]
        return Z

    def inverse_transform(self, X):
        """Map projections back to the input space."""
        check_is_fitted(self)
        X = np.asarray(X)
        out = X @ self.components_
        return out + self.mean_[None, :] if self._center else out

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class RandomizedSVD(_RandomizedBase):
    """Truncated SVD without centering (LSA), a drop-in for ``sklearn.decomposition.TruncatedSVD``.

    Parameters
    ----------
    n_components : int or float, default 2
        An int: the rank. A float in (0, 1): the fraction of ||X||_F^2 to keep; the rank is the
        smallest certified by :func:`lorainne.randomized.svd_certified`.
    method : {"block_krylov", "subspace"}, default "block_krylov"
    n_oversamples : int, default 10
    n_power_iter : int or "auto", default "auto"
        Power iterations (subspace) or Krylov depth (block Krylov).
    random_state : None, int or numpy Generator / RandomState
    n_threads : int, optional
        Threads of the Rust kernels (default: all cores). Pin it (with threadpoolctl for BLAS)
        when several processes share the machine: oversubscribed threads spin and wait.

    Attributes
    ----------
    components_ : ndarray (n_components, n_features)
    singular_values_ : ndarray (n_components,)
    explained_variance_ : ndarray (n_components,)
        Variance of each column of the transformed training data.
    explained_variance_ratio_ : ndarray (n_components,)
        ``explained_variance_`` over the total variance of the columns of X.
    n_components_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.sklearn import RandomizedSVD
    >>> X = np.random.default_rng(0).standard_normal((100, 8)) @ np.random.default_rng(1).standard_normal((8, 30))
    >>> svd = RandomizedSVD(n_components=8, random_state=0).fit(X)
    >>> bool(np.allclose(svd.inverse_transform(svd.transform(X)), X))
    True
    """

    def _set_variances(self, X, A, Z, S, n_samples):
        self.explained_variance_ = np.var(Z, axis=0)
        if scipy.sparse.issparse(X):
            total = float(mean_variance_axis(X, axis=0)[1].sum())
        else:
            total = _centered_squares(X) / n_samples
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros_like(S)


class PCA(_RandomizedBase):
    """Principal component analysis by randomized SVD, centering sparse X implicitly.

    A dense X is centered (a copy); a sparse X is never densified: the solver multiplies by the
    operator ``X - 1 mean_^T`` (:class:`lorainne.sklearn._centered.CenteredOperator`). A float
    ``n_components`` in (0, 1) keeps that fraction of the variance (scikit-learn's meaning), with
    the rank certified by :func:`lorainne.randomized.svd_certified`.

    Parameters and attributes are those of :class:`RandomizedSVD`, plus ``mean_`` (n_features,);
    ``explained_variance_`` is S**2 / (n_samples - 1) as in ``sklearn.decomposition.PCA``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse
    >>> from lorainne.sklearn import PCA
    >>> X = scipy.sparse.random(200, 50, density=0.1, random_state=0, format="csr")
    >>> pca = PCA(n_components=5, random_state=0).fit(X)
    >>> dense = X.toarray() - X.toarray().mean(axis=0)
    >>> s = np.linalg.svd(dense, compute_uv=False)[:5]
    >>> bool(np.allclose(pca.singular_values_, s, rtol=1e-6))
    True
    """

    _center = True

    def _set_variances(self, X, A, Z, S, n_samples):
        self.explained_variance_ = S**2 / (n_samples - 1)
        if scipy.sparse.issparse(X):
            total = float(mean_variance_axis(X, axis=0)[1].sum()) * n_samples / (n_samples - 1)
        else:  # ||X - 1 mean^T||_F^2 from the centered copy already made: no second centered temporary
            flat = A.reshape(-1)
            squares = np.dot(flat, flat) if flat.dtype == np.float64 else np.sum(np.square(flat, dtype=np.float64))
            total = float(squares) / (n_samples - 1)
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros_like(S)
