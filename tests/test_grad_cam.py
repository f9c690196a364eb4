"""Grad-CAM and Grad-CAM++ against closed forms computed with NumPy.

The model is a 1x1 convolution (ReLU) followed by global average pooling and a Dense head,
so that the feature maps are ``A = relu(x K + b)`` and the gradient of logit ``c`` with
respect to ``A^k_ij`` is ``W[k, c] / (H W)`` everywhere.
"""

import keras
import numpy as np
import pytest

from keras_isnet.analyzers import create_analyzer
from keras_isnet.analyzers.grad_cam import GradCAM, GradCAMPlusPlus

H, W, C, K, CLASSES = 6, 6, 2, 3, 4


def _model(strides=1):
    inp = keras.Input((H, W, C))
    h = keras.layers.Conv2D(K, 1, strides=strides, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(CLASSES, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(1, 1, C, K)).astype("float32")
    bias = np.array([0.1, -0.2, 0.3], "float32")
    dense = rng.normal(size=(K, CLASSES)).astype("float32")
    model.get_layer("conv").set_weights([kernel, bias])
    model.get_layer("head").set_weights([dense, np.zeros(CLASSES, "float32")])
    return model, kernel[0, 0], bias, dense


def _features(x, kernel, bias, strides=1):
    return np.maximum(x[:, ::strides, ::strides] @ kernel + bias, 0.0)


def _logits(a, dense):
    return a.mean(axis=(1, 2)) @ dense


def _bilinear(maps, out_h, out_w):
    """Half-pixel-centre bilinear resize of ``(n, h, w)`` maps, written out in NumPy."""

    def weights(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        src = np.clip(src, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - frac
        m[np.arange(n_out), hi] += frac
        return m

    wy, wx = weights(maps.shape[1], out_h), weights(maps.shape[2], out_w)
    return np.einsum("yi,nij,xj->nyx", wy, maps, wx)


def _x(n=3):
    return np.random.default_rng(2).normal(size=(n, H, W, C)).astype("float32")


def test_grad_cam_closed_form_max_activation():
    model, kernel, bias, dense = _model()
    x = _x()
    a = _features(x, kernel, bias)
    cls = _logits(a, dense).argmax(axis=1)
    alpha = dense[:, cls].T / (H * W)  # (n, K): the mean gradient per channel
    expected = np.maximum(np.einsum("nijk,nk->nij", a, alpha), 0.0)
    got = create_analyzer("grad_cam", model).analyze(x)
    assert got.shape == x.shape
    for c in range(C):  # the map is repeated over the input's channels
        np.testing.assert_allclose(got[..., c], expected, rtol=1e-4, atol=1e-6)
    assert expected.max() > 0  # the case is not trivially zero


def test_grad_cam_index_mode_and_upsampling():
    model, kernel, bias, dense = _model(strides=2)
    x = _x()
    a = _features(x, kernel, bias, strides=2)  # (n, 3, 3, K)
    target = 2
    small = np.maximum(np.einsum("nijk,k->nij", a, dense[:, target] / a[0, ..., 0].size), 0)
    expected = _bilinear(small, H, W)
    analyzer = create_analyzer("grad_cam", model, neuron_selection_mode="index", layer_name="conv")
    got = analyzer.analyze(x, neuron_selection=target)
    np.testing.assert_allclose(got[..., 0], expected, rtol=1e-4, atol=1e-6)


def test_grad_cam_plus_plus_closed_form():
    model, kernel, bias, dense = _model()
    x = _x()
    a = _features(x, kernel, bias)
    cls = _logits(a, dense).argmax(axis=1)
    g = dense[:, cls].T / (H * W)  # (n, K), constant over positions
    total = a.sum(axis=(1, 2))  # (n, K)
    denominator = 2 * g**2 + total * g**3
    alpha = np.where(denominator != 0, g**2 / np.where(denominator != 0, denominator, 1), 0)
    weights = H * W * alpha * np.maximum(g, 0)  # sum over the H*W equal terms
    expected = np.maximum(np.einsum("nijk,nk->nij", a, weights), 0.0)
    got = create_analyzer("grad_cam++", model).analyze(x)
    assert got.shape == x.shape
    np.testing.assert_allclose(got[..., 1], expected, rtol=1e-4, atol=1e-6)
    assert expected.max() > 0


def test_default_layer_is_the_last_convolution():
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="first")(inp)
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="second")(h)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    assert GradCAM(model).layer_name == "second"
    np.testing.assert_array_equal(
        GradCAM(model).analyze(x), GradCAM(model, layer_name="second").analyze(x)
    )
    assert GradCAMPlusPlus(model, layer_name="first").layer_name == "first"


def test_unknown_layer_name_lists_the_convolutions():
    model, *_ = _model()
    with pytest.raises(ValueError, match=r"'nope'.*\['conv'\]"):
        create_analyzer("grad_cam", model, layer_name="nope")
    with pytest.raises(ValueError, match="conv"):
        create_analyzer("grad_cam++", model, layer_name="head")  # not a convolution


def test_model_without_convolution():
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    with pytest.raises(ValueError, match="convolution"):
        GradCAM(model)
