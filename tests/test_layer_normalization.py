"""The LN rule for LayerNormalization (keras_isnet/layers/layer_normalization.py), against an
explicit-matrix NumPy reference and the conservation identity."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from isnet_reference import assert_isnet_trains

import keras_isnet as ki

L = keras.layers


def _randomize(layer, rng):
    for w in layer.weights:
        w.assign(rng.normal(1.0, 0.3, w.shape))


def test_matches_the_explicit_linear_map():
    """Input -> LN -> Dense (no bias): R_x = x_i sum_j A_ji R_j / z_j with the matrix
    A = diag(gamma / sigma) (I - 1 1^T / n) built explicitly, sigma held constant."""
    rng = np.random.default_rng(0)
    n = 6
    model = keras.Sequential(
        [keras.Input((n,)), L.LayerNormalization(epsilon=1e-3), L.Dense(2, use_bias=False)]
    )
    _randomize(model.layers[0], rng)
    x = rng.normal(size=(3, n))
    analyzer = ki.create_analyzer(
        "lrp.z", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    got = analyzer.analyze(x, neuron_selection=1)

    ln, dense = model.layers
    gamma, beta = ln.gamma.numpy().astype(float), ln.beta.numpy().astype(float)
    w = dense.kernel.numpy().astype(float)[:, 1]
    for b in range(len(x)):
        sigma = np.sqrt(x[b].var() + 1e-3)
        A = np.diag(gamma / sigma) @ (np.eye(n) - np.ones((n, n)) / n)
        z = A @ x[b]
        y = z + beta
        R_y = y * w  # the z-rule at the bias-free Dense: R_j = y_j w_j (sums to the logit)
        expected = x[b] * (A.T @ (R_y / z))
        # (the Dense's input y comes from Keras' float32 LN: agreement to float32 precision)
        np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("axis", [-1, [1, 2, 3]], ids=["channels", "all"])
def test_conserves_relevance_after_convolutions(axis):
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 2))
    # no ReLU: an all-zero vector (dead ReLUs) normalises to 0, and the relevance its beta
    # draws is absorbed there (by design: it is beta's)
    h = L.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    h = L.LayerNormalization(axis=axis, name="ln")(h)
    model = keras.Model(inputs, L.Dense(3, use_bias=False)(L.Flatten()(h)))
    _randomize(model.get_layer("ln"), rng)
    x = rng.random((2, 6, 6, 2))
    analyzer = ki.create_analyzer(
        "lrp.z", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    heatmaps = analyzer.analyze(x, neuron_selection=0)
    logits = np.asarray(model(x.astype("float32")))[:, 0]
    np.testing.assert_allclose(heatmaps.sum(axis=(1, 2, 3)), logits, rtol=1e-5)


def test_isnet_trains_through_layer_normalization():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = L.LayerNormalization()(L.Conv2D(4, 3, activation="relu")(inputs))
    assert_isnet_trains(keras.Model(inputs, L.Dense(3)(L.Flatten()(h))))


def test_rms_scaling_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras deprecates rms_scaling
        ln = L.LayerNormalization(rms_scaling=True, name="rms")
        model = keras.Sequential([keras.Input((4,)), ln, L.Dense(2)])
        with pytest.raises(ValueError, match="'rms'.*RMSNormalization"):
            ki.create_analyzer("lrp.epsilon", model).analyze(np.ones((1, 4), "float32"))


def test_the_conservation_report_names_the_ln_rule():
    model = keras.Sequential([keras.Input((4,)), L.LayerNormalization(name="ln"), L.Dense(2)])
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    step = next(s for s in analyzer._steps if s.layer.name == "ln")
    assert analyzer.conservation_info(step) == ("LN rule", ["beta where z = 0"])
