"""Sanity checks for explanations: the model parameter randomisation test and faithfulness.

* :func:`model_randomization_test` (Adebayo et al., "Sanity checks for saliency maps",
  NeurIPS 2018): the weights of a copy of the model are re-initialised layer by layer, from
  the output down ("cascading") or one layer at a time ("independent"), and each heatmap is
  compared with the trained model's. An explanation that depends on what the model learned
  must change: a similarity that stays near 1 flags a method that mostly shows the input
  (edge detection). The model itself is never modified.
* :func:`faithfulness_correlation` (Bhatt et al., "Evaluating and aggregating feature-based
  model explanations", IJCAI 2020): random subsets of pixels are replaced by a baseline; the
  Pearson correlation, over the subsets, between the heatmap's sum on the subset and the drop
  of the explained output. A linear model's exact attribution ``(x - baseline) * w`` scores 1.

Both return result objects with ``plot`` methods (matplotlib, imported when called).

Example:
    >>> from keras_isnet.metrics import model_randomization_test, faithfulness_correlation
    >>> mprt = model_randomization_test(model, x[:8], "lrp.epsilon")
    >>> mprt.mean("spearman_abs")        # one value per step: 1.0 for the trained model
    >>> mprt.plot("randomization.png"); mprt.plot_heatmaps("randomization_maps.png", x[:4])
    >>> fc = faithfulness_correlation(model, x[:8], heatmaps, n_subsets=128)
    >>> fc.correlation.mean(); fc.plot("faithfulness.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

__all__ = [
    "SIMILARITIES",
    "FaithfulnessResult",
    "RandomizationResult",
    "faithfulness_correlation",
    "model_randomization_test",
    "similarity",
]

#: similarity measures of :func:`model_randomization_test` (Adebayo et al.'s, without HOG).
SIMILARITIES = ("spearman_abs", "spearman", "ssim")


# ------------------------------------------------------------------ similarity measures
def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis, ties sharing their mean rank."""
    out = np.empty(a.shape, dtype=np.float64)
    for idx in np.ndindex(a.shape[:-1]):
        row = a[idx]
        sorter = np.argsort(row, kind="mergesort")
        inv = np.empty_like(sorter)
        inv[sorter] = np.arange(sorter.size)
        s = row[sorter]
        obs = np.r_[True, s[1:] != s[:-1]]
        dense = obs.cumsum()[inv]
        count = np.r_[np.nonzero(obs)[0], len(obs)]
        out[idx] = 0.5 * (count[dense] + count[dense - 1] + 1)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of ``(n, d)`` arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    out = np.full(len(a), np.nan)
    np.divide((a * b).sum(axis=1), den, out=out, where=den > 0)
    return np.clip(out, -1.0, 1.0)


def _gauss_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian filter of ``(n, H, W)`` maps, reflect padding (for SSIM)."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    for axis in (1, 2):
        n = x.shape[axis]
        idx = np.arange(-radius, n + radius)
        if n > 1:
            period = 2 * (n - 1)
            idx = np.mod(idx, period)
            idx = np.where(idx >= n, period - idx, idx)
        else:
            idx = np.zeros_like(idx)
        padded = np.take(x, idx, axis=axis)
        x = sum(
            k[j] * np.take(padded, np.arange(j, j + n), axis=axis) for j in range(2 * radius + 1)
        )
    return x


def _ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM (Gaussian window, sigma 1.5) of maps min-max scaled to [0, 1], as Adebayo
    et al. compare them (a signed SSIM would score ``h`` against ``-h`` as similar)."""

    def scaled(h):
        flat = h.reshape(len(h), -1)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        span = np.where(hi > lo, hi - lo, 1.0)
        return (h - lo[:, None, None]) / span[:, None, None]

    a, b = scaled(a), scaled(b)
    c1, c2 = 0.01**2, 0.03**2  # data range 1
    mu_a, mu_b = _gauss_filter(a), _gauss_filter(b)
    var_a = _gauss_filter(a * a) - mu_a**2
    var_b = _gauss_filter(b * b) - mu_b**2
    cov = _gauss_filter(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.reshape(len(s), -1).mean(axis=1)


def similarity(a, b, metric: str = "spearman_abs") -> np.ndarray:
    """Similarity of two batches of heatmaps, one value per sample.

    Args:
        a, b: heatmaps ``(n, H, W)`` (or ``(n, H, W, C)``, channels summed).
        metric: ``"spearman_abs"`` (default; Spearman rank correlation of ``|R|``),
            ``"spearman"`` (of the signed maps) or ``"ssim"`` (structural similarity of the
            maps min-max scaled to [0, 1], Gaussian window sigma 1.5).

    Returns:
        ``(n,)`` float64; 1 for identical maps; NaN where a rank correlation is undefined
        (a constant map).

    Example:
        >>> h = np.random.rand(2, 8, 8)
        >>> similarity(h, h).tolist()
        [1.0, 1.0]
    """
    if metric not in SIMILARITIES:
        raise ValueError(f"`metric` must be one of {SIMILARITIES}; got {metric!r}.")
    a, b = _maps(a), _maps(b)
    if a.shape != b.shape:
        raise ValueError(f"heatmap batches differ in shape: {a.shape} and {b.shape}.")
    if metric == "ssim":
        return _ssim(a, b)
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if metric == "spearman_abs":
        flat_a, flat_b = np.abs(flat_a), np.abs(flat_b)
    return _pearson(_rankdata(flat_a), _rankdata(flat_b))


def _maps(h) -> np.ndarray:
    h = np.asarray(ops.convert_to_numpy(h), dtype=np.float64)
    if h.ndim == 4:
        h = h.sum(axis=-1)
    if h.ndim != 3:
        raise ValueError(f"heatmaps must be (n, H, W) or (n, H, W, C); got shape {h.shape}.")
    return h


# ------------------------------------------------------------------ randomisation test
@dataclass
class RandomizationResult:
    """Result of :func:`model_randomization_test`.

    Attributes:
        steps: ``steps[0] == "original"``, then the layer randomised at each step (in
            ``"cascading"`` mode the layers above it are randomised too).
        mode: ``"cascading"`` or ``"independent"``.
        similarity: ``{metric: (len(steps), n) array}``, each step's heatmaps against the
            original's (row 0 is 1 by definition).
        heatmaps: ``(len(steps), n, H, W)`` float64, the channel-summed heatmaps per step.
        labels: ``(n,)`` the explained class of each sample (fixed across steps).
    """

    steps: list[str]
    mode: str
    similarity: dict[str, np.ndarray]
    heatmaps: np.ndarray
    labels: np.ndarray

    def mean(self, metric: str = "spearman_abs") -> np.ndarray:
        """The similarity per step averaged over the samples (NaNs ignored), ``(len(steps),)``.

        Example:
            >>> result.mean("ssim")[-1]    # fully randomised model vs trained
        """
        return np.nanmean(self.similarity[metric], axis=1)

    def plot(self, path: str | Path | None = None, ax=None):
        """Similarity to the trained model's heatmaps per randomisation step.

        One line per metric (mean over samples, the band is +-1 standard deviation).

        Args:
            path: if given, the figure is saved there as PNG.
            ax: a matplotlib ``Axes`` to draw on; default: a new figure.

        Returns:
            The matplotlib ``Axes``.

        Example:
            >>> result.plot("randomization.png")
        """
        from keras_isnet import plot

        if ax is None:
            ax = plot._new_axes(figsize=(max(5.0, 0.45 * len(self.steps) + 2.5), 3.8))
        x = np.arange(len(self.steps))
        for metric, values in self.similarity.items():
            mean, std = np.nanmean(values, axis=1), np.nanstd(values, axis=1)
            (line,) = ax.plot(x, mean, "o-", ms=3, lw=1.5, label=metric)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(self.steps, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(-0.55, 1.05)
        ax.set_ylabel("similarity to the trained model's heatmaps", fontsize=8)
        where = "from the output down" if self.mode == "cascading" else "one at a time"
        ax.set_xlabel(f"layers re-initialised ({self.mode}: {where})", fontsize=8)
        ax.set_title("Model parameter randomisation test", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
        ax.figure.tight_layout()
        if path is not None:
            plot.save(ax.figure, path)
        return ax

    def plot_heatmaps(self, path: str | Path | None = None, images=None, samples: int = 4):
        """The heatmaps of the first ``samples`` samples at every step, one row per sample.

        Args:
            path: if given, the figure is saved there as PNG.
            images: optional inputs ``(n, H, W[, C])`` drawn in a first column.
            samples: how many samples (rows) to draw (default 4).

        Returns:
            The matplotlib ``Figure``.

        Example:
            >>> result.plot_heatmaps("randomization_maps.png", images=x)
        """
        from keras_isnet import plot

        Figure, FigureCanvasAgg, _ = plot._matplotlib()
        k = min(samples, self.heatmaps.shape[1])
        cols = len(self.steps) + int(images is not None)
        fig = Figure(figsize=(1.35 * cols + 0.3, 1.45 * k + 0.6), dpi=110)
        FigureCanvasAgg(fig)
        axes = np.asarray(fig.subplots(k, cols, squeeze=False))
        for i in range(k):
            offset = 0
            if images is not None:
                plot.image(np.asarray(images)[i], ax=axes[i, 0], title="input" if i == 0 else None)
                offset = 1
            for s, name in enumerate(self.steps):
                title = name if i == 0 else None
                plot.heatmap(self.heatmaps[s, i], ax=axes[i, s + offset], title=title)
                if i == 0:
                    axes[i, s + offset].title.set_fontsize(7)
        fig.suptitle(f"Heatmaps as layers are re-initialised ({self.mode})", fontsize=9)
        fig.tight_layout()
        if path is not None:
            plot.save(fig, path)
        return fig


def _weighted_layers(model, prefix: str = ""):
    """``(path, layer)`` of every layer with trainable weights, input to output, nested
    models walked into."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer, f"{prefix}{layer.name}/")
        elif layer.trainable_weights:
            yield f"{prefix}{layer.name}", layer


def _initializer(layer, variable):
    name = variable.path.split("/")[-1] if hasattr(variable, "path") else variable.name
    name = name.split(":")[0]
    for attr in (f"{name}_initializer", f"{name.replace('_kernel', '')}_initializer"):
        init = getattr(layer, attr, None)
        if init is not None:
            return init
    return None


def _randomize(layer, rng: np.random.Generator) -> None:
    """Re-initialise ``layer``'s trainable weights with its own initializers (a fresh seed);
    weights without one are redrawn from a normal with their own mean and deviation."""
    for v in layer.trainable_weights:
        shape = tuple(v.shape)
        init = _initializer(layer, v)
        if init is not None:
            config = keras.initializers.serialize(init)
            if isinstance(config, dict) and "seed" in config.get("config", {}):
                config["config"]["seed"] = int(rng.integers(0, 2**31 - 1))
            new = ops.convert_to_numpy(keras.initializers.deserialize(config)(shape, v.dtype))
        else:
            old = np.asarray(ops.convert_to_numpy(v), dtype=np.float64)
            new = rng.normal(old.mean(), old.std() or 0.05, shape)
        v.assign(np.asarray(new).astype(keras.backend.standardize_dtype(v.dtype)))


def model_randomization_test(
    model,
    images,
    analyzer: str = "lrp.epsilon",
    *,
    neuron_selection=None,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    metrics: Sequence[str] = SIMILARITIES,
    analyzer_kwargs: dict | None = None,
    seed: int = 0,
) -> RandomizationResult:
    """The model parameter randomisation test (Adebayo et al., NeurIPS 2018).

    A copy of ``model`` (``keras.models.clone_model`` with the trained weights) has its layers'
    trainable weights re-initialised with the layers' own initializers: in ``"cascading"``
    mode cumulatively from the output layer down, in ``"independent"`` mode one layer at a
    time (the others trained). After each step the same samples are explained, for the same
    class as on the trained model, and compared with the trained model's heatmaps.

    Args:
        model: a built functional or Sequential Keras model (not modified).
        images: ``(n, H, W, C)`` inputs (a few to a few dozen).
        analyzer: an analyzer name for ``ki.create_analyzer`` (default ``"lrp.epsilon"``).
        neuron_selection: None (default): each sample's class predicted by the trained model;
            an int or one int per sample: that class.
        mode: ``"cascading"`` (default) or ``"independent"``.
        layers: the layer names (``"inner/conv"`` inside nested models) to randomise, in
            this order; default: every layer with trainable weights, output first.
        metrics: which of :data:`SIMILARITIES` to compute (default all three).
        analyzer_kwargs: options for ``ki.create_analyzer`` (e.g. ``{"epsilon": 0.01}``).
        seed: seed of the re-initialisation (default 0).

    Returns:
        A :class:`RandomizationResult` (``.steps``, ``.similarity``, ``.mean()``, ``.plot()``,
        ``.plot_heatmaps()``).

    Raises:
        ValueError: an unknown mode, metric or layer name.

    Example:
        >>> result = model_randomization_test(model, x[:8], "lrp.epsilon", mode="cascading")
        >>> dict(zip(result.steps, result.mean("spearman_abs").round(2)))
    """
    from keras_isnet.analyzers import create_analyzer

    if mode not in ("cascading", "independent"):
        raise ValueError(f"`mode` must be 'cascading' or 'independent'; got {mode!r}.")
    for metric in metrics:
        if metric not in SIMILARITIES:
            raise ValueError(f"unknown metric {metric!r}; choose from {SIMILARITIES}.")
    x = np.asarray(ops.convert_to_numpy(images))
    kwargs = dict(analyzer_kwargs or {})
    kwargs["neuron_selection_mode"] = "index"
    if neuron_selection is None:
        labels = np.asarray(model.predict(x, verbose=0)).reshape(len(x), -1).argmax(axis=1)
    else:
        labels = np.broadcast_to(np.asarray(neuron_selection, dtype=int), (len(x),)).copy()

    def explain(m):
        return _maps(create_analyzer(analyzer, m, **kwargs).analyze(x, neuron_selection=labels))

    original = explain(model)
    available = dict(_weighted_layers(model))
    order = list(layers) if layers is not None else list(reversed(available))
    unknown = [name for name in order if name not in available]
    if unknown:
        raise ValueError(
            f"no layer with trainable weights named {unknown}; the model has {list(available)}."
        )
    rng = np.random.default_rng(seed)
    weights = model.get_weights()

    def fresh_copy():
        copy = keras.models.clone_model(model)
        copy.set_weights(weights)
        return copy, dict(_weighted_layers(copy))

    copy, copy_layers = fresh_copy()
    maps = [original]
    for name in order:
        if mode == "independent":
            copy, copy_layers = fresh_copy()
        _randomize(copy_layers[name], rng)
        maps.append(explain(copy))
    heatmaps = np.stack(maps)
    sims = {m: np.stack([similarity(original, h, m) for h in heatmaps]) for m in metrics}
    return RandomizationResult(["original", *order], mode, sims, heatmaps, labels)


# ------------------------------------------------------------------ faithfulness correlation
@dataclass
class FaithfulnessResult:
    """Result of :func:`faithfulness_correlation`.

    Attributes:
        correlation: ``(n,)`` Pearson correlation per sample between ``attribution_sums``
            and ``output_drops`` (NaN if either is constant).
        attribution_sums: ``(n, n_subsets)`` the heatmap's sum on each random subset.
        output_drops: ``(n, n_subsets)`` ``f(x) - f(x with the subset replaced)`` of the
            explained output.
        labels: ``(n,)`` the explained class per sample.
        subset_size: the number of pixels (or cells) per subset.
    """

    correlation: np.ndarray
    attribution_sums: np.ndarray
    output_drops: np.ndarray
    labels: np.ndarray
    subset_size: int

    @property
    def mean(self) -> float:
        """The mean correlation over the samples (NaNs ignored)."""
        return float(np.nanmean(self.correlation))

    def plot(self, path: str | Path | None = None, index: int = 0):
        """Scatter of heatmap sum vs output drop for sample ``index``, and a histogram of
        the correlations of all samples.

        Args:
            path: if given, the figure is saved there as PNG.
            index: the sample of the scatter plot (default 0).

        Returns:
            The matplotlib ``Figure``.

        Example:
            >>> result.plot("faithfulness.png", index=2)
        """
        from keras_isnet import plot

        Figure, FigureCanvasAgg, _ = plot._matplotlib()
        fig = Figure(figsize=(8.0, 3.4), dpi=110)
        FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2)
        a, d = self.attribution_sums[index], self.output_drops[index]
        left.scatter(a, d, s=10, alpha=0.6, color="tab:red")
        if np.ptp(a) > 0:
            slope, intercept = np.polyfit(a, d, 1)
            xs = np.linspace(a.min(), a.max(), 2)
            left.plot(xs, slope * xs + intercept, color="0.3", lw=1)
        left.set_xlabel(f"heatmap sum on a random subset ({self.subset_size} pixels)", fontsize=8)
        left.set_ylabel("drop of the explained output", fontsize=8)
        left.set_title(f"sample {index}: correlation {self.correlation[index]:.3f}", fontsize=9)
        left.grid(alpha=0.3)
        finite = self.correlation[np.isfinite(self.correlation)]
        right.hist(finite, bins=np.linspace(-1, 1, 21), color="tab:blue", alpha=0.8)
        right.axvline(self.mean, color="tab:red", lw=1.5, label=f"mean {self.mean:.3f}")
        right.set_xlim(-1, 1)
        right.set_xlabel("faithfulness correlation per sample", fontsize=8)
        right.set_ylabel("samples", fontsize=8)
        right.legend(fontsize=7)
        right.set_title("Faithfulness correlation (Bhatt et al. 2020)", fontsize=9)
        fig.tight_layout()
        if path is not None:
            plot.save(fig, path)
        return fig


def _scoring_model(model, strip_softmax: bool):
    if not strip_softmax:
        return model
    from keras_isnet.output_activation import model_wo_softmax

    try:
        return model_wo_softmax(model)
    except ValueError:  # no final softmax: the outputs are already logits (or scores)
        return model


def faithfulness_correlation(
    model,
    images,
    heatmaps,
    *,
    neuron_selection=None,
    subset_size: float | int = 0.1,
    n_subsets: int = 64,
    baseline: float | str | np.ndarray = 0.0,
    cell_size: int = 1,
    strip_softmax: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> FaithfulnessResult:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020).

    For each sample, ``n_subsets`` random subsets ``S`` of pixels (or ``cell_size`` cells)
    are replaced by the baseline (all channels); the result is the Pearson correlation over
    the subsets between ``sum(heatmap[S])`` and ``f_c(x) - f_c(x_S)``, ``f_c`` the explained
    output (the logit of class ``c``: a final softmax is stripped unless
    ``strip_softmax=False``). For a linear model ``f(x) = W x + b`` and the attribution
    ``(x - baseline) * W[c]`` the two are equal and the correlation is 1.

    Args:
        model: a classifier with outputs ``(n, classes)``.
        images: ``(n, H, W, C)`` inputs.
        heatmaps: ``(n, H, W)`` or ``(n, H, W, C)`` (channels summed, signed).
        neuron_selection: None (default): the class the model predicts; an int or one int per
            sample: that class (use the class the heatmaps explain).
        subset_size: the subset size as a fraction of the pixels/cells (``0 < s < 1``,
            default 0.1) or a count (an int ``>= 1``).
        n_subsets: random subsets per sample (default 64).
        baseline: the replacement value: a number (default 0.0), ``"mean"`` (each image's
            per-channel mean) or an array broadcastable to ``images``.
        cell_size: perturb ``cell_size x cell_size`` cells instead of pixels (default 1).
        strip_softmax: score the logits of a model ending in softmax (default True).
        seed: seed of the subsets (default 0).
        batch_size: perturbed images per model call (default 256).

    Returns:
        A :class:`FaithfulnessResult` (``.correlation``, ``.mean``, ``.plot()``).

    Raises:
        ValueError: shapes that do not match, a bad ``subset_size`` or ``cell_size``.

    Example:
        >>> h = ki.create_analyzer("lrp.epsilon", model).analyze(x[:16])
        >>> faithfulness_correlation(model, x[:16], h, n_subsets=128).mean
    """
    x = np.asarray(ops.convert_to_numpy(images), dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"`images` must be (n, H, W, C); got shape {x.shape}.")
    h = _maps(heatmaps)
    n, height, width = x.shape[:3]
    if h.shape != (n, height, width):
        raise ValueError(f"heatmaps of shape {h.shape} do not match the images {x.shape}.")
    if int(cell_size) < 1:
        raise ValueError(f"`cell_size` must be a positive integer; got {cell_size!r}.")
    cell = int(cell_size)
    rows, cols = -(-height // cell), -(-width // cell)
    n_cells = rows * cols
    if isinstance(subset_size, float) and not isinstance(subset_size, bool):
        if not 0.0 < subset_size < 1.0:
            raise ValueError(f"a fractional `subset_size` must lie in (0, 1); got {subset_size}.")
        k = max(1, int(round(subset_size * n_cells)))
    else:
        k = int(subset_size)
        if not 1 <= k <= n_cells:
            raise ValueError(f"`subset_size` must lie in [1, {n_cells}]; got {subset_size!r}.")
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"`baseline` must be a number, 'mean' or an array; got {baseline!r}.")
        base = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    else:
        base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    scorer = _scoring_model(model, strip_softmax)
    clean = np.asarray(scorer.predict(x, verbose=0)).reshape(n, -1)
    if neuron_selection is None:
        labels = np.asarray(model.predict(x, verbose=0)).reshape(n, -1).argmax(axis=1)
    else:
        labels = np.broadcast_to(np.asarray(neuron_selection, dtype=int), (n,)).copy()

    rng = np.random.default_rng(seed)
    cell_of = (np.arange(height)[:, None] // cell) * cols + np.arange(width)[None, :] // cell
    sums = np.empty((n, n_subsets))
    drops = np.empty((n, n_subsets))
    cell_relevance = np.stack(
        [np.bincount(cell_of.ravel(), h[i].ravel(), n_cells) for i in range(n)]
    )
    for i in range(n):
        chosen = np.stack([rng.choice(n_cells, k, replace=False) for _ in range(n_subsets)])
        sums[i] = cell_relevance[i][chosen].sum(axis=1)
        selected = np.zeros((n_subsets, n_cells), bool)
        selected[np.arange(n_subsets)[:, None], chosen] = True
        pixel_masks = selected[:, cell_of][..., None]  # (n_subsets, H, W, 1)
        perturbed = np.where(pixel_masks, base[i], x[i]).astype(np.float32)
        scores = np.asarray(scorer.predict(perturbed, batch_size=batch_size, verbose=0))
        drops[i] = clean[i, labels[i]] - scores.reshape(n_subsets, -1)[:, labels[i]]
    return FaithfulnessResult(_pearson(sums, drops), sums, drops, labels, k)
