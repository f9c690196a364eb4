"""Multiply as a gate (squeeze-and-excitation, attention maps): keras_isnet/layers/merging.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from isnet_reference import assert_isnet_trains

import keras_isnet as ki

L = keras.layers


def _se_model():
    """Conv -> squeeze-and-excitation gate (GAP, Dense, sigmoid, Reshape) -> Multiply -> head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    features = L.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name="conv")(
        inputs
    )
    gate = L.Dense(4, activation="sigmoid", name="excite")(L.GlobalAveragePooling2D()(features))
    gated = L.Multiply(name="gate")([features, L.Reshape((1, 1, 4))(gate)])
    outputs = L.Dense(3, use_bias=False, name="head")(L.GlobalAveragePooling2D(name="pool")(gated))
    return keras.Model(inputs, outputs)


def test_the_signal_takes_all_relevance_and_it_is_conserved():
    model = _se_model()
    x = np.random.default_rng(0).random((3, 8, 8, 2))
    analyzer = ki.create_analyzer(
        "lrp.z", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    heatmaps, layers = analyzer.analyze(x, neuron_selection=2, keep_layers=True)
    logit = np.asarray(model(x.astype("float32")))[:, 2]
    np.testing.assert_allclose(heatmaps.sum(axis=(1, 2, 3)), logit, rtol=1e-5)
    signal, gate = layers["gate"]
    assert gate is None  # the gate gets no relevance
    # the signal gets the relevance arriving at the Multiply unchanged
    arriving = layers["pool"]  # the relevance at the pooling's input: the Multiply's output
    np.testing.assert_allclose(signal, arriving, rtol=1e-12)


def test_isnet_trains_a_squeeze_and_excitation_net():
    assert_isnet_trains(_se_model())


def test_same_shaped_factors_are_refused_with_a_way_out():
    inputs = keras.Input((8, 8, 1))
    a, b = L.Conv2D(2, 3, name="a")(inputs), L.Conv2D(2, 3, name="b")(inputs)
    model = keras.Model(inputs, L.Dense(3)(L.Flatten()(L.Multiply(name="product")([a, b]))))
    with pytest.raises(ValueError, match="'product'.*signal from the gate.*register_reverse_rule"):
        ki.create_analyzer("lrp.epsilon", model).analyze(np.ones((1, 8, 8, 1), "float32"))


def test_on_a_1x1_map_the_sigmoid_input_is_the_gate():
    """Both factors (1, 1, C), as in EfficientNet's last blocks on small images: the one
    computed by a sigmoid is the gate."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1, 1, 2))
    features = L.Conv2D(4, 1, activation="relu", use_bias=False)(inputs)
    gate = L.Conv2D(4, 1, activation="sigmoid")(features)
    gated = L.Multiply(name="gate")([gate, features])  # the gate first this time
    model = keras.Model(inputs, L.Dense(3, use_bias=False)(L.Flatten()(gated)))
    x = np.random.default_rng(1).random((2, 1, 1, 2))
    analyzer = ki.create_analyzer(
        "lrp.z", model, bias=False, neuron_selection_mode="index", compute_dtype="float64"
    )
    heatmaps, layers = analyzer.analyze(x, neuron_selection=0, keep_layers=True)
    assert layers["gate"][0] is None and layers["gate"][1] is not None
    np.testing.assert_allclose(
        heatmaps.sum(axis=(1, 2, 3)), np.asarray(model(x.astype("float32")))[:, 0], rtol=1e-5
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EfficientNetB0", "MobileNetV2", "ResNet50", "DenseNet121"])
def test_keras_applications_analyze_and_train(name):
    """keras.applications networks (random weights, 32x32 inputs): LRP heatmaps are finite,
    and one ISNet step runs."""
    import warnings

    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=4)
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BN layers that cannot be folded (DenseNet)
        heatmaps = ki.create_analyzer("lrp.epsilon", model).analyze(x * 255)
        assert heatmaps.shape == x.shape and np.isfinite(heatmaps).all()
        isnet = ki.ISNet(model, input_bounds=None)
        isnet.compile(optimizer=keras.optimizers.SGD(1e-4))
        masks = np.ones((2, 32, 32), "float32")
        loss = isnet.train_on_batch(x * 255, np.array([0, 1]), sample_weight=masks)
    assert np.isfinite(loss).all()


def test_the_conservation_report_names_the_gate_rule():
    model = _se_model()
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    step = next(s for s in analyzer._steps if s.layer.name == "gate")
    assert analyzer.conservation_info(step) == ("gate: signal takes all", [])
