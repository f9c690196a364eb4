"""Layers that move or copy values without mixing them; relevance follows the gradient.

Flatten, Reshape, Permute, RepeatVector, Cropping1D/2D/3D, ZeroPadding1D/2D/3D and
UpSampling1D/2D/3D with nearest-neighbour interpolation.

UpSampling2D with another interpolation (bilinear, bicubic, ...) mixes values: each output
pixel is a weighted sum of input pixels, a weightless linear map, and LRP analyzers use the
z-rule ``R_i = x_i sum_j a_ji R_j / y_j`` there. Routing along the gradient
(``R_i = sum_j a_ji R_j``) would conserve relevance at the layer too, but it hands relevance
to input pixels whose value is zero (dead ReLUs) in proportion to the weights, and no rule
can pass relevance on from a zero neuron: it would be lost further down (at an Add, a
convolution). The z-rule gives zero neurons no relevance, so the whole network conserves.

Example:
    >>> ki.create_analyzer("lrp.epsilon", unet)   # bilinear UpSampling2D: the z-rule
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import RoutingLayer, WeightlessLinearLayer
from keras_isnet.layers.registry import register_reverse_rule


class UpSamplingReverse(RoutingLayer):
    """UpSampling2D: routing for nearest-neighbour interpolation, else the z-rule."""

    def __init__(self):
        super().__init__()
        self._interpolating = WeightlessLinearLayer()

    def _for(self, layer) -> RoutingLayer | WeightlessLinearLayer:
        """The description of one layer instance: routing for nearest interpolation, the
        z-rule of a weightless linear layer otherwise."""
        if getattr(layer, "interpolation", "nearest") == "nearest":
            return super()
        return self._interpolating

    def lrp_handler(self, step, context):
        return self._for(step.layer).lrp_handler(step, context)

    def conservation_info(self, step, context):
        return self._for(step.layer).conservation_info(step, context)


for _cls in (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.RepeatVector,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling3D,
):
    register_reverse_rule(_cls, RoutingLayer())
for _cls in (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D):
    register_reverse_rule(_cls, RoutingLayer(causes=("relevance on the padding",)))
register_reverse_rule(keras.layers.UpSampling2D, UpSamplingReverse())
