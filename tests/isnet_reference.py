"""The independent reference of the ISNet's training heatmaps, shared by the ISNet tests.

The heatmaps an ISNet trains on (``lrp="block"``, the default) must equal LRP analyzer
heatmaps for the same rules (issue 4), the official LRP Block's (issue 17): LRP-epsilon 1e-2
on kernel layers, the epsilon-stabilised z-rule on weightless layers, epsilon-stabilised max
pooling and the z^B rule with the input bounds and the bias at the first layer.

Also :func:`assert_isnet_trains`, the check that an ISNet trains through a layer type.
"""

from __future__ import annotations

import numpy as np

import keras_isnet as ki

#: the ISNet's LRP epsilon (its default).
EPS = 1e-2


def lrp_analyzer(model, input_bounds=(0.0, 1.0)):
    """An LRP analyzer with the ISNet's (LRP Block's) rules, built from its own composite
    (``input_bounds=None``: the epsilon rule at the first layer too), explaining the output
    index it is given."""
    from keras_isnet.composites import Composite

    first = None if input_bounds is None else ki.rules.ZbRule(*input_bounds, epsilon=EPS)
    composite = Composite(
        default=ki.rules.EpsilonRule(epsilon=EPS),
        first_layer=first,
        weightless_epsilon=EPS,
        max_pooling=ki.rules.MaxPoolEpsilonRule(epsilon=EPS),
    )
    return ki.analyzers.LRP(model, composite=composite, neuron_selection_mode="index")


def assert_class_maps_equal(maps, analyzer, x, *, selection=None, rtol=1e-5, atol=1e-6):
    """``maps[:, k]`` equals ``analyzer.analyze(x, neuron_selection=selection(k))`` for every
    class k (``selection`` default: the index k), to ``rtol`` and ``atol`` times the largest
    absolute reference value (which must be > 0)."""
    maps = np.asarray(maps)
    for k in range(maps.shape[1]):
        expected = analyzer.analyze(x, neuron_selection=k if selection is None else selection(k))
        scale = np.abs(expected).max()
        assert scale > 0, f"class {k}: the reference heatmap is all zero"
        np.testing.assert_allclose(maps[:, k], expected, rtol=rtol, atol=atol * scale)


def assert_isnet_trains(model, n=8, epochs=2):
    """Fit an ISNet of ``model`` (inputs ``(H, W, C)``, 3 classes) on ``n`` random images in
    [0, 1] with centred square masks; every loss and the background share stay finite."""
    import keras

    isnet = ki.ISNet(model)
    isnet.compile(optimizer=keras.optimizers.SGD(0.01))
    rng = np.random.default_rng(0)
    size, channels = model.input_shape[1], model.input_shape[-1]
    x = rng.random((n, size, size, channels), dtype=np.float32)
    masks = np.zeros((n, size, size), "float32")
    masks[:, size // 4 : -(size // 4), size // 4 : -(size // 4)] = 1
    history = isnet.fit(x, rng.integers(0, 3, n), sample_weight=masks, epochs=epochs, verbose=0)
    for key in ("loss", "heatmap_loss", "background_share"):
        assert np.all(np.isfinite(history.history[key])), key
