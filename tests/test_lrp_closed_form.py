"""LRP analyzers against closed-form references written out in NumPy.

Every expected number here is computed independently of keras_isnet: the rules of
shared/design/analyzers.md are spelt out layer by layer in float64 NumPy from the model's
weights, or computed by hand, or follow from the conservation identity of bias-free rules.

Notation (as in the design document): ``sd(a, b) = a / (b + 1e-7 * [b == 0])``.
"""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_isnet as ki

# ----------------------------------------------------------------------------- reference


def sd(a, b):
    """iNNvestigate's SafeDivide: only exact zeros of the denominator are changed."""
    return a / (b + 1e-7 * (b == 0))


def stabilize(z, eps):
    """``z + eps * sign(z)`` with ``sign(0) = +1``."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def relu(x):
    return np.maximum(x, 0.0)


def dense_rule(rule, x, W, b, R):
    """Relevance of the input ``x`` (n, i) of ``z = x W + b`` given the relevance ``R`` of z.

    ``rule`` is a dict: {"kind": "z" | "epsilon" | "alpha_beta" | "w_square" | "flat" |
    "z_plus_fast", "bias": bool, "eps": float, "alpha": float, "beta": float}.
    """
    kind = rule["kind"]
    bias = b if rule.get("bias", True) else 0.0
    if kind == "z":
        # R_i = x_i sum_j w_ij sd(R_j, z_j)
        z = x @ W + bias
        return x * (sd(R, z) @ W.T)
    if kind == "epsilon":
        # R_i = x_i sum_j w_ij R_j / (z_j + eps s(z_j))
        z = x @ W + bias
        return x * ((R / stabilize(z, rule["eps"])) @ W.T)
    if kind == "w_square":
        # R_i = sum_j w_ij^2 sd(R_j, sum_i' w_i'j^2)
        W2 = W**2
        return sd(R, W2.sum(axis=0)) @ W2.T
    if kind == "flat":
        W1 = np.ones_like(W)
        return sd(R, W1.sum(axis=0)) @ W1.T
    if kind == "z_plus_fast":
        Wp = np.maximum(W, 0)
        return x * (sd(R, x @ Wp) @ Wp.T)
    if kind == "alpha_beta":
        alpha, beta = rule["alpha"], rule["beta"]
        Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
        xp, xn = np.maximum(x, 0), np.minimum(x, 0)
        # with bias, b+ + b- = b, the full bias, enters both denominators
        bb = (np.maximum(b, 0) + np.minimum(b, 0)) if rule.get("bias", True) else 0.0
        z_a = xp @ Wp + xn @ Wn + bb
        z_b = xp @ Wn + xn @ Wp + bb
        s_a, s_b = sd(R, z_a), sd(R, z_b)
        r_a = xp * (s_a @ Wp.T) + xn * (s_a @ Wn.T)
        r_b = xp * (s_b @ Wn.T) + xn * (s_b @ Wp.T)
        return alpha * r_a - beta * r_b
    raise AssertionError(kind)


def alpha_beta(alpha, beta, bias=True):
    return {"kind": "alpha_beta", "alpha": alpha, "beta": beta, "bias": bias}


# analyzer name and kwargs -> the NumPy rule applied at every Dense layer
RULE_CASES = {
    "epsilon": ("lrp.epsilon", {}, {"kind": "epsilon", "eps": 1e-7, "bias": True}),
    "epsilon_0.1": ("lrp.epsilon", {"epsilon": 0.1}, {"kind": "epsilon", "eps": 0.1}),
    "epsilon_IB": ("lrp.epsilon", {"bias": False}, {"kind": "epsilon", "eps": 1e-7, "bias": False}),
    "z": ("lrp.z", {}, {"kind": "z", "bias": True}),
    "z_IB": ("lrp.z", {"bias": False}, {"kind": "z", "bias": False}),
    "alpha_2_beta_1": ("lrp.alpha_2_beta_1", {}, alpha_beta(2, 1)),
    "alpha_2_beta_1_IB": ("lrp.alpha_2_beta_1_IB", {}, alpha_beta(2, 1, bias=False)),
    "alpha_1_beta_0": ("lrp.alpha_1_beta_0", {}, alpha_beta(1, 0)),
    "alpha_1_beta_0_IB": ("lrp.alpha_1_beta_0_IB", {}, alpha_beta(1, 0, bias=False)),
    "alpha_beta_3_2": ("lrp.alpha_beta", {"alpha": 3}, alpha_beta(3, 2)),
    "lrp_rule_map": ("lrp", {"rule": "Alpha2Beta1"}, alpha_beta(2, 1)),
    "z_plus": ("lrp.z_plus", {}, alpha_beta(1, 0, bias=False)),
    "z_plus_fast": ("lrp.z_plus_fast", {}, {"kind": "z_plus_fast"}),
    "w_square": ("lrp.w_square", {}, {"kind": "w_square"}),
    "flat": ("lrp.flat", {}, {"kind": "flat"}),
}


def np_forward(layers, x):
    """Run a chain of ("dense", W, b, act) / ("relu",) layers; return each layer's input."""
    inputs = []
    for layer in layers:
        inputs.append(x)
        if layer[0] == "dense":
            _, W, b, act = layer
            x = x @ W + b
            if act == "relu":
                x = relu(x)
        elif layer[0] == "relu":
            x = relu(x)
        elif layer[0] == "scale":
            x = layer[1] * x
        else:
            raise AssertionError(layer)
    return inputs, x


def seed(y, selection=None):
    """Relevance of the explained output: the selected value (max activation by default)."""
    index = np.argmax(y, axis=1) if selection is None else np.broadcast_to(selection, len(y))
    onehot = np.eye(y.shape[1])[index]
    return onehot * y


def np_backward(layers, inputs, R, rule):
    for layer, x in zip(reversed(layers), reversed(inputs), strict=True):
        if layer[0] == "dense":
            R = dense_rule(rule, x, layer[1], layer[2], R)
        # relu and scale layers pass relevance unchanged
    return R


def np_lrp(layers, x, rule, selection=None):
    x = np.asarray(x, dtype=np.float64)
    inputs, y = np_forward(layers, x)
    return np_backward(layers, inputs, seed(y, selection), rule)


def assert_close(got, ref, rtol=1e-5, err_msg=""):
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(float(np.abs(ref).max()), 1e-30)
    np.testing.assert_allclose(
        np.asarray(got, np.float64), ref, rtol=rtol, atol=1e-6 * scale, err_msg=err_msg
    )


def set_dense(layer, rng, bias_scale=0.5):
    """Random kernel and a NONZERO random bias; returns the float64 copies."""
    W = rng.normal(size=tuple(layer.kernel.shape)).astype(np.float32)
    b = (bias_scale * rng.normal(size=tuple(layer.bias.shape))).astype(np.float32)
    b[b == 0] = 0.1
    layer.set_weights([W, b])
    return W.astype(np.float64), b.astype(np.float64)


def analyze(name, kwargs, model, x, neuron_selection=None):
    """The analysis as NumPy, computed eagerly with ``relevance`` (fast for tiny models;
    tests/test_analyzer_api.py checks that ``analyze`` gives the same numbers)."""
    out = ki.create_analyzer(name, model, **kwargs).relevance(x, neuron_selection)
    return [np.asarray(o) for o in out] if isinstance(out, list) else np.asarray(out)


# ------------------------------------------------------------- 1. multi-layer closed form

N_IN, UNITS = 4, (5, 4, 3)


def dense_chain(style, seed_=0):
    """Dense(5) -> Dense(4) -> Dense(3) with ReLUs in the middle, in one of four styles.

    * "activation": Dense(..., activation="relu");
    * "layer": Dense followed by a separate ReLU layer;
    * "hidden_relu": Dense(relu) then an Activation("linear") layer, so the next layer's
      input is >= 0 without the graph saying so (alpha-beta takes the general path);
    * "linear": no ReLU at all (every layer sees signed inputs).
    """
    rng = np.random.default_rng(seed_)
    inputs = keras.Input((N_IN,))
    h, layers = inputs, []
    for i, units in enumerate(UNITS):
        last = i == len(UNITS) - 1
        act = "relu" if style in ("activation", "hidden_relu") and not last else None
        dense = keras.layers.Dense(units, activation=act)
        h = dense(h)
        if style == "layer" and not last:
            h = keras.layers.ReLU()(h)
        if style == "hidden_relu" and not last:
            h = keras.layers.Activation("linear")(h)
        layers.append([dense, act])
        if style == "layer" and not last:
            layers.append(["relu"])
    model = keras.Model(inputs, h)
    np_layers = []
    for entry in layers:
        if entry[0] == "relu":
            np_layers.append(("relu",))
        else:
            W, b = set_dense(entry[0], rng)
            np_layers.append(("dense", W, b, entry[1]))
    x = rng.normal(size=(8, N_IN)).astype(np.float32)  # negative entries included
    return model, np_layers, x


def test_reference_forward_matches_keras():
    for style in ("activation", "layer", "hidden_relu", "linear"):
        model, layers, x = dense_chain(style)
        _, y = np_forward(layers, x.astype(np.float64))
        assert_close(model(x), y)
        assert (x < 0).any() and all(np.all(lay[2] != 0) for lay in layers if lay[0] == "dense")


STYLES_RELU_GRAPH = ("activation", "layer")  # the graph says the hidden inputs are >= 0
STYLES_GENERAL = ("hidden_relu", "linear")  # alpha-beta takes its general path


def check_dense_chain(case, styles, seed_=0):
    name, kwargs, rule = RULE_CASES[case]
    for style in styles:
        model, layers, x = dense_chain(style, seed_=seed_)
        got = analyze(name, kwargs, model, x)
        ref = np_lrp(layers, x, rule)
        assert got.shape == x.shape
        assert np.abs(ref).max() > 0
        assert_close(got, ref, err_msg=f"{case} {style}")


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_dense_chain_closed_form(case):
    """Dense(5) -> Dense(4) -> Dense(3), nonzero biases, negative inputs, four ReLU styles."""
    check_dense_chain(case, STYLES_GENERAL + STYLES_RELU_GRAPH)


def test_alpha_2_beta_1_ib_general_path_closed_form():
    """alpha2-beta1 ignoring biases on the general (signed-input) path alone."""
    check_dense_chain("alpha_2_beta_1_IB", STYLES_GENERAL)


def test_alpha_beta_nonnegative_fast_path_equals_general_path():
    """Same weights: inputs known >= 0 from a ReLU (fast path) vs. hidden behind a linear
    Activation (general path) vs. a separate ReLU layer give the same relevance."""
    for case in ("alpha_2_beta_1", "alpha_1_beta_0", "alpha_beta_3_2", "z_plus"):
        name, kwargs, rule = RULE_CASES[case]
        results = {}
        for style in ("activation", "layer", "hidden_relu"):
            model, layers, x = dense_chain(style, seed_=3)
            results[style] = analyze(name, kwargs, model, x)
        ref = np_lrp(layers, x, rule)
        for style, got in results.items():
            assert_close(got, ref, err_msg=f"{case} {style}")
        # both paths agree with each other about as closely as each agrees with the truth
        assert_close(results["activation"], results["hidden_relu"], rtol=3e-5, err_msg=case)


def test_alpha_beta_fast_path_without_inhibitor_hand_computed():
    """x -> ReLU -> Dense(1, w = [0.3, 0.7], no bias). All contributions are positive, so
    z^b = 0, R^b = 0 and alpha2-beta1 gives R = 2 * x_i w_i * R / z = 2 x_i w_i (R = z)."""
    x = np.array([[0.37, 1.3]], "float32")
    expected = 2 * x.astype(np.float64) * np.array([0.3, 0.7])
    for hidden in ("linear", "relu"):  # general path, then the non-negative fast path
        inputs = keras.Input((2,))
        dense = keras.layers.Dense(1, use_bias=False)
        model = keras.Model(inputs, dense(keras.layers.Activation(hidden)(inputs)))
        dense.set_weights([np.array([[0.3], [0.7]], "float32")])
        got = analyze("lrp.alpha_2_beta_1_IB", {}, model, x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=hidden)


def test_epsilon_hand_computed_two_layers():
    """A 2-2-1 ReLU net worked out by hand with LRP-epsilon (eps 0.5) and bias."""
    inputs = keras.Input((2,))
    d1 = keras.layers.Dense(2, activation="relu")
    d2 = keras.layers.Dense(1)
    model = keras.Model(inputs, d2(d1(inputs)))
    d1.set_weights([np.array([[1.0, -1.0], [2.0, 1.0]], "float32"), np.array([1.0, 0.5], "f4")])
    d2.set_weights([np.array([[1.0], [3.0]], "float32"), np.array([-1.0], "float32")])
    x = np.array([[2.0, -0.5]], "float32")
    # z1 = [2 - 1 + 1, -2 - 0.5 + 0.5] = [2, -2]; h = [2, 0]; y = 2 - 1 = 1
    # layer 2: R_h = h * w * R / (z + eps) = [2 * 1 * 1 / 1.5, 0] = [4/3, 0]
    # layer 1: R_x = x * W[:, 0] * (4/3) / (2 + 0.5) = [2, -1] * (4/3) / 2.5
    expected = np.array([[2.0 * 4 / 3 / 2.5, -1.0 * 4 / 3 / 2.5]])
    got = analyze("lrp.epsilon", {"epsilon": 0.5}, model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_alpha2_beta1_hand_computed_one_layer():
    """One Dense layer, alpha=2, beta=1, with the full bias in both denominators."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[1.0], [-2.0], [0.5]], "float32"), np.array([0.5], "float32")])
    x = np.array([[2.0, 1.0, -4.0]], "float32")
    # contributions x_i w_i = [2, -2, -2]; y = -2 + 0.5 = -1.5 (the only output: explained)
    # activator z^a = 2 + b = 2.5 ; inhibitor z^b = -4 + b = -3.5 ; R = -1.5
    # R^a = [2, 0, 0] * R / 2.5 ; R^b = [0, -2, -2] * R / -3.5
    R = -1.5
    r_a = np.array([2.0, 0, 0]) * R / 2.5
    r_b = np.array([0, -2.0, -2.0]) * R / -3.5
    expected = (2 * r_a - r_b)[None]
    got = analyze("lrp.alpha_2_beta_1", {}, model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # ignoring the bias: z^a = 2, z^b = -4, and the explained value is still -1.5
    expected_ib = (2 * np.array([2.0, 0, 0]) * R / 2 - np.array([0, -2.0, -2.0]) * R / -4)[None]
    np.testing.assert_allclose(
        analyze("lrp.alpha_2_beta_1_IB", {}, model, x), expected_ib, rtol=1e-6
    )


def test_sd_guards_only_exact_zero_denominators():
    """A dead unit (z == 0 exactly, no bias) gets relevance R / 1e-7 * x w = 0 when R = 0,
    and a zero input gets zero relevance: nothing becomes NaN."""
    inputs = keras.Input((2,))
    d1 = keras.layers.Dense(2, use_bias=False)
    d2 = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, d2(d1(inputs)))
    d1.set_weights([np.array([[1.0, 1.0], [1.0, -1.0]], "float32")])
    d2.set_weights([np.array([[2.0], [3.0]], "float32")])
    x = np.array([[1.0, 1.0], [0.0, 0.0]], "float32")
    # sample 0: z1 = [2, 0]; y = 4. R_h = [4, 0 * 3 * 4 / 4] = [4, 0]
    # R_x = x * (W1 @ sd(R_h, z1)) = [1, 1] * ([1, 1] * 2 + [1, -1] * 0) = [2, 2]
    # alpha2-beta1 has no inhibitor here (z^b = 0 exactly, R^b = 0): R = 2 R^a per layer
    expected = {"lrp.z": 2.0, "lrp.epsilon": 2.0, "lrp.z_plus": 2.0, "lrp.alpha_2_beta_1": 8.0}
    for name, value in expected.items():
        got = analyze(name, {}, model, x)
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, [[value, value], [0.0, 0.0]], rtol=1e-6, err_msg=name)


# ------------------------------------------------------------------- 2. Add, Concatenate


def test_add_hand_computed():
    """R_k = x_k / sum(x) * R at an Add layer (z-rule)."""
    a, b = keras.Input((2,)), keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model([a, b], dense(keras.layers.Add()([a, b])))
    dense.set_weights([np.array([[1.0], [2.0]], "float32")])
    xa, xb = np.array([[1.0, -2.0]], "f4"), np.array([[3.0, 4.0]], "f4")
    # s = [4, 2], y = 4 + 4 = 8; R_s = s * w * 8 / 8 = [4, 4]
    # R_a = [1/4, -2/2] * [4, 4] = [1, -4]; R_b = [3/4, 4/2] * [4, 4] = [3, 8]
    ra, rb = analyze("lrp.z", {}, model, [xa, xb])
    np.testing.assert_allclose(ra, [[1.0, -4.0]], rtol=1e-6)
    np.testing.assert_allclose(rb, [[3.0, 8.0]], rtol=1e-6)


def test_add_with_zero_sum_is_finite():
    a, b = keras.Input((2,)), keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model([a, b], dense(keras.layers.Add()([a, b])))
    dense.set_weights([np.array([[1.0], [2.0]], "float32")])
    xa, xb = np.array([[1.0, 1.0]], "f4"), np.array([[-1.0, 2.0]], "f4")
    # s = [0, 3], y = 6; R_s = [0 * 1 * 6 / 6, 3 * 2 * 6 / 6] = [0, 6]
    # R_a = [1 * sd(0, 0), 1/3 * 6] = [0, 2]; R_b = [0, 4]
    ra, rb = analyze("lrp.z", {}, model, [xa, xb])
    np.testing.assert_allclose(ra, [[0.0, 2.0]], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rb, [[0.0, 4.0]], rtol=1e-6, atol=1e-12)


def test_concatenate_hand_computed():
    a, b = keras.Input((2,)), keras.Input((1,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model([a, b], dense(keras.layers.Concatenate()([a, b])))
    dense.set_weights([np.array([[1.0], [2.0], [3.0]], "float32")])
    xa, xb = np.array([[1.0, 2.0]], "f4"), np.array([[-1.0]], "f4")
    # contributions [1, 4, -3], y = 2, z-rule: R = contributions
    ra, rb = analyze("lrp.z", {}, model, [xa, xb])
    np.testing.assert_allclose(ra, [[1.0, 4.0]], rtol=1e-6)
    np.testing.assert_allclose(rb, [[-3.0]], rtol=1e-6)


def test_residual_block_closed_form():
    """x -> Dense(3) = h; s = Add([h, x]); y = Dense(2)(s)."""
    rng = np.random.default_rng(1)
    inputs = keras.Input((3,))
    d1, d2 = keras.layers.Dense(3), keras.layers.Dense(2)
    h = d1(inputs)
    s = keras.layers.Add()([h, inputs])
    model = keras.Model(inputs, d2(s))
    W1, b1 = set_dense(d1, rng)
    W2, b2 = set_dense(d2, rng)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    x64 = x.astype(np.float64)
    h64 = x64 @ W1 + b1
    s64 = h64 + x64
    y = s64 @ W2 + b2
    for case in ("epsilon", "z", "alpha_2_beta_1", "w_square"):
        name, kwargs, rule = RULE_CASES[case]
        R_s = dense_rule(rule, s64, W2, b2, seed(y))
        R_h = h64 * sd(R_s, s64)  # Add: R_k = x_k / sum(x) * R
        R_skip = x64 * sd(R_s, s64)
        expected = dense_rule(rule, x64, W1, b1, R_h) + R_skip
        assert_close(analyze(name, kwargs, model, x), expected, err_msg=case)


def test_average_pooling_and_flatten_closed_form():
    """Conv-free check of the pooling z-rule: R_i = x_i / sum_window(x) * R."""
    rng = np.random.default_rng(2)
    inputs = keras.Input((4, 1))
    pooled = keras.layers.AveragePooling1D(2)(inputs)
    flat = keras.layers.Flatten()(pooled)
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(flat))
    W, b = set_dense(dense, rng)
    x = rng.normal(size=(5, 4, 1)).astype(np.float32)
    x64 = x[..., 0].astype(np.float64)
    p = 0.5 * (x64[:, 0::2] + x64[:, 1::2])
    y = p @ W + b
    for case in ("epsilon", "alpha_1_beta_0"):
        name, kwargs, rule = RULE_CASES[case]
        R_p = dense_rule(rule, p, W, b, seed(y))
        expected = np.empty_like(x64)
        expected[:, 0::2] = x64[:, 0::2] / (2 * p) * R_p
        expected[:, 1::2] = x64[:, 1::2] / (2 * p) * R_p
        assert_close(analyze(name, kwargs, model, x)[..., 0], expected, err_msg=case)


# ------------------------------------------- 3. nested models, shared layers, multi-input


def test_nested_functional_model_with_softmax_head():
    """Input -> Dense -> [inner: Dense(relu) -> Dense(softmax)]: walked into, softmax stripped."""
    rng = np.random.default_rng(4)
    inner_in = keras.Input((4,))
    i1, i2 = keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3, activation="softmax")
    inner = keras.Model(inner_in, i2(i1(inner_in)), name="inner")
    outer_in = keras.Input((3,))
    d0 = keras.layers.Dense(4)
    model = keras.Model(outer_in, inner(d0(outer_in)))
    W0, b0 = set_dense(d0, rng)
    W1, b1 = set_dense(i1, rng)
    W2, b2 = set_dense(i2, rng)
    layers = [("dense", W0, b0, None), ("dense", W1, b1, "relu"), ("dense", W2, b2, None)]
    x = rng.normal(size=(6, 3)).astype(np.float32)
    for case in ("epsilon", "alpha_2_beta_1", "z_IB"):
        name, kwargs, rule = RULE_CASES[case]
        assert_close(analyze(name, kwargs, model, x), np_lrp(layers, x, rule))


def test_sequential_inside_functional():
    rng = np.random.default_rng(5)
    seq = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5), keras.layers.ReLU(), keras.layers.Dense(3)]
    )
    outer_in = keras.Input((3,))
    d0 = keras.layers.Dense(4, activation="relu")
    d_out = keras.layers.Dense(2)
    model = keras.Model(outer_in, d_out(seq(d0(outer_in))))
    W0, b0 = set_dense(d0, rng)
    Ws = [set_dense(seq.layers[0], rng), set_dense(seq.layers[2], rng)]
    W3, b3 = set_dense(d_out, rng)
    layers = [
        ("dense", W0, b0, "relu"),
        ("dense", *Ws[0], None),
        ("relu",),
        ("dense", *Ws[1], None),
        ("dense", W3, b3, None),
    ]
    x = rng.normal(size=(6, 3)).astype(np.float32)
    for case in ("epsilon", "alpha_1_beta_0", "z"):
        name, kwargs, rule = RULE_CASES[case]
        assert_close(analyze(name, kwargs, model, x), np_lrp(layers, x, rule))


def test_layer_shared_at_two_nodes_in_sequence():
    """The same Dense(4) applied twice: x -> shared -> ReLU -> shared -> Dense(2)."""
    rng = np.random.default_rng(6)
    inputs = keras.Input((4,))
    shared, d_out = keras.layers.Dense(4), keras.layers.Dense(2)
    model = keras.Model(inputs, d_out(shared(keras.layers.ReLU()(shared(inputs)))))
    Ws, bs = set_dense(shared, rng)
    Wo, bo = set_dense(d_out, rng)
    layers = [("dense", Ws, bs, None), ("relu",), ("dense", Ws, bs, None), ("dense", Wo, bo, None)]
    x = rng.normal(size=(6, 4)).astype(np.float32)
    for case in ("epsilon", "alpha_2_beta_1", "flat"):
        name, kwargs, rule = RULE_CASES[case]
        assert_close(analyze(name, kwargs, model, x), np_lrp(layers, x, rule))


def test_layer_shared_across_two_branches():
    """Two inputs through the same Dense(4, relu), concatenated, then Dense(2)."""
    rng = np.random.default_rng(7)
    a, b = keras.Input((3,)), keras.Input((3,))
    shared, d_out = keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)
    model = keras.Model([a, b], d_out(keras.layers.Concatenate()([shared(a), shared(b)])))
    Ws, bs = set_dense(shared, rng)
    Wo, bo = set_dense(d_out, rng)
    xa = rng.normal(size=(5, 3)).astype(np.float32)
    xb = rng.normal(size=(5, 3)).astype(np.float32)
    ha = relu(xa.astype(np.float64) @ Ws + bs)
    hb = relu(xb.astype(np.float64) @ Ws + bs)
    hc = np.concatenate([ha, hb], axis=1)
    y = hc @ Wo + bo
    for case in ("z", "alpha_2_beta_1"):
        name, kwargs, rule = RULE_CASES[case]
        R_c = dense_rule(rule, hc, Wo, bo, seed(y))
        ref_a = dense_rule(rule, xa.astype(np.float64), Ws, bs, R_c[:, :4])
        ref_b = dense_rule(rule, xb.astype(np.float64), Ws, bs, R_c[:, 4:])
        ra, rb = analyze(name, kwargs, model, [xa, xb])
        assert_close(ra, ref_a)
        assert_close(rb, ref_b)


def multi_input_model(rng):
    a, b = keras.Input((2,)), keras.Input((3,))
    d1, d2 = keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)
    model = keras.Model([a, b], d2(d1(keras.layers.Concatenate()([a, b]))))
    layers = [("dense", *set_dense(d1, rng), "relu"), ("dense", *set_dense(d2, rng), None)]
    xa = rng.normal(size=(6, 2)).astype(np.float32)
    xb = rng.normal(size=(6, 3)).astype(np.float32)
    return model, layers, xa, xb


@pytest.mark.parametrize("case", ["epsilon", "alpha_2_beta_1", "z"])
def test_multi_input_max_activation_and_index(case):
    name, kwargs, rule = RULE_CASES[case]
    rng = np.random.default_rng(8)
    model, layers, xa, xb = multi_input_model(rng)
    x = np.concatenate([xa, xb], axis=1)

    got = analyze(name, kwargs, model, [xa, xb])
    assert isinstance(got, list) and len(got) == 2
    ref = np_lrp(layers, x, rule)
    assert_close(got[0], ref[:, :2])
    assert_close(got[1], ref[:, 2:])

    per_sample = np.array([0, 2, 1, 1, 0, 2])
    kw = dict(kwargs, neuron_selection_mode="index")
    got = analyze(name, kw, model, [xa, xb], neuron_selection=per_sample)
    ref = np_lrp(layers, x, rule, selection=per_sample)
    assert_close(got[0], ref[:, :2])
    assert_close(got[1], ref[:, 2:])

    got = analyze(name, kw, model, [xa, xb], neuron_selection=2)
    ref = np_lrp(layers, x, rule, selection=2)
    assert_close(np.concatenate(got, axis=1), ref)


def test_index_mode_with_weights_array_and_all_mode():
    """A float weights array explains sum(w * y): LRP is linear in the seed."""
    rng = np.random.default_rng(9)
    model, layers, xa, xb = multi_input_model(rng)
    x = np.concatenate([xa, xb], axis=1).astype(np.float64)
    rule = RULE_CASES["epsilon"][2]
    inputs, y = np_forward(layers, x)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    ref = np_backward(layers, inputs, w * y, rule)
    got = analyze("lrp.epsilon", {"neuron_selection_mode": "index"}, model, [xa, xb], w)
    assert_close(np.concatenate(got, axis=1), ref)
    ref_all = np_backward(layers, inputs, y, rule)
    got_all = analyze("lrp.epsilon", {"neuron_selection_mode": "all"}, model, [xa, xb])
    assert_close(np.concatenate(got_all, axis=1), ref_all)


# --------------------------------------------------------------------- 4. conservation


def conv_net(rng, *, relu_style="activation"):
    inputs = keras.Input((6, 6, 2))
    act = "relu" if relu_style == "activation" else None
    h = keras.layers.Conv2D(3, 3, use_bias=False, activation=act)(inputs)
    if relu_style == "layer":
        h = keras.layers.ReLU()(h)
    h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(4, use_bias=False)(h)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(3, use_bias=False)(h)
    model = keras.Model(inputs, out)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def assert_conserved(relevance, explained, rtol=1e-4):
    relevance = np.asarray(relevance, np.float64)
    sums = relevance.reshape(len(relevance), -1).sum(axis=1)
    magnitude = np.abs(relevance.reshape(len(relevance), -1)).sum(axis=1)
    # float32 round-off is relative to the sum of |R_i| (cancellation), not to the total
    tol = rtol * np.abs(explained) + 1e-5 * magnitude + 1e-7
    assert np.all(np.abs(sums - explained) <= tol), (sums, explained)


@pytest.mark.parametrize("relu_style", ["activation", "layer"])
def test_conservation_conv_net(relu_style):
    rng = np.random.default_rng(10)
    model = conv_net(rng, relu_style=relu_style)
    x = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    y = np.asarray(model(x), np.float64)
    for name, kwargs in (
        ("lrp.z", {"bias": False}),
        ("lrp.epsilon", {"epsilon": 1e-9, "bias": False}),
    ):
        relevance = analyze(name, kwargs, model, x)
        assert_conserved(relevance, y.max(axis=1))
        # and in index mode, for each class (not only the maximum)
        kw = dict(kwargs, neuron_selection_mode="index")
        for k in range(3):
            assert_conserved(analyze(name, kw, model, x, neuron_selection=k), y[:, k])


def test_conservation_with_biases_and_bias_free_rule():
    """With bias=False every kernel layer passes on all of its output relevance, so the
    input relevance still sums to the explained output (which includes the biases).
    (No ReLU: a layer whose inputs are all zero has z = 0 without its bias and absorbs R.)"""
    model, _, x = dense_chain("linear", seed_=11)
    explained = np.asarray(model(x), np.float64).max(axis=1)
    assert_conserved(analyze("lrp.z", {"bias": False}, model, x), explained)


@st.composite
def architectures(draw):
    return {
        "conv": draw(st.booleans()),
        "filters": draw(st.integers(1, 3)),
        "kernel": draw(st.integers(1, 3)),
        "pool": draw(st.booleans()),
        "relu1": draw(st.sampled_from(["none", "activation", "layer"])),
        "units": draw(st.integers(1, 4)),
        "relu2": draw(st.booleans()),
        "outputs": draw(st.integers(1, 3)),
        "size": draw(st.integers(4, 6)),
        "channels": draw(st.integers(1, 2)),
        "batch": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**16)),
        "epsilon": draw(st.booleans()),
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(arch=architectures())
def test_conservation_property(arch):
    rng = np.random.default_rng(arch["seed"])
    inputs = keras.Input((arch["size"], arch["size"], arch["channels"]))
    h = inputs
    act = "relu" if arch["relu1"] == "activation" else None
    if arch["conv"]:
        h = keras.layers.Conv2D(arch["filters"], arch["kernel"], use_bias=False, activation=act)(h)
    else:
        h = keras.layers.Dense(arch["filters"], use_bias=False, activation=act)(h)
    if arch["relu1"] == "layer":
        h = keras.layers.ReLU()(h)
    if arch["pool"]:
        h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(arch["units"], use_bias=False)(h)
    if arch["relu2"]:
        h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(arch["outputs"], use_bias=False)(h)
    model = keras.Model(inputs, out)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(arch["batch"], *inputs.shape[1:])).astype(np.float32)

    if arch["epsilon"]:
        analyzer = ki.create_analyzer("lrp.epsilon", model, epsilon=1e-9, bias=False)
    else:
        analyzer = ki.create_analyzer("lrp.z", model, bias=False)
    relevance = np.asarray(analyzer.relevance(x))
    assert relevance.shape == x.shape
    explained = np.asarray(model(x), np.float64).max(axis=1)
    assert_conserved(relevance, explained)
