"""register_layer_graph: subclassed layers walked as the graph of the sublayers they call.

The reference for each registered block is the same computation written with the functional
API from the same sublayer objects (the weights are shared), which the walk already handles.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki


class ResidualBlock(keras.layers.Layer):
    """``x + Dense(relu(Dense(LayerNorm(x))))``: sublayers and a keras.ops add."""

    def __init__(self, width: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def build(self, input_shape):
        self.norm = keras.layers.LayerNormalization()
        self.up = keras.layers.Dense(self.width, activation="relu")
        self.down = keras.layers.Dense(input_shape[-1])

    def call(self, x):
        return x + self.down(self.up(self.norm(x)))


class Unregistered(keras.layers.Layer):
    """The same block, not registered (the error must say how)."""

    width = 6
    build = ResidualBlock.build
    call = ResidualBlock.call


class Tiled(keras.layers.Layer):
    """Adds a learned row to every sample; its call cannot be recorded as it is."""

    def build(self, input_shape):
        self.row = self.add_weight(shape=(1, input_shape[-1]), initializer="ones", name="row")

    def call(self, x):
        return x + keras.ops.tile(self.row, (keras.ops.shape(x)[0], 1))


def _models(block_class=ResidualBlock, seed=0):
    """A model with the block, and the same network written functionally (shared layers)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,))
    block = block_class(name="block")
    head = keras.layers.Dense(3, name="head")
    model = keras.Model(x, head(block(x)))
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.5, tuple(variable.shape)).astype("float32"))
    y = keras.Input((4,))
    functional = keras.Model(y, head(keras.layers.Add()([y, block.down(block.up(block.norm(y)))])))
    return model, functional


def _data(seed=1):
    return np.random.default_rng(seed).normal(size=(5, 4)).astype("float32")


ki.register_layer_graph(ResidualBlock)


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.z", "lrp.cp_lrp", "gradient"])
def test_registered_block_equals_its_functional_form(name):
    model, functional = _models()
    x = _data()
    expected = ki.create_analyzer(name, functional).analyze(x)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(
        ki.create_analyzer(name, model).analyze(x), expected, rtol=1e-5, atol=1e-7
    )


def test_walk_steps_are_the_sublayers():
    model, _ = _models()
    steps = ki.create_analyzer("lrp.epsilon", model).engine.steps
    block = model.get_layer("block")
    layers = [step.layer for step in steps]
    assert all(any(layer is sub for layer in layers) for sub in (block.norm, block.up, block.down))
    assert all(step.path.startswith("block/") for step in steps[:-1])
    assert steps[-1].path == "head"


def test_gradient_through_the_graph_equals_autodiff():
    model, _ = _models(seed=3)
    x = _data(4)
    np.testing.assert_allclose(
        ki.create_analyzer("gradient", model).analyze(x),
        ki.create_analyzer("gradient.baseline", model).analyze(x),
        rtol=1e-5,
        atol=1e-7,
    )


def test_isnet_trains_the_block_as_its_functional_form():
    """One SGD step of a 2-D ISNet through the registered block equals the step through
    the functional form (the same variables are trained)."""
    results = []
    for functional_form in (False, True):
        keras.utils.set_random_seed(5)
        images = keras.Input((4, 4, 1))
        conv = keras.layers.Conv2D(4, 2, activation="relu", name="conv")
        block = ResidualBlock(name="block")
        head = keras.layers.Dense(3, name="head")
        h = keras.layers.GlobalAveragePooling2D()(conv(images))
        if functional_form:
            block(h)  # builds the sublayers
            h = keras.layers.Add()([h, block.down(block.up(block.norm(h)))])
        else:
            h = block(h)
        model = keras.Model(images, head(h))
        rng = np.random.default_rng(6)
        for variable in model.weights:
            variable.assign(rng.normal(0, 0.5, tuple(variable.shape)).astype("float32"))
        x = np.random.default_rng(7).random((6, 4, 4, 1)).astype("float32")
        labels = np.array([0, 1, 2, 0, 1, 2])
        masks = np.zeros((6, 4, 4), "float32")
        masks[:, 1:3, 1:3] = 1.0
        isnet = ki.ISNet(model, variant="selective", P=0.5)
        isnet.compile(optimizer=keras.optimizers.SGD(0.1))
        before = [w.copy() for w in block.get_weights()]
        isnet.fit(x, labels, sample_weight=masks, epochs=1, batch_size=6, verbose=0)
        results.append(block.get_weights())
        assert any(not np.array_equal(a, b) for a, b in zip(before, results[-1], strict=True))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unregistered_block_error_says_how():
    model, _ = _models(Unregistered)
    with pytest.raises(ki.UnsupportedLayerError, match=r"register_layer_graph\(Unregistered\)"):
        ki.create_analyzer("lrp.epsilon", model).analyze(_data())


def test_build_function_for_a_call_the_graph_cannot_record():
    """``Tiled.call`` tiles over the batch size; a build function writes it as a broadcast
    add, which the walk knows (the row absorbs its share, as a bias does)."""

    class AddRow(keras.layers.Layer):
        def __init__(self, source, **kwargs):
            super().__init__(**kwargs)
            self.source = source

        def call(self, x):
            return x + self.source.row

    ki.register_reverse_rule(AddRow, "weightless_linear")
    ki.register_layer_graph(Tiled, lambda layer, x: AddRow(layer)(x))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    tiled = Tiled(name="tiled")
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="out")(tiled(inputs)))
    x = np.abs(_data()[:, :3]) + 0.5
    heatmap = ki.create_analyzer("lrp.z", model).analyze(x)
    w = model.get_layer("out").kernel.numpy()[:, 0]
    y = x + 1.0  # the row starts at ones
    np.testing.assert_allclose(heatmap, x / y * (y * w), rtol=1e-5, atol=1e-7)


def test_build_with_wrong_outputs_is_refused():
    class Other(ResidualBlock):
        pass

    ki.register_layer_graph(Other, lambda layer, x: keras.layers.Dense(2)(x))
    model, _ = _models(Other)
    with pytest.raises(ValueError, match="build function must compute the layer's outputs"):
        ki.create_analyzer("lrp.epsilon", model)


def test_registration_by_dotted_name():
    class Named(ResidualBlock):
        pass

    ki.register_layer_graph(f"{Named.__module__}.{Named.__qualname__}")
    model, functional = _models(Named)
    x = _data()
    np.testing.assert_allclose(
        ki.create_analyzer("lrp.epsilon", model).analyze(x),
        ki.create_analyzer("lrp.epsilon", functional).analyze(x),
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "args, match",
    [(("Block",), "layer class or its dotted name"), ((ResidualBlock, 3), "must be a function")],
)
def test_bad_registrations_are_refused(args, match):
    with pytest.raises(TypeError, match=match):
        ki.register_layer_graph(*args)
