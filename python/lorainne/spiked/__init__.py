"""Multi-spiked random tensors: the simulator, the (joint) ALS estimator, and the random-matrix
predictions of Seddik, Guillaud and Couillet (2024) for the rank-one asymmetric cubic model.
"""

from ._model import SpikedTensor, spiked_estimate, spiked_tensor
from ._plot import AlignmentCurve, alignment_curve, plot_alignment
from ._theory import SpikedPrediction, beta_of_lambda, spiked_prediction

__all__ = [
    "AlignmentCurve",
    "alignment_curve",
    "plot_alignment",
    "SpikedPrediction",
    "SpikedTensor",
    "beta_of_lambda",
    "spiked_estimate",
    "spiked_prediction",
    "spiked_tensor",
]
