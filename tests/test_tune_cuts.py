"""ki.tune_cuts: the C1/C2 estimate of the method page, checked against its formula."""

import keras
import numpy as np
import pytest

import keras_isnet as ki


def _toy():
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 48)
    masks = np.zeros((48, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    return model, x, y, masks


def test_tune_cuts_matches_the_formula_and_restores_P():
    model, x, y, masks = _toy()
    isnet = ki.ISNet(model, variant="stochastic", P=0.7, seed=1)
    isnet.compile(optimizer=keras.optimizers.SGD(1e-2))
    data = ki.isnet_dataset(x, y, masks, batch_size=16, shuffle=False)
    c1, c2 = ki.tune_cuts(isnet, data, epochs=1)
    assert isnet.P == 0.7 and float(isnet._P_value.numpy()) == pytest.approx(0.7)
    assert (isnet.loss_kwargs["C1"], isnet.loss_kwargs["C2"]) == (c1, c2)

    # Independent recomputation: the same heatmaps with the trained weights, then the formula.
    # (The stochastic class choice is random, so use the deterministic selective variant.)
    sel = ki.ISNet(model, variant="selective")
    _, heat = sel.heatmaps.logits_and_heatmaps(x, y, variant="selective")
    assert heat.shape == (48, 1, 8, 8, 1)
    sel.compile(optimizer=keras.optimizers.SGD(0.0))
    c1s, c2s = ki.tune_cuts(sel, data, epochs=1)  # lr 0: the weights do not move
    values = np.abs(np.asarray(heat)).sum(axis=(2, 3, 4)).mean(axis=1)
    mu, sigma = values.mean(), values.std(ddof=1)
    expected_c1 = max(mu / 5, mu - 3 * sigma)
    expected_c2 = min(25 * expected_c1, mu + 3 * sigma)
    assert c1s == pytest.approx(expected_c1, rel=1e-4)
    assert c2s == pytest.approx(expected_c2, rel=1e-4)
    assert 0 < c1 < c2


def test_tune_cuts_needs_a_compiled_isnet_and_epochs():
    model, x, y, masks = _toy()
    isnet = ki.ISNet(model)
    data = ki.isnet_dataset(x, y, masks, batch_size=16)
    with pytest.raises(ValueError, match="Compile"):
        ki.tune_cuts(isnet, data)
    isnet.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="epochs"):
        ki.tune_cuts(isnet, data, epochs=0)


def test_the_next_fit_trains_with_the_tuned_cuts():
    """The training epochs of tune_cuts compile the train step with the old cuts; the fit
    after it must use the new ones: its heatmap loss equals that of a fresh ISNet built with
    the tuned cuts on the same weights (learning rate 0, P = 1), and differs from the
    default cuts' loss."""
    model, x, y, masks = _toy()
    data = ki.isnet_dataset(x, y, masks, batch_size=48, shuffle=False)
    isnet = ki.ISNet(model, variant="selective", P=1.0)
    isnet.compile(optimizer=keras.optimizers.SGD(0.0))
    c1, c2 = ki.tune_cuts(isnet, data, epochs=1)
    tuned = isnet.fit(data, epochs=1, verbose=0).history["heatmap_loss"][0]

    def fresh_loss(**cuts):
        other = ki.ISNet(model, variant="selective", P=1.0, **cuts)
        other.compile(optimizer=keras.optimizers.SGD(0.0))
        return other.fit(data, epochs=1, verbose=0).history["heatmap_loss"][0]

    assert tuned == pytest.approx(fresh_loss(C1=c1, C2=c2), rel=1e-6)
    assert abs(tuned - fresh_loss()) > 1e-3 * abs(tuned)
