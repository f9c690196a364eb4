"""Keras callbacks infer the direction of the ISNet's own metrics (issue 12, item 6).

``ModelCheckpoint(monitor="val_heatmap_loss")`` without ``mode=`` raised "Keras isn't able to
automatically determine whether that metric should be maximized or minimized".
"""

from __future__ import annotations

import json

import keras
import pytest
from isnet_models import conv_classifier, toy_batch

import keras_isnet as ki

TRACKERS = ("loss", "classification_loss", "heatmap_loss", "background_share")


def _isnet():
    isnet = ki.ISNet(conv_classifier(3), variant="selective", P=0.5)
    isnet.compile(optimizer=keras.optimizers.SGD(0.05), metrics=["accuracy"])
    return isnet


def _data(n=16, seed=0):
    return toy_batch(n, 3, seed=seed)


class _Values(keras.callbacks.Callback):
    """Records the monitored value of each epoch."""

    def __init__(self, key):
        super().__init__()
        self.key, self.values = key, []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(float(logs[self.key]))


@pytest.mark.parametrize("name", TRACKERS)
def test_model_checkpoint_keeps_the_lowest_value_without_mode(tmp_path, name):
    x, y, m = _data()
    isnet = _isnet()
    path = tmp_path / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(path), monitor=f"val_{name}", save_best_only=True, save_weights_only=True
    )
    values = _Values(f"val_{name}")
    isnet.fit(
        x,
        y,
        sample_weight=m,
        validation_data=(x, y, m),
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[values, checkpoint],
    )
    assert checkpoint.mode == "min"
    # the checkpoint holds the epoch with the lowest value: evaluating it gives that value
    best = min(values.values)
    isnet.load_weights(str(path))
    result = isnet.evaluate(x, y, sample_weight=m, batch_size=8, verbose=0, return_dict=True)
    assert result[name] == pytest.approx(best, rel=1e-4, abs=1e-6)


def test_early_stopping_infers_min_and_a_given_mode_is_kept():
    x, y, m = _data()
    isnet = _isnet()
    early = keras.callbacks.EarlyStopping(monitor="heatmap_loss", patience=1)
    given = keras.callbacks.EarlyStopping(monitor="background_share", mode="max", patience=10)
    isnet.fit(x, y, sample_weight=m, epochs=2, batch_size=8, verbose=0, callbacks=[early, given])
    assert early.mode == "min" and early.min_delta <= 0.0
    assert given.mode == "max"


def test_trackers_say_their_direction():
    isnet = _isnet()
    directions = {m.name: getattr(m, "_direction", None) for m in isnet.metrics[:4]}
    assert directions == dict.fromkeys(TRACKERS, "down")
    json.dumps(directions)
