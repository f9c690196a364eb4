"""Relevance that a bias-free rule cannot pass on (issue 12, item 8): an output whose inputs
are all zero is the bias alone. The report names and counts such outputs."""

from __future__ import annotations

import keras
import numpy as np

import keras_isnet as ki


def _model():
    """Dense(3, relu) -> Dense(2): hidden units die for x < 0 (bias -1, weights +1)."""
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    )
    model.layers[0].set_weights([np.ones((2, 3), "float32"), -np.ones(3, "float32")])
    model.layers[1].set_weights(
        [np.array([[1, 0], [0, 1], [1, 1]], "float32"), np.array([0.5, 2.0], "float32")]
    )
    return model


def test_bias_only_outputs_are_counted_and_their_relevance_is_absorbed():
    model = _model()
    x = np.array([[2.0, 1.0], [-1.0, -2.0], [-3.0, -1.0], [1.0, 1.5]])  # samples 1, 2: dead
    analyzer = ki.create_analyzer(
        "lrp.epsilon", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    report = ki.conservation_report(analyzer, x, neuron_selection=1)
    head = report.layers[-1]
    assert head.bias_only_outputs == 2  # output 1 of samples 1 and 2 is the bias 2.0 alone
    assert head.reason.startswith("output carried by the bias alone (2 outputs)")
    # those samples explain y = 2.0 each and nothing reaches the input
    np.testing.assert_allclose(report.input_per_sample[1:3], 0.0, atol=1e-12)
    np.testing.assert_allclose(report.explained_per_sample[1:3], 2.0, rtol=1e-12)
    # the alive samples lose only the bias share of the epsilon rule (bias ignored: none)
    hidden = np.maximum(x @ np.ones((2, 3)) - 1, 0)
    z = hidden @ np.array([0, 1, 1.0])
    np.testing.assert_allclose(
        report.input_per_sample[[0, 3]], z[[0, 3]] * (z[[0, 3]] + 2) / z[[0, 3]], rtol=1e-6
    )
    # the first layer's rule is bias-free too, but none of its outputs is the bias alone
    first = report.layers[0]
    assert first.bias_only_outputs == 0
    assert not any("bias alone" in c for c in first.causes)


def test_rules_with_bias_report_the_bias_instead():
    analyzer = ki.create_analyzer("lrp.epsilon", _model(), neuron_selection_mode="index")
    report = ki.conservation_report(analyzer, np.array([[-1.0, -2.0]]), neuron_selection=1)
    assert report.layers[-1].causes == ["bias", "epsilon"]
    assert report.layers[-1].bias_only_outputs == 0
