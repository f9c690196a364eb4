"""ISNet training of a segmentation U-Net (BatchNorm, dense logits) against a background shortcut.

Data: synthetic 24x24 images in [0, 1]. The network segments the central 16x16 region
(rows/cols [4, 20)) into background (class 0), squares (class 1) and disks (class 2): one or
two objects of one class per image, radius 2 or 3, grainy (pixel noise 0.1), on a noisy
background. Square and disk differ only in their corners. The shortcut is in the outer
2-pixel frame, outside the region: bright bars, horizontal ones (top and bottom) in square
images and vertical ones (left and right) in disk images. The ISNet mask, the part of the
image the network may look at, is the region plus a 2-pixel context band (rows/cols
[2, 22)). The 3x3 convolutions at the region's edge always read a little beyond it, so the
band keeps that from counting as a violation. The frame with the bars stays outside the mask.
The U-Net outputs logits for the region only (a final Cropping2D), so no label lies outside it.
Three test sets hold the same 128 images, differing only in the frame: "biased" (bars as in
training), "clean" (no bars) and "swapped" (each image gets the other class's bars).

Training (Adam, clipnorm 1.0, batch 16, 384 images): the plain U-Net runs 22 epochs at
lr 3e-3. The ISNet starts from the plain U-Net after its first 5 epochs. ``ki.tune_cuts``
trains those 5 plain epochs and sets C1/C2 from the heatmaps. The ISNet then trains 17 epochs
with P = 0.1 and lr 1e-3 (cosine decay to 0), so both models see 22 epochs. Heatmaps are
"stochastic" (per image, one class present in its label map, its logits summed over its
pixels). The heatmap loss uses the original "L2" foreground term with B = 1 (d = 0.9,
E = 1, the defaults). The "hybrid" term's linear branch is not divided by C1. A class's
relevance summed over its pixels runs into the hundreds, so that branch gave loss spikes of
10-30. A larger P moves less relevance outside the mask but costs clean accuracy. On seed 2,
P = 0.25 gives an outside share of 0.057 on the biased images (0.070 at P = 0.1) and a clean
object accuracy of 0.896 (0.942).

Printed per model and test set: pixel accuracy over the region, object accuracy (on the
square/disk pixels only, where the shortcut acts) and the outside share (|relevance|
outside the mask over all |relevance|, averaged over the class maps present in each image,
computed in inference mode with BatchNorm folded).

Measured on 2026-11-22, on a 2-core AMD EPYC CPU, seeds 0 / 1 / 2 (``--seed``):

    model  test set  pixel acc              object acc             outside share
    plain  biased    1.000 / 1.000 / 1.000  0.997 / 1.000 / 0.999  0.144 / 0.181 / 0.203
    plain  clean     0.997 / 0.998 / 0.996  0.983 / 0.988 / 0.978  0.110 / 0.141 / 0.174
    plain  swapped   0.949 / 0.952 / 0.895  0.696 / 0.712 / 0.424  0.159 / 0.189 / 0.215
    ISNet  biased    0.998 / 0.998 / 0.996  0.990 / 0.988 / 0.980  0.043 / 0.080 / 0.070
    ISNet  clean     0.995 / 0.995 / 0.990  0.973 / 0.969 / 0.942  0.034 / 0.068 / 0.066
    ISNet  swapped   0.986 / 0.987 / 0.967  0.918 / 0.926 / 0.816  0.053 / 0.092 / 0.088

Wall time: 60-65 s per run. Training takes 49-54 s: a 12-15 s warm-up shared by both
models, then 15-17 s more for the plain U-Net and 20-23 s for the ISNet.

The plain U-Net reads the bars. Give it the other class's bars and it gets 29-58 % of the
object pixels wrong. The ISNet puts 2.3-3.3 times less of its relevance outside the mask.
On the swapped images it loses 1-3 pixel-accuracy points, where the plain U-Net loses 5-11,
and 6-16 object-accuracy points, where the plain U-Net loses 29-58.
It does not remove the shortcut fully: LRP gives no relevance to a unit that is switched
off. Training never pairs a square with vertical bars, so a "vertical bars, so not a square"
path is never penalised. It does fire on the swapped images. The price on the biased and
clean images is at most 0.6 pixel-accuracy points and 1-4 object-accuracy points.

Run: python examples/isnet_segmentation.py [--seed 0]   (CPU, about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.metrics import background_relevance_share  # noqa: E402

SIZE = 24
CLASSES = 3  # background, square, disk
ROI = (4, 20)  # the segmented region: rows/cols [4, 20)
CONTEXT = 2  # the mask adds this band around the region; the bars lie outside it
BAR_LENGTH = 12
SHORTCUTS = ("biased", "clean", "swapped")
LOSS = {"foreground": "L2", "B": 1.0}  # heatmap loss options shared by both models


def make_data(n: int, seed: int = 0, shortcut: str = "biased"):
    """Images ``(n, 24, 24, 1)``, labels of the region ``(n, 16, 16)``, masks ``(n, 24, 24)``.

    The random draws do not depend on ``shortcut``: the three versions of a seed are the
    same images with different frames.
    """
    rng = np.random.default_rng(seed)
    lo, hi = ROI
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(0.2, 0.06, (n, SIZE, SIZE))
    labels = np.zeros((n, SIZE, SIZE), "int32")
    classes = rng.integers(1, CLASSES, size=n)
    for i, cls in enumerate(classes):
        count = rng.integers(1, 3)
        for _ in range(100):  # objects inside the region, 1 pixel from its edge, apart
            radii = rng.integers(2, 4, size=count)
            centres = [rng.integers(lo + r + 1, hi - r - 1, size=2) for r in radii]
            if count == 1 or np.hypot(*(centres[0] - centres[1])) > radii.sum() + 3:
                break
        else:
            radii, centres = radii[:1], centres[:1]
        for r, (cy, cx) in zip(radii, centres, strict=True):
            if cls == 1:
                shape = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            else:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 0.5) ** 2
            labels[i][shape] = cls
            images[i][shape] = rng.uniform(0.6, 0.9) + rng.normal(0, 0.1, shape.sum())
        starts = rng.integers(0, SIZE - BAR_LENGTH + 1, size=2)
        values = rng.uniform(0.6, 0.9, size=2)
        bar_class = {"biased": cls, "swapped": 3 - cls, "clean": 0}[shortcut]
        for side, start, value in zip((0, SIZE - lo + CONTEXT), starts, values, strict=True):
            frame = slice(side, side + lo - CONTEXT)  # the 2-pixel frame on this side
            span = slice(start, start + BAR_LENGTH)
            if bar_class == 1:  # horizontal bars, top and bottom
                images[i, frame, span] = value
            elif bar_class == 2:  # vertical bars, left and right
                images[i, span, frame] = value
    masks = np.zeros((n, SIZE, SIZE), "float32")
    masks[:, lo - CONTEXT : hi + CONTEXT, lo - CONTEXT : hi + CONTEXT] = 1
    images = np.clip(images, 0, 1).astype("float32")[..., None]
    return images, labels[:, lo:hi, lo:hi], masks


def conv_bn_relu(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_unet(width: int = 12, seed: int = 0):
    """Two-level U-Net; an output pixel sees up to 24x24 input pixels, the frame included."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    e1 = conv_bn_relu(inputs, width, "enc1")
    e2 = conv_bn_relu(keras.layers.MaxPooling2D(name="pool1")(e1), 2 * width, "enc2")
    b = conv_bn_relu(keras.layers.MaxPooling2D(name="pool2")(e2), 4 * width, "bottleneck")
    x = keras.layers.Concatenate(name="skip2")([keras.layers.UpSampling2D(name="up2")(b), e2])
    x = conv_bn_relu(x, 2 * width, "dec2")
    x = keras.layers.Concatenate(name="skip1")([keras.layers.UpSampling2D(name="up1")(x), e1])
    x = conv_bn_relu(x, width, "dec1")
    logits = keras.layers.Conv2D(CLASSES, 1, name="logits")(x)
    logits = keras.layers.Cropping2D(ROI[0], name="region")(logits)
    return keras.Model(inputs, logits, name="unet")


def scores(net: ki.ISNet, images, labels, masks) -> dict:
    """Pixel accuracy, object-pixel accuracy, and the outside share of the class maps."""
    predicted = np.argmax(net.predict(images, verbose=0), axis=-1)
    correct = predicted == labels
    # One map per class, each explaining that class's logits summed over its pixels; a class
    # absent from an image gives an all-zero map, whose share is NaN and left out.
    _, heatmaps = net.heatmaps.logits_and_heatmaps(images, labels, variant="original")
    heatmaps = np.asarray(heatmaps)[..., 0]  # (n, classes, 24, 24)
    shares = [background_relevance_share(heatmaps[:, c], masks) for c in range(CLASSES)]
    return {
        "pixel": correct.mean(),
        "object": correct[labels > 0].mean(),
        "outside": np.nanmean(np.stack(shares)),
    }


def train(seed, warmup, epochs, P, n_train):
    """The plain U-Net (warmup + epochs epochs) and the ISNet (warmup plain + epochs ISNet)."""
    data = ki.isnet_dataset(*make_data(n_train, seed=seed), batch_size=16, seed=seed)
    steps = epochs * int(np.ceil(n_train / 16))
    seconds = {}
    start = time.perf_counter()
    plain = ki.ISNet(build_unet(seed=seed), variant="stochastic", P=0.0, seed=seed, **LOSS)
    plain.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0))
    C1, C2 = ki.tune_cuts(plain, data, epochs=warmup)  # the first plain epochs
    warm = plain.classifier.get_weights()
    seconds["shared warm-up"] = time.perf_counter() - start

    start = time.perf_counter()
    plain.fit(data, epochs=epochs, verbose=0)
    seconds["plain"] = time.perf_counter() - start

    start = time.perf_counter()
    unet = build_unet(seed=seed)
    unet.set_weights(warm)
    # A second ISNet on a copy of the warm-up weights (the plain U-Net keeps training above),
    # with the tuned cuts and its own optimizer.
    isnet = ki.ISNet(unet, variant="stochastic", P=P, seed=seed, C1=C1, C2=C2, **LOSS)
    lr = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps)
    isnet.compile(optimizer=keras.optimizers.Adam(lr, clipnorm=1.0))
    isnet.fit(data, epochs=epochs, verbose=0)
    seconds["ISNet"] = time.perf_counter() - start
    return {"plain": plain, "ISNet": isnet}, seconds, (C1, C2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="data, weights and sampling seed")
    parser.add_argument("--warmup", type=int, default=5, help="plain epochs before the ISNet")
    parser.add_argument("--epochs", type=int, default=17, help="epochs after the warm-up")
    parser.add_argument("--P", type=float, default=0.1, help="heatmap loss weight")
    parser.add_argument("--train", type=int, default=384, help="training images")
    args = parser.parse_args(argv)

    models, seconds, (C1, C2) = train(args.seed, args.warmup, args.epochs, args.P, args.train)
    print(
        f"U-Net, {args.train} images, seed {args.seed}: plain {args.warmup + args.epochs} "
        f"epochs; ISNet {args.warmup} plain + {args.epochs} with P = {args.P} "
        f"(tuned C1 = {C1:.3g}, C2 = {C2:.3g})"
    )
    print("training:", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    print(f"{'model':6s} {'test set':9s} {'pixel acc':>9s} {'object acc':>10s} {'outside':>8s}")
    for shortcut in SHORTCUTS:  # same images, three frames
        test = make_data(128, seed=1000 + args.seed, shortcut=shortcut)
        for name, net in models.items():
            s = scores(net, *test)
            print(
                f"{name:6s} {shortcut:9s} {s['pixel']:9.3f} {s['object']:10.3f} {s['outside']:8.3f}"
            )
    print(
        "object acc: on the square/disk pixels; outside: |relevance| outside the mask / all "
        "|relevance|, mean over the class maps present in each image (inference mode)."
    )


if __name__ == "__main__":
    main()
