"""Reverse descriptions of Keras layer types, one module per family of layers.

Importing this package registers every built-in description; custom layers are added with
:func:`register_reverse_rule`.
"""

from keras_isnet.layers import (  # noqa: F401  (imported for their registrations)
    activation,
    attention,
    augmentation,
    convolution,
    dense,
    embedding,
    keras_hub_vit,
    layer_normalization,
    merging,
    normalization,
    operations,
    pooling,
    preprocessing,
    regularization,
    reshaping,
)
from keras_isnet.layers.base import (
    CustomLayer,
    ElementwiseLayer,
    EmbeddingLayer,
    KernelLayer,
    ReverseLayer,
    RoutingLayer,
    WeightlessLinearLayer,
)
from keras_isnet.layers.registry import lookup, register_reverse_rule

__all__ = [
    "CustomLayer",
    "ElementwiseLayer",
    "EmbeddingLayer",
    "KernelLayer",
    "ReverseLayer",
    "RoutingLayer",
    "WeightlessLinearLayer",
    "lookup",
    "register_reverse_rule",
]
