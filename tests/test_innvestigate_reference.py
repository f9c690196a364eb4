"""Our analyzers against iNNvestigate 2.1.2's own layer reference data (26 HDF5 files).

Each file holds, for six one-layer models (Dense, Dense+ReLU, Conv2D, Conv2D+ReLU, 2x2
average pooling, 2x2 max pooling, each followed by Flatten), the weights, the model outputs
and iNNvestigate's attribution for eight (10, 10, 3) inputs, with max-activation selection.
The data and its BSD licence are in tests/data/innvestigate/.
"""

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import keras_isnet as ki

DATA = Path(__file__).parent / "data" / "innvestigate"

# file name -> (analyzer name, analyzer keyword arguments)
CASES = {
    "Gradient": ("gradient", {}),
    "InputTimesGradient": ("input_t_gradient", {}),
    "Deconvnet": ("deconvnet", {}),
    "GuidedBackprop": ("guided_backprop", {}),
    "IntegratedGradients": ("integrated_gradients", {}),
    "SmoothGrad": ("smoothgrad", {"seed": 0}),
    "LRPZ": ("lrp.z", {}),
    "LRPZIgnoreBias": ("lrp.z", {"bias": False}),
    "LRPZ_Flat_input_layer_rule": ("lrp.z", {"input_layer_rule": "Flat"}),
    "LRPZ_boxed_input_layer_rule": ("lrp.z", {"input_layer_rule": (-10, 10)}),
    "LRPEpsilon": ("lrp.epsilon", {}),
    "LRPEpsilonIgnoreBias": ("lrp.epsilon", {"bias": False}),
    "LRPWSquare": ("lrp.w_square", {}),
    "LRPFlat": ("lrp.flat", {}),
    "LRPAlpha2Beta1": ("lrp.alpha_2_beta_1", {}),
    "LRPAlpha2Beta1IgnoreBias": ("lrp.alpha_2_beta_1_IB", {}),
    "LRPAlpha1Beta0": ("lrp.alpha_1_beta_0", {}),
    "LRPAlpha1Beta0IgnoreBias": ("lrp.alpha_1_beta_0_IB", {}),
    "LRPZPlus": ("lrp.z_plus", {}),
    "LRPZPlusFast": ("lrp.z_plus_fast", {}),
    "LRPSequentialPresetA": ("lrp.sequential_preset_a", {}),
    "LRPSequentialPresetB": ("lrp.sequential_preset_b", {}),
    "LRPSequentialPresetAFlat": ("lrp.sequential_preset_a_flat", {}),
    "LRPSequentialPresetBFlat": ("lrp.sequential_preset_b_flat", {}),
    "DeepTaylor": ("deep_taylor", {}),
    "BoundedDeepTaylor": ("deep_taylor.bounded", {"low": -128, "high": 128}),
}
TOLERANCES = {"SmoothGrad": {"rtol": 0.25, "atol": 0.20}}
DEFAULT_TOLERANCE = {"rtol": 1e-2, "atol": 1e-8}
LAYERS = ["Dense", "Dense_relu", "Conv2D", "Conv2D_relu", "AveragePooling2D", "MaxPooling2D"]


def test_every_reference_file_has_a_case():
    files = sorted(p.stem for p in DATA.glob("*.hdf5"))
    assert len(files) == 26
    assert sorted(CASES) == files


def _model(layer_name, weights):
    inputs = keras.Input((10, 10, 3))
    activation = "relu" if layer_name.endswith("_relu") else None
    if layer_name.startswith("Dense"):
        layer = keras.layers.Dense(5, activation=activation)
    elif layer_name.startswith("Conv2D"):
        layer = keras.layers.Conv2D(5, (3, 3), activation=activation)
    elif layer_name == "AveragePooling2D":
        layer = keras.layers.AveragePooling2D((2, 2))
    else:
        layer = keras.layers.MaxPooling2D((2, 2))
    model = keras.Model(inputs, keras.layers.Flatten()(layer(inputs)))
    if weights:
        layer.set_weights(weights)
    return model


@pytest.mark.parametrize("file_name", sorted(CASES))
def test_reference_file(file_name):
    analyzer_name, kwargs = CASES[file_name]
    tolerance = TOLERANCES.get(file_name, DEFAULT_TOLERANCE)
    with h5py.File(DATA / f"{file_name}.hdf5", "r") as f:
        assert f.attrs["analyzer_name"] == file_name
        x = f["input"][:].astype("float32")
        for layer_name in LAYERS:
            group = f[layer_name]
            weights = [group["weights"][k][:] for k in sorted(group["weights"], key=int)]
            model = _model(layer_name, weights)
            np.testing.assert_allclose(
                model.predict(x, verbose=0),
                group["output"][:],
                rtol=1e-2,
                atol=1e-8,
                err_msg=layer_name,
            )
            analysis = ki.create_analyzer(analyzer_name, model, **kwargs).analyze(x)
            assert analysis.shape == x.shape
            np.testing.assert_allclose(
                analysis, group["attribution"][:], **tolerance, err_msg=layer_name
            )
