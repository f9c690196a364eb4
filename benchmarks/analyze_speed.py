"""Speed of keras-isnet analyzers on a VGG16-shaped model, relative to ``model.predict``.

Everything runs in one process: build ``keras.applications.VGG16(weights=None)`` (random
weights, no download), time ``model.predict`` on a fixed random batch, then for each
analyzer time the first ``analyze(x)`` call (which includes tracing the graph) and the
median of further calls. The ratio ``analyzer median / predict median`` is compared with
the targets (and with what iNNvestigate 2.1.2 measures on the same setting).

Two reference rows (skip them with ``--no-floors``) bound what an analyzer can cost: the
model's forward pass in a ``tf.function`` and a plain ``tf.GradientTape`` gradient of the
top logit with respect to the input in a ``tf.function`` (one forward plus one backward
pass). Process CPU time is recorded next to wall time: its ratio is less sensitive to
other processes competing for the cores. ``model.predict`` is timed again at the end, and
a warning is printed when its time changed by more than 15% or when a row used noticeably
fewer CPU seconds per wall second than the best row (another process shared the cores).

Usage:
    python benchmarks/analyze_speed.py                 # batch 4, 224x224, 5 repeats
    python benchmarks/analyze_speed.py --quick         # smoke run: 64x64, 2 repeats
    python benchmarks/analyze_speed.py --analyzers gradient lrp.epsilon
    python benchmarks/analyze_speed.py --backend jax   # or KERAS_BACKEND=jax

The last line of output is a JSON object with every number of the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before TensorFlow is imported

DEFAULT_ANALYZERS = ["gradient", "lrp.epsilon", "lrp.sequential_preset_b", "deep_taylor"]

#: analyzer -> (target ratio to predict, ratio iNNvestigate 2.1.2 measures).
TARGETS = {
    "lrp.epsilon": (2.2, 2.5),
    "lrp.sequential_preset_b": (5.0, 10.2),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument(
        "--analyzers",
        nargs="+",
        default=DEFAULT_ANALYZERS,
        help=f"analyzer names (default: {' '.join(DEFAULT_ANALYZERS)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random batch")
    parser.add_argument("--quick", action="store_true", help="smoke run: --size 64 --repeats 2")
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch"],
        help="Keras backend (default: KERAS_BACKEND, else tensorflow)",
    )
    parser.add_argument(
        "--no-floors",
        action="store_true",
        help="skip the reference rows (compiled forward pass, plain tf.GradientTape gradient)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeats = 64, 2
    if args.repeats < 1 or args.batch < 1 or args.size < 32:
        parser.error("need --repeats >= 1, --batch >= 1 and --size >= 32 (VGG16's minimum)")
    return args


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def measure(fn, repeats: int) -> dict:
    """Time one first call of ``fn``, then ``repeats`` more (wall clock and process CPU)."""

    def once():
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    first_wall, first_cpu = once()
    walls, cpus = zip(*(once() for _ in range(repeats)), strict=True)
    return {
        "first_s": first_wall,
        "median_s": statistics.median(walls),
        "times_s": list(walls),
        "first_cpu_s": first_cpu,
        "cpu_median_s": statistics.median(cpus),
    }


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def reference_functions(model, tf, keras) -> dict:
    """Compiled reference computations that bound what an analyzer can cost.

    * ``ref: forward (tf.function)``: ``model(x)`` in a ``tf.function``, without
      ``predict``'s per-call overhead;
    * ``ref: top-logit gradient``: the plain ``tf.GradientTape`` gradient of each sample's
      largest logit (the final softmax left out) with respect to the input, in a
      ``tf.function``: one forward and one backward pass, the floor of any backward method.
    """
    head = model.layers[-1]
    features = keras.Model(model.inputs, head.input)

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def top_logit_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.matmul(features(x, training=False), head.kernel) + head.bias
            top = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
        return tape.gradient(top, x)

    return {
        "ref: forward (tf.function)": forward,
        "ref: top-logit gradient": top_logit_gradient,
    }


def _framework_version(backend: str) -> str:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # Keras is imported below

    import keras
    import numpy as np

    import keras_isnet as ki

    tf = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
    elif not args.no_floors:
        print("(the reference rows are TensorFlow programs: skipped on this backend)")
        args.no_floors = True

    keras.utils.set_random_seed(args.seed)
    model = keras.applications.VGG16(
        weights=None, input_shape=(args.size, args.size, 3), classes=1000
    )
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-1.0, 1.0, size=(args.batch, args.size, args.size, 3)).astype("float32")

    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "framework": _framework_version(keras.backend.backend()),
        "keras": keras.__version__,
        "keras_isnet": ki.__version__,
        "date": datetime.date.today().isoformat(),
    }
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores | Python {machine['python']}, "
        f"{machine['backend']} {machine['framework']}, Keras {machine['keras']}, "
        f"keras-isnet {machine['keras_isnet']} | {machine['date']}"
    )
    print(
        f"Model: VGG16 (weights=None), input {args.size}x{args.size}x3, batch {args.batch}, "
        f"median of {args.repeats} calls after the first",
        flush=True,
    )

    load_start = load_average()
    predict = {
        "name": "model.predict",
        **measure(lambda: model.predict(x, verbose=0), args.repeats),
    }
    rows = [predict]

    def add_row(row):
        row["ratio"] = row["median_s"] / predict["median_s"]
        row["cpu_ratio"] = row["cpu_median_s"] / predict["cpu_median_s"]
        if row["name"] in TARGETS:
            target, innvestigate = TARGETS[row["name"]]
            row.update(target=target, innvestigate=innvestigate, met=row["ratio"] <= target)
        if row is not predict:
            rows.append(row)
        print(
            f"  {row['name']}: first {row['first_s']:.3f}s, median {row['median_s']:.3f}s "
            f"({row['ratio']:.2f}x predict; CPU time {row['cpu_ratio']:.2f}x)",
            flush=True,
        )

    add_row(predict)
    if not args.no_floors:
        for label, fn in reference_functions(model, tf, keras).items():
            # NumPy in, NumPy out, like analyze()
            timing = measure(lambda f=fn: f(tf.constant(x)).numpy(), args.repeats)
            add_row({"name": label, **timing, "reference": True})

    for name in args.analyzers:
        analyzer = ki.create_analyzer(name, model)
        add_row({"name": name, **measure(lambda a=analyzer: a.analyze(x), args.repeats)})
        del analyzer

    # predict once more at the end: a large change means the machine's load changed
    # during the run (other processes), and the ratios are less trustworthy.
    predict_end = measure(lambda: model.predict(x, verbose=0), args.repeats)["median_s"]
    drift = predict_end / predict["median_s"] - 1.0
    load_end = load_average()

    header = (
        f"| {'analyzer':<26} | {'first call (s)':>14} | {'median (s)':>10} "
        f"| {'/ predict':>9} | {'CPU / predict':>13} | {'target':>7} "
        f"| {'iNNvestigate 2.1.2':>18} | {'met':>4} |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        target = f"<= {row['target']:g}x" if "target" in row else ""
        innv = f"{row['innvestigate']:g}x" if "innvestigate" in row else ""
        met = ("yes" if row["met"] else "NO") if "met" in row else ""
        print(
            f"| {row['name']:<26} | {row['first_s']:>14.3f} | {row['median_s']:>10.3f} "
            f"| {row['ratio']:>8.2f}x | {row['cpu_ratio']:>12.2f}x | {target:>7} "
            f"| {innv:>18} | {met:>4} |"
        )
    checked = [r for r in rows if "met" in r]
    all_met = all(r["met"] for r in checked)
    print()
    print(
        f"model.predict median at the end: {predict_end:.3f}s ({drift:+.0%} vs the start); "
        f"1-min load average {load_start} at the start, {load_end} at the end "
        f"({machine['cores']} cores)"
    )
    # Both checks skip calls shorter than this: there, fixed per-call overhead (single
    # threaded) dominates, and the times are too short to tell load from noise.
    min_checked_s = 0.25
    if abs(drift) > 0.15 and predict["median_s"] >= min_checked_s:
        print(
            "WARNING: predict's time changed by more than 15% during the run; other "
            "processes probably competed for the CPU. Rerun on an idle machine."
        )
    # CPU seconds per wall second: close to the core count when a row had the cores to
    # itself; a row far below the best row's value shared them with another process.
    parallelism = {
        r["name"]: r["cpu_median_s"] / r["median_s"] for r in rows if r["median_s"] >= min_checked_s
    }
    best = max(parallelism.values(), default=0.0)
    contended = [n for n, p in parallelism.items() if p < 0.8 * best]
    if contended:
        print(
            "WARNING: these rows used fewer cores than the best row (CPU s per wall s: "
            + ", ".join(f"{n} {parallelism[n]:.2f}" for n in contended)
            + f", best {best:.2f}); other processes probably competed for the CPU while "
            "they ran. Their wall times are inflated (if model.predict is listed, every ratio "
            "is deflated); the CPU-time ratios are the better estimate. Rerun on an idle "
            "machine."
        )
    print(
        "Targets: "
        + ", ".join(
            f"{r['name']} {r['ratio']:.2f}x <= {r['target']:g}x: {'met' if r['met'] else 'NOT met'}"
            for r in checked
        )
        if checked
        else "Targets: none of the timed analyzers has a target"
    )
    result = {
        "machine": machine,
        "settings": {
            "batch": args.batch,
            "size": args.size,
            "repeats": args.repeats,
            "seed": args.seed,
        },
        "results": rows,
        "predict_end_median_s": predict_end,
        "load_average": {"start": load_start, "end": load_end},
        "contended_rows": contended,
        "targets_met": all_met if checked else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
