"""LRP on a segmentation U-Net with BatchNorm: a pixel, a region, a class map, and where
relevance goes.

Trains a small U-Net (Conv-BN-ReLU encoder, a Conv2DTranspose and a bilinear UpSampling2D in
the decoder, skip concatenations, a 1x1 classifier) for a few epochs on synthetic images of
squares (class 1) and disks (class 2) on a noisy background (class 0), then

* explains one pixel, the square's class over a box around it, and the whole class map of
  the pixels predicted as "square" with LRP-epsilon (epsilon 1e-9, biases ignored,
  BatchNorm folded), checks that each heatmap sums to the explained quantity, and writes
  the heatmaps to docs/segmentation_heatmaps.png;
* checks that folding BatchNorm changes no prediction;
* prints the per-layer conservation report of the same analysis with biases on (the
  missing relevance sits in the biases and the folded BatchNorm shifts) and plots it to
  docs/conservation.png.

Run: python examples/segmentation_unet.py [--epochs 6] [--out docs]   (CPU, about a minute)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.canonizers import fold_batch_norm  # noqa: E402
from keras_isnet.conservation import conservation_report  # noqa: E402
from keras_isnet.segmentation import (  # noqa: E402
    class_region_selection,
    predicted_class_selection,
)

SIZE = 32
CLASSES = ("background", "square", "disk")


def make_data(n: int, seed: int = 0):
    """Images ``(n, 32, 32, 1)`` in [0, 1] and integer masks ``(n, 32, 32)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(0.2, 0.08, (n, SIZE, SIZE)).astype("float32")
    masks = np.zeros((n, SIZE, SIZE), dtype="int32")
    for i in range(n):
        while True:  # a square and a disk that do not touch
            radii = rng.integers(3, 6, size=2)
            centres = [rng.integers(r + 2, SIZE - r - 2, size=2) for r in radii]
            if np.hypot(*(centres[0] - centres[1])) > radii.sum() + 4:
                break
        for cls, r, (cy, cx) in zip((1, 2), radii, centres, strict=True):
            if cls == 1:
                shape = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            else:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 1) ** 2
            masks[i][shape] = cls
            images[i][shape] = rng.uniform(0.6, 0.9) + rng.normal(0, 0.05, shape.sum())
    return np.clip(images, 0, 1)[..., None], masks


def conv_bn_relu(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_unet():
    """Encoder-decoder with skip concatenations; logits from layer "logits", then softmax."""
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    e1 = conv_bn_relu(inputs, 8, "enc1")
    e2 = conv_bn_relu(keras.layers.MaxPooling2D(name="pool1")(e1), 16, "enc2")
    b = conv_bn_relu(keras.layers.MaxPooling2D(name="pool2")(e2), 32, "bottleneck")
    u2 = keras.layers.Conv2DTranspose(16, 2, strides=2, name="up2")(b)
    d2 = conv_bn_relu(keras.layers.Concatenate(name="skip2")([u2, e2]), 16, "dec2")
    u1 = keras.layers.UpSampling2D(interpolation="bilinear", name="up1")(d2)
    d1 = conv_bn_relu(keras.layers.Concatenate(name="skip1")([u1, e1]), 8, "dec1")
    logits = keras.layers.Conv2D(len(CLASSES), 1, name="logits")(d1)
    probs = keras.layers.Softmax(name="softmax")(logits)
    return keras.Model(inputs, probs, name="unet")


def train(epochs: int, seed: int = 0):
    keras.utils.set_random_seed(seed)
    x_train, y_train = make_data(384, seed=seed)
    model = build_unet()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    return model


def relative_error(heatmap, explained):
    return abs(float(heatmap.sum(dtype=np.float64)) - explained) / abs(explained)


def plot_heatmaps(path, image, truth, prediction, maps, titles):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0 * (3 + len(maps)) * 0.8, 3.0), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 + len(maps))
    axes[0].imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(truth, cmap="viridis", vmin=0, vmax=2)
    axes[1].set_title("truth (0 bg, 1 sq, 2 disk)", fontsize=8)
    axes[2].imshow(prediction, cmap="viridis", vmin=0, vmax=2)
    axes[2].set_title("prediction", fontsize=9)
    for ax, (heatmap, marks), title in zip(axes[3:], maps, titles, strict=True):
        ki.plot.heatmap(heatmap, ax=ax, mask=marks)  # red = for, blue = against, 0 = white
        ax.set_title(title, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="docs", help="folder for the PNG files")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    model = train(args.epochs)
    x_test, y_test = make_data(16, seed=1)
    probs = model.predict(x_test, verbose=0)
    accuracy = float((probs.argmax(-1) == y_test).mean())
    print(
        f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s, "
        f"test pixel accuracy {accuracy:.3f}"
    )

    # Folding BatchNorm leaves the predictions unchanged.
    folded = fold_batch_norm(model)
    deviation = float(np.abs(folded.predict(x_test) - probs).max())
    print(
        f"BatchNorm folds: {len(folded.folds)}, fallbacks: {folded.fallbacks or 'none'}, "
        f"max |folded - original| prediction = {deviation:.2e}"
    )

    # The explained quantity, computed independently from the logits layer.
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    i, cls = 0, 1  # sample 0, class "square"
    x = x_test[i : i + 1]
    logits = logits_model.predict(x, verbose=0)[0]
    predicted = probs[i].argmax(-1)

    rows, cols = np.nonzero(predicted == cls)
    r, c = int(np.median(rows)), int(np.median(cols))  # a pixel inside the square
    box = np.zeros((SIZE, SIZE), bool)
    box[max(r - 6, 0) : r + 7, max(c - 6, 0) : c + 7] = True
    class_map = predicted_class_selection(probs[i : i + 1], cls)
    selections = {
        f"pixel ({r}, {c}), class {cls}": ((r, c, cls), float(logits[r, c, cls]), None),
        f"class {cls} over a 13x13 box": (
            class_region_selection(model, cls, box),
            float(logits[..., cls][box].sum()),
            box,
        ),
        f"class {cls} over its predicted pixels": (
            class_map,
            float((logits * class_map[0]).sum()),
            predicted == cls,
        ),
    }

    analyzer = ki.create_analyzer(
        "lrp.epsilon", model, epsilon=1e-9, bias=False, neuron_selection_mode="index"
    )
    maps, titles = [], []
    print("\nLRP-epsilon (1e-9), bias ignored, BatchNorm folded:")
    worst = 0.0
    for title, (selection, explained, marks) in selections.items():
        heatmap = analyzer.analyze(x, neuron_selection=selection)[0]
        err = relative_error(heatmap, explained)
        worst = max(worst, err)
        print(
            f"  {title:34s} explained {explained:10.4f}  heatmap sum "
            f"{heatmap.sum(dtype=np.float64):10.4f}  relative error {err:.1e}"
        )
        maps.append((heatmap, marks))
        titles.append(f"{title}\nsum {heatmap.sum():.3g} = {explained:.3g}")
    again = analyzer.analyze(x, neuron_selection=selections[title][0])[0]
    print(f"  repeated run identical: {bool(np.array_equal(again, maps[-1][0]))}")
    # Where a bias-free rule loses relevance: outputs whose inputs are all zero.
    free = conservation_report(analyzer, x, neuron_selection=class_map)
    alone = sum(layer.bias_only_outputs for layer in free.layers)
    print(
        f"  class map, bias-free report: gap {100 * free.relative_gap:.2g} %, "
        f"{alone} layer outputs carried by the bias alone"
    )
    assert worst < 1e-4, f"conservation violated: relative error {worst:.2e}"

    # zennit's composite (z-plus on convolutions) for comparison: sharper, not conserving.
    plus = ki.create_analyzer("lrp.epsilon_plus", model, neuron_selection_mode="index")
    maps.append((plus.analyze(x, neuron_selection=class_map)[0], predicted == cls))
    titles.append(f"lrp.epsilon_plus (composite)\nclass {cls} over its predicted pixels")
    path = out / "segmentation_heatmaps.png"
    plot_heatmaps(path, x[0], y_test[i], predicted, maps, titles)
    print(f"wrote {path}")

    # With biases: where does the relevance go?
    with_bias = ki.create_analyzer(
        "lrp.epsilon", model, epsilon=1e-9, bias=True, neuron_selection_mode="index"
    )
    report = conservation_report(with_bias, x, neuron_selection=class_map)
    print()
    print(report.to_text())
    print(f"sum of absorbed {report.absorbed_total:.6g} = gap {report.gap:.6g}")
    path = out / "conservation.png"
    report.plot(path, title="U-Net, LRP-epsilon (1e-9) with biases, class map of 'square'")
    print(f"wrote {path}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
