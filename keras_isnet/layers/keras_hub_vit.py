"""keras-hub's ViT (``keras_hub.models.ViTBackbone``, ``ViTImageClassifier``) to LRP.

keras-hub builds its ViT from subclassed layers: ``ViTPatchingAndEmbedding`` (a Conv2D patch
embedding, a class token and a learned position embedding), ``ViTEncoder`` (a dropout, the
encoder blocks and a final LayerNormalization), ``ViTEncoderBlock`` (pre-LN
MultiHeadAttention and MLP with residual adds) and ``MLP`` (two Dense layers, GELU). They are
registered by dotted name, so keras-hub is not imported unless the model uses it:

- the encoder, its blocks and the MLP are walked as the graph of their own ``call``
  (:func:`~keras_isnet.register_layer_graph`): every Dense, LayerNormalization and
  MultiHeadAttention inside gets the composite's rule, as in a hand-built ViT;
- the patch embedding is walked as its Conv2D, a reshape to tokens and
  :class:`ClassTokenAndPositions` (the class token and the position embedding, which absorb
  their share of the relevance as a bias does: the z-rule ``R_x = x R / y``).

Example:
    >>> backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 1), patch_size=4,
    ...     num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    >>> classifier = keras_hub.models.ViTImageClassifier(backbone, num_classes=10)
    >>> ki.create_analyzer("lrp.cp_lrp", classifier).analyze(images)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layer_graphs import register_layer_graph
from keras_isnet.layers.base import WeightlessLinearLayer
from keras_isnet.layers.registry import register_reverse_rule

_VIT_LAYERS = "keras_hub.src.models.vit.vit_layers"


class ClassTokenAndPositions(keras.layers.Layer):
    """The second half of keras-hub's ``ViTPatchingAndEmbedding``, on its own weights.

    Prepends the class token (if the embedding has one) to the patch tokens and adds the
    position embedding: ``y = concat([class_token], x) + positions``. Only the walk of a
    keras-hub ViT creates it; the weights stay the embedding layer's.

    Args:
        embedding: the keras-hub ``ViTPatchingAndEmbedding`` layer whose class token and
            position embedding are used.

    Returns:
        Tokens of shape ``(batch, num_positions, hidden_dim)`` from patch tokens of shape
        ``(batch, num_patches, hidden_dim)``.
    """

    def __init__(self, embedding, **kwargs):
        super().__init__(dtype=embedding.dtype_policy, name=f"{embedding.name}_tokens", **kwargs)
        self.embedding = embedding

    def call(self, patches):
        embedding = self.embedding
        tokens = patches
        if embedding.use_class_token:
            token = ops.cast(embedding.class_token, patches.dtype)
            token = ops.tile(token, (ops.shape(patches)[0], 1, 1))
            tokens = ops.concatenate([token, tokens], axis=1)
        positions = embedding.position_embedding(embedding.position_ids)
        return ops.add(tokens, ops.cast(positions, tokens.dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding.num_positions, self.embedding.hidden_dim)


def _patching_graph(embedding, images):
    """``ViTPatchingAndEmbedding`` as Conv2D -> tokens -> class token and positions."""
    patches = embedding.patch_embedding(images)
    if embedding.data_format == "channels_first":
        patches = ops.transpose(patches, (0, 2, 3, 1))
    patches = keras.layers.Reshape(
        (embedding.num_patches, embedding.hidden_dim), name=f"{embedding.name}_patches"
    )(patches)
    return ClassTokenAndPositions(embedding)(patches)


register_reverse_rule(ClassTokenAndPositions, WeightlessLinearLayer(preserves_sign=False))
register_layer_graph(f"{_VIT_LAYERS}.ViTPatchingAndEmbedding", _patching_graph)
for _name in ("ViTEncoder", "ViTEncoderBlock", "MLP"):
    register_layer_graph(f"{_VIT_LAYERS}.{_name}")
