"""The LRP heatmaps an ISNet trains on, for every variant of the method.

One forward replay of the classifier gives the logits and the per-layer pullbacks; each
heatmap is then one backward walk over the same records, so the "original" ISNet's K maps
share their forward pass. Which outputs are explained, and how many maps there are, is the
variant's business (:mod:`keras_isnet.isnet.variants`); how relevance is propagated is the
LRP mode's (:mod:`keras_isnet.isnet.modes`, ``lrp=``):

* ``"block"`` (default), the official LRP Block: the ``"isnet"`` composite
  (:mod:`keras_isnet.composites.isnet`): LRP-epsilon (epsilon 1e-2, the bias a detached
  constant) on Dense/Conv layers, the epsilon-stabilised z-rule at average pooling and Add,
  epsilon-stabilised max pooling, and the z^B rule with the input bounds and the detached
  bias at the first layer.
* ``"flex"``, the official LRP-Flex: the ReLUs' gradient replaced by ``g y / (y + eps)``,
  plain gradients elsewhere, the same z^B rule at the first layer.

Heatmaps are differentiable with respect to the weights.

BatchNormalization is folded into its neighbouring Dense/convolution layer (method page,
section 3): at inference (``training=False``) with the moving statistics, as the LRP
analyzers do (``bn_rule="fold"``); in training mode with the batch mean and unbiased
variance of the BN input, under ``stop_gradient`` inside the heatmap (gamma keeps its
gradient, also inside the folded bias, as the official ``FuseBN``), while the logits and
layer outputs keep the gradient of plain Keras training, and the moving statistics are
updated with the layer's momentum, once per forward replay. LRP-Flex folds only a BN after
the first layer; its hidden BNs run as layers (in training mode with the gradient through
the batch statistics). A BN that cannot be folded runs as the Keras layer and relevance
passes through it unchanged (with a warning).

Example:
    >>> heatmaps = ISNetHeatmaps(model, epsilon=1e-2, input_bounds=(0.0, 1.0))
    >>> logits, maps = heatmaps.logits_and_heatmaps(x, labels, variant="selective")
    >>> maps.shape     # (batch, 1, H, W, C)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.analyzers.lrp import LRP
from keras_isnet.composites import build_composite
from keras_isnet.engine import Engine
from keras_isnet.isnet.heads import head_for
from keras_isnet.isnet.modes import check_selective_eps, get_lrp_mode
from keras_isnet.isnet.variants import VARIANTS, get_variant, segmentation_weights

SELECTIVE_CLASSES = ("argmin", "argmax", "label")


class ISNetHeatmaps:
    """LRP heatmaps for ISNet training.

    It holds an :class:`~keras_isnet.engine.Engine` of the classifier, the ``"isnet"``
    composite bound to it and the LRP mode (:mod:`keras_isnet.isnet.modes`): how the maps are
    propagated; each variant (a strategy in :data:`keras_isnet.isnet.variants.VARIANTS`) says
    what is explained and walks its maps over one replay.

    Args:
        model: the classifier (logits, or a final softmax that is stripped).
        epsilon: the epsilon of every rule, default 1e-2.
        input_bounds: ``(low, high)`` of the input for the z^B rule at the first layer,
            default ``(0.0, 1.0)``; None uses the epsilon rule there too (LRP-Flex: input x
            its modified gradient).
        selective_class: the class c of the selective ISNet's quantity
            ``eta_c = log(p_c / (1 - p_c))``: ``"argmin"`` (default: what the reference
            code does, the lowest logit), ``"argmax"`` (what its docstrings say) or
            ``"label"`` (the true class).
        multilabel: the classifier's K logits are independent sigmoid labels (default
            False; a 1-unit classifier is binary either way): the selective variant then
            explains the chosen label's logit, the log-odds of its sigmoid, instead of the
            softmax quantity.
        lrp: ``"block"`` (default): the official LRP Block ISNet (ISNetLayersZe,
            ISNetFunctionsZe, ISNetLightningZe); ``"flex"``: the official LRP-Flex
            (ISNetFlexTorch, ISNetFlexLightning). See :mod:`keras_isnet.isnet.modes`.
        selective_eps: LRP-Flex's stabiliser ``eps_s`` of its selective quantity
            ``log(p_c + eps_s) - log(1 - p_c + eps_s)``, in (0, 1); default 1e-7 (as
            ``ISNetFlexLightning``; ``ISNetFlexTorch`` and ``RunISNetFlex.py`` use 1e-2).
            Unused by the LRP Block, whose selective quantity is exact.

    Example:
        >>> heatmaps = ISNetHeatmaps(model, lrp="flex")
        >>> logits, maps = heatmaps.logits_and_heatmaps(x, y, variant="original")
    """

    def __init__(
        self,
        model,
        *,
        epsilon=1e-2,
        input_bounds=(0.0, 1.0),
        selective_class="argmin",
        multilabel: bool = False,
        lrp: str = "block",
        selective_eps: float = 1e-7,
    ):
        if selective_class not in SELECTIVE_CLASSES:
            raise ValueError(
                f"Unknown selective_class {selective_class!r}; valid values are "
                f"{list(SELECTIVE_CLASSES)}."
            )
        mode_class = get_lrp_mode(lrp)
        self.selective_eps = check_selective_eps(selective_eps)
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.renorm:
                raise NotImplementedError(
                    f"ISNet training does not support BatchNormalization with renorm=True "
                    f"(layer {layer.name!r}). Use renorm=False."
                )
        self.model = model
        self.epsilon = float(epsilon)
        self.input_bounds = input_bounds
        self.selective_class = selective_class
        self.lrp = mode_class.name
        self.composite = build_composite(
            "isnet", {"epsilon": self.epsilon, "input_bounds": input_bounds}
        )
        self.engine = Engine(model, canonizers=self.composite.canonizers)
        #: the head (softmax, or sigmoid for multilabel=True and 1-unit classifiers): the
        #: selective variant explains a sigmoid label's log-odds, its logit.
        self.head = head_for(self.engine.head_shape(), multilabel)
        if self.head.sigmoid and not self.head.binary and selective_class == "label":
            raise ValueError(
                "selective_class='label' picks the true class, but a multi-label sample has "
                "several; use 'argmin' (default) or 'argmax', or variant='original' for a map "
                "per label."
            )
        self.rules = self.composite.bind(self.engine, "fold", who="ISNetHeatmaps")
        #: the LRP mode (:class:`~keras_isnet.isnet.modes.BlockLRP` or ``FlexLRP``).
        self.mode = mode_class(self)
        self._handlers_by_rule: dict = {}
        self._analyzer = None

    @property
    def handlers(self) -> dict:
        """The backward handlers of the mode, per step."""
        return self.mode.handlers()

    # ------------------------------------------------------------------------- passes
    def canonization(self, training: bool):
        """The BatchNormalization folds of the mode: moving statistics at inference (as the
        LRP analyzers), batch statistics in training mode (see
        :meth:`keras_isnet.canonizers.KernelFold.training_weights`)."""
        return self.mode.canonization(training)

    def handlers_with_kernel_rule(self, rule) -> dict:
        """Handlers with ``rule`` on every kernel layer (the dual ISNet's z-plus map); BN
        folded into its neighbour still passes relevance. Built once per rule."""
        if not self.mode.supports_relevance_rules:
            raise ValueError(
                f"lrp={self.lrp!r} propagates a modified gradient and takes no other kernel "
                "rule (the dual variant's z-plus map); use lrp='block'."
            )
        key = id(rule)
        if key not in self._handlers_by_rule:
            bound = self.composite.with_kernel_rule(rule).bind(self.engine, "fold")
            self._handlers_by_rule[key] = bound.handlers()
        return self._handlers_by_rule[key]

    def logits(self, x, training=False):
        """The classifier's logits (the final softmax stripped), ``(batch, K)``."""
        values, _ = self.engine.replay(
            [x], training=training, canonization=self.canonization(training)
        )
        return values[self.engine.head_key]

    # ------------------------------------------------------------------------- classes
    def choose_classes(self, logits, labels, variant, seed=None):
        """Per sample, the class whose heatmap is computed (selective and stochastic)."""
        return get_variant(variant).classes(self, logits, labels, seed)

    def segmentation_classes(self, labels, k, variant, seed=None):
        """Per sample, the class a segmentation heatmap explains (``(batch,)`` int32).

        ``"stochastic"``: uniform among the classes present in the sample's label map;
        otherwise (``"selective"``, ``"dual"``, ``"gradient_x_input"``) the most frequent
        class, the lowest index on ties.
        """
        return get_variant(variant).segmentation_classes(labels, k, seed)

    segmentation_weights = staticmethod(segmentation_weights)

    # ----------------------------------------------------------------------- heatmaps
    def logits_and_heatmaps(
        self,
        x,
        labels=None,
        *,
        variant="selective",
        training=False,
        seed=None,
        hidden=None,
        classes=None,
    ):
        """The classifier's logits and the heatmaps of ``variant``.

        Args:
            x: images ``(batch, H, W, C)``.
            labels: integer labels ``(batch,)`` or one-hot ``(batch, K)``; needed for
                ``selective_class="label"``.
            variant: one of :data:`VARIANTS` (a name, or a registered variant object).
            training: run the classifier in training mode (dropout; BatchNormalization with
                batch statistics, which also updates its moving statistics).
            seed: a ``keras.random.SeedGenerator`` for the stochastic variant.
            hidden: optional ``{name: tensor key}`` from :meth:`hidden_keys` (LRP deep
                supervision; selective and stochastic variants): the relevance of the same
                backward walk at those layers' outputs is returned too.
            classes: optional ``(batch,)`` integer classes that the selective and
                stochastic variants explain instead of choosing (a recorded random draw, e.g.
                the official code's, for a reproducible comparison); None (default) draws or
                chooses as the variant does. The random state stays untouched.

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
        strategy = get_variant(variant)
        if classes is not None:
            classes = ops.cast(ops.convert_to_tensor(classes), "int32")
        if not hidden:
            return strategy.logits_and_heatmaps(self, x, labels, training, seed, None, classes)
        if not strategy.supports_hidden:
            hidden_ok = [name for name, v in VARIANTS.items() if v.supports_hidden]
            raise ValueError(
                "Hidden-layer heatmaps (deep supervision) come with the "
                f"{' and '.join(hidden_ok)} variants, not {strategy.name!r}."
            )
        relevance = {}
        if not self.mode.supports_relevance_rules:
            raise ValueError(
                f"Hidden-layer heatmaps (deep supervision) need relevance at hidden layers; "
                f"lrp={self.lrp!r} propagates a modified gradient there. Use lrp='block'."
            )
        logits, maps = strategy.logits_and_heatmaps(
            self, x, labels, training, seed, relevance, classes
        )
        hidden_maps = {
            name: None if relevance.get(key) is None else ops.expand_dims(relevance[key], 1)
            for name, key in hidden.items()
        }
        return logits, maps, hidden_maps

    def hidden_keys(self, layer_names) -> dict:
        """The output tensor key of each named layer (for LRP deep supervision).

        Raises:
            ValueError: for a name that is no layer of the model (the valid names are listed)
                or a layer whose output is not an image-like ``(batch, H, W, C)`` tensor.
        """
        steps = self.engine.steps
        by_name = {}
        for step in steps:
            by_name.setdefault(step.layer.name, step)
            by_name.setdefault(step.path, step)
        keys = {}
        for name in layer_names:
            if name not in by_name:
                raise ValueError(
                    f"deep_supervision names layer {name!r}, which is not in model "
                    f"{self.model.name!r}; its layers are {sorted({s.path for s in steps})}."
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

    @property
    def analyzer(self) -> LRP:
        """An LRP analyzer with the ISNet's rules (``neuron_selection_mode="index"``), for
        ``analyze``, ``conservation_report`` and the other analyzer tools."""
        if not self.mode.supports_relevance_rules:
            raise ValueError(
                f"The ISNet heatmaps' analyzer has the LRP Block's rules; lrp={self.lrp!r} is "
                "a modified gradient, not a composite. Use ISNetHeatmaps(model, lrp='block')."
            )
        if self._analyzer is None:
            self._analyzer = LRP(
                self.model, composite=self.composite, neuron_selection_mode="index"
            )
        return self._analyzer


__all__ = ["SELECTIVE_CLASSES", "VARIANTS", "ISNetHeatmaps"]
