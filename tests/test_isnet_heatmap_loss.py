"""Tests of the ISNet heatmap loss against hand-derived values and an independent reference.

The reference below is a deliberately plain NumPy float64 transcription of section 2 of the
design note (isnet-method.md), with explicit loops; it shares no code with keras_isnet.
Gradients of the Keras implementation (tf.GradientTape) are checked against central finite
differences of that reference.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_isnet.losses import (
    CutAccumulator,
    estimate_cuts,
    gwrp,
    isnet_heatmap_loss,
    prepare_masks,
)

FOREGROUNDS = ("L2", "hybrid", "L1")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides tests/conftest.py's fixture of the same name for this module only.

    These tests build no Keras models or layers (pure functions on tensors), so the
    ``keras.backend.clear_session()`` there (about 0.25 s per test, most of this file's
    runtime) is not needed; the seeds are still fixed.
    """
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield


NORMS = ("absRoIMean", "RoIMean", "none")


# ------------------------------------------------------------------------------------------
# Independent NumPy float64 reference of the specification
# ------------------------------------------------------------------------------------------


def ref_gwrp(values, d):
    """sum_i d^i x_(i) / sum_i d^i over the values sorted in descending order, 0^0 = 1."""
    xs = sorted((float(v) for v in values), reverse=True)
    weights = [1.0 if i == 0 else d**i for i in range(len(xs))]
    return sum(w * x for w, x in zip(weights, xs, strict=True)) / sum(weights)


def ref_pool_mask(mask, H, W):
    """(batch, Hm, Wm) -> (batch, H, W): a cell is foreground if any of its pixels is."""
    b_, hm, wm = mask.shape
    fh, fw = hm // H, wm // W
    out = np.zeros((b_, H, W))
    for b in range(b_):
        for i in range(H):
            for j in range(W):
                cell = mask[b, i * fh : (i + 1) * fh, j * fw : (j + 1) * fw]
                out[b, i, j] = 1.0 if np.any(cell != 0) else 0.0
    return out


def ref_replace_non_finite(heat, mask):
    """NaN/inf replacement with whole-batch statistics (non-finite entries read as 0)."""
    heat = np.array(heat, dtype=np.float64)
    b_, k_, h_, w_, c_ = heat.shape
    num = den = 0.0
    finite_vals = [0.0] if not np.all(np.isfinite(heat)) else []
    for idx in np.ndindex(heat.shape):
        b, _, i, j, _ = idx
        v = heat[idx]
        den += mask[b, i, j]
        if np.isfinite(v):
            num += v * mask[b, i, j]
            finite_vals.append(v)
    nan_value = num / (den + 1e-10)
    out = heat.copy()
    for idx in np.ndindex(heat.shape):
        v = heat[idx]
        if np.isnan(v):
            out[idx] = nan_value
        elif v == np.inf:
            out[idx] = max(finite_vals)
        elif v == -np.inf:
            out[idx] = min(finite_vals)
    return out


def ref_loss_per_sample(
    heat,
    mask,
    d=0.9,
    E=1.0,
    A=1.0,
    B=3.0,
    C1=1.0,
    C2=25.0,
    foreground="L2",
    norm="absRoIMean",
):
    heat = np.asarray(heat, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim == 4:
        mask = mask[..., 0]
    b_, k_, h_, w_, c_ = heat.shape
    if mask.shape[1:] != (h_, w_):
        mask = ref_pool_mask(mask, h_, w_)
    heat = ref_replace_non_finite(heat, mask)
    eps = 1e-10
    losses = []
    for b in range(b_):
        bkg_terms, left_terms, right_terms = [], [], []
        m = mask[b]
        n_fg = m.sum() * c_  # the mask is broadcast over the C channels
        for k in range(k_):
            x = heat[b, k]  # (H, W, C)
            fg_abs_sum = sum(
                abs(x[i, j, c]) * m[i, j] for i in range(h_) for j in range(w_) for c in range(c_)
            )
            fg_sum = sum(
                x[i, j, c] * m[i, j] for i in range(h_) for j in range(w_) for c in range(c_)
            )
            if norm == "absRoIMean":
                xn = np.abs(x) / (fg_abs_sum / (n_fg + eps) + eps)
            elif norm == "RoIMean":
                xn = np.abs(x / (fg_sum / (n_fg + eps) + eps))
            else:
                xn = np.abs(x) * (h_ * w_ * c_)
            for c in range(c_):
                vals = [xn[i, j, c] * (1.0 - m[i, j]) for i in range(h_) for j in range(w_)]
                g = ref_gwrp(vals, d)
                a = min(g / (g + E), 1.0 - 1e-7)
                bkg_terms.append(-math.log(1.0 - a))
            F = fg_abs_sum
            left_terms.append((min(F / C1, 1.0) - 1.0) ** 2)
            if foreground == "L2":
                right_terms.append((max(F / C1, C2 / C1) - C2 / C1) ** 2)
            elif foreground == "L1":
                right_terms.append(abs(max(F, C2) - C2))
            else:
                if F <= C1 + C2:
                    right_terms.append((max(F / C1, C2 / C1) - C2 / C1) ** 2)
                else:
                    right_terms.append(abs(max(F, C1 + C2) - (C1 + C2)) + 1.0)
        losses.append(A * np.mean(bkg_terms) + B * (np.mean(left_terms) + np.mean(right_terms)))
    return np.array(losses)


def ref_loss(heat, mask, **kw):
    return float(np.mean(ref_loss_per_sample(heat, mask, **kw)))


def numeric_grad(fun, x, rel_step=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = rel_step * max(1.0, abs(x[idx]))
        xp, xm = x.copy(), x.copy()
        xp[idx] += step
        xm[idx] -= step
        g[idx] = (fun(xp) - fun(xm)) / (2 * step)
    return g


def keras_value_and_grad(heat, mask, **kw):
    var = tf.Variable(np.asarray(heat, dtype=np.float32))
    with tf.GradientTape() as tape:
        loss = isnet_heatmap_loss(var, mask, **kw)
    return float(loss), tape.gradient(loss, var).numpy()


def loss_np(heat, mask, **kw):
    return np.asarray(isnet_heatmap_loss(heat, mask, **kw))


# ------------------------------------------------------------------------------------------
# Value and gradient against the reference, every foreground x norm combination
# ------------------------------------------------------------------------------------------


def make_grad_case(seed):
    """Small case whose foreground sums F span [< C1, inside, > C2, > C1 + C2], away from kinks.

    Draws from a deterministic sequence of seeds until the case is well-conditioned.
    """
    for attempt in range(100):
        case = _draw_grad_case(np.random.default_rng(1000 * seed + attempt))
        if case is not None:
            return case
    raise AssertionError("no well-conditioned case found")


def _draw_grad_case(rng):
    mask = np.array(
        [
            [[1, 1, 0], [1, 0, 0], [0, 1, 0]],
            [[0, 0, 0], [0, 1, 1], [0, 1, 1]],
        ],
        dtype=np.float64,
    )
    shape = (2, 2, 3, 3, 2)
    # |H| in [0.05, 1] (away from the kink of |.|, no ties in the ranking), some negative
    signs = np.where(rng.uniform(size=shape) < 0.2, -1.0, 1.0)
    heat = signs * rng.uniform(0.05, 1.0, size=shape)
    scales = rng.permutation([1.0, 4.0, 16.0, 64.0]).reshape(2, 2)
    fg = mask[:, None, :, :, None]
    heat = heat * (fg * scales[:, :, None, None, None] + (1.0 - fg) * 0.3)
    heat = heat.astype(np.float32).astype(np.float64)  # exactly representable in float32
    F = np.sort((np.abs(heat) * fg).sum(axis=(2, 3, 4)).ravel())
    C1 = math.sqrt(F[0] * F[1])
    C2 = math.sqrt(F[1] * F[2])
    # the four regimes of the foreground term, each well away from its kink
    if not (1.2 * F[0] < C1 < F[1] / 1.2 and C2 < F[2] / 1.2 and F[2] > 1.2 * (C1 + C2)):
        return None
    # signed foreground means well away from 0 for the "RoIMean" norm
    fg_mean = (heat * fg).sum(axis=(2, 3, 4)) / (fg.sum(axis=(2, 3, 4)) * 2)
    if not np.all(np.abs(fg_mean) > 0.2 * scales):
        return None
    return heat, mask, C1, C2


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("foreground", FOREGROUNDS)
def test_value_and_gradient_match_reference(foreground, norm):
    heat, mask, C1, C2 = make_grad_case(seed=FOREGROUNDS.index(foreground) * 3 + NORMS.index(norm))
    kw = dict(d=0.7, E=1.5, A=1.3, B=2.0, C1=C1, C2=C2, foreground=foreground, norm=norm)
    value, grad = keras_value_and_grad(heat, mask, **kw)
    expected = ref_loss(heat, mask, **kw)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    fd = numeric_grad(lambda x: ref_loss(x, mask, **kw), heat)
    scale = np.max(np.abs(fd))
    assert scale > 0
    np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=2e-4 * scale)
    # Both background and foreground contribute to the gradient on each sample.
    bg = (1.0 - mask)[:, None, :, :, None] * np.ones_like(heat)
    assert np.any(np.abs(grad * bg) > 0) and np.any(np.abs(grad * (1 - bg)) > 0)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("foreground", FOREGROUNDS)
def test_float64_heatmaps_keep_float64_precision(foreground, norm):
    """Float64 heatmaps are computed in float64: the value equals the float64 reference to
    1e-12 (a float32 loss is off by ~1e-7) and the float64 gradient equals finite
    differences of the reference."""
    heat, mask, C1, C2 = make_grad_case(seed=FOREGROUNDS.index(foreground) * 3 + NORMS.index(norm))
    kw = dict(d=0.7, E=1.5, A=1.3, B=2.0, C1=C1, C2=C2, foreground=foreground, norm=norm)
    var = tf.Variable(heat)  # float64
    with tf.GradientTape() as tape:
        loss = isnet_heatmap_loss(var, mask, **kw)
    grad = tape.gradient(loss, var).numpy()
    assert loss.dtype == "float64" and grad.dtype == np.float64
    assert float(loss) == pytest.approx(ref_loss(heat, mask, **kw), rel=1e-12, abs=0)
    fd = numeric_grad(lambda x: ref_loss(x, mask, **kw), heat)
    # the finite differences themselves are good to ~1e-8 here (20x tighter than float32)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.max(np.abs(fd)))


def test_per_sample_values_match_reference_with_defaults():
    rng = np.random.default_rng(7)
    heat = rng.normal(size=(3, 2, 4, 5, 3)).astype(np.float32)
    mask = (rng.uniform(size=(3, 4, 5)) > 0.5).astype(np.float64)
    mask[:, 0, 0], mask[:, 0, 1] = 1.0, 0.0
    got = loss_np(heat, mask, reduction="none")
    np.testing.assert_allclose(got, ref_loss_per_sample(heat, mask), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# GWRP closed forms
# ------------------------------------------------------------------------------------------


def test_gwrp_d0_is_max_and_d1_is_mean():
    x = np.array([[0.3, -1.0, 2.5, 0.7], [4.0, 4.5, -2.0, 0.0]])
    np.testing.assert_allclose(np.asarray(gwrp(x, d=0.0)), [2.5, 4.5], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gwrp(x, d=1.0)), [0.625, 1.625], rtol=1e-6)


def test_gwrp_hand_computed_half_decay_and_axis():
    # sorted [4, 2, 1], weights [1, 0.5, 0.25]: (4 + 1 + 0.25) / 1.75 = 3
    assert float(gwrp(np.array([1.0, 4.0, 2.0]), d=0.5)) == pytest.approx(3.0, abs=1e-6)
    x = np.array([[1.0, 10.0], [4.0, 20.0], [2.0, 30.0]])  # pool axis 0
    np.testing.assert_allclose(
        np.asarray(gwrp(x, d=0.5, axis=0)), [3.0, (30 + 10 + 2.5) / 1.75], rtol=1e-6
    )


def test_gwrp_gradient_of_max_pooling_is_one_hot():
    var = tf.Variable([[0.3, 2.0, -1.0]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(gwrp(var, d=0.0))
    np.testing.assert_array_equal(tape.gradient(y, var).numpy(), [[0.0, 1.0, 0.0]])


def test_gwrp_rejects_negative_d():
    with pytest.raises(ValueError, match="`d`"):
        gwrp(np.ones(3), d=-0.5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=20),
    st.floats(0.0, 1.0),
)
def test_gwrp_lies_between_min_and_max(values, d):
    x = np.array(values, dtype=np.float32)
    g = float(gwrp(x, d=d))
    tol = 1e-5 * (1.0 + np.max(np.abs(x)))
    assert x.min() - tol <= g <= x.max() + tol
    assert g == pytest.approx(ref_gwrp(values, d), rel=1e-4, abs=float(tol))


# ------------------------------------------------------------------------------------------
# Loss closed forms
# ------------------------------------------------------------------------------------------


def test_zero_background_relevance_gives_zero_background_loss():
    rng = np.random.default_rng(1)
    mask = np.zeros((2, 4, 4))
    mask[:, 1:3, 1:3] = 1
    heat = rng.normal(size=(2, 3, 4, 4, 2)) * mask[:, None, :, :, None]
    for norm in NORMS:
        assert float(isnet_heatmap_loss(heat, mask, B=0.0, norm=norm)) == 0.0


def test_foreground_inside_bounds_gives_zero_foreground_loss():
    mask = np.ones((1, 2, 2))
    heat = np.full((1, 2, 2, 2, 1), 1.25)  # F = 4 * 1.25 = 5 for both maps
    for fg in FOREGROUNDS:
        assert (
            float(isnet_heatmap_loss(heat, mask, A=0.0, B=1.0, C1=1.0, C2=25.0, foreground=fg))
            == 0.0
        )
    # with no background at all the background term is 0 too: the whole loss vanishes
    assert float(isnet_heatmap_loss(heat, mask)) == 0.0


def _two_map_heat(f0, f1):
    """One sample, two maps, 2x2x1, all foreground; |H| sums to f0 and f1."""
    heat = np.zeros((1, 2, 2, 2, 1))
    heat[0, 0] = f0 / 4.0
    heat[0, 1] = -f1 / 4.0  # the sign is irrelevant: F uses |H|
    return heat, np.ones((1, 2, 2))


@pytest.mark.parametrize(
    "foreground, C1, C2, f0, f1, expected",
    [
        # left (0.5 - 1)^2 = 0.25 and 0 -> 0.125; right L2 (30 - 25)^2 = 25 -> 12.5
        ("L2", 1.0, 25.0, 0.5, 30.0, 0.125 + 12.5),
        # right L1 |30 - 25| = 5 -> 2.5
        ("L1", 1.0, 25.0, 0.5, 30.0, 0.125 + 2.5),
        # hybrid, 30 > C1 + C2 = 26: |30 - 26| + 1 = 5 -> 2.5
        ("hybrid", 1.0, 25.0, 0.5, 30.0, 0.125 + 2.5),
        # hybrid, 25 < 25.5 <= 26: L2 branch (25.5 - 25)^2 = 0.25 -> 0.125
        ("hybrid", 1.0, 25.0, 0.5, 25.5, 0.125 + 0.125),
        # C1 = 2 scales the L2 terms: left (1/2 - 1)^2 = 0.25; right (14/2 - 10/2)^2 = 4
        ("L2", 2.0, 10.0, 1.0, 14.0, 0.125 + 2.0),
        # L1 is not scaled: |14 - 10| = 4
        ("L1", 2.0, 10.0, 1.0, 14.0, 0.125 + 2.0),
        # hybrid, 14 > 12: |14 - 12| + 1 = 3 -> 1.5
        ("hybrid", 2.0, 10.0, 1.0, 14.0, 0.125 + 1.5),
        # hybrid is continuous at C1 + C2 = 12: L2 gives (12/2 - 5)^2 = 1, L1 gives 0 + 1
        ("hybrid", 2.0, 10.0, 4.0, 12.0, 0.0 + 0.5),
    ],
)
def test_foreground_term_hand_computed(foreground, C1, C2, f0, f1, expected):
    heat, mask = _two_map_heat(f0, f1)
    kw = dict(A=0.0, B=1.0, C1=C1, C2=C2, foreground=foreground)
    assert float(isnet_heatmap_loss(heat, mask, **kw)) == pytest.approx(expected, rel=1e-6)
    # the default B = 3 multiplies it
    kw["B"] = 3.0
    assert float(isnet_heatmap_loss(heat, mask, **kw)) == pytest.approx(3 * expected, rel=1e-6)


@pytest.mark.parametrize(
    "norm, heat2d, g",
    [
        # foreground |H| mean = 1.5 -> background [0.5, 3] / 1.5 = [1/3, 2];
        # sorted [2, 1/3, 0, 0] (zeroed foreground stays), d = 0.5: (2 + 1/6) / 1.875
        ("absRoIMean", [[2.0, 1.0], [0.5, 3.0]], (2 + 1 / 6) / 1.875),
        # signed foreground mean -1.5 -> |[0.5, 3] / -1.5| = [1/3, 2]: same g
        ("RoIMean", [[-2.0, -1.0], [0.5, 3.0]], (2 + 1 / 6) / 1.875),
        # |H| * H*W*C = 4 |H| -> [2, 12]: (12 + 0.5 * 2) / 1.875
        ("none", [[2.0, 1.0], [0.5, 3.0]], 13 / 1.875),
    ],
)
def test_background_term_hand_computed(norm, heat2d, g):
    heat = np.array(heat2d)[None, None, :, :, None]
    mask = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    for E in (1.0, 2.0):
        # -log(1 - g / (g + E)) = log(1 + g / E)
        expected = math.log(1 + g / E)
        got = float(isnet_heatmap_loss(heat, mask, d=0.5, E=E, B=0.0, norm=norm))
        assert got == pytest.approx(expected, rel=1e-6)
        got = float(isnet_heatmap_loss(heat, mask, d=0.5, E=E, A=2.0, B=0.0, norm=norm))
        assert got == pytest.approx(2 * expected, rel=1e-6)


def test_background_term_averages_channels_and_maps():
    heat = np.zeros((1, 2, 1, 2, 2))  # 1x2 image, foreground left, background right
    heat[0, :, 0, 0, :] = 1.0  # foreground |H| mean 1 in every map
    heat[0, 0, 0, 1] = [1.0, 3.0]
    heat[0, 1, 0, 1] = [0.0, 7.0]
    mask = np.array([[[1.0, 0.0]]])
    # foreground |H| mean = 1 in both maps, so nothing is rescaled; d = 0 (max, the zeroed
    # foreground ranks below): g per (map, channel) = [[1, 3], [0, 7]]; E = 1
    expected = np.mean(np.log1p([1.0, 3.0, 0.0, 7.0]))
    got = float(isnet_heatmap_loss(heat, mask, d=0.0, B=0.0))
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_background_clamp(dtype):
    heat = np.array([[[[[1.0], [1e12]]]]], dtype=dtype)  # (1, 1, 1, 2, 1)
    mask = np.array([[[1.0, 0.0]]])
    got = float(isnet_heatmap_loss(heat, mask, d=0.0, B=0.0))
    expected = -math.log(1.0 - float(dtype(1 - 1e-7)))  # the clamp, in the loss's dtype
    assert got == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------


def test_mask_pooling_any_foreground_keeps_the_cell():
    mask = np.zeros((1, 4, 4))
    mask[0, 0, 1] = 1  # one pixel in the top-left 2x2 cell
    mask[0, 3, 3] = 1  # one pixel in the bottom-right cell
    out = prepare_masks(mask, (2, 2))
    assert out.dtype == "float32" and tuple(out.shape) == (1, 2, 2)
    np.testing.assert_array_equal(np.asarray(out)[0], [[1, 0], [0, 1]])
    # (batch, H, W, 1) and non-square factors
    mask6 = np.zeros((2, 4, 6, 1))
    mask6[1, 2, 5, 0] = 1
    out = np.asarray(prepare_masks(mask6, (2, 2)))
    np.testing.assert_array_equal(out, [[[0, 0], [0, 0]], [[0, 0], [0, 1]]])
    np.testing.assert_array_equal(out, ref_pool_mask(mask6[..., 0], 2, 2))


def test_mask_same_size_passes_through_and_bool_is_accepted():
    mask = np.array([[[True, False], [False, True]]])
    out = prepare_masks(mask, (2, 2))
    assert out.dtype == "float32"
    np.testing.assert_array_equal(np.asarray(out), mask.astype(np.float32))


def test_loss_with_larger_mask_equals_loss_with_pooled_mask():
    rng = np.random.default_rng(3)
    heat = rng.normal(size=(2, 1, 2, 2, 3))
    mask = np.zeros((2, 4, 4))
    mask[0, 0, 1] = mask[1, 2:, :2] = 1
    pooled = ref_pool_mask(mask, 2, 2)
    np.testing.assert_allclose(loss_np(heat, mask), loss_np(heat, pooled), rtol=1e-6)
    np.testing.assert_allclose(loss_np(heat, mask), ref_loss(heat, mask), rtol=1e-5)


def test_non_binary_mask_raises():
    mask = np.zeros((2, 4, 4))
    mask[0, 0, 0] = 0.5
    mask[1, 1, 1] = 2.0
    with pytest.raises(ValueError, match="2 of 32 values") as info:
        prepare_masks(mask, (4, 4))
    msg = str(info.value)
    assert "1 = foreground" in msg and "masks" in msg
    assert "0.5" in msg or "2.0" in msg
    # also through the loss, and also when the mask would be pooled (never binarised silently)
    with pytest.raises(ValueError, match="binary"):
        isnet_heatmap_loss(np.ones((2, 1, 2, 2, 1)), mask)


@pytest.mark.parametrize(
    "mask_shape",
    [(2, 5, 5), (2, 2, 2), (3, 4, 4), (2, 4, 4, 2), (4, 4), (2, 1, 4, 4, 1)],
)
def test_wrong_shape_mask_message_names_both_shapes(mask_shape):
    heat = np.ones((2, 1, 4, 4, 1))
    with pytest.raises(ValueError) as info:
        isnet_heatmap_loss(heat, np.zeros(mask_shape))
    msg = str(info.value)
    assert str(mask_shape) in msg and str(heat.shape) in msg and "masks" in msg


def test_prepare_masks_wrong_size_names_both_shapes():
    with pytest.raises(ValueError) as info:
        prepare_masks(np.zeros((1, 6, 6)), (4, 4))
    assert "(1, 6, 6)" in str(info.value) and "(4, 4)" in str(info.value)
    with pytest.raises(ValueError, match="batch size 2"):
        prepare_masks(np.zeros((2, 4, 4)), (4, 4), batch_size=3)


# ------------------------------------------------------------------------------------------
# Non-finite values, empty foreground, dtypes, reduction, arguments
# ------------------------------------------------------------------------------------------


def test_nan_and_inf_replacement():
    mask = np.array([[[1.0, 1.0], [1.0, 0.0]]])
    heat = np.array([[1.0, np.nan], [3.0, np.inf]])[None, None, :, :, None]
    # NaN -> (1 + 0 + 3) / 3 foreground positions (the NaN itself counts); +inf -> max = 3
    replaced = np.array([[1.0, 4.0 / 3.0], [3.0, 3.0]])[None, None, :, :, None]
    kw = dict(d=0.5, C1=1.0, C2=3.0)
    got = float(isnet_heatmap_loss(heat, mask, **kw))
    assert np.isfinite(got)
    assert got == pytest.approx(float(isnet_heatmap_loss(replaced, mask, **kw)), rel=1e-6)
    assert got == pytest.approx(ref_loss(replaced, mask, **kw), rel=1e-6)
    assert got == pytest.approx(ref_loss(heat, mask, **kw), rel=1e-6)

    # -inf -> the smallest finite value
    mask2 = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    heat2 = np.array([[1.0, -np.inf], [2.0, -5.0]])[None, None, :, :, None]
    replaced2 = np.array([[1.0, -5.0], [2.0, -5.0]])[None, None, :, :, None]
    got2 = float(isnet_heatmap_loss(heat2, mask2, **kw))
    assert got2 == pytest.approx(float(isnet_heatmap_loss(replaced2, mask2, **kw)), rel=1e-6)

    # Reference quirk (documented): the non-finite entries count as 0 in the max, so +inf with
    # only negative finite values becomes 0, not the largest (negative) finite value.
    heat3 = np.array([[-1.0, np.inf], [-2.0, -3.0]])[None, None, :, :, None]
    replaced3 = np.array([[-1.0, 0.0], [-2.0, -3.0]])[None, None, :, :, None]
    got3 = float(isnet_heatmap_loss(heat3, mask, **kw))
    assert got3 == pytest.approx(float(isnet_heatmap_loss(replaced3, mask, **kw)), rel=1e-6)


def test_non_finite_gradient_is_finite_and_zero_at_replaced_entries():
    mask = np.array([[[1.0, 1.0], [1.0, 0.0]]])
    heat = np.array([[1.0, np.nan], [3.0, np.inf]])[None, None, :, :, None]
    value, grad = keras_value_and_grad(heat, mask, d=0.5, C1=1.0, C2=3.0)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert grad[0, 0, 0, 1, 0] == 0.0 and grad[0, 0, 1, 1, 0] == 0.0
    assert grad[0, 0, 0, 0, 0] != 0.0


def test_all_background_mask_gives_finite_loss():
    rng = np.random.default_rng(5)
    heat = rng.normal(size=(2, 2, 3, 3, 2))
    mask = np.zeros((2, 3, 3))
    clamp_term = -math.log(1.0 - float(np.float32(1 - 1e-7)))  # ~15.94
    for norm in NORMS:
        value, grad = keras_value_and_grad(heat, mask, norm=norm)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        if norm != "none":  # normaliser 1e-10: the background term sits at the clamp
            assert value == pytest.approx(clamp_term + 3.0, rel=1e-5)
    # an all-zero heatmap: only the left foreground term (F = 0 -> 1) remains
    assert float(isnet_heatmap_loss(np.zeros((1, 1, 3, 3, 1)), np.zeros((1, 3, 3)))) == 3.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_input_returns_float32(dtype):
    rng = np.random.default_rng(2)
    heat64 = rng.normal(size=(2, 1, 4, 4, 1))
    mask = np.zeros((2, 4, 4))
    mask[:, :2] = 1
    heat = tf.cast(tf.constant(heat64), dtype)
    out = isnet_heatmap_loss(heat, mask)
    assert out.dtype == "float32"
    rounded = tf.cast(heat, "float64").numpy()
    assert float(out) == pytest.approx(ref_loss(rounded, mask), rel=1e-5)


def test_float16_overflow_is_handled_like_inf():
    big = np.full((1, 1, 2, 2, 1), 7e4, dtype=np.float32)
    big[0, 0, 0, 0, 0] = 2.0
    heat = tf.cast(tf.constant(big), "float16")  # 7e4 -> inf in float16
    assert np.isinf(heat.numpy()).sum() == 3
    mask = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    # +inf -> the largest finite value, 2: same loss as the all-2 heatmap
    expected = float(isnet_heatmap_loss(np.full((1, 1, 2, 2, 1), 2.0), mask))
    assert float(isnet_heatmap_loss(heat, mask)) == pytest.approx(expected, rel=1e-6)


def test_reduction_none_shape_and_mean():
    rng = np.random.default_rng(4)
    heat = rng.normal(size=(5, 2, 3, 3, 1))
    mask = np.zeros((5, 3, 3))
    mask[:, 1, 1] = 1
    per_sample = isnet_heatmap_loss(heat, mask, reduction="none")
    assert tuple(per_sample.shape) == (5,) and per_sample.dtype == "float64"  # as the heatmaps
    assert float(isnet_heatmap_loss(heat, mask)) == pytest.approx(
        float(np.mean(per_sample)), rel=1e-6
    )
    np.testing.assert_allclose(np.asarray(per_sample), ref_loss_per_sample(heat, mask), rtol=1e-5)


def test_mask_with_channel_axis_is_accepted():
    rng = np.random.default_rng(6)
    heat = rng.normal(size=(2, 1, 3, 3, 2))
    mask = (rng.uniform(size=(2, 3, 3)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(loss_np(heat, mask[..., None]), loss_np(heat, mask), rtol=1e-7)


def test_works_inside_tf_function():
    rng = np.random.default_rng(8)
    heat = rng.normal(size=(2, 1, 4, 4, 1)).astype(np.float32)
    mask = np.zeros((2, 8, 8), dtype=np.float32)
    mask[:, 2:5, 2:5] = 1

    @tf.function
    def f(h, m):
        return isnet_heatmap_loss(h, m, d=0.5, foreground="hybrid")

    expected = float(isnet_heatmap_loss(heat, mask, d=0.5, foreground="hybrid"))
    assert float(f(heat, mask)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"foreground": "L3"}, ["foreground", "'L2'", "'hybrid'", "'L1'"]),
        ({"norm": "abs"}, ["norm", "'absRoIMean'", "'RoIMean'", "'none'"]),
        ({"reduction": "sum"}, ["reduction", "'mean'", "'none'"]),
        ({"C1": 0.0}, ["C1"]),
        ({"C1": 5.0, "C2": 2.0}, ["C2"]),
        ({"E": 0.0}, ["E"]),
        ({"d": -1.0}, ["`d`"]),
    ],
)
def test_invalid_arguments_raise(kwargs, words):
    with pytest.raises(ValueError) as info:
        isnet_heatmap_loss(np.ones((1, 1, 2, 2, 1)), np.ones((1, 2, 2)), **kwargs)
    for w in words:
        assert w in str(info.value)


def test_wrong_heatmap_rank_names_layout():
    with pytest.raises(ValueError, match=r"\(batch, maps, H, W, C\)") as info:
        isnet_heatmap_loss(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2)))
    assert "heatmaps" in str(info.value) and "(1, 2, 2, 1)" in str(info.value)


# ------------------------------------------------------------------------------------------
# Property: background positions are exchangeable
# ------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    hw=st.tuples(st.integers(2, 4), st.integers(2, 4)),
    maps=st.integers(1, 2),
    channels=st.integers(1, 2),
    foreground=st.sampled_from(FOREGROUNDS),
    norm=st.sampled_from(NORMS),
    d=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
)
def test_loss_invariant_to_permuting_background_positions(
    seed, hw, maps, channels, foreground, norm, d
):
    rng = np.random.default_rng(seed)
    h_, w_ = hw
    heat = rng.normal(size=(2, maps, h_, w_, channels)).astype(np.float32)
    mask = (rng.uniform(size=(2, h_, w_)) > 0.5).astype(np.float32)
    permuted = heat.copy()
    for b in range(2):
        bg = np.argwhere(mask[b] == 0)
        if len(bg) < 2:
            continue
        perm = rng.permutation(len(bg))
        for (i, j), (pi, pj) in zip(bg, bg[perm], strict=True):
            permuted[b, :, i, j, :] = heat[b, :, pi, pj, :]
    kw = dict(d=d, foreground=foreground, norm=norm, reduction="none")
    np.testing.assert_allclose(loss_np(permuted, mask, **kw), loss_np(heat, mask, **kw), rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Cut tune
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, ddof, expected",
    [
        # mu = 3, population sigma = sqrt(2): C1 = max(0.6, 3 - 4.24) = 0.6;
        # C2 = min(15, 3 + 3 sqrt 2)
        ([1, 2, 3, 4, 5], 0, (0.6, 3 + 3 * math.sqrt(2))),
        # sample sigma = sqrt(2.5), as the reference's finalizeWelford
        ([1, 2, 3, 4, 5], 1, (0.6, 3 + 3 * math.sqrt(2.5))),
        # sigma = 0: C1 = max(2, 10) = 10, C2 = min(250, 10) = 10
        ([10, 10, 10, 10], 0, (10.0, 10.0)),
        # mu = 100, sigma = sqrt(2/3): C1 = mu - 3 sigma, C2 = mu + 3 sigma
        ([99, 100, 101], 0, (100 - 3 * math.sqrt(2 / 3), 100 + 3 * math.sqrt(2 / 3))),
        # mu = 25, sigma = 25 sqrt 3: C1 = mu / 5 = 5, C2 = 25 C1 = 125
        ([0, 0, 0, 100], 0, (5.0, 125.0)),
    ],
)
def test_estimate_cuts_hand_computed(values, ddof, expected):
    c1, c2 = estimate_cuts(np.array(values, dtype=np.float64), ddof=ddof)
    assert isinstance(c1, float) and isinstance(c2, float)
    assert (c1, c2) == pytest.approx(expected, rel=1e-12)


def test_cut_accumulator_streaming_equals_batch_formula():
    rng = np.random.default_rng(9)
    batches = [rng.gamma(2.0, 3.0, size=n) for n in (1, 7, 32, 3, 16)]
    values = np.concatenate(batches)
    for ddof in (0, 1):
        acc = CutAccumulator(ddof=ddof)
        for i, batch in enumerate(batches):
            acc.update(tf.constant(batch) if i % 2 else batch)
        mu, sigma = values.mean(), values.std(ddof=ddof)
        c1 = max(mu / 5, mu - 3 * sigma)
        expected = (c1, min(25 * c1, mu + 3 * sigma))
        assert acc.count == values.size
        assert acc.result() == pytest.approx(expected, rel=1e-10)
        assert acc.result() == pytest.approx(estimate_cuts(values, ddof=ddof), rel=1e-10)


def test_cut_tune_errors():
    with pytest.raises(ValueError, match="at least"):
        estimate_cuts([])
    with pytest.raises(ValueError, match="at least 2"):
        estimate_cuts([1.0], ddof=1)
    with pytest.raises(ValueError, match="negative"):
        estimate_cuts([1.0, -2.0])
    with pytest.raises(ValueError, match="all per-sample"):
        estimate_cuts([0.0, 0.0])
    with pytest.raises(ValueError, match="at least"):
        CutAccumulator().result()
