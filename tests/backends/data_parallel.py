"""One ISNet step under ``keras.distribution.DataParallel`` on 2 host CPU devices against the
same step on one device, on the same global batch (JAX). Prints the largest weight
difference relative to the largest update.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
    python tests/backends/data_parallel.py
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402


def step(distributed: bool, variant: str):
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu"))
        if distributed
        else None
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    model.layers[1].moving_variance.assign(np.ones(4, "float32"))
    x = rng.random((8, 8, 8, 1)).astype("float32")
    y, masks = np.arange(8) % 3, np.ones((8, 8, 8), "float32")
    masks[:, :2] = 0
    before = [np.asarray(w) for w in model.get_weights()]
    isnet = ki.ISNet(model, variant=variant, seed=3)
    isnet.compile(optimizer=keras.optimizers.SGD(0.1))
    isnet.fit(x, y, sample_weight=masks, batch_size=8, epochs=1, verbose=0, shuffle=False)
    after = [np.asarray(w) for w in model.get_weights()]
    return before, after


def main() -> int:
    devices = keras.distribution.list_devices("cpu")
    if len(devices) < 2:
        print(f"needs 2 devices, got {devices}")
        return 2
    worst = 0.0
    for variant in ("selective", "original", "stochastic"):
        b1, single = step(False, variant)
        _, parallel = step(True, variant)
        update = max(float(np.abs(a - b).max()) for a, b in zip(single, b1, strict=True))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(single, parallel, strict=True))
        worst = max(worst, diff / update)
        print(f"{variant}: largest update {update:.3e}, largest difference {diff:.3e}")
    print(f"relative difference {worst:.3e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
