"""Loader for the official ISNet reference arrays (``tests/data/official_isnet/``).

The arrays were made by ``tests/data/official_isnet/generate.py`` from the authors' PyTorch
code (see that folder's README.md and SPEC.md). :func:`load_case` builds the same network in
Keras with the transferred weights and returns what the official code computed for one case:

    >>> model, x, labels, masks, expected = load_case("cnn", "block__selective")
    >>> expected["heatmaps"].shape          # (batch, maps, 16, 16, 1)
    >>> expected["grad_total"]["conv1/kernel"].shape   # Keras layout (HWIO)

Networks: ``"cnn"``, ``"cnn_bn"`` and ``"resnet"``; ``bn_training=True`` (BN networks only)
loads the step with BatchNormalization in training mode (batch statistics). Cases:
:data:`CASES`. Loading needs only NumPy and Keras (no torch). :func:`keras_numbers` computes
keras-isnet's side of a case with the official settings, and :func:`rel_err` /
:func:`gradient_floor` are the error measure (``tests/test_official_reference.py`` asserts on
them; ``compare_today.py`` prints them).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

import keras_isnet as ki
from keras_isnet import backend
from keras_isnet.isnet.model import classification_loss

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


#: a gradient's scale is at least this fraction of the case's largest gradient.
GRADIENT_FLOOR = 1e-3


def rel_err(a, ref, floor: float = 0.0) -> float:
    """``max |a - ref| / max(max |ref|, floor)`` as a Python float (the absolute error when
    that scale is 0)."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref))), float(floor))
    diff = float(np.max(np.abs(a - ref)))
    return diff / scale if scale > 0 else diff


def gradient_floor(ref, top: float) -> float:
    """The floor of a gradient's scale: the case's largest gradient ``top`` for a weight whose
    official gradient is zero up to round-off (below 1e-6 of it: a conv bias before a
    training-mode BN, the last bias in LRP-Flex's heatmap loss), else 1e-3 of it."""
    return top if float(np.max(np.abs(ref))) < 1e-6 * top else GRADIENT_FLOOR * top


def keras_numbers(model, x, labels, masks, expected) -> dict:
    """keras-isnet's numbers for one official case, on the running backend.

    The case's heatmaps (``ISNetHeatmaps`` with its implementation, epsilon and
    ``selective_eps``; the stochastic variant replays the official draw through
    ``classes=``), the heatmap loss with the implementation's official settings
    (``norm="absRoIMean"``), the ISNet loss ``(1 - P) CE + P L_heat`` and the gradients of
    both with respect to every trainable weight.

    Returns:
        ``{"logits", "heatmaps", "heatmap_loss", "total_loss", "grad_total",
        "grad_heatmap"}``; the gradients as ``{"<layer>/<weight>": array}``.
    """
    variant = expected["variant"]
    heatmaps = ki.ISNetHeatmaps(
        model,
        epsilon=expected["epsilon"],
        input_bounds=(0.0, 1.0),
        lrp=expected["implementation"],
        selective_eps=expected.get("selective_eps") or 1e-7,
    )
    # the official random draw, replayed (the selective class is chosen by keras: argmin)
    classes = expected["classes"].astype("int32") if variant == "stochastic" else None
    cfg, P = expected["loss"], expected["P"]
    x_t, masks_t = ops.convert_to_tensor(x), ops.convert_to_tensor(masks)
    labels_t = ops.convert_to_tensor(labels.astype("int32"))
    variables = model.trainable_variables

    def losses():
        logits, maps = heatmaps.logits_and_heatmaps(
            x_t, labels_t, variant=variant, training=expected["bn_training"], classes=classes
        )
        ce = classification_loss(labels_t, logits)
        heat = ki.losses.isnet_heatmap_loss(
            maps,
            masks_t,
            d=cfg["d"],
            E=cfg["E"],
            A=cfg["A"],
            B=cfg["B"],
            C1=cfg["C1"],
            C2=cfg["C2"],
            foreground=cfg["fg"],
            norm="absRoIMean",
        )
        return (1.0 - P) * ce + P * heat, (heat, maps, logits)

    (total, (heat, maps, logits)), grad_total = backend.value_and_gradients(losses, variables)
    _, grad_heat = backend.value_and_gradients(lambda: (losses()[1][0], None), variables)

    def numpy_grads(grads):
        return {
            weight_key(v): np.zeros(v.shape) if g is None else ki.arrays.to_numpy(g)
            for v, g in zip(variables, grads, strict=True)
        }

    return {
        "logits": ki.arrays.to_numpy(logits),
        "heatmaps": ki.arrays.to_numpy(maps),
        "heatmap_loss": float(ki.arrays.to_numpy(heat)),
        "total_loss": float(ki.arrays.to_numpy(total)),
        "grad_total": numpy_grads(grad_total),
        "grad_heatmap": numpy_grads(grad_heat),
    }
