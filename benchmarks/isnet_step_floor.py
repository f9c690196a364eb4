"""How much of the ISNet train-step cost is the method itself, not the library.

Run: python benchmarks/isnet_step_floor.py [--batch 64] [--repeats 30]

On the demo CNN (3 x Conv3x3+ReLU+MaxPool, Dense 64, Dense 10; 32x32x1 inputs) it times, in
one process and interleaved:

* the plain classifier's train step (a ``tf.function``: cross-entropy, SGD);
* a hand-written TensorFlow train step that computes the same heatmap as the library (the
  z^B rule at the first layer, LRP-epsilon 1e-2 with the bias a constant, winner-takes-all
  max pooling; the logit of the lowest-scoring class explained) with no engine at all: raw
  ``tf.nn`` calls, the stabilised inverses computed once, the z^B transposes merged, then
  ``ki.losses.isnet_heatmap_loss`` and SGD;
* the library's train step for the same heatmap (``ki.ISNet(variant="original")`` would
  explain all classes, so a one-class ``ISNetHeatmaps`` walk is used in an equal
  ``tf.function``).

Before timing it checks that both heatmaps agree (relative difference < 1e-5). The ratio of
the hand-written step to the plain step is the floor of this formulation of the method on
this machine; the library's step should be close to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_isnet.experiments.training import build_classifier  # noqa: E402
from keras_isnet.isnet.heatmaps import ISNetHeatmaps  # noqa: E402
from keras_isnet.losses import isnet_heatmap_loss  # noqa: E402

EPSILON = 1e-2


def _inverse(z):
    shift = tf.cast(z >= 0, z.dtype) * (2 * EPSILON) - EPSILON
    return tf.math.reciprocal(z + tf.stop_gradient(shift))


def hand_written(model, x):
    """``(logits, heatmap)`` of the demo CNN, the lowest logit explained, in raw TF."""
    convs = [model.get_layer(f"conv{i}") for i in range(3)]
    dense, head = model.get_layer("dense"), model.get_layer("logits")
    batch = tf.shape(x)[0]
    records, a = [], x
    for i, conv in enumerate(convs):
        z_nobias = tf.nn.conv2d(a, conv.kernel, 1, "SAME")
        y = tf.nn.relu(z_nobias + conv.bias)
        if i == 0:  # z^B with bounds (0, 1): z - W- 1
            z_rule = z_nobias - tf.nn.conv2d(
                tf.ones_like(a[:1]), tf.minimum(conv.kernel, 0), 1, "SAME"
            )
        else:
            z_rule = z_nobias + tf.stop_gradient(conv.bias)
        with tf.GradientTape() as tape:
            tape.watch(y)
            pooled = tf.nn.max_pool2d(y, 2, 2, "VALID")
        share = tf.stop_gradient(tape.gradient(pooled, y))
        records.append((a, _inverse(z_rule), share))
        a = pooled
    flat = tf.reshape(a, (batch, -1))
    h_nobias = flat @ dense.kernel
    h = tf.nn.relu(h_nobias + dense.bias)
    logits = h @ head.kernel + head.bias
    chosen = tf.one_hot(tf.argmin(logits, -1), logits.shape[-1])
    r = logits * chosen
    r = h * (
        (r * _inverse(h @ head.kernel + tf.stop_gradient(head.bias))) @ tf.transpose(head.kernel)
    )
    r = flat * (
        (r * _inverse(h_nobias + tf.stop_gradient(dense.bias))) @ tf.transpose(dense.kernel)
    )
    r = tf.reshape(r, tf.shape(a))
    for i in reversed(range(3)):
        a_in, inverse, share = records[i]
        r = share * tf.repeat(tf.repeat(r, 2, 1), 2, 2)
        s = r * inverse
        kernel = convs[i].kernel
        if i == 0:
            both = tf.concat([kernel, tf.minimum(kernel, 0)], 2)
            shape = tf.concat([tf.shape(a_in)[:3], [2]], 0)
            g = tf.nn.conv2d_transpose(s, both, shape, 1, "SAME")
            r = a_in * g[..., :1] - g[..., 1:]
        else:
            r = a_in * tf.nn.conv2d_transpose(s, kernel, tf.shape(a_in), 1, "SAME")
    return logits, r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch, 32, 32, 1), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch))
    m = np.zeros((args.batch, 32, 32), np.float32)
    m[:, 4:-4, 4:-4] = 1
    m = tf.constant(m)

    models = {name: build_classifier(0) for name in ("plain", "hand-written", "keras-isnet")}
    heatmaps = ISNetHeatmaps(models["keras-isnet"], epsilon=EPSILON, input_bounds=(0.0, 1.0))
    engine = heatmaps.engine

    def library(model, x):
        values, records = engine.replay([x], training=True)
        logits = values[engine.head_key]
        chosen = tf.one_hot(tf.argmin(logits, -1), logits.shape[-1])
        seeds = {engine.head_key: logits * chosen}
        relevance = engine.backward(records, seeds, heatmaps.handlers)
        return logits, relevance[engine.input_keys[0]]

    hand = hand_written(models["hand-written"], x)[1]
    lib = library(models["keras-isnet"], x)[1]
    diff = float(tf.reduce_max(tf.abs(hand - lib)) / tf.reduce_max(tf.abs(hand)))
    print(f"heatmaps agree: max relative difference {diff:.1e}")
    if diff > 1e-5:
        raise SystemExit("the hand-written heatmap differs from the library's")

    def make_step(model, heatmaps=None):
        variables = model.trainable_variables
        optimizer = keras.optimizers.SGD(1e-3)
        optimizer.build(variables)

        @tf.function
        def step(x, y, m):
            with tf.GradientTape() as tape:
                if heatmaps is None:
                    logits = model(x, training=True)
                else:
                    logits, r = heatmaps(model, x)
                ce = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
                )
                loss = (
                    ce if heatmaps is None else 0.3 * ce + 0.7 * isnet_heatmap_loss(r[:, None], m)
                )
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        return step

    steps = {
        "plain": make_step(models["plain"]),
        "hand-written": make_step(models["hand-written"], hand_written),
        "keras-isnet": make_step(models["keras-isnet"], library),
    }
    for step in steps.values():
        step(x, y, m)
        step(x, y, m)
    times = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step(x, y, m).numpy()
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    print(f"batch {args.batch} x 32x32x1, median of {args.repeats} interleaved steps\n")
    print("| train step | time (ms) | / plain |\n|---|---|---|")
    for name, t in times.items():
        t = statistics.median(t)
        print(f"| {name} | {t * 1e3:.1f} | {t / plain:.2f}x |")


if __name__ == "__main__":
    main()
