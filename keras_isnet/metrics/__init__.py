"""Explanation-quality metrics.

Perturbation curves (model-based): :func:`insertion_curve`, :func:`deletion_curve`
(returning a :class:`CurveResult`). Ground-truth localization (mask-based):
:func:`relevance_mass_accuracy`, :func:`background_relevance_share`,
:func:`relevance_rank_accuracy`, :func:`pointing_game`.
"""

from keras_isnet.metrics.localization import (
    background_relevance_share,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from keras_isnet.metrics.perturbation import CurveResult, deletion_curve, insertion_curve

__all__ = [
    "CurveResult",
    "background_relevance_share",
    "deletion_curve",
    "insertion_curve",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
]
