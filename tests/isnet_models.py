"""The tiny ISNet test models and batches the ISNet test files share.

>>> model = conv_classifier(classes=3, batchnorm=True)
>>> x, y, m = toy_batch(16, classes=3)          # images in (0.05, 0.95), centre-square masks
"""

from __future__ import annotations

import keras
import numpy as np


def conv_classifier(
    classes: int = 3, *, activation: str | None = None, batchnorm: bool = False, seed: int = 0
) -> keras.Model:
    """8x8x1 -> Conv2D(3, 3, "same") [-> BatchNormalization] -> ReLU -> Flatten ->
    Dense(``classes``, ``activation``): logits unless ``activation`` is given. Weights from
    ``seed`` (Glorot-uniform kernels; the global seed is set too, for BatchNorm and the rest)."""
    keras.utils.set_random_seed(seed)
    init = keras.initializers.GlorotUniform
    conv_activation = None if batchnorm else "relu"
    layers = [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(
            3, 3, padding="same", activation=conv_activation, kernel_initializer=init(seed)
        ),
    ]
    if batchnorm:
        layers += [keras.layers.BatchNormalization(), keras.layers.ReLU()]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation=activation, kernel_initializer=init(seed + 1)),
    ]
    return keras.Sequential(layers)


def toy_batch(n: int = 16, classes: int = 3, *, multilabel: bool = False, seed: int = 0):
    """``(x, y, m)``: ``x`` ``(n, 8, 8, 1)`` float32 uniform in (0.05, 0.95); ``y`` integer
    labels ``(n,)`` in ``[0, classes)``, or multi-hot ``(n, classes)`` float32 (each label on
    with probability 0.4) for ``multilabel=True``; ``m`` ``(n, 8, 8)`` masks, the centre 4x4
    square foreground."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, 8, 8, 1)).astype("float32")
    if multilabel:
        y = (rng.uniform(size=(n, classes)) < 0.4).astype("float32")
    else:
        y = rng.integers(0, classes, size=n)
    m = np.zeros((n, 8, 8), dtype="float32")
    m[:, 2:6, 2:6] = 1
    return x, y, m
