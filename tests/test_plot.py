"""ki.plot: the colours against matplotlib's own bwr/TwoSlopeNorm, reductions and clipping in
closed form, and the figures (norms, panels, outlines, files) read back."""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import TwoSlopeNorm
from PIL import Image

import keras_isnet as ki
from keras_isnet import plot


def _h(seed=0, shape=(9, 7)):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("symmetric", [True, False])
def test_colorize_equals_matplotlib_bwr_under_two_slope_norm(symmetric):
    h = _h()
    h[0, 0] = 3 * np.abs(h).max()  # one strong positive pixel: asymmetric limits differ
    if symmetric:
        vmin, vmax = -np.abs(h).max(), np.abs(h).max()
    else:
        vmin, vmax = h.min(), h.max()
    norm = TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=vmax)
    expected = matplotlib.colormaps["bwr"](norm(h))[..., :3]
    got = plot.colorize(h, symmetric=symmetric)
    np.testing.assert_allclose(got, expected, atol=1.0 / 128)  # matplotlib's 256-entry table
    assert got.dtype == np.float32 and got.shape == (9, 7, 3)


def test_colorize_signs_zero_and_clipping():
    rgb = plot.colorize(np.array([[2.0, 0.0, -2.0, 1.0]]))
    np.testing.assert_allclose(rgb[0], [[1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 0.5, 0.5]])
    clipped = plot.colorize(np.array([[10.0, 1.0, -1.0]]), bound=1.0)
    np.testing.assert_allclose(clipped[0], [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(plot.colorize(np.zeros((2, 2))), 1.0)  # all zero: white


def test_reduce_channels_and_clip_bound():
    h = np.stack([np.full((3, 3), 2.0), np.full((3, 3), -5.0)], axis=-1)
    assert plot.reduce_channels(h).tolist() == np.full((3, 3), -3.0).tolist()
    assert plot.reduce_channels(h, "mean_abs").tolist() == np.full((3, 3), 3.5).tolist()
    assert plot.reduce_channels(h[None], batched=True).shape == (1, 3, 3)
    with pytest.raises(ValueError, match="reduce"):
        plot.reduce_channels(h, "max")
    with pytest.raises(ValueError, match="shape"):
        plot.reduce_channels(np.zeros((2, 3, 3, 1)))
    values = np.arange(1.0, 101.0)
    assert plot.clip_bound(-values) == 100.0
    assert plot.clip_bound(values, 50) == pytest.approx(50.5)
    sparse = np.zeros(1000)
    sparse[3] = -4.0
    assert plot.clip_bound(sparse, 99) == 4.0  # a zero percentile falls back to the max
    assert plot.clip_bound(np.zeros(4)) == 1.0
    with pytest.raises(ValueError, match="percentile"):
        plot.clip_bound(values, 0)


def test_overlay_rgb_blends_by_relevance():
    image = np.full((2, 3), 0.5)
    h = np.array([[0.0, 1.0, -1.0], [0.25, 0.0, 0.0]])
    rgb = plot.overlay_rgb(image, h, alpha=1.0)
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0.5, 0.5])  # no relevance: the image
    np.testing.assert_allclose(rgb[0, 1], [1.0, 0.0, 0.0])  # strongest for: red
    np.testing.assert_allclose(rgb[0, 2], [0.0, 0.0, 1.0])  # strongest against: blue
    a = np.sqrt(0.25)  # opacity alpha * sqrt(|v|)
    np.testing.assert_allclose(rgb[1, 0], [(1 - a) * 0.5 + a, (1 - a) * 0.5, (1 - a) * 0.5])
    u8 = plot.overlay_rgb(np.full((2, 3, 3), 255, np.uint8), np.zeros((2, 3)))
    np.testing.assert_allclose(u8, 1.0)
    with pytest.raises(ValueError, match="differs"):
        plot.overlay_rgb(image, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        plot.overlay_rgb(image, h, alpha=1.5)


def test_heatmap_axes_norm_and_file(tmp_path):
    h = _h(shape=(6, 6, 3))
    mask = np.zeros((6, 6))
    mask[1:4, 2:5] = 1
    ax = plot.heatmap(h, mask=mask, colorbar=True, percentile=90, path=tmp_path / "h.png")
    (im,) = ax.images
    reduced = h.sum(axis=-1)
    b = np.percentile(np.abs(reduced), 90)
    assert isinstance(im.norm, TwoSlopeNorm) and im.norm.vcenter == 0.0
    assert (im.norm.vmin, im.norm.vmax) == pytest.approx((-b, b))
    assert im.get_cmap().name == "bwr"
    np.testing.assert_allclose(im.get_array(), reduced)
    assert len(ax.collections) >= 1  # the mask outline
    assert Image.open(tmp_path / "h.png").format == "PNG"


def test_grid_layout_scales_and_errors(tmp_path):
    images = np.random.default_rng(0).random((3, 5, 5, 1))
    a, b = _h(1, (3, 5, 5)), 10 * _h(2, (3, 5, 5))
    masks = np.zeros((3, 5, 5))
    masks[:, 1:4, 1:4] = 1
    fig = plot.grid(images, {"A": a, "B": b}, masks=masks, titles=["x", "y", "z"], scale="all",
                    path=tmp_path / "g.png")  # fmt: skip
    axes = fig.axes
    assert len(axes) == 9  # input row + two heatmap rows, three samples
    assert [ax.get_title() for ax in axes[:3]] == ["x", "y", "z"]
    assert axes[3].get_ylabel() == "A" and axes[6].get_ylabel() == "B"
    bound = max(np.abs(a).max(), np.abs(b).max())
    for ax in axes[3:]:
        assert ax.images[0].norm.vmax == pytest.approx(bound)
        assert len(ax.collections) >= 1  # outline on every heatmap
    row = plot.grid(images, {"A": a, "B": b}, scale="row")
    assert row.axes[3].images[0].norm.vmax == pytest.approx(np.abs(a).max())
    assert row.axes[6].images[0].norm.vmax == pytest.approx(np.abs(b).max())
    w, h = Image.open(tmp_path / "g.png").size
    assert w > 200 and h > 200
    over = plot.grid(images, a, overlay=True, show_images=False)
    assert len(over.axes) == 3 and over.axes[0].images[0].get_array().shape == (5, 5, 3)
    with pytest.raises(ValueError, match="do not match"):
        plot.grid(images, a[:2])
    with pytest.raises(ValueError, match="titles"):
        plot.grid(images, a, titles=["only one"])
    with pytest.raises(ValueError, match="scale"):
        plot.grid(images, a, scale="global")


def test_plot_is_reachable_from_the_package():
    assert ki.plot.heatmap is plot.heatmap and "grid" in ki.plot.__all__
