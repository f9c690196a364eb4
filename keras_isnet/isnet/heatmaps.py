"""The LRP heatmaps an ISNet trains on, for every variant of the method.

One forward replay of the classifier gives the logits and the per-layer pullbacks; each
heatmap is then one backward walk over the same records, so the "original" ISNet's K maps
share their forward pass. The rules follow the ISNet reference (see
``shared/design/isnet-method.md`` section 3): LRP-epsilon (epsilon 1e-2, the bias a constant
input) on Dense/Conv layers, the epsilon-stabilised z-rule at average pooling and Add,
winner-takes-all max pooling, and the z^B rule with the input bounds at the first layer.
Heatmaps are differentiable with respect to the weights.

BatchNormalization is folded into its neighbouring Dense/convolution layer (method page,
section 3): at inference (``training=False``) with the moving statistics, as the LRP
analyzers do (``bn_rule="fold"``); in training mode with the batch statistics of the BN
input, under ``stop_gradient`` inside the heatmap (gamma keeps its gradient; the folded bias,
beta included, is a constant of the epsilon rule), while the logits and layer outputs keep
the gradient of plain Keras training, and the moving statistics are updated with the layer's
momentum, once per forward replay. A BN that cannot be folded runs as the Keras layer and
relevance passes through it unchanged (with a warning).

Example:
    >>> engine = ISNetHeatmaps(model, epsilon=1e-2, input_bounds=(0.0, 1.0))
    >>> logits, heatmaps = engine.logits_and_heatmaps(x, labels, variant="selective")
    >>> heatmaps.shape     # (batch, 1, H, W, C)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.analyzers.lrp import LRP
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.propagation import backward
from keras_isnet.rules import BoundedRule, EpsilonRule, ZPlusRule
from keras_isnet.rules.base import stabilize

VARIANTS = ("selective", "original", "stochastic", "dual", "gradient_x_input")
SELECTIVE_CLASSES = ("argmin", "argmax", "label")

#: probability that the stochastic ISNet explains the top logit (reference: 5/11).
STOCHASTIC_TOP_PROBABILITY = 5.0 / 11.0


class ISNetHeatmaps(LRP):
    """LRP heatmaps for ISNet training.

    Args:
        model: the classifier (logits, or a final softmax that is stripped).
        epsilon: the epsilon of every rule, default 1e-2.
        input_bounds: ``(low, high)`` of the input for the z^B rule at the first layer,
            default ``(0.0, 1.0)``; None uses the epsilon rule there too.
        selective_class: the class c of the selective ISNet's quantity
            ``eta_c = log(p_c / (1 - p_c))``: ``"argmin"`` (default: what the reference
            code does, the lowest logit), ``"argmax"`` (what its docstrings say) or
            ``"label"`` (the true class).
    """

    def __init__(self, model, *, epsilon=1e-2, input_bounds=(0.0, 1.0), selective_class="argmin"):
        if selective_class not in SELECTIVE_CLASSES:
            raise ValueError(
                f"Unknown selective_class {selective_class!r}; valid values are "
                f"{list(SELECTIVE_CLASSES)}."
            )
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.renorm:
                raise NotImplementedError(
                    f"ISNet training does not support BatchNormalization with renorm=True "
                    f"(layer {layer.name!r}). Use renorm=False."
                )
        self.epsilon = float(epsilon)
        self.input_bounds = input_bounds
        self.selective_class = selective_class
        first = None
        if input_bounds is not None:
            first = BoundedRule(low=input_bounds[0], high=input_bounds[1], epsilon=self.epsilon)
        super().__init__(
            model,
            rule=EpsilonRule(epsilon=self.epsilon, detach_bias=True),
            input_layer_rule=first,
            weightless_epsilon=self.epsilon,
            neuron_selection_mode="index",
        )
        self._training_plan = None if self._canonization is None else self._canonization.training()
        self._zplus_handlers = None
        head_step = self._producer.get(self._head_key)
        self._head_step = head_step
        self._head_is_kernel = head_step is not None and isinstance(
            lookup(head_step.layer), KernelLayer
        )

    # ------------------------------------------------------------------------- classes
    def choose_classes(self, logits, labels, variant, seed=None):
        """Per sample, the class whose heatmap is computed (selective and stochastic)."""
        if variant == "stochastic":
            top = ops.argmax(logits, axis=-1)
            k = ops.shape(logits)[-1]
            shift = keras.random.randint(ops.shape(top), 1, k, seed=seed, dtype="int32")
            other = ops.mod(ops.cast(top, "int32") + shift, k)
            coin = keras.random.uniform(ops.shape(top), seed=seed) < STOCHASTIC_TOP_PROBABILITY
            return ops.where(coin, ops.cast(top, "int32"), other)
        if self.selective_class == "label":
            if labels is None:
                raise ValueError("selective_class='label' needs the labels.")
            return _sparse_labels(labels)
        if self.selective_class == "argmax":
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        return ops.cast(ops.argmin(logits, axis=-1), "int32")

    # ----------------------------------------------------------------------- heatmaps
    def logits_and_heatmaps(
        self, x, labels=None, *, variant="selective", training=False, seed=None, hidden=None
    ):
        """The classifier's logits and the heatmaps of ``variant``.

        Args:
            x: images ``(batch, H, W, C)``.
            labels: integer labels ``(batch,)`` or one-hot ``(batch, K)``; needed for
                ``selective_class="label"``.
            variant: one of :data:`VARIANTS`.
            training: run the classifier in training mode (dropout; BatchNormalization with
                batch statistics, which also updates its moving statistics).
            seed: a ``keras.random.SeedGenerator`` for the stochastic variant.
            hidden: optional ``{name: tensor key}`` from :meth:`hidden_keys` (LRP deep
                supervision; selective and stochastic variants): the relevance of the same
                backward walk at those layers' outputs is returned too.

        Returns:
            ``(logits, heatmaps)``: ``(batch, K)`` and ``(batch, maps, H, W, C)`` with
            ``maps`` = 1 (selective, stochastic, gradient_x_input), K (original) or 2 (dual:
            epsilon map, then z-plus map). With ``hidden``, ``(logits, heatmaps,
            hidden_maps)``, ``hidden_maps[name]`` shaped ``(batch, 1, h, w, c)`` (None where
            no relevance reaches the layer).

        Segmentation: a model with dense logits ``(batch, H', W', K)`` takes integer labels
        ``(batch, H', W')`` (or ``(batch, H', W', 1)``), and each heatmap explains the logits
        of one class summed over the pixels labelled with that class (see
        :meth:`segmentation_weights`): ``"original"``, one map per class c; ``"stochastic"``,
        per sample a class drawn uniformly among the classes present in its label map;
        ``"selective"``, per sample the most frequent class of its label map (the lowest
        index on ties; the classification's ``eta_c`` quantity is not used); ``"dual"``,
        the epsilon and z-plus maps of the selective choice; ``"gradient_x_input"``, the
        gradient times input of the selective choice.
        """
        if variant not in VARIANTS:
            raise ValueError(f"Unknown ISNet variant {variant!r}; valid: {list(VARIANTS)}.")
        if hidden:
            if variant not in ("selective", "stochastic"):
                raise ValueError(
                    "Hidden-layer heatmaps (deep supervision) come with the selective and "
                    f"stochastic variants, not {variant!r}."
                )
            relevance = {}
            logits, maps = self._logits_and_heatmaps(x, labels, variant, training, seed, relevance)
            return (
                logits,
                maps,
                {
                    name: None if relevance.get(key) is None else ops.expand_dims(relevance[key], 1)
                    for name, key in hidden.items()
                },
            )
        return self._logits_and_heatmaps(x, labels, variant, training, seed)

    def _logits_and_heatmaps(self, x, labels, variant, training, seed, relevance=None):
        """:meth:`logits_and_heatmaps`; ``relevance``, if a dict, receives the relevance of
        every tensor from the (single) backward walk of the selective/stochastic variant."""
        if variant == "gradient_x_input":
            return self._gradient_x_input(x, labels, training)
        values, records = self._replay([x], training=training, canonization=self._plan(training))
        logits = values[self._head_key]
        input_key = self._input_keys[0]
        if len(logits.shape) > 2:
            return logits, self._segmentation_heatmaps(
                records, logits, labels, variant, seed, x, relevance
            )
        if variant == "original":
            k = logits.shape[-1]
            maps = []
            for c in range(k):
                onehot = ops.one_hot(ops.full(ops.shape(logits)[:1], c, "int32"), k)
                seeds = {self._head_key: ops.multiply(logits, ops.cast(onehot, logits.dtype))}
                maps.append(self._walk(records, seeds, self._handlers, input_key, x))
            return logits, ops.stack(maps, axis=1)
        classes = self.choose_classes(logits, labels, variant, seed)
        if variant == "stochastic":
            onehot = ops.cast(ops.one_hot(classes, logits.shape[-1]), logits.dtype)
            seeds = {self._head_key: ops.multiply(logits, onehot)}
            return logits, ops.expand_dims(
                self._walk(records, seeds, self._handlers, input_key, x, relevance), 1
            )
        seeds = self._selective_seeds(records, logits, classes)
        maps = [self._walk(records, seeds, self._handlers, input_key, x, relevance)]
        if variant == "dual":
            maps.append(self._walk(records, seeds, self._zplus(), input_key, x))
        return logits, ops.stack(maps, axis=1)

    # ---------------------------------------------------------------- segmentation
    def segmentation_classes(self, labels, k, variant, seed=None):
        """Per sample, the class a segmentation heatmap explains (``(batch,)`` int32).

        ``"stochastic"``: uniform among the classes present in the sample's label map;
        otherwise (``"selective"``, ``"dual"``, ``"gradient_x_input"``) the most frequent
        class, the lowest index on ties.
        """
        pixel_axes = tuple(range(1, len(labels.shape)))
        counts = ops.sum(ops.one_hot(labels, k, dtype="float32"), axis=pixel_axes)  # (batch, K)
        if variant == "stochastic":
            noise = keras.random.uniform(ops.shape(counts), seed=seed)
            scores = ops.where(counts > 0, noise, -1.0)
            return ops.cast(ops.argmax(scores, axis=-1), "int32")
        return ops.cast(ops.argmax(counts, axis=-1), "int32")

    @staticmethod
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

    def _segmentation_heatmaps(self, records, logits, labels, variant, seed, x, relevance=None):
        labels = segmentation_labels(labels, logits)
        k = logits.shape[-1]
        input_key = self._input_keys[0]
        batch = ops.shape(logits)[:1]

        def walk(classes, handlers=None, out=None):
            w = self.segmentation_weights(labels, k, classes, logits.dtype)
            seeds = {self._head_key: ops.multiply(logits, w)}
            return self._walk(records, seeds, handlers or self._handlers, input_key, x, out)

        if variant == "original":
            maps = [walk(ops.full(batch, c, "int32")) for c in range(k)]
            return ops.stack(maps, axis=1)
        classes = self.segmentation_classes(labels, k, variant, seed)
        maps = [walk(classes, out=relevance)]
        if variant == "dual":
            maps.append(walk(classes, self._zplus()))
        return ops.stack(maps, axis=1)

    def _walk(self, records, seeds, handlers, input_key, x, out=None):
        relevance = backward(records, seeds, handlers)
        if out is not None:
            out.update(relevance)
        r = relevance.get(input_key)
        return ops.zeros_like(x) if r is None else r

    def hidden_keys(self, layer_names) -> dict:
        """The output tensor key of each named layer (for LRP deep supervision).

        Raises:
            ValueError: for a name that is no layer of the model (the valid names are listed)
                or a layer whose output is not an image-like ``(batch, H, W, C)`` tensor.
        """
        by_name = {}
        for step in self._steps:
            by_name.setdefault(step.layer.name, step)
            by_name.setdefault(step.path, step)
        keys = {}
        for name in layer_names:
            if name not in by_name:
                raise ValueError(
                    f"deep_supervision names layer {name!r}, which is not in model "
                    f"{self.model.name!r}; its layers are {sorted({s.path for s in self._steps})}."
                )
            step = by_name[name]
            shape = step.node.outputs[0].shape
            if len(shape) != 4:
                raise ValueError(
                    f"deep_supervision layer {name!r} outputs shape {tuple(shape)}; hidden "
                    "heatmaps need image-like (batch, H, W, C) outputs (e.g. convolution or "
                    "pooling layers)."
                )
            keys[name] = step.outputs[0]
        return keys

    def _zplus(self):
        """Handlers with the z-plus rule on kernel layers (the dual ISNet's second map)."""
        if self._zplus_handlers is None:
            rule = ZPlusRule()
            handlers = dict(self._handlers)
            for step in self._steps:
                if (
                    step.index in handlers
                    and isinstance(lookup(step.layer), KernelLayer)
                    and not self._bn_passes(step)  # BN folded into its neighbour, or passed
                ):
                    handlers[step.index] = lambda record, Rs, r=rule: [r(record.kernel, Rs[0])]
            self._zplus_handlers = handlers
        return self._zplus_handlers

    def _selective_seeds(self, records, logits, classes):
        """Relevance at the last layer's input for ``eta_c`` (method page, section 4).

        ``z_cc' = z_c - z_c'`` (bias a constant), ``R_cc' = z_cc' e^{-z_cc'} /
        (sum_c'' e^{-z_cc''} - 1 + 1e-5)``, then LRP-epsilon through the virtual layer with
        weights ``w_c - w_c'``.
        """
        if not self._head_is_kernel:
            raise ValueError(
                "The selective ISNet explains the logits through the last Dense/Conv layer, but "
                f"the logits of {self.model.name!r} come from "
                f"{type(self._head_step.layer).__name__ if self._head_step else 'an input'}. "
                "Use variant='stochastic' or 'original', or end the model with a Dense layer."
            )
        record = records[self._head_step.index]
        call = record.kernel
        z = (
            call.add_bias(call.z_nobias, ops.stop_gradient(call.bias))
            if call.bias is not None
            else call.z_nobias
        )
        k = z.shape[-1]
        onehot = ops.cast(ops.one_hot(classes, k), z.dtype)
        z_c = ops.sum(ops.multiply(z, onehot), axis=-1, keepdims=True)
        zcc = ops.subtract(z_c, z)  # 0 at c' = c
        # Stable form of e^{-zcc} / (sum e^{-zcc''} - 1): a softmax over c' != c.
        masked = ops.where(onehot > 0, ops.full_like(zcc, -1e30), ops.negative(zcc))
        lse = ops.logsumexp(masked, axis=-1, keepdims=True)
        weights = ops.multiply(ops.exp(ops.subtract(masked, lse)), 1.0 - onehot)
        correction = ops.divide(1.0, ops.add(1.0, ops.multiply(1e-5, ops.exp(ops.negative(lse)))))
        R = ops.multiply(ops.multiply(zcc, weights), correction)
        s = ops.divide(R, stabilize(zcc, self.epsilon))
        s_total = ops.sum(s, axis=-1, keepdims=True)
        cotangent = ops.subtract(ops.multiply(onehot, s_total), s)
        r_a = ops.multiply(call.x, call.pullback(cotangent))
        return {record.input_keys[0]: r_a}

    def _gradient_x_input(self, x, labels, training):
        from keras_isnet.backend import vjp

        logits, pullback = vjp(lambda v: self._logits(v, training), [x])
        if len(logits.shape) > 2:  # segmentation: the selective choice's class pixels
            sparse = segmentation_labels(labels, logits)
            k = logits.shape[-1]
            classes = self.segmentation_classes(sparse, k, "selective")
            w = self.segmentation_weights(sparse, k, classes, logits.dtype)
            return logits, ops.expand_dims(ops.multiply(x, pullback(w)[0]), 1)
        classes = self.choose_classes(logits, labels, "selective")
        onehot = ops.cast(ops.one_hot(classes, logits.shape[-1]), logits.dtype)
        return logits, ops.expand_dims(ops.multiply(x, pullback(onehot)[0]), 1)

    def _logits(self, x, training):
        values, _ = self._replay([x], training=training, canonization=self._plan(training))
        return values[self._head_key]

    def _plan(self, training):
        """The BatchNormalization folds: moving statistics at inference (as the LRP
        analyzers), batch statistics in training mode (see
        :meth:`keras_isnet.canonizers.KernelFold.training_weights`)."""
        return self._training_plan if training else self._canonization

    def logits(self, x, training=False):
        """The classifier's logits (the final softmax stripped), ``(batch, K)``."""
        return self._logits(x, training)


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


def _sparse_labels(labels):
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) >= 2 and labels.shape[-1] not in (None, 1):
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    return ops.cast(ops.reshape(labels, (-1,)), "int32")


def _all_layers(model):
    yield from model._flatten_layers(include_self=False, recursive=True)
