"""Multi-label biased MNIST: two labels per image, each with its own background shortcut.

Every image is one MNIST digit (32 x 32, from ``keras_isnet.experiments.biased_mnist``'s
clean images and foreground masks) with two independent labels:

* label 0, ``even``: the digit is 0, 2, 4, 6 or 8;
* label 1, ``large``: the digit is 5 or more.

In training each positive label also lights its own mark in the background frame: a 3 x 3
square in the top-left corner for ``even``, in the top-right corner for ``large``. A plain
CNN with a sigmoid head (binary cross-entropy) can read the marks instead of the digit; a
multi-label ISNet (``ki.ISNet(model, multilabel=True, variant="original")``: one heatmap
per label) is penalised for relevance outside the digit's mask. Three test sets: ``biased``
(marks as in training), ``unbiased`` (no marks) and ``confounding`` (each mark lit exactly
when its label is negative). The table gives the mean per-label accuracy and the mean
per-label AUC on each set.

Run: ``python examples/multilabel_isnet.py`` (about 6 minutes on 2 CPU cores);
``--help`` lists the options. With seed 0 (README) the ISNet reduces the shortcut but does not
remove it: two binary labels carry far less supervision than the ten classes of the
single-label demo, and 30 epochs are not enough for the digit features to win.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_isnet as ki
from keras_isnet.experiments import biased_mnist
from keras_isnet.experiments.datasets.biased_mnist import bias_templates
from keras_isnet.experiments.training import build_classifier

LABELS = ("even", "large")
#: the corner_square template (by class position) that marks each label: top-left, top-right.
MARK_POSITIONS = (0, 2)


def multilabel_targets(digits: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float32: [digit is even, digit >= 5]."""
    return np.stack([digits % 2 == 0, digits >= 5], axis=1).astype("float32")


def with_marks(clean: np.ndarray, masks: np.ndarray, lit: np.ndarray) -> np.ndarray:
    """``clean`` images with label j's mark wherever ``lit[:, j]`` (marks stay off the mask)."""
    templates = bias_templates("corner_square", clean.shape[1])
    marks = np.zeros_like(clean[..., 0])
    for j, position in enumerate(MARK_POSITIONS):
        marks = np.maximum(marks, lit[:, j, None, None] * templates[position])
    marks = marks * (1.0 - masks[..., 0])
    return np.clip(clean + marks[..., None], 0.0, 1.0).astype("float32")


def build_data(n_train: int, n_test: int, seed: int) -> dict:
    """Train and the three test sets: ``{name: (images, labels (n, 2), masks (n, H, W))}``."""
    data = biased_mnist(bias="corner_square", n_train=n_train, n_test=n_test, seed=seed)
    out = {}
    for name, split, flip in (
        ("train", data.train, False),
        ("biased", data.test_biased, False),
        ("unbiased", data.test_unbiased, None),
        ("confounding", data.test_confounding, True),
    ):
        y = multilabel_targets(split.labels)
        lit = np.zeros_like(y) if flip is None else (1.0 - y if flip else y)
        masks = split.masks[..., 0]
        out[name] = (with_marks(split.clean_images, split.masks, lit), y, masks)
    return out


def evaluate(model, sets: dict) -> dict:
    """``{set: (mean per-label accuracy, mean per-label AUC)}`` of a logits model."""
    results = {}
    for name in ("biased", "unbiased", "confounding"):
        x, y, _ = sets[name]
        logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=256, verbose=0))
        accuracy = ki.metrics.per_label_accuracy(y, logits)
        auc = ki.metrics.per_label_auc(y, logits)
        results[name] = (float(np.mean(accuracy)), float(np.nanmean(auc)))
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000, help="training images (3000)")
    parser.add_argument("--n-test", type=int, default=1000, help="images per test set (1000)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs for both models (30)")
    parser.add_argument("--P", type=float, default=0.8, help="the ISNet's heatmap weight (0.8)")
    parser.add_argument("--seed", type=int, default=0, help="data and weight seed (0)")
    parser.add_argument(
        "--variant", default="original", help="the ISNet variant (original: a map per label)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.n_train < 1 or args.n_test < 1:
        parser.error("--epochs, --n-train and --n-test must be positive")

    sets = build_data(args.n_train, args.n_test, args.seed)
    x, y, m = sets["train"]
    print(f"multi-label biased MNIST: {len(x)} train, {args.n_test} per test set, labels {LABELS}")

    plain = build_classifier(args.seed, classes=len(LABELS))
    plain.compile(
        optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    plain.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)

    isnet = ki.ISNet(
        build_classifier(args.seed, classes=len(LABELS)),
        multilabel=True,
        variant=args.variant,
        P=args.P,
    )
    isnet.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0))
    dataset = ki.isnet_dataset(x, y, m, batch_size=64, seed=args.seed)
    isnet.fit(dataset, epochs=args.epochs, verbose=0)

    results = {"plain": evaluate(plain, sets), "isnet": evaluate(isnet, sets)}
    print("| model | biased acc / AUC | unbiased acc / AUC | confounding acc / AUC |")
    print("|---|---|---|---|")
    for name, per_set in results.items():
        cells = " | ".join(f"{100 * a:.1f} % / {u:.3f}" for a, u in per_set.values())
        print(f"| {name} | {cells} |")
    return results


if __name__ == "__main__":
    main()
