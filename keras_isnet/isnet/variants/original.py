"""The original ISNet: one map per class (K backward walks over one forward replay).

Segmentation models get one map per class c of that class's logits summed over its pixels
(a class absent from a sample gives a zero map).
"""

from __future__ import annotations

from keras import ops

from keras_isnet.isnet.variants.base import Variant, Walks, register_variant


class Original(Variant):
    """``variant="original"``: every logit explained; the cost grows with the class count."""

    name = "original"

    def classification(self, walks: Walks):
        batch = ops.shape(walks.logits)[:1]
        k = walks.logits.shape[-1]
        return ops.stack([walks.class_walk(ops.full(batch, c, "int32")) for c in range(k)], axis=1)

    def segmentation(self, walks: Walks):
        batch = ops.shape(walks.logits)[:1]
        k = walks.logits.shape[-1]
        return ops.stack(
            [walks.segmentation_walk(ops.full(batch, c, "int32")) for c in range(k)], axis=1
        )


ORIGINAL = register_variant(Original())
