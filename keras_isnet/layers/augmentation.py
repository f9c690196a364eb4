"""Random image augmentation layers inside a model: RandomFlip, RandomTranslation,
RandomRotation, RandomZoom, RandomContrast (routing) and RandomBrightness (pass).

Keras recommends putting augmentation into the model. At inference these layers are the
identity, so relevance passes unchanged. In training mode (the ISNet's step replays the
model with ``training=True``) each image is transformed; relevance goes back through the
transpose of the same transform (it follows the gradient), so heatmaps come out in the
input's coordinates and the masks, given for the untransformed images, stay valid.

Routing, not the z-rule used for interpolating UpSampling2D: these layers sit at the input,
where the ISNet's z^B rule gives relevance to zero-valued (background) pixels; the z-rule
``R_i = x_i sum_j a_ji R_j / y_j`` would drop it there. Interpolation weights sum to one, so
the transpose conserves relevance (up to pixels filled with a constant).

Example:
    >>> model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.RandomFlip(),
    ...                           keras.layers.Conv2D(8, 3), ...])
    >>> ki.ISNet(model).fit(...)   # heatmaps and masks in the unflipped images' coordinates
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import ElementwiseLayer, RoutingLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (
    keras.layers.RandomFlip,
    keras.layers.RandomTranslation,
    keras.layers.RandomRotation,
    keras.layers.RandomZoom,
    keras.layers.RandomContrast,
):
    register_reverse_rule(_cls, RoutingLayer())
register_reverse_rule(keras.layers.RandomBrightness, ElementwiseLayer())
