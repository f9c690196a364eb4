"""Compare explanation methods on the biased-MNIST plain CNN and ISNet.

Trains both models as the demo does (``python -m keras_isnet.demo`` options: stripes bias,
stochastic ISNet, P = 0.8), then, on confounding test images, scores three explanation
methods for each model: LRP-epsilon, Grad-CAM and iGOS++. Prints insertion and deletion AUC
(the predicted class's probability as pixels are revealed from / removed into a blurred
baseline) and the background relevance share, and writes a figure.

Run: python examples/compare_explanations.py [--epochs 25] [--n 16] [--out compare-explanations]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.experiments import demo  # noqa: E402
from keras_isnet.metrics import (  # noqa: E402
    background_relevance_share,
    deletion_curve,
    insertion_curve,
)

METHODS = {
    "lrp.epsilon": {"epsilon": 1e-2},
    "grad_cam": {},
    "igos++": {"seed": 0},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25, help="training epochs (default 25)")
    p.add_argument("--n", type=int, default=16, help="confounding images scored (default 16)")
    p.add_argument("--out", default="compare-explanations", help="output folder")
    args = p.parse_args(argv)
    if args.n < 1 or args.epochs < 1:
        p.error(f"--n and --epochs must be >= 1, got --n {args.n} --epochs {args.epochs}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = demo.DemoConfig(epochs=args.epochs, verbose=0)
    data = demo.load_data(config)
    models = {
        "plain": demo.train_plain(data, config)[0],
        "isnet": demo.train_isnet(data, config)[0],
    }
    split = data.test_sets["confounding"]
    images, masks = split.images[: args.n], split.masks[: args.n]

    rows, maps = [], {}
    for model_name, model in models.items():
        for method, kwargs in METHODS.items():
            heat = ki.create_analyzer(method, model, **kwargs).analyze(images)[..., 0]
            maps[(model_name, method)] = heat
            ins = insertion_curve(model, images, heat, steps=32, cell_size=2)
            dele = deletion_curve(model, images, heat, steps=32, cell_size=2)
            share = np.nanmean(background_relevance_share(heat, masks))
            rows.append((model_name, method, ins.auc.mean(), dele.auc.mean(), share))

    print(
        "| model | method | insertion AUC (higher = better) | deletion AUC (lower = better) "
        "| background share |"
    )
    print("|---|---|---|---|---|")
    for model_name, method, ins_auc, del_auc, share in rows:
        print(f"| {model_name} | {method} | {ins_auc:.3f} | {del_auc:.3f} | {share:.3f} |")
    _figure(images, maps, out / "compare_explanations.png", masks=masks)
    print(f"\nwrote {out / 'compare_explanations.png'}")


def _figure(images, maps, path, masks=None, n=4):
    n = min(n, len(images))  # the first n scored images (fewer with --n below 4)
    rows = {f"{model}\n{method}": heat[:n] for (model, method), heat in maps.items()}
    ki.plot.grid(
        images[:n],
        rows,
        masks=None if masks is None else masks[:n],
        suptitle="Confounding test images: three methods on the plain CNN and the ISNet",
        path=path,
    )


if __name__ == "__main__":
    main()
