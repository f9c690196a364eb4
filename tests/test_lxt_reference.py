"""keras-isnet's AttnLRP and CP-LRP against the authors' own code (lxt 2.1, PyTorch).

The reference heatmaps in tests/data/lxt/ were made by tests/data/lxt/generate.py (see its
docstring and tests/data/lxt/README.md) on tiny pre-LN transformer blocks in float64; here the
same weights go into Keras models, once with ``keras.layers.MultiHeadAttention`` and once with a
hand-built multi-head attention (Dense + reshape + transpose + ``ops.matmul`` +
``ops.softmax``), and the heatmaps are compared in float64 (TensorFlow and JAX; Keras' torch
backend computes float64 matmuls in float32).
"""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest
from keras import ops

import keras_isnet as ki
from keras_isnet import backend

DATA = pathlib.Path(__file__).parent / "data" / "lxt"
F64 = "float64"

pytestmark = pytest.mark.skipif(
    keras.backend.backend() == "torch" or not backend.supports_float64(),
    reason="float64 references: Keras' torch backend computes float64 matmuls in float32; JAX "
    "needs JAX_ENABLE_X64=1",
)


def _dense(units, kernel, bias):
    layer = keras.layers.Dense(units, dtype=F64)
    layer.build((None, kernel.shape[0]))
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    return layer


def _layer_norm(p, name, dim):
    layer = keras.layers.LayerNormalization(epsilon=1e-5, dtype=F64)
    layer.build((None, None, dim))
    layer.gamma.assign(p[f"{name}_gamma"])
    layer.beta.assign(p[f"{name}_beta"])
    return layer


def _hand_built_attention(p, h, heads, key_dim, tokens):
    def project(name):
        kernel = p[f"{name}_kernel"]
        dense = _dense(
            heads * key_dim, kernel.reshape(kernel.shape[0], -1), p[f"{name}_bias"].reshape(-1)
        )
        y = ops.reshape(dense(h), (-1, tokens, heads, key_dim))
        return ops.transpose(y, (0, 2, 1, 3))  # (batch, heads, tokens, key_dim)

    q, k, v = project("q"), project("k"), project("v")
    scores = ops.matmul(q * (1.0 / np.sqrt(key_dim)), ops.transpose(k, (0, 1, 3, 2)))
    context = ops.matmul(ops.softmax(scores, axis=-1), v)
    context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, tokens, heads * key_dim))
    dim = p["o_kernel"].shape[-1]
    return _dense(dim, p["o_kernel"].reshape(heads * key_dim, dim), p["o_bias"])(context)


def _mha(p, h, heads, key_dim):
    layer = keras.layers.MultiHeadAttention(heads, key_dim, dtype=F64)
    out = layer(h, h)
    for name in ("query", "key", "value", "output"):
        dense = getattr(layer, f"_{name}_dense")
        dense.kernel.assign(p[f"{name[0]}_kernel"])
        dense.bias.assign(p[f"{name[0]}_bias"])
    return out


def _gelu(v):
    """The generator's tanh GELU, written out (an Activation layer: the identity rule)."""
    return 0.5 * v * (1.0 + ops.tanh(0.7978845608028654 * (v + 0.044715 * v**3)))


def _model(p, attention: str):
    heads, key_dim = int(p["heads"]), int(p["key_dim"])
    _, tokens, dim = p["input"].shape
    x = keras.Input((tokens, dim), dtype=F64)
    h = _layer_norm(p, "ln1", dim)(x)
    if attention == "mha":
        o = _mha(p, h, heads, key_dim)
    else:
        o = _hand_built_attention(p, h, heads, key_dim, tokens)
    x2 = x + o
    m = _dense(p["fc1_kernel"].shape[1], p["fc1_kernel"], p["fc1_bias"])(
        _layer_norm(p, "ln2", dim)(x2)
    )
    m = keras.layers.Activation(_gelu, dtype=F64)(m)
    x3 = x2 + _dense(dim, p["fc2_kernel"], p["fc2_bias"])(m)
    logits = _dense(3, p["head_kernel"], p["head_bias"])(ops.mean(x3, axis=1))
    return keras.Model(x, logits)


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (per-element ratios are meaningless where
    the reference heatmap crosses zero)."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("attention", ["mha", "hand_built"])
@pytest.mark.parametrize(
    "name,analyzer", [("attn_lrp_block", "lrp.attn_lrp"), ("cp_lrp_block", "lrp.cp_lrp")]
)
def test_heatmaps_match_lxt(name, analyzer, attention):
    p = dict(np.load(DATA / f"{name}.npz"))
    model = _model(p, attention)
    # The forward passes agree to ~1e-7, not 1e-15: MultiHeadAttention runs the backend's fused
    # dot_product_attention, and JAX's float64 CPU forward of the hand-built block differs from
    # torch's by 1.5e-7 (TensorFlow's: 1e-11). The relevance of MultiHeadAttention is computed
    # from the einsums of the layer's equations (see keras_isnet.layers.attention).
    assert relative_error(np.asarray(model(p["input"])), p["logits"]) <= 1e-6
    explainer = ki.create_analyzer(analyzer, model, epsilon=1e-12, compute_dtype=F64)
    heatmap = explainer.analyze(p["input"])
    error = relative_error(heatmap, p["heatmap"])
    print(f"{name} {attention}: max relative error {error:.2e}")
    assert error <= 1e-5
