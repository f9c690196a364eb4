"""Run under one Keras backend (KERAS_BACKEND set by the caller) and write the numbers that
must be equal on every backend: analyzer heatmaps, conservation sums, the ISNet's heatmaps,
losses and weight gradients, all in float64 from the same NumPy weights.

Usage: KERAS_BACKEND=jax JAX_ENABLE_X64=1 python tests/backends/probe.py OUT.npz [--save F]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet import backend  # noqa: E402
from keras_isnet.arrays import to_numpy  # noqa: E402

L = keras.layers


def build():
    """A CNN with BatchNorm, max pooling and a residual Add, weights from NumPy seed 0."""
    x = keras.Input((8, 8, 1))
    a = L.Conv2D(4, 3, padding="same", name="c1")(x)
    a = L.ReLU()(L.BatchNormalization(name="bn")(a))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(a)
    h = L.MaxPooling2D()(L.Add()([a, b]))
    out = L.Dense(3, name="logits")(L.Flatten()(h))
    model = keras.Model(x, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    bn = model.get_layer("bn")
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 4))
    return model


def data():
    rng = np.random.default_rng(1)
    x = rng.random((4, 8, 8, 1))
    masks = np.ones((4, 8, 8))
    masks[:, :2] = 0
    return x, np.array([0, 1, 2, 1]), masks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--save", help="also save a trained ISNet classifier here")
    parser.add_argument("--load", help="predict with the classifier saved here")
    args = parser.parse_args(argv)
    keras.config.set_floatx("float64")
    x, y, masks = data()
    out = {}
    if args.load:
        model = keras.models.load_model(args.load)
        out["loaded_predictions"] = model.predict(x, verbose=0)
        np.savez(args.out, **out)
        return 0
    model = build()
    out["logits"] = model.predict(x, verbose=0)
    for name in ("lrp.epsilon", "lrp.alpha_2_beta_1", "lrp.epsilon_plus", "gradient"):
        out[f"heatmap/{name}"] = ki.create_analyzer(name, model).analyze(x)
    report = ki.conservation_report(ki.create_analyzer("lrp.z", model, bias=False), x)
    out["conservation/explained"] = report.explained_per_sample
    out["conservation/input"] = report.input_per_sample
    for variant in ("selective", "original"):
        isnet = ki.ISNet(model, variant=variant)
        variables = model.trainable_variables

        def loss_fn(isnet=isnet, variant=variant):
            total, ce, heat, logits, maps = isnet._isnet_losses(x, y, masks, False)
            return total, (ce, heat, maps)

        (total, (ce, heat, maps)), grads = backend.value_and_gradients(loss_fn, variables)
        out[f"isnet/{variant}/heatmaps"] = to_numpy(maps)
        out[f"isnet/{variant}/losses"] = np.array([to_numpy(v) for v in (total, ce, heat)])
        for v, g in zip(variables, grads, strict=True):
            out[f"isnet/{variant}/grad/{v.path}"] = to_numpy(g)
    if args.save:
        isnet = ki.ISNet(build(), variant="selective")
        isnet.compile(optimizer=keras.optimizers.SGD(1e-2))
        isnet.fit(x, y, sample_weight=masks, epochs=2, batch_size=4, verbose=0)
        isnet.classifier.save(args.save)
        out["saved_predictions"] = isnet.classifier.predict(x, verbose=0)
    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
