"""ki.model_wo_softmax / model_wo_output_activation (iNNvestigate's helper)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki


def _x(shape=(3, 8, 8, 1)):
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _trunk(inputs):
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    return keras.layers.Flatten(name="flat")(x)


def test_dense_with_softmax_becomes_its_logits():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(_trunk(inputs)))
    logits_model = ki.model_wo_softmax(model)
    x = _x()
    features = keras.Model(inputs, model.get_layer("flat").output).predict(x, verbose=0)
    dense = model.layers[-1]
    expected = features @ dense.kernel.numpy() + dense.bias.numpy()  # the logits, by hand
    np.testing.assert_allclose(logits_model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # the trunk is shared (same variables), the last layer is a copy
    assert logits_model.get_layer("conv") is model.get_layer("conv")
    assert logits_model.layers[-1] is not dense
    # analyzers strip the softmax themselves: the same heatmaps either way
    np.testing.assert_array_equal(
        ki.create_analyzer("lrp.epsilon", logits_model).analyze(x),
        ki.create_analyzer("lrp.epsilon", model).analyze(x),
    )


@pytest.mark.parametrize("head", ["softmax_layer", "activation_layer"])
def test_a_separate_softmax_layer_is_dropped(head):
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(4, name="logits")(_trunk(inputs))
    final = (
        keras.layers.Softmax() if head == "softmax_layer" else keras.layers.Activation("softmax")
    )
    model = keras.Model(inputs, final(logits))
    logits_model = ki.model_wo_softmax(model)
    assert logits_model.layers[-1] is model.get_layer("logits")
    x = _x()
    np.testing.assert_allclose(
        np.asarray(keras.ops.softmax(logits_model(x))), np.asarray(model(x)), rtol=1e-6
    )


def test_multiple_outputs_and_other_activations():
    inputs = keras.Input((8, 8, 1))
    h = _trunk(inputs)
    model = keras.Model(
        inputs,
        [keras.layers.Dense(3, activation="sigmoid")(h), keras.layers.Dense(2, "sigmoid")(h)],
    )
    stripped = ki.model_wo_output_activation(model, "sigmoid")
    x = _x()
    for a, b in zip(stripped(x), model(x), strict=True):
        np.testing.assert_allclose(np.asarray(keras.ops.sigmoid(a)), np.asarray(b), rtol=1e-6)


def test_errors_name_the_layer():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(_trunk(inputs)))
    with pytest.raises(ValueError, match="'head'.*Dense.*nothing to remove"):
        ki.model_wo_softmax(model)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="graph.*Sub"):
        ki.model_wo_softmax(Sub())
