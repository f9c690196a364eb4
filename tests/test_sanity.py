"""Sanity checks: similarity measures against closed forms and SciPy, the randomisation test
on models and analyzers whose answer is known, faithfulness correlation of a linear model."""

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.metrics import faithfulness_correlation, model_randomization_test, similarity


def _cnn(initializer="glorot_uniform"):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=initializer, name="c1"),
            keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=initializer, name="c2"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, kernel_initializer=initializer, name="out"),
        ]
    )


def _images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8, 1)).astype("float32")


# ------------------------------------------------------------------ similarity
def test_similarity_closed_forms():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 6, 6))
    for metric in ki.metrics.sanity.SIMILARITIES:
        assert similarity(h, h, metric).tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    assert similarity(h, -h, "spearman").tolist() == pytest.approx([-1.0] * 3, abs=1e-12)
    assert similarity(h, -h, "spearman_abs").tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    assert similarity(h, 5.0 * h, "ssim").tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    assert np.all(similarity(h, -h, "ssim") < 0)
    assert np.isnan(similarity(np.zeros((1, 4, 4)), h[:1, :4, :4], "spearman")[0])
    with pytest.raises(ValueError, match="metric"):
        similarity(h, h, "hog")


def test_spearman_equals_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a = rng.integers(-3, 4, (2, 5, 5)).astype(float)  # many ties
    b = a + rng.integers(-2, 3, (2, 5, 5))
    for metric, f in (("spearman", lambda v: v), ("spearman_abs", np.abs)):
        expected = [stats.spearmanr(f(a[i]).ravel(), f(b[i]).ravel())[0] for i in range(2)]
        assert similarity(a, b, metric).tolist() == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ randomisation test
def test_an_input_only_explanation_never_changes():
    """The 'input' analyzer ignores the weights: the test must give similarity 1 throughout
    (the failure Adebayo et al. found for edge-detector-like methods)."""
    model, x = _cnn(), _images()
    result = model_randomization_test(model, x, "input")
    assert result.steps == ["original", "out", "c2", "c1"]
    for metric, values in result.similarity.items():
        np.testing.assert_allclose(values, 1.0, atol=1e-12, err_msg=metric)


def test_randomised_layers_that_change_nothing_give_similarity_one():
    """Constant initializers: re-initialising gives back the same weights, so the heatmaps
    of every step equal the trained model's."""
    model = _cnn(initializer=keras.initializers.Constant(0.1))
    result = model_randomization_test(model, _images(), "lrp.epsilon", metrics=["spearman"])
    np.testing.assert_allclose(result.similarity["spearman"], 1.0, atol=1e-9)
    np.testing.assert_allclose(result.heatmaps[-1], result.heatmaps[0], rtol=1e-6)


def test_lrp_heatmaps_change_and_the_model_is_untouched():
    model, x = _cnn(), _images(8)
    before = [w.copy() for w in model.get_weights()]
    result = model_randomization_test(model, x, "lrp.epsilon")
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    mean = result.mean("spearman_abs")
    assert mean[0] == pytest.approx(1.0)
    assert mean[-1] < 0.8, mean  # a fully re-initialised network explains differently
    fresh = ki.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index").analyze(
        x, neuron_selection=result.labels
    )
    np.testing.assert_allclose(result.heatmaps[0], fresh[..., 0], rtol=1e-5, atol=1e-7)
    assert result.labels.tolist() == model.predict(x, verbose=0).argmax(axis=1).tolist()


def test_independent_and_cascading_share_the_first_step():
    model, x = _cnn(), _images()
    cascading = model_randomization_test(model, x, "gradient", metrics=["spearman"])
    independent = model_randomization_test(
        model, x, "gradient", mode="independent", metrics=["spearman"]
    )
    np.testing.assert_allclose(independent.heatmaps[1], cascading.heatmaps[1], rtol=1e-6)
    assert not np.allclose(independent.heatmaps[2], cascading.heatmaps[2], rtol=1e-3)
    only_c1 = model_randomization_test(model, x, "gradient", layers=["c1"], metrics=["spearman"])
    assert only_c1.steps == ["original", "c1"]
    with pytest.raises(ValueError, match="no layer with trainable weights named"):
        model_randomization_test(model, x, "gradient", layers=["flatten"])
    with pytest.raises(ValueError, match="mode"):
        model_randomization_test(model, x, mode="random")


def test_randomization_plots(tmp_path):
    model, x = _cnn(), _images()
    result = model_randomization_test(model, x, "lrp.epsilon")
    result.plot(tmp_path / "curve.png")
    result.plot_heatmaps(tmp_path / "maps.png", images=x, samples=2)
    from PIL import Image

    assert Image.open(tmp_path / "curve.png").size[0] > 300
    width, height = Image.open(tmp_path / "maps.png").size
    assert width > height  # 2 rows, 5 columns


# ------------------------------------------------------------------ faithfulness correlation
def _linear(softmax=False):
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax" if softmax else None, name="out"),
        ]
    )


def _exact_attribution(model, x, labels, baseline=0.0):
    w = model.get_layer("out").kernel.numpy()  # (72, 3)
    return (x - baseline) * w[:, labels].T.reshape(x.shape)


@pytest.mark.parametrize("cell_size", [1, 2, 4])
def test_linear_model_exact_attribution_scores_one(cell_size):
    model = _linear()
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype("float32")
    labels = model.predict(x, verbose=0).argmax(axis=1)
    h = _exact_attribution(model, x, labels)
    result = faithfulness_correlation(model, x, h, cell_size=cell_size, n_subsets=32, seed=1)
    np.testing.assert_allclose(result.correlation, 1.0, atol=1e-5)
    np.testing.assert_allclose(result.output_drops, result.attribution_sums, rtol=1e-4, atol=1e-4)
    # input x gradient is that exact attribution for a linear model with baseline 0
    ixg = ki.create_analyzer("input_t_gradient", model).analyze(x)
    np.testing.assert_allclose(ixg, h, rtol=1e-5, atol=1e-6)


def test_mean_baseline_softmax_and_random_heatmaps():
    model = _linear(softmax=True)
    x = np.random.default_rng(3).normal(size=(4, 6, 6, 2)).astype("float32")
    labels = model.predict(x, verbose=0).argmax(axis=1)
    base = x.mean(axis=(1, 2), keepdims=True)
    h = _exact_attribution(model, x, labels, base)
    logits = faithfulness_correlation(model, x, h, baseline="mean", subset_size=0.25)
    np.testing.assert_allclose(logits.correlation, 1.0, atol=1e-5)
    probs = faithfulness_correlation(model, x, h, baseline="mean", strip_softmax=False)
    assert np.all(probs.correlation < 0.9999)  # probabilities are not linear in x
    noise = np.random.default_rng(4).normal(size=h.shape)
    random = faithfulness_correlation(model, x, noise, n_subsets=128)
    assert abs(random.mean) < 0.3
    assert logits.subset_size == 9  # a quarter of the 36 pixels (a pixel: all its channels)


def test_faithfulness_errors_and_plot(tmp_path):
    model = _linear()
    x = np.zeros((2, 6, 6, 2), "float32")
    with pytest.raises(ValueError, match="subset_size"):
        faithfulness_correlation(model, x, x, subset_size=1.5)
    with pytest.raises(ValueError, match="do not match"):
        faithfulness_correlation(model, x, x[:, :5])
    with pytest.raises(ValueError, match="baseline"):
        faithfulness_correlation(model, x, x, baseline="blur")
    x = np.random.default_rng(0).normal(size=(5, 6, 6, 2)).astype("float32")
    labels = model.predict(x, verbose=0).argmax(axis=1)
    result = faithfulness_correlation(model, x, _exact_attribution(model, x, labels))
    result.plot(tmp_path / "faithfulness.png", index=1)
    assert (tmp_path / "faithfulness.png").stat().st_size > 10_000
