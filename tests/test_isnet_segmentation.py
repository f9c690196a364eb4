"""ISNet training of segmentation networks (dense logits ``(batch, H, W, K)``).

Each heatmap explains one class's logits summed over the pixels labelled with that class;
the reference is ``ki.create_analyzer("lrp", ..., neuron_selection_mode="index")`` with the
float weights ``onehot(labels) * (channel == c)`` shaped like the output.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from isnet_reference import assert_class_maps_equal, lrp_analyzer

import keras_isnet as ki

K = 3


def tiny_unet(seed=0, batch_norm=False):
    """8x8x1 -> Conv+ReLU (optionally Conv -> BN -> ReLU) -> MaxPool -> Conv+ReLU ->
    UpSampling -> Concatenate (with the first block) -> Conv 1x1 (K logits per pixel)."""
    init = keras.initializers.GlorotUniform
    inp = keras.Input((8, 8, 1))
    c1 = keras.layers.Conv2D(
        4,
        3,
        padding="same",
        activation=None if batch_norm else "relu",
        kernel_initializer=init(seed),
    )(inp)
    if batch_norm:  # Conv -> BN -> ReLU: the BN folds into the convolution
        c1 = keras.layers.BatchNormalization()(c1)
        c1 = keras.layers.ReLU()(c1)
    p = keras.layers.MaxPooling2D()(c1)
    c2 = keras.layers.Conv2D(
        4, 3, padding="same", activation="relu", kernel_initializer=init(seed + 1)
    )(p)
    up = keras.layers.UpSampling2D()(c2)
    cat = keras.layers.Concatenate()([up, c1])
    out = keras.layers.Conv2D(K, 1, kernel_initializer=init(seed + 2))(cat)
    model = keras.Model(inp, out, name="tiny_unet")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.05, 0.05, layer.bias.shape).astype("float32"))
    return model


def seg_data(n=6, seed=0):
    """Images in [0, 1]; labels: class 1 in a square, class 2 in a stripe, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, 8, 8, 1)).astype("float32")
    labels = np.zeros((n, 8, 8), "int32")
    for i in range(n):
        r, c = rng.integers(0, 5, size=2)
        labels[i, r : r + 3, c : c + 3] = 1
        labels[i, :, 7 - i % 2] = 2
    masks = np.zeros((n, 8, 8), "float32")
    masks[:, 1:7, 1:7] = 1
    return x, labels, masks


def class_weights(labels, c):
    """``onehot(labels) == c`` as float weights shaped like the output ``(batch, H, W, K)``."""
    w = np.zeros(labels.shape + (K,), "float32")
    w[..., c] = labels == c
    return w


def heatmaps(isnet, x, labels, variant, training=False):
    logits, maps = isnet.heatmaps.logits_and_heatmaps(
        tf.constant(x), tf.constant(labels), variant=variant, training=training, seed=None
    )
    return np.asarray(logits), np.asarray(maps)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_original_maps_equal_the_lrp_analyzer(batch_norm):
    model = tiny_unet(batch_norm=batch_norm)
    x, labels, _ = seg_data()
    isnet = ki.ISNet(model, variant="original")
    logits, maps = heatmaps(isnet, x, labels, "original")
    np.testing.assert_allclose(logits, np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert maps.shape == (6, K, 8, 8, 1)
    assert_class_maps_equal(
        maps, lrp_analyzer(model), x, selection=lambda c: class_weights(labels, c)
    )


def test_selective_explains_the_most_frequent_class():
    model = tiny_unet()
    x, labels, _ = seg_data()
    isnet = ki.ISNet(model, variant="selective")
    _, maps = heatmaps(isnet, x, labels, "selective")
    assert maps.shape == (6, 1, 8, 8, 1)
    _, original = heatmaps(isnet, x, labels, "original")
    counts = np.stack([(labels == c).sum(axis=(1, 2)) for c in range(K)], axis=1)
    chosen = counts.argmax(axis=1)
    assert np.all(chosen == 0)  # background is the largest class here
    for b in range(6):
        np.testing.assert_allclose(maps[b, 0], original[b, chosen[b]], rtol=1e-6, atol=1e-7)
    # a sample whose most frequent class is 2
    labels2 = labels.copy()
    labels2[0] = 2
    labels2[0, :2] = 1
    _, maps2 = heatmaps(isnet, x, labels2, "selective")
    expected = lrp_analyzer(model).analyze(x[:1], neuron_selection=class_weights(labels2[:1], 2))
    np.testing.assert_allclose(maps2[0, 0], expected[0], rtol=1e-5, atol=1e-6)


def test_stochastic_draws_classes_present_in_the_labels():
    model = tiny_unet()
    x, labels, _ = seg_data()
    labels[:, :, :] = np.where(labels == 2, 0, labels)  # class 2 absent everywhere
    isnet = ki.ISNet(model, variant="stochastic", seed=3)
    _, original = heatmaps(isnet, x, labels, "original")
    seen = set()
    gen = keras.random.SeedGenerator(3)
    for _ in range(8):
        _, maps = isnet.heatmaps.logits_and_heatmaps(
            tf.constant(x), tf.constant(labels), variant="stochastic", seed=gen
        )
        maps = np.asarray(maps)
        for b in range(6):
            matches = [c for c in range(K) if np.allclose(maps[b, 0], original[b, c], atol=1e-7)]
            assert matches and 2 not in matches
            seen.add(matches[0])
    assert seen == {0, 1}


@pytest.mark.parametrize("variant", ["dual", "gradient_x_input"])
def test_other_variants_run(variant):
    model = tiny_unet()
    x, labels, m = seg_data()
    isnet = ki.ISNet(model, variant=variant)
    logits, maps = heatmaps(isnet, x, labels, variant)
    assert logits.shape == (6, 8, 8, K)
    assert maps.shape == (6, 2 if variant == "dual" else 1, 8, 8, 1)
    assert np.all(np.isfinite(maps)) and np.abs(maps).max() > 0


def test_losses_and_pixel_accuracy():
    model = tiny_unet()
    x, labels, m = seg_data()
    isnet = ki.ISNet(model, variant="selective", P=0.0)
    total, ce, heat, logits, _ = isnet._isnet_losses(
        tf.constant(x), tf.constant(labels), tf.constant(m), training=False
    )
    logits = np.asarray(logits, "float64")
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, labels[..., None], axis=-1).mean()
    np.testing.assert_allclose(float(ce), expected, rtol=1e-5)
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)
    assert np.isfinite(float(heat))
    isnet.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"])
    results = isnet.evaluate(x, labels, sample_weight=m, verbose=0, return_dict=True)
    pixel_accuracy = (np.asarray(model(x)).argmax(-1) == labels).mean()
    np.testing.assert_allclose(results["accuracy"], pixel_accuracy, rtol=1e-6)


@pytest.mark.parametrize("variant", ["original", "selective", "stochastic"])
def test_fit_without_nan(variant):
    model = tiny_unet(batch_norm=True)
    x, labels, m = seg_data(n=8, seed=1)
    isnet = ki.ISNet(model, variant=variant, seed=0)
    isnet.compile(
        optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, clipnorm=1.0), metrics=["accuracy"]
    )
    before = [np.array(w) for w in model.get_weights()]
    history = isnet.fit(x, labels, sample_weight=m, batch_size=4, epochs=2, verbose=0)
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), name
    assert 0.0 <= history.history["accuracy"][-1] <= 1.0
    after = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("shape", [(6,), (6, 8), (6, 4, 4), (6, 8, 8, 3), (6, 8, 8, 1, 1)], ids=str)
def test_bad_label_shapes_raise(shape):
    model = tiny_unet()
    x, _, _ = seg_data()
    isnet = ki.ISNet(model, variant="original")
    labels = np.zeros(shape, "int32")
    with pytest.raises(ValueError, match=r"Segmentation labels must have shape \(batch, 8, 8\)"):
        isnet.heatmaps.logits_and_heatmaps(tf.constant(x), tf.constant(labels), variant="original")


def test_bad_label_shape_in_fit_names_the_shapes():
    model = tiny_unet()
    x, _, m = seg_data()
    isnet = ki.ISNet(model, variant="selective")
    isnet.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"got labels of shape \(None, 4, 4\)|\(2, 4, 4\)"):
        isnet.fit(x, np.zeros((6, 4, 4), "int32"), sample_weight=m, batch_size=2, verbose=0)


def test_labels_with_a_channel_axis_are_accepted():
    model = tiny_unet()
    x, labels, _ = seg_data()
    isnet = ki.ISNet(model, variant="original")
    _, a = heatmaps(isnet, x, labels, "original")
    _, b = heatmaps(isnet, x, labels[..., None], "original")
    np.testing.assert_array_equal(a, b)
