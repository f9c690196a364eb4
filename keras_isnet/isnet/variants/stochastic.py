"""The stochastic ISNet: the top logit or a random other, drawn as the LRP mode's official code.

LRP Block (``lrp="block"``): one coin per batch (probability 1/2) for every sample's top
logit, otherwise per sample a uniform other class. LRP-Flex (``lrp="flex"``): per sample the
top logit with probability 5/11, otherwise a uniform other class.

Segmentation models explain, per sample, a class drawn uniformly among those present in its
label map.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.isnet.modes.flex import FLEX_TOP_PROBABILITY
from keras_isnet.isnet.variants.base import (
    Variant,
    Walks,
    class_counts,
    register_variant,
    replica_draw,
)

#: probability that LRP-Flex's stochastic ISNet explains a sample's top logit (5/11).
STOCHASTIC_TOP_PROBABILITY = FLEX_TOP_PROBABILITY


class Stochastic(Variant):
    """``variant="stochastic"``: one map per sample, of a randomly drawn logit."""

    name = "stochastic"
    supports_hidden = True

    def classes(self, heatmaps, logits, labels, seed=None):
        if logits.shape[-1] == 1:  # a binary (1-unit) head has one logit to explain
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        return heatmaps.mode.stochastic_classes(logits, seed)

    def segmentation_classes(self, labels, k: int, seed=None):
        counts = class_counts(labels, k)
        noise = replica_draw(
            lambda r: keras.random.uniform((r, k), seed=seed), ops.shape(counts)[0]
        )
        scores = ops.where(counts > 0, noise, -1.0)
        return ops.cast(ops.argmax(scores, axis=-1), "int32")

    def classification(self, walks: Walks):
        classes = self.explained_classes(walks)
        return ops.expand_dims(walks.class_walk(classes, keep_relevance=True), 1)

    def segmentation(self, walks: Walks):
        k = walks.logits.shape[-1]
        classes = self.segmentation_classes(walks.segmentation_labels(), k, walks.seed)
        return ops.stack([walks.segmentation_walk(classes, keep_relevance=True)], axis=1)


STOCHASTIC = register_variant(Stochastic())
