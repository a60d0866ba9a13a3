"""scikit-learn estimators on lorainne's randomized SVD (needs scikit-learn; import explicitly:
``from lorainne.sklearn import PCA, RandomizedSVD``).

* :class:`RandomizedSVD`: ``sklearn.decomposition.TruncatedSVD``-compatible (no centering).
* :class:`PCA`: ``sklearn.decomposition.PCA``-like, centering a sparse input implicitly.

Both take ``n_components`` as an int (the rank) or a float in (0, 1) (a variance fraction,
certified by :func:`lorainne.randomized.svd_certified`). This subpackage uses absolute imports
only, so ``import sklearn`` inside it is scikit-learn itself.
"""

from lorainne.sklearn._centered import CenteredOperator
from lorainne.sklearn._estimators import PCA, RandomizedSVD

__all__ = ["PCA", "CenteredOperator", "RandomizedSVD"]
