"""Tests of ``ki.ISNet``: gradients, heatmaps, bad input, data forms and serialization.

Every number is checked against an independent reference: central finite differences in
float64 for the weight gradients, ``ki.create_analyzer`` heatmaps or a NumPy transcription of
the method page (``shared/design/isnet-method.md``, sections 3 and 4) for the heatmaps, and
the plain classifier for predictions. Training behaviour (P schedules, background bias,
checkpoints, tf.distribute) is in ``tests/test_isnet_training.py``.
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from isnet_reference import EPS, assert_class_maps_equal, lrp_analyzer

import keras_isnet as ki
from keras_isnet.isnet.model import _masks_of_known_rank

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def conv_model(softmax=False, filters=3, seed=0):
    """8x8x1 -> Conv2D(filters)+ReLU -> MaxPool -> Flatten -> Dense(3)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", kernel_initializer=init
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(
                3,
                activation="softmax" if softmax else None,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1),
            ),
        ],
        name="tiny",
    )


def randomize_biases(model, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            b = layer.bias
            b.assign(rng.normal(scale=scale, size=b.shape).astype(b.dtype))


def toy_data(n=8, seed=0, size=8):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, size, size, 1)).astype(keras.config.floatx())
    y = rng.integers(0, 3, size=n)
    m = np.zeros((n, size, size), dtype=keras.config.floatx())
    lo, hi = size // 4, size - size // 4
    m[:, lo:hi, lo:hi] = 1
    return x, y, m


def weights_of(model):
    return [np.array(v.numpy()) for v in model.weights]


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def training_heatmaps(isnet, x, y, m):
    """The heatmaps the training loss is computed from, ``(batch, maps, H, W, C)``."""
    out = isnet._isnet_losses(
        tf.constant(x), tf.constant(y), tf.constant(m, dtype=x.dtype), training=False
    )
    return np.asarray(out[4])


# ------------------------------------------------------------------------------------------
# 1. Weight gradients against central finite differences (float64)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def float64():
    """A float64 model: the ISNet losses keep float64 (``test_losses_keep_float64_precision``),
    which the finite-difference checks need (float32 round-off / h ~ 0.1)."""
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def fd_model(seed=0):
    """Conv2D(3)+ReLU (z^B rule) -> MaxPool -> Dense(4)+ReLU (epsilon) -> Dense(3)."""
    init = keras.initializers.GlorotUniform
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(
                3, 3, padding="same", activation="relu", kernel_initializer=init(seed)
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu", kernel_initializer=init(seed + 1)),
            keras.layers.Dense(3, kernel_initializer=init(seed + 2)),
        ],
        name="fd",
    )
    randomize_biases(model, seed)
    hidden = model.layers[3]  # positive biases keep the hidden ReLUs alive
    hidden.bias.assign(np.random.default_rng(seed).uniform(0.2, 0.4, size=hidden.bias.shape))
    return model


def _assert_away_from_kinks(model, x, heatmaps, masks, C1=1.0, C2=25.0):
    """The finite differences are only valid away from the loss's kinks: check the margins
    of the ReLU pre-activations, the max-pooling winners, the explained class choice, the
    |H| at zero and the foreground bounds C1/C2 (perturbations are ~1e-6)."""
    conv, _, _, hidden, head = model.layers
    z = np.asarray(keras.ops.conv(x, conv.kernel, padding="same")) + np.asarray(conv.bias)
    assert np.min(np.abs(z)) > 1e-5, "a conv pre-activation is too close to 0"
    a = np.maximum(z, 0)
    b, h, w, c = a.shape
    windows = a.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    windows = np.sort(windows.reshape(b, h // 2, w // 2, c, 4), axis=-1)
    top, second = windows[..., -1], windows[..., -2]
    assert np.all((top == 0) | (top - second > 1e-5)), "a max-pooling window has a near tie"
    z2 = top.reshape(b, -1) @ np.asarray(hidden.kernel) + np.asarray(hidden.bias)
    assert np.min(np.abs(z2)) > 1e-5, "a hidden pre-activation is too close to 0"
    logits = np.maximum(z2, 0) @ np.asarray(head.kernel) + np.asarray(head.bias)
    np.testing.assert_allclose(logits, np.asarray(model(x)), rtol=1e-10)
    assert np.min(np.diff(np.sort(logits, axis=-1), axis=-1)) > 1e-5, "two logits are close"
    nonzero = np.abs(heatmaps[heatmaps != 0])  # exact zeros (no relevance path) stay zero
    assert np.min(nonzero) > 1e-9, "a heatmap value is too close to 0"
    f = np.sum(np.abs(heatmaps) * masks[:, None, :, :, None], axis=(2, 3, 4))
    assert np.min(np.abs(f - C1)) > 1e-3 and np.min(np.abs(f - C2)) > 1e-3
    for layer in (conv, hidden):  # the z-plus rule's W+ has a kink at 0
        assert np.min(np.abs(np.asarray(layer.kernel))) > 1e-5


def _tape_gradients(isnet, x, y, m, variables):
    """Gradients of the total and the heatmap loss, as ``ISNet.train_step`` takes them (one
    tape around ``_isnet_losses``)."""
    with tf.GradientTape(persistent=True) as tape:
        total, _, heat, _, _ = isnet._isnet_losses(x, y, m, training=True)
    grads = [tape.gradient(loss, variables) for loss in (total, heat)]
    return [
        [
            np.zeros(v.shape) if g is None else np.asarray(g)
            for g, v in zip(gs, variables, strict=True)
        ]
        for gs in grads
    ]


@pytest.mark.parametrize(
    "variant", ["selective", "original", "stochastic", "dual", "gradient_x_input"]
)
def test_weight_gradient_matches_finite_differences(float64, variant):
    """The weight gradient of the ISNet loss (P = 0.7) and of the heatmap loss alone (P = 1)
    equals central finite differences (float64, h = 1e-6, along random unit directions).

    Checked for every kernel (the first layer's z^B rule, a hidden layer's epsilon rule, the
    explained head). The biases enter the LRP rules' z as constants (method page, section 3:
    "the reference detaches the bias inside z"; since issue 17 the first layer's z^B too, as
    the official code), so there the gradient is by design not the loss's derivative; see
    ``test_bias_inside_the_rules_is_detached``. The gradient-times-input ablation has no LRP
    rules and is checked on every weight. (That a training step applies this gradient is
    checked in float32 by ``test_training_step_applies_the_gradient``.)
    """
    model = fd_model(seed=4)
    assert all(v.dtype == "float64" for v in model.weights)
    x, y, m = toy_data(n=4, seed=1)
    seed = 1234  # the stochastic variant: a fresh ISNet with this seed draws the same classes

    def make_isnet(P=0.7):
        return ki.ISNet(model, variant=variant, P=P, seed=seed)

    xt, yt, mt = tf.constant(x), tf.constant(y), tf.constant(m)
    fixed = make_isnet()

    def losses():
        isnet = make_isnet() if variant == "stochastic" else fixed
        total, _, heat, _, heatmaps = isnet._isnet_losses(xt, yt, mt, training=False)
        return np.array([float(total), float(heat)]), np.asarray(heatmaps)

    base, heatmaps = losses()
    assert heatmaps.dtype == np.float64
    _assert_away_from_kinks(model, x, heatmaps, m)
    assert np.array_equal(losses()[1], heatmaps), "the class choice must repeat exactly"

    variables = model.trainable_variables
    grad_total, grad_heat = _tape_gradients(make_isnet(), xt, yt, mt, variables)
    # With P = 1 the ISNet's total loss is the heatmap loss.
    grad_p1, _ = _tape_gradients(make_isnet(P=1.0), xt, yt, mt, variables)
    for a, b in zip(grad_p1, grad_heat, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert np.any(grad_heat[0] != 0), "no heatmap gradient reaches the first kernel"

    exact = [v for v in variables if v.path.endswith("kernel")]
    if variant == "gradient_x_input":
        exact = list(variables)
    h = 1e-6
    rng = np.random.default_rng(7)
    index = {id(v): i for i, v in enumerate(variables)}
    for var in exact:
        i = index[id(var)]
        w0 = var.numpy()
        for _ in range(1):
            direction = rng.normal(size=var.shape)
            direction /= np.linalg.norm(direction)
            var.assign(w0 + h * direction)
            plus, _ = losses()
            var.assign(w0 - h * direction)
            minus, _ = losses()
            var.assign(w0)
            fd = (plus - minus) / (2 * h)
            analytic = np.array(
                [np.sum(grad_total[i] * direction), np.sum(grad_heat[i] * direction)]
            )
            np.testing.assert_allclose(
                analytic, fd, rtol=1e-4, atol=1e-8, err_msg=f"{variant}: {var.path}"
            )


@pytest.mark.parametrize("variant", ["selective", "stochastic", "dual"])
def test_training_step_applies_the_gradient(variant):
    """One ``train_on_batch`` with SGD(learning_rate=1) moves the weights by minus the tape
    gradient of the ISNet loss, the explained layer's bias included (see
    ``test_train_step_reads_the_weights_before_updating_them``)."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu", bias_initializer="ones"),
            keras.layers.Dense(3, bias_initializer=keras.initializers.RandomNormal(0, 0.1, 3)),
        ]
    )
    x, y, m = toy_data(n=4, seed=1)
    xt, yt, mt = tf.constant(x), tf.constant(y), tf.constant(m)
    variables = model.trainable_variables
    grads, _ = _tape_gradients(ki.ISNet(model, variant=variant, seed=5), xt, yt, mt, variables)
    isnet = ki.ISNet(model, variant=variant, seed=5)
    isnet.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    w0 = [v.numpy() for v in variables]
    isnet.train_on_batch(x, y, sample_weight=m)
    for w, v, g in zip(w0, variables, grads, strict=True):
        np.testing.assert_allclose(w - v.numpy(), g, rtol=1e-4, atol=1e-6, err_msg=v.path)


def _reads_not_before_writes(isnet, *batch):
    """``(read, write)`` node pairs of one weight in ``train_step``'s graph, as TensorFlow's
    graph optimiser (grappler, default options) leaves it, where the read is not an ancestor
    of the write: nothing then stops the optimizer's update from running before the read."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer

    step = tf.function(lambda a, b, c: isnet.train_step((a, b, c)))
    graph = step.get_concrete_function(*batch).graph
    handles = {id(v.value.handle) for v in isnet.trainable_variables}
    resources = {inner.op.name for outer, inner in graph.captures if id(outer) in handles}
    assert len(resources) == len(handles)
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetch = meta.collection_def["train_op"].node_list.value
    fetch.extend(t.name for t in graph.outputs)
    fetch.extend(op.name for op in graph.get_operations() if op.type.startswith("Assign"))
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta)
    nodes = {n.name: n for n in optimized.node}

    def ancestors(name):
        seen, todo = set(), [name]
        while todo:
            for inp in nodes[todo.pop()].input:
                inp = inp.lstrip("^").split(":")[0]
                if inp not in seen:
                    seen.add(inp)
                    todo.append(inp)
        return seen

    bad, pairs = [], 0
    for resource in resources:
        uses = [n for n in optimized.node if n.input and n.input[0] == resource]
        reads = [n.name for n in uses if n.op == "ReadVariableOp"]
        for write in (n.name for n in uses if n.op.startswith("Assign")):
            before = ancestors(write)
            pairs += len(reads)
            bad += [(read, write) for read in reads if read not in before]
    return bad, pairs


def _ordering_model():
    """Conv -> pool -> Dense(ReLU, bias 1) -> Dense: the explained layer's bias gets its
    gradient from the cross-entropy only (the bias is a constant inside the LRP rules)."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu", bias_initializer="ones"),
            keras.layers.Dense(3),
        ]
    )


@pytest.mark.parametrize("variant", ["selective", "dual", "original"])
def test_train_step_graph_orders_every_read_before_the_update(variant):
    """In the optimised graph of ``train_step``, every read of a weight precedes the
    optimizer's write to it (is its ancestor). Grappler's dependency optimizer used to drop
    the read -> write edge of the explained layer's bias as read by the heatmap (a path
    through the IdentityN of Keras' gradient all-reduce made it look redundant, then that
    IdentityN was bypassed); ``backend.value_and_gradients`` gates the gradients so that it
    cannot. A deterministic check of what ``test_train_step_reads_the_weights_before_updating_
    them`` sees at run time in about 1 of 8 traces without the gate."""
    model = _ordering_model()
    x, y, m = toy_data(n=4, seed=1)
    isnet = ki.ISNet(model, variant=variant)
    isnet.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0, momentum=0.5))
    isnet.optimizer.build(isnet.trainable_variables)
    bad, pairs = _reads_not_before_writes(isnet, tf.constant(x), tf.constant(y), tf.constant(m))
    assert pairs > len(isnet.trainable_variables)  # the heatmap reads weights again
    assert bad == []


@pytest.mark.slow
def test_train_step_reads_the_weights_before_updating_them():
    """Trace ``train_step`` afresh 150 times (float64); every trace must apply the gradient
    taken at the current weights. Without the gate in ``backend.value_and_gradients``, about
    1 trace in 8 computed the heatmap loss and its gradient with the explained layer's bias
    already updated (see ``test_train_step_graph_orders_every_read_before_the_update``).
    Stops at the first trace that does not."""
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        model = _ordering_model()
        x, y, m = toy_data(n=4, seed=1)
        xt, yt, mt = tf.constant(x), tf.constant(y), tf.constant(m)
        isnet = ki.ISNet(model, variant="selective")
        variables = model.trainable_variables
        grads, _ = _tape_gradients(isnet, xt, yt, mt, variables)
        isnet.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        isnet.optimizer.build(isnet.trainable_variables)
        w0 = [v.numpy() for v in variables]
        for trace in range(150):
            for v, w in zip(variables, w0, strict=True):
                v.assign(w)
            step = tf.function(lambda a, b, c: isnet.train_step((a, b, c)))
            step(xt, yt, mt)
            for w, v, g in zip(w0, variables, grads, strict=True):
                np.testing.assert_allclose(
                    w - v.numpy(), g, rtol=1e-5, atol=1e-8, err_msg=f"trace {trace}: {v.path}"
                )
    finally:
        keras.config.set_floatx(old)


def test_bias_inside_the_rules_is_detached(float64):
    """Method page, section 3: the bias enters each rule's z as a constant input, so the
    heatmap loss does not reach the biases through the rules. For the selective ISNet the
    explained layer's bias appears only in the z of the virtual layer, hence its heatmap-loss
    gradient is exactly zero although the loss does depend on that bias (finite
    differences)."""
    model = fd_model(seed=4)
    x, y, m = toy_data(n=4, seed=1)
    isnet = ki.ISNet(model, variant="selective", P=1.0)
    xt, yt, mt = tf.constant(x), tf.constant(y), tf.constant(m)
    bias = model.layers[-1].bias
    with tf.GradientTape() as tape:
        heat = isnet._isnet_losses(xt, yt, mt, training=False)[2]
    grad = tape.gradient(heat, bias)
    assert grad is None or np.all(np.asarray(grad) == 0)
    b0, h = bias.numpy(), 1e-6
    bias.assign(b0 + h * np.array([1.0, 0.0, 0.0]))
    plus = float(isnet._isnet_losses(xt, yt, mt, training=False)[2])
    bias.assign(b0)
    assert abs(plus - float(heat)) / h > 1e-3


def test_losses_keep_float64_precision():
    """The losses are computed in the model's precision, never below float32 (method page,
    section 2): a float64 model gets float64 losses, equal to a NumPy float64 cross-entropy
    and to ``(1 - P) * ce + P * heat`` with P = 0.7 exactly, at float64 round-off (float32
    arithmetic, or a float32 P, is off by ~1e-8); a mixed_float16 model gets float32 losses
    equal to those of the float32 model within float16 round-off."""
    P = 0.7
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        x, y, m = toy_data(n=4)
        model = conv_model()
        randomize_biases(model)
        weights = model.get_weights()
        total, ce, heat, logits, maps = ki.ISNet(model, P=P)._isnet_losses(
            tf.constant(x), tf.constant(y), tf.constant(m), training=False
        )
        z = np.asarray(model(x))
    finally:
        keras.config.set_floatx(old)
    assert [t.dtype for t in (total, ce, heat, logits, maps)] == ["float64"] * 5
    logp = (
        z
        - np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1, keepdims=True))
        - z.max(1, keepdims=True)
    )
    expected_ce = -np.mean(logp[np.arange(4), y])
    assert float(ce) == pytest.approx(expected_ce, rel=1e-13, abs=0)
    expected_heat = float(ki.losses.isnet_heatmap_loss(np.asarray(maps, np.float64), m))
    assert float(heat) == pytest.approx(expected_heat, rel=1e-13, abs=0)
    expected_total = (1 - P) * expected_ce + P * expected_heat
    assert float(total) == pytest.approx(expected_total, rel=1e-13, abs=0)

    x32, m32 = x.astype("float32"), m.astype("float32")
    results = {}
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            model = conv_model()
            model.set_weights([w.astype("float32") for w in weights])
            results[policy] = ki.ISNet(model, P=P)._isnet_losses(x32, y, m32, training=False)[:3]
        finally:
            keras.config.set_dtype_policy("float32")
    for low, full in zip(results["mixed_float16"], results["float32"], strict=True):
        assert low.dtype == "float32" and full.dtype == "float32"
        assert float(low) == pytest.approx(float(full), rel=1e-2)


# ------------------------------------------------------------------------------------------
# 2. The training heatmaps equal independent references
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("softmax", [False, True])
@pytest.mark.parametrize("input_bounds", [(0.0, 1.0), None])
def test_original_maps_equal_the_lrp_analyzer(softmax, input_bounds):
    model = conv_model(softmax=softmax)
    randomize_biases(model)
    x, y, m = toy_data(n=6)
    isnet = ki.ISNet(model, variant="original", input_bounds=input_bounds)
    maps = training_heatmaps(isnet, x, y, m)
    assert maps.shape == (6, 3, 8, 8, 1)
    assert_class_maps_equal(maps, lrp_analyzer(model, input_bounds), x)


def test_stochastic_map_is_the_analyzer_map_of_a_class():
    """Each stochastic map is the LRP map of one class; over the batch both the top logit and
    other classes are explained; the same seed repeats the choice."""
    model = conv_model()
    randomize_biases(model)
    x, y, m = toy_data(n=48, seed=3)
    maps = training_heatmaps(ki.ISNet(model, variant="stochastic", seed=11), x, y, m)
    assert maps.shape == (48, 1, 8, 8, 1)
    analyzer = lrp_analyzer(model)
    per_class = np.stack([analyzer.analyze(x, neuron_selection=k) for k in range(3)], axis=1)
    scale = np.abs(per_class).max(axis=(1, 2, 3, 4))[:, None]
    err = np.abs(per_class - maps).max(axis=(2, 3, 4)) / scale  # (batch, classes)
    chosen = np.argmin(err, axis=1)
    assert np.all(err[np.arange(48), chosen] < 1e-5), "a map is no class's LRP map"
    top = np.argmax(np.asarray(model(x)), axis=1)
    # the LRP Block's draw (the default lrp="block"): one coin per batch for the top logit
    assert np.all(chosen == top) or np.all(chosen != top)
    again = training_heatmaps(ki.ISNet(model, variant="stochastic", seed=11), x, y, m)
    np.testing.assert_array_equal(again, maps)


def test_stochastic_class_frequencies():
    """LRP-Flex's draw (``lrp="flex"``, ``RandomLogitIndices``): per sample the top logit with
    probability 5/11, otherwise a uniformly random other class (method page, section 4). The
    LRP Block's one coin per batch: ``test_official_rules``."""
    model = conv_model()
    engine = ki.ISNet(model, variant="stochastic", lrp="flex").heatmaps
    n, k = 22000, 4
    logits = np.random.default_rng(0).normal(size=(n, k)).astype("float32")
    classes = np.asarray(
        engine.choose_classes(
            tf.constant(logits), None, "stochastic", seed=keras.random.SeedGenerator(3)
        )
    )
    top = logits.argmax(axis=1)
    assert np.mean(classes == top) == pytest.approx(5 / 11, abs=0.015)
    others = classes[classes != top]
    rank = (others - top[classes != top]) % k  # 1..k-1, uniform
    counts = np.bincount(rank, minlength=k)[1:] / len(others)
    np.testing.assert_allclose(counts, 1 / (k - 1), atol=0.02)


def ref_selective_head_relevance(a, W, b, classes, eps=EPS):
    """Relevance of the explained layer's input ``a`` (batch, n) for ``eta_c`` (method page,
    section 4): ``z_cc' = (w_c - w_c') a + (b_c - b_c')``, ``R_cc' = z_cc' e^{-z_cc'} /
    (sum_c'' e^{-z_cc''} - 1 + 1e-5)``, then LRP-epsilon through the virtual layer with
    weights ``w_c - w_c'`` (bias a constant input). Plain loops, float64."""
    a, W, b = (np.asarray(v, dtype=np.float64) for v in (a, W, b))
    out = np.zeros_like(a)
    for i, c in enumerate(classes):
        others = [k for k in range(W.shape[1]) if k != c]
        zcc = np.array([(W[:, c] - W[:, k]) @ a[i] + (b[c] - b[k]) for k in others])
        denominator = np.sum(np.exp(-zcc)) + 1e-5  # sum over c'' incl. c, minus 1
        for k, z in zip(others, zcc, strict=True):
            r = z * np.exp(-z) / denominator
            stab = z + eps * (1.0 if z >= 0 else -1.0)
            out[i] += a[i] * (W[:, c] - W[:, k]) * r / stab
    return out


def ref_zb(x, W, R, low=0.0, high=1.0, eps=EPS, b=None):
    """The z^B rule of a Dense layer with epsilon stabiliser (method page, section 3), with the
    bias ``b`` in the denominator as the official ISNet code (``b - low b+ - high b-``)."""
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    z = x @ W - low * Wp.sum(axis=0) - high * Wn.sum(axis=0)
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        z = z + b - low * np.maximum(b, 0) - high * np.minimum(b, 0)
    s = R / (z + eps * np.where(z >= 0, 1.0, -1.0))
    return x * (s @ W.T) - low * (s @ Wp.T) - high * (s @ Wn.T)


def ref_zplus(x, W, R):
    """The z-plus rule of a Dense layer for x >= 0 (bias ignored)."""
    Wp = np.maximum(W, 0)
    z = x @ Wp
    return x * ((R / np.where(z == 0, 1e-7, z)) @ Wp.T)


def dense_model(hidden=None, seed=0):
    layers = [keras.Input((4, 4, 1)), keras.layers.Flatten()]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers.append(keras.layers.Dense(3))
    model = keras.Sequential(layers)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(rng.normal(0.05, 0.5, size=layer.kernel.shape))
            layer.bias.assign(rng.uniform(0.1, 0.4, size=layer.bias.shape))
    return model


def _classes(logits, y, selective_class):
    return {
        "argmin": np.argmin(logits, axis=1),
        "argmax": np.argmax(logits, axis=1),
        "label": np.asarray(y),
    }[selective_class]


@pytest.mark.parametrize("selective_class", ["argmin", "argmax", "label"])
def test_selective_map_of_a_single_dense_layer(selective_class):
    model = dense_model()
    x, y, m = toy_data(n=5, size=4)
    isnet = ki.ISNet(model, variant="selective", input_bounds=None, selective_class=selective_class)
    maps = training_heatmaps(isnet, x, y, m)
    dense = model.layers[-1]
    a = x.reshape(5, 16)
    logits = a @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    classes = _classes(logits, y, selective_class)
    expected = ref_selective_head_relevance(a, dense.kernel, dense.bias, classes)
    np.testing.assert_allclose(maps.reshape(5, 16), expected, rtol=1e-4, atol=1e-6)


def test_selective_and_dual_maps_of_a_two_layer_network():
    """Selective: eta's relevance at the hidden layer, then z^B (bounds 0, 1) at the input.
    Dual: that map, and a second map with the z-plus rule below the explained layer."""
    model = dense_model(hidden=6, seed=1)
    x, y, m = toy_data(n=5, size=4, seed=2)
    hidden, head = model.layers[1], model.layers[2]
    xf = x.reshape(5, 16).astype(np.float64)
    a = np.maximum(xf @ np.asarray(hidden.kernel) + np.asarray(hidden.bias), 0)
    assert np.all(a.max(axis=0) > 0), "every hidden unit should be alive somewhere"
    logits = a @ np.asarray(head.kernel) + np.asarray(head.bias)
    r_a = ref_selective_head_relevance(a, head.kernel, head.bias, np.argmin(logits, axis=1))
    W1 = np.asarray(hidden.kernel, dtype=np.float64)

    selective = training_heatmaps(ki.ISNet(model, variant="selective"), x, y, m)
    expected = ref_zb(xf, W1, r_a, b=hidden.bias)
    np.testing.assert_allclose(selective.reshape(5, 16), expected, rtol=1e-4, atol=1e-6)
    dual = training_heatmaps(ki.ISNet(model, variant="dual"), x, y, m)
    assert dual.shape == (5, 2, 4, 4, 1)
    np.testing.assert_allclose(dual[:, 0], selective[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        dual[:, 1].reshape(5, 16), ref_zplus(xf, W1, r_a), rtol=1e-4, atol=1e-6
    )


def test_gradient_x_input_map_equals_the_analyzer():
    model = conv_model()
    randomize_biases(model)
    x, y, m = toy_data(n=6)
    maps = training_heatmaps(ki.ISNet(model, variant="gradient_x_input"), x, y, m)
    classes = np.argmin(np.asarray(model(x)), axis=1)  # the selective class (argmin)
    analyzer = ki.create_analyzer("input_t_gradient", model, neuron_selection_mode="index")
    expected = analyzer.analyze(x, neuron_selection=classes)
    np.testing.assert_allclose(maps[:, 0], expected, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------
# 3. Bad input
# ------------------------------------------------------------------------------------------


def compiled_isnet(model=None, run_eagerly=False, **kwargs):
    isnet = ki.ISNet(model or conv_model(), **kwargs)
    isnet.compile(
        optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"], run_eagerly=run_eagerly
    )
    return isnet


def raises_and_keeps_weights(isnet, exc, call, match=None):
    before = weights_of(isnet)
    with pytest.raises(exc, match=match) as info:
        call()
    assert same_weights(before, weights_of(isnet)), "a failed call changed the weights"
    return str(info.value)


def test_fit_without_masks_says_how_to_pass_them():
    x, y, _ = toy_data(n=8)
    isnet = compiled_isnet()
    msg = raises_and_keeps_weights(isnet, ValueError, lambda: isnet.fit(x, y, verbose=0))
    assert "masks" in msg and "sample_weight=masks" in msg and "isnet_dataset" in msg
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    raises_and_keeps_weights(isnet, ValueError, lambda: isnet.fit(ds, verbose=0), "masks")


@pytest.mark.parametrize(
    "shape", [(8, 6, 6), (8, 4, 4), (8, 8, 7), (8, 8, 8, 3)], ids=lambda s: "x".join(map(str, s))
)
def test_wrong_mask_shape_names_both_shapes(shape):
    x, y, _ = toy_data(n=8)
    masks = np.ones(shape, dtype="float32")
    isnet = compiled_isnet()
    msg = raises_and_keeps_weights(
        isnet, ValueError, lambda: isnet.fit(x, y, sample_weight=masks, batch_size=8, verbose=0)
    )
    assert str(tuple(shape[1:])).strip("()") in msg, msg  # the mask's shape
    assert "8, 8" in msg, msg  # the images' / heatmaps' spatial shape
    if shape[1:3] != (8, 8):
        msg = raises_and_keeps_weights(isnet, ValueError, lambda: ki.isnet_dataset(x, y, masks))
        assert str(shape) in msg and str(x.shape) in msg


@pytest.mark.parametrize(
    "form",
    [
        "run_eagerly",
        "tf.data",
        "numpy",
    ],
)
def test_non_binary_mask_raises_and_keeps_weights(form):
    x, y, m = toy_data(n=8)
    m[0, 0, 0] = 0.5
    isnet = compiled_isnet(run_eagerly=form == "run_eagerly")
    if form == "tf.data":
        fit = lambda: isnet.fit(ki.isnet_dataset(x, y, m, shuffle=False), verbose=0)  # noqa: E731
    else:
        fit = lambda: isnet.fit(  # noqa: E731
            x, y, sample_weight=m, batch_size=8, shuffle=False, verbose=0
        )
    raises_and_keeps_weights(isnet, ValueError, fit, "binary")


@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate"])
@pytest.mark.parametrize("mistake", ["no masks", "mask shape", "non-binary"])
def test_a_corrected_call_after_a_failed_one_trains_as_a_fresh_model(entry, mistake):
    """Keras caches the step function of the first call; a call that fails while tracing it
    used to leave it half-built, and the next, correct call then failed with "Creating
    variables on a non-first call". The corrected call must give what a fresh ISNet gives."""
    x, y, m = toy_data(n=8)
    bad = {"no masks": None, "mask shape": np.ones((8, 6, 6), "float32"), "non-binary": m / 2}

    def call(isnet, masks):
        if entry == "fit":
            history = isnet.fit(x, y, sample_weight=masks, batch_size=8, shuffle=False, verbose=0)
            return history.history["loss"][-1]
        if entry == "train_on_batch":
            return isnet.train_on_batch(x, y, sample_weight=masks)
        return isnet.evaluate(x, y, sample_weight=masks, batch_size=8, verbose=0)

    failed = compiled_isnet()
    if not (entry == "evaluate" and mistake == "no masks"):  # evaluate without masks is valid
        raises_and_keeps_weights(failed, ValueError, lambda: call(failed, bad[mistake]))
    fresh = compiled_isnet()
    np.testing.assert_allclose(call(failed, m), call(fresh, m), rtol=1e-6)
    assert same_weights(weights_of(failed), weights_of(fresh))


def found_range(msg):
    """The ``(min, max)`` an input-bounds error reports."""
    match = re.search(r"Found values from (\S+) to (\S+)", msg)
    assert match, msg
    return float(match[1]), float(match[2])


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["graph", "eager"])
def test_images_outside_the_input_bounds_raise_and_keep_weights(run_eagerly):
    """The z^B rule of the first layer is only defined for low <= x <= high: images in
    [0, 255] under the default bounds (0, 1) used to train silently on a loss of ~1e5."""
    x, y, m = toy_data(n=8)
    isnet = compiled_isnet(run_eagerly=run_eagerly)
    msg = raises_and_keeps_weights(
        isnet,
        ValueError,
        lambda: isnet.fit(x * 255, y, sample_weight=m, batch_size=8, verbose=0),
        "outside the bounds",
    )
    assert "(0, 1)" in msg and "input_bounds=None" in msg
    assert found_range(msg) == pytest.approx((x.min() * 255, x.max() * 255), rel=1e-6)
    msg = raises_and_keeps_weights(
        isnet, ValueError, lambda: isnet.evaluate(x - 0.5, y, sample_weight=m, verbose=0)
    )
    assert found_range(msg) == pytest.approx(((x - 0.5).min(), (x - 0.5).max()), rel=1e-6)
    # round-off at the bounds passes (1e-3 of the range); so does input_bounds=None
    isnet.fit(np.clip(x, 0, 1) * (1 + 5e-4), y, sample_weight=m, batch_size=8, verbose=0)
    free = compiled_isnet(input_bounds=None, run_eagerly=run_eagerly)
    free.fit(x * 255, y, sample_weight=m, batch_size=8, verbose=0)


def test_per_channel_input_bounds_are_checked_and_saved(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    low, high = np.array([-2.0, -1.0, -1.5]), np.array([2.0, 1.0, 1.5])
    isnet = ki.ISNet(model, input_bounds=(low, high))
    isnet.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 8, 8, 3)).astype("float32")
    y, m = np.array([0, 1, 2, 0]), np.ones((4, 8, 8), "float32")
    isnet.fit(x, y, sample_weight=m, verbose=0)  # channel 0 may exceed 1: its bound is 2
    bad = x.copy()
    bad[0, 0, 0, 1] = 1.4  # channel 1 is bounded by 1
    raises_and_keeps_weights(
        isnet, ValueError, lambda: isnet.fit(bad, y, sample_weight=m, verbose=0), "bounds"
    )
    isnet.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.input_bounds, (low, high), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        training_heatmaps(loaded, x, y, m), training_heatmaps(isnet, x, y, m), rtol=1e-6
    )
    with pytest.raises(ValueError, match="low < high"):
        ki.ISNet(model, input_bounds=(1.0, 0.0))


def test_class_weight_equals_repeating_the_samples():
    """Keras' class_weight scales each sample's loss (``sum_over_batch_size``): with integer
    weights the SGD step equals the step on a batch where each sample is repeated w times,
    scaled by sum(w) / n. Classification and heatmap losses are both weighted."""
    x, y, m = toy_data(n=8)
    class_weight = {0: 2, 1: 1, 2: 3}
    w = np.array([class_weight[int(c)] for c in y])
    repeat = np.repeat(np.arange(len(y)), w)

    weighted = compiled_isnet()
    start = weights_of(weighted)
    weighted.train_on_batch(x, y, sample_weight=m, class_weight=class_weight)
    repeated = compiled_isnet()
    repeated.train_on_batch(x[repeat], y[repeat], sample_weight=m[repeat])
    scale = w.sum() / len(y)
    for s0, a, b in zip(start, weights_of(weighted), weights_of(repeated), strict=True):
        np.testing.assert_allclose(a - s0, scale * (b - s0), rtol=2e-5, atol=1e-7)
    # fit takes it too; a later call without class_weight is unweighted again
    fitted = compiled_isnet()
    fitted.fit(x, y, sample_weight=m, batch_size=8, class_weight=class_weight, verbose=0)
    for a, b in zip(weights_of(fitted), weights_of(weighted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    plain = compiled_isnet()
    plain.set_weights(fitted.get_weights())
    fitted.train_on_batch(x, y, sample_weight=m)
    plain.train_on_batch(x, y, sample_weight=m)
    assert same_weights(weights_of(fitted), weights_of(plain))


@pytest.mark.parametrize(
    "class_weight, match",
    [({0: 1.0, 3: 2.0}, "key 3"), ({0: -1.0}, "finite and >= 0"), ([1.0, 2.0], "dict")],
)
def test_bad_class_weight(class_weight, match):
    x, y, m = toy_data(n=8)
    isnet = compiled_isnet()
    exc = TypeError if isinstance(class_weight, list) else ValueError
    raises_and_keeps_weights(
        isnet,
        exc,
        lambda: isnet.fit(x, y, sample_weight=m, class_weight=class_weight, verbose=0),
        match,
    )


def test_class_weight_is_refused_for_segmentation_outputs():
    inputs = keras.Input((8, 8, 1))
    unet = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    isnet = ki.ISNet(unet)
    isnet.compile(optimizer="sgd")
    x, _, m = toy_data(n=4)
    with pytest.raises(ValueError, match=r"\(batch, classes\).*\(None, 8, 8, 2\)"):
        isnet.fit(x, m.astype("int32"), sample_weight=m, class_weight={0: 1.0}, verbose=0)


def test_all_background_mask_gives_a_finite_loss():
    x, y, m = toy_data(n=8)
    isnet = compiled_isnet()
    history = isnet.fit(x, y, sample_weight=np.zeros_like(m), batch_size=4, verbose=0)
    for key in ("loss", "heatmap_loss", "classification_loss", "background_share"):
        assert np.all(np.isfinite(history.history[key])), key
    assert history.history["background_share"][0] == pytest.approx(1.0)
    assert all(np.all(np.isfinite(w)) for w in weights_of(isnet))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"variant": "selectve"}, ValueError, "selective"),
        ({"P": 1.5}, ValueError, "P"),
        ({"P": -0.1}, ValueError, "P"),
        ({"P": {0: 0.2, 3: 1.2}}, ValueError, "P"),
        ({"P": {1: 0.5, 3: 0.7}}, ValueError, "epoch 0"),
        ({"gamma": 2.0}, TypeError, "gamma"),
        ({"selective_class": "first"}, ValueError, "argmin"),
    ],
    ids=["variant", "P>1", "P<0", "schedule value", "schedule epoch 0", "loss kwarg", "class"],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ki.ISNet(conv_model(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"foreground": "L3"}, "foreground"),
        ({"norm": "max"}, "norm"),
        ({"C1": -1.0}, "C1"),
        ({"C1": 5.0, "C2": 2.0}, "C2"),
        ({"E": 0.0}, "E"),
    ],
)
def test_bad_loss_options_fail_when_the_isnet_is_created(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ki.ISNet(conv_model(), **kwargs)


@pytest.mark.parametrize("first_rank", [3, 4])
def test_both_mask_forms_in_successive_fits(first_rank):
    """Keras reuses one traced train/test function across ``fit``/``evaluate`` calls; after
    masks of one documented form, the other form makes it retrace with masks of unknown rank.
    Fits and evaluations alternating the forms give exactly the numbers of the same calls
    with a single form."""
    x, y, m = toy_data(n=8)
    forms = {3: m, 4: m[..., None]}
    other = 7 - first_rank
    init = weights_of(conv_model())
    runs = {}
    for name, ranks in {"alternating": (first_rank, other), "single": (first_rank,) * 2}.items():
        model = conv_model()
        model.set_weights(init)
        isnet = compiled_isnet(model)
        logs = []
        for rank in ranks:
            masks = forms[rank]
            isnet.fit(x, y, sample_weight=masks, batch_size=8, shuffle=False, verbose=0)
            logs.append(
                isnet.evaluate(x, y, sample_weight=masks, batch_size=8, verbose=0, return_dict=True)
            )
        runs[name] = (weights_of(model), logs)
    (w_alt, logs_alt), (w_single, logs_single) = runs["alternating"], runs["single"]
    assert not same_weights(w_single, init)
    for a, b in zip(w_alt, w_single, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for got, expected in zip(logs_alt, logs_single, strict=True):
        assert set(got) == set(expected)
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-6), key


def test_masks_of_unknown_rank_are_reshaped_to_the_images():
    """A step traced with an unknown mask rank (both forms, one relaxed signature) computes
    the losses of the masks it is given, whichever form arrives."""
    model = conv_model()
    x, y, m = toy_data(n=4)
    isnet = ki.ISNet(model)
    expected = [np.asarray(t) for t in isnet._isnet_losses(x, y, m, training=False)[:3]]
    spec = tf.TensorSpec(None, tf.as_dtype(m.dtype))

    @tf.function(input_signature=[spec])
    def losses(masks):
        masks = _masks_of_known_rank(masks, tf.constant(x))
        return isnet._isnet_losses(tf.constant(x), tf.constant(y), masks, training=False)[:3]

    for masks in (m, m[..., None]):
        for got, want in zip(losses(masks), expected, strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    # Without the images' size, the loss cannot guess a shape: a clear error, not a crash.
    prepare = tf.function(lambda t: ki.losses.prepare_masks(t, (8, 8)), input_signature=[spec])
    with pytest.raises(ValueError, match="unknown rank"):
        prepare.get_concrete_function()


# ------------------------------------------------------------------------------------------
# 4. Data forms, evaluate, predict
# ------------------------------------------------------------------------------------------


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, m, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.m, self.batch_size = x, y, m, batch_size

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s], self.m[s]


def test_every_data_form_trains_identically():
    """tf.data from ki.isnet_dataset, a PyDataset, a generator and NumPy arrays with
    sample_weight=masks give the same batches, hence the same weights after an epoch."""
    x, y, m = toy_data(n=16, seed=5)
    bs = 8

    def generator():
        for i in range(0, 16, bs):
            yield x[i : i + bs], y[i : i + bs], m[i : i + bs]

    forms = {
        "tf.data": lambda isnet: isnet.fit(ki.isnet_dataset(x, y, m, batch_size=bs, shuffle=False)),
        "PyDataset": lambda isnet: isnet.fit(_Batches(x, y, m, bs)),
        "generator": lambda isnet: isnet.fit(generator(), steps_per_epoch=2, shuffle=False),
        "numpy": lambda isnet: isnet.fit(x, y, sample_weight=m, batch_size=bs, shuffle=False),
        "numpy (n, H, W, 1)": lambda isnet: isnet.fit(
            x, y, sample_weight=m[..., None], batch_size=bs, shuffle=False
        ),
    }
    init = weights_of(conv_model())
    results = {}
    for name, fit in forms.items():
        model = conv_model()
        model.set_weights(init)
        isnet = compiled_isnet(model)
        keras.config.disable_interactive_logging()
        try:
            history = fit(isnet)
        finally:
            keras.config.enable_interactive_logging()
        assert len(history.history["loss"]) == 1
        results[name] = (weights_of(model), history.history)
    ref_weights, ref_history = results["tf.data"]
    assert not same_weights(ref_weights, init)
    for name, (weights, history) in results.items():
        for a, b in zip(weights, ref_weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=name)
        for key in ("loss", "heatmap_loss", "classification_loss", "background_share"):
            assert history[key][0] == pytest.approx(ref_history[key][0], rel=1e-5), (name, key)


def test_evaluate_with_and_without_masks():
    """With masks: the ISNet loss, recomputed from create_analyzer maps (original variant),
    ki.losses.isnet_heatmap_loss and a NumPy cross-entropy; without masks: the plain
    classification loss and accuracy only."""
    model = conv_model()
    randomize_biases(model)
    x, y, m = toy_data(n=8, seed=2)
    P = 0.7
    isnet = compiled_isnet(model, variant="original", P=P)
    logits = np.asarray(model(x), dtype=np.float64)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    ce = -np.mean(logp[np.arange(8), y])
    accuracy = np.mean(np.argmax(logits, axis=1) == y)
    analyzer = lrp_analyzer(model)
    maps = np.stack([analyzer.analyze(x, neuron_selection=k) for k in range(3)], axis=1)
    heat = float(ki.losses.isnet_heatmap_loss(maps, m))
    r = np.abs(maps).sum(axis=(1, 4))
    share = np.mean(np.sum(r * (1 - m), axis=(1, 2)) / np.sum(r, axis=(1, 2)))

    with_masks = isnet.evaluate(x, y, sample_weight=m, batch_size=8, verbose=0, return_dict=True)
    assert with_masks["classification_loss"] == pytest.approx(ce, rel=1e-5)
    assert with_masks["heatmap_loss"] == pytest.approx(heat, rel=1e-4)
    assert with_masks["background_share"] == pytest.approx(share, rel=1e-4)
    assert with_masks["loss"] == pytest.approx((1 - P) * ce + P * heat, rel=1e-4)
    assert with_masks["accuracy"] == pytest.approx(accuracy)
    ds = ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False)
    from_ds = isnet.evaluate(ds, verbose=0, return_dict=True)
    assert from_ds == pytest.approx(with_masks, rel=1e-6)

    plain = isnet.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert "heatmap_loss" not in plain and "background_share" not in plain
    assert plain["loss"] == pytest.approx(ce, rel=1e-5)
    assert plain["classification_loss"] == pytest.approx(ce, rel=1e-5)
    assert plain["accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize("softmax", [False, True])
def test_predict_and_call_are_the_classifier(softmax):
    model = conv_model(softmax=softmax)
    isnet = ki.ISNet(model)
    assert isnet.classifier is model
    x, _, _ = toy_data(n=5)
    expected = np.asarray(model(x))
    np.testing.assert_allclose(isnet.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(isnet(x)), expected, rtol=1e-6, atol=1e-7)
    assert {id(v) for v in isnet.trainable_variables} == {id(v) for v in model.trainable_variables}


# ------------------------------------------------------------------------------------------
# 6. Serialization
# ------------------------------------------------------------------------------------------

CONFIG_KEYS = ("variant", "P", "epsilon", "input_bounds", "selective_class", "seed")
LOSS_KWARGS = {"d": 0.5, "E": 2.0, "A": 1.5, "B": 1.0, "C1": 0.5, "C2": 10.0}


def _isnet_for_saving():
    model = conv_model(softmax=True)
    isnet = ki.ISNet(
        model,
        variant="original",
        P={0: 0.2, 2: 0.8},
        epsilon=0.05,
        input_bounds=(-1.0, 2.0),
        selective_class="argmax",
        seed=3,
        foreground="hybrid",
        norm="RoIMean",
        **LOSS_KWARGS,
    )
    isnet.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    x, y, m = toy_data(n=8)
    isnet.fit(x, y, sample_weight=m, batch_size=4, epochs=1, verbose=0)
    return isnet, x


def _json(config):
    """A config as it is stored (tuples become lists)."""
    return json.loads(json.dumps(config))


def _assert_same_settings(a, b):
    for key in CONFIG_KEYS:
        assert getattr(a, key) == getattr(b, key), key
    assert a.loss_kwargs == b.loss_kwargs
    assert a.loss_kwargs["foreground"] == "hybrid" and a.loss_kwargs["d"] == 0.5


def test_save_and_load_model(tmp_path):
    isnet, x = _isnet_for_saving()
    path = tmp_path / "m.keras"
    isnet.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ki.ISNet)
    _assert_same_settings(loaded, isnet)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), isnet.predict(x, verbose=0))
    for a, b in zip(weights_of(loaded), weights_of(isnet), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _json(loaded.get_config()) == _json(isnet.get_config())
    # The heatmaps of the loaded model are those of the original.
    _, y, m = toy_data(n=8)
    np.testing.assert_allclose(
        training_heatmaps(loaded, x, y, m), training_heatmaps(isnet, x, y, m), rtol=1e-6
    )


def test_save_keeps_the_random_draws_going(tmp_path):
    """A reloaded stochastic ISNet (``load_model`` or ``load_weights``) continues the random
    class draws of the original: its next draws are the original's next draws, not its first
    ones again. A file without the generator's state (written before it was saved) loads and
    leaves the generator where the ``seed`` argument puts it. LRP-Flex's per-sample draw
    (``lrp="flex"``), so that two draws differ (the LRP Block's one coin per batch can
    repeat a batch's classes)."""
    model = conv_model()
    x, y, _ = toy_data(n=64)
    logits = model(x)

    def draw(isnet):
        gen = isnet._seed_generator
        return np.asarray(isnet.heatmaps.choose_classes(logits, y, "stochastic", gen))

    isnet = compiled_isnet(model, variant="stochastic", seed=3, lrp="flex")
    first = [draw(isnet) for _ in range(2)]
    isnet.save(tmp_path / "m.keras")
    isnet.save_weights(tmp_path / "m.weights.h5")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    from_weights = ki.ISNet(conv_model(), variant="stochastic", seed=3, lrp="flex")
    from_weights.load_weights(tmp_path / "m.weights.h5")
    expected = [draw(isnet) for _ in range(2)]
    assert not any(np.array_equal(a, b) for a in first for b in expected)
    for loaded in (reloaded, from_weights):
        for want in expected:
            np.testing.assert_array_equal(draw(loaded), want)

    old_file = ki.ISNet(conv_model(), variant="stochastic", seed=3, P=0.2, lrp="flex")
    old_file.load_own_variables({"0": np.float32(0.7)})  # P only, no generator state
    assert float(old_file._P_value) == pytest.approx(0.7)
    np.testing.assert_array_equal(draw(old_file), first[0])


def test_get_config_from_config_round_trip():
    isnet, x = _isnet_for_saving()
    config = isnet.get_config()
    clone = ki.ISNet.from_config(config)
    _assert_same_settings(clone, isnet)
    assert _json(clone.get_config()) == _json(config)
    clone.classifier.set_weights(isnet.classifier.get_weights())
    np.testing.assert_array_equal(clone.predict(x, verbose=0), isnet.predict(x, verbose=0))
    registered = keras.saving.get_registered_object("keras_isnet>ISNet")
    assert registered is ki.ISNet


def test_save_keeps_the_optimizer_state(tmp_path):
    isnet, _ = _isnet_for_saving()
    isnet.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert int(loaded.optimizer.iterations.numpy()) == int(isnet.optimizer.iterations.numpy())
    saved = [v.numpy() for v in isnet.optimizer.variables]
    restored = [v.numpy() for v in loaded.optimizer.variables]
    assert len(saved) == len(restored)
    for a, b in zip(saved, restored, strict=True):
        np.testing.assert_array_equal(a, b)
