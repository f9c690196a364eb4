"""Layers that move or copy values without mixing them; relevance follows the gradient.

Flatten, Reshape, Permute, RepeatVector, Cropping1D/2D/3D, ZeroPadding1D/2D/3D and
UpSampling1D/2D/3D (nearest and bilinear: the bilinear weights of every output pixel sum to
one, so routing along the gradient conserves relevance too).
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import RoutingLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.RepeatVector,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
):
    register_reverse_rule(_cls, RoutingLayer())
