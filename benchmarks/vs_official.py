"""Training-step time of keras-isnet next to the official ISNet code (PyTorch), one process.

Run: python benchmarks/vs_official.py --official /path/to/ISNet/code [--variant selective]
     [--batch 64] [--size 32] [--repeats 15] [--quick]

Needs ``torch`` and a checkout of the authors' repository (github PedroRASB/ISNet; pass its
``code/`` folder); without them it prints why and exits 0. Nothing of the official code is
copied here: it is imported from ``--official``.

One network, the biased-MNIST demo's CNN (3 x (Conv3x3 + ReLU + MaxPool), 16/32/32 filters,
Dense 64, Dense 10), is built in Keras (``keras_isnet.demo.build_classifier``) and in
PyTorch with the same layers; one random batch (images in [0, 1], a centred square mask,
10 classes) is used by every step. The steps, all SGD (lr 1e-2, momentum 0.9), no gradient
clipping:

* ``keras plain``: ``train_on_batch`` of the classifier (cross-entropy);
* ``keras ISNet``: ``ki.ISNet(variant=...)`` ``train_on_batch`` (default loss settings);
* ``torch plain``: forward, cross-entropy, backward, step;
* ``official LRP-Flex``: ``ISNetFlexTorch.ISNetFlex`` in training mode (Zb, e = 1e-2;
  selective eps 1e-2 as in ``RunISNetFlex.py``), ``CompoundLoss`` with the script's settings
  (B = 1), ``(1 - P) CE + P L_heat``, backward, step: the body of
  ``ISNetFlexLightning.training_step``;
* ``official LRP Block``: ``ISNetLayersZe.LRPSequential`` (Zb, e = 1e-2),
  ``ISNetFunctionsZe.LRPLossCEValleysGWRP`` (B = 3), the same combination: the body of
  ``ISNetLightningZe.training_step``.

The steps are interleaved (each round runs every step once, in the order above) after two
warm-up rounds; each row is the median over the rounds, and the ratio is to the plain step of
the same framework. Both frameworks use the same cores (``torch.set_num_threads`` = the
machine's CPU count, TensorFlow's default).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_isnet as ki  # noqa: E402
from keras_isnet.experiments.demo import cpu_name  # noqa: E402
from keras_isnet.experiments.training import build_classifier  # noqa: E402

CLASSES = 10
P = 0.7


def _batch(batch: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, size, size, 1)).astype("float32")
    y = rng.integers(0, CLASSES, batch)
    m = np.zeros((batch, size, size), "float32")
    q = size // 4
    m[:, q : size - q, q : size - q] = 1.0
    return x, y, m


def _keras_steps(x, y, m, variant: str) -> dict:
    plain = build_classifier(0, input_shape=x.shape[1:])
    plain.compile(
        optimizer=keras.optimizers.SGD(1e-2, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    isnet = ki.ISNet(build_classifier(0, input_shape=x.shape[1:]), variant=variant, P=P)
    isnet.compile(optimizer=keras.optimizers.SGD(1e-2, momentum=0.9))
    return {
        "keras plain": lambda: plain.train_on_batch(x, y),
        f"keras ISNet ({variant})": lambda: isnet.train_on_batch(x, y, sample_weight=m),
    }


def _torch_cnn(torch, size: int):
    nn = torch.nn
    layers, cin = [], 1
    for cout in (16, 32, 32):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    side = size // 8
    layers += [nn.Flatten(), nn.Linear(32 * side * side, 64), nn.ReLU(), nn.Linear(64, CLASSES)]
    return nn.Sequential(*layers), (32, side, side)


def _torch_steps(official: Path, x, y, m, variant: str) -> dict:
    import torch

    sys.path.insert(0, str(official))
    torch.backends.cudnn.deterministic = True
    fz = importlib.import_module("ISNetFunctionsZe")
    lz = importlib.import_module("ISNetLayersZe")
    fx = importlib.import_module("ISNetFlexTorch")
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    yt = torch.tensor(y, dtype=torch.long)
    mt = torch.tensor(m[:, None])
    size = x.shape[1]
    opts = {
        "selective": ({"multiple": False, "selective": True, "randomLogit": False}, True),
        "stochastic": ({"multiple": False, "selective": False, "randomLogit": True}, False),
        "original": ({"multiple": True, "selective": False, "randomLogit": False}, False),
    }[variant]

    def sgd(net):
        return torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)

    torch.manual_seed(0)
    plain, _ = _torch_cnn(torch, size)
    plain.train()
    opt_plain = sgd(plain)

    def plain_step():
        opt_plain.zero_grad()
        torch.nn.functional.cross_entropy(plain(xt), yt).backward()
        opt_plain.step()

    torch.manual_seed(0)
    net_flex, _ = _torch_cnn(torch, size)
    with contextlib.redirect_stdout(None):
        flex = fx.ISNetFlex(model=net_flex, e=1e-2, Zb=True, selectiveEps=1e-2, **opts[0])
    flex.train()
    opt_flex = sgd(flex)

    def flex_step():
        opt_flex.zero_grad()
        out = flex(xt, runLRPFlex=True)
        losses = fx.CompoundLoss(
            out, yt, masks=mt, cutFlex=1.0, cut2Flex=25.0, A=1, B=1, E=1, d=0.9, norm=True
        )
        ((1 - P) * losses["classification"] + P * losses["LRPFlex"]).backward()
        opt_flex.step()

    torch.manual_seed(0)
    net_block, pre_flatten = _torch_cnn(torch, size)
    o = opts[0]
    with contextlib.redirect_stdout(None):
        block = lz.LRPSequential(
            net_block,
            heat=True,
            e=1e-2,
            Zb=True,
            rule="e",
            selective=o["selective"],
            highest=o["selective"],
            multiple=o["multiple"],
            randomLogit=o["randomLogit"],
            preFlattenShape=pre_flatten,
        )
    block.train()
    opt_block = sgd(block)

    def block_step():
        opt_block.zero_grad()
        logits, heat = block(xt)
        hl = fz.LRPLossCEValleysGWRP(heat, mt, cut=1.0, cut2=25.0, A=1, B=3, E=1, d=0.9)
        ((1 - P) * torch.nn.functional.cross_entropy(logits, yt) + P * hl).backward()
        opt_block.step()

    return {
        "torch plain": plain_step,
        f"official LRP-Flex ({variant})": flex_step,
        f"official LRP Block ({variant})": block_step,
    }


def _time(fn) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and a JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", type=Path, help="the official repository's code/ folder")
    p.add_argument(
        "--variant", choices=("selective", "stochastic", "original"), default="selective"
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="image side (a multiple of 8)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="batch 16, 3 repeats (smoke run)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("vs_official: skipped, torch is not installed (pip install torch==2.13.0, CPU).")
        return 0
    if args.official is None or not (args.official / "ISNetFlexTorch.py").is_file():
        print(
            "vs_official: skipped, give --official PATH, the code/ folder of a checkout of "
            "github.com/PedroRASB/ISNet (it holds ISNetFlexTorch.py)."
        )
        return 0
    if args.quick:
        args.batch, args.repeats = 16, 3
    torch.set_num_threads(os.cpu_count() or 1)
    x, y, m = _batch(args.batch, args.size)
    steps = {**_keras_steps(x, y, m, args.variant)}
    steps.update(_torch_steps(args.official, x, y, m, args.variant))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.repeats + 2):
        for name, fn in steps.items():
            t = _time(fn)
            if r >= 2:
                times[name].append(t)
    med = {name: statistics.median(v) for name, v in times.items()}
    base = {"keras": med["keras plain"], "torch": med["torch plain"]}
    print(f"| {'step':34} | median (ms) | / own plain |")
    print(f"|{'-' * 36}|-------------|-------------|")
    for name, value in med.items():
        own = base["keras"] if name.startswith("keras") else base["torch"]
        print(f"| {name:34} | {1e3 * value:11.1f} | {value / own:10.2f}x |")
    print(
        json.dumps(
            {
                "machine": cpu_name(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "keras": keras.__version__,
                "batch": args.batch,
                "size": args.size,
                "variant": args.variant,
                "repeats": args.repeats,
                "times_s": times,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
