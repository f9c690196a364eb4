"""ISNet training of a segmentation U-Net with BatchNorm (dense logits, per-pixel labels).

Synthetic 24x24 images: a square (class 1) and a disk (class 2) inside a central region of
interest, on a noisy background (class 0); bright distractor stamps lie in the border
outside the region. The mask given to the ISNet is the region of interest: the part of the
image the network may look at. Each heatmap explains one class's logits summed over the
pixels of that class (variant "stochastic": per sample, a class drawn among those present
in its label map).

The same U-Net (Conv-BN-ReLU blocks, MaxPool, UpSampling, skip Concatenate, 1x1 logits) is
trained twice from the same initial weights, 2 x epochs each: plainly (P = 0: cross-entropy
only; the heatmaps are still computed, to measure them), and as the ISNet: plain epochs
whose heatmaps set C1/C2 (``ki.tune_cuts``: a class's logits summed over its pixels give
much larger relevance than one logit, so the default cuts do not fit), then ISNet epochs
with P = 0.7. Printed per run: pixel accuracy, the heatmap loss and the share of
|relevance| outside the region of interest on held-out images.

Run: python examples/isnet_segmentation.py [--epochs 5]   (CPU, under a minute)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402

SIZE = 24
CLASSES = 3
ROI = (4, 20)  # rows/cols [4, 20) are the region of interest


def make_data(n: int, seed: int = 0):
    """Images ``(n, 24, 24, 1)`` in [0, 1], labels ``(n, 24, 24)``, masks ``(n, 24, 24)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(0.2, 0.06, (n, SIZE, SIZE)).astype("float32")
    labels = np.zeros((n, SIZE, SIZE), "int32")
    lo, hi = ROI
    for i in range(n):
        while True:  # a square and a disk inside the region, not touching
            radii = rng.integers(2, 4, size=2)
            centres = [rng.integers(lo + r + 1, hi - r - 1, size=2) for r in radii]
            if np.hypot(*(centres[0] - centres[1])) > radii.sum() + 3:
                break
        for cls, r, (cy, cx) in zip((1, 2), radii, centres, strict=True):
            if cls == 1:
                shape = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            else:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 0.5) ** 2
            labels[i][shape] = cls
            images[i][shape] = rng.uniform(0.6, 0.9)
        for _ in range(3):  # distractors in the border (background class)
            cy, cx = rng.integers(0, 2, size=2) * (SIZE - 3) + rng.integers(0, 2, size=2)
            images[i, cy : cy + 2, cx : cx + 2] = rng.uniform(0.6, 0.9)
    masks = np.zeros((n, SIZE, SIZE), "float32")
    masks[:, lo:hi, lo:hi] = 1
    return np.clip(images, 0, 1)[..., None], labels, masks


def conv_bn_relu(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_unet(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    e1 = conv_bn_relu(inputs, 8, "enc1")
    b = conv_bn_relu(keras.layers.MaxPooling2D(name="pool")(e1), 16, "bottleneck")
    up = keras.layers.UpSampling2D(name="up")(b)
    d1 = conv_bn_relu(keras.layers.Concatenate(name="skip")([up, e1]), 8, "dec")
    logits = keras.layers.Conv2D(CLASSES, 1, name="logits")(d1)
    return keras.Model(inputs, logits, name="unet")


def run(isnet_P, epochs, data, test, weights, cuts=None):
    """Train from ``weights``: ``epochs`` plain epochs (P = 0); then, for the ISNet, C1/C2
    tuned from that plain model (``ki.tune_cuts``) and ``epochs`` more with P = isnet_P."""
    model = build_unet()
    model.set_weights(weights)
    # The Faster ISNet's "hybrid" foreground term (linear above C1 + C2, B = 1): the summed
    # relevance of a large class (the background) often exceeds the tuned C2, and the
    # original quadratic term then dominates the loss.
    isnet = ki.ISNet(model, variant="stochastic", P=0.0, seed=0, foreground="hybrid", B=1.0)
    isnet.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0), metrics=["accuracy"])
    dataset = ki.isnet_dataset(*data, batch_size=32)
    start = time.perf_counter()
    if isnet_P > 0:
        cuts = ki.tune_cuts(isnet, dataset, epochs=epochs)
        isnet._P_value.assign(isnet_P)
        isnet.P = isnet_P
    else:
        isnet.fit(dataset, epochs=epochs, verbose=0)
    isnet.fit(dataset, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    if cuts is not None:  # measure the heatmap loss with the same cuts
        isnet.loss_kwargs["C1"], isnet.loss_kwargs["C2"] = cuts
    results = isnet.evaluate(ki.isnet_dataset(*test, batch_size=64), verbose=0, return_dict=True)
    return seconds, results, cuts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="plain epochs, then ISNet epochs")
    parser.add_argument("--train", type=int, default=192)
    args = parser.parse_args(argv)
    data = make_data(args.train, seed=0)
    test = make_data(64, seed=1)
    weights = build_unet().get_weights()
    print(f"U-Net, {args.train} training images, 2 x {args.epochs} epochs, 'stochastic'")
    print(f"{'':10s} {'seconds':>8s} {'pixel acc':>10s} {'heatmap loss':>13s} {'bg share':>9s}")
    cuts = None
    for label, P in (("ISNet 0.7", 0.7), ("plain", 0.0)):
        seconds, r, cuts = run(P, args.epochs, data, test, weights, cuts)
        extra = f"   (tuned C1 = {cuts[0]:.3g}, C2 = {cuts[1]:.3g})" if P > 0 else ""
        print(
            f"{label:10s} {seconds:8.1f} {r['accuracy']:10.3f} {r['heatmap_loss']:13.3f} "
            f"{r['background_share']:9.3f}{extra}"
        )
    print(
        "bg share: |relevance| outside the region of interest / total |relevance|, on held-out"
        " images (inference-mode heatmaps: BatchNorm folded with its moving statistics); both"
        " heatmap losses use the tuned cuts."
    )


if __name__ == "__main__":
    main()
