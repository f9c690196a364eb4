"""Attention under CP-LRP and AttnLRP: MultiHeadAttention equals the hand-built block,
conservation on bias-free blocks, closed forms of the softmax and LayerNorm rules, ISNet
training through attention (backend-neutral)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import keras_isnet as ki
from keras_isnet.composites import Composite

T, D, K = 5, 8, 4


def _data(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _mha_and_hand_built(use_bias: bool, residual: bool = False):
    """The same one-head attention as MultiHeadAttention and as Dense + ops.matmul + softmax."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T, D))
    mha = keras.layers.MultiHeadAttention(1, K, use_bias=use_bias)
    head = keras.layers.Dense(3, use_bias=use_bias)
    y = mha(x, x)
    if residual:
        y = x + y
    model = keras.Model(x, head(ops.mean(y, axis=1)))

    x2 = keras.Input((T, D))
    dq, dk, dv = (keras.layers.Dense(K, use_bias=use_bias) for _ in range(3))
    do = keras.layers.Dense(D, use_bias=use_bias)
    q, k, v = dq(x2), dk(x2), dv(x2)
    scores = ops.matmul(q * (1.0 / np.sqrt(K)), ops.transpose(k, (0, 2, 1)))
    y2 = do(ops.matmul(ops.softmax(scores, axis=-1), v))
    if residual:
        y2 = x2 + y2
    head2 = keras.layers.Dense(3, use_bias=use_bias)
    hand = keras.Model(x2, head2(ops.mean(y2, axis=1)))
    rng = np.random.default_rng(1)
    for dense, einsum in ((dq, mha._query_dense), (dk, mha._key_dense), (dv, mha._value_dense)):
        dense.kernel.assign(einsum.kernel.numpy()[:, 0, :])
        if use_bias:
            einsum.bias.assign(rng.normal(size=einsum.bias.shape).astype("float32") * 0.1)
            dense.bias.assign(einsum.bias.numpy()[0])
    do.kernel.assign(mha._output_dense.kernel.numpy()[0])
    head2.kernel.assign(head.kernel.numpy())
    if use_bias:
        mha._output_dense.bias.assign(rng.normal(size=(D,)).astype("float32") * 0.1)
        do.bias.assign(mha._output_dense.bias.numpy())
        head2.bias.assign(head.bias.numpy())
    return model, hand


@pytest.mark.parametrize("name", ["lrp.cp_lrp", "lrp.attn_lrp", "lrp.epsilon"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_multi_head_attention_equals_the_hand_built_block(name, use_bias):
    model, hand = _mha_and_hand_built(use_bias, residual=True)
    data = _data((4, T, D), 2)
    np.testing.assert_allclose(
        model.predict(data, verbose=0), hand.predict(data, verbose=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        ki.create_analyzer(name, model).analyze(data),
        ki.create_analyzer(name, hand).analyze(data),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("which", [0, 1])
def test_cp_lrp_conserves_relevance_on_bias_free_attention(which):
    model = _mha_and_hand_built(use_bias=False, residual=True)[which]
    data = _data((4, T, D), 3)
    heatmap = ki.create_analyzer("lrp.cp_lrp", model).analyze(data)
    logits = model.predict(data, verbose=0).max(axis=1)
    np.testing.assert_allclose(heatmap.reshape(4, -1).sum(axis=1), logits, rtol=1e-4)


def test_cp_lrp_gives_queries_and_keys_no_relevance():
    """With the attention weights constant, only the value path carries relevance: a model
    whose value projection is zero gets an all-zero heatmap."""
    model, _ = _mha_and_hand_built(use_bias=False)
    mha = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)
    )
    data = _data((2, T, D), 4)
    before = ki.create_analyzer("lrp.cp_lrp", model).analyze(data)
    assert np.abs(before).max() > 1e-3
    mha._value_dense.kernel.assign(np.zeros(mha._value_dense.kernel.shape, "float32"))
    after = ki.create_analyzer("lrp.cp_lrp", model, epsilon=1.0).analyze(data)
    np.testing.assert_allclose(after, 0.0, atol=1e-7)


def test_uniform_products_conserve_relevance_with_softmax_passing():
    """lrp.epsilon (uniform products, softmax passes) on a bias-free block: the bilinear
    uniform rule is conservative, so the whole block is."""
    _, hand = _mha_and_hand_built(use_bias=False, residual=True)
    data = _data((4, T, D), 5)
    heatmap = ki.create_analyzer("lrp.epsilon", hand).analyze(data)
    logits = hand.predict(data, verbose=0).max(axis=1)
    np.testing.assert_allclose(heatmap.reshape(4, -1).sum(axis=1), logits, rtol=1e-4)


def _stable(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def test_attn_lrp_softmax_rule_closed_form():
    """x -> Dense -> softmax -> Dense: R_h = h (R_s - s sum R_s) (AttnLRP's softmax rule)."""
    keras.utils.set_random_seed(6)
    x = keras.Input((4,))
    first = keras.layers.Dense(5, use_bias=False)
    head = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(x, head(ops.softmax(first(x), axis=-1)))
    data = _data((3, 4), 7)
    heatmap = ki.create_analyzer("lrp.attn_lrp", model).analyze(data)
    W1, W2 = first.kernel.numpy().astype("float64"), head.kernel.numpy().astype("float64")
    h = data.astype("float64") @ W1
    s = np.exp(h - h.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    y = s @ W2
    j = y.argmax(1)
    R_y = np.zeros_like(y)
    R_y[np.arange(3), j] = y[np.arange(3), j]
    R_s = s * ((R_y / _stable(y, 1e-6)) @ W2.T)
    R_h = h * (R_s - s * R_s.sum(1, keepdims=True))
    expected = data * ((R_h / _stable(h, 1e-6)) @ W1.T)
    np.testing.assert_allclose(heatmap, expected, rtol=1e-4, atol=1e-6)


def test_attn_lrp_layer_norm_closed_form():
    """R_x = x (u - mean u), u = gamma / sigma * R / (y + 1e-6), sigma held constant."""
    keras.utils.set_random_seed(8)
    x = keras.Input((6,))
    ln = keras.layers.LayerNormalization(epsilon=1e-5)
    head = keras.layers.Dense(2, use_bias=False)
    model = keras.Model(x, head(ln(x)))
    rng = np.random.default_rng(9)
    ln.gamma.assign(rng.uniform(0.5, 1.5, 6).astype("float32"))
    ln.beta.assign(rng.normal(size=6).astype("float32") * 0.1)
    data = _data((3, 6), 10).astype("float64")
    heatmap = ki.create_analyzer("lrp.attn_lrp", model).analyze(data.astype("float32"))
    gamma, beta, W = (v.numpy().astype("float64") for v in (ln.gamma, ln.beta, head.kernel))
    sigma = np.sqrt(data.var(1, keepdims=True) + 1e-5)
    y_ln = (data - data.mean(1, keepdims=True)) / sigma * gamma + beta
    out = y_ln @ W
    j = out.argmax(1)
    R = np.zeros_like(out)
    R[np.arange(3), j] = out[np.arange(3), j]
    R_ln = y_ln * ((R / _stable(out, 1e-6)) @ W.T)
    u = gamma / sigma * R_ln / (y_ln + 1e-6)
    expected = data * (u - u.mean(1, keepdims=True))
    np.testing.assert_allclose(heatmap, expected, rtol=1e-4, atol=1e-6)


def test_composite_options_are_checked():
    with pytest.raises(ValueError, match="products must be one of"):
        Composite(products="half")
    with pytest.raises(ValueError, match="softmax must be one of"):
        Composite(softmax="gradient")


def test_attention_masks_are_refused():
    x = keras.Input((T, D))
    y = keras.layers.MultiHeadAttention(1, K)(x, x, use_causal_mask=True)
    model = keras.Model(x, keras.layers.Dense(2)(ops.mean(y, axis=1)))
    with pytest.raises(ki.UnsupportedLayerError, match="use_causal_mask"):
        ki.create_analyzer("lrp.cp_lrp", model)


def test_isnet_trains_through_attention():
    keras.utils.set_random_seed(11)
    images = keras.Input((8, 8, 1))
    patches = keras.layers.Conv2D(D, 4, strides=4)(images)  # 2 x 2 patches
    tokens = keras.layers.Reshape((4, D))(patches)
    attended = tokens + keras.layers.MultiHeadAttention(2, K)(tokens, tokens)
    logits = keras.layers.Dense(3)(ops.mean(keras.layers.LayerNormalization()(attended), axis=1))
    classifier = keras.Model(images, logits)
    x = np.random.default_rng(12).random((6, 8, 8, 1)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    masks = np.zeros((6, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1.0
    isnet = ki.ISNet(classifier, P=0.5)
    isnet.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = isnet.fit(x, labels, sample_weight=masks, epochs=2, batch_size=6, verbose=0)
    losses = history.history["heatmap_loss"]
    assert np.isfinite(losses).all()
