"""keras-isnet against the official ISNet code's own numbers (issue 17).

Every case stored under ``tests/data/official_isnet/`` (made by that folder's
``generate.py`` from the authors' PyTorch code; see its README.md and SPEC.md): three tiny
networks (``cnn``, ``cnn_bn``, ``resnet``; the BN networks also with BatchNormalization in
training mode), the LRP Block (``lrp="block"``) and LRP-Flex (``lrp="flex"``), the original,
selective and stochastic variants (the stochastic ones with the official draw replayed
through the ``classes=`` hook of ``ISNetHeatmaps.logits_and_heatmaps``), in float64 and
float32. Compared: the heatmaps, the heatmap loss, the ISNet loss and the gradients of both
with respect to every weight.

Error measure: ``max |a - ref| / scale`` with ``scale = max |ref|`` of the array; for a
gradient the scale has a floor of ``1e-3`` times the case's largest gradient, and a weight
whose official gradient is zero up to round-off (below 1e-6 of the largest: a conv bias
before a training-mode BatchNormalization, the last bias in LRP-Flex's heatmap loss) is
measured against the largest gradient itself (it holds only round-off).

Tolerances: float64 ``1e-5`` everywhere (measured: heatmaps <= 1e-14, losses <= 3e-10,
gradients <= 1e-7). float32: heatmaps and losses ``1e-4`` (measured <= 9e-6), gradients
``1e-2`` (measured <= 3e-3, the largest on the training-mode residual network, whose
heatmap gradients are second derivatives through the batch statistics).

PyTorch backend: Keras' torch backend computes float64 Dense matmuls in float32 (README,
known limitations), so only the float32 cases run there.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from official_reference import CASES, load_case

import keras_isnet as ki
from keras_isnet import backend
from keras_isnet.isnet.model import classification_loss

#: (network, bn_training) of the stored files.
NETWORKS = [
    ("cnn", False),
    ("cnn_bn", False),
    ("cnn_bn", True),
    ("resnet", False),
    ("resnet", True),
]
TOLERANCE = {
    "float64": {"maps": 1e-5, "loss": 1e-5, "grad": 1e-5},
    "float32": {"maps": 1e-4, "loss": 1e-4, "grad": 1e-2},
}
#: a gradient's scale is at least this fraction of the case's largest gradient.
GRADIENT_FLOOR = 1e-3


def rel_err(a, ref, floor: float = 0.0) -> float:
    """``max |a - ref| / max(max |ref|, floor)`` as a Python float."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref))), float(floor))
    diff = float(np.max(np.abs(a - ref)))
    return diff / scale if scale > 0 else diff


def keras_numbers(model, x, labels, masks, expected) -> dict:
    """keras-isnet's heatmaps, losses and weight gradients for one official case."""
    variant = expected["variant"]
    heatmaps = ki.ISNetHeatmaps(
        model,
        epsilon=expected["epsilon"],
        input_bounds=(0.0, 1.0),
        lrp=expected["implementation"],
        selective_eps=expected["selective_eps"] or 1e-7,
    )
    # the official random draw, replayed (the selective class is chosen by keras: argmin)
    classes = expected["classes"].astype("int32") if variant == "stochastic" else None
    cfg = expected["loss"]
    P = expected["P"]
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
        return (1.0 - P) * ce + P * heat, heat, maps

    (total, (heat, maps)), grad_total = backend.value_and_gradients(
        lambda: (lambda t, h, m: (t, (h, m)))(*losses()), variables
    )
    (_, _), grad_heat = backend.value_and_gradients(
        lambda: (lambda t, h, m: (h, None))(*losses()), variables
    )
    names = ["/".join(v.path.split("/")[-2:]) for v in variables]

    def numpy_grads(grads):
        return {
            n: np.zeros(v.shape) if g is None else ki.arrays.to_numpy(g)
            for n, v, g in zip(names, variables, grads, strict=True)
        }

    return {
        "heatmaps": ki.arrays.to_numpy(maps),
        "heatmap_loss": float(ki.arrays.to_numpy(heat)),
        "total_loss": float(ki.arrays.to_numpy(total)),
        "grad_total": numpy_grads(grad_total),
        "grad_heatmap": numpy_grads(grad_heat),
    }


def gradient_floor(ref, top: float) -> float:
    """The floor of a gradient's scale: the case's largest gradient for a weight whose
    official gradient is zero up to round-off (below 1e-6 of it), else 1e-3 of it."""
    return top if float(np.max(np.abs(ref))) < 1e-6 * top else GRADIENT_FLOOR * top


def _params():
    out = []
    for network, bn_training in NETWORKS:
        for case in CASES:
            for dtype in ("float64", "float32"):
                marks = []
                # float32 runs in full with -m slow; one eval-mode network by default
                if dtype == "float32" and (network != "cnn_bn" or bn_training):
                    marks.append(pytest.mark.slow)
                label = f"{network}{'_train' if bn_training else ''}-{case}-{dtype}"
                out.append(pytest.param(network, bn_training, case, dtype, id=label, marks=marks))
    return out


def _skip_unsupported(dtype):
    if dtype == "float64" and keras.backend.backend() == "torch":
        pytest.skip("Keras' torch backend computes float64 Dense matmuls in float32")
    if dtype == "float64" and not backend.supports_float64():
        pytest.skip("float64 on JAX needs JAX_ENABLE_X64=1")


@pytest.mark.parametrize("network, bn_training, case, dtype", _params())
def test_matches_official_code(network, bn_training, case, dtype):
    _skip_unsupported(dtype)
    keras.utils.set_random_seed(0)
    model, x, labels, masks, expected = load_case(network, case, dtype, bn_training)
    got = keras_numbers(model, x, labels, masks, expected)
    tol = TOLERANCE[dtype]
    assert rel_err(got["heatmaps"], expected["heatmaps"]) <= tol["maps"]
    for key in ("heatmap_loss", "total_loss"):
        assert got[key] == pytest.approx(float(expected[key]), rel=float(tol["loss"]))
    for tag in ("grad_total", "grad_heatmap"):
        ref = expected[tag]
        top = max(float(np.max(np.abs(v))) for v in ref.values())
        errors = {k: rel_err(got[tag][k], v, gradient_floor(v, top)) for k, v in ref.items()}
        worst = max(errors, key=errors.get)
        assert errors[worst] <= tol["grad"], f"{tag} of {worst}: {errors[worst]:.2e}"


def test_forced_classes_leave_the_random_state_alone():
    """The ``classes=`` hook replays a draw without drawing: the seed state is unchanged."""
    model, x, labels, _, expected = load_case("cnn", "flex__stochastic", "float32")
    heatmaps = ki.ISNetHeatmaps(model, lrp="flex")
    seed = keras.random.SeedGenerator(3)
    before = ki.arrays.to_numpy(seed.state)
    forced = expected["classes"].astype("int32")
    _, maps = heatmaps.logits_and_heatmaps(
        x, labels, variant="stochastic", seed=seed, classes=forced
    )
    np.testing.assert_array_equal(ki.arrays.to_numpy(seed.state), before)
    assert tuple(maps.shape) == (8, 1, 16, 16, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lrp": "faster"}, "lrp='faster'"),
        ({"lrp": None}, "lrp=None"),
        ({"selective_eps": 0.0}, "selective_eps"),
        ({"selective_eps": "big"}, "selective_eps"),
    ],
)
def test_invalid_options_name_the_argument(kwargs, message):
    model, *_ = load_case("cnn", "block__original", "float32")
    with pytest.raises(ValueError, match=message) as info:
        ki.ISNet(model, **kwargs)
    if "lrp" in kwargs:
        assert "'block'" in str(info.value) and "'flex'" in str(info.value)
