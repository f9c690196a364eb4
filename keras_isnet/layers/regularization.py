"""Layers that are the identity at inference: dropout, noise, activity regularisation.

Relevance passes through unchanged.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import ElementwiseLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
):  # the identity at inference; multiplicative (sign-preserving) noise in training
    register_reverse_rule(_cls, ElementwiseLayer(nonnegative="inherit"))

for _cls in (keras.layers.GaussianNoise, keras.layers.AlphaDropout):
    register_reverse_rule(_cls, ElementwiseLayer())
