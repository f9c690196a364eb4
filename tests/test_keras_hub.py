"""keras-hub's ViT (random weights, nothing downloaded) analyzed and trained as an ISNet.

The reference is the hand-built ViT of ``keras_isnet.experiments.vit`` (whose attention
rules are checked against lxt in test_lxt_reference.py) with the keras-hub model's weights:
keras-hub's ViT with global average pooling and no class token is the same network, so the
two must give the same logits, heatmaps and ISNet losses. A class-token ViT is checked by
conservation on a bias-free model and by autodiff (the walk's gradient equals Keras').
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.experiments.vit import build_vit

if os.environ.get("CI"):  # CI installs keras-hub ([dev]): a failed import must fail there
    import keras_hub
else:
    keras_hub = pytest.importorskip("keras_hub")

SIZE, PATCH, DIM, MLP, DEPTH, CLASSES = 8, 4, 8, 16, 2, 3


def _hub_vit(pooling="gap", use_class_token=False, bias=True, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 1),
        patch_size=PATCH,
        num_layers=DEPTH,
        num_heads=2,
        hidden_dim=DIM,
        mlp_dim=MLP,
        use_class_token=use_class_token,
        use_mha_bias=bias,
        use_mlp_bias=bias,
        use_patch_bias=bias,
    )
    return keras_hub.models.ViTImageClassifier(backbone, num_classes=CLASSES, pooling=pooling)


def _randomise(model, seed):
    """Non-trivial LayerNorm/bias/embedding weights (keras-hub starts some at 0 or 1)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        variable.assign((rng.standard_normal(shape) * 0.3).astype("float32"))


def _hand_built_copy(hub):
    """build_vit with the weights of the keras-hub ViT (GAP pooling, no class token)."""
    vit = build_vit(
        1, input_shape=(SIZE, SIZE, 1), classes=CLASSES, patch=PATCH, dim=DIM, depth=DEPTH, mlp=MLP
    )
    embedding = hub.backbone.get_layer("vit_patching_and_embedding")
    encoder = hub.backbone.get_layer("vit_encoder")
    vit.get_layer("patch_embedding").set_weights(embedding.patch_embedding.get_weights())
    vit.get_layer("position_embedding").set_weights(embedding.position_embedding.get_weights())
    for i, block in enumerate(encoder.encoder_layers):
        vit.get_layer(f"block{i}_ln1").set_weights(block.layer_norm_1.get_weights())
        vit.get_layer(f"block{i}_attention").set_weights(block.mha.get_weights())
        vit.get_layer(f"block{i}_ln2").set_weights(block.layer_norm_2.get_weights())
        vit.get_layer(f"block{i}_mlp1").set_weights(block.mlp.dense_1.get_weights())
        vit.get_layer(f"block{i}_mlp2").set_weights(block.mlp.dense_2.get_weights())
    vit.get_layer("final_ln").set_weights(encoder.layer_norm.get_weights())
    vit.get_layer("logits").set_weights(hub.output_dense.get_weights())
    return vit


def _images(n=4, seed=1):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 1)).astype("float32")


@pytest.fixture(scope="module")
def pair():
    hub = _hub_vit()
    _randomise(hub, 0)
    return hub, _hand_built_copy(hub)


def test_the_pair_is_one_network(pair):
    hub, vit = pair
    x = _images()
    np.testing.assert_allclose(
        hub.predict(x, verbose=0), vit.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.cp_lrp", "lrp.attn_lrp"])
def test_hub_vit_heatmaps_equal_the_hand_built_vit(pair, name):
    hub, vit = pair
    x = _images()
    expected = ki.create_analyzer(name, vit).analyze(x)
    heatmap = ki.create_analyzer(name, hub).analyze(x)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(heatmap, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_hub_vit_walk_reaches_every_sublayer(pair):
    hub, _ = pair
    paths = [step.path for step in ki.create_analyzer("lrp.epsilon", hub).engine.steps]
    assert any(p.endswith("transformer_block_2/mha") for p in paths), paths
    assert any(p.endswith("mlp/dense_1") for p in paths), paths
    assert any(p.endswith("patch_embedding") for p in paths), paths


def test_class_token_vit_gradient_equals_autodiff():
    hub = _hub_vit(pooling="token", use_class_token=True)
    _randomise(hub, 2)
    x = _images(seed=3)
    walked = ki.create_analyzer("gradient", hub).analyze(x)
    autodiff = ki.create_analyzer("gradient.baseline", hub).analyze(x)
    assert np.abs(autodiff).max() > 1e-4
    np.testing.assert_allclose(walked, autodiff, rtol=1e-4, atol=1e-5 * np.abs(autodiff).max())


def test_class_token_vit_conserves_relevance_without_biases():
    """CP-LRP on a bias-free ViT with a zero class token and position embedding and
    LayerNorms without beta: nothing absorbs relevance, so the heatmap sums to the explained
    logit (epsilon tiny). (AttnLRP's softmax rule ``x (R - s sum R)`` is not conservative.)"""
    hub = _hub_vit(pooling="token", use_class_token=True, bias=False)
    _randomise(hub, 4)
    embedding = hub.backbone.get_layer("vit_patching_and_embedding")
    for variable in (embedding.class_token, embedding.position_embedding.embeddings):
        variable.assign(np.zeros(tuple(variable.shape), "float32"))
    for layer in hub._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.LayerNormalization):
            layer.beta.assign(np.zeros(tuple(layer.beta.shape), "float32"))
    hub.output_dense.bias.assign(np.zeros(CLASSES, "float32"))
    x = _images(seed=5)
    logits = hub.predict(x, verbose=0)
    heatmap = ki.create_analyzer("lrp.cp_lrp", hub, epsilon=1e-9).analyze(x)
    np.testing.assert_allclose(
        heatmap.reshape(len(x), -1).sum(axis=1), logits.max(axis=1), rtol=1e-3, atol=1e-5
    )


def test_hub_vit_isnet_loss_equals_the_hand_built_isnet(pair):
    hub, vit = pair
    x = _images(6, seed=6)
    labels = np.array([0, 1, 2, 0, 1, 2])
    masks = np.zeros((6, SIZE, SIZE), "float32")
    masks[:, 2:6, 2:6] = 1.0
    heatmaps, losses = [], []
    for classifier in (hub, vit):
        isnet = ki.ISNet(classifier, variant="selective", P=0.5)
        _, maps = isnet.heatmaps.logits_and_heatmaps(x, labels, variant="selective")
        heatmaps.append(ki.arrays.to_numpy(maps))
        isnet.compile(optimizer="sgd")
        logs = isnet.evaluate(
            x, labels, sample_weight=masks, batch_size=6, verbose=0, return_dict=True
        )
        losses.append((logs["heatmap_loss"], logs["classification_loss"]))
    scale = float(np.abs(heatmaps[1]).max())
    np.testing.assert_allclose(heatmaps[0], heatmaps[1], rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_hub_vit_isnet_step_equals_the_hand_built_step():
    hub = _hub_vit(seed=7)
    _randomise(hub, 7)
    vit = _hand_built_copy(hub)
    x = _images(8, seed=8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    masks = np.zeros((8, SIZE, SIZE), "float32")
    masks[:, 2:6, 2:6] = 1.0
    for classifier in (hub, vit):
        isnet = ki.ISNet(classifier, variant="selective", P=0.8)
        isnet.compile(optimizer=keras.optimizers.SGD(0.1))
        isnet.fit(x, labels, sample_weight=masks, epochs=1, batch_size=8, verbose=0)
    block = hub.backbone.get_layer("vit_encoder").encoder_layers[0]
    embedding = hub.backbone.get_layer("vit_patching_and_embedding")
    pairs = [
        (embedding.patch_embedding, vit.get_layer("patch_embedding")),
        (embedding.position_embedding, vit.get_layer("position_embedding")),
        (block.mha, vit.get_layer("block0_attention")),
        (block.layer_norm_1, vit.get_layer("block0_ln1")),
        (hub.output_dense, vit.get_layer("logits")),
    ]
    for hub_layer, vit_layer in pairs:
        for a, b in zip(hub_layer.get_weights(), vit_layer.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_class_token_hub_vit_trains_as_an_isnet():
    hub = _hub_vit(pooling="token", use_class_token=True, seed=9)
    x = _images(8, seed=10)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    masks = np.zeros((8, SIZE, SIZE), "float32")
    masks[:, 2:6, 2:6] = 1.0
    before = [w.copy() for w in hub.get_weights()]
    isnet = ki.ISNet(hub, variant="selective", P=0.8)
    isnet.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = isnet.fit(x, labels, sample_weight=masks, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    changed = [not np.array_equal(a, b) for a, b in zip(before, hub.get_weights(), strict=True)]
    assert all(changed)  # the class token and the position embedding included
