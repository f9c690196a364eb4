"""zennit's rules (Gamma, ZBox, Pass, Norm, bias-split alpha-beta/z-plus) and composites.

The expected numbers are zennit's definitions written out in float64 NumPy for a Dense layer
(``stab(z) = z + 1e-6 sign(z)``, ``sign(0) = +1``), independent of keras_isnet.
"""

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.rules import (
    EpsilonRule,
    FlatRule,
    GammaRule,
    NormRule,
    PassRule,
    ZBoxRule,
    ZennitAlphaBetaRule,
    ZennitZPlusRule,
    ZRule,
)

EPS = 1e-6


def stab(z, eps=EPS):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def pos(a):
    return np.maximum(a, 0.0)


def neg(a):
    return np.minimum(a, 0.0)


def dense_model(n_in=5, n_out=4, bias_scale=0.5, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((n_in,))
    layer = keras.layers.Dense(n_out, name="d")
    model = keras.Model(inputs, layer(inputs))
    W = rng.normal(size=(n_in, n_out))
    b = bias_scale * rng.normal(size=n_out)
    layer.set_weights([W.astype("float32"), b.astype("float32")])
    x = rng.normal(size=(3, n_in)).astype("float32")
    w = rng.normal(size=(3, n_out)).astype("float32")  # seed weights: R = y * w
    return model, x.astype(np.float64), W, b, w.astype(np.float64)


def run(model, rule, x, w, **kwargs):
    analyzer = ki.create_analyzer("lrp", model, rule=rule, neuron_selection_mode="index", **kwargs)
    return np.asarray(analyzer.relevance(x.astype("float32"), neuron_selection=w))


def gamma_reference(x, W, b, R, g):
    Wp, Wn = W + g * pos(W), W + g * neg(W)
    bp, bn = b + g * pos(b), b + g * neg(b)
    xp, xn = pos(x), neg(x)
    z = x @ W + b
    sp = (z > 0) * R / stab(xp @ Wp + xn @ Wn + bp)
    sn = (z < 0) * R / stab(xp @ Wn + xn @ Wp + bn)
    return xp * (sp @ Wp.T) + xn * (sp @ Wn.T) + xp * (sn @ Wn.T) + xn * (sn @ Wp.T)


def alpha_beta_reference(x, W, b, R, alpha, beta):
    Wp, Wn = pos(W), neg(W)
    xp, xn = pos(x), neg(x)
    sa = R / stab(xp @ Wp + xn @ Wn + pos(b))
    sb = R / stab(xp @ Wn + xn @ Wp + neg(b))
    return alpha * (xp * (sa @ Wp.T) + xn * (sa @ Wn.T)) - beta * (
        xp * (sb @ Wn.T) + xn * (sb @ Wp.T)
    )


@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
def test_gamma_rule_matches_zennit_definition(gamma):
    model, x, W, b, w = dense_model()
    R = (x @ W + b) * w
    expected = gamma_reference(x, W, b, R, gamma)
    np.testing.assert_allclose(run(model, GammaRule(gamma=gamma), x, w), expected, rtol=1e-4)


def test_gamma_zero_is_epsilon_1e6():
    model, x, W, b, w = dense_model()
    np.testing.assert_allclose(
        run(model, GammaRule(gamma=0.0), x, w),
        run(model, EpsilonRule(epsilon=1e-6), x, w),
        rtol=1e-5,
        atol=1e-7,
    )


def test_gamma_without_bias_conserves():
    model, x, W, b, w = dense_model(bias_scale=2.0)
    R = (x @ W + b) * w
    out = run(model, GammaRule(gamma=0.25, bias=False), x, w)
    np.testing.assert_allclose(out.sum(axis=1), R.sum(axis=1), rtol=1e-4)


@pytest.mark.parametrize("alpha,beta", [(2, 1), (1, 0)])
def test_zennit_alpha_beta_matches_definition(alpha, beta):
    model, x, W, b, w = dense_model()
    R = (x @ W + b) * w
    expected = alpha_beta_reference(x, W, b, R, alpha, beta)
    rule = ZennitAlphaBetaRule(alpha=alpha, beta=beta)
    np.testing.assert_allclose(run(model, rule, x, w), expected, rtol=1e-4, atol=1e-6)


def test_zennit_zplus_is_alpha1_beta0_and_uses_positive_bias():
    model, x, W, b, w = dense_model()
    R = (x @ W + b) * w
    expected = alpha_beta_reference(x, W, b, R, 1, 0)
    np.testing.assert_allclose(run(model, ZennitZPlusRule(), x, w), expected, rtol=1e-4)
    # non-negative inputs take the one-pass branch: same definition
    xp = np.abs(x)
    R = (xp @ W + b) * w
    expected = alpha_beta_reference(xp, W, b, R, 1, 0)
    np.testing.assert_allclose(run(model, ZennitZPlusRule(), xp, w), expected, rtol=1e-4)


def test_zbox_matches_definition_with_array_bounds():
    model, x, W, b, w = dense_model()
    low = np.array([-1.0, -2.0, -0.5, -1.5, -3.0])
    high = np.array([1.0, 2.5, 0.5, 2.0, 3.0])
    x = np.clip(x, low, high)
    R = (x @ W + b) * w
    z = x @ W - low @ pos(W) - high @ neg(W)
    s = R / stab(z)
    expected = x * (s @ W.T) - low * (s @ pos(W).T) - high * (s @ neg(W).T)
    out = run(model, ZBoxRule(low=low, high=high), x, w)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), R.sum(axis=1), rtol=1e-4)  # bias ignored


def test_zbox_per_channel_bounds_on_a_convolution():
    rng = np.random.default_rng(1)
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(inputs))
    x = rng.uniform(-1, 1, (2, 6, 6, 3)).astype("float32")
    low, high = np.array([-1.0, -2.0, -3.0]), np.array([1.0, 2.0, 3.0])
    full_low = np.broadcast_to(low, (6, 6, 3)).copy()
    full_high = np.broadcast_to(high, (6, 6, 3)).copy()
    a = ki.create_analyzer("lrp.z", model, input_layer_rule=ZBoxRule(low, high))
    b = ki.create_analyzer("lrp.z", model, input_layer_rule=ZBoxRule(full_low, full_high))
    np.testing.assert_allclose(np.asarray(a.relevance(x)), np.asarray(b.relevance(x)), rtol=1e-5)
    wrong = ki.create_analyzer("lrp.z", model, input_layer_rule=ZBoxRule(np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match="4 per-channel values but layer 'c' has 3"):
        wrong.relevance(x)


def test_norm_rule_on_add_by_layer_class():
    rng = np.random.default_rng(2)
    inputs = keras.Input((4,))
    da, db = keras.layers.Dense(3, name="a"), keras.layers.Dense(3, name="b")
    model = keras.Model(inputs, keras.layers.Add(name="add")([da(inputs), db(inputs)]))
    Wa, Wb = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ba, bb = rng.normal(size=3), rng.normal(size=3)
    da.set_weights([Wa.astype("float32"), ba.astype("float32")])
    db.set_weights([Wb.astype("float32"), bb.astype("float32")])
    x = rng.normal(size=(2, 4))
    w = rng.normal(size=(2, 3))
    ya, yb = x @ Wa + ba, x @ Wb + bb
    R = (ya + yb) * w
    s = R / stab(ya + yb)
    expected = x * (((ya * s) / (x @ Wa)) @ Wa.T) + x * (((yb * s) / (x @ Wb)) @ Wb.T)
    rules = [(keras.layers.Add, NormRule()), ("dense", ZRule(bias=False))]
    np.testing.assert_allclose(run(model, rules, x, w), expected, rtol=1e-4)


def test_pass_rule_by_layer_name_equals_bn_rule_pass():
    rng = np.random.default_rng(3)
    inputs = keras.Input((4,))
    h = keras.layers.Dense(3, name="d1")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(h))
    bn = [rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)]
    model.get_layer("bn").set_weights(bn)
    x = rng.normal(size=(3, 4)).astype("float32")
    by_name = ki.create_analyzer(
        "lrp", model, rule=[("bn", PassRule()), ("dense", "Z")], bn_rule="linear"
    )
    passing = ki.create_analyzer("lrp.z", model, bn_rule="pass")
    np.testing.assert_allclose(by_name.relevance(x), passing.relevance(x), rtol=1e-6)
    with pytest.raises(ValueError, match="PassRule cannot be used at layer 'd2'"):
        ki.create_analyzer("lrp", model, rule=PassRule()).relevance(x)


COMPOSITE_RULES = {
    "lrp.epsilon_plus": (ZennitZPlusRule, ZennitZPlusRule, EpsilonRule),
    "lrp.epsilon_plus_flat": (FlatRule, ZennitZPlusRule, EpsilonRule),
    "lrp.epsilon_alpha2_beta1": (ZennitAlphaBetaRule, ZennitAlphaBetaRule, EpsilonRule),
    "lrp.epsilon_alpha2_beta1_flat": (FlatRule, ZennitAlphaBetaRule, EpsilonRule),
    "lrp.epsilon_gamma_box": (ZBoxRule, GammaRule, EpsilonRule),
}


def conv_net():
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(h)
    h = keras.layers.AveragePooling2D(2, name="pool")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="dense")(h))


@pytest.mark.parametrize("name", sorted(COMPOSITE_RULES))
def test_composites_place_zennits_rules(name):
    model = conv_net()
    kwargs = {"low": 0.0, "high": 1.0} if name == "lrp.epsilon_gamma_box" else {}
    analyzer = ki.create_analyzer(name, model, **kwargs)
    steps = {step.path: step for step in analyzer._steps}
    first, conv, dense = COMPOSITE_RULES[name]
    assert type(analyzer.rule_for(steps["conv1"])) is first
    assert type(analyzer.rule_for(steps["conv2"])) is conv
    rule = analyzer.rule_for(steps["dense"])
    assert type(rule) is dense and rule.epsilon == 1e-6
    if name == "lrp.epsilon_gamma_box":
        assert analyzer.rule_for(steps["conv2"]).gamma == 0.25
    if "alpha2" in name:
        conv_rule = analyzer.rule_for(steps["conv2"])
        assert (conv_rule.alpha, conv_rule.beta) == (2.0, 1.0)
    assert analyzer._weightless_epsilon == 1e-6  # Norm at average pooling
    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    out = np.asarray(analyzer.relevance(x))
    assert out.shape == x.shape and np.isfinite(out).all()


def test_composite_bias_free_conserves_and_layer_map_is_prepended():
    model = conv_net()
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.zeros(layer.bias.shape))
    x = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    analyzer = ki.create_analyzer("lrp.epsilon_gamma_box", model, low=0.0, high=1.0, bias=False)
    dense = model.get_layer("dense")  # the explained logit: the dense layer's pre-softmax
    features = np.asarray(keras.Model(model.inputs[0], dense.input)(x), dtype=np.float64)
    logits = features @ np.asarray(dense.kernel, dtype=np.float64)
    out = np.asarray(analyzer.relevance(x))
    np.testing.assert_allclose(out.reshape(2, -1).sum(1), logits.max(axis=1), rtol=1e-3)
    custom = ki.create_analyzer("lrp.epsilon_plus", model, layer_map=[("conv2", ZRule())])
    steps = {step.path: step for step in custom._steps}
    assert type(custom.rule_for(steps["conv2"])) is ZRule


def test_epsilon_gamma_box_needs_bounds():
    with pytest.raises(ValueError, match="low=... and high="):
        ki.create_analyzer("lrp.epsilon_gamma_box", conv_net())


def test_rule_names_and_argument_errors():
    assert isinstance(ki.rules.get_rule("Gamma"), GammaRule)
    assert isinstance(ki.rules.get_rule("Norm"), NormRule)
    assert isinstance(ki.rules.get_rule("Pass"), PassRule)
    with pytest.raises(ValueError, match="gamma >= 0"):
        GammaRule(gamma=-1)
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        ZennitAlphaBetaRule(alpha=2, beta=2)
    with pytest.raises(ValueError, match="low <= high"):
        ZBoxRule(low=1.0, high=0.0)
