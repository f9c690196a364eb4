"""Composites are values: the registered names build them, options change them without
changing the original, and an unknown name or option is answered clearly."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.composites import COMPOSITES, Composite, build_composite, composite_parameters
from keras_isnet.isnet.variants import VARIANTS, get_variant
from keras_isnet.rules import EpsilonRule, FlatRule


def test_every_lrp_analyzer_name_is_a_registered_composite():
    lrp_names = {n for n, cls in ki.ANALYZERS.items() if issubclass(cls, ki.analyzers.LRP)}
    assert lrp_names - {"lrp"} <= set(COMPOSITES)


def test_build_composite_takes_the_factory_parameters():
    composite = build_composite("lrp.epsilon", {"epsilon": 0.5, "bias": False})
    assert isinstance(composite.default, EpsilonRule)
    assert (composite.default.epsilon, composite.default.bias) == (0.5, False)
    assert composite_parameters("lrp.epsilon_gamma_box") == [
        "low",
        "high",
        "gamma",
        "epsilon",
        "bias",
        "layer_map",
    ]


def test_replace_leaves_the_original_unchanged():
    composite = build_composite("lrp.sequential_preset_a")
    flat = composite.replace(first_layer=FlatRule())
    assert composite.first_layer is None and isinstance(flat.first_layer, FlatRule)
    with pytest.raises(dataclasses.FrozenInstanceError):
        composite.default = FlatRule()


def test_unknown_composite_and_options_name_the_fix():
    with pytest.raises(KeyError, match="Did you mean 'lrp.epsilon'"):
        build_composite("lrp.epsilom")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match=r"\['epsilom'\].*takes \['epsilon', 'bias'\]"):
        ki.create_analyzer("lrp.epsilon", model, epsilom=0.1)
    with pytest.raises(KeyError, match="Did you mean 'lrp.epsilon'"):
        ki.create_analyzer("lrp.epsilom", model)
    with pytest.raises(ValueError, match="elsewhere"):
        Composite(elsewhere="nowhere")


def test_lrp_with_a_composite_value_equals_the_named_analyzer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)]
    )
    x = np.random.default_rng(0).random((4, 5)).astype("float32")
    named = ki.create_analyzer("lrp.epsilon", model, epsilon=0.2).analyze(x)
    value = ki.analyzers.LRP(model, composite=Composite(default=EpsilonRule(0.2))).analyze(x)
    np.testing.assert_array_equal(named, value)
    assert ki.create_analyzer("lrp.epsilon", model, epsilon=0.2).epsilon == 0.2


def test_variants_are_registered_strategies():
    assert set(VARIANTS) == {"selective", "original", "stochastic", "dual", "gradient_x_input"}
    assert [n for n, v in VARIANTS.items() if v.supports_hidden] == ["selective", "stochastic"]
    with pytest.raises(ValueError, match="valid"):
        get_variant("selectiv")
