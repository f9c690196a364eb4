"""Pooling layers.

Average pooling (local and global) is a weightless linear map: LRP splits relevance over
the window with the z-rule ``R_i = x_i / sum_window(x) * R``. Max pooling (local and global)
routes relevance to the window's winner, with TensorFlow's tie rule (the first maximum).
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import RoutingLayer, WeightlessLinearLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
):
    register_reverse_rule(_cls, WeightlessLinearLayer())

#: the max-pooling layer classes (winner-takes-all routing).
MAX_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)

for _cls in MAX_POOLING:
    register_reverse_rule(_cls, RoutingLayer())
