"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax and ``Activation``.

Relevance passes through element-wise activations unchanged (the relevance arriving at an
activation's output is the relevance of its pre-activation). Deconvnet and guided backprop
treat plain ReLUs specially, so a ReLU layer with default arguments and
``Activation("relu")`` are marked as ReLUs.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import NONNEGATIVE_ACTIVATIONS, ElementwiseLayer
from keras_isnet.layers.products import SoftmaxReverse
from keras_isnet.layers.registry import register_reverse_rule


def _relu_layer_is_plain(layer) -> bool:
    return (
        layer.max_value is None
        and float(layer.negative_slope) == 0.0
        and float(layer.threshold) == 0.0
    )


def _activation_is_relu(layer) -> bool:
    return getattr(layer.activation, "__name__", "") == "relu"


def _activation_is_nonnegative(layer) -> bool:
    return getattr(layer.activation, "__name__", "") in NONNEGATIVE_ACTIVATIONS


def _relu_layer_is_nonnegative(layer) -> bool:
    return float(layer.negative_slope) == 0.0 and float(layer.threshold) >= 0.0


register_reverse_rule(
    keras.layers.ReLU,
    ElementwiseLayer(relu=_relu_layer_is_plain, nonnegative=_relu_layer_is_nonnegative),
)
register_reverse_rule(
    keras.layers.Activation,
    ElementwiseLayer(relu=_activation_is_relu, nonnegative=_activation_is_nonnegative),
)
register_reverse_rule(keras.layers.Softmax, SoftmaxReverse())
for _cls in (keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU):
    register_reverse_rule(_cls, ElementwiseLayer())
