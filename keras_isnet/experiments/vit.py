"""A small vision transformer from Keras layers, for ViT ISNets (the biased-MNIST example).

Patch embedding (a Conv2D with stride = patch size), a learned position embedding, pre-LN
encoder blocks (LayerNormalization -> MultiHeadAttention -> residual add -> LayerNormalization
-> Dense(GELU) -> Dense -> residual add) and global average pooling over the tokens.
Everything in it has an LRP rule, so ``ki.ISNet(build_vit(0))`` trains as it does for a CNN.

Example:
    >>> vit = build_vit(seed=0)                     # 32 x 32 x 1 images, 4 x 4 patches
    >>> ki.create_analyzer("lrp.cp_lrp", vit).analyze(images)
    >>> ki.ISNet(build_vit(seed=0), P=0.8).fit(...)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers import WeightlessLinearLayer, register_reverse_rule


@keras.saving.register_keras_serializable(package="keras_isnet")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per token: ``y = x + p`` with ``p`` of shape ``(tokens, dim)``.

    LRP: the z-rule ``R_x = x R / (x + p)``; the embedding absorbs its share, as a bias does.

    Args:
        initializer: the initializer of ``p`` (default: normal, stddev 0.02).

    Returns:
        The tokens with their position embedding, shaped like the input.

    Example:
        >>> tokens = PositionEmbedding()(keras.layers.Reshape((64, 32))(patches))
    """

    def __init__(self, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=tuple(input_shape[1:]), initializer=self.initializer, name="embedding"
        )

    def call(self, x):
        return ops.add(x, ops.cast(self.embedding, x.dtype))

    def get_config(self):
        initializer = keras.initializers.serialize(self.initializer)
        return {**super().get_config(), "initializer": initializer}


register_reverse_rule(PositionEmbedding, WeightlessLinearLayer(preserves_sign=False))


def build_vit(
    seed: int,
    input_shape=(32, 32, 1),
    classes: int = 10,
    patch: int = 4,
    dim: int = 32,
    depth: int = 2,
    heads: int = 2,
    mlp: int = 64,
) -> keras.Model:
    """A small ViT classifier with logits output, weights initialised from ``seed``.

    Args:
        seed: the random seed of the weights.
        input_shape: ``(height, width, channels)``, both sides divisible by ``patch``.
        classes: the number of logits.
        patch: the patch side (the Conv2D patch embedding's kernel size and stride).
        dim: the token width; depth: the number of encoder blocks; heads: attention heads
            (key_dim = dim // heads); mlp: the hidden width of each block's MLP.

    Returns:
        A functional ``keras.Model``.
    """
    height, width, _ = input_shape
    if height % patch or width % patch:
        raise ValueError(
            f"input_shape {input_shape}: height and width must be multiples of patch={patch}."
        )
    keras.utils.set_random_seed(seed)
    images = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patch_embedding")(images)
    x = keras.layers.Reshape(((height // patch) * (width // patch), dim), name="tokens")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(depth):
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attention")(h, h)
        x = keras.layers.Add(name=f"block{i}_residual1")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = keras.layers.Dense(mlp, activation="gelu", name=f"block{i}_mlp1")(h)
        h = keras.layers.Dense(dim, name=f"block{i}_mlp2")(h)
        x = keras.layers.Add(name=f"block{i}_residual2")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(images, logits, name="vit")
