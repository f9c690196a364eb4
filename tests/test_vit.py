"""The small ViT of keras_isnet.experiments.vit: analyzed and trained as an ISNet
(backend-neutral)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.experiments.vit import PositionEmbedding, build_vit


def _tiny_vit():
    return build_vit(0, input_shape=(8, 8, 1), classes=3, patch=4, dim=8, depth=1, mlp=8)


def test_position_embedding_uses_the_z_rule():
    keras.utils.set_random_seed(0)
    x = keras.Input((3, 2))
    embedding = PositionEmbedding()
    flat = keras.layers.Flatten()(embedding(x))
    model = keras.Model(x, keras.layers.Dense(1, use_bias=False)(flat))
    data = np.random.default_rng(0).random((2, 3, 2)).astype("float32") + 0.5
    heatmap = ki.create_analyzer("lrp.z", model).analyze(data)
    w = model.layers[-1].kernel.numpy()[:, 0].reshape(3, 2)
    y = data + embedding.embedding.numpy()
    expected = data / y * (y * w)  # R_x = x R / (x + p), R = y w (LRP-0 of the Dense)
    np.testing.assert_allclose(heatmap, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.cp_lrp", "lrp.attn_lrp"])
def test_vit_is_analyzed(name):
    vit = _tiny_vit()
    x = np.random.default_rng(1).random((2, 8, 8, 1)).astype("float32")
    heatmap = ki.create_analyzer(name, vit).analyze(x)
    assert heatmap.shape == x.shape and np.isfinite(heatmap).all()
    assert np.abs(heatmap).sum() > 0


def test_vit_isnet_trains():
    vit = _tiny_vit()
    images = np.random.default_rng(2).random((6, 8, 8, 1)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    isnet = ki.ISNet(vit, variant="selective", P=0.5)
    _, maps = isnet.heatmaps.logits_and_heatmaps(images, labels, variant="selective")
    maps = ki.arrays.to_numpy(maps)
    assert maps.shape == (6, 1, 8, 8, 1) and np.isfinite(maps).all() and np.abs(maps).max() > 0
    masks = np.zeros((6, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1.0
    isnet.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = isnet.fit(images, labels, sample_weight=masks, epochs=2, batch_size=6, verbose=0)
    assert np.isfinite(history.history["heatmap_loss"]).all()


def test_build_vit_checks_the_patch_size():
    with pytest.raises(ValueError, match="multiples of patch=5"):
        build_vit(0, input_shape=(8, 8, 1), patch=5)
