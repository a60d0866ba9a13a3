"""lorainne.sklearn: RandomizedSVD (TruncatedSVD-compatible) and PCA with implicit centering."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SkPCA
from sklearn.decomposition import TruncatedSVD
from sklearn.utils.estimator_checks import parametrize_with_checks

from lorainne.sklearn import PCA, RandomizedSVD


@parametrize_with_checks([RandomizedSVD(), PCA(n_components=0.5)])
def test_check_estimator(estimator, check):
    check(estimator)


def test_randomized_svd_matches_truncated_svd_on_digits():
    X = load_digits().data
    ours = RandomizedSVD(n_components=10, random_state=0).fit(X)
    ref = TruncatedSVD(n_components=10, algorithm="arpack", random_state=0).fit(X)
    assert np.allclose(ours.singular_values_, ref.singular_values_, rtol=1e-6)
    assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-4, atol=1e-8)
    assert np.allclose(np.abs(ours.components_), np.abs(ref.components_), atol=1e-5)
    Z = ours.transform(X)
    assert np.allclose(np.abs(Z), np.abs(ref.transform(X)), atol=1e-4 * np.abs(Z).max())
    assert np.allclose(ours.fit_transform(X), Z, atol=1e-8 * np.abs(Z).max())


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.95])
def test_pca_variance_fraction_matches_scikit_learn(fraction):
    X = load_digits().data
    ours = PCA(n_components=fraction, random_state=0).fit(X)
    ref = SkPCA(n_components=fraction, svd_solver="full").fit(X)
    assert ours.n_components_ == ref.n_components_
    assert np.allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-4)
    assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-4)
    assert ours.explained_variance_ratio_.sum() >= fraction


class NoDensify(scipy.sparse.csr_matrix):
    """A CSR matrix that refuses to be densified."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("densified")

    def todense(self, *args, **kwargs):
        raise AssertionError("densified")


def test_pca_centers_sparse_input_implicitly():
    X = scipy.sparse.random(300, 80, density=0.05, random_state=1, format="csr")
    dense = X.toarray()
    ref = SkPCA(n_components=6, svd_solver="full").fit(dense)
    ours = PCA(n_components=6, n_power_iter=8, random_state=0).fit(NoDensify(X))  # flat spectrum: deep Krylov
    assert np.allclose(ours.singular_values_, ref.singular_values_, rtol=1e-6)
    assert np.allclose(ours.mean_, ref.mean_)
    assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-6)
    Z = ours.transform(X)
    assert np.allclose(np.abs(Z), np.abs(ref.transform(dense)), atol=1e-8)
    assert np.allclose(ours.inverse_transform(Z), ref.inverse_transform(ref.transform(dense)), atol=1e-8)
    frac = PCA(n_components=0.8, random_state=0).fit(X)
    assert frac.n_components_ == SkPCA(n_components=0.8, svd_solver="full").fit(dense).n_components_


def test_bad_n_components():
    X = np.random.default_rng(0).standard_normal((20, 5))
    with pytest.raises(ValueError, match="n_components"):
        RandomizedSVD(n_components=6).fit(X)
    with pytest.raises(ValueError, match="variance fraction"):
        PCA(n_components=1.5).fit(X)
    with pytest.raises(TypeError, match="n_components"):
        PCA(n_components="mle").fit(X)
    with pytest.raises(ValueError, match="method"):
        PCA(method="arpack").fit(X)
