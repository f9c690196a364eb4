"""The per-layer conservation report and per-layer relevance (``keep_layers``).

References: closed forms in float64 NumPy (the relevance a bias absorbs under the z-rule is
``sum_j R_j b_j / z_j``), the model's own outputs, and the telescoping identity: the
absorbed amounts of all layers add up to ``explained - input relevance``.
"""

import json

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.conservation import conservation_report

L = keras.layers


def dense_model(with_bn, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((5,))
    dense = L.Dense(4, name="d")
    h = dense(inputs)
    if with_bn:
        h = L.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, h)
    W, b = rng.normal(size=(5, 4)), rng.normal(size=4)
    dense.set_weights([W.astype("float32"), b.astype("float32")])
    if with_bn:
        bn = [rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(1, 2, 4)]
        model.get_layer("bn").set_weights([v.astype("float32") for v in bn])
        gamma, beta, mean, var = bn
        s = gamma / np.sqrt(var + 1e-3)
        W, b = W * s, b * s + beta - mean * s  # the folded layer
    return model, rng.normal(size=(3, 5)), W, b, rng.normal(size=(3, 4))


@pytest.mark.parametrize("with_bn", [False, True])
def test_bias_absorption_matches_the_closed_form(with_bn):
    model, x, W, b, w = dense_model(with_bn)
    z = x @ W + b
    R = z * w  # the seed: explain sum(y * w)
    absorbed = (R * b / z).sum()  # z-rule: the bias's share of each z_j
    analyzer = ki.create_analyzer("lrp.z", model, neuron_selection_mode="index")
    report = conservation_report(analyzer, x.astype("float32"), neuron_selection=w)
    names = [layer.name for layer in report.layers]
    assert names == (["d", "bn"] if with_bn else ["d"])  # graph order
    dense = report.layers[0]
    np.testing.assert_allclose(dense.arriving, R.sum(), rtol=1e-5)
    np.testing.assert_allclose(dense.absorbed, absorbed, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dense.share, absorbed / abs(R.sum()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(report.explained, R.sum(), rtol=1e-5)
    np.testing.assert_allclose(report.explained_per_sample, R.sum(1), rtol=1e-5)
    assert "bias" in dense.reason
    if with_bn:
        assert "BN shift of 'bn' (folded)" in dense.reason
        assert report.layers[1].rule == "folded into 'd'" and report.layers[1].absorbed == 0
    np.testing.assert_allclose(report.gap, report.absorbed_total, rtol=1e-9, atol=1e-12)


def unet_like(seed=0):
    """Conv-BN-ReLU, max pooling, a transposed convolution, skip concatenation, Add."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 2))
    e = L.ReLU(name="relu1")(
        L.BatchNormalization(name="bn1")(L.Conv2D(4, 3, padding="same", name="conv1")(inputs))
    )
    p = L.MaxPooling2D(name="pool")(e)
    m = L.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(p)
    u = L.Conv2DTranspose(4, 2, strides=2, name="up")(m)
    c = L.Concatenate(name="skip")([u, e])
    a = L.Add(name="add")([L.Conv2D(4, 1, name="conv3")(c), e])
    model = keras.Model(inputs, L.Conv2D(2, 1, name="logits")(a))
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4),
                    rng.uniform(0.5, 2, 4)])  # fmt: skip
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None and not isinstance(layer, L.BatchNormalization):
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape).astype("float32"))
    return model, rng.uniform(0, 1, (2, 8, 8, 2)).astype("float32")


def test_report_on_a_unet_adds_up_and_names_the_absorbing_layers(tmp_path):
    model, x = unet_like()
    analyzer = ki.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    weights = np.zeros((8, 8, 2), "float32")
    weights[2:6, 2:6, 1] = 1.0  # class 1 over a region
    report = conservation_report(analyzer, x, neuron_selection=weights)
    y = np.asarray(model(x), np.float64)
    np.testing.assert_allclose(report.explained, (y * weights).sum(), rtol=1e-5)
    heatmaps = analyzer.analyze(x, neuron_selection=weights)
    np.testing.assert_allclose(report.input_relevance, heatmaps.sum(dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(report.input_per_sample, heatmaps.reshape(2, -1).sum(1), rtol=1e-5)
    # the per-layer absorbed amounts add up to the total gap
    scale = sum(abs(layer.absorbed) for layer in report.layers)
    assert abs(report.absorbed_total - report.gap) <= 1e-9 * scale
    assert abs(report.gap) > 1e-3 * abs(report.explained)  # biases are on: there is a gap
    by_name = {layer.name: layer for layer in report.layers}
    order = [layer.name for layer in report.layers]
    assert order.index("conv1") < order.index("pool") < order.index("up") < order.index("logits")
    for name in ("conv1", "conv2", "up", "conv3", "logits"):
        assert by_name[name].reason != "-" and "bias" in by_name[name].reason, name
    assert "BN shift of 'bn1' (folded)" in by_name["conv1"].reason
    for name in ("pool", "skip", "relu1"):
        assert by_name[name].reason == "-" and abs(by_name[name].absorbed) < 1e-5, name
    assert by_name["pool"].rule == "winner-take-all" and "max-pool ties" in by_name["pool"].causes
    assert by_name["bn1"].rule == "folded into 'conv1'"
    # flagging by share
    strict = conservation_report(analyzer, x, neuron_selection=weights, threshold=0.0)
    assert {layer.name for layer in strict.flagged} >= {"conv1", "conv2", "logits"}
    loose = conservation_report(analyzer, x, neuron_selection=weights, threshold=1e9)
    assert loose.flagged == []
    # chunked computation gives the same numbers
    chunked = conservation_report(analyzer, x, neuron_selection=weights, batch_size=1)
    np.testing.assert_allclose(
        [layer.absorbed for layer in chunked.layers],
        [layer.absorbed for layer in report.layers],
        rtol=1e-5,
        atol=1e-6,
    )
    # text, dict, plot
    text = report.to_text()
    assert "Conservation report: lrp.epsilon" in text and "sum of absorbed" in text
    assert all(name in text for name in order)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["layers"][0]["name"] == "conv1" and set(data["flagged"]) == {
        layer.name for layer in report.flagged
    }
    assert data["gap"] == pytest.approx(sum(layer["absorbed"] for layer in data["layers"]))
    path = report.plot(tmp_path / "conservation.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    np.testing.assert_allclose(report.in_flight[0], report.input_relevance, rtol=1e-6)


def test_bias_free_report_conserves_and_alpha_beta_creates_relevance():
    model, x = unet_like(seed=1)
    free = ki.create_analyzer("lrp.z", model, bias=False, compute_dtype="float64")
    report = conservation_report(free, x)
    assert abs(report.relative_gap) < 1e-6 and report.flagged == []
    # a non-negative layer: alpha-beta's inhibitor part is empty, alpha * R leaves
    inputs = keras.Input((3,))
    dense = L.Dense(2, use_bias=False, name="d")
    positive = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.abs(np.random.default_rng(0).normal(size=(3, 2))).astype("float32")])
    ab = ki.create_analyzer("lrp.alpha_2_beta_1", positive)
    layer = conservation_report(ab, np.ones((1, 3), "float32")).layers[0]
    np.testing.assert_allclose(layer.leaving, 2 * layer.arriving, rtol=1e-6)
    assert layer.flagged and "non-conserving rule" in layer.reason


def test_keep_layers_names_shared_layer_calls_and_report_errors():
    inputs = keras.Input((4,))
    shared = L.Dense(4, name="shared")
    model = keras.Model(inputs, L.Dense(2, name="out")(shared(shared(inputs))))
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    analyzer = ki.create_analyzer("lrp.z", model)
    heatmaps, layers = analyzer.analyze(x, keep_layers=True)
    assert list(layers) == ["out", "shared#1", "shared"]
    np.testing.assert_array_equal(layers["shared"], heatmaps)
    assert {layer.name for layer in conservation_report(analyzer, x).layers} == set(layers)
    with pytest.raises(TypeError, match="needs an LRP analyzer.*Gradient"):
        conservation_report(ki.create_analyzer("gradient", model), x)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        conservation_report(analyzer, x, threshold=-1)
