"""keras.ops nodes between layers and Lambda layers: closed forms, the equivalent layer-based
models, and the error messages (backend-neutral)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import keras_isnet as ki
from keras_isnet.layers import registry


def _data(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _heatmap(name, model, x, **kwargs):
    return ki.create_analyzer(name, model, **kwargs).analyze(x)


def _set(layer, kernel):
    layer.kernel.assign(np.asarray(kernel, "float32"))


@pytest.fixture
def branches():
    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    d1, d2 = keras.layers.Dense(3, name="d1"), keras.layers.Dense(3, name="d2")
    d1.build((None, 4))
    d2.build((None, 4))
    d1.bias.assign(np.array([0.1, -0.2, 0.3], "float32"))
    d2.bias.assign(np.array([0.2, 0.1, -0.1], "float32"))
    return x, d1(x), d2(x)


@pytest.mark.parametrize("composite", ["lrp.epsilon", "lrp.z", "isnet"])
def test_plus_operator_and_ops_add_equal_the_add_layer(branches, composite):
    x, a, b = branches
    data = _data((5, 4))
    reference = _heatmap(composite, keras.Model(x, keras.layers.Add()([a, b])), data)
    for out in (a + b, ops.add(a, b)):
        heatmap = _heatmap(composite, keras.Model(x, out), data)
        np.testing.assert_allclose(heatmap, reference, rtol=1e-6, atol=1e-7)


def test_subtract_operator_equals_the_subtract_layer(branches):
    x, a, b = branches
    data = _data((5, 4), 1)
    reference = _heatmap("lrp.epsilon", keras.Model(x, keras.layers.Subtract()([a, b])), data)
    heatmap = _heatmap("lrp.epsilon", keras.Model(x, a - b), data)
    np.testing.assert_allclose(heatmap, reference, rtol=1e-6, atol=1e-7)


def test_mean_over_tokens_equals_global_average_pooling():
    keras.utils.set_random_seed(1)
    x = keras.Input((5, 3))
    dense, head = keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)
    h = dense(x)
    pooled = keras.Model(x, head(keras.layers.GlobalAveragePooling1D()(h)))
    meaned = keras.Model(x, head(ops.mean(h, axis=1)))
    data = _data((3, 5, 3), 2)
    np.testing.assert_allclose(
        _heatmap("lrp.epsilon", meaned, data),
        _heatmap("lrp.epsilon", pooled, data),
        rtol=1e-6,
        atol=1e-7,
    )


def test_sum_of_a_bias_free_network_conserves_relevance():
    keras.utils.set_random_seed(2)
    x = keras.Input((4,))
    y = ops.sum(keras.layers.Dense(3, use_bias=False)(x), axis=-1, keepdims=True)
    model = keras.Model(x, y)
    data = _data((6, 4), 3)
    heatmap = _heatmap("lrp.z", model, data)
    np.testing.assert_allclose(heatmap.sum(axis=1), model.predict(data, verbose=0)[:, 0], rtol=1e-5)


def test_moving_operations_move_relevance_with_the_values():
    """reshape, transpose, slicing, squeeze, expand_dims, concatenate, stack, where (constant
    mask): LRP-0 of y = sum_i w_i v_i (v the moved inputs) gives x_k w_i at x_k's place."""
    x = keras.Input((6,))
    t = ops.transpose(ops.reshape(x, (-1, 2, 3)), (0, 2, 1))  # t[:, j, i] = x[:, 3 i + j]
    first = ops.squeeze(t[:, 0:1, :], axis=1)  # x0, x3
    rest = ops.reshape(t[:, 1:, :], (-1, 4))  # x1, x4, x2, x5
    stacked = ops.reshape(ops.stack([first, first], axis=1), (-1, 4))  # x0, x3, x0, x3
    mask = np.array([True, True, False, True])
    masked = ops.where(mask, rest, 0.0)  # x1, x4, 0, x5
    v = ops.concatenate([stacked, ops.expand_dims(masked, 1)[:, 0]], axis=-1)
    head = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(x, head(v))
    w = np.arange(1.0, 9.0, dtype="float32")
    _set(head, w[:, None])
    data = np.abs(_data((3, 6), 4)) + 0.5
    heatmap = _heatmap("lrp.z", model, data)
    # v = [x0, x3, x0, x3, x1, x4, 0, x5] with weights 1..8
    per_input = np.array([1 + 3, 5, 0, 2 + 4, 6, 8], "float32")
    np.testing.assert_allclose(heatmap, data * per_input, rtol=1e-5)


@pytest.mark.parametrize("function", ["relu", "gelu", "silu", "tanh"])
def test_elementwise_ops_pass_relevance_as_activation_layers(function):
    keras.utils.set_random_seed(3)
    x = keras.Input((4,))
    first, head = keras.layers.Dense(5), keras.layers.Dense(2)
    h = first(x)
    kwargs = {"approximate": False} if function == "gelu" else {}  # as the "gelu" activation
    as_op = keras.Model(x, head(getattr(ops, function)(h, **kwargs)))
    as_layer = keras.Model(x, head(keras.layers.Activation(function)(h)))
    data = _data((4, 4), 5)
    np.testing.assert_allclose(
        _heatmap("lrp.epsilon", as_op, data),
        _heatmap("lrp.epsilon", as_layer, data),
        rtol=1e-6,
        atol=1e-7,
    )


def test_constant_factors_and_divisors_pass_relevance():
    """Dense2(Dense1(x) * 2 / 4 @ M) explains as Dense2 with kernel (M W2) / 2."""
    keras.utils.set_random_seed(4)
    x = keras.Input((4,))
    first, head = keras.layers.Dense(3), keras.layers.Dense(2)
    h = first(x)
    m = _data((3, 3), 6)
    scaled = keras.Model(x, head(ops.matmul(ops.divide(h * 2.0, 4.0), m)))
    x2 = keras.Input((4,))
    folded_head = keras.layers.Dense(2)
    reference = keras.Model(x2, folded_head(first(x2)))
    folded_head.kernel.assign(m @ head.kernel.numpy() / 2.0)
    folded_head.bias.assign(head.bias.numpy())
    data = _data((5, 4), 7)
    np.testing.assert_allclose(
        scaled.predict(data, verbose=0), reference.predict(data, verbose=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        _heatmap("lrp.epsilon", scaled, data),
        _heatmap("lrp.epsilon", reference, data),
        rtol=1e-4,
        atol=1e-6,
    )


def test_product_of_two_signals_splits_uniformly():
    """y = sum_j (x A)_j (x B)_j: each factor gets R/2 elementwise, then LRP-0 of each Dense."""
    keras.utils.set_random_seed(5)
    x = keras.Input((3,))
    da, db = keras.layers.Dense(4, use_bias=False), keras.layers.Dense(4, use_bias=False)
    model = keras.Model(x, ops.sum(da(x) * db(x), axis=-1, keepdims=True))
    data = _data((4, 3), 8)
    heatmap = _heatmap("lrp.z", model, data)
    A, B = da.kernel.numpy(), db.kernel.numpy()
    za, zb = data @ A, data @ B
    R = za * zb / 2.0
    expected = data * ((R / za) @ A.T) + data * ((R / zb) @ B.T)
    np.testing.assert_allclose(heatmap, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(heatmap.sum(1), (za * zb).sum(1), rtol=1e-4)


def test_multiply_by_a_broadcast_gate_gives_the_signal_all_relevance():
    keras.utils.set_random_seed(6)
    x = keras.Input((5, 3))
    h = keras.layers.Dense(3, use_bias=False)(x)
    gate = ops.sigmoid(ops.mean(h, axis=1, keepdims=True))
    model = keras.Model(x, ops.sum(ops.reshape(h * gate, (-1, 15)), axis=-1, keepdims=True))
    data = _data((2, 5, 3), 9)
    heatmap = _heatmap("lrp.z", model, data)
    np.testing.assert_allclose(
        heatmap.reshape(2, -1).sum(1), model.predict(data, verbose=0)[:, 0], rtol=1e-4
    )


def test_unknown_operation_names_its_class_and_function():
    x = keras.Input((4,))
    model = keras.Model(x, ops.cumsum(keras.layers.Dense(3)(x), axis=-1))
    with pytest.raises(ki.UnsupportedLayerError) as error:
        ki.create_analyzer("lrp.epsilon", model)
    message = str(error.value)
    assert "keras.src.ops.numpy.Cumsum" in message
    assert "keras.ops.cumsum" in message
    assert "from keras.src.ops.numpy import Cumsum" in message
    assert "register_reverse_rule(Cumsum, rule)" in message


def test_registering_an_operation_class_gives_it_a_rule():
    from keras.src.ops.numpy import Cumsum

    x = keras.Input((4,))
    model = keras.Model(x, ops.cumsum(keras.layers.Dense(3)(x), axis=-1))
    try:
        ki.register_reverse_rule(Cumsum, "weightless_linear")
        heatmap = _heatmap("lrp.epsilon", model, _data((2, 4)))
    finally:
        registry._REGISTRY.pop(Cumsum, None)
    assert heatmap.shape == (2, 4) and np.isfinite(heatmap).all()


def _lambda_model(function, name):
    keras.utils.set_random_seed(7)
    x = keras.Input((4,))
    dense = keras.layers.Dense(3)
    lam = keras.layers.Lambda(function, name=name)
    return keras.Model(x, lam(dense(x))), keras.Model(x, 3.0 * dense(x))


def test_lambda_layer_error_says_how_to_register_it():
    model, _ = _lambda_model(lambda t: 3.0 * t, "triple")
    with pytest.raises(ki.UnsupportedLayerError) as error:
        ki.create_analyzer("lrp.epsilon", model)
    assert "Lambda layer 'triple'" in str(error.value)
    assert "register_reverse_rule('triple', rule)" in str(error.value)


def test_lambda_rule_by_name_and_by_function():
    def triple(t):
        return 3.0 * t

    data = _data((3, 4), 10)
    by_name, reference = _lambda_model(lambda t: 3.0 * t, "triple_by_name")
    by_function, _ = _lambda_model(triple, "triple_by_function")
    expected = _heatmap("lrp.epsilon", reference, data)
    try:
        ki.register_reverse_rule("triple_by_name", "pass")
        ki.register_reverse_rule(triple, "pass")
        for model in (by_name, by_function):
            np.testing.assert_allclose(
                _heatmap("lrp.epsilon", model, data), expected, rtol=1e-6, atol=1e-7
            )
    finally:
        registry._LAMBDA_BY_NAME.pop("triple_by_name", None)
        registry._LAMBDA_BY_FUNCTION.pop(id(triple), None)


def test_register_reverse_rule_refuses_a_layer_instance():
    with pytest.raises(TypeError, match="Pass the class"):
        ki.register_reverse_rule(keras.layers.Dense(2), "pass")


def test_a_final_ops_softmax_is_stripped_like_the_softmax_layer():
    keras.utils.set_random_seed(8)
    x = keras.Input((4,))
    dense = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(x, ops.softmax(dense(x), axis=-1))
    data = _data((5, 4), 11)
    heatmap = _heatmap("lrp.z", model, data)
    logits = data @ dense.kernel.numpy()
    np.testing.assert_allclose(heatmap.sum(axis=1), logits.max(axis=1), rtol=1e-5)
