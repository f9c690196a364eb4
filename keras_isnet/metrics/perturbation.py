"""Insertion and deletion curves (Petsiuk et al., RISE, 2018) for explanation heatmaps.

Pixels (or ``cell_size x cell_size`` cells) are ranked by the heatmap. *Deletion* starts
from the image and replaces the top-ranked pixels by a baseline, in ``steps`` explicit steps,
until every pixel is replaced; a good explanation makes the class probability drop fast
(low AUC is better). *Insertion* starts from the baseline (by default a Gaussian-blurred
copy of the image) and reveals the top-ranked original pixels; a good explanation makes the
probability rise fast (high AUC is better).

The AUC is the trapezoid rule over the whole curve, both ends included:
``auc == numpy.trapezoid(scores, fractions)`` (``numpy.trapz`` before NumPy 2.0).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_isnet.image import gaussian_blur

__all__ = ["CurveResult", "insertion_curve", "deletion_curve"]

_trapezoid = np.trapezoid if hasattr(np, "trapezoid") else np.trapz


@dataclass
class CurveResult:
    """Result of :func:`insertion_curve` / :func:`deletion_curve`.

    Attributes:
        kind: ``"insertion"`` or ``"deletion"``.
        fractions: ``(steps + 1,)`` float array, fraction of pixels/cells inserted or deleted
            at each step, from exactly ``0.0`` to exactly ``1.0`` (non-decreasing).
        scores: ``(batch, steps + 1)`` float array, probability of the target class at each
            step (softmax of the logits, or the model output itself, see ``apply_softmax``).
        auc: ``(batch,)`` float array, ``numpy.trapezoid(scores, fractions)``.
        labels: ``(batch,)`` int array, the target class of each sample.
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    labels: np.ndarray

    @property
    def mean_auc(self) -> float:
        """Mean of :attr:`auc` over the batch."""
        return float(np.mean(self.auc))

    def plot(self, path=None, ax=None):
        """Plot the per-sample curves and their mean (matplotlib is imported lazily).

        Args:
            path: optional file path; when given the figure is saved there (and closed if
                this method created it).
            ax: optional matplotlib ``Axes`` to draw on; a new figure is created otherwise.

        Returns:
            The matplotlib ``Axes``.

        Example:
            >>> res = deletion_curve(model, images, heatmaps)  # doctest: +SKIP
            >>> res.plot("deletion.png")  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        created = ax is None
        if created:
            fig, ax = plt.subplots(figsize=(5, 4))
        else:
            fig = ax.figure
        many = self.scores.shape[0] > 1
        for row in self.scores:
            ax.plot(self.fractions, row, color="tab:blue", alpha=0.3 if many else 1.0, lw=1)
        if many:
            ax.plot(self.fractions, self.scores.mean(axis=0), color="tab:red", lw=2, label="mean")
            ax.legend(loc="best")
        verb = "inserted" if self.kind == "insertion" else "deleted"
        ax.set_xlabel(f"fraction of pixels {verb}")
        ax.set_ylabel("class probability")
        ax.set_title(f"{self.kind.capitalize()} curve (mean AUC = {self.mean_auc:.3f})")
        ax.set_xlim(0.0, 1.0)
        if path is not None:
            fig.savefig(path, bbox_inches="tight")
            if created:
                plt.close(fig)
        return ax


def _spatial_heatmap(heatmaps, image_shape) -> np.ndarray:
    h = np.asarray(ops.convert_to_numpy(heatmaps), dtype=np.float64)
    if h.ndim == 4:
        h = h.sum(axis=-1)
    if h.ndim != 3 or h.shape != tuple(image_shape[:3]):
        raise ValueError(
            "`heatmaps` must have shape (batch, H, W) or (batch, H, W, C) matching the images "
            f"(batch, H, W) = {tuple(image_shape[:3])}; got heatmaps shape "
            f"{np.shape(heatmaps)} for images shape {tuple(image_shape)}."
        )
    if not np.all(np.isfinite(h)):
        raise ValueError("`heatmaps` contains NaN or infinite values.")
    return h


def _cell_ranking(heatmap: np.ndarray, cell_size: int) -> tuple[np.ndarray, int, int]:
    """Rank cells of one (H, W) heatmap by summed relevance, descending, stable (row-major)."""
    height, width = heatmap.shape
    ny, nx = -(-height // cell_size), -(-width // cell_size)
    padded = np.zeros((ny * cell_size, nx * cell_size), dtype=np.float64)
    padded[:height, :width] = heatmap
    cells = padded.reshape(ny, cell_size, nx, cell_size).sum(axis=(1, 3)).ravel()
    return np.argsort(-cells, kind="stable"), ny, nx


def _resolve_baseline(images: np.ndarray, baseline, blur_sigma) -> np.ndarray:
    if isinstance(baseline, str):
        if baseline == "blur":
            return np.asarray(ops.convert_to_numpy(gaussian_blur(images, blur_sigma)), np.float32)
        if baseline == "zeros":
            return np.zeros_like(images)
        raise ValueError(f"`baseline` must be 'blur', 'zeros' or an array; got {baseline!r}.")
    base = np.asarray(ops.convert_to_numpy(baseline), dtype=np.float32)
    try:
        return np.broadcast_to(base, images.shape).copy()
    except ValueError:
        raise ValueError(
            f"array `baseline` of shape {base.shape} cannot be broadcast to the images shape "
            f"{images.shape}."
        ) from None


def _model_outputs(model, x: np.ndarray) -> np.ndarray:
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError(f"the model must have a single output; got {len(out)} outputs.")
        out = out[0]
    out = np.asarray(ops.convert_to_numpy(out), dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"the model output must have shape (batch, classes); got {out.shape}.")
    return out


def _last_layer_is_softmax(model):
    """True/False when the model's last layer tells whether it outputs softmax; else None."""
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", None) == "softmax"


def _resolve_softmax(apply_softmax, model, outputs: np.ndarray) -> bool:
    n_classes = outputs.shape[1]
    if apply_softmax not in ("auto", True, False):
        raise ValueError(f"`apply_softmax` must be 'auto', True or False; got {apply_softmax!r}.")
    if apply_softmax == "auto":
        if n_classes == 1:
            return False
        from_layer = _last_layer_is_softmax(model)
        if from_layer is not None:
            return not from_layer
        is_distribution = np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-4)
        return not is_distribution
    if apply_softmax and n_classes == 1:
        raise ValueError(
            "softmax over a single output unit is always 1; pass apply_softmax=False to use the "
            "raw output (e.g. a sigmoid probability) as the score."
        )
    return bool(apply_softmax)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _curve(
    kind,
    model,
    images,
    heatmaps,
    *,
    labels,
    steps,
    baseline,
    blur_sigma,
    cell_size,
    batch_size,
    apply_softmax,
) -> CurveResult:
    x = np.asarray(ops.convert_to_numpy(images), dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"`images` must have shape (batch, H, W, C); got shape {x.shape}.")
    n, height, width, _ = x.shape
    h = _spatial_heatmap(heatmaps, x.shape)
    if int(cell_size) != cell_size or cell_size < 1:
        raise ValueError(f"`cell_size` must be a positive integer; got {cell_size!r}.")
    cell_size = int(cell_size)
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"`steps` must be a positive integer or None; got {steps!r}.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    batch_size = int(batch_size)
    base = _resolve_baseline(x, baseline, blur_sigma)

    clean = _model_outputs(model, x)
    if clean.shape[0] != n:
        raise ValueError(f"model returned {clean.shape[0]} rows for {n} images.")
    use_softmax = _resolve_softmax(apply_softmax, model, clean)
    n_classes = clean.shape[1]
    if labels is None:
        lab = np.argmax(clean, axis=1)
    else:
        lab = np.broadcast_to(np.asarray(ops.convert_to_numpy(labels)), (n,)).astype(np.int64)
        if np.any(lab < 0) or np.any(lab >= n_classes):
            raise ValueError(f"`labels` must lie in [0, {n_classes}); got {lab}.")

    # Number of cells perturbed at each step: round(k * n_cells / steps), exact at both ends.
    ny, nx = -(-height // cell_size), -(-width // cell_size)
    n_cells = ny * nx
    steps = n_cells if steps is None else int(steps)
    k = np.arange(steps + 1, dtype=np.int64)
    counts = (2 * k * n_cells + steps) // (2 * steps)
    fractions = counts / n_cells
    unique_counts, inverse = np.unique(counts, return_inverse=True)

    # Ranked cell order per sample, then rank of each pixel's cell.
    pixel_rank = np.empty((n, height, width), dtype=np.int64)
    for i in range(n):
        order, _, _ = _cell_ranking(h[i], cell_size)
        rank = np.empty(n_cells, dtype=np.int64)
        rank[order] = np.arange(n_cells)
        grid = rank.reshape(ny, nx).repeat(cell_size, axis=0).repeat(cell_size, axis=1)
        pixel_rank[i] = grid[:height, :width]

    def perturbed():
        for i in range(n):
            for c in unique_counts:
                mask = (pixel_rank[i] < c)[..., None]  # True = perturbed so far
                if kind == "deletion":
                    yield np.where(mask, base[i], x[i])
                else:
                    yield np.where(mask, x[i], base[i])

    probs = np.empty(n * len(unique_counts), dtype=np.float64)
    flat_labels = np.repeat(lab, len(unique_counts))
    chunk, start = [], 0
    total = n * len(unique_counts)
    for j, img in enumerate(perturbed()):
        chunk.append(img)
        if len(chunk) == batch_size or j == total - 1:
            out = _model_outputs(model, np.stack(chunk))
            if use_softmax:
                out = _softmax(out)
            stop = start + len(chunk)
            probs[start:stop] = out[np.arange(len(chunk)), flat_labels[start:stop]]
            chunk, start = [], stop
    scores = probs.reshape(n, len(unique_counts))[:, inverse.ravel()]
    auc = _trapezoid(scores, fractions, axis=-1)
    return CurveResult(kind=kind, fractions=fractions, scores=scores, auc=auc, labels=lab)


_COMMON_DOC = """
    Args:
        model: a Keras model (or callable) mapping ``(b, H, W, C)`` float32 images to
            ``(b, classes)`` logits or probabilities; called as ``model(x, training=False)``.
        images: ``(batch, H, W, C)`` images.
        heatmaps: ``(batch, H, W)`` or ``(batch, H, W, C)`` relevance (summed over channels);
            must be finite.
        labels: optional target classes, int ``(batch,)`` or a scalar. Default: the model's
            predicted class (argmax) on the original images.
        steps: number of perturbation steps (default 100). At step ``k`` the top
            ``round(k * n_cells / steps)`` cells are perturbed, so step 0 is the unperturbed
            start and step ``steps`` has every cell perturbed. ``None`` = one cell per step.
            Repeated counts (``steps > n_cells``) are evaluated once.
        baseline: ``"blur"`` (default; ``gaussian_blur(images, blur_sigma)`` with reflect
            padding), ``"zeros"``, or an array broadcastable to ``(batch, H, W, C)``.
        blur_sigma: Gaussian sigma in pixels for ``baseline="blur"`` (default 5.0, kernel
            ``2 * ceil(3 * sigma) + 1``).
        cell_size: pixels are grouped in ``cell_size x cell_size`` cells (default 1) whose
            heatmap values are summed; cells are perturbed together. Partial cells at the
            right/bottom borders count as one cell each; ``fractions`` count cells.
        batch_size: perturbed images per model call (default 64).
        apply_softmax: ``"auto"`` (default), ``True`` or ``False``. ``True`` applies a softmax
            to the model output; ``False`` uses the output as is. ``"auto"`` uses ``False``
            when the model's last layer is a ``Softmax`` layer or has
            ``activation="softmax"``, ``True`` when the last layer has another activation
            (e.g. linear logits); for other callables it uses ``False`` only if every output
            row on the original images is non-negative and sums to 1 (atol 1e-4). With a
            single output unit, ``"auto"`` means ``False`` and ``True`` raises.

    Ranking: cells are sorted by decreasing summed relevance with a stable sort, so ties
    are broken in row-major order (top-left first).

    Returns:
        :class:`CurveResult` with ``fractions`` ``(steps + 1,)``, ``scores``
        ``(batch, steps + 1)``, ``auc`` ``(batch,)`` (``numpy.trapezoid(scores, fractions)``
        over the whole curve, both ends included), ``labels`` ``(batch,)`` and ``plot()``.
"""


def insertion_curve(
    model,
    images,
    heatmaps,
    *,
    labels=None,
    steps: int | None = 100,
    baseline="blur",
    blur_sigma: float = 5.0,
    cell_size: int = 1,
    batch_size: int = 64,
    apply_softmax="auto",
) -> CurveResult:
    return _curve(
        "insertion",
        model,
        images,
        heatmaps,
        labels=labels,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        cell_size=cell_size,
        batch_size=batch_size,
        apply_softmax=apply_softmax,
    )


def deletion_curve(
    model,
    images,
    heatmaps,
    *,
    labels=None,
    steps: int | None = 100,
    baseline="blur",
    blur_sigma: float = 5.0,
    cell_size: int = 1,
    batch_size: int = 64,
    apply_softmax="auto",
) -> CurveResult:
    return _curve(
        "deletion",
        model,
        images,
        heatmaps,
        labels=labels,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        cell_size=cell_size,
        batch_size=batch_size,
        apply_softmax=apply_softmax,
    )


insertion_curve.__doc__ = (
    """Insertion curve: reveal the top-ranked original pixels on top of a baseline.

    Starts (fraction 0) from the baseline, by default a Gaussian-blurred copy of the image,
    and ends (fraction 1) at the original image. Higher AUC = better explanation.
"""
    + _COMMON_DOC
    + """
    Example:
        >>> import keras, numpy as np
        >>> from keras_isnet.metrics import insertion_curve
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> images = np.random.rand(2, 8, 8, 1).astype("float32")
        >>> heatmaps = np.random.rand(2, 8, 8)
        >>> res = insertion_curve(model, images, heatmaps, steps=16, blur_sigma=1.0)
        >>> res.scores.shape, res.auc.shape
        ((2, 17), (2,))
"""
)

deletion_curve.__doc__ = (
    """Deletion curve: replace the top-ranked pixels of the image by a baseline.

    Starts (fraction 0) from the original image and ends (fraction 1) at the baseline
    (default: a Gaussian-blurred copy of the image). Lower AUC = better explanation.
"""
    + _COMMON_DOC
    + """
    Example:
        >>> import keras, numpy as np
        >>> from keras_isnet.metrics import deletion_curve
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> images = np.random.rand(2, 8, 8, 1).astype("float32")
        >>> heatmaps = np.random.rand(2, 8, 8)
        >>> res = deletion_curve(model, images, heatmaps, steps=16, baseline="zeros")
        >>> float(res.fractions[0]), float(res.fractions[-1])
        (0.0, 1.0)
"""
)
