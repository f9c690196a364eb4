"""Generate reference arrays from the official ISNet code (github PedroRASB/ISNet, ``code/``).

The official code is *imported* from the path given on the command line; nothing of it is
copied into this repository. The script builds three tiny PyTorch networks with seeded
weights, runs the official LRP Block (``ISNetLayersZe.LRPSequential`` /
``ISNetLayersZe.LRPResNet``) and LRP-Flex (``ISNetFlexTorch.ISNetFlex``) ISNets on one fixed
batch, and stores, per network and dtype, one ``.npz`` with the inputs, the weights in Keras
layout, and for every (implementation, variant) the logits, heatmaps, losses and weight
gradients (Keras layout). See README.md in this folder for the array names.

Usage::

    python tests/data/official_isnet/generate.py /path/to/ISNet/code [--out DIR]

Requires ``torch`` (the arrays were made with the CPU build of torch 2.13.0).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import random
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the generator needs torch
    torch = None
    nn = None

BATCH = 8
SIZE = 16
CLASSES = 3
EPS = 1e-2
P = 0.7
#: heatmap-loss settings of the official reference MNIST scripts (``RunISNet.py`` for the LRP
#: Block, ``RunISNetFlex.py`` for LRP-Flex; they differ only in B).
LOSS = {
    "block": {"A": 1.0, "B": 3.0, "E": 1.0, "d": 0.9, "C1": 1.0, "C2": 25.0, "fg": "L2"},
    "flex": {"A": 1.0, "B": 1.0, "E": 1.0, "d": 0.9, "C1": 1.0, "C2": 25.0, "fg": "L2"},
}
NETWORKS = ("cnn", "cnn_bn", "resnet")
#: plain training steps applied to the seeded initial weights (see :func:`pretrain`).
PRETRAIN_STEPS = 25


# --------------------------------------------------------------------------- networks
def _cnn(bn: bool) -> nn.Sequential:
    """Conv(1->4) [BN] ReLU MaxPool Conv(4->6) [BN] ReLU MaxPool Flatten Dense(96->16) ReLU
    Dense(16->3): the demo CNN's layer types on a 16x16x1 input."""
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 16), nn.ReLU()]
    layers.append(nn.Linear(16, CLASSES))
    return nn.Sequential(*layers)


def _resnet_classes() -> tuple[type, type]:
    """The residual network's classes (defined lazily: torch is optional at import)."""

    class BasicBlock(nn.Module):
        """torchvision's BasicBlock (conv-BN-ReLU-conv-BN + shortcut, ReLU), stride 1, convs
        without bias, but with two ReLU modules (LRP-Flex hooks each ReLU module once)."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            if cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)
                )
            self.relu2 = nn.ReLU()

        def forward(self, x):
            identity = self.downsample(x) if hasattr(self, "downsample") else x
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu2(out + identity)

    class TinyResidualNet(nn.Module):
        """conv1-bn1-relu-maxpool, layer1 (identity shortcut), layer2 (1x1 conv + BN
        shortcut), global average pooling, fc: torchvision's ResNet layout (attribute names
        included, which the LRP Block's ``LRPResNet`` walks), 16x16x1 -> 3 classes. The class
        name avoids "ResNet": ISNetFlex would rebuild a torchvision ResNet from it."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(2)
            self.layer1 = nn.Sequential(BasicBlock(4, 4))
            self.layer2 = nn.Sequential(BasicBlock(4, 6))
            self.avgpool = nn.AdaptiveAvgPool2d(
                (1, 1)
            )  # a tuple, as torchvision (LRPPool2d indexes it)
            self.fc = nn.Linear(6, CLASSES)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer2(self.layer1(x))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return BasicBlock, TinyResidualNet


#: (Keras layer name, torch module path, kind) for every weighted layer of each network.
LAYERS: dict[str, list[tuple[str, str, str]]] = {
    "cnn": [
        ("conv1", "0", "conv"),
        ("conv2", "3", "conv"),
        ("dense1", "7", "dense_flat"),
        ("dense2", "9", "dense"),
    ],
    "cnn_bn": [
        ("conv1", "0", "conv"),
        ("bn1", "1", "bn"),
        ("conv2", "4", "conv"),
        ("bn2", "5", "bn"),
        ("dense1", "9", "dense_flat"),
        ("dense2", "11", "dense"),
    ],
    "resnet": [
        ("conv1", "conv1", "conv"),
        ("bn1", "bn1", "bn"),
        ("b1_conv1", "layer1.0.conv1", "conv"),
        ("b1_bn1", "layer1.0.bn1", "bn"),
        ("b1_conv2", "layer1.0.conv2", "conv"),
        ("b1_bn2", "layer1.0.bn2", "bn"),
        ("b2_conv1", "layer2.0.conv1", "conv"),
        ("b2_bn1", "layer2.0.bn1", "bn"),
        ("b2_conv2", "layer2.0.conv2", "conv"),
        ("b2_bn2", "layer2.0.bn2", "bn"),
        ("b2_down_conv", "layer2.0.downsample.0", "conv"),
        ("b2_down_bn", "layer2.0.downsample.1", "bn"),
        ("fc", "fc", "dense"),
    ],
}
#: channels, height, width of the tensor flattened before ``dense_flat`` layers.
PRE_FLATTEN = (6, 4, 4)


def build_torch(network: str, seed: int = 0) -> nn.Module:
    """The network in float64 with seeded weights: torch's default initialisation (biases
    non-zero) under ``torch.manual_seed(seed)``, then BatchNorm gamma ~ U(0.5, 1.5),
    beta ~ N(0, 0.1), running mean ~ N(0, 0.1), running var ~ U(0.5, 1.5)."""
    torch.manual_seed(seed)
    if network == "resnet":
        net = _resnet_classes()[1]()
    else:
        net = _cnn(bn=network == "cnn_bn")
    net = net.double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen, dtype=torch.float64))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen, dtype=torch.float64))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen, dtype=torch.float64))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen, dtype=torch.float64))
    return net


def _to_keras(kind: str, name: str, tensor: np.ndarray) -> np.ndarray:
    """A torch weight (or gradient) in Keras layout: conv ``(O, I, kh, kw)`` -> HWIO,
    dense ``(out, in)`` -> ``(in, out)``; after a Flatten the input index is reordered from
    torch's (C, H, W) to Keras' channels-last (H, W, C)."""
    if name != "kernel" or kind == "bn":
        return tensor
    if kind == "conv":
        return np.transpose(tensor, (2, 3, 1, 0))
    if kind == "dense_flat":
        c, h, w = PRE_FLATTEN
        t = tensor.reshape(tensor.shape[0], c, h, w).transpose(2, 3, 1, 0)
        return t.reshape(h * w * c, tensor.shape[0])
    return tensor.T


#: torch parameter/buffer name -> Keras weight name, per kind.
_NAMES = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "dense": {"weight": "kernel", "bias": "bias"},
    "dense_flat": {"weight": "kernel", "bias": "bias"},
    "bn": {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    },
}


def keras_tensors(network: str, net: nn.Module, values: dict | None = None) -> dict:
    """``{"layer/weight": array}`` in Keras layout for the weights of ``net`` (or, with
    ``values``, for ``{torch parameter name: tensor}``, e.g. gradients)."""
    modules = dict(net.named_modules())
    out = {}
    for kname, tpath, kind in LAYERS[network]:
        module = modules[tpath]
        for tname, kw in _NAMES[kind].items():
            full = f"{tpath}.{tname}"
            if values is None:
                t = getattr(module, tname, None)
                if t is None:
                    continue
                arr = t.detach().numpy().astype(np.float64)
            else:
                if full not in values:
                    continue
                arr = values[full]
            out[f"{kname}/{kw}"] = _to_keras(kind, kw, arr)
    return out


# ------------------------------------------------------------------------------ data
def make_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` ``(B, 16, 16, 1)`` in [0, 1], integer labels ``(B,)`` and binary masks
    ``(B, 16, 16)``.

    ``x = contrast * (0.6 * template[label] + 0.4 * noise)``, with one uniform random template
    per class, uniform noise and a per-sample contrast in [0.3, 1]; the mask is a random
    foreground rectangle (5 to 10 pixels a side).
    """
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0.0, 1.0, size=(CLASSES, SIZE, SIZE, 1))
    labels = rng.integers(0, CLASSES, size=BATCH)
    contrast = rng.uniform(0.3, 1.0, size=(BATCH, 1, 1, 1))
    x = contrast * (0.6 * templates[labels] + 0.4 * rng.uniform(0.0, 1.0, (BATCH, SIZE, SIZE, 1)))
    masks = np.zeros((BATCH, SIZE, SIZE))
    for b in range(BATCH):
        h, w = rng.integers(5, 11, size=2)
        top, left = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
        masks[b, top : top + h, left : left + w] = 1.0
    return x, labels, masks


def pretrain(net: nn.Module, batch: tuple, steps: int = PRETRAIN_STEPS) -> nn.Module:
    """A few plain (cross-entropy) Adam steps, lr 1e-2, on the batch, BN in eval mode.

    At initialisation the logits' ranking is the same for every sample (the biases dominate),
    so argmin/argmax would not vary; after these steps the explained classes differ between
    samples, as in a network being trained.
    """
    x, labels, _ = batch
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)), dtype=torch.float64)
    yt = torch.tensor(labels, dtype=torch.long)
    net.eval()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net


# ----------------------------------------------------------------------- official code
class Official:
    """The official modules, imported from ``code/`` (added to ``sys.path``)."""

    def __init__(self, path: Path):
        sys.path.insert(0, str(path))
        torch.backends.cudnn.deterministic = True  # _LRPSequential refuses to run otherwise
        self.f = importlib.import_module("ISNetFunctionsZe")
        self.layers = importlib.import_module("ISNetLayersZe")
        self.flex = importlib.import_module("ISNetFlexTorch")
        self.globals = importlib.import_module("globalsZe")


@contextlib.contextmanager
def keep_float64(enabled: bool) -> Iterator[None]:
    """Make ``Tensor.float()`` a no-op on float64 tensors (``enabled``).

    The official loss (``LRPLossCEValleysGWRP``) and LRP-Flex's selective quantity cast to
    float32 with ``.float()``; the float64 references keep float64 throughout instead.
    """
    if not enabled:
        yield
        return
    original = torch.Tensor.float

    def _float(self, *args, **kwargs):
        if self.dtype == torch.float64:
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.float = _float
    try:
        yield
    finally:
        torch.Tensor.float = original


class _Recorder:
    """Stands in for the ``random`` module inside ``ISNetFunctionsZe`` and logs its draws."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls: list[int] = []

    def randint(self, a: int, b: int) -> int:
        value = self.rng.randint(a, b)
        self.calls.append(value)
        return value


def _block_draw(calls: list[int], top: np.ndarray) -> np.ndarray:
    """The classes the LRP Block's stochastic ISNet explained, from its logged draws: one coin
    ``randint(1, 10)`` per batch (> 5: the top logit for every sample), else per sample
    ``randint(0, K-1)`` redrawn while it equals the top class."""
    if calls[0] > 5:
        return top.copy()
    rest = iter(calls[1:])
    out = []
    for t in top:
        value = next(rest)
        while value == t:
            value = next(rest)
        out.append(value)
    return np.asarray(out)


def _block_seeds() -> dict[str, int]:
    """The smallest python-random seeds whose first coin picks each stochastic branch."""
    seeds = {}
    s = 0
    while len(seeds) < 2:
        coin = random.Random(s).randint(1, 10)
        seeds.setdefault("stochastic_top" if coin > 5 else "stochastic_other", s)
        s += 1
    return seeds


def _set_bn_mode(net: nn.Module, bn_training: bool) -> None:
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train(bn_training)


def _block_model(off: Official, network: str, base: nn.Module, variant: str) -> nn.Module:
    """The official LRP Block wrapper for ``variant`` around a copy of ``base``."""
    net = copy.deepcopy(base)
    opts = {
        "original": {"selective": False, "highest": False, "multiple": True, "random": False},
        "selective": {"selective": True, "highest": True, "multiple": False, "random": False},
        "stochastic": {"selective": False, "highest": False, "multiple": False, "random": True},
    }[variant]
    common = {
        "heat": True,
        "e": EPS,
        "Zb": True,
        "rule": "e",
        "selective": opts["selective"],
        "highest": opts["highest"],
        "multiple": opts["multiple"],
        "detach": True,
        "randomLogit": opts["random"],
    }
    with contextlib.redirect_stdout(None):
        if network == "resnet":
            return off.layers.LRPResNet(net, positive=False, **common)
        return off.layers.LRPSequential(net, preFlattenShape=PRE_FLATTEN, **common)


def _flex_model(
    off: Official, base: nn.Module, variant: str, selective_eps: float = 1e-2
) -> nn.Module:
    """The official ``ISNetFlex`` for ``variant`` around a copy of ``base``; its
    ``LRPFlex`` always builds the graph (as ``ISNetFlex`` does in training mode), so the
    heatmaps are differentiable with the wrapper in eval mode (which float64 needs: a
    training-mode ``ISNetFlex`` refuses non-float32 outputs)."""
    net = copy.deepcopy(base)
    opts = {
        "original": {"multiple": True, "selective": False, "randomLogit": False},
        "selective": {"multiple": False, "selective": True, "randomLogit": False},
        "stochastic": {"multiple": False, "selective": False, "randomLogit": True},
    }[variant]
    with contextlib.redirect_stdout(None):
        wrapper = off.flex.ISNetFlex(model=net, e=EPS, Zb=True, selectiveEps=selective_eps, **opts)
    inner = wrapper.LRPFlex

    def lrp_flex(quantity, x, retain_graph=True, create_graph=True):
        return inner(quantity, x, retain_graph=True, create_graph=True)

    wrapper.LRPFlex = lrp_flex
    return wrapper


def _grads(loss, net: nn.Module) -> dict:
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    return {
        name: (np.zeros(p.shape) if g is None else g.detach().numpy().astype(np.float64))
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def _to_np(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def run_case(
    off: Official,
    network: str,
    base: nn.Module,
    impl: str,
    variant: str,
    batch: tuple,
    dtype,
    bn_training: bool,
    seed: int = 0,
    selective_eps: float = 1e-2,
) -> dict:
    """One official ISNet step's numbers: logits, heatmaps ``(B, maps, H, W, C)``, chosen
    classes, CE / heatmap / total loss and the weight gradients (torch names)."""
    x, labels, masks = batch
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)), dtype=dtype)
    yt = torch.tensor(labels, dtype=torch.long)
    mt = torch.tensor(masks[:, None], dtype=dtype)
    cfg = LOSS[impl]
    out: dict = {}
    with keep_float64(dtype == torch.float64), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if impl == "block":
            wrapper = _block_model(off, network, base, variant).to(dtype)
            _set_bn_mode(wrapper, bn_training)
            recorder = _Recorder(seed)
            saved = off.f.random
            off.f.random = recorder
            try:
                with contextlib.redirect_stdout(None):
                    logits, heat = wrapper(xt)
            finally:
                off.f.random = saved
            net = wrapper.NN if network != "resnet" else wrapper.resnet
            top = _to_np(logits).argmax(-1)
            if variant == "stochastic":
                out["classes"] = _block_draw(recorder.calls, top)
            elif variant == "selective":
                out["classes"] = _to_np(logits).argmin(-1)
            ce = nn.functional.cross_entropy(logits, yt)
            with contextlib.redirect_stdout(None):
                hl = off.f.LRPLossCEValleysGWRP(
                    heat,
                    mt,
                    cut=cfg["C1"],
                    cut2=cfg["C2"],
                    A=cfg["A"],
                    B=cfg["B"],
                    E=cfg["E"],
                    d=cfg["d"],
                    norm="absRoIMean",
                    rule="e",
                    alternativeForeground=cfg["fg"],
                )
        else:
            wrapper = _flex_model(off, base, variant, selective_eps).to(dtype)
            _set_bn_mode(wrapper, bn_training)
            torch.manual_seed(seed)
            with contextlib.redirect_stdout(None):
                outputs = wrapper(xt, runLRPFlex=True)
            net = wrapper.model
            logits, heat = outputs["output"], outputs["LRPFlex"]["input"]
            if variant != "original":
                out["classes"] = np.asarray([int(i) for i in wrapper.selected])
            with contextlib.redirect_stdout(None):
                losses = off.flex.CompoundLoss(
                    outputs,
                    yt,
                    masks=mt,
                    cutFlex=cfg["C1"],
                    cut2Flex=cfg["C2"],
                    A=cfg["A"],
                    B=cfg["B"],
                    E=cfg["E"],
                    d=cfg["d"],
                    alternativeForeground=cfg["fg"],
                    norm="absRoIMean",
                )
            ce, hl = losses["classification"], losses["LRPFlex"]
        total = (1 - P) * ce + P * hl
        out["logits"] = _to_np(logits)
        out["heatmaps"] = np.transpose(_to_np(heat), (0, 1, 3, 4, 2))
        out["ce_loss"] = np.asarray(_to_np(ce))
        out["heatmap_loss"] = np.asarray(_to_np(hl))
        out["total_loss"] = np.asarray(_to_np(total))
        out["grad_total"] = _grads(total, net)
        out["grad_heatmap"] = _grads(hl, net)
        out["net"] = net
    return out


# ------------------------------------------------------------------------------- main
def _cases(network: str) -> list[tuple[str, str, str, float, int]]:
    """(case name, implementation, variant, selective eps, seed) of each stored case."""
    seeds = _block_seeds()
    return [
        ("block__original", "block", "original", 0.0, 0),
        ("block__selective", "block", "selective", 0.0, 0),
        ("block__stochastic_top", "block", "stochastic", 0.0, seeds["stochastic_top"]),
        ("block__stochastic_other", "block", "stochastic", 0.0, seeds["stochastic_other"]),
        ("flex__original", "flex", "original", 0.0, 0),
        ("flex__selective", "flex", "selective", 1e-2, 0),
        ("flex__selective_eps1e-7", "flex", "selective", 1e-7, 0),
        ("flex__stochastic", "flex", "stochastic", 0.0, 0),
    ]


def generate(official_code: Path, out_dir: Path) -> list[Path]:
    """Write ``<network>[_train]_<dtype>.npz`` for every network, BN mode and dtype."""
    off = Official(official_code)
    batch = make_batch(0)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for network in NETWORKS:
        base = pretrain(build_torch(network), batch)
        modes = [False, True] if network != "cnn" else [False]
        for bn_training in modes:
            for dtype, dname in ((torch.float64, "float64"), (torch.float32, "float32")):
                arrays: dict[str, np.ndarray] = {
                    "x": batch[0],
                    "labels": batch[1],
                    "masks": batch[2],
                }
                for key, value in keras_tensors(network, base).items():
                    arrays[f"w__{key}"] = value
                meta = {
                    "network": network,
                    "dtype": dname,
                    "bn_training": bn_training,
                    "epsilon": EPS,
                    "P": P,
                    "loss": LOSS,
                    "cases": {},
                }
                for case, impl, variant, seps, seed in _cases(network):
                    res = run_case(
                        off,
                        network,
                        base,
                        impl,
                        variant,
                        batch,
                        dtype,
                        bn_training,
                        seed=seed,
                        selective_eps=seps,
                    )
                    net = res.pop("net")
                    store = np.float32 if dtype == torch.float32 else np.float64
                    for tag in ("grad_total", "grad_heatmap"):
                        for key, value in keras_tensors(network, net, res.pop(tag)).items():
                            arrays[f"{case}__{tag}__{key}"] = value.astype(store)
                    for key, value in res.items():
                        arrays[f"{case}__{key}"] = (
                            value if key == "classes" else value.astype(store)
                        )
                    meta["cases"][case] = {
                        "implementation": impl,
                        "variant": variant,
                        "selective_eps": seps or None,
                        "seed": seed,
                    }
                arrays["meta"] = np.asarray(json.dumps(meta))
                stem = network + ("_train" if bn_training else "")
                path = out_dir / f"{stem}_{dname}.npz"
                np.savez_compressed(path, **arrays)
                written.append(path)
    return written


def _head(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("official_code", type=Path, help="the official repository's code/ folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    if torch is None:
        log("generate.py needs torch (pip install torch==2.13.0, CPU build).")
        return 2
    torch.set_num_threads(2)
    written = generate(args.official_code, args.out)
    log(f"official commit {_head(args.official_code)}, torch {torch.__version__}")
    for path in written:
        log(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
