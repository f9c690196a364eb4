"""The official ISNet's rules against closed forms in NumPy (issue 17).

``ZbRule`` (z^B with the bias in the denominator), ``MaxPoolEpsilonRule`` (the LRP Block's
max pooling), LRP-Flex's modified gradient (ReLU ``y / (y + e)``, LRP-0 elsewhere, z^B at
the first layer), its selective quantity's seed, and the two stochastic draws.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.composites import Composite
from keras_isnet.rules import EpsilonRule, MaxPoolEpsilonRule, ZbRule, ZRule

EPS = 1e-2


def stab(z, eps=EPS):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def dense_net(seed=0, sizes=(5, 4, 3)):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],))]
    for size in sizes[1:-1]:
        layers += [keras.layers.Dense(size, bias_initializer="random_normal"), keras.layers.ReLU()]
    layers.append(keras.layers.Dense(sizes[-1], bias_initializer="random_normal"))
    return keras.Sequential(layers)


def test_zb_rule_puts_the_bias_in_the_denominator():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, bias_initializer="ones")])
    model.layers[0].bias.assign(np.array([0.5, -0.3, 0.2], "float32"))
    x = np.random.default_rng(1).random((4, 5)).astype("float32")
    low, high = 0.0, 1.0
    composite = Composite(default=ZRule(), first_layer=ZbRule(low, high, epsilon=EPS))
    analyzer = ki.analyzers.LRP(model, composite=composite, neuron_selection_mode="index")
    got = analyzer.analyze(x, neuron_selection=1)
    w, b = model.layers[0].get_weights()
    wp, wn, bp, bn = np.maximum(w, 0), np.minimum(w, 0), np.maximum(b, 0), np.minimum(b, 0)
    z = x @ w + b - low * (wp.sum(0) + bp) - high * (wn.sum(0) + bn)
    R = np.zeros((4, 3))
    R[:, 1] = (x @ w + b)[:, 1]
    s = R / stab(z)
    expected = x * (s @ w.T) - low * (s @ wp.T) - high * (s @ wn.T)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the analyzers' iNNvestigate z^B stays bias-free
    free = ki.create_analyzer(
        "lrp.z", model, input_layer_rule=(low, high), neuron_selection_mode="index"
    )
    assert not np.allclose(free.analyze(x, neuron_selection=1), got)


def test_zb_rule_metadata():
    rule = ZbRule()
    assert (rule.label, rule.uses_bias, rule.absorption()) == ("Zb(e=0.01)", True, ["epsilon"])
    assert isinstance(ki.rules.get_rule("Zb"), ZbRule)
    with pytest.raises(ValueError, match="epsilon > 0"):
        ZbRule(epsilon=0.0)


def test_max_pool_epsilon_rule_keeps_a_k_over_a_k_plus_eps():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(2, use_bias=False),
        ]
    )
    x = np.random.default_rng(2).random((3, 4, 4, 1)).astype("float32")
    rule = MaxPoolEpsilonRule(EPS)
    composite = Composite(default=ZRule(), max_pooling=rule)
    analyzer = ki.analyzers.LRP(model, composite=composite, neuron_selection_mode="index")
    got = analyzer.analyze(x, neuron_selection=0)
    # closed form: the pooled values, LRP-0 at the Dense, then x * unpool(R / stab(a))
    windows = x.reshape(3, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(3, 2, 2, 4)
    a = windows.max(-1)
    w = model.layers[-1].get_weights()[0]
    flat = a.reshape(3, 4)
    R_pool = (flat * w[:, 0] * ((flat @ w)[:, :1] / (flat @ w)[:, :1])).reshape(3, 2, 2)
    share = (windows == a[..., None]).astype("float32")
    R_windows = share * windows * (R_pool / stab(a))[..., None]
    expected = R_windows.reshape(3, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(3, 4, 4, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert (rule.label, rule.absorption()) == (
        "MaxPoolEpsilon(e=0.01)",
        ["epsilon", "max-pool ties"],
    )
    assert analyzer.conservation_info(analyzer.engine.steps[0])[0] == "MaxPoolEpsilon(e=0.01)"
    with pytest.raises(TypeError, match="max-pooling layers only"):
        ki.create_analyzer("lrp", model, rule="MaxPoolEpsilon").analyze(x)


def _flex_closed_form(model, x, cotangent):
    """LRP-Flex by hand for Dense-ReLU-Dense-ReLU-Dense: the ReLU gradient times y/(y+e),
    plain gradients elsewhere, R = y1 * g at the first ReLU, z^B (0, 1) with the bias."""
    (w1, b1), (w2, b2), (w3, _) = (layer.get_weights() for layer in model.layers[::2])
    y1 = np.maximum(x @ w1 + b1, 0)
    y2 = np.maximum(y1 @ w2 + b2, 0)
    g2 = (cotangent @ w3.T) * y2 / (y2 + EPS)
    R1 = y1 * (g2 @ w2.T)
    wn = np.minimum(w1, 0)
    z = x @ w1 + b1 - (wn.sum(0) + np.minimum(b1, 0))
    s = R1 / stab(z)
    return x * (s @ w1.T) - s @ wn.T


def test_flex_original_is_the_modified_gradient():
    model = dense_net(0, (5, 4, 4, 3))
    x = np.random.default_rng(3).random((6, 5)).astype("float32")
    heatmaps = ki.ISNetHeatmaps(model, lrp="flex")
    _, maps = heatmaps.logits_and_heatmaps(x, variant="original")
    maps = ki.arrays.to_numpy(maps)
    for c in range(3):
        onehot = np.zeros((6, 3), "float32")
        onehot[:, c] = 1
        np.testing.assert_allclose(
            maps[:, c], _flex_closed_form(model, x, onehot), rtol=2e-5, atol=1e-6
        )


@pytest.mark.parametrize("eps_s", [1e-2, 1e-7])
def test_flex_selective_quantity(eps_s):
    model = dense_net(1, (5, 4, 4, 3))
    x = np.random.default_rng(4).random((6, 5)).astype("float32")
    heatmaps = ki.ISNetHeatmaps(model, lrp="flex", selective_eps=eps_s)
    logits, maps = heatmaps.logits_and_heatmaps(x, variant="selective")
    z = ki.arrays.to_numpy(logits).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c = z.argmin(1)
    onehot = np.eye(3)[c]
    p_c = p[np.arange(6), c][:, None]
    # d/dz [log(p_c + eps) - log(1 - p_c + eps)]
    g = (1 / (p_c + eps_s) + 1 / (1 - p_c + eps_s)) * p_c * (onehot - p)
    expected = _flex_closed_form(model, x, g)
    np.testing.assert_allclose(ki.arrays.to_numpy(maps)[:, 0], expected, rtol=1e-4, atol=1e-7)


def test_block_seeds_original_with_the_detached_bias_logit():
    """Block original: the seed is the logit (value unchanged), the heatmap gradient does not
    reach the last bias."""
    model = dense_net(2)
    x = np.random.default_rng(5).random((4, 5)).astype("float32")
    heatmaps = ki.ISNetHeatmaps(model)
    bias = model.layers[-1].bias

    def loss():
        _, maps = heatmaps.logits_and_heatmaps(x, variant="original")
        return keras.ops.sum(keras.ops.square(maps)), None

    (_, _), grads = ki.backend.value_and_gradients(loss, [bias])
    assert grads[0] is None or float(np.abs(ki.arrays.to_numpy(grads[0])).max()) == 0.0


def test_stochastic_draws_block_one_coin_per_batch_flex_per_sample():
    logits = keras.ops.convert_to_tensor(
        np.random.default_rng(6).normal(size=(32, 4)).astype("float32")
    )
    top = np.argmax(ki.arrays.to_numpy(logits), 1)
    model = dense_net(3, (5, 4, 4))
    block = ki.ISNetHeatmaps(model, lrp="block").mode
    flex = ki.ISNetHeatmaps(model, lrp="flex").mode
    seed = keras.random.SeedGenerator(0)
    block_mixed = flex_mixed = 0
    for _ in range(20):
        b = ki.arrays.to_numpy(block.stochastic_classes(logits, seed)) == top
        f = ki.arrays.to_numpy(flex.stochastic_classes(logits, seed)) == top
        block_mixed += int(0 < b.sum() < 32)
        flex_mixed += int(0 < f.sum() < 32)
    assert block_mixed == 0  # the LRP Block's coin is one per batch
    assert flex_mixed == 20  # LRP-Flex draws per sample


def test_flex_refuses_what_it_cannot_do():
    model = dense_net(4)
    with pytest.raises(ValueError, match="lrp='block'"):
        ki.ISNet(model, lrp="flex", variant="dual")
    with pytest.raises(ValueError, match="lrp='block'"):
        ki.ISNet(model, lrp="flex", deep_supervision={"dense": {"C1": 1, "C2": 25}})
    with pytest.raises(ValueError, match="lrp='block'"):
        ki.ISNetHeatmaps(model, lrp="flex").analyzer  # noqa: B018
    isnet = ki.ISNet(model, lrp="flex", selective_eps=1e-2)
    config = isnet.get_config()
    assert (config["lrp"], config["selective_eps"]) == ("flex", 1e-2)
    assert EpsilonRule is not None
