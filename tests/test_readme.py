"""The README's Python examples run as printed.

Each ```python block of README.md is executed verbatim, in a temporary directory, after a
prelude that defines the names the surrounding text promises (``unet``, ``classifier``,
``images``, ...) with tiny models and synthetic data. A new block without a prelude fails
the test below: write one, so that every example in the README stays true.
"""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest

import keras_isnet as ki

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _tiny_unet():
    """A BatchNorm U-Net-like model, 24x24x1 -> 24x24x2 logits, its BN statistics not trivial."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 1))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    a = keras.layers.ReLU()(keras.layers.BatchNormalization()(a))
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(a)
    b = keras.layers.UpSampling2D()(b)
    c = keras.layers.Concatenate()([a, b])
    outputs = keras.layers.Conv2D(2, 1)(c)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((8, 24, 24, 1), dtype=np.float32)
    model.fit(x, np.zeros((8, 24, 24, 2), np.float32), epochs=1, verbose=0)
    return model


def _tiny_classifier(size=16):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def _classification_data(n=64, size=16):
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size, 1), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    masks = np.zeros((n, size, size), np.float32)
    masks[:, 4:-4, 4:-4] = 1.0
    return images, labels, masks


def _prelude_segmentation():
    mask = np.zeros((24, 24), bool)
    mask[6:18, 6:18] = True
    x = np.random.default_rng(1).random((2, 24, 24, 1), dtype=np.float32)
    return {"unet": _tiny_unet(), "x": x, "mask": mask}


def _prelude_isnet():
    images, labels, masks = _classification_data()
    return {
        "keras": keras,
        "classifier": _tiny_classifier(),
        "images": images,
        "labels": labels,
        "masks": masks,
    }


def _prelude_metrics():
    images, _, masks = _classification_data(n=4)
    model = _tiny_classifier()
    heatmaps = ki.create_analyzer("lrp.epsilon", model).analyze(images)
    return {"model": model, "images": images, "heatmaps": heatmaps, "masks": masks}


def _prelude_plot():
    images, labels, masks = _classification_data(n=8)
    return {"keras": keras, "model": _tiny_classifier(), "classifier": _tiny_classifier(),
            "images": images, "labels": labels, "masks": masks}  # fmt: skip


#: the first line a block starts with (after its comment) -> the names it needs
PRELUDES = {
    'heatmaps = ki.create_analyzer("lrp.epsilon", model).analyze(images)': _prelude_plot,
    "watch = ki.callbacks.HeatmapCallback(": _prelude_plot,
    "from keras_isnet.metrics import model_randomization_test": _prelude_metrics,
    "import keras, numpy as np": dict,
    'a = ki.create_analyzer("lrp.epsilon", unet': _prelude_segmentation,
    'isnet = ki.ISNet(classifier, variant="stochastic"': _prelude_isnet,
    "data = ki.experiments.biased_mnist(": dict,
    "from keras_isnet.metrics import (insertion_curve": _prelude_metrics,
}


def _check_quickstart(ns):
    assert ns["heatmaps"].shape == ns["x"].shape  # "numpy, same shape as x"
    assert isinstance(ns["heatmaps"], np.ndarray)


def _check_segmentation(ns):
    assert ns["pixel"].shape == ns["x"].shape
    # without biases (epsilon 1e-9) the pixel's relevance sums to its logit
    logit = ns["unet"].predict(ns["x"], verbose=0)[:, 12, 20, 1]
    np.testing.assert_allclose(ns["pixel"].sum(axis=(1, 2, 3)), logit, rtol=1e-4, atol=1e-6)
    assert (pathlib.Path.cwd() / "conservation.png").exists()


def _check_isnet(ns):
    assert (pathlib.Path.cwd() / "classifier.keras").exists()
    reloaded = keras.models.load_model("classifier.keras")
    np.testing.assert_allclose(
        reloaded.predict(ns["images"], verbose=0), ns["isnet"].predict(ns["images"], verbose=0)
    )


def _check_biased_mnist(ns):
    assert ns["x"].shape[0] == ns["y"].shape[0] == ns["masks"].shape[0] == 3000  # "3000 / ..."
    assert set(np.unique(ns["masks"])) <= {0.0, 1.0}


def _check_plot(ns):
    for name in ("heatmap.png", "overlay.png", "grid.png"):
        assert (pathlib.Path.cwd() / name).stat().st_size > 1000, name
    assert ns["rgb"].shape == ns["images"].shape[1:3] + (3,)


def _check_callbacks(ns):
    assert len(ns["watch"].history) == 3  # "one per epoch"
    assert list((pathlib.Path.cwd() / "logs" / "heatmaps").glob("events.out.tfevents.*"))
    assert len(list((pathlib.Path.cwd() / "figures").glob("*.png"))) == 3
    assert ns["history"].history["P"] == [0.0, 0.8, 0.8]


def _check_sanity(ns):
    assert ns["mprt"].mean("spearman_abs")[0] == 1.0
    for name in ("randomization.png", "randomization_maps.png", "faithfulness.png"):
        assert (pathlib.Path.cwd() / name).exists(), name


#: what a block promises in its comments, checked after it ran
CHECKS = {
    'heatmaps = ki.create_analyzer("lrp.epsilon", model).analyze(images)': _check_plot,
    "watch = ki.callbacks.HeatmapCallback(": _check_callbacks,
    "from keras_isnet.metrics import model_randomization_test": _check_sanity,
    "import keras, numpy as np": _check_quickstart,
    'a = ki.create_analyzer("lrp.epsilon", unet': _check_segmentation,
    'isnet = ki.ISNet(classifier, variant="stochastic"': _check_isnet,
    "data = ki.experiments.biased_mnist(": _check_biased_mnist,
}


def _first_line(block):
    code = [line for line in block.splitlines() if line and not line.startswith("#")]
    return code[0] if code else ""


def _prelude_for(block):
    for start, prelude in PRELUDES.items():
        if _first_line(block).startswith(start):
            return prelude
    return None


def test_every_block_has_a_prelude():
    blocks = _blocks()
    assert len(blocks) >= len(PRELUDES)
    missing = [b.splitlines()[0] for b in blocks if _prelude_for(b) is None]
    assert not missing, f"README python blocks without a prelude in {__file__}: {missing}"


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    block = _blocks()[index]
    prelude = _prelude_for(block)
    if prelude is None:
        pytest.fail(f"README block {index} has no prelude: {block.splitlines()[0]!r}")
    monkeypatch.chdir(tmp_path)  # the blocks write figures and models
    namespace = {"ki": ki, "np": np, **prelude()}
    exec(compile(block, f"README.md block {index}", "exec"), namespace)
    for start, check in CHECKS.items():
        if _first_line(block).startswith(start):
            check(namespace)
