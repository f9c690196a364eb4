"""The analyzer API: gradient family, softmax stripping, differentiability, execution modes,
error messages and the 28 iNNvestigate names.

Expected numbers come from tf.GradientTape on the plain Keras model, closed forms written
out in NumPy, or finite differences; never from keras_isnet itself.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_isnet as ki

# ----------------------------------------------------------------------------- helpers


def relu(x):
    return np.maximum(x, 0.0)


def epsilon_rule(x, W, b, R, eps=1e-7):
    """LRP-epsilon for z = x W + b: R_i = x_i sum_j w_ij R_j / (z_j + eps * s(z_j))."""
    z = x @ W + b
    return x * ((R / (z + eps * np.where(z >= 0, 1.0, -1.0))) @ W.T)


def set_random_weights(model, rng, scale=1.0):
    """Random kernels and NONZERO random biases for every layer of ``model``."""
    model.set_weights(
        [(scale * rng.normal(size=w.shape)).astype(w.dtype) for w in model.get_weights()]
    )


def mlp(rng, *, n_in=4, hidden=5, n_out=3, out_activation=None, name=None):
    """Input(4) -> Dense(5, relu) -> Dense(3) with random weights and biases."""
    inputs = keras.Input((n_in,))
    d1 = keras.layers.Dense(hidden, activation="relu")
    d2 = keras.layers.Dense(n_out, activation=out_activation)
    model = keras.Model(inputs, d2(d1(inputs)), name=name)
    set_random_weights(model, rng)
    return model, d1, d2


def small_conv_net(rng):
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(4, activation="relu")(h)
    out = keras.layers.Dense(3)(h)
    model = keras.Model(inputs, out)
    set_random_weights(model, rng, scale=0.5)
    return model


def tape_gradient(model, x, selection):
    """d y[i, selection[i]] / dx by tf.GradientTape on the Keras model itself."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt)
        out = tf.reduce_sum(y * tf.one_hot(selection, y.shape[-1], dtype=y.dtype))
    return tape.gradient(out, xt).numpy()


def explain(analyzer, x, neuron_selection=None):
    """The analysis as NumPy, computed eagerly with ``relevance`` (no tracing: fast for tiny
    models; test_analyze_equals_relevance_eager_and_compiled checks ``analyze`` agrees)."""
    out = analyzer.relevance(x, neuron_selection)
    return [np.asarray(o) for o in out] if isinstance(out, list) else np.asarray(out)


def weights_bytes(model):
    return [w.tobytes() for w in model.get_weights()]


# ------------------------------------------------------------------- 5. gradient family


def test_gradient_family_against_gradient_tape():
    rng = np.random.default_rng(0)
    model, _, _ = mlp(rng)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    sel = np.argmax(model(x), axis=1)
    grad = tape_gradient(model, x, sel)
    assert np.abs(grad).max() > 0

    np.testing.assert_allclose(explain(ki.create_analyzer("gradient", model), x), grad, rtol=1e-5)
    np.testing.assert_allclose(
        explain(ki.create_analyzer("gradient.baseline", model), x), grad, rtol=1e-5
    )
    np.testing.assert_allclose(
        explain(ki.create_analyzer("input_t_gradient", model), x), x * grad, rtol=1e-5
    )
    np.testing.assert_allclose(
        explain(ki.create_analyzer("gradient", model, postprocess="abs"), x),
        np.abs(grad),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        explain(ki.create_analyzer("gradient", model, postprocess="square"), x),
        grad**2,
        rtol=1e-5,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="postprocess"):
        ki.create_analyzer("gradient", model, postprocess="sqrt")


def test_gradient_index_mode_against_gradient_tape():
    rng = np.random.default_rng(1)
    model, _, _ = mlp(rng)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    per_sample = np.array([2, 0, 1, 1, 2, 0])
    for name in ("gradient", "gradient.baseline"):
        analyzer = ki.create_analyzer(name, model, neuron_selection_mode="index")
        np.testing.assert_allclose(
            explain(analyzer, x, per_sample), tape_gradient(model, x, per_sample), rtol=1e-5
        )
        np.testing.assert_allclose(
            explain(analyzer, x, 1), tape_gradient(model, x, np.ones(6, int)), rtol=1e-5
        )


def test_deconvnet_and_guided_backprop_closed_form():
    """y = W2^T relu(W1^T x + b1) + b2, head = the selected value y_k.
    guided: R_x = W1 (relu(W2 R) * [z1 > 0]); deconvnet: R_x = W1 relu(W2 R)."""
    rng = np.random.default_rng(2)
    model, d1, d2 = mlp(rng)
    W1, b1 = (w.astype(np.float64) for w in d1.get_weights())
    W2, b2 = (w.astype(np.float64) for w in d2.get_weights())
    x = rng.normal(size=(6, 4)).astype(np.float32)
    z1 = x.astype(np.float64) @ W1 + b1
    y = relu(z1) @ W2 + b2
    R = np.eye(3)[np.argmax(y, axis=1)] * y
    g = R @ W2.T
    guided = (relu(g) * (z1 > 0)) @ W1.T
    deconv = relu(g) @ W1.T
    np.testing.assert_allclose(
        explain(ki.create_analyzer("guided_backprop", model), x), guided, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        explain(ki.create_analyzer("deconvnet", model), x), deconv, rtol=1e-5, atol=1e-6
    )


def test_integrated_gradients_linear_model_is_exact():
    rng = np.random.default_rng(3)
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(inputs))
    set_random_weights(model, rng)
    W = dense.get_weights()[0].astype(np.float64)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    sel = np.argmax(model(x), axis=1)
    expected = x * W[:, sel].T
    got = explain(ki.create_analyzer("integrated_gradients", model), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    got = explain(ki.create_analyzer("integrated_gradients", model, reference_inputs=0.5), x)
    np.testing.assert_allclose(got, (x - 0.5) * W[:, sel].T, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_relu_net_riemann_sum_and_completeness():
    rng = np.random.default_rng(4)
    model, _, _ = mlp(rng)
    x = rng.normal(size=(4, 4)).astype(np.float32)
    sel = np.argmax(model(x), axis=1)

    # left Riemann sum written out: (x - 0) * mean_k grad(k / steps * x), k = 0..steps-1
    steps = 16
    grads = [tape_gradient(model, (k / steps * x).astype(np.float32), sel) for k in range(steps)]
    expected = x * np.mean(grads, axis=0)
    got = explain(ki.create_analyzer("integrated_gradients", model, steps=steps), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    # completeness: sum IG ~ f(x)_k - f(0)_k for many steps
    ig = explain(ki.create_analyzer("integrated_gradients", model, steps=512), x)
    y = np.asarray(model(x), np.float64)
    y0 = np.asarray(model(np.zeros_like(x)), np.float64)
    rows = np.arange(len(x))
    delta = y[rows, sel] - y0[rows, sel]
    np.testing.assert_allclose(ig.reshape(len(x), -1).sum(axis=1), delta, rtol=2e-2, atol=2e-2)


def test_smoothgrad_with_tiny_noise_is_the_gradient():
    rng = np.random.default_rng(5)
    model, _, _ = mlp(rng)
    x = rng.normal(size=(4, 4)).astype(np.float32)
    grad = tape_gradient(model, x, np.argmax(model(x), axis=1))
    analyzer = ki.create_analyzer("smoothgrad", model, noise_scale=1e-6, augment_by_n=4, seed=0)
    got = explain(analyzer, x)
    np.testing.assert_allclose(got, grad, rtol=1e-4, atol=1e-6)


# -------------------------------------------------------------------- 6. softmax strip


@pytest.mark.parametrize("head", ["dense_softmax", "softmax_layer", "activation_layer", "sigmoid"])
def test_final_softmax_is_stripped(head):
    """Dense(softmax), Softmax(), Activation("softmax"), Dense(sigmoid) heads explain the
    logits: the same heatmaps as the model without the squashing function."""
    rng = np.random.default_rng(6)
    plain, d1, d2 = mlp(rng)
    inputs = keras.Input((4,))
    e1 = keras.layers.Dense(5, activation="relu")
    if head in ("dense_softmax", "sigmoid"):
        e2 = keras.layers.Dense(3, activation="softmax" if head == "dense_softmax" else "sigmoid")
        out = e2(e1(inputs))
    else:
        e2 = keras.layers.Dense(3)
        squash = (
            keras.layers.Softmax()
            if head == "softmax_layer"
            else keras.layers.Activation("softmax")
        )
        out = squash(e2(e1(inputs)))
    model = keras.Model(inputs, out)
    e1.set_weights(d1.get_weights())
    e2.set_weights(d2.get_weights())
    x = rng.normal(size=(6, 4)).astype(np.float32)

    for name in ("lrp.epsilon", "gradient", "guided_backprop"):
        reference = explain(ki.create_analyzer(name, plain), x)
        np.testing.assert_allclose(
            explain(ki.create_analyzer(name, model), x), reference, rtol=1e-6, err_msg=name
        )
        unstripped = explain(ki.create_analyzer(name, model, strip_softmax=False), x)
        assert not np.allclose(unstripped, reference, rtol=1e-3), name


# ------------------------------------------------ 7. differentiable w.r.t. the weights


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx("float32")


@pytest.mark.parametrize(
    "name, kwargs",
    [("lrp.epsilon", {"epsilon": 1e-2}), ("lrp.z", {}), ("lrp.alpha_2_beta_1", {})],
)
def test_relevance_weight_gradient_matches_finite_differences(float64, name, kwargs):
    rng = np.random.default_rng(7)
    inputs = keras.Input((3,), dtype="float64")
    d1 = keras.layers.Dense(4, activation="relu", dtype="float64")
    d2 = keras.layers.Dense(2, dtype="float64")
    model = keras.Model(inputs, d2(d1(inputs)))
    set_random_weights(model, rng)
    x = tf.constant(rng.normal(size=(5, 3)))
    # no pre-activation near a ReLU kink, no near-tie in the max-activation choice
    z1 = x.numpy() @ d1.get_weights()[0] + d1.get_weights()[1]
    assert np.abs(z1).min() > 1e-3
    y = np.sort(np.asarray(model(x)), axis=1)
    assert np.all(y[:, -1] - y[:, -2] > 1e-3)
    mix = tf.constant(rng.normal(size=(5, 3)))
    analyzer = ki.create_analyzer(name, model, **kwargs)
    variables = model.trainable_variables

    def objective():
        return tf.reduce_sum(analyzer.relevance(x) * mix)

    with tf.GradientTape() as tape:
        loss = objective()
    grads = tape.gradient(loss, variables)
    assert all(g is not None for g in grads)

    @tf.function
    def compiled_gradient():
        with tf.GradientTape() as t:
            value = objective()
        return t.gradient(value, variables)

    compiled = compiled_gradient()
    value = tf.function(objective)  # the forward value only, traced once for speed
    h = 1e-6
    for var, g, gc in zip(variables, grads, compiled, strict=True):
        assert g.dtype == tf.float64
        base = var.numpy()
        fd = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            for sign in (1, -1):
                shifted = base.copy()
                shifted[idx] += sign * h
                var.assign(shifted)
                fd[idx] += sign * float(value())
            var.assign(base)
        fd /= 2 * h
        np.testing.assert_allclose(g.numpy(), fd, rtol=1e-5, atol=1e-8, err_msg=var.path)
        np.testing.assert_allclose(gc.numpy(), g.numpy(), rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------- 8. eager vs compiled

EXECUTION_CASES = [
    ("lrp.epsilon", {}),
    ("lrp.alpha_2_beta_1", {}),
    ("gradient", {}),
    ("integrated_gradients", {"steps": 8}),
]


@pytest.mark.parametrize("name, kwargs", EXECUTION_CASES)
def test_analyze_equals_relevance_eager_and_compiled(name, kwargs):
    rng = np.random.default_rng(8)
    model = small_conv_net(rng)
    x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    x_copy = x.copy()
    before = weights_bytes(model)
    analyzer = ki.create_analyzer(name, model, **kwargs)

    full = analyzer.analyze(x)
    assert full.dtype == np.float32 and full.shape == x.shape
    assert np.abs(full).max() > 0
    eager = analyzer.relevance(x).numpy()
    compiled = tf.function(lambda v: analyzer.relevance(v))(tf.constant(x)).numpy()
    np.testing.assert_allclose(eager, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(analyzer.analyze(x), full)  # repeated: identical
    np.testing.assert_array_equal(analyzer.relevance(x).numpy(), eager)
    # one sample at a time (eagerly) gives the same rows
    rows = [analyzer.relevance(x[i : i + 1]).numpy() for i in range(len(x))]
    # (alpha-beta's float32 round-off reaches ~1e-5 of the largest value)
    np.testing.assert_allclose(
        np.concatenate(rows), full, rtol=1e-5, atol=2e-5 * np.abs(full).max()
    )
    # a fresh analyzer on the same model gives the same numbers
    np.testing.assert_array_equal(ki.create_analyzer(name, model, **kwargs).analyze(x), full)
    assert weights_bytes(model) == before
    np.testing.assert_array_equal(x, x_copy)  # the input is not modified either


def test_analyze_batch_size_equals_all_at_once():
    rng = np.random.default_rng(9)
    model = small_conv_net(rng)
    x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    for name, kwargs in EXECUTION_CASES:
        analyzer = ki.create_analyzer(name, model, **kwargs)
        full = analyzer.relevance(x).numpy()
        np.testing.assert_allclose(analyzer.analyze(x, batch_size=3), full, rtol=1e-5, atol=1e-6)
    sel = np.array([0, 1, 2, 2, 1, 0, 1, 2])
    analyzer = ki.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    np.testing.assert_allclose(
        analyzer.analyze(x, sel, batch_size=3),
        analyzer.relevance(x, sel).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_analyze_twice_with_different_batch_sizes():
    rng = np.random.default_rng(9)
    model = small_conv_net(rng)
    x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    analyzer = ki.create_analyzer("gradient", model)
    full = analyzer.analyze(x)
    np.testing.assert_allclose(analyzer.analyze(x[:5]), full[:5], rtol=1e-5, atol=1e-6)


def test_relevance_in_tf_function_with_unknown_batch_dimension():
    """What a training step traced for any batch size (the ISNet) needs."""
    rng = np.random.default_rng(9)
    model = small_conv_net(rng)
    x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    spec = tf.TensorSpec((None, 6, 6, 2), tf.float32)
    compiled = tf.function(analyzer.relevance, input_signature=[spec])
    np.testing.assert_allclose(
        compiled(x).numpy(), analyzer.relevance(x).numpy(), rtol=1e-5, atol=1e-6
    )


def test_index_mode_per_sample_selection_eager_and_compiled():
    rng = np.random.default_rng(9)
    model = small_conv_net(rng)
    x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    sel = np.array([0, 1, 2, 2, 1, 0, 1, 2])
    analyzer = ki.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    full = analyzer.analyze(x, sel)
    rows = [analyzer.relevance(x[i : i + 1], int(sel[i])).numpy() for i in range(8)]
    np.testing.assert_allclose(np.concatenate(rows), full, rtol=1e-5, atol=1e-6)
    compiled = tf.function(lambda v, s: analyzer.relevance(v, s))
    np.testing.assert_allclose(
        compiled(tf.constant(x), tf.constant(sel)).numpy(), full, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(analyzer.relevance(x, sel).numpy(), full, rtol=1e-5, atol=1e-6)


def test_multi_input_analyze_and_relevance():
    rng = np.random.default_rng(10)
    a, b = keras.Input((2,)), keras.Input((3,))
    h = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], keras.layers.Dense(3)(h))
    set_random_weights(model, rng)
    xa = rng.normal(size=(7, 2)).astype(np.float32)
    xb = rng.normal(size=(7, 3)).astype(np.float32)
    before = weights_bytes(model)
    analyzer = ki.create_analyzer("lrp.z", model)
    full = analyzer.analyze([xa, xb])
    assert isinstance(full, list) and [r.shape for r in full] == [xa.shape, xb.shape]
    eager = analyzer.relevance([xa, xb])
    compiled = tf.function(lambda u, v: analyzer.relevance([u, v]))(xa, xb)
    for f, e, c in zip(full, eager, compiled, strict=True):
        np.testing.assert_allclose(e.numpy(), f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c.numpy(), f, rtol=1e-5, atol=1e-6)
    assert weights_bytes(model) == before


# -------------------------------------------------------------------- 9. bad input


@pytest.fixture
def small_model():
    model, _, _ = mlp(np.random.default_rng(11), name="small")
    return model


def test_wrong_input_shape_names_both_shapes(small_model):
    analyzer = ki.create_analyzer("lrp.epsilon", small_model)
    with pytest.raises(ValueError) as err:
        analyzer.analyze(np.zeros((2, 5), "float32"))
    assert "(None, 4)" in str(err.value) and "(2, 5)" in str(err.value)
    with pytest.raises(ValueError) as err:
        analyzer.analyze(np.zeros((2, 4, 1), "float32"))
    assert "(None, 4)" in str(err.value) and "(2, 4, 1)" in str(err.value)


def test_wrong_number_of_inputs(small_model):
    x = np.zeros((2, 4), "float32")
    analyzer = ki.create_analyzer("lrp.epsilon", small_model)
    with pytest.raises(ValueError, match="1 inputs but 2 arrays"):
        analyzer.analyze([x, x])
    with pytest.raises(ValueError, match="1 inputs but 2 arrays"):
        analyzer.relevance([x, x])
    a, b = keras.Input((2,)), keras.Input((3,))
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="2 inputs but 1 arrays"):
        ki.create_analyzer("gradient", two).analyze(np.zeros((2, 2), "float32"))


def test_nan_and_inf_inputs_are_rejected(small_model):
    analyzers = [
        ki.create_analyzer(name, small_model)
        for name in ("lrp.epsilon", "gradient", "integrated_gradients")
    ]
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((3, 4), "float32")
        x[1, 2] = bad
        for analyzer in analyzers:
            with pytest.raises(ValueError, match="NaN or infinite.*sample 1"):
                analyzer.analyze(x)
    a, b = keras.Input((2,)), keras.Input((3,))
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    xb = np.ones((2, 3), "float32")
    xb[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input 1 contains NaN"):
        ki.create_analyzer("lrp.z", two).analyze([np.ones((2, 2), "float32"), xb])


def test_unknown_analyzer_name_lists_valid_names(small_model):
    with pytest.raises(KeyError) as err:
        ki.create_analyzer("lrp.epsilonn", small_model)
    message = err.value.args[0]
    assert "lrp.epsilonn" in message
    for name in ki.ANALYZERS:
        assert name in message


def test_unsupported_layer_error_and_register_reverse_rule():
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    rng = np.random.default_rng(12)
    inputs = keras.Input((3,))
    d1, d2 = keras.layers.Dense(4), keras.layers.Dense(2)
    model = keras.Model(inputs, d2(Doubler(name="my_doubler")(d1(inputs))))
    set_random_weights(model, rng)
    x = rng.normal(size=(5, 3)).astype(np.float32)

    # gradient analyzers need no rule: every layer has a gradient
    sel = np.argmax(model(x), axis=1)
    np.testing.assert_allclose(
        explain(ki.create_analyzer("gradient", model), x), tape_gradient(model, x, sel), rtol=1e-5
    )

    with pytest.raises(ki.UnsupportedLayerError) as err:
        ki.create_analyzer("lrp.epsilon", model)
    message = str(err.value)
    assert "my_doubler" in message and "Doubler" in message
    assert "register_reverse_rule" in message
    assert isinstance(err.value, TypeError)

    ki.register_reverse_rule(Doubler, "pass")
    got = explain(ki.create_analyzer("lrp.epsilon", model), x)
    W1, b1 = (w.astype(np.float64) for w in d1.get_weights())
    W2, b2 = (w.astype(np.float64) for w in d2.get_weights())
    h = x.astype(np.float64) @ W1 + b1
    y = (2 * h) @ W2 + b2
    R = np.eye(2)[np.argmax(y, axis=1)] * y
    expected = epsilon_rule(x.astype(np.float64), W1, b1, epsilon_rule(2 * h, W2, b2, R))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_register_reverse_rule_rejects_bad_arguments():
    with pytest.raises(TypeError, match="layer class"):
        ki.register_reverse_rule(keras.layers.Dense(2), "pass")
    with pytest.raises(ValueError, match="valid names"):
        ki.register_reverse_rule(keras.layers.Layer, "passthrough")


def test_subclassed_model_error_suggests_functional_api():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    assert net.built
    with pytest.raises((TypeError, ValueError)) as err:
        ki.create_analyzer("lrp.epsilon", net)
    assert "subclassed" in str(err.value) and "functional" in str(err.value)


def test_sequential_without_input_shape_is_rejected():
    with pytest.raises((TypeError, ValueError), match="keras.Input"):
        ki.create_analyzer("lrp.epsilon", keras.Sequential([keras.layers.Dense(3)]))


def test_multi_output_model_output_index():
    rng = np.random.default_rng(13)
    inputs = keras.Input((4,))
    d1 = keras.layers.Dense(5, activation="relu")
    main, aux = keras.layers.Dense(3, name="main"), keras.layers.Dense(2, name="aux")
    h = d1(inputs)
    model = keras.Model(inputs, [main(h), aux(h)])
    set_random_weights(model, rng)
    x = rng.normal(size=(5, 4)).astype(np.float32)

    with pytest.raises(ValueError, match="output_index"):
        ki.create_analyzer("lrp.epsilon", model)
    with pytest.raises(ValueError, match="out of range"):
        ki.create_analyzer("lrp.epsilon", model, output_index=2)
    with pytest.raises(ValueError, match="names no output"):
        ki.create_analyzer("lrp.epsilon", model, output_index="nope")

    W1, b1 = (w.astype(np.float64) for w in d1.get_weights())
    hidden = relu(x.astype(np.float64) @ W1 + b1)
    for layer, selectors in ((main, (0, "main", -2)), (aux, (1, "aux", -1))):
        W, b = (w.astype(np.float64) for w in layer.get_weights())
        y = hidden @ W + b
        R = np.eye(y.shape[1])[np.argmax(y, axis=1)] * y
        expected = epsilon_rule(x.astype(np.float64), W1, b1, epsilon_rule(hidden, W, b, R))
        for output_index in selectors:
            got = explain(ki.create_analyzer("lrp.epsilon", model, output_index=output_index), x)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=output_index)


SELECTION_ERRORS = {
    "index_too_large": (3, "out of range"),
    "index_too_negative": (-4, "out of range"),
    "per_sample_out_of_range": (np.array([0, 1, 5]), "out of range"),
    "per_sample_wrong_length": (np.array([0, 1]), r"shape \(2,\)"),
    "tuple_wrong_length": ((0, 1), "tuple"),
    "tuple_out_of_range": ((3,), "out of range"),
    "weights_wrong_shape": (np.ones(4, "float32"), "weights have shape"),
    "missing": (None, "needs neuron_selection"),
    "string": ("cat", "integers or float"),
}


def expect_errors(cases, call, error=ValueError):
    """Run ``call(case_value)`` for every case; collect those that do not raise ``error``
    with a message matching the case's pattern (all cases are checked, all are reported)."""
    failures = []
    for case, (value, pattern) in cases.items():
        try:
            call(value)
        except error as e:
            if not re.search(pattern, str(e)):
                failures.append(f"{case}: wrong message {e}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"{case}: {type(e).__name__} {e}")
        else:
            failures.append(f"{case}: no error")
    assert not failures, "\n".join(failures)


def test_bad_neuron_selection(small_model):
    x = np.ones((3, 4), "float32")
    analyzer = ki.create_analyzer("lrp.epsilon", small_model, neuron_selection_mode="index")
    expect_errors(SELECTION_ERRORS, lambda selection: analyzer.analyze(x, selection))
    expect_errors(SELECTION_ERRORS, lambda selection: analyzer.relevance(x, selection))


def test_valid_neuron_selection_forms_agree(small_model):
    x = np.random.default_rng(14).normal(size=(3, 4)).astype(np.float32)
    analyzer = ki.create_analyzer("lrp.epsilon", small_model, neuron_selection_mode="index")
    reference = analyzer.analyze(x, np.array([2, 2, 2]))
    weights = np.array([0.0, 0.0, 1.0], "float32")
    for selection in (2, -1, (2,), [2, 2, 2], weights, np.tile(weights, (3, 1))):
        np.testing.assert_allclose(
            analyzer.analyze(x, selection), reference, rtol=1e-6, err_msg=str(selection)
        )


def test_selection_mode_errors(small_model):
    x = np.ones((3, 4), "float32")
    analyzer = ki.create_analyzer("lrp.epsilon", small_model)  # max_activation
    with pytest.raises(ValueError, match="neuron_selection_mode"):
        analyzer.analyze(x, 1)
    with pytest.raises(ValueError, match="neuron_selection_mode"):
        analyzer.relevance(x, 1)
    with pytest.raises(ValueError, match="valid modes"):
        ki.create_analyzer("lrp.epsilon", small_model, neuron_selection_mode="argmax")


def embedding_model(rng):
    inputs = keras.Input((5,), dtype="int32")
    emb = keras.layers.Embedding(10, 3)
    dense = keras.layers.Dense(4)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(emb(inputs))))
    set_random_weights(model, rng)
    x = rng.integers(0, 10, size=(6, 5)).astype("int32")
    return model, emb, dense, x


def test_gradient_analyzers_reject_embedding_inputs():
    model, _, _, _ = embedding_model(np.random.default_rng(15))
    names = [
        "gradient",
        "gradient.baseline",
        "input_t_gradient",
        "deconvnet",
        "guided_backprop",
        "integrated_gradients",
        "smoothgrad",
    ]
    cases = {name: (name, "dtype") for name in names}
    expect_errors(cases, lambda name: ki.create_analyzer(name, model), error=TypeError)


def test_lrp_on_embedding_model_gives_token_relevance():
    rng = np.random.default_rng(16)
    model, emb, dense, x = embedding_model(rng)
    got = ki.create_analyzer("lrp.z", model, bias=False).analyze(x)
    assert got.shape == x.shape
    y = np.asarray(model(x), np.float64)
    sel = np.argmax(y, axis=1)
    explained = y[np.arange(len(x)), sel]
    np.testing.assert_allclose(got.sum(axis=1), explained, rtol=1e-4, atol=1e-5)
    # closed form: R_t = sum_e E[x_t, e] W[(t, e), k] * y_k / (z_k - b_k)
    E = emb.get_weights()[0].astype(np.float64)
    W, b = (w.astype(np.float64) for w in dense.get_weights())
    flat = E[x].reshape(len(x), -1)
    contributions = flat * W[:, sel].T
    expected = contributions * (explained / (y[np.arange(len(x)), sel] - b[sel]))[:, None]
    expected = expected.reshape(len(x), 5, 3).sum(axis=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- 10. the 28 analyzers

# iNNvestigate 2.x's analyzer dict (src/innvestigate/analyzer/__init__.py), all 28 names
INNVESTIGATE_NAMES = {
    "input",
    "random",
    "gradient",
    "gradient.baseline",
    "input_t_gradient",
    "deconvnet",
    "guided_backprop",
    "integrated_gradients",
    "smoothgrad",
    "lrp",
    "lrp.z",
    "lrp.epsilon",
    "lrp.w_square",
    "lrp.flat",
    "lrp.alpha_beta",
    "lrp.alpha_2_beta_1",
    "lrp.alpha_2_beta_1_IB",
    "lrp.alpha_1_beta_0",
    "lrp.alpha_1_beta_0_IB",
    "lrp.z_plus",
    "lrp.z_plus_fast",
    "lrp.sequential_preset_a",
    "lrp.sequential_preset_b",
    "lrp.sequential_preset_a_flat",
    "lrp.sequential_preset_b_flat",
    "lrp.sequential_preset_b_flat_until_idx",
    "deep_taylor",
    "deep_taylor.bounded",
}

EXTRA_KWARGS = {
    "deep_taylor.bounded": {"low": -3.0, "high": 3.0},
    "lrp.epsilon_gamma_box": {"low": -3.0, "high": 3.0},
    "lrp.sequential_preset_b_flat_until_idx": {"until_layer_idx": 1},
    "lrp": {"rule": "Epsilon"},
    "lrp.alpha_beta": {"alpha": 2},
}


def test_all_28_innvestigate_analyzers_are_registered():
    """iNNvestigate's 28 names, each mapped to an Analyzer class of that name. (ANALYZERS also
    holds zennit-style composites such as "lrp.epsilon_plus", beyond iNNvestigate.)"""
    assert len(INNVESTIGATE_NAMES) == 28
    assert INNVESTIGATE_NAMES <= set(ki.ANALYZERS)
    for name, cls in ki.ANALYZERS.items():
        assert issubclass(cls, ki.Analyzer) and cls.name == name


def test_every_analyzer_runs_on_a_conv_net():
    rng = np.random.default_rng(17)
    model = small_conv_net(rng)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    before = weights_bytes(model)
    for name in ki.ANALYZERS:
        analyzer = ki.create_analyzer(name, model, **EXTRA_KWARGS.get(name, {}))
        assert isinstance(analyzer, ki.Analyzer)
        result = analyzer.analyze(x)
        assert isinstance(result, np.ndarray), name
        assert result.shape == x.shape, name
        assert np.isfinite(result).all(), name
        if name != "input":
            assert np.abs(result).max() > 0, name
    np.testing.assert_array_equal(ki.create_analyzer("input", model).analyze(x), x)
    noisy = ki.create_analyzer("random", model, seed=0).analyze(x)
    assert 0.5 < np.std(noisy - x) < 2.0
    assert weights_bytes(model) == before


def test_analyzers_with_required_arguments(small_model):
    cases = {
        "deep_taylor.bounded": (("deep_taylor.bounded", {}), "low"),
        "until_idx": (("lrp.sequential_preset_b_flat_until_idx", {}), "until_layer_idx"),
        "lrp": (("lrp", {}), "rule"),
        "alpha_beta": (("lrp.alpha_beta", {"alpha": 3, "beta": 1}), "alpha - beta = 1"),
        "alpha_beta_none": (("lrp.alpha_beta", {}), "alpha or beta"),
    }
    expect_errors(cases, lambda args: ki.create_analyzer(args[0], small_model, **args[1]))
