"""The biased-MNIST benchmark in one command: ``python -m keras_isnet.demo``.

A plain classifier and an ISNet with the same architecture, seed and epochs are trained on
MNIST digits carrying a class-correlated mark in the background. Both are evaluated on three
test sets: "biased" (marks as in training), "unbiased" (no mark) and "confounding" (the mark
of another class). The plain classifier learns the shortcut and collapses when the mark is
removed or misleading; the ISNet, whose background relevance is penalised, does not.

The command prints a results table (accuracy per test set, background relevance share,
training time), writes ``results.json`` and a figure (inputs, masks and each model's LRP
heatmap on biased and confounding samples) to ``--out``.

Run ``python -m keras_isnet.demo --help`` for the options; ``--quick`` finishes in about a
minute (a smoke test, not a benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class DemoConfig:
    """Everything the demo run depends on (see ``--help`` for each option)."""

    bias: str = "stripes"
    strength: float = 1.0
    correlation: float = 1.0
    n_train: int = 3000
    n_test: int = 1000
    epochs: int = 25
    batch_size: int = 64
    learning_rate: float = 1e-3
    variant: str = "stochastic"
    P: float = 0.8
    seed: int = 0
    out: str = "isnet-demo"
    baselines: bool = False
    quick: bool = False
    verbose: int = 2
    extra: dict = field(default_factory=dict)


def build_classifier(seed: int, input_shape=(32, 32, 1), classes: int = 10):
    """The small CNN both models share: 3 x (Conv 3x3 + ReLU + MaxPool), Dense 64, Dense 10.

    Returns a functional model with logits output, weights initialised from ``seed``.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, logits, name="cnn")


def load_data(config: DemoConfig):
    """The biased-MNIST splits the demo uses (``config``: bias, strength, correlation, sizes)."""
    from keras_isnet.datasets import biased_mnist

    return biased_mnist(
        bias=config.bias,
        strength=config.strength,
        correlation=config.correlation,
        n_train=config.n_train,
        n_val=max(100, config.n_test // 2),
        n_test=config.n_test,
        seed=config.seed,
    )


def make_optimizer(config: DemoConfig):
    """Adam with the demo's learning rate and gradient-norm clipping at 1."""
    import keras

    return keras.optimizers.Adam(config.learning_rate, clipnorm=1.0)


def train_plain(data, config: DemoConfig):
    """Train the plain classifier; returns ``(model, seconds)``."""
    import keras

    model = build_classifier(config.seed)
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        data.train.images,
        data.train.labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(data.val.images, data.val.labels),
        verbose=config.verbose,
    )
    return model, time.perf_counter() - start


def train_dataset(data, config: DemoConfig):
    """The shuffled ``(images, labels, masks)`` training batches every penalised model uses."""
    import keras_isnet as ki

    return ki.isnet_dataset(
        data.train.images,
        data.train.labels,
        data.train.masks,
        batch_size=config.batch_size,
        seed=config.seed,
    )


def train_isnet(data, config: DemoConfig):
    """Train the ISNet with the same architecture, seed and epochs; ``(model, seconds)``."""
    import keras_isnet as ki

    model = build_classifier(config.seed)
    isnet = ki.ISNet(model, variant=config.variant, P=config.P, seed=config.seed)
    isnet.compile(optimizer=make_optimizer(config), metrics=["accuracy"])
    train = train_dataset(data, config)
    val = ki.isnet_dataset(
        data.val.images, data.val.labels, data.val.masks, batch_size=256, shuffle=False
    )
    start = time.perf_counter()
    isnet.fit(train, epochs=config.epochs, validation_data=val, verbose=config.verbose)
    return isnet.classifier, time.perf_counter() - start


def explainer(model):
    """The analyzer behind every heatmap of the demo: LRP-epsilon (0.01), predicted class."""
    import keras_isnet as ki

    return ki.create_analyzer("lrp.epsilon", model, epsilon=1e-2)


def heatmaps_of(analyzer, images):
    """``analyzer``'s heatmaps of ``images``, summed over channels: ``(n, H, W)``."""
    return analyzer.analyze(images, batch_size=250).sum(axis=-1)


def evaluate(model, data, n_explain: int = 500) -> dict:
    """Accuracy on each test set and the background relevance share of its heatmaps.

    Returns ``{"accuracy": {set: %}, "background_share": {set: fraction}}``; the share is
    the mean over ``n_explain`` samples of |R| outside the mask / total |R| (lower is better).
    """
    import numpy as np

    from keras_isnet.metrics import background_relevance_share

    accuracy, share = {}, {}
    analyzer = explainer(model)
    for name, split in data.test_sets.items():
        logits = model.predict(split.images, batch_size=500, verbose=0)
        accuracy[name] = float(np.mean(logits.argmax(-1) == split.labels) * 100.0)
        if name != "unbiased":
            k = min(n_explain, len(split))
            heat = heatmaps_of(analyzer, split.images[:k])
            share[name] = float(np.nanmean(background_relevance_share(heat, split.masks[:k])))
    return {"accuracy": accuracy, "background_share": share}


def results_table(results: dict) -> str:
    """The results as a Markdown table (accuracy in %, background share, training time)."""
    rows = [
        "| model | biased acc. | unbiased acc. | confounding acc. | background share "
        "(biased / confounding) | training time |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        acc, share = r["accuracy"], r["background_share"]
        rows.append(
            f"| {name} | {acc['biased']:.1f} % | {acc['unbiased']:.1f} % | "
            f"{acc['confounding']:.1f} % | {share['biased']:.3f} / {share['confounding']:.3f} | "
            f"{r['train_seconds']:.0f} s |"
        )
    return "\n".join(rows)


def write_figure(models: dict, data, path, n: int = 4) -> None:
    """Inputs (mask outlined in green) and each model's LRP heatmap on biased and confounding
    test samples, drawn with :func:`keras_isnet.plot.grid` (zero-centred diverging map: red
    for the explained class, blue against; each heatmap on its own symmetric scale).
    """
    import numpy as np

    from keras_isnet import plot

    sets = [("biased", data.test_sets["biased"]), ("confounding", data.test_sets["confounding"])]
    images = np.concatenate([split.images[:n] for _, split in sets])
    masks = np.concatenate([split.masks[:n] for _, split in sets])
    titles = [f"{name}\nlabel {label}" for name, split in sets for label in split.labels[:n]]
    rows = {f"{name} LRP": heatmaps_of(explainer(model), images) for name, model in models.items()}
    plot.grid(
        images,
        rows,
        masks=masks,
        titles=titles,
        suptitle="Biased MNIST: where each model looks (LRP-epsilon of the predicted class)",
        path=path,
    )


def run(config: DemoConfig) -> dict:
    """Run the benchmark; returns the results dictionary also written to results.json."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    if config.quick:
        config.n_train, config.n_test, config.epochs = 600, 200, 2
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    data = load_data(config)
    print(
        f"biased MNIST ({config.bias}, strength {config.strength}, train correlation "
        f"{config.correlation}): {len(data.train)} train, {len(data.val)} val, "
        f"{config.n_test} per test set",
        flush=True,
    )
    trained = {}
    print("\n== plain classifier ==", flush=True)
    trained["plain"] = train_plain(data, config)
    print(f"\n== ISNet ({config.variant}, P={config.P}) ==", flush=True)
    trained["isnet"] = train_isnet(data, config)
    if config.baselines:
        from keras_isnet.baselines import train_baselines

        trained.update(train_baselines(data, config))
    models = {}
    for name, (model, seconds) in trained.items():
        models[name] = {**evaluate(model, data), "train_seconds": seconds}
    results = {
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "models": models,
        "wall_seconds": time.perf_counter() - wall,
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "keras": keras.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_figure({name: m for name, (m, _) in trained.items()}, data, out / "heatmaps.png")
    print("\n" + results_table(results))
    print(
        f"\nwall time {results['wall_seconds']:.0f} s; wrote {out / 'results.json'} and "
        f"{out / 'heatmaps.png'}",
        flush=True,
    )
    return results


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_args(argv=None) -> DemoConfig:
    """Parse the command line into a :class:`DemoConfig`."""
    d = DemoConfig()
    p = argparse.ArgumentParser(
        prog="python -m keras_isnet.demo",
        description="Train a plain CNN and an ISNet on biased MNIST and compare them on "
        "biased, unbiased and confounding test sets.",
    )
    p.add_argument(
        "--bias",
        default=d.bias,
        choices=["corner_square", "stripes"],
        help="kind of background mark (default: %(default)s)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=d.strength,
        help="mark intensity in (0, 1] (default: %(default)s)",
    )
    p.add_argument(
        "--correlation",
        type=float,
        default=d.correlation,
        help="share of training images whose mark matches the label (default: %(default)s)",
    )
    p.add_argument(
        "--n-train", type=int, default=d.n_train, help="training images (default: %(default)s)"
    )
    p.add_argument(
        "--n-test", type=int, default=d.n_test, help="images per test set (default: %(default)s)"
    )
    p.add_argument(
        "--epochs", type=int, default=d.epochs, help="epochs for every model (default: %(default)s)"
    )
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="batch size (default: %(default)s)"
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=d.learning_rate,
        help="Adam learning rate, gradient norm clipped at 1 (default: %(default)s)",
    )
    p.add_argument(
        "--variant",
        default=d.variant,
        choices=["selective", "stochastic", "original", "dual", "gradient_x_input"],
        help="ISNet variant (default: %(default)s)",
    )
    p.add_argument(
        "--P", type=float, default=d.P, help="heatmap loss weight (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    p.add_argument(
        "--out",
        default=d.out,
        help="output folder for results.json and heatmaps.png (default: %(default)s)",
    )
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also train the Right-for-the-Right-Reasons and Grad-CAM penalty baselines",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 600 training images, 200 per test set, 2 epochs (~1 min)",
    )
    p.add_argument(
        "--verbose",
        type=int,
        default=d.verbose,
        choices=[0, 1, 2],
        help="Keras progress output (default: %(default)s)",
    )
    args = p.parse_args(argv)
    return DemoConfig(**{k: v for k, v in vars(args).items()})


def main(argv=None) -> int:
    """Entry point of ``python -m keras_isnet.demo``."""
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
