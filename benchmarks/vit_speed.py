"""Analyze time / predict time of the small ViT (keras_isnet.experiments.vit), in one process.

Run: python benchmarks/vit_speed.py [--batch N] [--repeats R] [--quick]

Builds ``build_vit(0)`` (32 x 32 x 1 images, 4 x 4 patches = 64 tokens, width 32, 2 encoder
blocks with MultiHeadAttention; random weights) and a fixed random batch (seed 0), then times,
interleaved so that a slow phase of the machine hits every row alike:
``model.predict(x)`` (the baseline), ``analyze(x)`` of lrp.epsilon, lrp.cp_lrp and
lrp.attn_lrp, and one ISNet training step (``train_on_batch``, selective variant) next to the
plain classifier's step. Each row is the median over the repeats after one warm-up call,
divided by its baseline's median. The last line is a JSON object with every number.
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
from keras_isnet.experiments.vit import build_vit  # noqa: E402

ANALYZERS = ("lrp.epsilon", "lrp.cp_lrp", "lrp.attn_lrp")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 repeats")
    args = parser.parse_args(argv)
    batch, repeats = (8, 2) if args.quick else (args.batch, args.repeats)
    model = build_vit(0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 32, 32, 1), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    masks = np.zeros((batch, 32, 32), "float32")
    masks[:, 8:24, 8:24] = 1.0

    plain = build_vit(0)
    plain.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    isnet = ki.ISNet(build_vit(0), variant="selective", P=0.8)
    isnet.compile(optimizer=keras.optimizers.Adam(1e-3))
    analyzers = {name: ki.create_analyzer(name, model) for name in ANALYZERS}
    calls = {
        "predict": lambda: model.predict(x, batch_size=batch, verbose=0),
        **{name: (lambda a=a: a.analyze(x, batch_size=batch)) for name, a in analyzers.items()},
        "plain train step": lambda: plain.train_on_batch(x, labels),
        "ISNet train step": lambda: isnet.train_on_batch(x, labels, sample_weight=masks),
    }
    for fn in calls.values():  # warm-up: tracing and compilation
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(_timed(fn))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"ViT ({model.count_params()} parameters), batch {batch}, {repeats} repeats")
    print("| call | median time | ratio |")
    print("|---|---|---|")
    for name in calls:
        base = "plain train step" if name == "ISNet train step" else "predict"
        print(
            f"| {name} | {median[name] * 1000:.1f} ms | {median[name] / median[base]:.2f}x {base} |"
        )
    result = {
        "batch": batch,
        "repeats": repeats,
        "times": times,
        "median": median,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
