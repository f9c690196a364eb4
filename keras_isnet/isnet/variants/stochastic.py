"""The stochastic ISNet: per sample, the top logit with probability 5/11, else a random other.

Segmentation models explain, per sample, a class drawn uniformly among those present in its
label map.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.isnet.variants.base import (
    Variant,
    Walks,
    class_counts,
    register_variant,
    replica_draw,
)

#: probability that the stochastic ISNet explains the top logit (reference: 5/11).
STOCHASTIC_TOP_PROBABILITY = 5.0 / 11.0


class Stochastic(Variant):
    """``variant="stochastic"``: one map per sample, of a randomly drawn logit."""

    name = "stochastic"
    supports_hidden = True

    def classes(self, heatmaps, logits, labels, seed=None):
        top = ops.cast(ops.argmax(logits, axis=-1), "int32")
        if logits.shape[-1] == 1:  # a binary (1-unit) head has one logit to explain
            return top
        k = ops.shape(logits)[-1]
        n = ops.shape(top)[0]
        # per replica under a distribution strategy (replica_draw): the global batch's draws
        shift = replica_draw(
            lambda r: keras.random.randint((r,), 1, k, seed=seed, dtype="int32"), n
        )
        other = ops.mod(top + shift, k)
        uniform = replica_draw(lambda r: keras.random.uniform((r,), seed=seed), n)
        return ops.where(uniform < STOCHASTIC_TOP_PROBABILITY, top, other)

    def segmentation_classes(self, labels, k: int, seed=None):
        counts = class_counts(labels, k)
        noise = replica_draw(
            lambda r: keras.random.uniform((r, k), seed=seed), ops.shape(counts)[0]
        )
        scores = ops.where(counts > 0, noise, -1.0)
        return ops.cast(ops.argmax(scores, axis=-1), "int32")

    def classification(self, walks: Walks):
        classes = self.classes(walks.heatmaps, walks.logits, walks.labels, walks.seed)
        return ops.expand_dims(walks.class_walk(classes, keep_relevance=True), 1)

    def segmentation(self, walks: Walks):
        k = walks.logits.shape[-1]
        classes = self.segmentation_classes(walks.segmentation_labels(), k, walks.seed)
        return ops.stack([walks.segmentation_walk(classes, keep_relevance=True)], axis=1)


STOCHASTIC = register_variant(Stochastic())
