"""ISNet training of classifiers with BatchNormalization (method page, section 3).

BatchNorm is folded into its neighbouring Dense/convolution layer. In training mode the fold
uses the batch statistics of the BN input (no gradient through them inside the heatmap;
gamma keeps its gradient) and the moving statistics are updated as Keras does; at inference
the moving statistics are used, as by the LRP analyzers. Each check has an independent
reference: the plain Keras model (``model(x, training=...)``), ``ki.create_analyzer`` on a
copy whose moving statistics are set to the batch statistics, or plain Keras gradients.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from isnet_reference import assert_class_maps_equal, lrp_analyzer

import keras_isnet as ki


def bn_model(seed=0, momentum=0.8):
    """Conv -> BN -> ReLU -> MaxPool -> Flatten -> BN -> Dense+ReLU -> Dense(3).

    The first BN folds into the convolution before it, the second into the Dense after it.
    """
    init = keras.initializers.GlorotUniform
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=init(seed), name="conv")(inp)
    h = keras.layers.BatchNormalization(momentum=momentum, name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.BatchNormalization(momentum=momentum, name="bn2")(h)
    h = keras.layers.Dense(5, activation="relu", kernel_initializer=init(seed + 1), name="d1")(h)
    out = keras.layers.Dense(3, kernel_initializer=init(seed + 2), name="head")(h)
    model = keras.Model(inp, out, name="bn_net")
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial BN parameters and statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    return model


def clone(model):
    copy = bn_model()
    copy.set_weights(model.get_weights())
    return copy


def toy_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=n)
    m = np.zeros((n, 8, 8), "float32")
    m[:, 2:6, 2:6] = 1
    return x, y, m


def bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def statistics(model):
    return [
        (np.array(layer.moving_mean.numpy()), np.array(layer.moving_variance.numpy()))
        for layer in bn_layers(model)
    ]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("variant", ["selective", "original", "dual", "gradient_x_input"])
def test_logits_equal_the_keras_model(training, variant):
    model = bn_model()
    ref = clone(model)
    x, y, _ = toy_data()
    engine = ki.ISNet(model, variant=variant).heatmaps
    logits, maps = engine.logits_and_heatmaps(tf.constant(x), y, variant=variant, training=training)
    expected = np.asarray(ref(x, training=training))
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(np.asarray(maps)))
    # one forward replay: the moving statistics move exactly as in one Keras training call
    for (a, b), (c, d) in zip(statistics(model), statistics(ref), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, d, rtol=1e-6, atol=1e-7)


def test_inference_heatmaps_equal_the_lrp_analyzer():
    """training=False (evaluate): the folds use the moving statistics, as the analyzers."""
    model = bn_model()
    x, y, _ = toy_data(n=6)
    engine = ki.ISNet(model, variant="original").heatmaps
    _, maps = engine.logits_and_heatmaps(tf.constant(x), y, variant="original", training=False)
    maps = np.asarray(maps)
    analyzer = lrp_analyzer(model)
    assert analyzer.fold_plan.describe() == [("bn1", "conv", "after"), ("bn2", "d1", "before")]
    assert_class_maps_equal(maps, analyzer, x)


def test_training_heatmaps_use_the_batch_statistics():
    """training=True: the heatmap is close to the LRP analyzer's heatmap of a copy whose
    moving statistics are the batch statistics of each BN input, and closer to it than the
    moving-statistics heatmap (the statistics matter).

    Not equal: as the official ISNet (``FuseBN``), the fold uses the unbiased batch variance
    (``N - 1``) while the layer outputs keep Keras' (biased) training normalisation, which no
    analyzer copy reproduces; the exact numbers are checked against the official code's
    training-mode arrays in ``test_official_reference.py`` (``cnn_bn_train``,
    ``resnet_train``)."""
    model = bn_model()
    ref = clone(model)
    x, y, _ = toy_data(n=6)
    engine = ki.ISNet(model, variant="original").heatmaps
    _, maps = engine.logits_and_heatmaps(tf.constant(x), y, variant="original", training=True)
    maps = np.asarray(maps)
    probe = keras.Model(ref.inputs[0], [layer.input for layer in bn_layers(ref)])
    inputs = probe(x, training=True)
    for layer, h in zip(bn_layers(ref), inputs, strict=True):
        h = np.asarray(h)
        axes = tuple(range(h.ndim - 1))
        layer.moving_mean.assign(h.mean(axis=axes))
        layer.moving_variance.assign(h.var(axis=axes))
    analyzer = lrp_analyzer(ref)
    expected = np.stack([analyzer.analyze(x, neuron_selection=k) for k in range(3)], axis=1)
    _, inference = engine.logits_and_heatmaps(tf.constant(x), y, variant="original", training=False)
    scale = float(np.abs(expected).max())
    near = float(np.abs(maps - expected).max()) / scale
    far = float(np.abs(np.asarray(inference) - expected).max()) / scale
    assert far > 2 * near, (near, far)


def test_classification_gradient_is_the_keras_gradient():
    """The logits keep the gradient of plain Keras training (through the batch statistics):
    the cross-entropy gradient equals the one of ``model(x, training=True)``."""
    model = bn_model()
    ref = clone(model)
    x, y, m = toy_data()
    isnet = ki.ISNet(model, variant="selective")
    with tf.GradientTape() as tape:
        _, ce, _, _, _ = isnet._isnet_losses(
            tf.constant(x), tf.constant(y), tf.constant(m), training=True
        )
    grads = tape.gradient(ce, model.trainable_variables)
    with tf.GradientTape() as tape:
        logits = ref(x, training=True)
        ce_ref = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
    expected = tape.gradient(ce_ref, ref.trainable_variables)
    np.testing.assert_allclose(float(ce), float(ce_ref), rtol=1e-6)
    # (the conv bias before the BN has gradient 0 up to round-off: a global atol)
    scale = max(np.abs(np.asarray(e)).max() for e in expected)
    for g, e, v in zip(grads, expected, model.trainable_variables, strict=True):
        np.testing.assert_allclose(
            np.asarray(g), np.asarray(e), rtol=1e-4, atol=1e-5 * scale, err_msg=v.path
        )


def test_heatmap_gradient_reaches_gamma_and_the_kernels():
    model = bn_model()
    x, y, m = toy_data()
    isnet = ki.ISNet(model, variant="selective", P=1.0)
    with tf.GradientTape() as tape:
        total, _, heat, _, _ = isnet._isnet_losses(
            tf.constant(x), tf.constant(y), tf.constant(m), training=True
        )
    grads = dict(
        zip(
            [v.path for v in model.trainable_variables],
            tape.gradient(heat, model.trainable_variables),
            strict=True,
        )
    )
    for path in ("conv/kernel", "bn1/gamma", "bn2/gamma", "d1/kernel", "head/kernel"):
        g = grads[path]
        assert g is not None and np.abs(np.asarray(g)).max() > 0, path
        assert np.all(np.isfinite(np.asarray(g))), path


def test_moving_statistics_follow_keras_training():
    """Three ISNet training steps (learning rate 0: the weights stay) move the moving
    statistics exactly as three plain ``model(batch, training=True)`` calls."""
    model = bn_model()
    ref = clone(model)
    x, y, m = toy_data(n=12, seed=3)
    isnet = ki.ISNet(model, variant="selective")
    isnet.compile(optimizer=keras.optimizers.SGD(0.0))
    before = statistics(model)
    isnet.fit(x, y, sample_weight=m, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for i in range(3):
        ref(x[4 * i : 4 * (i + 1)], training=True)
    for (a, b), (c, d), (e, _) in zip(statistics(model), statistics(ref), before, strict=True):
        assert np.abs(a - e).max() > 1e-3  # they moved
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, d, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["selective", "original", "stochastic"])
def test_fit_then_inference(variant):
    """A short fit without NaN; afterwards predict / evaluate use the moving statistics."""
    model = bn_model()
    x, y, m = toy_data(n=16, seed=5)
    isnet = ki.ISNet(model, variant=variant, seed=0)
    isnet.compile(optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, clipnorm=1.0))
    history = isnet.fit(x, y, sample_weight=m, batch_size=8, epochs=2, verbose=0)
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), name
    assert all(np.all(np.isfinite(v)) for v in model.get_weights())
    np.testing.assert_allclose(
        isnet.predict(x, verbose=0), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6
    )
    logits = isnet.heatmaps.logits(tf.constant(x), training=False)
    np.testing.assert_allclose(
        np.asarray(logits), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-5
    )
    results = isnet.evaluate(x, y, sample_weight=m, verbose=0, return_dict=True)
    assert np.isfinite(results["loss"])


def test_frozen_batch_norm_uses_the_moving_statistics_in_training():
    """A non-trainable BN runs with its moving statistics in Keras training mode; so does its
    fold, and its statistics do not move."""
    model = bn_model()
    for layer in bn_layers(model):
        layer.trainable = False
    ref = clone(model)
    for layer in bn_layers(ref):
        layer.trainable = False
    x, y, _ = toy_data()
    before = statistics(model)
    engine = ki.ISNet(model, variant="selective").heatmaps
    logits, _ = engine.logits_and_heatmaps(tf.constant(x), y, training=True)
    np.testing.assert_allclose(
        np.asarray(logits), np.asarray(ref(x, training=True)), rtol=1e-5, atol=1e-5
    )
    for (a, b), (c, d) in zip(statistics(model), before, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_renorm_is_rejected():
    inp = keras.Input((4,))
    h = keras.layers.Dense(3)(inp)
    h = keras.layers.BatchNormalization(renorm=True)(h)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(NotImplementedError, match="renorm"):
        ki.ISNet(model)


# ------------------------------------------------------------------------------------------
# Weight gradient against central finite differences (float64, inference-mode folds)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def float64():
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(old)


@pytest.mark.parametrize("variant", ["selective", "original"])
def test_weight_gradient_matches_finite_differences(float64, variant):
    """With the moving statistics (training=False) the BN folds are constants of the
    weights: the gradient of the ISNet loss (P = 0.7) with respect to the kernels whose
    folded bias does not depend on them (the convolution before bn1, the head) equals
    central finite differences (h = 1e-6). (A kernel after a BN gets the folded bias
    ``W t + b``, a constant of the rules, so there the gradient is by design not the
    derivative; the same holds for gamma, which also enters the folded bias.)"""
    model = bn_model(seed=2)
    assert all(v.dtype == "float64" for v in model.weights)
    x, y, m = toy_data(n=4, seed=1)
    x, m = x.astype("float64"), m.astype("float64")
    xt, yt, mt = tf.constant(x), tf.constant(y), tf.constant(m)
    isnet = ki.ISNet(model, variant=variant, P=0.7)

    def loss():
        return float(isnet._isnet_losses(xt, yt, mt, training=False)[0])

    variables = [model.get_layer("conv").kernel, model.get_layer("head").kernel]
    with tf.GradientTape() as tape:
        total = isnet._isnet_losses(xt, yt, mt, training=False)[0]
    grads = tape.gradient(total, variables)
    h = 1e-6
    rng = np.random.default_rng(0)
    for var, g in zip(variables, grads, strict=True):
        w0 = var.numpy()
        direction = rng.normal(size=var.shape)
        direction /= np.linalg.norm(direction)
        var.assign(w0 + h * direction)
        plus = loss()
        var.assign(w0 - h * direction)
        minus = loss()
        var.assign(w0)
        fd = (plus - minus) / (2 * h)
        analytic = float(np.sum(np.asarray(g) * direction))
        np.testing.assert_allclose(analytic, fd, rtol=1e-4, atol=1e-8, err_msg=var.path)
