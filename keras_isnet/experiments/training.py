"""The classifier and training set-up that the demo's models share (plain CNN, ISNet and the
baselines): one architecture, one optimizer, one training-batch pipeline."""

from __future__ import annotations

import keras

from keras_isnet.isnet import isnet_dataset


def build_classifier(seed: int, input_shape=(32, 32, 1), classes: int = 10) -> keras.Model:
    """The small CNN both models share: 3 x (Conv 3x3 + ReLU + MaxPool), Dense 64, Dense 10.

    Returns a functional model with logits output, weights initialised from ``seed``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, logits, name="cnn")


def make_optimizer(config) -> keras.optimizers.Optimizer:
    """Adam with ``config.learning_rate`` and gradient-norm clipping at 1."""
    return keras.optimizers.Adam(config.learning_rate, clipnorm=1.0)


def train_dataset(data, config):
    """The shuffled ``(images, labels, masks)`` training batches every penalised model uses
    (``config``: ``batch_size``, ``seed``)."""
    return isnet_dataset(
        data.train.images,
        data.train.labels,
        data.train.masks,
        batch_size=config.batch_size,
        seed=config.seed,
    )
