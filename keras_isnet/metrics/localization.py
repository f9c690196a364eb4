"""Ground-truth localization metrics for explanation heatmaps.

All functions are batch-aware and return one value per sample, shape ``(batch,)``.

Shapes: ``heatmaps`` are ``(batch, H, W)`` or ``(batch, H, W, C)``; a channel axis is
summed first (signed), giving the pixel relevance ``R`` of shape ``(batch, H, W)``.
``masks`` are ``(batch, H, W)`` or ``(batch, H, W, 1)``, binary (bool or 0/1 values) with
1 = foreground (the object the explanation should point at).

References: relevance mass / rank accuracy follow Arras et al., "CLEVR-XAI" (2022); the
pointing game follows Zhang et al., "Top-down neural attention by excitation backprop"
(2016/2018).
"""

from __future__ import annotations

import numpy as np
from keras import ops

__all__ = [
    "relevance_mass_accuracy",
    "background_relevance_share",
    "relevance_rank_accuracy",
    "pointing_game",
]


def _prepare(heatmaps, masks) -> tuple[np.ndarray, np.ndarray]:
    """Return ``R`` (batch, H, W) float64 and the boolean mask (batch, H, W)."""
    h = np.asarray(ops.convert_to_numpy(heatmaps), dtype=np.float64)
    m = np.asarray(ops.convert_to_numpy(masks))
    h_shape, m_shape = h.shape, m.shape
    if h.ndim == 4:
        h = h.sum(axis=-1)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if h.ndim != 3 or m.ndim != 3 or h.shape != m.shape:
        raise ValueError(
            "`heatmaps` (batch, H, W[, C]) and `masks` (batch, H, W[, 1]) must agree in "
            f"(batch, H, W); got heatmaps shape {h_shape} and masks shape {m_shape}."
        )
    if m.dtype != bool:
        m_float = m.astype(np.float64)
        if not np.all((m_float == 0) | (m_float == 1)):
            bad = np.unique(m_float[~((m_float == 0) | (m_float == 1))])[:5]
            raise ValueError(f"`masks` must be binary (0/1 or bool); found values such as {bad}.")
        m = m_float == 1
    if not np.all(np.isfinite(h)):
        raise ValueError("`heatmaps` contains NaN or infinite values.")
    return h, m


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def relevance_mass_accuracy(heatmaps, masks, *, positive_only: bool = False) -> np.ndarray:
    """Share of the relevance that falls inside the mask.

    ``sum(R' * mask) / sum(R')`` per sample, with ``R' = |R|`` by default or
    ``R' = max(R, 0)`` when ``positive_only=True`` (the CLEVR-XAI definition).

    Args:
        heatmaps: ``(batch, H, W)`` or ``(batch, H, W, C)`` (channels summed first).
        masks: binary ``(batch, H, W)`` or ``(batch, H, W, 1)``, 1 = foreground.
        positive_only: use positive relevance only (default ``False``: absolute value).

    Returns:
        ``(batch,)`` float64 in ``[0, 1]``; ``NaN`` where ``sum(R') == 0`` (e.g. an all-zero
        heatmap, or no positive relevance with ``positive_only=True``).

    Raises:
        ValueError: shape mismatch (both shapes are named), non-binary mask, or non-finite
            heatmap values.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((1, 4, 4)); mask[0, :2, :2] = 1
        >>> heat = np.ones((1, 4, 4))
        >>> relevance_mass_accuracy(heat, mask)
        array([0.25])
    """
    r, m = _prepare(heatmaps, masks)
    rel = np.maximum(r, 0.0) if positive_only else np.abs(r)
    return _ratio((rel * m).sum(axis=(1, 2)), rel.sum(axis=(1, 2)))


def background_relevance_share(heatmaps, masks) -> np.ndarray:
    """Share of the absolute relevance that falls outside the mask (on the background).

    ``sum(|R| * (1 - mask)) / sum(|R|)`` per sample. For any heatmap that is not all zero
    this equals ``1 - relevance_mass_accuracy(heatmaps, masks)``. This is the quantity
    ISNet training drives towards 0.

    Args:
        heatmaps: ``(batch, H, W)`` or ``(batch, H, W, C)`` (channels summed first).
        masks: binary ``(batch, H, W)`` or ``(batch, H, W, 1)``, 1 = foreground.

    Returns:
        ``(batch,)`` float64 in ``[0, 1]``. An all-zero heatmap carries no relevance, so its
        share is undefined and returned as ``NaN`` (use ``numpy.nanmean`` to aggregate);
        it is deliberately not 0, which would score "no explanation" as perfect.

    Raises:
        ValueError: shape mismatch (both shapes are named), non-binary mask, or non-finite
            heatmap values.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((2, 4, 4)); mask[:, :2, :2] = 1
        >>> heat = np.stack([np.ones((4, 4)), np.zeros((4, 4))])
        >>> background_relevance_share(heat, mask)
        array([0.75,  nan])
    """
    r, m = _prepare(heatmaps, masks)
    rel = np.abs(r)
    return _ratio((rel * ~m).sum(axis=(1, 2)), rel.sum(axis=(1, 2)))


def relevance_rank_accuracy(heatmaps, masks, *, absolute: bool = False) -> np.ndarray:
    """Fraction of the ``K`` highest-relevance pixels that lie in the mask, ``K = mask size``.

    Pixels are sorted by decreasing ``R`` (or ``|R|`` when ``absolute=True``) with a stable
    sort, so ties are broken in row-major order (top-left first); the top ``K`` pixels,
    with ``K`` the number of foreground pixels of that sample, are compared to the mask.

    Args:
        heatmaps: ``(batch, H, W)`` or ``(batch, H, W, C)`` (channels summed first).
        masks: binary ``(batch, H, W)`` or ``(batch, H, W, 1)``, 1 = foreground.
        absolute: rank by ``|R|`` instead of the signed relevance (default ``False``).

    Returns:
        ``(batch,)`` float64 in ``[0, 1]`` (multiples of ``1 / K``); ``NaN`` for an empty
        mask (``K = 0``).

    Raises:
        ValueError: shape mismatch (both shapes are named), non-binary mask, or non-finite
            heatmap values.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((1, 2, 2)); mask[0, 0, :] = 1      # K = 2
        >>> heat = np.array([[[3.0, 0.0], [2.0, 1.0]]])       # top-2: (0,0) in, (1,0) out
        >>> relevance_rank_accuracy(heat, mask)
        array([0.5])
    """
    r, m = _prepare(heatmaps, masks)
    n = r.shape[0]
    flat_r = (np.abs(r) if absolute else r).reshape(n, -1)
    flat_m = m.reshape(n, -1)
    out = np.full(n, np.nan, dtype=np.float64)
    for i in range(n):
        k = int(flat_m[i].sum())
        if k == 0:
            continue
        top = np.argsort(-flat_r[i], kind="stable")[:k]
        out[i] = flat_m[i][top].sum() / k
    return out


def pointing_game(heatmaps, masks, *, tolerance: float = 0) -> np.ndarray:
    """Whether the maximum of the heatmap hits the mask.

    The pointed pixel is ``argmax R`` (signed relevance; the first maximum in row-major
    order on ties, so a constant heatmap points at the top-left pixel). It is a hit when its
    Euclidean distance in pixels to the nearest foreground pixel is ``<= tolerance``
    (``tolerance=0``: the pixel itself must be foreground; Zhang et al. use 15 px).

    Args:
        heatmaps: ``(batch, H, W)`` or ``(batch, H, W, C)`` (channels summed first).
        masks: binary ``(batch, H, W)`` or ``(batch, H, W, 1)``, 1 = foreground.
        tolerance: hit radius in pixels, ``>= 0`` (default 0).

    Returns:
        ``(batch,)`` bool array; ``False`` for an empty mask. Its mean is the pointing-game
        accuracy.

    Raises:
        ValueError: shape mismatch (both shapes are named), non-binary mask, non-finite
            heatmap values, or a negative tolerance.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((1, 5, 5)); mask[0, 0, 0] = 1
        >>> heat = np.zeros((1, 5, 5)); heat[0, 1, 1] = 1.0   # sqrt(2) px from the mask
        >>> pointing_game(heat, mask), pointing_game(heat, mask, tolerance=1.5)
        (array([False]), array([ True]))
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"`tolerance` must be a finite number >= 0; got {tolerance!r}.")
    r, m = _prepare(heatmaps, masks)
    n, _, width = r.shape
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        py, px = divmod(int(np.argmax(r[i])), width)
        ys, xs = np.nonzero(m[i])
        if ys.size:
            out[i] = bool(np.min(np.hypot(ys - py, xs - px)) <= tolerance)
    return out
