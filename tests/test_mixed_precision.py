"""Mixed precision (issue 12, item 1): analyzers and ISNet training under mixed_float16 and
mixed_bfloat16. Every CNN with a convolution after a pooling or ReLU layer crashed with
"Input 'filter' of 'Conv2D' Op has type float32 that does not match type float16", and the
ISNet never scaled its loss for the LossScaleOptimizer (updates ~3e4 times too small)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki

POLICIES = {"mixed_float16": 2e-2, "mixed_bfloat16": 1.5e-1}  # tolerance, relative to the max
#: the weight updates go through the heatmaps' gradients too (divisions by stabilised z)
STEP_FACTOR = 2.5


def _cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


@pytest.fixture
def twins(request):
    """The same CNN (same weights) in float32 and under the mixed policy ``request.param``."""
    keras.utils.set_random_seed(0)
    reference = _cnn()
    weights = reference.get_weights()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        mixed = _cnn()
        mixed.set_weights(weights)
        yield reference, mixed, POLICIES[request.param]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8, 1)).astype("float32")
    return x, np.arange(8) % 3, np.ones((8, 8, 8), "float32")


@pytest.mark.parametrize("twins", list(POLICIES), indirect=True)
@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.alpha_2_beta_1", "gradient"])
def test_analyzers_run_in_the_compute_dtype_and_agree_with_float32(twins, name):
    reference, mixed, tolerance = twins
    x, _, _ = _data()
    expected = ki.create_analyzer(name, reference).analyze(x)
    got = ki.create_analyzer(name, mixed).analyze(x)
    assert got.shape == x.shape and np.isfinite(got).all()
    scale = float(np.abs(expected).max())
    if name == "lrp.alpha_2_beta_1":  # 2 R+ - R-: the parts' rounding survives the difference
        tolerance *= 2.0
    assert float(np.abs(got - expected).max()) <= tolerance * scale


@pytest.mark.parametrize("twins", list(POLICIES), indirect=True)
@pytest.mark.parametrize("variant", ["selective", "original", "stochastic"])
def test_isnet_step_equals_the_float32_step(twins, variant):
    reference, mixed, tolerance = twins
    x, y, masks = _data()
    steps = {}
    for key, model in (("float32", reference), ("mixed", mixed)):
        isnet = ki.ISNet(model, variant=variant, seed=1)
        optimizer = keras.optimizers.SGD(0.1)
        if key == "mixed" and keras.mixed_precision.global_policy().name == "mixed_float16":
            # what compile() wraps SGD in, with a first scale whose float16 gradients do not
            # overflow (the default 2**15 skips the first steps, as in any Keras training)
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**7)
        isnet.compile(optimizer=optimizer)
        before = [np.asarray(w, "float64") for w in model.get_weights()]
        logs = isnet.train_on_batch(x, y, sample_weight=masks, return_dict=True)
        after = [np.asarray(w, "float64") for w in model.get_weights()]
        steps[key] = ([a - b for a, b in zip(after, before, strict=True)], logs)
    (d32, logs32), (dmix, logsmix) = steps["float32"], steps["mixed"]
    for key in ("classification_loss", "heatmap_loss"):
        assert logsmix[key] == pytest.approx(logs32[key], rel=float(tolerance))
    for a, b in zip(dmix, d32, strict=True):  # the updates, not 3e4 times too small
        bound = STEP_FACTOR * tolerance * float(np.abs(b).max()) + 1e-6
        assert float(np.abs(a - b).max()) <= bound


@pytest.mark.parametrize("twins", ["mixed_float16"], indirect=True)
def test_a_short_mixed_precision_fit_learns_as_the_float32_fit(twins):
    x, y, masks = _data()
    curves = []
    for model in twins[:2]:
        isnet = ki.ISNet(model, variant="selective", P=0.5)
        isnet.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = isnet.fit(x, y, sample_weight=masks, epochs=40, batch_size=8, verbose=0)
        curves.append(history.history["classification_loss"])
    assert isinstance(isnet.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras wrapped it
    float32, mixed = curves
    assert mixed[-1] < 0.92 * mixed[0]  # it learns (the first steps are skipped while the
    assert abs(mixed[-1] - float32[-1]) < 0.05  # loss scale adapts), as far as float32 does
