"""What an ISNet variant is: a strategy that says which outputs are explained and how.

A :class:`Variant` receives one forward replay of the classifier (a :class:`Walks`: the
records, the logits, the labels) and returns the heatmaps it trains on, one backward walk
per map. It also says which class each sample's map explains, whether hidden-layer maps
(LRP deep supervision) come with it, and how its maps enter the heatmap loss. Variants are
registered by name (:func:`register_variant`); a new variant is one module (see
ARCHITECTURE.md, "How to add an ISNet variant").
"""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from keras_isnet import backend
from keras_isnet.losses import isnet_heatmap_loss

#: variant name -> variant (filled by :func:`register_variant`).
VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant) -> Variant:
    """Register ``variant`` under ``variant.name`` (the ``variant=`` of :class:`ISNet`)."""
    if not variant.name:
        raise ValueError("A variant needs a name.")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    """The registered variant ``name``; a ValueError listing the valid names otherwise."""
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown ISNet variant {name!r}; valid: {list(VARIANTS)}.") from None


@dataclass
class Walks:
    """One forward replay of the classifier, from which a variant walks its heatmaps.

    Attributes:
        heatmaps: the :class:`~keras_isnet.isnet.ISNetHeatmaps` (its engine and handlers).
        records: the replay's records.
        logits: ``(batch, K)``, or ``(batch, H, W, K)`` for segmentation.
        labels: the labels given (or None).
        x: the images ``(batch, H, W, C)``.
        seed: the ``keras.random.SeedGenerator`` of stochastic draws (or None).
        relevance: a dict that receives the relevance of every tensor of the walk that
            hidden-layer maps read (deep supervision), or None.
        classes: ``(batch,)`` int32 classes forced on the selective and stochastic variants
            (a recorded draw), or None: the variant chooses.
    """

    heatmaps: object
    records: list
    logits: object
    labels: object
    x: object
    seed: object = None
    relevance: dict | None = None
    classes: object = None

    def walk(self, seeds: dict, handlers=None, keep_relevance: bool = False):
        """The input relevance of one backward walk from ``seeds`` (zeros where none)."""
        engine = self.heatmaps.engine
        relevance = engine.backward(self.records, seeds, handlers or self.heatmaps.handlers)
        if keep_relevance and self.relevance is not None:
            self.relevance.update(relevance)
        r = relevance.get(engine.input_keys[0])
        return ops.zeros_like(self.x) if r is None else self.heatmaps.mode.input_map(self, r)

    def class_walk(self, classes, handlers=None, keep_relevance: bool = False):
        """The map of logit ``classes[b]`` per sample (``(batch,)`` int32)."""
        onehot = ops.cast(ops.one_hot(classes, self.logits.shape[-1]), self.logits.dtype)
        seeds = self.heatmaps.mode.class_seeds(self, onehot)
        return self.walk(seeds, handlers, keep_relevance)

    def segmentation_walk(self, classes, handlers=None, keep_relevance: bool = False):
        """The map of class ``classes[b]``'s logits summed over that class's pixels."""
        labels = self.segmentation_labels()
        k = self.logits.shape[-1]
        w = segmentation_weights(labels, k, classes, self.logits.dtype)
        seeds = self.heatmaps.mode.class_seeds(self, w)
        return self.walk(seeds, handlers, keep_relevance)

    def segmentation_labels(self):
        return segmentation_labels(self.labels, self.logits)


class Variant:
    """An ISNet variant. Subclasses implement :meth:`classification` and
    :meth:`segmentation` (or override :meth:`logits_and_heatmaps` entirely)."""

    #: the name ``ISNet(variant=...)`` takes.
    name = ""
    #: whether hidden-layer heatmaps (LRP deep supervision) come with this variant.
    supports_hidden = False

    def logits_and_heatmaps(
        self, heatmaps, x, labels, training, seed, relevance=None, classes=None
    ):
        """``(logits, maps)`` with maps ``(batch, n_maps, H, W, C)``; ``relevance`` (a dict)
        receives the relevance of the walk that hidden-layer maps read; ``classes`` forces
        the explained classes (see :meth:`explained_classes`)."""
        values, records = heatmaps.engine.replay(
            [x], training=training, canonization=heatmaps.canonization(training)
        )
        logits = values[heatmaps.engine.head_key]
        walks = Walks(heatmaps, records, logits, labels, x, seed, relevance, classes)
        if len(logits.shape) > 2:
            return logits, self.segmentation(walks)
        return logits, self.classification(walks)

    def classification(self, walks: Walks):
        """The maps of a classifier, ``(batch, n_maps, H, W, C)``."""
        raise NotImplementedError

    def segmentation(self, walks: Walks):
        """The maps of a segmentation model (logits ``(batch, H, W, K)``)."""
        raise ValueError(
            f"The ISNet variant {self.name!r} explains classifiers only; the model's logits "
            f"have shape {tuple(walks.logits.shape)}. Use a variant with segmentation support "
            "('selective', 'stochastic', 'original', 'dual')."
        )

    def explained_classes(self, walks: Walks):
        """The classes of the single-map variants: ``walks.classes`` when forced (a recorded
        draw), else :meth:`classes`."""
        if walks.classes is not None:
            return walks.classes
        return self.classes(walks.heatmaps, walks.logits, walks.labels, walks.seed)

    def classes(self, heatmaps, logits, labels, seed=None):
        """Per sample, the class its (single) map explains, ``(batch,)`` int32 (default: the
        ISNet's ``selective_class``: ``"argmin"``, ``"argmax"`` or ``"label"``)."""
        choice = heatmaps.selective_class
        if logits.shape[-1] == 1:  # a binary (1-unit) head: its one logit
            return ops.zeros(ops.shape(logits)[:1], "int32")
        if choice == "label":
            if labels is None:
                raise ValueError("selective_class='label' needs the labels.")
            return sparse_labels(labels)
        if choice == "argmax":
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        return ops.cast(ops.argmin(logits, axis=-1), "int32")

    def segmentation_classes(self, labels, k: int, seed=None):
        """Per sample, the class a segmentation map explains (default: the most frequent
        class of its label map, the lowest index on ties)."""
        return ops.cast(ops.argmax(class_counts(labels, k), axis=-1), "int32")

    def heatmap_loss(self, heatmaps, masks, loss_kwargs: dict):
        """The heatmap loss per sample ``(batch,)`` (``loss_kwargs`` as ``ISNet`` keeps them,
        ``C1``/``C2`` included)."""
        return isnet_heatmap_loss(heatmaps, masks, reduction="none", **loss_kwargs)

    def __repr__(self):
        return f"{type(self).__name__}()"


def replica_draw(draw, n):
    """This replica's rows of a random draw over the global batch.

    ``draw(rows)`` returns random values with ``rows`` leading rows. Under a distribution
    strategy every replica holds the same random state, so a draw of the local batch would
    give every replica the same numbers (both halves of a global batch would explain the same
    classes). Instead each replica draws for the whole global batch, ``n * replicas`` rows,
    and keeps its own ``n``: the global batch gets the draws a single device would make for
    it, sample for sample. On one device this is ``draw(n)``.

    Args:
        draw: ``rows -> (rows, ...)`` tensor, e.g. ``lambda r: keras.random.uniform((r,),
            seed=seed)``.
        n: the local batch size (an int or a scalar tensor).

    Returns:
        ``(n, ...)``: this replica's rows, in global batch order.
    """
    replica, replicas = backend.replica_position()
    if replicas == 1:
        return draw(n)
    values = draw(n * replicas)
    values = ops.reshape(values, (replicas, -1, *values.shape[1:]))
    return ops.take(values, replica, axis=0)


def class_counts(labels, k: int):
    """Pixels per class of each label map, ``(batch, K)`` float32."""
    pixel_axes = tuple(range(1, len(labels.shape)))
    return ops.sum(ops.one_hot(labels, k, dtype="float32"), axis=pixel_axes)


def segmentation_weights(labels, k, classes, dtype="float32"):
    """The seed weights explaining, per sample, class ``classes[b]`` over its pixels.

    ``w[b, i, j, c'] = (labels[b, i, j] == c') * (c' == classes[b])``, shaped like the
    logits ``(batch, H, W, K)``; the heatmap explains ``sum(logits * w)``, the class's
    logits summed over the pixels of that class (the same as
    ``create_analyzer(..., neuron_selection_mode="index")`` with these weights).
    """
    pixels = ops.one_hot(labels, k, dtype=dtype)
    chosen = ops.one_hot(classes, k, dtype=dtype)
    chosen = ops.reshape(chosen, (-1,) + (1,) * (len(labels.shape) - 1) + (k,))
    return ops.multiply(pixels, chosen)


def segmentation_labels(labels, logits):
    """Integer per-pixel labels ``(batch, H, W)`` for dense logits ``(batch, H, W, K)``.

    Accepts ``(batch, H, W)`` or ``(batch, H, W, 1)`` labels (integers, or floats holding
    integers).

    Raises:
        ValueError: missing labels, or labels whose shape does not match the logits' spatial
            shape (both shapes are named).
    """
    spatial = tuple(logits.shape[1:-1])
    expected = f"(batch, {', '.join(str(s) for s in spatial)})"
    if labels is None:
        raise ValueError(
            f"A segmentation ISNet (logits of shape (batch, *{spatial}, K)) needs per-pixel "
            f"integer labels of shape {expected}."
        )
    labels = ops.convert_to_tensor(labels)
    shape = tuple(labels.shape)
    if len(shape) == len(spatial) + 2 and shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
        shape = shape[:-1]
    if len(shape) != len(spatial) + 1 or any(
        a is not None and b is not None and a != b for a, b in zip(shape[1:], spatial, strict=True)
    ):
        raise ValueError(
            f"Segmentation labels must have shape {expected} (one integer class per output "
            f"pixel, matching the logits' shape (batch, *{spatial}, {logits.shape[-1]})); got "
            f"labels of shape {shape}."
        )
    return ops.cast(labels, "int32")


def sparse_labels(labels):
    """Integer class labels ``(batch,)`` from integer ``(batch,)``/``(batch, 1)`` or one-hot
    ``(batch, K)`` labels."""
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) >= 2 and labels.shape[-1] not in (None, 1):
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    return ops.cast(ops.reshape(labels, (-1,)), "int32")
