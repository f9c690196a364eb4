"""BatchNormalization under LRP: folding (canonization), pass and linear.

References are independent of keras_isnet: the model's own predictions (folding must not
change them), the fold formulas ``W' = W s``, ``b' = (b - mean) s + beta`` written out in
NumPy with the LRP rules of shared/design/analyzers.md, and the conservation identity of
bias-free rules (property test over random graphs).
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_isnet as ki
from keras_isnet.canonizers import fold_batch_norm

L = keras.layers


def bn_scale_shift(layer):
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in layer.get_weights())
    s = gamma / np.sqrt(var + layer.epsilon)
    return s, beta - mean * s


def randomize_bn(model, rng, zero_shift=False):
    """Random BN statistics (negative gammas too); ``zero_shift`` makes beta = mean * s."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, L.BatchNormalization):
            c = layer.moving_mean.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1.0, 1.0], c)
            mean, var = rng.normal(0, 0.5, c), rng.uniform(0.5, 2.0, c)
            s = gamma / np.sqrt(var + layer.epsilon)
            beta = mean * s if zero_shift else rng.normal(0, 0.5, c)
            layer.set_weights([a.astype("float32") for a in (gamma, beta, mean, var)])


def zero_biases(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        bias = getattr(layer, "bias", None)
        if bias is not None and not isinstance(layer, L.BatchNormalization):
            bias.assign(np.zeros(bias.shape, "float32"))


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- folding keeps outputs
def _case(kind, where, rng):
    """A model ``input -> [BN] -> layer -> [BN]`` for one kernel layer type."""
    shapes = {"dense": (6,), "dense3d": (4, 5), "conv3d": (5, 5, 5, 2)}
    shapes.update({"conv1d": (9, 3), "conv1d_transpose": (9, 3)})
    shape = shapes.get(kind, (8, 8, 3))
    layer = {
        "dense": lambda: L.Dense(4, name="k"),
        "dense3d": lambda: L.Dense(4, name="k"),
        "conv1d": lambda: L.Conv1D(4, 3, padding="causal", name="k"),
        "conv2d_same": lambda: L.Conv2D(4, 3, strides=2, padding="same", name="k"),
        "conv2d_valid_nobias": lambda: L.Conv2D(4, 3, use_bias=False, name="k"),
        "conv3d": lambda: L.Conv3D(3, 3, padding="same", name="k"),
        "conv2d_transpose": lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", name="k"),
        "conv1d_transpose": lambda: L.Conv1DTranspose(4, 3, strides=2, name="k"),
        "depthwise": lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="k"),
        "separable": lambda: L.SeparableConv2D(5, 3, depth_multiplier=2, name="k"),
    }[kind]()
    inputs = keras.Input(shape)
    h = L.BatchNormalization(name="bn_before")(inputs) if where in ("before", "both") else inputs
    h = layer(h)
    if where in ("after", "both"):
        h = L.BatchNormalization(name="bn_after")(h)
    model = keras.Model(inputs, h)
    randomize_bn(model, rng)
    x = rng.normal(size=(3, *shape)).astype("float32")
    return model, x


KINDS = [
    "dense",
    "dense3d",
    "conv1d",
    "conv2d_same",
    "conv2d_valid_nobias",
    "conv3d",
    "conv2d_transpose",
    "conv1d_transpose",
    "depthwise",
    "separable",
]


@pytest.mark.parametrize("kind", KINDS)
def test_folding_changes_no_prediction(kind):
    for where in ("after", "before", "both"):
        model, x = _case(kind, where, np.random.default_rng(0))
        folded = fold_batch_norm(model)
        expected = {("bn_after", "k", "after")} if where != "before" else set()
        if where != "after":
            expected.add(("bn_before", "k", "before"))
        assert set(folded.folds) == expected and folded.fallbacks == {}, where
        reference = np.asarray(model(x))
        deviation = np.abs(folded.predict(x) - reference).max()
        assert deviation <= 1e-5 * max(1.0, np.abs(reference).max()), (where, deviation)


# ------------------------------------------------------------ closed-form LRP with folds
def dense_bn_model(order, rng):
    inputs = keras.Input((5,))
    dense, bn = L.Dense(4, name="d"), L.BatchNormalization(name="bn")
    out = bn(dense(inputs)) if order == "dense_bn" else dense(bn(inputs))
    model = keras.Model(inputs, out)
    randomize_bn(model, rng)
    dense.bias.assign(rng.normal(size=4).astype("float32"))
    W = np.asarray(dense.kernel, np.float64)
    b = np.asarray(dense.bias, np.float64)
    return model, W, b, bn


@pytest.mark.parametrize("order", ["dense_bn", "bn_dense"])
@pytest.mark.parametrize("bias", [True, False])
def test_folded_weights_under_the_z_rule(order, bias):
    rng = np.random.default_rng(1)
    model, W, b, bn = dense_bn_model(order, rng)
    s, t = bn_scale_shift(bn)
    if order == "dense_bn":  # W' = W s, b' = (b - mean) s + beta = b s + t
        Wf, bf = W * s, b * s + t
    else:  # W' = diag(s) W, b' = t W + b
        Wf, bf = s[:, None] * W, t @ W + b
    x = rng.normal(size=(4, 5))
    w = rng.normal(size=(4, 4))
    y = x @ Wf + bf
    np.testing.assert_allclose(np.asarray(model(x.astype("float32"))), y, rtol=1e-5, atol=1e-5)
    z = y if bias else x @ Wf
    expected = x * ((y * w / z) @ Wf.T)
    analyzer = ki.create_analyzer("lrp.z", model, bias=bias, neuron_selection_mode="index")
    out = np.asarray(analyzer.relevance(x.astype("float32"), neuron_selection=w))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    if not bias:  # the folded bias (the BN shift) is ignored too: conservation
        np.testing.assert_allclose(out.sum(1), (y * w).sum(1), rtol=1e-4)


def test_bn_rule_pass_and_linear_closed_form():
    rng = np.random.default_rng(2)
    model, W, b, bn = dense_bn_model("dense_bn", rng)
    s, t = bn_scale_shift(bn)
    x = rng.normal(size=(3, 5))
    w = rng.normal(size=(3, 4))
    z = x @ W + b  # the dense layer's own output
    y = z * s + t  # BN
    R = y * w

    def run(**kwargs):
        analyzer = ki.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index", **kwargs)
        return np.asarray(analyzer.relevance(x.astype("float32"), neuron_selection=w))

    def eps_dense(R_out):
        return x * ((R_out / (z + 1e-7 * np.sign(z))) @ W.T)

    # pass: R crosses BN unchanged
    np.testing.assert_allclose(run(bn_rule="pass"), eps_dense(R), rtol=1e-4, atol=1e-6)
    # linear: R_in = x s R / (s x + t + eps sign), the correct formula
    R_bn = z * s * R / (y + 1e-7 * np.sign(y))
    np.testing.assert_allclose(run(bn_rule="linear"), eps_dense(R_bn), rtol=1e-4, atol=1e-6)
    # bn_layer_rule alone means "linear" (backwards compatible)
    np.testing.assert_allclose(
        run(bn_layer_rule=ki.rules.PassRule()), eps_dense(R), rtol=1e-4, atol=1e-6
    )


def test_bn_rule_errors():
    model, *_ = dense_bn_model("dense_bn", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Unknown bn_rule 'merge'.*'fold', 'pass', 'linear'"):
        ki.create_analyzer("lrp.z", model, bn_rule="merge")
    with pytest.raises(ValueError, match="bn_layer_rule=.*only with bn_rule='linear'"):
        ki.create_analyzer("lrp.z", model, bn_rule="fold", bn_layer_rule="Epsilon")


# ---------------------------------------------------------------- fallbacks and graphs
def test_unfoldable_bn_warns_with_its_name_and_passes():
    rng = np.random.default_rng(3)
    inputs = keras.Input((6, 6, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(inputs)
    b = L.Conv2D(3, 1, activation="relu", name="b")(inputs)
    h = L.BatchNormalization(name="bn_after_add")(L.Add(name="add")([a, b]))
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.BatchNormalization(axis=1, name="bn_rows")(L.Conv2D(3, 1, name="c")(h))
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(h))
    randomize_bn(model, rng)
    with pytest.warns(UserWarning) as record:
        folded = ki.create_analyzer("lrp.z", model, bias=False)
    messages = " ".join(str(r.message) for r in record)
    assert "'bn_after_add'" in messages and "'add' (Add)" in messages and "'pool'" in messages
    assert "'bn_rows'" in messages and "normalises axis 1" in messages
    passing = ki.create_analyzer("lrp.z", model, bias=False, bn_rule="pass")
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(folded.relevance(x), passing.relevance(x), rtol=1e-6)


def test_bn_between_relu_conv_and_conv_folds_forward_and_model_is_untouched():
    rng = np.random.default_rng(4)
    inner_in = keras.Input((6, 6, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inner_in)
    h = L.BatchNormalization(name="bn")(h)
    inner = keras.Model(inner_in, L.Conv2D(3, 3, name="c2")(h), name="inner")
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, L.Flatten()(inner(inputs)))
    randomize_bn(model, rng)
    before = [np.array(w) for w in model.get_weights()]
    folded = fold_batch_norm(model)
    assert folded.folds == [("inner/bn", "inner/c2", "before")]
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(folded.predict(x), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    analyzer = ki.create_analyzer("lrp.epsilon", model)
    # the first conv's ReLU output is the folded conv's input: known non-negative
    assert analyzer._nonnegative[analyzer._steps[1].inputs[0]]
    analyzer.analyze(x)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------- property test
OPS = ["conv", "conv_bn", "bn_conv", "bn", "relu", "add", "concat", "maxpool", "avgpool",
       "up", "conv_transpose", "dense_bn"]  # fmt: skip


def build_random_graph(seed, ops, head):
    """A small random graph of the issue's layer types; biases and BN shifts zeroed."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)  # the kernel initialisers
    inputs = keras.Input((8, 8, 2))
    h = inputs

    def conv(t, filters=None, act=None, kernel=None):
        filters = filters or int(rng.integers(2, 5))
        kernel = kernel or int(rng.choice([1, 3]))
        return L.Conv2D(filters, kernel, padding="same", activation=act)(t)

    for op in ops:
        size = h.shape[1]
        if op == "conv":
            h = conv(h, act=str(rng.choice(["relu", "linear"])))
        elif op == "conv_bn":
            h = L.BatchNormalization()(conv(h))
        elif op == "bn_conv":
            h = conv(L.BatchNormalization()(h), act="relu")
        elif op == "bn":
            h = L.BatchNormalization()(h)
        elif op == "relu":
            h = L.ReLU()(h)
        elif op == "add":
            h = L.Add()([h, conv(h, filters=h.shape[-1], act="relu")])
        elif op == "concat":
            h = L.Concatenate()([h, conv(h, act="relu")])
        elif op in ("maxpool", "avgpool") and size >= 4:
            h = (L.MaxPooling2D if op == "maxpool" else L.AveragePooling2D)(2)(h)
        elif op == "up" and size <= 8:
            h = L.UpSampling2D(interpolation=str(rng.choice(["nearest", "bilinear"])))(h)
        elif op == "conv_transpose":
            strides = 2 if size <= 8 else 1
            h = L.Conv2DTranspose(int(rng.integers(2, 5)), 3, strides=strides, padding="same")(h)
        elif op == "dense_bn":
            h = L.BatchNormalization()(L.Dense(int(rng.integers(2, 5)))(h))
    if head == "conv":
        out = L.Conv2D(3, 1)(h)  # a segmentation map
    else:
        out = L.Dense(4)(L.BatchNormalization()(L.Flatten()(h)))
    model = keras.Model(inputs, out)
    randomize_bn(model, rng, zero_shift=True)
    zero_biases(model)
    x = rng.normal(size=(2, 8, 8, 2)).astype("float32")
    return model, x


def check_conservation(seed, ops, head):
    """Folded bias-free LRP conserves the explained output. In float64: in float32 the
    relevances that cancel on the way leave round-off of ~1e-7 of their size, more than
    1e-4 of a small explained value (seen: 4.6e-7 on 1.5e-3 through a Conv2DTranspose), and
    so does the model's own float32 output."""
    model, x = build_random_graph(seed, ops, head)
    for name, kwargs in (("lrp.z", {}), ("lrp.epsilon", {"epsilon": 1e-9})):
        analyzer = quiet(ki.create_analyzer, name, model, compute_dtype="float64", **kwargs)
        relevance, _, seed = analyzer._analyze_numpy(x.astype(np.float64), None, None, True)
        heat = relevance[0].reshape(len(x), -1).sum(axis=1)  # one model input
        # the explained value from the same float64 forward pass (the model's own float32
        # output carries round-off of ~1e-7 of its terms' size)
        explained = seed.reshape(len(x), -1).sum(axis=1)
        np.testing.assert_allclose(
            explained, np.asarray(model(x)).reshape(len(x), -1).max(axis=1), rtol=1e-3, atol=1e-5
        )
        for h, e in zip(heat, explained, strict=True):
            if abs(e) < 1e-3:
                continue  # nothing to conserve
            assert abs(h - e) <= 1e-4 * abs(e), (name, ops, head, h, e)


graph_strategy = st.tuples(
    st.integers(0, 2**16),
    st.lists(st.sampled_from(OPS), min_size=1, max_size=6),
    st.sampled_from(["conv", "dense"]),
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(graph_strategy)
def test_folded_lrp_conserves_on_random_graphs(graph):
    check_conservation(*graph)


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(graph_strategy)
def test_folded_lrp_conserves_on_200_random_graphs(graph):
    check_conservation(*graph)
