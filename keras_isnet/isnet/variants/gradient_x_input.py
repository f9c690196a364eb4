"""The gradient-times-input ablation: ``x * d logit_c / d x`` instead of an LRP map.

The class is the selective choice (``selective_class``); segmentation models explain the
most frequent class of each label map over its pixels.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.backend import vjp
from keras_isnet.isnet.variants.base import (
    Variant,
    register_variant,
    segmentation_labels,
    segmentation_weights,
)


class GradientXInput(Variant):
    """``variant="gradient_x_input"``: one gradient-times-input map per sample."""

    name = "gradient_x_input"

    def logits_and_heatmaps(
        self, heatmaps, x, labels, training, seed, relevance=None, classes=None
    ):
        logits, pullback = vjp(lambda v: heatmaps.logits(v, training), [x])
        if len(logits.shape) > 2:  # segmentation: the selective choice's class pixels
            sparse = segmentation_labels(labels, logits)
            k = logits.shape[-1]
            classes = self.segmentation_classes(sparse, k)
            w = segmentation_weights(sparse, k, classes, logits.dtype)
            return logits, ops.expand_dims(ops.multiply(x, pullback(w)[0]), 1)
        if classes is None:
            classes = self.classes(heatmaps, logits, labels)
        onehot = ops.cast(ops.one_hot(classes, logits.shape[-1]), logits.dtype)
        return logits, ops.expand_dims(ops.multiply(x, pullback(onehot)[0]), 1)


GRADIENT_X_INPUT = register_variant(GradientXInput())
