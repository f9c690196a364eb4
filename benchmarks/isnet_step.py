"""ISNet train-step cost relative to the plain classifier's, measured in one process.

Run: python benchmarks/isnet_step.py [--model demo|vgg|resnet] [--batch N] [--size S]
     [--repeats R] [--variants selective stochastic original] [--quick]
     [--backend tensorflow|jax|torch]

For one model architecture and one batch, it builds the plain classifier (cross-entropy)
and a selective, stochastic and original (10 classes) ISNet of the same architecture and
weights, and times one optimizer step (``train_on_batch``) of each. A fourth ISNet, the
``gradient_x_input`` ablation, is the cheapest heatmap loss there is (one ordinary backward
pass, differentiated once more): a reference for what any heatmap-based loss costs on the
architecture. The steps are
interleaved (plain, selective, stochastic, original, plain, ...), so that a slow phase of the
machine hits all of them alike; each row is the median over the repeats, divided by the
plain step's median. Targets (issue 4): selective <= 2.5x plain; original <= 0.6 x classes x
selective.

Architectures (all 10 classes, random weights, nothing downloaded):

* ``demo`` (default): the biased-MNIST demo's CNN, 3 x (Conv3x3+ReLU+MaxPool) with 16/32/32
  filters, Dense 64, Dense 10; 32x32x1 inputs, batch 64.
* ``vgg``: a VGG-style CNN, 3 stages of 2 x (Conv3x3+ReLU) + MaxPool with 32/64/128
  filters, Dense 128, Dense 10; 64x64x3 inputs, batch 32.
* ``resnet``: a ResNet-style CNN with BatchNormalization (the reference's setting: a
  ResNet), a Conv3x3+BN+ReLU stem and 3 stages of 2 basic blocks (32/64/128 filters,
  strided 1x1 shortcuts), global average pooling, Dense 10; 64x64x3 inputs, batch 32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _backend_from_argv(argv) -> None:
    """``--backend NAME`` sets KERAS_BACKEND before Keras is imported (default: the
    environment's KERAS_BACKEND, else TensorFlow)."""
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            os.environ["KERAS_BACKEND"] = argv[i + 1]
        elif arg.startswith("--backend="):
            os.environ["KERAS_BACKEND"] = arg.split("=", 1)[1]


_backend_from_argv(__import__("sys").argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.experiments.demo import cpu_name  # noqa: E402
from keras_isnet.experiments.training import build_classifier  # noqa: E402

CLASSES = 10
DEFAULTS = {"demo": (64, 32, 1), "vgg": (32, 64, 3), "resnet": (32, 64, 3)}


def vgg_style(input_shape, classes=CLASSES):
    """3 x (2 x Conv3x3+ReLU, MaxPool), 32/64/128 filters, Dense 128, Dense ``classes``."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(classes)(x), name="vgg_style")


def resnet_style(input_shape, classes=CLASSES, widths=(32, 64, 128), blocks=2):
    """A small ResNet with BatchNormalization: stem, 3 stages of basic blocks, GAP, Dense."""
    layers = keras.layers

    def conv_bn(x, filters, kernel, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input(input_shape)
    x = layers.ReLU()(conv_bn(inputs, widths[0], 3))
    for stage, filters in enumerate(widths):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.ReLU()(conv_bn(x, filters, 3, strides))
            y = conv_bn(y, filters, 3)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = conv_bn(shortcut, filters, 1, strides)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="resnet_style")


def build(name, input_shape):
    """The named architecture with weights from seed 0."""
    keras.utils.set_random_seed(0)
    if name == "demo":
        return build_classifier(0, input_shape=input_shape)
    return {"vgg": vgg_style, "resnet": resnet_style}[name](input_shape)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(DEFAULTS), default="demo")
    p.add_argument("--batch", type=int, help="default: 64 (demo), 32 (vgg, resnet)")
    p.add_argument("--size", type=int, help="image side; default: 32 (demo), 64 (vgg, resnet)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["selective", "stochastic", "original", "gradient_x_input"],
    )
    p.add_argument("--quick", action="store_true", help="3 repeats, a smoke test")
    p.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch"],
        help="Keras backend (default: KERAS_BACKEND, else tensorflow); read before Keras loads",
    )
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    batch, size, channels = DEFAULTS[args.model]
    batch, size = args.batch or batch, args.size or size

    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, channels), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch)
    masks = np.zeros((batch, size, size), np.float32)
    border = size // 8
    masks[:, border:-border, border:-border] = 1.0

    plain = build(args.model, (size, size, channels))
    plain.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    steps = {"plain": lambda: plain.train_on_batch(x, y)}
    for variant in args.variants:
        isnet = ki.ISNet(build(args.model, (size, size, channels)), variant=variant, seed=0)
        isnet.compile(optimizer=keras.optimizers.SGD(1e-3))
        steps[variant] = lambda isnet=isnet: isnet.train_on_batch(x, y, sample_weight=masks)

    for step in steps.values():  # build and trace, then one warm step
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    rows = {name: statistics.median(t) for name, t in times.items()}
    ratios = {k: v / rows["plain"] for k, v in rows.items()}

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"Keras {keras.__version__} on {keras.backend.backend()}; {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"model: {args.model}, batch {batch} x {size}x{size}x{channels}, median of "
        f"{repeats} interleaved steps\n"
    )
    print("| train step | time (ms) | / plain |")
    print("|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v * 1e3:.1f} | {ratios[k]:.2f}x |")
    if "selective" in ratios:
        met = "met" if ratios["selective"] <= 2.5 else "NOT met"
        print(f"\nselective / plain = {ratios['selective']:.2f} (target <= 2.5): {met}")
        if "original" in ratios:
            bound = 0.6 * CLASSES * ratios["selective"]
            met = "met" if ratios["original"] <= bound else "NOT met"
            print(
                f"original / plain = {ratios['original']:.2f} (target <= 0.6 x {CLASSES} x "
                f"selective = {bound:.2f}): {met}"
            )
    print(
        json.dumps(
            {
                "model": args.model,
                "backend": keras.backend.backend(),
                "seconds": rows,
                "ratios": ratios,
                "batch": batch,
                "size": size,
                "repeats": repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
