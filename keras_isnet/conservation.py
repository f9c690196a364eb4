"""Where does relevance go? A per-layer conservation report for LRP analyzers.

LRP starts with the explained quantity ``E = sum(output * weights)`` at the output and hands
relevance back layer by layer. A layer "absorbs" relevance when the relevance leaving it
through its inputs differs from the relevance arriving at its outputs: biases and folded
BatchNorm shifts take their share, epsilon stabilisers eat a little, zero denominators drop
some, and some rules (alpha-beta) do not conserve at all. The report measures, for every
layer call in graph order:

* ``arriving``: the relevance sum at the layer's outputs (what its consumers handed back,
  plus ``E`` at the explained output);
* ``leaving``: the relevance sum at its inputs;
* ``absorbed = arriving - leaving`` and ``share = absorbed / |arriving|``;
* the reason: what in this layer's rule can absorb relevance (bias, BN shift, epsilon,
  zero denominators, max-pool ties, a non-conserving rule). With a bias-free rule at a layer
  that has a bias (or a folded BN shift), relevance that reaches an output whose inputs are
  all zero (dead ReLUs under it) is lost: that output is the bias alone, and the report
  counts such outputs ("output carried by the bias alone (N outputs)").

Every number is a sum over the batch. The absorbed amounts add up exactly (to float64
rounding) to the total gap ``E - sum(input relevance)``, because each tensor's relevance is
counted once leaving its consumers and once arriving at its producer.

Example:
    >>> analyzer = ki.create_analyzer("lrp.epsilon", unet, neuron_selection_mode="index")
    >>> report = ki.conservation_report(analyzer, x, neuron_selection=(10, 12, 1))
    >>> print(report.to_text())
    >>> report.plot("conservation.png")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from keras_isnet.analyzers.lrp import LRP
from keras_isnet.arrays import to_numpy
from keras_isnet.layers.base import BIAS_ONLY
from keras_isnet.propagation import step_names

#: |absorbed| below this fraction of max(|arriving|, |explained|) counts as conserved.
_NEGLIGIBLE = 1e-6
#: |absorbed| below this fraction of the layer's relevance magnitude is float rounding,
#: by the dtype the analysis runs in.
_ROUNDING = {"float32": 1e-6, "float64": 1e-14}


@dataclass
class LayerConservation:
    """The relevance balance of one layer call (sums over the batch).

    Attributes:
        position: the layer's position in the report (graph order, input side first).
        name: the layer's path (``"conv1"``, ``"decoder/conv1"``, ``"conv1#1"`` for the
            second call of a shared layer).
        class_name: the Keras layer class.
        rule: how relevance crosses it (``"Epsilon(e=1e-09)"``, ``"routing"``, ...).
        arriving: relevance sum at the layer's outputs.
        leaving: relevance sum at the layer's inputs.
        absorbed: ``arriving - leaving`` (negative: the layer creates relevance).
        share: ``absorbed / |arriving|`` (0 where nothing arrives and nothing leaves).
        magnitude: the larger of ``sum |R|`` at the outputs and at the inputs. When it is
            much larger than ``|arriving|`` positive and negative relevance cancel, and float
            rounding of order ``1e-7 * magnitude`` (float32) shows up as absorption.
        causes: what can absorb relevance in this layer (from its rule and weights).
        bias_only_outputs: for a bias-free rule at a layer with a bias, the number of
            outputs (over the batch) that receive relevance but whose inputs are all zero,
            so that their value is the bias alone and their relevance is absorbed.
        reason: ``", ".join(causes)`` where the layer absorbs a non-negligible amount, "-"
            where it conserves, ``"float rounding"`` where the amount is below
            ``1e-6 * magnitude`` (``1e-14`` with ``compute_dtype="float64"``), "unexplained"
            where it absorbs without a known cause.
        flagged: ``|share| > threshold``.
    """

    position: int
    name: str
    class_name: str
    rule: str
    arriving: float
    leaving: float
    absorbed: float
    share: float
    magnitude: float = 0.0
    causes: list = field(default_factory=list)
    reason: str = "-"
    flagged: bool = False
    bias_only_outputs: int = 0


@dataclass
class ConservationReport:
    """The per-layer relevance balance of one analysis; built by :func:`conservation_report`.

    Attributes:
        analyzer: a description of the analyzer.
        samples: the number of explained samples.
        explained: ``E``, the explained quantity summed over the batch.
        input_relevance: the relevance at the model inputs, summed over the batch.
        gap: ``explained - input_relevance``; equals ``sum(layer.absorbed)``.
        threshold: the share above which a layer is flagged.
        layers: one :class:`LayerConservation` per layer call reached, in graph order.
        explained_per_sample, input_per_sample: the same per sample, ``(batch,)`` arrays.
    """

    analyzer: str
    samples: int
    explained: float
    input_relevance: float
    gap: float
    threshold: float
    layers: list
    explained_per_sample: np.ndarray
    input_per_sample: np.ndarray

    @property
    def relative_gap(self) -> float:
        """``gap / |explained|`` (inf when nothing is explained but relevance appears)."""
        if self.explained == 0:
            return 0.0 if self.gap == 0 else float("inf")
        return self.gap / abs(self.explained)

    @property
    def flagged(self) -> list:
        """The layers whose ``|share|`` exceeds the threshold."""
        return [layer for layer in self.layers if layer.flagged]

    @property
    def absorbed_total(self) -> float:
        """The sum of the per-layer absorbed amounts (equals :attr:`gap`)."""
        return float(sum(layer.absorbed for layer in self.layers))

    def to_dict(self) -> dict:
        """All numbers as plain Python types (JSON-serialisable).

        Example:
            >>> json.dumps(report.to_dict())
        """
        return {
            "analyzer": self.analyzer,
            "samples": self.samples,
            "explained": self.explained,
            "input_relevance": self.input_relevance,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
            "threshold": self.threshold,
            "explained_per_sample": [float(v) for v in self.explained_per_sample],
            "input_per_sample": [float(v) for v in self.input_per_sample],
            "layers": [asdict(layer) for layer in self.layers],
            "flagged": [layer.name for layer in self.flagged],
        }

    def to_text(self, *, only_absorbing: bool = False) -> str:
        """The report as a fixed-width table.

        Args:
            only_absorbing: list only layers that absorb a non-negligible amount.

        Example:
            >>> print(report.to_text())
        """
        rows = [layer for layer in self.layers if not only_absorbing or layer.reason not in ("-",)]
        w_name = max([len("layer")] + [len(r.name) for r in rows])
        w_cls = max([len("class")] + [len(r.class_name) for r in rows])
        w_rule = max([len("rule")] + [len(r.rule) for r in rows])
        lines = [
            f"Conservation report: {self.analyzer}, {self.samples} sample(s)",
            f"explained {self.explained:.6g}, at the input {self.input_relevance:.6g}, "
            f"gap {self.gap:.6g} ({100 * self.relative_gap:.4g} %), "
            f"{len(self.flagged)} layer(s) flagged above {100 * self.threshold:g} %",
            "",
            f"{'#':>3}  {'layer':<{w_name}}  {'class':<{w_cls}}  {'rule':<{w_rule}}  "
            f"{'arriving':>11}  {'leaving':>11}  {'absorbed':>11}  {'share':>8}    reason",
        ]
        for r in rows:
            if not np.isfinite(r.share):
                share = "inf"
            elif abs(r.share) < 5e-5:
                share = "0%"
            else:
                share = f"{100 * r.share:.1f}%"
            lines.append(
                f"{r.position:>3}  {r.name:<{w_name}}  {r.class_name:<{w_cls}}  "
                f"{r.rule:<{w_rule}}  {r.arriving:>11.5g}  {r.leaving:>11.5g}  "
                f"{r.absorbed:>11.4g}  {share:>8} {'!' if r.flagged else ' '}  {r.reason}"
            )
        lines.append(
            f"{'':>3}  {'sum of absorbed':<{w_name + w_cls + w_rule + 4}}  {'':>11}  {'':>11}  "
            f"{self.absorbed_total:>11.4g}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    @property
    def in_flight(self) -> np.ndarray:
        """The total relevance crossing the cut below each layer, ``(len(layers),)``.

        Entry ``p`` is ``explained - sum(absorbed of layers p, p+1, ...)``: the relevance
        held by all tensors between the layers before ``p`` and the layers from ``p`` on,
        once the layers from ``p`` to the output have been processed. Entry 0 is the input
        relevance. In a network with branches, this is the relevance sum at a depth.
        """
        absorbed = np.array([layer.absorbed for layer in self.layers], dtype=np.float64)
        return self.explained - np.cumsum(absorbed[::-1])[::-1]

    def plot(self, path, *, title: str | None = None):
        """Write a PNG of the relevance sum vs depth and the relevance absorbed per layer.

        Top: the total relevance in flight (:attr:`in_flight`) at the cuts between layers,
        from the explained quantity at the output (right, dashed line) to the input
        relevance (left): a layer that absorbs relevance is a slope at its position.
        Bottom: each layer's absorbed amount, flagged layers in red.

        Args:
            path: the PNG file to write.
            title: the figure title (default: the analyzer description).

        Returns:
            ``path``.

        Example:
            >>> report.plot("docs/conservation.png")
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        n = len(self.layers)
        fig = Figure(figsize=(max(6.0, 0.32 * n + 2.0), 6.0), dpi=110)
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        depth = np.arange(n)
        flight = np.append(self.in_flight, self.explained)  # at the cuts between layers
        top.plot(np.arange(n + 1) - 0.5, flight, "o-", ms=3, lw=1.5, color="tab:blue")
        top.axhline(self.explained, color="0.4", ls="--", lw=1, label="explained")
        top.set_ylabel("relevance sum at depth")
        top.legend(fontsize=7, loc="best")
        top.grid(alpha=0.3)
        top.set_title(title or f"{self.analyzer}: relevance per layer", fontsize=9)
        absorbed = np.array([layer.absorbed for layer in self.layers])
        colors = ["tab:red" if layer.flagged else "tab:gray" for layer in self.layers]
        bottom.bar(depth, absorbed, color=colors, width=0.7)
        bottom.axhline(0, color="0.3", lw=0.8)
        bottom.set_ylabel(f"absorbed (red: > {100 * self.threshold:g} %)", fontsize=8)
        bottom.grid(alpha=0.3, axis="y")
        bottom.set_xticks(depth)
        bottom.set_xticklabels(
            [layer.name for layer in self.layers], rotation=90, fontsize=7 if n > 20 else 8
        )
        bottom.set_xlabel("layer (graph order: input left, output right)")
        fig.tight_layout()
        fig.savefig(path)
        return path


def _bias_only_outputs(analyzer, x, layers, steps, seed) -> dict:
    """``{step index: count}`` of kernel-layer outputs that receive relevance while every
    input of theirs is zero (pre-activation without bias exactly 0, bias not 0), for the
    layers whose bias-free rule cannot pass that relevance on."""
    engine = analyzer.engine
    candidates = {
        step.index for step in steps.values() if BIAS_ONLY in analyzer.conservation_info(step)[1]
    }
    if not candidates:
        return {}
    arriving: dict = {engine.head_key: seed}
    for name, rs in layers.items():
        for k, r in zip(dict.fromkeys(steps[name].inputs), rs, strict=True):
            if r is not None:
                arriving[k] = r if k not in arriving else arriving[k] + r
    _, records = engine.replay(analyzer.as_tensors(x))
    counts = {}
    for index in candidates:
        call = records[index].kernel
        relevance = arriving.get(engine.steps[index].outputs[0])
        if call is None or call.bias is None or relevance is None:
            continue
        z = to_numpy(call.z_nobias)
        bias = to_numpy(call.add_bias(call.z_nobias * 0, call.bias))
        alone = (z == 0) & (bias != 0) & (np.asarray(relevance) != 0)
        counts[index] = int(alone.sum())
    return counts


def _describe(analyzer) -> str:
    parts = []
    for attr in ("epsilon", "bias"):
        if hasattr(analyzer, attr):
            parts.append(f"{attr}={getattr(analyzer, attr)!r}")
    if hasattr(analyzer, "bn_rule"):
        parts.append(f"bn_rule={analyzer.bn_rule!r}")
    name = analyzer.name or type(analyzer).__name__
    return f"{name} ({', '.join(parts)})" if parts else name


def conservation_report(
    analyzer,
    x,
    neuron_selection=None,
    *,
    threshold: float = 0.01,
    batch_size: int | None = None,
) -> ConservationReport:
    """Measure, layer by layer, how much relevance an LRP analysis keeps.

    Args:
        analyzer: an LRP analyzer (any ``lrp.*`` name, a composite, deep Taylor).
        x: the input batch ``(batch, *input_shape)`` (a list for multi-input models).
        neuron_selection: as for ``analyzer.analyze`` (mode ``"index"``): an int, a tuple
            such as ``(row, col, class)``, or seed weights shaped like the output.
        threshold: flag layers with ``|absorbed| / |arriving|`` above this (default 0.01).
        batch_size: process ``x`` in chunks of this many samples (default: all at once).

    Returns:
        A :class:`ConservationReport` (``.to_text()``, ``.to_dict()``, ``.plot(path)``).

    Raises:
        TypeError: for analyzers that are not LRP analyzers.

    Example:
        >>> report = conservation_report(analyzer, x, neuron_selection=weights)
        >>> report.gap, report.absorbed_total       # equal
        >>> [layer.name for layer in report.flagged]
    """
    if not isinstance(analyzer, LRP):
        raise TypeError(
            f"conservation_report needs an LRP analyzer (lrp.*, a composite, deep_taylor); got "
            f"{type(analyzer).__name__}, whose relevance is not meant to be conserved."
        )
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}.")
    _, layers, seed = analyzer.layer_relevances(x, neuron_selection, batch_size=batch_size)
    engine = analyzer.engine
    names = step_names(engine.steps)
    steps = {names[step.index]: step for step in engine.steps}
    n = len(seed)

    def total(r):
        return r.reshape(len(r), -1).astype(np.float64).sum(axis=1)

    # relevance handed to each tensor key by its consumers, per sample
    received: dict[int, np.ndarray] = {}
    received_abs: dict[int, float] = {}
    leaving: dict[str, np.ndarray] = {}
    leaving_abs: dict[str, float] = {}
    for name, rs in layers.items():
        step = steps[name]
        keys = list(dict.fromkeys(step.inputs))
        out, out_abs = np.zeros(n), 0.0
        for k, r in zip(keys, rs, strict=True):
            if r is None:
                continue
            t = total(r)
            a = float(np.abs(r).sum(dtype=np.float64))
            received[k] = received.get(k, 0.0) + t
            received_abs[k] = received_abs.get(k, 0.0) + a
            out, out_abs = out + t, out_abs + a
        leaving[name], leaving_abs[name] = out, out_abs
    explained = total(seed)
    bias_only = _bias_only_outputs(analyzer, x, layers, steps, seed)
    received_head = dict(received)
    head = engine.head_key
    received_head[head] = received_head.get(head, 0.0) + explained
    received_abs[head] = received_abs.get(head, 0.0) + float(np.abs(seed).sum(dtype=np.float64))
    at_inputs = sum((received.get(k, np.zeros(n)) for k in engine.input_keys), np.zeros(n))

    scale = max(abs(float(explained.sum())), 1e-30)
    rounding = _ROUNDING["float64" if seed.dtype == np.float64 else "float32"]
    rows = []
    ordered = sorted(layers, key=lambda name: steps[name].index)
    for position, name in enumerate(ordered):
        step = steps[name]
        arriving = float(sum(float(np.sum(received_head.get(k, 0.0))) for k in step.outputs))
        left = float(leaving[name].sum())
        absorbed = arriving - left
        if arriving != 0:
            share = absorbed / abs(arriving)
        else:
            share = 0.0 if absorbed == 0 else float("inf")
        magnitude = max(sum(received_abs.get(k, 0.0) for k in step.outputs), leaving_abs[name])
        rule, causes = analyzer.conservation_info(step)
        count = bias_only.get(step.index, 0)
        if BIAS_ONLY in causes:
            causes = [
                c if c != BIAS_ONLY else f"{BIAS_ONLY} ({count} outputs)"
                for c in causes
                if c != BIAS_ONLY or count
            ]
        if abs(absorbed) <= _NEGLIGIBLE * max(abs(arriving), scale):
            reason = "-"
        elif abs(absorbed) <= rounding * magnitude:
            reason = "float rounding"
        else:
            reason = ", ".join(causes) if causes else "unexplained"
        rows.append(
            LayerConservation(
                position=position,
                name=name,
                class_name=type(step.layer).__name__,
                rule=rule,
                arriving=arriving,
                leaving=left,
                absorbed=absorbed,
                share=float(share),
                magnitude=magnitude,
                causes=list(causes),
                reason=reason,
                flagged=bool(abs(share) > threshold),
                bias_only_outputs=count,
            )
        )
    return ConservationReport(
        analyzer=_describe(analyzer),
        samples=n,
        explained=float(explained.sum()),
        input_relevance=float(at_inputs.sum()),
        gap=float(explained.sum() - at_inputs.sum()),
        threshold=float(threshold),
        layers=rows,
        explained_per_sample=explained,
        input_per_sample=at_inputs,
    )


__all__ = ["ConservationReport", "LayerConservation", "conservation_report"]
