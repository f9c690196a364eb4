"""Dense: ``y = activation(x @ kernel + bias)``.

Example:
    >>> layer = keras.layers.Dense(3, activation="relu")
    >>> DenseReverse().linear(layer, x, layer.kernel)   # x @ kernel
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers.base import KernelLayer
from keras_isnet.layers.registry import register_reverse_rule


class DenseReverse(KernelLayer):
    """The linear part of a ``keras.layers.Dense`` layer (category "dense")."""

    category = "dense"
    foldable = True

    def weights(self, layer):
        if getattr(layer, "quantization_mode", None):
            raise NotImplementedError(
                f"Dense layer {layer.name!r} is quantized ({layer.quantization_mode}); "
                "explain the float model before quantizing it."
            )
        return layer.kernel, layer.bias

    def linear(self, layer, x, kernel):
        return ops.matmul(x, kernel)

    def input_channel_axes(self, layer):
        return 0, -1

    def channel_axis(self, layer, rank: int) -> int:
        return rank - 1


register_reverse_rule(keras.layers.Dense, DenseReverse())
