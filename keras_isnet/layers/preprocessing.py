"""Input preprocessing: Rescaling, Normalization and Resizing.

Rescaling and Normalization are treated as part of the input: relevance passes through
unchanged, so a heatmap is expressed on the raw input the user feeds to the model.
Input-layer rules with bounds (``input_layer_rule=(low, high)``) take the bounds in the space
of the first kernel layer's input, i.e. after preprocessing.

Resizing routes relevance along the gradient (the transpose of its interpolation), so the
heatmap has the raw input's size. Its interpolation weights sum to one, so this conserves
relevance; unlike the z-rule (used for interpolating UpSampling2D inside a network) it keeps
the relevance that an input-layer z^B rule gives to zero-valued pixels.
``interpolation="area"`` is refused: TensorFlow cannot differentiate it.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import ElementwiseLayer, RoutingLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (keras.layers.Rescaling, keras.layers.Normalization):
    register_reverse_rule(_cls, ElementwiseLayer())


class ResizingReverse(RoutingLayer):
    """Resizing: routing along the gradient; ``interpolation="area"`` is refused (TensorFlow
    has no gradient for it)."""

    def lrp_handler(self, step, context):
        if getattr(step.layer, "interpolation", "") == "area":
            raise ValueError(
                f"Layer {step.layer.name!r}: Resizing(interpolation='area') has no gradient in "
                "TensorFlow, so relevance cannot be routed back through it; use 'bilinear' "
                "(or resize the images before the model)."
            )
        return super().lrp_handler(step, context)


register_reverse_rule(keras.layers.Resizing, ResizingReverse())
