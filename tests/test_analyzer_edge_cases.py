"""Analyzer inputs at the edges (issue 12, item 7): empty batches, bad batch sizes,
multi-input batches of different sizes, out-of-vocabulary tokens, misspelt names, and the
default chunking of large arrays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.analyzers.base import DEFAULT_BATCH_SIZE

L = keras.layers


@pytest.fixture
def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(4)]
    )


@pytest.mark.parametrize("name", ["lrp.epsilon", "gradient", "smoothgrad"])
def test_an_empty_batch_gives_an_empty_result(conv_model, name):
    analyzer = ki.create_analyzer(name, conv_model)
    out = analyzer.analyze(np.zeros((0, 6, 6, 1), np.float32))
    assert out.shape == (0, 6, 6, 1) and out.dtype == np.float32
    heatmaps, layers = analyzer.analyze(np.zeros((0, 6, 6, 1), np.float32), keep_layers=True)
    assert heatmaps.shape == (0, 6, 6, 1) and layers == {}


def test_an_empty_batch_in_index_mode_and_float64(conv_model):
    analyzer = ki.create_analyzer(
        "lrp.z", conv_model, neuron_selection_mode="index", compute_dtype="float64"
    )
    out = analyzer.analyze(np.zeros((0, 6, 6, 1)), neuron_selection=2)
    assert out.shape == (0, 6, 6, 1) and out.dtype == np.float64


@pytest.mark.parametrize("bad", [0, -2])
def test_batch_size_must_be_positive(conv_model, bad):
    x = np.random.default_rng(0).random((3, 6, 6, 1)).astype("float32")
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer.*got {bad}"):
        ki.create_analyzer("lrp.epsilon", conv_model).analyze(x, batch_size=bad)


@pytest.mark.parametrize("bad", [2.5, "4", True])
def test_batch_size_must_be_an_integer(conv_model, bad):
    x = np.random.default_rng(0).random((3, 6, 6, 1)).astype("float32")
    with pytest.raises(TypeError, match="batch_size must be a positive integer"):
        ki.create_analyzer("lrp.epsilon", conv_model).analyze(x, batch_size=bad)


def test_large_arrays_are_chunked_by_default_with_the_same_numbers(conv_model):
    x = np.random.default_rng(1).random((DEFAULT_BATCH_SIZE + 5, 6, 6, 1)).astype("float32")
    analyzer = ki.create_analyzer("lrp.epsilon", conv_model)
    calls = []

    def eager(inputs, selection):  # in place of the compiled function: sees each chunk
        calls.append(int(inputs[0].shape[0]))
        return analyzer._compiled_explain(inputs, selection)

    analyzer._compiled = eager
    chunked = analyzer.analyze(x)
    assert calls == [DEFAULT_BATCH_SIZE, 5]
    whole = analyzer.analyze(x, batch_size=len(x))
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-7)


def test_multi_input_batches_of_different_sizes_are_named():
    a, b = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([a, b], L.Dense(2)(L.Concatenate()([a, b])))
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    with pytest.raises(ValueError, match=r"different batch sizes \[4, 3\]"):
        analyzer.analyze([np.ones((4, 3), "float32"), np.ones((3, 2), "float32")])


def test_out_of_vocabulary_tokens_name_the_embedding():
    tokens = keras.Input((5,), dtype="int32")
    h = L.Flatten()(L.Embedding(10, 3, name="embed")(tokens))
    model = keras.Model(tokens, L.Dense(2)(h))
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    ok = np.array([[0, 1, 2, 3, 9]], "int32")
    assert analyzer.analyze(ok).shape == (1, 5)
    with pytest.raises(ValueError, match=r"'embed' \(input_dim=10\).*token 10"):
        analyzer.analyze(np.array([[0, 1, 2, 3, 10]], "int32"))
    with pytest.raises(ValueError, match=r"token -1"):
        analyzer.analyze(np.array([[0, -1, 2, 3, 4]], "int32"))


def test_unknown_analyzer_name_suggests_the_closest(conv_model):
    with pytest.raises(KeyError, match="Did you mean 'lrp.epsilon'"):
        ki.create_analyzer("lrp.epsillon", conv_model)
    with pytest.raises(KeyError, match="Did you mean 'gradient'"):
        ki.create_analyzer("gradeint", conv_model)
