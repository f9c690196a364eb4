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
from official_reference import CASES, gradient_floor, keras_numbers, load_case, rel_err

import keras_isnet as ki
from keras_isnet import backend

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
