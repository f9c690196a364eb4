"""Loader for the official ISNet reference arrays (``tests/data/official_isnet/``).

The arrays were made by ``tests/data/official_isnet/generate.py`` from the authors' PyTorch
code (see that folder's README.md and SPEC.md). :func:`load_case` builds the same network in
Keras with the transferred weights and returns what the official code computed for one case:

    >>> model, x, labels, masks, expected = load_case("cnn", "block__selective")
    >>> expected["heatmaps"].shape          # (batch, maps, 16, 16, 1)
    >>> expected["grad_total"]["conv1/kernel"].shape   # Keras layout (HWIO)

Networks: ``"cnn"``, ``"cnn_bn"`` and ``"resnet"``; ``bn_training=True`` (BN networks only)
loads the step with BatchNormalization in training mode (batch statistics). Cases:
:data:`CASES`. Loading needs only NumPy and Keras (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "official_isnet"
NETWORKS = ("cnn", "cnn_bn", "resnet")
CASES = (
    "block__original",
    "block__selective",
    "block__stochastic_top",
    "block__stochastic_other",
    "flex__original",
    "flex__selective",
    "flex__selective_eps1e-7",
    "flex__stochastic",
)
#: BatchNormalization as torch's default: epsilon 1e-5, running statistics momentum 0.1
#: (Keras momentum 0.9).
BN_OPTIONS = {"epsilon": 1e-5, "momentum": 0.9}


def data_path(network: str, dtype: str = "float64", bn_training: bool = False) -> Path:
    """The ``.npz`` file of a network, dtype and BN mode."""
    if network not in NETWORKS:
        raise ValueError(f"Unknown network {network!r}; valid: {list(NETWORKS)}.")
    if bn_training and network == "cnn":
        raise ValueError("The 'cnn' network has no BatchNormalization; use bn_training=False.")
    stem = network + ("_train" if bn_training else "")
    return DATA / f"{stem}_{dtype}.npz"


def build_model(network: str, dtype: str = "float64") -> keras.Model:
    """The Keras twin of the generator's PyTorch network (weights not set yet).

    Layer names match the weight keys of the arrays (``conv1``, ``bn1``, ``dense1``, ...).
    """
    kw = {"dtype": dtype}
    inputs = keras.Input((16, 16, 1), dtype=dtype, name="image")
    if network in ("cnn", "cnn_bn"):
        h = inputs
        for i, filters in ((1, 4), (2, 6)):
            h = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}", **kw)(h)
            if network == "cnn_bn":
                h = keras.layers.BatchNormalization(name=f"bn{i}", **BN_OPTIONS, **kw)(h)
            h = keras.layers.Activation("relu", name=f"relu{i}", **kw)(h)
            h = keras.layers.MaxPooling2D(2, name=f"pool{i}", **kw)(h)
        h = keras.layers.Flatten(name="flatten", **kw)(h)
        h = keras.layers.Dense(16, name="dense1", **kw)(h)
        h = keras.layers.Activation("relu", name="relu3", **kw)(h)
        outputs = keras.layers.Dense(3, name="dense2", **kw)(h)
        return keras.Model(inputs, outputs, name=network)
    if network != "resnet":
        raise ValueError(f"Unknown network {network!r}; valid: {list(NETWORKS)}.")

    def conv_bn(h, filters, size, name):
        h = keras.layers.Conv2D(
            filters, size, padding="same", use_bias=False, name=f"{name[0]}conv{name[1]}", **kw
        )(h)
        return keras.layers.BatchNormalization(name=f"{name[0]}bn{name[1]}", **BN_OPTIONS, **kw)(h)

    def block(h, filters, name):
        r = conv_bn(h, filters, 3, (f"{name}_", "1"))
        r = keras.layers.Activation("relu", name=f"{name}_relu1", **kw)(r)
        r = conv_bn(r, filters, 3, (f"{name}_", "2"))
        shortcut = h if h.shape[-1] == filters else conv_bn(h, filters, 1, (f"{name}_down_", ""))
        out = keras.layers.Add(name=f"{name}_add", **kw)([shortcut, r])
        return keras.layers.Activation("relu", name=f"{name}_relu2", **kw)(out)

    h = conv_bn(inputs, 4, 3, ("", "1"))
    h = keras.layers.Activation("relu", name="relu", **kw)(h)
    h = keras.layers.MaxPooling2D(2, name="pool", **kw)(h)
    h = block(h, 4, "b1")
    h = block(h, 6, "b2")
    h = keras.layers.GlobalAveragePooling2D(name="gap", **kw)(h)
    outputs = keras.layers.Dense(3, name="fc", **kw)(h)
    return keras.Model(inputs, outputs, name="resnet")


#: the order of each layer type's weights in ``layer.get_weights()``.
_ORDER = {
    keras.layers.Conv2D: ("kernel", "bias"),
    keras.layers.Dense: ("kernel", "bias"),
    keras.layers.BatchNormalization: ("gamma", "beta", "moving_mean", "moving_variance"),
}


def set_weights(model: keras.Model, arrays) -> None:
    """Set ``model``'s weights from the ``w__<layer>/<weight>`` arrays."""
    for layer in model.layers:
        names = next((v for k, v in _ORDER.items() if isinstance(layer, k)), None)
        if names is None:
            continue
        values = [arrays[f"w__{layer.name}/{n}"] for n in names if f"w__{layer.name}/{n}" in arrays]
        layer.set_weights([v.astype(layer.dtype) for v in values])


def weight_key(variable) -> str:
    """The arrays' ``"<layer>/<weight>"`` key of a Keras variable (e.g. ``"conv1/kernel"``)."""
    return "/".join(variable.path.split("/")[-2:])


def load_case(network: str, case: str, dtype: str = "float64", bn_training: bool = False):
    """The Keras model, batch and official numbers of one reference case.

    Args:
        network: ``"cnn"``, ``"cnn_bn"`` or ``"resnet"``.
        case: one of :data:`CASES` (``"<implementation>__<variant>"``).
        dtype: ``"float64"`` or ``"float32"`` (the model's and the arrays' dtype).
        bn_training: the BN networks' step in training mode (batch statistics).

    Returns:
        ``(model, x, labels, masks, expected)``: ``x`` ``(8, 16, 16, 1)``, integer
        ``labels`` ``(8,)``, binary ``masks`` ``(8, 16, 16)``; ``expected`` has ``logits``,
        ``heatmaps`` ``(8, maps, 16, 16, 1)``, ``classes`` (the explained class per sample,
        selective and stochastic), ``ce_loss``, ``heatmap_loss``, ``total_loss``,
        ``grad_total`` and ``grad_heatmap`` (``{"<layer>/<weight>": array}``, Keras layout),
        ``loss`` (the heatmap-loss settings: A, B, E, d, C1, C2, fg), ``P``, ``epsilon``,
        ``implementation``, ``variant``, ``selective_eps``, ``bn_training``.
    """
    if case not in CASES:
        raise ValueError(f"Unknown case {case!r}; valid: {list(CASES)}.")
    with np.load(data_path(network, dtype, bn_training)) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    model = build_model(network, dtype)
    set_weights(model, arrays)
    info = meta["cases"][case]
    expected: dict = {
        "loss": meta["loss"][info["implementation"]],
        "P": meta["P"],
        "epsilon": meta["epsilon"],
        "bn_training": meta["bn_training"],
        **info,
    }
    prefix = case + "__"
    for tag in ("grad_total", "grad_heatmap"):
        start = f"{prefix}{tag}__"
        expected[tag] = {k[len(start) :]: v for k, v in arrays.items() if k.startswith(start)}
    for key in ("logits", "heatmaps", "classes", "ce_loss", "heatmap_loss", "total_loss"):
        if prefix + key in arrays:
            expected[key] = arrays[prefix + key]
    x = arrays["x"].astype(dtype)
    return model, x, arrays["labels"], arrays["masks"].astype(dtype), expected
