"""Tests for keras_isnet.metrics and keras_isnet.image against closed-form cases."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_isnet.image import gaussian_blur
from keras_isnet.metrics import (
    CurveResult,
    background_relevance_share,
    deletion_curve,
    insertion_curve,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

H = W = 8


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def linear_model(w, bias=0.0, activation=None, units=2):
    """Model with logits (w . x + bias, 0): softmax probability of class 0 = sigmoid(w . x + b)."""
    model = keras.Sequential(
        [keras.Input((H, W, 1)), keras.layers.Flatten(), keras.layers.Dense(units, activation)]
    )
    kernel = np.zeros((H * W, units), "float32")
    kernel[:, 0] = np.asarray(w, "float32").ravel()
    b = np.zeros(units, "float32")
    b[0] = bias
    model.layers[-1].set_weights([kernel, b])
    return model


def quadrant():
    """Top-left 4x4 quadrant indicator, (8, 8)."""
    q = np.zeros((H, W))
    q[:4, :4] = 1
    return q


ONES = np.ones((1, H, W, 1), "float32")


@pytest.fixture(scope="module")
def quad_model():
    # logit 0.25 * (sum of the quadrant pixels): 4 on the all-ones image, 0 once it is deleted.
    return linear_model(0.25 * quadrant())


# ----------------------------------------------------------------------------- gaussian_blur


@pytest.mark.parametrize("sigma", [0.7, 1.0, 5.0])
@pytest.mark.parametrize("padding", ["reflect", "edge"])
def test_blur_of_constant_image_is_constant(sigma, padding):
    x = np.full((2, H, W, 3), 0.37, "float32")
    y = np.asarray(gaussian_blur(x, sigma, padding=padding))
    assert y.shape == x.shape
    np.testing.assert_allclose(y, 0.37, atol=1e-6)


def test_blur_of_delta_is_normalised_gaussian():
    sigma, n = 1.5, 17
    x = np.zeros((1, n, n, 2), "float32")
    x[0, 8, 8, :] = 1.0
    y = np.asarray(gaussian_blur(x, sigma))
    # default kernel 2 * ceil(4.5) + 1 = 11, radius 5: the support stays away from borders
    r = np.arange(-5, 6)
    g = np.exp(-(r**2) / (2 * sigma**2))
    g /= g.sum()
    expected = np.zeros((n, n))
    expected[3:14, 3:14] = np.outer(g, g)
    for c in range(2):
        np.testing.assert_allclose(y[0, :, :, c], expected, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_blur_sigma_zero_is_identity_and_zero_padding_darkens_borders():
    x = np.random.default_rng(0).random((1, H, W, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(gaussian_blur(x, 0.0)), x, atol=1e-7)
    ones = np.ones((1, 17, 17, 1), "float32")
    y = np.asarray(gaussian_blur(ones, 1.0, padding="zeros"))
    assert y[0, 0, 0, 0] < 0.5  # corner sees ~ one quarter of the kernel
    np.testing.assert_allclose(y[0, 3:14, 3:14, 0], 1.0, atol=1e-6)


def test_blur_explicit_kernel_size_and_anisotropic_sigma():
    x = np.zeros((1, 9, 9, 1), "float32")
    x[0, 4, 4, 0] = 1.0
    y = np.asarray(gaussian_blur(x, (0.0, 1.0), kernel_size=(1, 3)))[0, :, :, 0]
    g = np.exp(-np.array([1.0, 0.0, 1.0]) / 2)
    g /= g.sum()
    np.testing.assert_allclose(y[4, 3:6], g, atol=1e-6)
    assert np.count_nonzero(y) == 3  # nothing blurred along the height


def test_blur_bad_inputs():
    x = np.zeros((1, H, W, 1), "float32")
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(x, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match="batch, H, W, C"):
        gaussian_blur(np.zeros((H, W, 1)), 1.0)
    with pytest.raises(ValueError, match="padding"):
        gaussian_blur(x, 1.0, padding="circular")


# ----------------------------------------------------------------------- insertion / deletion


def test_deletion_and_insertion_perfect_ranking_closed_form(quad_model):
    heat = (1.0 + quadrant())[None]  # quadrant ranked first
    s4 = sigmoid(4.0)
    dele = deletion_curve(quad_model, ONES, heat, steps=4, baseline="zeros", labels=0)
    ins = insertion_curve(quad_model, ONES, heat, steps=4, baseline="zeros", labels=0)
    assert isinstance(dele, CurveResult) and dele.kind == "deletion"
    np.testing.assert_allclose(dele.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(dele.scores, [[s4, 0.5, 0.5, 0.5, 0.5]], rtol=1e-5)
    np.testing.assert_allclose(ins.scores, [[0.5, s4, s4, s4, s4]], rtol=1e-5)
    np.testing.assert_allclose(dele.auc, [0.25 * ((s4 + 0.5) / 2 + 3 * 0.5)], rtol=1e-5)
    np.testing.assert_allclose(ins.auc, [0.25 * ((0.5 + s4) / 2 + 3 * s4)], rtol=1e-5)


def test_reversed_ranking_is_worse(quad_model):
    s4 = sigmoid(4.0)
    good = deletion_curve(quad_model, ONES, quadrant()[None], steps=4, baseline="zeros")
    bad = deletion_curve(quad_model, ONES, 1.0 - quadrant()[None], steps=4, baseline="zeros")
    np.testing.assert_allclose(bad.scores, [[s4, s4, s4, s4, 0.5]], rtol=1e-5)
    np.testing.assert_allclose(bad.auc, [0.25 * (3 * s4 + (s4 + 0.5) / 2)], rtol=1e-5)
    assert good.auc[0] < bad.auc[0]


def test_auc_uses_both_ends(quad_model):
    heat = quadrant()[None]
    s4 = sigmoid(4.0)
    # a single step: the curve is just its two end points
    res = deletion_curve(quad_model, ONES, heat, steps=1, baseline="zeros")
    np.testing.assert_allclose(res.fractions, [0.0, 1.0])
    np.testing.assert_allclose(res.auc, [(s4 + 0.5) / 2], rtol=1e-6)
    # single-pixel model: the whole drop happens in the first segment [0, 1/64]
    w = np.zeros((H, W))
    w[0, 0] = 20.0
    model = linear_model(w, bias=-10.0)
    heat = np.zeros((1, H, W))
    heat[0, 0, 0] = 1.0
    res = deletion_curve(model, ONES, heat, steps=None, baseline="zeros", labels=0)
    assert res.scores.shape == (1, 65)
    hi, lo = sigmoid(10.0), sigmoid(-10.0)
    expected = (1 / 64) * (hi + lo) / 2 + (63 / 64) * lo
    np.testing.assert_allclose(res.auc, [expected], rtol=1e-5)
    np.testing.assert_allclose(res.auc, np.trapezoid(res.scores, res.fractions), rtol=1e-12)


def test_graded_curves_each_step():
    # logit = 0.05 * sum_r r * (sum of row r); rows are deleted/inserted top row first.
    rows = np.repeat(np.arange(H, dtype=float)[:, None], W, axis=1)
    model = linear_model(0.05 * rows)
    heat = -rows[None]  # top row most relevant; ties within a row do not matter here
    k = np.arange(H + 1)
    z_del = 0.4 * (28 - k * (k - 1) / 2)  # rows k..7 remain, each contributes 8 * 0.05 * r
    z_ins = 0.4 * (k * (k - 1) / 2)  # rows 0..k-1 revealed
    dele = deletion_curve(model, ONES, heat, steps=8, baseline="zeros", labels=0)
    ins = insertion_curve(model, ONES, heat, steps=8, baseline="zeros", labels=0)
    np.testing.assert_allclose(dele.scores[0], [sigmoid(z) for z in z_del], rtol=1e-5)
    np.testing.assert_allclose(ins.scores[0], [sigmoid(z) for z in z_ins], rtol=1e-5)
    # other class: probability 1 - sigmoid(z); batch of two with per-sample labels
    both = deletion_curve(
        model,
        np.repeat(ONES, 2, 0),
        np.repeat(heat, 2, 0),
        steps=8,
        baseline="zeros",
        labels=[0, 1],
        batch_size=5,
    )
    np.testing.assert_allclose(both.scores[0], dele.scores[0], rtol=1e-5)
    np.testing.assert_allclose(both.scores[1], 1 - dele.scores[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(both.labels, [0, 1])


def test_ties_are_broken_in_row_major_order():
    top = np.zeros((H, W))
    top[:4] = 0.125  # logit 4 from the top half
    s4 = sigmoid(4.0)
    zero_heat = np.zeros((1, H, W))
    res = deletion_curve(linear_model(top), ONES, zero_heat, steps=2, baseline="zeros")
    np.testing.assert_allclose(res.scores, [[s4, 0.5, 0.5]], rtol=1e-5)
    res = deletion_curve(linear_model(top[::-1]), ONES, zero_heat, steps=2, baseline="zeros")
    np.testing.assert_allclose(res.scores, [[s4, s4, 0.5]], rtol=1e-5)


def test_cells_sum_the_heatmap(quad_model):
    s4 = sigmoid(4.0)
    heat = quadrant()[None].copy()  # top-left 4x4 cell sums to 16
    heat[0, 7, 7] = 10.0  # single hottest pixel, but its 4x4 cell sums to only 10
    cells = deletion_curve(quad_model, ONES, heat, steps=4, cell_size=4, baseline="zeros")
    np.testing.assert_allclose(cells.scores, [[s4, 0.5, 0.5, 0.5, 0.5]], rtol=1e-5)
    pixels = deletion_curve(quad_model, ONES, heat, steps=64, baseline="zeros")
    np.testing.assert_allclose(pixels.scores[0, :2], [s4, s4], rtol=1e-5)  # (7,7) went first
    # 8 is not a multiple of 3: 3 x 3 = 9 cells, partial ones at the borders
    odd = deletion_curve(quad_model, ONES, heat, steps=None, cell_size=3, baseline="zeros")
    np.testing.assert_allclose(odd.fractions, np.arange(10) / 9)
    np.testing.assert_allclose(odd.scores[0, [0, -1]], [s4, 0.5], rtol=1e-5)


def test_blur_and_array_baselines(quad_model):
    x = np.random.default_rng(1).random((2, H, W, 1)).astype("float32")
    heat = np.random.default_rng(2).random((2, H, W))
    w = 0.25 * quadrant()
    blurred = np.asarray(gaussian_blur(x, 1.0))

    def p(img):
        return sigmoid(float((w * img[..., 0]).sum()))

    ins = insertion_curve(quad_model, x, heat, steps=5, blur_sigma=1.0, labels=0)
    dele = deletion_curve(quad_model, x, heat, steps=5, blur_sigma=1.0, labels=0)
    for i in range(2):
        np.testing.assert_allclose(ins.scores[i, [0, -1]], [p(blurred[i]), p(x[i])], rtol=1e-5)
        np.testing.assert_allclose(dele.scores[i, [0, -1]], [p(x[i]), p(blurred[i])], rtol=1e-5)
    const = deletion_curve(quad_model, x, heat, steps=5, baseline=np.full((H, W, 1), 0.5))
    np.testing.assert_allclose(const.scores[:, -1], sigmoid(0.25 * 16 * 0.5), rtol=1e-5)


def test_more_steps_than_pixels_keeps_both_ends(quad_model):
    res = deletion_curve(quad_model, ONES, quadrant()[None], steps=128, baseline="zeros")
    assert res.fractions.shape == (129,) and res.scores.shape == (1, 129)
    assert res.fractions[0] == 0.0 and res.fractions[-1] == 1.0
    assert np.all(np.diff(res.fractions) >= 0)


def test_softmax_is_not_applied_twice():
    w = 0.25 * quadrant()
    heat = quadrant()[None]
    logits = deletion_curve(linear_model(w), ONES, heat, steps=4, baseline="zeros")
    probs_model = linear_model(w, activation="softmax")
    probs = deletion_curve(probs_model, ONES, heat, steps=4, baseline="zeros")
    np.testing.assert_allclose(probs.scores, logits.scores, rtol=1e-5)

    # a plain callable returning probabilities is detected from its outputs
    def fn(x, training=False):
        return probs_model(x, training=training)

    np.testing.assert_allclose(
        deletion_curve(fn, ONES, heat, steps=4, baseline="zeros").scores, logits.scores, rtol=1e-5
    )
    raw = deletion_curve(
        linear_model(w), ONES, heat, steps=4, baseline="zeros", apply_softmax=False
    )
    np.testing.assert_allclose(raw.scores, [[4.0, 0, 0, 0, 0]], atol=1e-6)


def test_single_unit_output():
    model = linear_model(0.25 * quadrant(), activation="sigmoid", units=1)
    res = deletion_curve(model, ONES, quadrant()[None], steps=4, baseline="zeros")
    np.testing.assert_allclose(res.scores, [[sigmoid(4.0), 0.5, 0.5, 0.5, 0.5]], rtol=1e-5)
    with pytest.raises(ValueError, match="single output unit"):
        deletion_curve(model, ONES, quadrant()[None], apply_softmax=True)


def test_default_label_is_predicted_class():
    model = linear_model(-0.25 * quadrant())  # logit -4 < 0: class 1 is predicted
    res = deletion_curve(model, ONES, quadrant()[None], steps=4, baseline="zeros")
    assert res.labels.tolist() == [1]
    np.testing.assert_allclose(res.scores, [[sigmoid(4.0), 0.5, 0.5, 0.5, 0.5]], rtol=1e-5)


def test_curve_bad_inputs(quad_model):
    heat = quadrant()[None]
    with pytest.raises(ValueError, match=r"\(1, 7, 8\).*\(1, 8, 8, 1\)"):
        deletion_curve(quad_model, ONES, np.zeros((1, 7, 8)))
    with pytest.raises(ValueError, match="batch, H, W, C"):
        deletion_curve(quad_model, ONES[0], heat)
    with pytest.raises(ValueError, match="cell_size"):
        deletion_curve(quad_model, ONES, heat, cell_size=0)
    with pytest.raises(ValueError, match="steps"):
        insertion_curve(quad_model, ONES, heat, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        insertion_curve(quad_model, ONES, heat, baseline="noise")
    with pytest.raises(ValueError, match="cannot be broadcast"):
        insertion_curve(quad_model, ONES, heat, baseline=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels"):
        insertion_curve(quad_model, ONES, heat, labels=2)
    with pytest.raises(ValueError, match="NaN"):
        insertion_curve(quad_model, ONES, np.full((1, H, W), np.nan))
    with pytest.raises(ValueError, match="apply_softmax"):
        insertion_curve(quad_model, ONES, heat, apply_softmax="yes")


def test_plot(quad_model, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.repeat(ONES, 2, 0)
    res = insertion_curve(quad_model, x, np.repeat(quadrant()[None], 2, 0), steps=4)
    path = tmp_path / "insertion.png"
    res.plot(path=path)
    assert path.stat().st_size > 0
    fig, ax = plt.subplots()
    assert res.plot(ax=ax) is ax
    plt.close(fig)


# ---------------------------------------------------------------------------- localization


def test_heatmap_equal_to_mask_and_its_complement():
    mask = quadrant()[None]
    assert relevance_mass_accuracy(mask, mask).tolist() == [1.0]
    assert background_relevance_share(mask, mask).tolist() == [0.0]
    assert relevance_rank_accuracy(mask, mask).tolist() == [1.0]
    assert pointing_game(mask, mask).tolist() == [True]
    comp = 1.0 - mask
    assert relevance_mass_accuracy(comp, mask).tolist() == [0.0]
    assert background_relevance_share(comp, mask).tolist() == [1.0]
    assert relevance_rank_accuracy(comp, mask).tolist() == [0.0]
    assert pointing_game(comp, mask).tolist() == [False]


def test_channels_signs_and_batch():
    mask = np.stack([quadrant(), quadrant()])[..., None]  # (2, 8, 8, 1)
    signed = quadrant() - (1 - quadrant())  # +1 inside, -1 outside
    heat = np.stack([np.ones((H, W)), signed])
    heat_c = np.repeat(heat[..., None], 3, axis=-1) / 3  # (2, 8, 8, 3), sums back to heat
    np.testing.assert_allclose(relevance_mass_accuracy(heat_c, mask), [0.25, 0.25])
    np.testing.assert_allclose(relevance_mass_accuracy(heat, mask, positive_only=True), [0.25, 1])
    np.testing.assert_allclose(background_relevance_share(heat, mask), [0.75, 0.75])


def test_all_zero_heatmap_gives_nan():
    mask = quadrant()[None]
    zero = np.zeros((1, H, W))
    assert np.isnan(background_relevance_share(zero, mask)).all()
    assert np.isnan(relevance_mass_accuracy(zero, mask)).all()
    assert np.isnan(relevance_mass_accuracy(-mask, mask, positive_only=True)).all()


def test_relevance_rank_accuracy_known_ranking():
    heat = np.arange(16, dtype=float)[::-1].reshape(1, 4, 4)  # row 0 highest
    mask = np.zeros((1, 4, 4))
    mask[0, [0, 0, 2, 3], [0, 3, 0, 3]] = 1  # K = 4; top-4 = row 0, two of them in the mask
    assert relevance_rank_accuracy(heat, mask).tolist() == [0.5]
    assert relevance_rank_accuracy(-heat, mask).tolist() == [0.25]  # top-4 = row 3
    assert relevance_rank_accuracy(-heat, mask, absolute=True).tolist() == [0.5]
    # ties: an all-zero heatmap ranks in row-major order
    first_row = np.zeros((1, 4, 4))
    first_row[0, 0] = 1
    assert relevance_rank_accuracy(np.zeros((1, 4, 4)), first_row).tolist() == [1.0]
    assert np.isnan(relevance_rank_accuracy(heat, np.zeros((1, 4, 4)))).all()


def test_pointing_game_tolerance():
    heat = np.zeros((1, H, W))
    heat[0, 4, 4] = 1.0
    mask = np.zeros((1, H, W), dtype=bool)
    mask[0, 4, 7] = True  # 3 px to the right of the maximum
    assert pointing_game(heat, mask).tolist() == [False]
    assert pointing_game(heat, mask, tolerance=2.9).tolist() == [False]
    assert pointing_game(heat, mask, tolerance=3).tolist() == [True]
    assert pointing_game(heat, np.zeros_like(mask), tolerance=100).tolist() == [False]
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(heat, mask, tolerance=-1)


def test_localization_bad_inputs():
    heat = np.ones((2, H, W))
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 8, 7\)"):
        relevance_mass_accuracy(heat, np.ones((2, H, 7)))
    with pytest.raises(ValueError, match=r"\(2, 8, 8, 2\)"):
        background_relevance_share(heat, np.ones((2, H, W, 2)))
    with pytest.raises(ValueError, match="binary"):
        relevance_rank_accuracy(heat, np.full((2, H, W), 0.5))
    with pytest.raises(ValueError, match="binary"):
        pointing_game(heat, 2 * np.ones((2, H, W)))
    with pytest.raises(ValueError, match="NaN"):
        relevance_mass_accuracy(np.full((2, H, W), np.inf), np.ones((2, H, W)))


@settings(max_examples=50, deadline=None)
@given(
    heat=hnp.arrays(np.float64, (2, 5, 5), elements=st.floats(-10, 10)),
    mask=hnp.arrays(np.bool_, (2, 5, 5)),
)
def test_mass_plus_background_share_is_one(heat, mask):
    mass = relevance_mass_accuracy(heat, mask)
    share = background_relevance_share(heat, mask)
    nonzero = np.abs(heat).sum(axis=(1, 2)) > 0
    np.testing.assert_allclose((mass + share)[nonzero], 1.0, atol=1e-12)
    assert np.all((mass[nonzero] >= 0) & (mass[nonzero] <= 1))
    assert np.isnan(share[~nonzero]).all()
