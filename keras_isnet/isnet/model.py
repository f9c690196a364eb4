"""``ki.ISNet``: background-bias suppression from plain ``model.fit``.

The ISNet (Bassi et al., Nature Communications 2024) trains a classifier with a second
loss on its own LRP heatmaps: relevance on the image background (mask = 0) is penalised,
so the network cannot rely on background shortcuts. At inference it is the plain
classifier, with no extra cost.

Example:
    >>> isnet = ki.ISNet(classifier, variant="selective", P=0.7)
    >>> isnet.compile(optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, clipnorm=1.0),
    ...               metrics=["accuracy"])
    >>> isnet.fit(ki.isnet_dataset(images, labels, masks, batch_size=64), epochs=10)
    >>> isnet.predict(images)          # the plain classifier's outputs
"""

from __future__ import annotations

import contextlib
import inspect
import warnings

import keras
import numpy as np
from keras import ops

from keras_isnet import backend
from keras_isnet.backend.host_checks import binary_problem, bounds_problem, finite_problem
from keras_isnet.callbacks.p_schedule import PSchedule
from keras_isnet.isnet import stateless
from keras_isnet.isnet.heads import SoftmaxHead, head_for, weighted_mean
from keras_isnet.isnet.heatmaps import ISNetHeatmaps
from keras_isnet.isnet.variants import get_variant
from keras_isnet.layers.base import activation_name
from keras_isnet.losses import (
    gwrp,
    isnet_heatmap_loss,
    loss_dtype,
    prepare_masks,
    validate_loss_options,
)

#: the reference defaults of the heatmap loss (method page, section 2): the loss's own
#: keyword defaults, but its reduction (the ISNet reduces per sample itself).
LOSS_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(isnet_heatmap_loss).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name != "reduction"
}


#: what to do about images outside ``input_bounds``.
_BOUNDS_HINT = (
    "The z^B rule of the first layer needs low <= x <= high: pass the range your images are "
    "scaled to as input_bounds (e.g. (0, 255); per-channel arrays for normalised images), or "
    "input_bounds=None for the epsilon rule there."
)

#: what to do about NaN/inf images.
_NAN_HINT = "A NaN image makes every weight NaN: clean or drop those samples."

#: the key of the stochastic variant's random-generator state among the ISNet's saved variables.
_SEED_STATE_KEY = "seed_generator_state"


def unpack_batch(data) -> tuple:
    """``(images, labels, masks)`` from a batch (a 3-tuple, ``(images, labels)``, images
    alone, or a dict with those keys); missing parts are None."""
    if isinstance(data, dict):
        return data.get("images"), data.get("labels"), data.get("masks")
    if not isinstance(data, (tuple, list)):
        return data, None, None
    data = tuple(data)
    if len(data) == 3:
        return data
    if len(data) == 2:
        return data[0], data[1], None
    return data[0], None, None


@keras.saving.register_keras_serializable(package="keras_isnet")
class ISNet(keras.Model):
    """A classifier trained with the ISNet heatmap loss.

    ``loss = (1 - P) * cross_entropy(labels, logits) + P * heatmap_loss(heatmaps, masks)``
    in ``train_step``; ``predict``, ``__call__`` and ``isnet.classifier`` are the plain model.

    Args:
        model: the classifier, a functional or Sequential Keras model whose output is logits
            or a softmax (which is stripped for the heatmaps and the loss). Its layers and
            weights are shared, not copied.
        variant: which output is explained:

            * ``"selective"`` (default): one heatmap of the softmax-derived quantity
              ``eta_c = log(p_c / (1 - p_c))`` (the LRP Block's selective ISNet; with
              ``lrp="flex"``, LRP-Flex's ``log(p_c + eps_s) - log(1 - p_c + eps_s)``, the
              Faster ISNet); see ``selective_class``;
            * ``"original"``: one heatmap per class (cost grows with the class count);
            * ``"stochastic"``: the top logit or a random other (LRP Block: one coin per
              batch, probability 1/2; LRP-Flex: per sample, probability 5/11);
            * ``"dual"``: an epsilon map and a z-plus map of the selective quantity; give
              ``C1``/``C2`` as pairs ``(epsilon_map, zplus_map)`` for per-rule cuts;
            * ``"gradient_x_input"``: the gradient-times-input ablation.
        P: the heatmap loss weight in [0, 1], default 0.7, or a schedule ``{epoch: P}``
            (the value of the largest key <= the current epoch applies).
        epsilon: the LRP epsilon, default 1e-2.
        input_bounds: ``(low, high)`` of the input for the z^B rule at the first layer,
            default ``(0.0, 1.0)`` (images in [0, 1]); numbers, or per-channel arrays
            broadcastable to the images for normalised inputs; None uses the epsilon rule
            there. Training and evaluation batches outside the bounds (by more than 1e-3 of
            the range) raise a ``ValueError``: the rule is undefined there.
        selective_class: ``"argmin"`` (default; the reference code explains the class with the
            lowest logit, although its docstrings say the highest), ``"argmax"`` or ``"label"``.
        seed: seed of the stochastic variant's random choices.
        lrp: which official implementation the heatmaps reproduce: ``"block"`` (default,
            the LRP Block: ISNetLayersZe / ISNetFunctionsZe / ISNetLightningZe) or
            ``"flex"`` (LRP-Flex: ISNetFlexTorch / ISNetFlexLightning; no deep supervision
            or dual variant). See :mod:`keras_isnet.isnet.modes`.
        selective_eps: LRP-Flex's ``eps_s`` of the selective quantity, in (0, 1), default
            1e-7 (``ISNetFlexLightning``; ``ISNetFlexTorch`` and ``RunISNetFlex.py`` use
            1e-2, whose maps are about ``p / eps_s`` smaller for the argmin class). Unused
            with ``lrp="block"``.
        deep_supervision: LRP deep supervision: ``{layer_name: {"C1": ..., "C2": ...}}``
            also penalises the relevance at the outputs of these hidden layers (image-like
            outputs: convolutions, pooling), each with its own cuts (tune them first); the
            masks are pooled to each layer's size. The input heatmap's loss and the hidden
            losses are combined per sample by a 1-D GWRP, largest first, with decay
            ``dLoss`` (default 0.8; 1 = plain mean). Selective and stochastic variants only.
        multilabel: the K outputs are independent labels (default False): multi-hot labels
            ``(batch, K)`` in {0, 1}, binary cross-entropy with logits per label (a final
            sigmoid is stripped like a softmax), the metrics see ``sigmoid(logits)``. A
            1-unit classifier is binary either way (labels ``(batch,)`` or ``(batch, 1)`` in
            {0, 1}). The selective variant then explains the chosen label's logit (its
            sigmoid's log-odds); ``"original"`` one map per label, as the reference code.
        pos_weight: the weight of the positive term of the binary cross-entropy per label,
            ``(K,)`` or a number, default None (1); as PyTorch's ``BCEWithLogitsLoss``, which
            the reference code uses (``Cweight``). Sigmoid heads only.
        **loss_kwargs: options of :func:`keras_isnet.losses.isnet_heatmap_loss` (``d=0.9``,
            ``E=1``, ``A=1``, ``B=3``, ``C1=1``, ``C2=25``, ``foreground="L2"``,
            ``norm="absRoIMean"``).

    Data: batches ``(images, labels, masks)`` with masks ``(batch, H, W)`` or
    ``(batch, H, W, 1)``, 1 = foreground, from a ``tf.data.Dataset``, a
    ``keras.utils.PyDataset`` or a generator; for NumPy arrays use
    :func:`keras_isnet.isnet_dataset` or ``fit(images, labels, sample_weight=masks)`` (the
    third slot of a Keras batch carries the masks). Labels are integers or one-hot (multi-hot
    with ``multilabel=True``); labels that do not fit the head are refused before any step.

    BatchNormalization: each BN is folded into its neighbouring Dense/convolution layer for
    the heatmaps (method page, section 3). ``fit`` folds with the batch statistics (no
    gradient through them inside the heatmap; gamma keeps its gradient), computes the
    logits as ``classifier(x, training=True)`` with their usual gradient and updates the
    moving statistics with the layer's momentum; ``evaluate`` folds with the moving
    statistics, as the LRP analyzers do. ``renorm=True`` is not supported.

    Segmentation: a dense-output model (logits ``(batch, H, W, K)``, e.g. a U-Net) trains
    with integer labels ``(batch, H, W)``; the classification loss is the mean per-pixel
    sparse categorical cross-entropy and compiled metrics (``"accuracy"``) are per pixel.
    Each heatmap explains one class's logits summed over the pixels labelled with that
    class; the mask is the region of the image the network may look at. ``"original"``
    gives one map per class (a class absent from a sample gives a zero map, whose
    foreground term is a constant), ``"stochastic"`` one map of a class drawn among those
    present in the sample's labels, ``"selective"`` one map of the sample's most frequent
    class (see :meth:`ISNetHeatmaps.segmentation_classes`; ``selective_class`` does not
    apply).

    Metrics: ``loss``, ``classification_loss``, ``heatmap_loss``, ``background_share``
    (|R| outside the mask / total |R|) and the compiled metrics on the logits.
    ``evaluate`` reports the ISNet loss when masks are present and the classification loss
    when they are not.
    """

    def __init__(
        self,
        model,
        variant: str = "selective",
        P=0.7,
        epsilon: float = 1e-2,
        input_bounds=(0.0, 1.0),
        selective_class: str = "argmin",
        seed: int | None = None,
        deep_supervision: dict | None = None,
        dLoss: float = 0.8,
        multilabel: bool = False,
        pos_weight=None,
        lrp: str = "block",
        selective_eps: float = 1e-7,
        **loss_kwargs,
    ):
        name = loss_kwargs.pop("name", None) or f"isnet_{model.name}"
        super().__init__(name=name)
        self._variant = get_variant(variant)
        unknown = set(loss_kwargs) - set(LOSS_DEFAULTS)
        if unknown:
            raise TypeError(
                f"Unknown ISNet arguments {sorted(unknown)}; the heatmap loss takes "
                f"{sorted(LOSS_DEFAULTS)}."
            )
        self.classifier = model
        self.variant = variant
        self.P = P
        self.epsilon = float(epsilon)
        self.input_bounds = _input_bounds(input_bounds)
        self.selective_class = selective_class
        self.seed = seed
        self.loss_kwargs = {**LOSS_DEFAULTS, **loss_kwargs}
        self._check_P(P)
        validate_loss_options(**self.loss_kwargs)
        self.multilabel = bool(multilabel)
        self.heatmaps = ISNetHeatmaps(
            model,
            epsilon=self.epsilon,
            input_bounds=self.input_bounds,
            selective_class=selective_class,
            multilabel=self.multilabel,
            lrp=lrp,
            selective_eps=selective_eps,
        )
        self.lrp = self.heatmaps.lrp
        self.selective_eps = self.heatmaps.selective_eps
        if self.lrp == "flex" and self._variant.name == "dual":
            raise ValueError(
                "variant='dual' needs a z-plus map, a relevance rule; lrp='flex' propagates a "
                "modified gradient. Use lrp='block' with the dual variant."
            )
        #: the classifier's head: its loss, label checks and metric probabilities.
        self.head = head_for(self.heatmaps.engine.head_shape(), self.multilabel, pos_weight)
        self.pos_weight = None if self.head.kind == "softmax" else self.head.pos_weight
        if self.head.kind == "softmax" and _final_activation(model) == "sigmoid":
            warnings.warn(
                f"{model.name!r} ends with a sigmoid over {self.head.classes} outputs, but the "
                "ISNet trains a softmax (one class per sample, sparse cross-entropy). For "
                "independent labels pass multilabel=True (binary cross-entropy per label).",
                stacklevel=2,
            )
        self.deep_supervision = None
        self.dLoss = float(dLoss)
        self._hidden_keys = {}
        self._class_weights = None  # set by fit(class_weight=...) for its steps
        if deep_supervision:
            if self.lrp == "flex":
                raise ValueError(
                    "deep_supervision needs relevance at hidden layers: use lrp='block' "
                    "(lrp='flex' propagates a modified gradient there)."
                )
            if not self._variant.supports_hidden:
                raise ValueError(
                    "deep_supervision works with the selective and stochastic variants, not "
                    f"{variant!r}."
                )
            for name, cuts in deep_supervision.items():
                if not isinstance(cuts, dict) or set(cuts) - {"C1", "C2"}:
                    raise ValueError(
                        f"deep_supervision[{name!r}] must be a dict with keys 'C1' and 'C2' "
                        f"(the layer's cuts), got {cuts!r}."
                    )
            self.deep_supervision = {k: dict(v) for k, v in deep_supervision.items()}
            self._hidden_keys = self.heatmaps.hidden_keys(list(self.deep_supervision))
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._P_value = keras.Variable(  # float64 for a float64 model: P = 0.7 exactly
            self._P_at(0),
            trainable=False,
            dtype=loss_dtype(model.dtype_policy.variable_dtype),
            name="heatmap_loss_weight",
        )
        self.built = True  # the classifier is built: saving then keeps the optimizer state
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "classification_loss", "heatmap_loss", "background_share")
        }
        for tracker in self._trackers.values():
            tracker._direction = "down"  # as Keras' own metrics say it (all lower is better)
        self._metric_list = list(self._trackers.values())

    # --------------------------------------------------------------------------- P
    @staticmethod
    def _check_P(P):
        values = P.values() if isinstance(P, dict) else [P]
        for v in values:
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"P must lie in [0, 1], got {v!r}.")
        if isinstance(P, dict) and 0 not in {int(k) for k in P}:
            raise ValueError(f"A P schedule needs a value for epoch 0, got keys {sorted(P)}.")

    def _P_at(self, epoch: int) -> float:
        if not isinstance(self.P, dict):
            return float(self.P)
        keys = sorted(int(k) for k in self.P if int(k) <= epoch)
        return float({int(k): v for k, v in self.P.items()}[keys[-1]])

    def fit(self, *args, callbacks=None, class_weight=None, **kwargs):
        """Keras' ``fit``; batches are ``(images, labels, masks)`` (see the class docstring).

        ``class_weight`` (``{class: weight}``, missing classes 1.0) weights each sample's
        classification and heatmap losses by its class, as Keras' ``class_weight`` weights the
        loss; the masks occupy Keras' ``sample_weight``, so the ISNet applies it itself.
        """
        self._use_class_weight(class_weight)
        data = args[0] if args else kwargs.get("x")
        if hasattr(data, "element_spec") and "shuffle" not in kwargs:
            kwargs["shuffle"] = False  # a tf.data.Dataset shuffles itself (isnet_dataset does)
        callbacks = list(callbacks or [])
        if isinstance(self.P, dict) and not any(isinstance(c, PSchedule) for c in callbacks):
            callbacks.append(PSchedule(self.P))
        for callback in callbacks:
            self._set_monitor_direction(callback)
        self._check_arrays(args, kwargs)
        with self._guarded():
            return super().fit(*args, callbacks=callbacks, **kwargs)

    def _set_monitor_direction(self, callback):
        """Give ``callback`` (e.g. ``ModelCheckpoint(monitor="val_heatmap_loss")``) the
        direction of the ISNet's own metrics: every one of them (``loss``,
        ``classification_loss``, ``heatmap_loss``, ``background_share``) is better lower.

        Keras' callbacks infer ``mode="auto"`` from the compiled metrics and from the name
        ``loss`` only, so without this they would raise for the ISNet's trackers. A callback
        given ``mode="min"``/``"max"`` is left as it is.
        """
        monitor = getattr(callback, "monitor", None)
        if not isinstance(monitor, str) or getattr(callback, "mode", None) != "auto":
            return
        if not isinstance(callback, keras.callbacks.Callback) or not hasattr(
            callback, "_set_monitor_op"
        ):
            return
        if monitor.removeprefix("val_") in self._trackers:
            callback.mode = "min"  # read when the callback first needs its direction

    def evaluate(self, *args, **kwargs):
        self._check_arrays(args, kwargs)
        with self._guarded():
            return super().evaluate(*args, **kwargs)

    def train_on_batch(self, *args, class_weight=None, **kwargs):
        self._use_class_weight(class_weight)
        self._check_arrays(args, kwargs)
        with self._guarded():
            return super().train_on_batch(*args, **kwargs)

    def _check_arrays(self, args, kwargs):
        """NumPy images and masks (``fit(images, labels, sample_weight=masks)``) are checked
        whole before the first step, so a bad value anywhere is rejected before any state
        changes (a dataset's batches are checked one by one inside the step)."""
        images = args[0] if args else kwargs.get("x")
        labels = args[1] if len(args) > 1 else kwargs.get("y")
        masks = args[2] if len(args) > 2 else kwargs.get("sample_weight")
        if isinstance(labels, (np.ndarray, list)):
            problem = self.head.labels_problem(labels)
            if problem is not None:
                raise ValueError(problem)
        if not isinstance(images, np.ndarray) or not isinstance(masks, np.ndarray):
            return
        problem = binary_problem(masks, "masks")
        if problem is None and len(masks) != len(images):
            problem = (
                f"ISNet: {len(images)} images but {len(masks)} masks (sample_weight); give one "
                "mask (H, W) per image."
            )
        if problem is None:
            problem = finite_problem(images, "ISNet: images", _NAN_HINT)
        if problem is None and self.input_bounds is not None:
            problem = bounds_problem(images, *self.input_bounds, "ISNet: images", _BOUNDS_HINT)
        if problem is not None:
            raise ValueError(problem)

    def _use_class_weight(self, class_weight):
        """Store ``class_weight`` as a ``(classes,)`` array for the next training steps (a
        change retraces the step)."""
        weights = None if class_weight is None else self._class_weight_array(class_weight)
        old = self._class_weights
        same = (old is None and weights is None) or (
            old is not None and weights is not None and np.array_equal(old, weights)
        )
        if not same:
            self._class_weights = weights
            self.train_function = None

    def _class_weight_array(self, class_weight):
        shape = self.classifier.output_shape
        problem = self.head.class_weight_problem()
        if problem:
            raise ValueError(problem)
        if not isinstance(class_weight, dict):
            raise TypeError(
                f"class_weight must be a dict {{class index: weight}}, got "
                f"{type(class_weight).__name__}."
            )
        if len(shape) != 2:
            raise ValueError(
                f"class_weight is for classifiers with (batch, classes) outputs; this model's "
                f"output has shape {shape}. For segmentation, balance classes in the data."
            )
        n = self.head.weight_classes
        weights = np.ones(n, dtype="float32")
        for key, value in class_weight.items():
            if not (isinstance(key, (int, np.integer)) and 0 <= key < n):
                raise ValueError(f"class_weight key {key!r} is not a class index in [0, {n}).")
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"class_weight[{key}] must be finite and >= 0, got {value!r}.")
            weights[key] = value
        return weights

    def test_on_batch(self, *args, **kwargs):
        with self._guarded():
            return super().test_on_batch(*args, **kwargs)

    @contextlib.contextmanager
    def _guarded(self):
        """Around Keras' training and evaluation entry points: non-binary masks raise a
        ``ValueError``, and a failed call drops Keras' cached step functions. A call that fails
        while its step is being traced (masks missing or of the wrong shape) leaves them
        half-built, and Keras' next call, even a correct one, would fail with "Creating
        variables on a non-first call to a function decorated with tf.function"; dropped,
        the corrected call traces afresh."""
        # JAX: Keras moves the variables' values into the compiled step's state (and donates
        # their buffers); a step that raises leaves the model without values. Keep copies.
        saved = None
        if keras.backend.backend() == "jax":
            state = list(self.variables) + list(self.metrics_variables)
            if self.optimizer is not None and self.optimizer.built:
                state += list(self.optimizer.variables)
            state = list({id(v): v for v in state}.values())
            saved = [(v, ops.copy(v.value)) for v in state]
        try:
            with backend.value_errors():
                yield
        except Exception:
            self.train_function = self.test_function = None
            for v, value in saved or ():
                v.assign(value)
            raise

    # ------------------------------------------------------------------------ calls
    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    @property
    def metrics(self):
        extra = [m for m in super().metrics if m not in self._metric_list and m.name != "loss"]
        return self._metric_list + extra

    def _isnet_losses(self, images, labels, masks, training, weights=None):
        """``(total, ce, heat, logits, heatmaps)``; ``weights``: optional per-sample loss
        weights ``(batch,)`` (class weights), the losses then ``mean(weights * loss)``."""
        out = self.heatmaps.logits_and_heatmaps(
            images,
            labels,
            variant=self._variant,
            training=training,
            seed=self._seed_generator,
            hidden=self._hidden_keys or None,
        )
        logits, heatmaps = out[0], out[1]
        ce = self.head.loss(labels, logits, weights)
        if self.deep_supervision:
            heat = self._deep_supervision_loss(heatmaps, out[2], masks)
        else:
            heat = self._heatmap_loss(heatmaps, masks)
        heat = weighted_mean(heat, weights)
        P = ops.cast(self._P_value, ce.dtype)
        total = ops.add(ops.multiply(1.0 - P, ce), ops.multiply(P, heat))
        return total, ce, heat, logits, heatmaps

    def _heatmap_loss(self, heatmaps, masks):
        """The heatmap loss per sample ``(batch,)`` (the variant's, e.g. per-map cuts)."""
        return self._variant.heatmap_loss(heatmaps, masks, self.loss_kwargs)

    def _deep_supervision_loss(self, heatmaps, hidden, masks):
        """Input and hidden-layer heatmap losses per sample, combined by a 1-D GWRP
        (``hidden``: the hidden layers' heatmaps by layer name)."""
        kwargs = {k: v for k, v in self.loss_kwargs.items() if k not in ("C1", "C2")}
        per_layer = [
            isnet_heatmap_loss(
                heatmaps,
                masks,
                C1=self.loss_kwargs["C1"],
                C2=self.loss_kwargs["C2"],
                reduction="none",
                **kwargs,
            )
        ]
        for name, cuts in self.deep_supervision.items():
            per_layer.append(
                isnet_heatmap_loss(
                    hidden[name], masks, C1=cuts["C1"], C2=cuts["C2"], reduction="none", **kwargs
                )
            )
        return gwrp(ops.stack(per_layer, axis=-1), self.dLoss, axis=-1)  # per sample

    def _update_trackers(self, total, ce, heat, heatmaps, masks):
        self._trackers["loss"].update_state(total)
        self._trackers["classification_loss"].update_state(ce)
        self._trackers["heatmap_loss"].update_state(heat)
        self._trackers["background_share"].update_state(_background_share(heatmaps, masks))

    def _require_masks(self, masks, where):
        if masks is None:
            raise ValueError(
                f"ISNet.{where} needs foreground masks: give batches (images, labels, masks) "
                "(masks (batch, H, W), 1 = foreground), e.g. ki.isnet_dataset(images, labels, "
                "masks, batch_size) or fit(images, labels, sample_weight=masks)."
            )

    def _checked(self, masks, images):
        """``(masks, images)`` released after the in-graph checks: binary masks, and images
        within ``input_bounds`` (the z^B rule is only defined there; images in [0, 255]
        with the default bounds would give meaningless heatmaps and a huge loss)."""
        masks, images = backend.assert_binary(masks, images)
        if self.input_bounds is None:
            images, masks = backend.assert_finite(
                images, masks, what="ISNet: images", hint=_NAN_HINT
            )
            return masks, images
        low, high = self.input_bounds
        images, masks = backend.assert_within(
            images,
            low,
            high,
            masks,
            what="ISNet: images",
            hint=_BOUNDS_HINT,
        )
        return masks, images

    def train_step(self, *args):
        """One ISNet training step: ``train_step(data)`` on TensorFlow and PyTorch,
        ``train_step(state, data) -> (logs, state)`` on JAX (Keras' stateless step)."""
        if keras.backend.backend() == "jax":
            return self._stateless_train_step(*args)
        (data,) = args
        images, labels, masks = unpack_batch(data)
        self._require_masks(masks, "fit")
        masks = _masks_of_known_rank(masks, images)
        if labels is None:
            raise ValueError("ISNet.fit needs labels: give batches (images, labels, masks).")
        masks, images = self._checked(masks, images)
        labels, masks, images = self.head.checked_labels(labels, masks, images)
        variables = self.trainable_variables

        weights = None
        if self._class_weights is not None:
            weights = ops.take(
                ops.convert_to_tensor(self._class_weights), self.head.sample_classes(labels)
            )

        def loss_fn():
            total, ce, heat, logits, heatmaps = self._isnet_losses(
                images, labels, masks, True, weights
            )
            for extra in self.classifier.losses:
                total = ops.add(total, extra)
            # the optimizer scales the loss under mixed precision (LossScaleOptimizer), and
            # unscales the gradients in apply(); identity otherwise
            scaled = self.optimizer.scale_loss(backend.scale_loss_for_distribution(total))
            return scaled, (total, ce, heat, logits, heatmaps)

        # every state change of the step (BatchNorm statistics, random draws, the update)
        # waits for the input checks that gate images, masks and labels
        with backend.after([images, masks, labels]):
            (_, aux), grads = backend.value_and_gradients(loss_fn, variables)
        total, ce, heat, logits, heatmaps = aux
        with backend.after(grads):  # a failed input check then stops the iteration count too
            self.optimizer.apply(grads, variables)
        self._update_trackers(total, ce, heat, heatmaps, masks)
        return self._compiled_metrics(labels, logits)

    def test_step(self, *args):
        """One evaluation step (``test_step(state, data)`` on JAX, as ``train_step``)."""
        if keras.backend.backend() == "jax":
            return self._stateless_test_step(*args)
        (data,) = args
        images, labels, masks = unpack_batch(data)
        if masks is None:
            logits = self.heatmaps.logits(images, training=False)
            ce = self.head.loss(labels, logits)
            self._trackers["loss"].update_state(ce)
            self._trackers["classification_loss"].update_state(ce)
            results = self._compiled_metrics(labels, logits)
            return {
                k: v for k, v in results.items() if k not in ("heatmap_loss", "background_share")
            }
        masks = _masks_of_known_rank(masks, images)
        masks, images = self._checked(masks, images)
        total, ce, heat, logits, heatmaps = self._isnet_losses(images, labels, masks, False)
        self._update_trackers(total, ce, heat, heatmaps, masks)
        return self._compiled_metrics(labels, logits)

    # ------------------------------------------------------------ JAX (stateless)
    def _stateless_train_step(self, state, data):
        """The JAX step: state in, state out (:mod:`keras_isnet.isnet.stateless`). The losses,
        heatmaps and BatchNorm statistics are computed under a ``StatelessScope`` over the
        traced variable values, so the moving statistics and the stochastic variant's seed
        come back as the new non-trainable state instead of being assigned."""
        images, labels, masks = unpack_batch(data)
        self._require_masks(masks, "fit")
        if labels is None:
            raise ValueError("ISNet.fit needs labels: give batches (images, labels, masks).")
        masks = _masks_of_known_rank(masks, images)
        weights = None
        if self._class_weights is not None:
            weights = ops.take(
                ops.convert_to_tensor(self._class_weights), self.head.sample_classes(labels)
            )

        def compute():
            total, ce, heat, logits, heatmaps = self._isnet_losses(
                images, labels, masks, True, weights
            )
            for extra in self.classifier.losses:
                total = ops.add(total, extra)
            return total, (ce, heat, logits, heatmaps)

        def update_metrics(total, aux):
            ce, heat, logits, heatmaps = aux
            self._update_trackers(total, ce, heat, heatmaps, masks)
            return self._compiled_metrics(labels, logits)

        return stateless.train_step(self, state, compute, update_metrics)

    def _stateless_test_step(self, state, data):
        images, labels, masks = unpack_batch(data)
        if masks is not None:
            masks = _masks_of_known_rank(masks, images)

        def compute():
            if masks is None:
                logits = self.heatmaps.logits(images, training=False)
                return None, (self.head.loss(labels, logits), None, logits, None)
            total, ce, heat, logits, heatmaps = self._isnet_losses(images, labels, masks, False)
            return total, (ce, heat, logits, heatmaps)

        def update_metrics(total, aux):
            ce, heat, logits, heatmaps = aux
            if heatmaps is None:  # the plain loss and metrics, as test_step without masks
                self._trackers["loss"].update_state(ce)
                self._trackers["classification_loss"].update_state(ce)
                logs = self._compiled_metrics(labels, logits)
                return {
                    k: v for k, v in logs.items() if k not in ("heatmap_loss", "background_share")
                }
            self._update_trackers(total, ce, heat, heatmaps, masks)
            return self._compiled_metrics(labels, logits)

        return stateless.test_step(self, state, compute, update_metrics)

    def make_train_function(self, force=False):
        """Keras' step function; on JAX each batch is checked on the host (binary masks,
        images within ``input_bounds``, no NaN) before the compiled step sees it, so a bad
        batch raises a ``ValueError`` before any state changes."""
        super().make_train_function(force)
        if keras.backend.backend() == "jax":
            self.train_function = self._checking(self.train_function)

    def make_test_function(self, force=False):
        super().make_test_function(force)
        if keras.backend.backend() == "jax":
            self.test_function = self._checking(self.test_function)

    def _checking(self, step_function):
        if getattr(step_function, "_isnet_checked", False):
            return step_function

        def checked(state, iterator):
            return step_function(state, (self._host_checked(data) for data in iterator))

        checked._isnet_checked = True
        return checked

    def _host_checked(self, data):
        images, labels, masks = unpack_batch(data)
        if masks is not None:
            self._checked(masks, images)  # raises ValueError on concrete values
        if labels is not None:
            problem = self.head.labels_problem(np.asarray(labels))
            if problem is not None:
                raise ValueError(problem)
        return data

    def _compiled_metrics(self, labels, logits):
        if labels is not None and self._compile_metrics is not None:
            self._compile_metrics.update_state(
                self.head.metric_labels(labels, logits), self.head.probabilities(logits)
            )
        return self.get_metrics_result()

    # ---------------------------------------------------------------- serialization
    def save_own_variables(self, store):
        """Saves the ISNet's own state: P and the state of the random generator of the
        stochastic variant (the classifier's weights are saved by the classifier).

        Keras does not save ``SeedGenerator`` states; without it a reloaded stochastic ISNet
        would repeat the random class draws of its first steps instead of continuing them.
        """
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self._seed_generator.state

    def load_own_variables(self, store):
        """Loads what :meth:`save_own_variables` saved. A file written before the random
        generator's state was saved leaves the generator as the ``seed`` argument set it."""
        keys = [k for k in store.keys() if k != _SEED_STATE_KEY]
        super().load_own_variables({k: store[k] for k in keys})
        if _SEED_STATE_KEY in store.keys():
            self._seed_generator.state.assign(store[_SEED_STATE_KEY])

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.classifier),
            "variant": self.variant,
            "P": self.P,
            "epsilon": self.epsilon,
            "input_bounds": None
            if self.input_bounds is None
            else [np.asarray(b).tolist() for b in self.input_bounds],
            "selective_class": self.selective_class,
            "seed": self.seed,
            "deep_supervision": self.deep_supervision,
            "dLoss": self.dLoss,
            "multilabel": self.multilabel,
            "pos_weight": None if self.pos_weight is None else self.pos_weight.tolist(),
            "lrp": self.lrp,
            "selective_eps": self.selective_eps,
            "name": self.name,
            **self.loss_kwargs,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        if isinstance(config.get("P"), dict):
            config["P"] = {int(k): v for k, v in config["P"].items()}
        return cls(model, **config)


def _final_activation(model) -> str:
    """The name of the activation that ends ``model``'s first output (``""`` if none)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return ""
    layer = outputs[0]._keras_history[0]
    return activation_name(layer)


def _masks_of_known_rank(masks, images):
    """``masks``, or ``(batch, H, W)`` masks (``H, W`` of the images) if their rank is unknown.

    Both documented mask forms, ``(batch, H, W)`` and ``(batch, H, W, 1)``, reach the traced
    step through one ``tf.function`` that Keras builds with ``reduce_retracing``: once it has
    seen both ranks (two ``fit`` calls with different forms, or one generator yielding both),
    it retraces with the relaxed signature, masks of unknown rank. Both forms hold the same
    ``batch * H * W`` values in the same order, so a reshape to the images' spatial size
    gives one rank again. Such masks must have the images' spatial size (as
    :func:`keras_isnet.isnet_dataset` requires); otherwise the reshape fails when it runs.
    """
    masks = ops.convert_to_tensor(masks)
    if ops.ndim(masks) is not None:
        return masks
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(
            f"ISNet: images of shape {tuple(images.shape)} need a static height and width."
        )
    return ops.reshape(masks, (ops.shape(images)[0], height, width))


def classification_loss(labels, logits, sample_weight=None):
    """Mean sparse cross-entropy on logits, in float32 (float64 for float64 logits).

    The loss is never computed below float32 (float16/bfloat16 logits of a mixed-precision
    policy are cast first), nor below the logits' precision. (The softmax head's loss; the
    ISNet uses its :attr:`ISNet.head`, which is binary cross-entropy for sigmoid heads.)

    Args:
        labels: integer labels ``(batch,)`` or one-hot ``(batch, K)``; for dense outputs,
            per-pixel labels ``(batch, H, W)`` (the mean is then over pixels too).
        logits: ``(batch, K)`` or ``(batch, H, W, K)``.
        sample_weight: optional ``(batch,)`` weights: ``mean(sample_weight * ce)`` (Keras'
            ``sum_over_batch_size``), default None (unweighted).
    """
    head = SoftmaxHead(logits.shape[-1], dense=len(logits.shape) > 2)
    return head.loss(labels, logits, sample_weight)


def _background_share(heatmaps, masks):
    """Mean over the batch of |R| outside the mask / total |R| (heatmaps (B, K, H, W, C))."""
    h = ops.abs(ops.cast(heatmaps, loss_dtype(heatmaps.dtype)))
    h = ops.sum(h, axis=(1, 4))  # (B, H, W)
    m = ops.cast(prepare_masks(masks, tuple(h.shape[1:3])), h.dtype)
    total = ops.sum(h, axis=(1, 2))
    outside = ops.sum(ops.multiply(h, 1.0 - m), axis=(1, 2))
    return ops.mean(ops.divide(outside, ops.where(total > 1e-12, total, 1e-12)))


def _input_bounds(bounds):
    """``(low, high)`` as numbers or float32 arrays (per-channel bounds given as lists,
    arrays, or the ``__numpy__`` dicts of configs saved before bounds were stored as lists)."""
    if bounds is None:
        return None
    if len(bounds) != 2:
        raise ValueError(f"input_bounds must be (low, high) or None, got {bounds!r}.")
    out = []
    for b in bounds:
        if isinstance(b, dict) and b.get("class_name") == "__numpy__":
            b = b["config"]["value"]
        b = np.asarray(b, dtype="float32")
        out.append(float(b) if b.ndim == 0 else b)
    if np.any(np.asarray(out[0]) >= np.asarray(out[1])):
        raise ValueError(f"input_bounds must have low < high, got {bounds!r}.")
    return tuple(out)
