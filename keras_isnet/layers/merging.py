"""Merge layers.

Add, Subtract and Average are weightless linear maps: LRP splits relevance between the
branches in proportion to their contributions, ``R_k = x_k / sum(x) * R`` (z-rule).
Concatenate routes each slice of relevance back to the input it came from.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import RoutingLayer, WeightlessLinearLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (keras.layers.Add, keras.layers.Average):
    register_reverse_rule(_cls, WeightlessLinearLayer())
register_reverse_rule(keras.layers.Subtract, WeightlessLinearLayer(preserves_sign=False))

register_reverse_rule(keras.layers.Concatenate, RoutingLayer())
