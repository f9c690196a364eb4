"""Heatmap figures: ``ki.plot.heatmap``, ``ki.plot.overlay``, ``ki.plot.grid``.

Relevance is drawn with a zero-centred diverging colour map, as the ISNet authors draw theirs:
red = evidence for the explained output, blue = evidence against, white = none. The
normalisation is matplotlib's ``TwoSlopeNorm`` with its centre at 0 and, by default,
symmetric limits ``[-b, b]`` with ``b`` the largest ``|R|`` (or its ``percentile``-th
percentile, which keeps one hot pixel from washing out the rest), so equal colour strength
means equal relevance on both sides.

Heatmaps are ``(H, W)`` or channels-last ``(H, W, C)``; a channel axis is reduced first
(``reduce="sum"``: the signed pixel relevance, which keeps conservation; ``"mean_abs"``: the
mean of ``|R|`` over the channels, a magnitude map). Batched functions take ``(n, H, W)`` or
``(n, H, W, C)``.

The functions returning RGB arrays (:func:`colorize`, :func:`overlay_rgb`) need only NumPy;
the figure functions import matplotlib when called (``pip install "keras-isnet[plot]"``) and
never touch pyplot's global state: they draw on a ``matplotlib.figure.Figure`` of their own
or on the ``ax`` you pass.

Example:
    >>> import keras_isnet as ki
    >>> h = ki.create_analyzer("lrp.epsilon", model).analyze(x)      # (n, H, W, C)
    >>> ki.plot.heatmap(h[0], path="heatmap.png")
    >>> ki.plot.grid(x, {"LRP-epsilon": h}, masks=masks, path="grid.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REDUCTIONS",
    "clip_bound",
    "colorize",
    "grid",
    "heatmap",
    "image",
    "overlay",
    "overlay_rgb",
    "reduce_channels",
    "save",
]

#: channel reductions accepted by every function's ``reduce`` argument.
REDUCTIONS = ("sum", "mean_abs")

#: the colour map: matplotlib's ``"bwr"`` (blue - white - red), which :func:`colorize`
#: reproduces exactly in NumPy.
CMAP = "bwr"

_RED = np.array([1.0, 0.0, 0.0])
_BLUE = np.array([0.0, 0.0, 1.0])

#: colour of mask outlines (foreground boundary).
MASK_COLOR = "#00c000"


def _numpy(x) -> np.ndarray:
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    elif not isinstance(x, np.ndarray):
        try:
            from keras import ops

            x = ops.convert_to_numpy(x)
        except Exception:  # noqa: BLE001 - anything array-like NumPy understands
            pass
    return np.asarray(x)


def reduce_channels(h, reduce: str = "sum", *, batched: bool = False) -> np.ndarray:
    """Reduce a heatmap's channel axis to one value per pixel.

    Args:
        h: a heatmap ``(H, W)`` or ``(H, W, C)``; with ``batched=True``, ``(n, H, W)`` or
            ``(n, H, W, C)``. NumPy array or backend tensor.
        reduce: ``"sum"`` (default; the signed sum over channels, so the map still sums to the
            explained value) or ``"mean_abs"`` (the mean of ``|R|`` over channels, a
            non-negative magnitude map). Maps without a channel axis are returned as they
            are for ``"sum"`` and as ``|R|`` for ``"mean_abs"``.
        batched: whether the first axis is a batch axis.

    Returns:
        A float64 array ``(H, W)`` (or ``(n, H, W)`` when batched).

    Raises:
        ValueError: for an unknown ``reduce`` or a heatmap of the wrong rank.

    Example:
        >>> reduce_channels(np.ones((4, 4, 3))).max()
        3.0
        >>> reduce_channels(-np.ones((4, 4, 3)), "mean_abs").max()
        1.0
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}; got {reduce!r}.")
    arr = np.asarray(_numpy(h), dtype=np.float64)
    spatial = 3 if batched else 2
    if arr.ndim == spatial + 1:
        return arr.sum(axis=-1) if reduce == "sum" else np.abs(arr).mean(axis=-1)
    if arr.ndim == spatial:
        return arr if reduce == "sum" else np.abs(arr)
    want = "(n, H, W) or (n, H, W, C)" if batched else "(H, W) or (H, W, C)"
    raise ValueError(f"a heatmap must have shape {want}; got shape {arr.shape}.")


def clip_bound(h, percentile: float | None = None) -> float:
    """The colour-scale limit ``b`` for a heatmap: ``max |R|``, or a percentile of ``|R|``.

    Args:
        h: a reduced heatmap (any shape).
        percentile: ``None`` (default) for the largest ``|R|``; a number in ``(0, 100]``
            for that percentile of ``|R|`` (e.g. ``99.5``: the top 0.5 % saturate).

    Returns:
        A positive float; ``1.0`` for an all-zero (or all non-finite) map, so that it is drawn
        white instead of raising a division error.

    Example:
        >>> clip_bound(np.array([[-2.0, 1.0]]))
        2.0
    """
    a = np.abs(np.asarray(h, dtype=np.float64))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    if percentile is None:
        b = float(a.max())
    else:
        if not 0 < float(percentile) <= 100:
            raise ValueError(f"`percentile` must lie in (0, 100]; got {percentile!r}.")
        b = float(np.percentile(a, float(percentile)))
        if b == 0.0:  # sparse maps: the percentile is zero but some pixels are not
            b = float(a.max())
    return b if b > 0 else 1.0


def _limits(h: np.ndarray, percentile, bound, symmetric) -> tuple[float, float]:
    """``(vmin, vmax)`` around 0 for the TwoSlopeNorm (vmin < 0 < vmax)."""
    if bound is not None:
        if not float(bound) > 0:
            raise ValueError(f"`bound` must be positive; got {bound!r}.")
        return -float(bound), float(bound)
    if symmetric:
        b = clip_bound(h, percentile)
        return -b, b
    pos = clip_bound(np.where(h > 0, h, 0.0), percentile) if np.any(h > 0) else None
    neg = clip_bound(np.where(h < 0, h, 0.0), percentile) if np.any(h < 0) else None
    pos = pos if pos is not None else (neg if neg is not None else 1.0)
    neg = neg if neg is not None else pos
    return -neg, pos


def _normalise(h: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """TwoSlopeNorm(vcenter=0) mapped to ``[-1, 1]``: 0 -> 0, vmin -> -1, vmax -> 1, clipped."""
    h = np.nan_to_num(h, nan=0.0, posinf=vmax, neginf=vmin)
    return np.clip(np.where(h >= 0, h / vmax, -h / vmin), -1.0, 1.0)


def colorize(
    h,
    *,
    reduce: str = "sum",
    percentile: float | None = None,
    bound: float | None = None,
    symmetric: bool = True,
) -> np.ndarray:
    """An RGB image of a heatmap in the blue-white-red map (NumPy only, no matplotlib).

    Equal to matplotlib's ``bwr`` colour map under ``TwoSlopeNorm(vcenter=0)`` with the
    same limits, as :func:`heatmap` draws it: red = positive, white = 0, blue = negative.

    Args:
        h: a heatmap ``(H, W)`` or ``(H, W, C)``.
        reduce: channel reduction, ``"sum"`` (default) or ``"mean_abs"``
            (see :func:`reduce_channels`).
        percentile: clip the colour scale at this percentile of ``|R|`` (default ``None``:
            the maximum).
        bound: an explicit limit ``b`` (the scale is ``[-b, b]``); overrides ``percentile``.
            Use one bound for several maps to compare them on one scale.
        symmetric: ``True`` (default): limits ``[-b, b]``; ``False``: the negative and the
            positive side are scaled separately (each side's own maximum or percentile).

    Returns:
        A float32 array ``(H, W, 3)`` in ``[0, 1]``.

    Example:
        >>> colorize(np.array([[1.0, 0.0, -1.0]]))[0]
        array([[1., 0., 0.],
               [1., 1., 1.],
               [0., 0., 1.]], dtype=float32)
    """
    r = reduce_channels(h, reduce)
    v = _normalise(r, *_limits(r, percentile, bound, symmetric))
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1)
    return rgb.astype(np.float32)


def _image_rgb(image) -> np.ndarray:
    """An image ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` as float RGB in [0, 1].

    uint8 images are divided by 255; float images in [0, 1] are kept; anything else is
    min-max scaled for display.
    """
    img = _numpy(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(
            f"an image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {img.shape}."
        )
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    else:
        img = np.nan_to_num(img.astype(np.float64))
        lo, hi = float(img.min(initial=0.0)), float(img.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img


def overlay_rgb(
    image,
    h,
    *,
    alpha: float = 0.8,
    reduce: str = "sum",
    percentile: float | None = None,
    bound: float | None = None,
    symmetric: bool = True,
) -> np.ndarray:
    """An RGB image of a heatmap over a grey copy of ``image`` (NumPy only).

    Positive relevance is drawn in red, negative in blue, blended over the image with opacity
    ``alpha * sqrt(|v|)``, ``v`` the relevance normalised to ``[-1, 1]`` as in
    :func:`colorize` (the square root keeps weak relevance visible): pixels without
    relevance show the image.

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``; uint8, or float
            (in [0, 1], otherwise min-max scaled for display).
        h: the heatmap ``(H, W)`` or ``(H, W, C)`` with the image's ``H, W``.
        alpha: the opacity of the strongest relevance, in ``[0, 1]`` (default 0.8).
        reduce, percentile, bound, symmetric: as in :func:`colorize`.

    Returns:
        A float32 array ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: if the image and heatmap sizes differ or ``alpha`` is outside [0, 1].

    Example:
        >>> rgb = overlay_rgb(np.zeros((8, 8)), np.ones((8, 8)), alpha=1.0)
        >>> rgb[0, 0].tolist()
        [1.0, 0.0, 0.0]
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must lie in [0, 1]; got {alpha!r}.")
    img = _image_rgb(image)
    r = reduce_channels(h, reduce)
    if r.shape != img.shape[:2]:
        raise ValueError(
            f"the heatmap's (H, W) {r.shape} differs from the image's {img.shape[:2]}."
        )
    grey = img.mean(axis=-1, keepdims=True) * np.ones(3)
    v = _normalise(r, *_limits(r, percentile, bound, symmetric))
    color = np.where((v >= 0)[..., None], _RED, _BLUE)
    a = float(alpha) * np.sqrt(np.abs(v))[..., None]
    return ((1.0 - a) * grey + a * color).astype(np.float32)


# ------------------------------------------------------------------ matplotlib figures
def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import TwoSlopeNorm
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is in the dev extra
        raise ImportError(
            'keras_isnet.plot needs matplotlib: pip install "keras-isnet[plot]"'
        ) from err
    return Figure, FigureCanvasAgg, TwoSlopeNorm


def _new_axes(figsize=(3.2, 3.2), dpi=110):
    Figure, FigureCanvasAgg, _ = _matplotlib()
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig.add_subplot(1, 1, 1)


def _mask2d(mask, shape) -> np.ndarray:
    m = np.asarray(_numpy(mask))
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ValueError(
            f"a mask must have shape {tuple(shape)} (or with a trailing 1); got {m.shape}."
        )
    return m.astype(np.float64)


def _outline(ax, mask, shape, color=MASK_COLOR) -> None:
    m = _mask2d(mask, shape)
    if 0.0 < m.min() or m.max() < 1.0 or m.min() == m.max():
        return  # all foreground or all background: no boundary to draw
    # contour a nearest-neighbour enlarged copy, so that the outline follows the pixel edges
    # instead of cutting their corners
    f = int(min(8, max(1, np.ceil(256 / max(m.shape)))))
    big = np.repeat(np.repeat(m, f, axis=0), f, axis=1)
    ys = (np.arange(big.shape[0]) + 0.5) / f - 0.5
    xs = (np.arange(big.shape[1]) + 0.5) / f - 0.5
    ax.contour(xs, ys, big, levels=[0.5], colors=color, linewidths=1.0)


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _finish(ax, path, dpi):
    if path is not None:
        save(ax.figure, path, dpi=dpi)
    return ax


def image(
    x,
    *,
    ax=None,
    mask=None,
    title: str | None = None,
    path: str | Path | None = None,
    dpi: int = 110,
):
    """Draw an input image (grey or RGB), optionally with its mask outline.

    Args:
        x: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``; uint8, or float (in
            [0, 1], otherwise min-max scaled for display).
        ax: a matplotlib ``Axes`` to draw on; default: a new figure.
        mask: optional foreground mask ``(H, W)``, drawn as a green outline.
        title: optional axes title.
        path: if given, the figure is saved there as PNG.
        dpi: resolution of the saved PNG (default 110).

    Returns:
        The matplotlib ``Axes`` drawn on.

    Example:
        >>> ki.plot.image(x[0], mask=masks[0], title="input", path="input.png")
    """
    rgb = _image_rgb(x)
    ax = _new_axes() if ax is None else ax
    ax.imshow(rgb, interpolation="nearest")
    if mask is not None:
        _outline(ax, mask, rgb.shape[:2])
    if title:
        ax.set_title(title, fontsize=9)
    _clean(ax)
    return _finish(ax, path, dpi)


def heatmap(
    h,
    *,
    ax=None,
    reduce: str = "sum",
    percentile: float | None = None,
    bound: float | None = None,
    symmetric: bool = True,
    mask=None,
    title: str | None = None,
    colorbar: bool = False,
    path: str | Path | None = None,
    dpi: int = 110,
):
    """Draw one heatmap: ``bwr`` under ``TwoSlopeNorm(vcenter=0)``, red = for, blue = against.

    Args:
        h: a heatmap ``(H, W)`` or ``(H, W, C)`` (NumPy array or backend tensor).
        ax: a matplotlib ``Axes`` to draw on; default: a new 3.2 x 3.2 inch figure.
        reduce: channel reduction, ``"sum"`` (default) or ``"mean_abs"``.
        percentile: clip the colour scale at this percentile of ``|R|`` (default: the max).
        bound: an explicit colour limit ``b`` (scale ``[-b, b]``); overrides ``percentile``.
        symmetric: ``True`` (default) for limits ``[-b, b]``; ``False`` scales each sign
            separately.
        mask: optional foreground mask ``(H, W)`` (or ``(H, W, 1)``), drawn as a green
            outline.
        title: optional axes title.
        colorbar: add a colour bar (default False).
        path: if given, the figure is saved there as PNG.
        dpi: resolution of the saved PNG (default 110).

    Returns:
        The matplotlib ``Axes`` drawn on (``ax.figure`` is its figure).

    Example:
        >>> ax = ki.plot.heatmap(h[0], mask=masks[0], colorbar=True, path="h.png")
    """
    _, _, TwoSlopeNorm = _matplotlib()
    r = reduce_channels(h, reduce)
    vmin, vmax = _limits(r, percentile, bound, symmetric)
    ax = _new_axes() if ax is None else ax
    im = ax.imshow(
        r, cmap=CMAP, norm=TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=vmax), interpolation="nearest"
    )
    if mask is not None:
        _outline(ax, mask, r.shape)
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    _clean(ax)
    return _finish(ax, path, dpi)


def overlay(
    image,
    h,
    *,
    alpha: float = 0.8,
    ax=None,
    reduce: str = "sum",
    percentile: float | None = None,
    bound: float | None = None,
    symmetric: bool = True,
    mask=None,
    title: str | None = None,
    colorbar: bool = False,
    path: str | Path | None = None,
    dpi: int = 110,
):
    """Draw a heatmap over a grey copy of the image (see :func:`overlay_rgb`).

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
        h: the heatmap ``(H, W)`` or ``(H, W, C)``.
        alpha: the opacity of the strongest relevance (default 0.8); weaker relevance is
            proportionally more transparent.
        ax, reduce, percentile, bound, symmetric, mask, title, colorbar, path, dpi: as in
            :func:`heatmap`.

    Returns:
        The matplotlib ``Axes`` drawn on.

    Example:
        >>> ki.plot.overlay(x[0], h[0], alpha=0.7, path="overlay.png")
    """
    return _draw_overlay(
        image, h, alpha, ax, reduce, percentile, bound, symmetric, mask, title, colorbar, path, dpi
    )


def _draw_overlay(
    image, h, alpha, ax, reduce, percentile, bound, symmetric, mask, title, colorbar, path, dpi
):
    _, _, TwoSlopeNorm = _matplotlib()
    rgb = overlay_rgb(
        image,
        h,
        alpha=alpha,
        reduce=reduce,
        percentile=percentile,
        bound=bound,
        symmetric=symmetric,
    )
    ax = _new_axes() if ax is None else ax
    ax.imshow(rgb, interpolation="nearest")
    if mask is not None:
        _outline(ax, mask, rgb.shape[:2])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        from matplotlib.cm import ScalarMappable

        vmin, vmax = _limits(reduce_channels(h, reduce), percentile, bound, symmetric)
        mappable = ScalarMappable(norm=TwoSlopeNorm(vcenter=0.0, vmin=vmin, vmax=vmax), cmap=CMAP)
        ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    _clean(ax)
    return _finish(ax, path, dpi)


def grid(
    images,
    heatmaps,
    *,
    titles: Sequence[str] | None = None,
    masks=None,
    overlay: bool = False,
    alpha: float = 0.8,
    reduce: str = "sum",
    percentile: float | None = None,
    scale: str = "panel",
    show_images: bool = True,
    panel_size: float = 1.6,
    suptitle: str | None = None,
    path: str | Path | None = None,
    dpi: int = 110,
):
    """A figure with one column per sample: the input on top, then one row per heatmap set.

    Args:
        images: ``(n, H, W)`` or ``(n, H, W, C)`` inputs (C = 1, 3 or 4).
        heatmaps: ``(n, H, W)`` or ``(n, H, W, C)``, or a mapping ``{row label: heatmaps}``
            for several rows (several models or analyzers on the same inputs).
        titles: optional column titles, one per sample (e.g. ``"label 3"``).
        masks: optional foreground masks ``(n, H, W)`` or ``(n, H, W, 1)``; their outline is
            drawn in green on every panel.
        overlay: draw heatmaps over the (grey) input instead of on white (default False).
        alpha: overlay opacity of the strongest relevance (default 0.8).
        reduce: channel reduction, ``"sum"`` (default) or ``"mean_abs"``.
        percentile: clip each colour scale at this percentile of ``|R|`` (default: the max).
        scale: ``"panel"`` (default): each heatmap on its own symmetric scale; ``"row"``: one
            scale per row (compare samples); ``"all"``: one scale for the figure (compare
            rows too).
        show_images: include the input row (default True).
        panel_size: inches per panel (default 1.6).
        suptitle: optional figure title.
        path: if given, the figure is saved there as PNG.
        dpi: resolution of the saved PNG (default 110).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: for mismatched counts or sizes, or an unknown ``scale``.

    Example:
        >>> fig = ki.plot.grid(x[:4], {"plain": h_plain, "ISNet": h_isnet}, masks=m[:4],
        ...                    titles=[f"label {c}" for c in y[:4]], path="grid.png")
    """
    if scale not in ("panel", "row", "all"):
        raise ValueError(f"`scale` must be 'panel', 'row' or 'all'; got {scale!r}.")
    Figure, FigureCanvasAgg, _ = _matplotlib()
    imgs = _numpy(images)
    rows: dict[str, np.ndarray] = {}
    items: Mapping[str, Any] = heatmaps if isinstance(heatmaps, Mapping) else {"": heatmaps}
    for label, maps in items.items():
        rows[str(label)] = reduce_channels(maps, reduce, batched=True)
    n = imgs.shape[0]
    for label, r in rows.items():
        if r.shape[0] != n or r.shape[1:] != imgs.shape[1:3]:
            raise ValueError(
                f"heatmaps{f' {label!r}' if label else ''} of shape {r.shape} do not match "
                f"the images {imgs.shape} in (n, H, W)."
            )
    if titles is not None and len(titles) != n:
        raise ValueError(f"`titles` needs one title per sample ({n}); got {len(titles)}.")
    mask_arr = None if masks is None else _numpy(masks)
    if mask_arr is not None and mask_arr.shape[0] != n:
        raise ValueError(f"`masks` needs one mask per sample ({n}); got {mask_arr.shape[0]}.")
    bounds: dict[str, float | None] = {label: None for label in rows}
    if scale == "row":
        bounds = {label: clip_bound(r, percentile) for label, r in rows.items()}
    elif scale == "all":
        b = clip_bound(np.concatenate([r.ravel() for r in rows.values()]), percentile)
        bounds = {label: b for label in rows}

    n_rows = len(rows) + int(show_images)
    fig = Figure(figsize=(panel_size * n + 0.4, panel_size * n_rows + 0.3), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n_rows, n, squeeze=False))
    for j in range(n):
        mask = None if mask_arr is None else mask_arr[j]
        if show_images:
            image(imgs[j], ax=axes[0, j], mask=mask)
        for i, (label, r) in enumerate(rows.items()):
            ax = axes[i + int(show_images), j]
            if overlay:
                _draw_overlay(
                    imgs[j],
                    r[j],
                    alpha,
                    ax,
                    "sum",
                    percentile,
                    bounds[label],
                    True,
                    mask,
                    None,
                    False,
                    None,
                    dpi,
                )
            else:
                heatmap(r[j], ax=ax, percentile=percentile, bound=bounds[label], mask=mask)
        if titles is not None:
            axes[0, j].set_title(str(titles[j]), fontsize=8)
    if show_images:
        axes[0, 0].set_ylabel("input", fontsize=8)
    for i, label in enumerate(rows):
        if label:
            axes[i + int(show_images), 0].set_ylabel(label, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    if path is not None:
        save(fig, path, dpi=dpi)
    return fig


def save(fig, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a figure (or the figure of an ``Axes``) as PNG, creating the folder.

    Args:
        fig: a matplotlib ``Figure`` or ``Axes``.
        path: the file to write (``.png``).
        dpi: resolution (default 110).

    Returns:
        The ``Path`` written.

    Example:
        >>> ki.plot.save(ki.plot.heatmap(h[0]), "out/heatmap.png")
    """
    if not hasattr(fig, "savefig"):
        fig = fig.figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
