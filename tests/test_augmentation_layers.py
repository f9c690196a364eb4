"""Random augmentation layers inside a model (keras_isnet/layers/augmentation.py).

At inference they are the identity: heatmaps equal those of the model without them. In an
ISNet training step they transform each image, and relevance must come back in the input's
coordinates, where the masks live.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from isnet_reference import assert_isnet_trains

import keras_isnet as ki
from keras_isnet.isnet.heatmaps import ISNetHeatmaps

L = keras.layers


def _pair(augmentation):
    """The same conv net with and without ``augmentation`` in front (shared layers)."""
    keras.utils.set_random_seed(0)
    conv = L.Conv2D(4, 3, activation="relu", name="conv")
    pool, flat, dense = L.MaxPooling2D(), L.Flatten(), L.Dense(3, name="logits")

    def net(t):
        return dense(flat(pool(conv(t))))

    inputs = keras.Input((16, 16, 1))
    with_aug = keras.Model(inputs, net(augmentation(inputs)))
    plain_inputs = keras.Input((16, 16, 1))
    return with_aug, keras.Model(plain_inputs, net(plain_inputs))


AUGMENTATIONS = {
    "flip": lambda: L.RandomFlip("horizontal"),
    "translation": lambda: L.RandomTranslation(0.1, 0.1),
    "rotation": lambda: L.RandomRotation(0.1),
    "zoom": lambda: L.RandomZoom(0.1),
    "contrast": lambda: L.RandomContrast(0.2),
    "brightness": lambda: L.RandomBrightness(0.1, value_range=(0.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_inference_heatmaps_ignore_augmentation(name):
    with_aug, plain = _pair(AUGMENTATIONS[name]())
    x = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    for method in ("lrp.epsilon", "lrp.alpha_2_beta_1"):
        np.testing.assert_array_equal(
            ki.create_analyzer(method, with_aug).analyze(x),
            ki.create_analyzer(method, plain).analyze(x),
        )


def test_training_heatmaps_come_back_to_the_input_coordinates():
    """With RandomFlip in training mode each sample is flipped or not; its ISNet heatmap
    must be the plain net's heatmap of the image it saw, flipped back when it was flipped."""
    with_aug, plain = _pair(L.RandomFlip("horizontal", seed=1))
    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    labels = np.zeros(16, "int32")
    kwargs = dict(epsilon=1e-2, input_bounds=(0.0, 1.0))
    _, maps = ISNetHeatmaps(with_aug, **kwargs).logits_and_heatmaps(
        x, labels, variant="selective", training=True
    )
    maps = np.asarray(maps)[:, 0]
    reference = ISNetHeatmaps(plain, **kwargs)
    straight = np.asarray(reference.logits_and_heatmaps(x, labels, variant="selective")[1])[:, 0]
    flipped = np.asarray(
        reference.logits_and_heatmaps(x[:, :, ::-1], labels, variant="selective")[1]
    )[:, 0, :, ::-1]
    was_flipped = []
    for i in range(len(x)):
        same = np.allclose(maps[i], straight[i], rtol=1e-5, atol=1e-7)
        back = np.allclose(maps[i], flipped[i], rtol=1e-5, atol=1e-7)
        assert same or back, f"sample {i}: neither the plain nor the flipped-back heatmap"
        was_flipped.append(back and not same)
    assert 0 < sum(was_flipped) < len(x), "RandomFlip should flip some samples, not all"


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_isnet_trains_through_augmentation(name):
    assert_isnet_trains(_pair(AUGMENTATIONS[name]())[0])


@pytest.mark.parametrize("size", [8, 24], ids=["down", "up"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_resizing_at_the_input_conserves_relevance(size, interpolation):
    """Resizing routes relevance through the transpose of its interpolation: the heatmap has
    the raw input's size and, with a bias-free rule, sums to the explained logit."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    t = L.Resizing(size, size, interpolation=interpolation)(inputs)
    t = L.Conv2D(4, 3, activation="relu")(t)
    model = keras.Model(inputs, L.Dense(3)(L.Flatten()(t)))
    x = np.random.default_rng(0).random((3, 16, 16, 1), dtype=np.float64)
    analyzer = ki.create_analyzer(
        "lrp.z", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    heatmaps = analyzer.analyze(x, neuron_selection=1)
    assert heatmaps.shape == x.shape
    features = keras.Model(inputs, model.layers[-2].output).predict(x, verbose=0)
    logit = features.astype(np.float64) @ model.layers[-1].kernel.numpy()[:, 1].astype(np.float64)
    np.testing.assert_allclose(heatmaps.sum(axis=(1, 2, 3)), logit, rtol=1e-5)


def test_resizing_with_area_interpolation_is_refused_clearly():
    inputs = keras.Input((16, 16, 1))
    t = L.Resizing(8, 8, interpolation="area", name="shrink")(inputs)
    model = keras.Model(inputs, L.Dense(3)(L.Flatten()(L.Conv2D(2, 3)(t))))
    with pytest.raises(ValueError, match="'shrink'.*area.*bilinear"):
        ki.create_analyzer("lrp.epsilon", model).analyze(np.zeros((1, 16, 16, 1), "float32"))
