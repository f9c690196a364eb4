"""``HeatmapCallback``: watch where the model looks while it trains."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_isnet import plot
from keras_isnet.callbacks import _writers

__all__ = ["HeatmapCallback"]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a background 4-neighbour (the mask's outline), ``(H, W)`` bool."""
    m = np.asarray(mask) > 0.5
    padded = np.pad(m, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & m
    return m & ~inner


class HeatmapCallback(keras.callbacks.Callback):
    """Heatmaps of a fixed batch every ``every`` epochs: TensorBoard images, PNGs, a scalar.

    At the end of epochs ``every, 2 * every, ...`` (1-based) the callback explains
    ``images`` with the model being trained (an ISNet's ``classifier``; the analyzer shares
    its weights, so each call sees the current weights) and

    * with ``log_dir``: logs the heatmaps (``<name>/heatmap``, mask outline in green) and
      the heatmaps over the inputs (``<name>/overlay``) as TensorBoard images, and with
      ``masks`` the mean background share of ``|R|`` as the scalar
      ``<name>/background_share`` (see ``writer``);
    * with ``out_dir``: writes a ``ki.plot.grid`` figure ``<name>_epoch0003.png`` (inputs,
      heatmaps, the background share per sample in the titles; needs matplotlib);
    * always: appends ``{"epoch": e, "background_share": s, "per_sample": [...]}`` to
      :attr:`history` and keeps the latest heatmaps in :attr:`heatmaps`.

    The step of every logged value is the number of epochs finished (``initial=True`` also
    logs step 0, before training).

    Args:
        images: the batch to explain, ``(n, H, W, C)`` (keep it small: 4-16 images).
        masks: optional foreground masks ``(n, H, W)`` or ``(n, H, W, 1)``, 1 = foreground.
        analyzer: an analyzer name (default ``"lrp.epsilon"``) for ``ki.create_analyzer``, or
            a function ``model -> analyzer`` (any object with ``analyze``).
        every: log every ``every`` epochs (default 1).
        log_dir: folder for TensorBoard event files (or PNGs, see ``writer``); default
            None: no TensorBoard logging. Use a folder of its own, e.g. ``"logs/heatmaps"``
            next to ``keras.callbacks.TensorBoard("logs")``.
        out_dir: folder for the ``ki.plot.grid`` figures; default None: none written.
        neuron_selection: None (default): explain each sample's predicted class; an int or
            one int per sample (e.g. the labels): explain that class (index mode).
        analyzer_kwargs: options for ``ki.create_analyzer`` (e.g. ``{"epsilon": 0.01}``).
        writer: ``"auto"`` (default): ``tf.summary`` on the TensorFlow backend when the
            tensorboard package is installed, the tensorboard package's own writer on other
            backends, PNG files and ``scalars.csv`` in ``log_dir`` without tensorboard;
            or ``"tf"``, ``"tensorboard"``, ``"png"`` to choose.
        name: prefix of the tags and file names (default ``"heatmaps"``).
        percentile: clip each heatmap's colour scale at this percentile of ``|R|``
            (default 99.5; None: the maximum).
        reduce: channel reduction for the images, ``"sum"`` (default) or ``"mean_abs"``.
        min_size: TensorBoard images are enlarged (nearest neighbour) by an integer factor
            to at least this many pixels on their longer side (default 128).
        initial: also log before the first epoch, as step 0 (default False).

    Attributes:
        history: one dict per logged step (``epoch``, ``background_share`` (None without
            masks), ``per_sample``).
        heatmaps: the latest heatmaps, ``(n, H, W, C)`` NumPy, or None before the first log.
        writer_kind: the writer used (``"tf"``, ``"tensorboard"``, ``"png"``), or None.

    Example:
        >>> cb = ki.callbacks.HeatmapCallback(x_val[:8], masks=m_val[:8], every=2,
        ...                                   log_dir="logs/heatmaps", out_dir="figures")
        >>> isnet.fit(data, epochs=10, callbacks=[keras.callbacks.TensorBoard("logs"), cb])
        >>> [round(h["background_share"], 3) for h in cb.history]
    """

    def __init__(
        self,
        images,
        masks=None,
        analyzer: str | Callable[[Any], Any] = "lrp.epsilon",
        every: int = 1,
        log_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        *,
        neuron_selection=None,
        analyzer_kwargs: dict | None = None,
        writer: str = "auto",
        name: str = "heatmaps",
        percentile: float | None = 99.5,
        reduce: str = "sum",
        min_size: int = 128,
        initial: bool = False,
    ):
        super().__init__()
        self.images = np.asarray(keras.ops.convert_to_numpy(images))
        if self.images.ndim < 3:
            raise ValueError(
                f"`images` must be a batch (n, H, W, C); got shape {self.images.shape}."
            )
        self.masks = None
        if masks is not None:
            m = np.asarray(keras.ops.convert_to_numpy(masks))
            if m.ndim == 4 and m.shape[-1] == 1:
                m = m[..., 0]
            if m.shape != self.images.shape[:3]:
                raise ValueError(
                    f"`masks` must have shape (n, H, W) = {self.images.shape[:3]} (or with a "
                    f"trailing 1); got {np.shape(masks)}."
                )
            self.masks = m
        if int(every) < 1:
            raise ValueError(f"`every` must be a positive integer; got {every!r}.")
        if reduce not in plot.REDUCTIONS:
            raise ValueError(f"`reduce` must be one of {plot.REDUCTIONS}; got {reduce!r}.")
        self.analyzer = analyzer
        self.every = int(every)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.neuron_selection = neuron_selection
        self.analyzer_kwargs = dict(analyzer_kwargs or {})
        self.writer = writer
        self.writer_kind = _writers.resolve_writer(writer) if log_dir is not None else None
        self.name = name
        self.percentile = percentile
        self.reduce = reduce
        self.min_size = int(min_size)
        self.initial = bool(initial)
        self.history: list[dict] = []
        self.heatmaps: np.ndarray | None = None
        self._analyzer = None
        self._analyzed = None
        self._writer = None

    # ------------------------------------------------------------------ keras hooks
    def on_train_begin(self, logs=None):
        if self.initial:
            self.log(0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.log(epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    # ------------------------------------------------------------------ the work
    def _get_analyzer(self):
        model = getattr(self.model, "classifier", self.model)  # an ISNet explains its classifier
        if self._analyzer is None or self._analyzed is not model:
            if isinstance(self.analyzer, str):
                from keras_isnet.analyzers import create_analyzer

                kwargs = dict(self.analyzer_kwargs)
                if self.neuron_selection is not None:
                    kwargs.setdefault("neuron_selection_mode", "index")
                self._analyzer = create_analyzer(self.analyzer, model, **kwargs)
            else:
                self._analyzer = self.analyzer(model)
            self._analyzed = model
        return self._analyzer

    def compute(self) -> np.ndarray:
        """The heatmaps of :attr:`images` with the current weights.

        Returns:
            ``(n, H, W, C)`` NumPy array (the analyzer's output).

        Example:
            >>> cb.set_model(model); h = cb.compute()
        """
        analyzer = self._get_analyzer()
        if self.neuron_selection is None:
            return np.asarray(analyzer.analyze(self.images))
        return np.asarray(analyzer.analyze(self.images, neuron_selection=self.neuron_selection))

    def log(self, step: int) -> dict:
        """Compute, record and write the heatmaps for ``step`` (called by the Keras hooks).

        Args:
            step: the number of finished epochs (the TensorBoard step).

        Returns:
            The :attr:`history` entry of this step.

        Example:
            >>> cb.set_model(model); cb.log(0)["background_share"]
        """
        h = self.compute()
        self.heatmaps = h
        share, per_sample = None, None
        if self.masks is not None:
            from keras_isnet.metrics import background_relevance_share

            values = background_relevance_share(h, self.masks)
            per_sample = [float(v) for v in values]
            share = float(np.nanmean(values)) if np.any(np.isfinite(values)) else math.nan
        entry = {"epoch": int(step), "background_share": share, "per_sample": per_sample}
        self.history.append(entry)
        if self.log_dir is not None:
            self._write_tensorboard(h, share, int(step))
        if self.out_dir is not None:
            self._write_figure(h, per_sample, int(step))
        return entry

    def _tiles(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, H', W', 3)`` heatmap and overlay images, enlarged to ``min_size``."""
        n, height, width = h.shape[:3]
        factor = max(1, math.ceil(self.min_size / max(height, width)))
        heat, over = [], []
        for i in range(n):
            kw = {"reduce": self.reduce, "percentile": self.percentile}
            c = plot.colorize(h[i], **kw)
            o = plot.overlay_rgb(self.images[i], h[i], **kw)
            c, o = (np.repeat(np.repeat(t, factor, 0), factor, 1) for t in (c, o))
            if self.masks is not None:
                m = np.repeat(np.repeat(self.masks[i], factor, 0), factor, 1)
                edge = _boundary(m)
                c[edge], o[edge] = (0.0, 0.75, 0.0), (0.0, 0.75, 0.0)
            heat.append(c)
            over.append(o)
        return np.stack(heat), np.stack(over)

    def _write_tensorboard(self, h: np.ndarray, share, step: int) -> None:
        if self._writer is None:
            self._writer = _writers.create_writer(self.writer_kind, self.log_dir)
        heat, over = self._tiles(h)
        self._writer.images(f"{self.name}/heatmap", heat, step)
        self._writer.images(f"{self.name}/overlay", over, step)
        if share is not None:
            self._writer.scalar(f"{self.name}/background_share", share, step)
        self._writer.flush()

    def _write_figure(self, h: np.ndarray, per_sample, step: int) -> None:
        titles = None
        if per_sample is not None:
            titles = [f"bg {s:.2f}" if np.isfinite(s) else "bg n/a" for s in per_sample]
        label = self.analyzer if isinstance(self.analyzer, str) else "heatmaps"
        plot.grid(
            self.images,
            {label: h},
            masks=self.masks,
            titles=titles,
            reduce=self.reduce,
            percentile=self.percentile,
            suptitle=f"epoch {step}",
            path=self.out_dir / f"{self.name}_epoch{step:04d}.png",
        )
