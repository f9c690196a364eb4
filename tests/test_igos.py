"""iGOS++ and I-GOS: sanity checks, errors, and a model whose evidence is known by construction.

The acceptance test trains (seeded, ~2 s) a small CNN on 28 x 28 noise images where class 1
carries an 8 x 8 checkerboard at a fixed place and class 0 does not (the blurred baseline,
flat there, looks like class 0). iGOS++ must put most of its mass around the checkerboard,
and its insertion/deletion AUCs (keras_isnet.metrics, an independent implementation) must
beat a random ranking's and Grad-CAM's.
"""

import keras
import numpy as np
import pytest

from keras_isnet.analyzers import create_analyzer
from keras_isnet.analyzers.igos import IGOS, IGOSPlusPlus
from keras_isnet.metrics import deletion_curve, insertion_curve

S = 28
ROWS, COLS = slice(6, 14), slice(14, 22)
NEAR_ROWS, NEAR_COLS = slice(4, 16), slice(12, 24)  # the region, dilated by 2 pixels


def _tiny_model():
    inp = keras.Input((12, 12, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))


def _x(n=2):
    return np.random.default_rng(0).uniform(size=(n, 12, 12, 2)).astype("float32")


def test_shapes_range_and_determinism():
    model, x = _tiny_model(), _x()
    kwargs = dict(resolution=6, iterations=2, ig_iter=3, seed=3)
    a = create_analyzer("igos++", model, **kwargs).analyze(x)
    b = create_analyzer("igos++", model, **kwargs).analyze(x)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.all(a >= 0) and np.all(a <= 1)  # 1 - a product of masks in [0, 1]
    np.testing.assert_array_equal(a[..., 0], a[..., 1])  # one map, repeated over channels
    np.testing.assert_array_equal(a, b)
    single = create_analyzer("igos", model, **kwargs).analyze(x)
    assert single.shape == x.shape and np.all(single >= 0) and np.all(single <= 1)


def test_batches_are_independent():
    model, x = _tiny_model(), _x(3)
    kwargs = dict(resolution=4, iterations=2, ig_iter=2, noise=0.0)
    together = IGOSPlusPlus(model, **kwargs).analyze(x)
    one = IGOSPlusPlus(model, **kwargs).analyze(x[1:2])
    np.testing.assert_allclose(together[1:2], one, atol=1e-5)


def test_resolution_larger_than_input():
    with pytest.raises(ValueError, match="larger than the input"):
        IGOSPlusPlus(_tiny_model(), resolution=13)
    with pytest.raises(ValueError, match="larger than the input"):
        IGOS(_tiny_model(), resolution=(4, 20))


def test_default_resolution_is_28_or_the_input_size():
    assert IGOSPlusPlus(_tiny_model()).resolution == (12, 12)  # 12 x 12 input
    inp = keras.Input((40, 30, 1))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    assert IGOSPlusPlus(model).resolution == (28, 28)
    with pytest.raises(ValueError, match="larger than the input's height 12"):
        IGOSPlusPlus(_tiny_model(), resolution=28)  # an explicit size is never shrunk


def test_index_mode_needs_a_target():
    analyzer = IGOSPlusPlus(_tiny_model(), neuron_selection_mode="index", resolution=4)
    with pytest.raises(ValueError, match="needs neuron_selection"):
        analyzer.analyze(_x())
    with pytest.raises(ValueError, match="out of range"):
        analyzer.analyze(_x(), neuron_selection=7)


def test_bad_options():
    with pytest.raises(ValueError, match="iterations"):
        IGOSPlusPlus(_tiny_model(), iterations=0)
    with pytest.raises(ValueError, match="resolution"):
        IGOSPlusPlus(_tiny_model(), resolution=0)


def _data(rng, n):
    x = rng.uniform(0, 1, (n, S, S, 1)).astype("float32")
    y = rng.integers(0, 2, n)
    checkerboard = (np.indices((8, 8)).sum(0) % 2).astype("float32")
    x[y == 1, ROWS, COLS, 0] = checkerboard
    return x, y


def _train(seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = _data(rng, 800)
    inp = keras.Input((S, S, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    xt, yt = _data(rng, 40)
    return model, xt[yt == 1][:4]


@pytest.fixture(scope="module")
def trained():
    for seed in (0, 2, 3):  # a run whose ReLUs all die learns nothing (seed 1 does): retry
        model, xt = _train(seed)
        if np.all(model.predict(xt, verbose=0)[:, 1] > 0.9):
            return model, xt
    pytest.fail("the test model did not learn the checkerboard")


def _mass_near_region(heatmaps):
    h = heatmaps[..., 0]
    return h[:, NEAR_ROWS, NEAR_COLS].sum(axis=(1, 2)) / h.sum(axis=(1, 2))


def test_igos_pp_finds_the_evidence_and_beats_grad_cam(trained):
    model, xt = trained
    saliency = create_analyzer("igos++", model, resolution=14, seed=0).analyze(xt)
    # 12 x 12 of 28 x 28 pixels (18 % of the image) hold most of the mass (measured 0.60-0.68 over
    # training seeds 0, 2, 3; Grad-CAM 0.65-0.89)
    assert np.all(_mass_near_region(saliency) > 0.5)
    grad_cam = create_analyzer("grad_cam", model).analyze(xt)
    random = np.random.default_rng(1).random(xt.shape[:3])
    ins = {
        name: insertion_curve(model, xt, h, labels=1).auc
        for name, h in (("igos", saliency), ("grad_cam", grad_cam), ("random", random))
    }
    dele = {
        name: deletion_curve(model, xt, h, labels=1).auc
        for name, h in (("igos", saliency), ("grad_cam", grad_cam), ("random", random))
    }
    # measured (training seeds 0, 2, 3): insertion 0.925-0.945 vs Grad-CAM 0.88-0.93 vs random
    # (seed 0) 0.34-0.43; deletion 0.024-0.054 vs Grad-CAM 0.028-0.086 vs random (seed 0) 0.29-0.45
    assert np.all(ins["igos"] > ins["random"] + 0.3)
    assert np.all(ins["igos"] > ins["grad_cam"])
    assert np.all(dele["igos"] < dele["random"] - 0.2)
    assert np.all(dele["igos"] < dele["grad_cam"])


def test_single_mask_igos_finds_the_evidence(trained):
    model, xt = trained
    saliency = create_analyzer("igos", model, resolution=14, seed=0).analyze(xt)
    assert np.all(_mass_near_region(saliency) > 0.5)
    random = np.random.default_rng(1).random(xt.shape[:3])
    ins = insertion_curve(model, xt, saliency, labels=1).auc
    assert np.all(ins > insertion_curve(model, xt, random, labels=1).auc + 0.3)
    dele = deletion_curve(model, xt, saliency, labels=1).auc
    assert np.all(dele < deletion_curve(model, xt, random, labels=1).auc - 0.2)


def _linear_model(w):
    inp = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    dense.set_weights([w.reshape(16, 1)])
    return model


def test_integrated_gradient_direction_on_a_linear_model():
    """At m = 1, for f(z) = sum(w z), mask resolution = input size, no noise, no
    regularisation: dD/dm = c w (x - b) with c = mean_k a_k = (n + 1) / (2 n), and each of
    the four iGOS++ path terms contributes c w (x - b) to its masks; the sum is halved."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(4, 4)).astype("float32")
    x = rng.uniform(size=(2, 4, 4, 1)).astype("float32")
    base = rng.uniform(size=(2, 4, 4, 1)).astype("float32")
    n = 5
    c = (n + 1) / (2 * n)
    expected = c * w[None, :, :, None] * (x - base)
    weights = np.ones((2, 1), "float32")
    options = dict(resolution=4, ig_iter=n, L1=0.0, L2=0.0, noise=0.0, softmax=False)
    single = IGOS(_linear_model(w), **options)
    (g,) = single._grads_fn(x, base, [np.ones((2, 4, 4, 1), "float32")], weights, None)
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-6)
    double = IGOSPlusPlus(_linear_model(w), **options)
    ones = np.ones((2, 4, 4, 1), "float32")
    gd, gi = double._grads_fn(x, base, [ones, ones], weights, None)
    np.testing.assert_allclose(np.asarray(gd), 1.5 * expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gi), 1.5 * expected, rtol=1e-5, atol=1e-6)


def test_regularisation_matches_numpy():
    """L1 mean|1 - m| + L2 * 0.5 (TV(m) + bilateral TV of the up-sampled mask), with the mask
    at the input's resolution (no up-sampling) so that the reference is plain NumPy."""
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2, 4, 4, 3)).astype("float32")
    m = rng.uniform(size=(2, 4, 4, 1)).astype("float32")
    sigma = 0.5
    analyzer = IGOS(_tiny_model_4x4x3(), resolution=4, L1=2.0, L2=3.0, btv_sigma=sigma)
    got = np.asarray(analyzer._regularization(x, m))
    mm, gray = m[..., 0], x.mean(axis=-1)
    tv = np.mean(np.diff(mm, axis=1) ** 2, axis=(1, 2)) + np.mean(
        np.diff(mm, axis=2) ** 2, axis=(1, 2)
    )
    bil = np.mean(
        np.exp(-(np.diff(gray, axis=1) ** 2) / sigma) * np.diff(mm, axis=1) ** 2, axis=(1, 2)
    ) + np.mean(
        np.exp(-(np.diff(gray, axis=2) ** 2) / sigma) * np.diff(mm, axis=2) ** 2, axis=(1, 2)
    )
    expected = 2.0 * np.mean(np.abs(1 - mm), axis=(1, 2)) + 3.0 * 0.5 * (tv + bil)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def _tiny_model_4x4x3():
    inp = keras.Input((4, 4, 3))
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))


def test_progress_bar(capsys):
    create_analyzer(
        "igos++", _tiny_model(), resolution=3, iterations=2, ig_iter=2, verbose=1
    ).analyze(_x(1))
    assert "2/2" in capsys.readouterr().out
