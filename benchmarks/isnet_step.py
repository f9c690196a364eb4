"""ISNet train-step cost relative to the plain classifier's, measured in one process.

Run: python benchmarks/isnet_step.py [--batch 64] [--size 32] [--repeats 20] [--quick]

For the same model (the demo's CNN: 3 x Conv+ReLU+MaxPool, Dense 64, Dense 10) and the same
batch, it times one optimizer step of the plain classifier (cross-entropy) and of the
selective, stochastic and original (10 classes) ISNet, and prints each ISNet step time
divided by the plain step time. Targets (issue 4): selective <= 2.5x plain;
original <= 0.6 x classes x selective.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.demo import _cpu_name, build_classifier  # noqa: E402


def _median_step(step, repeats):
    step()  # build and trace
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="3 repeats, a smoke test")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats

    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    masks = np.zeros((args.batch, args.size, args.size), np.float32)
    masks[:, 4:-4, 4:-4] = 1.0

    plain = build_classifier(0, input_shape=(args.size, args.size, 1))
    plain.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    t_plain = _median_step(lambda: plain.train_on_batch(x, y), repeats)
    rows = {"plain": t_plain}
    for variant in ("selective", "stochastic", "original"):
        model = build_classifier(0, input_shape=(args.size, args.size, 1))
        isnet = ki.ISNet(model, variant=variant, seed=0)
        isnet.compile(optimizer=keras.optimizers.SGD(1e-3))
        rows[variant] = _median_step(
            lambda isnet=isnet: isnet.train_on_batch(x, y, sample_weight=masks), repeats
        )

    ratios = {k: v / t_plain for k, v in rows.items()}
    classes = 10
    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"Keras {keras.__version__}; {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"model: demo CNN, batch {args.batch} x {args.size}x{args.size}x1, "
        f"median of {repeats} steps\n"
    )
    print("| train step | time (ms) | / plain |")
    print("|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v * 1e3:.1f} | {ratios[k]:.2f}x |")
    orig_bound = 0.6 * classes * ratios["selective"]
    print(
        f"\nselective / plain = {ratios['selective']:.2f} (target <= 2.5): "
        f"{'met' if ratios['selective'] <= 2.5 else 'NOT met'}"
    )
    print(
        f"original / plain = {ratios['original']:.2f} (target <= 0.6 x {classes} x selective "
        f"= {orig_bound:.2f}): {'met' if ratios['original'] <= orig_bound else 'NOT met'}"
    )
    print(json.dumps({"seconds": rows, "ratios": ratios, "batch": args.batch, "size": args.size}))


if __name__ == "__main__":
    main()
