"""LRP deep supervision: hidden-layer heatmap losses combined by a 1-D GWRP."""

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet.losses import gwrp, isnet_heatmap_loss


def _toy():
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 6)
    masks = np.zeros((6, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    return model, x, y, masks


def test_loss_is_the_gwrp_of_the_per_layer_losses():
    model, x, y, masks = _toy()
    cuts = {"conv": {"C1": 0.5, "C2": 10.0}, "pool": {"C1": 0.2, "C2": 5.0}}
    isnet = ki.ISNet(model, variant="selective", deep_supervision=cuts, dLoss=0.5)
    _, _, heat, _, heatmaps = isnet._isnet_losses(x, y, masks, False)

    # Reference: the hidden relevances are the relevance at each layer's output, i.e. what
    # the next layer's LRP receives; recompute them with an LRP analyzer truncated there.
    plain = ki.ISNet(model, variant="selective")
    per_layer = [isnet_heatmap_loss(heatmaps, masks, reduction="none")]
    hidden = plain.heatmaps.hidden_keys(["conv", "pool"])
    _, _, maps = plain.heatmaps.logits_and_heatmaps(x, y, variant="selective", hidden=hidden)
    assert maps["conv"].shape == (6, 1, 8, 8, 3) and maps["pool"].shape == (6, 1, 4, 4, 3)
    for name in ("conv", "pool"):
        per_layer.append(isnet_heatmap_loss(maps[name], masks, reduction="none", **cuts[name]))
    stacked = np.stack([np.asarray(v) for v in per_layer], axis=-1)
    weights = 0.5 ** np.arange(3) / (0.5 ** np.arange(3)).sum()
    expected = (np.sort(stacked, axis=-1)[:, ::-1] * weights).sum(-1).mean()
    np.testing.assert_allclose(float(heat), expected, rtol=1e-5)
    np.testing.assert_allclose(float(heat), float(np.mean(gwrp(stacked, 0.5, axis=-1))), rtol=1e-5)


def test_hidden_relevance_of_the_pool_output_sums_like_the_input_relevance():
    # With the first Dense layer fed by the pool output, relevance at the pool output is
    # what crosses the Dense layer: for a bias-free model it sums to the explained value.
    model, x, y, masks = _toy()
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([layer.get_weights()[0], np.zeros_like(layer.get_weights()[1])])
    isnet = ki.ISNet(model, variant="stochastic", deep_supervision={"pool": {"C1": 1, "C2": 2}})
    keys = isnet.heatmaps.hidden_keys(["pool"])
    _, heatmaps, hidden = isnet.heatmaps.logits_and_heatmaps(
        x, y, variant="stochastic", hidden=keys
    )
    pool = np.asarray(hidden["pool"])
    inp = np.asarray(heatmaps)
    # epsilon 0.01 absorbs a little relevance per layer (at the conv and, since the default
    # became the official LRP Block, at max pooling: a R / (a + 0.01)), most for samples with
    # little relevance: both sums are close on the batch's scale.
    pool_sums, inp_sums = pool.sum(axis=(1, 2, 3, 4)), inp.sum(axis=(1, 2, 3, 4))
    scale = float(np.abs(pool_sums).max())
    np.testing.assert_allclose(pool_sums, inp_sums, rtol=0.1, atol=0.02 * scale)


def test_deep_supervision_errors():
    model, *_ = _toy()
    with pytest.raises(ValueError, match="not in model"):
        ki.ISNet(model, deep_supervision={"nope": {"C1": 1, "C2": 2}})
    with pytest.raises(ValueError, match="image-like"):
        ki.ISNet(model, deep_supervision={"logits": {"C1": 1, "C2": 2}})
    with pytest.raises(ValueError, match="C1"):
        ki.ISNet(model, deep_supervision={"conv": (1, 2)})
    with pytest.raises(ValueError, match="selective and stochastic"):
        ki.ISNet(model, variant="original", deep_supervision={"conv": {"C1": 1, "C2": 2}})


def test_fit_with_deep_supervision_runs_and_serializes(tmp_path):
    model, x, y, masks = _toy()
    isnet = ki.ISNet(model, deep_supervision={"conv": {"C1": 0.5, "C2": 10.0}})
    isnet.compile(optimizer=keras.optimizers.SGD(1e-2, clipnorm=1.0))
    history = isnet.fit(ki.isnet_dataset(x, y, masks, batch_size=3), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    isnet.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.deep_supervision == isnet.deep_supervision and loaded.dLoss == 0.8
    np.testing.assert_allclose(loaded.predict(x, verbose=0), isnet.predict(x, verbose=0))
