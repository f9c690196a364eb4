"""Explanation-quality metrics.

Perturbation curves (model-based): :func:`insertion_curve`, :func:`deletion_curve`
(returning a :class:`CurveResult`). Ground-truth localization (mask-based):
:func:`relevance_mass_accuracy`, :func:`background_relevance_share`,
:func:`relevance_rank_accuracy`, :func:`pointing_game`. Sanity checks: the model parameter
randomisation test :func:`model_randomization_test` (a :class:`RandomizationResult`) and
:func:`faithfulness_correlation` (a :class:`FaithfulnessResult`). Multi-label
classification: :func:`per_label_auc`, :func:`per_label_accuracy`.
"""

from keras_isnet.metrics.classification import per_label_accuracy, per_label_auc
from keras_isnet.metrics.localization import (
    background_relevance_share,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from keras_isnet.metrics.perturbation import CurveResult, deletion_curve, insertion_curve
from keras_isnet.metrics.sanity import (
    FaithfulnessResult,
    RandomizationResult,
    faithfulness_correlation,
    model_randomization_test,
    similarity,
)

__all__ = [
    "CurveResult",
    "FaithfulnessResult",
    "RandomizationResult",
    "background_relevance_share",
    "deletion_curve",
    "faithfulness_correlation",
    "insertion_curve",
    "model_randomization_test",
    "per_label_accuracy",
    "per_label_auc",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "similarity",
]
