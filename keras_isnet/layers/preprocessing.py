"""Input preprocessing: Rescaling and Normalization.

They are treated as part of the input: relevance passes through unchanged, so a heatmap is
expressed on the raw input the user feeds to the model. Input-layer rules with bounds
(``input_layer_rule=(low, high)``) take the bounds in the space of the first kernel layer's
input, i.e. after preprocessing.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import ElementwiseLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (keras.layers.Rescaling, keras.layers.Normalization):
    register_reverse_rule(_cls, ElementwiseLayer())
