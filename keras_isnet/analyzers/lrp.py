"""Layer-wise Relevance Propagation analyzers (iNNvestigate's ``lrp.*`` names).

Kernel layers (Dense, convolutions) get a decomposition rule chosen per layer; the other
layers are handled by kind (see :mod:`keras_isnet.layers.base`): element-wise layers pass
relevance unchanged, routing layers (reshapes, concatenation, max pooling) route it along
the gradient, average pooling and Add split it with the z-rule, Embedding sums it over the
embedding axis.

Example:
    >>> analyzer = ki.create_analyzer("lrp.epsilon", model, epsilon=1e-7)
    >>> heatmaps = analyzer.analyze(x)          # same shape as x
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
from keras import ops

from keras_isnet.analyzers.base import Analyzer
from keras_isnet.canonizers import plan_batch_norm_folds
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.layers.normalization import BatchNormalizationReverse
from keras_isnet.layers.pooling import MAX_POOLING
from keras_isnet.rules import (
    AlphaBetaRule,
    BoundedRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    NormRule,
    PassRule,
    Rule,
    WSquareRule,
    ZBoxRule,
    ZennitAlphaBetaRule,
    ZPlusFastRule,
    ZPlusRule,
    ZRule,
    get_rule,
)
from keras_isnet.rules.base import safe_divide, stabilize

#: the values of ``bn_rule``.
BN_RULES = ("fold", "pass", "linear")


def _pass_handler(record, Rs):
    return [Rs[0]]


def _kind(spec, layer) -> str:
    """The reverse kind of one layer (a description may decide per instance)."""
    kind_for = getattr(spec, "kind_for", None)
    return kind_for(layer) if kind_for is not None else spec.kind


def _rule_uses_bias(rule) -> bool:
    if isinstance(rule, NormRule):
        return True
    if isinstance(rule, (BoundedRule, ZBoxRule, FlatRule, WSquareRule, ZPlusFastRule, PassRule)):
        return False
    return bool(getattr(rule, "bias", False))


def _rule_label(rule) -> str:
    name = rule.name or type(rule).__name__
    for attr in ("epsilon", "gamma"):
        value = getattr(rule, attr, None)
        if isinstance(value, float) and not isinstance(rule, ZBoxRule):
            name += f"({attr[0] if attr == 'epsilon' else 'g'}={value:g})"
    if isinstance(rule, (AlphaBetaRule, ZennitAlphaBetaRule)) and "ZPlus" not in rule.name:
        name += f"(a={rule.alpha:g},b={rule.beta:g})"
    if getattr(rule, "bias", True) is False and not isinstance(rule, ZPlusRule):
        name += "[no bias]"
    return name


def _condition(spec_key) -> Callable:
    """A ``condition(layer, category) -> bool`` from a rule-map key."""
    if callable(spec_key) and not isinstance(spec_key, type):
        return lambda layer, category: bool(spec_key(layer))
    if isinstance(spec_key, type):
        return lambda layer, category: isinstance(layer, spec_key)
    if isinstance(spec_key, str):
        return lambda layer, category: spec_key in (layer.name, category)
    raise TypeError(
        f"Rule-map key {spec_key!r} must be a layer class, a layer name, a category "
        "('dense', 'conv', 'affine') or a callable layer -> bool."
    )


class LRP(Analyzer):
    """LRP with a rule per kernel layer.

    Args:
        model: the Keras model.
        rule: the rule for kernel layers: a rule name (``"Epsilon"``, ``"Z"``,
            ``"Alpha2Beta1"``, ... see :data:`keras_isnet.rules.RULES`), a
            :class:`~keras_isnet.rules.Rule` instance, or a rule map: a list of
            ``(condition, rule)`` pairs or a dict ``{condition: rule}``, tried in order, where
            a condition is a Keras layer class, a layer name, a category (``"dense"``,
            ``"conv"``, ``"affine"`` for BatchNormalization with ``bn_rule="linear"``,
            ``"weightless"`` for Add/Average/average pooling) or a callable
            ``layer -> bool``. Rules for weightless layers (:class:`~keras_isnet.rules.NormRule`,
            :class:`~keras_isnet.rules.PassRule`) apply to the weightless layers a rule-map
            entry names; other rules apply to kernel layers only. The first layer's rule is
            ``input_layer_rule``.
        input_layer_rule: rule for the first kernel layer(s) (those with no kernel layer
            between them and the input): ``"Flat"``, ``"WSquare"``, ``(low, high)`` for the
            bounded z^B rule, or any rule. Default None (no special rule).
        until_layer_idx, until_layer_rule: apply ``until_layer_rule`` to the kernel layers
            numbered ``0..until_layer_idx`` in graph order (BatchNormalization not counted).
        bn_rule: how relevance crosses BatchNormalization:

            * ``"fold"`` (default): fold each BN into its Dense/conv neighbour found from the
              graph (layer -> BN: ``W' = W s``, ``b' = (b - mean) s + beta`` with
              ``s = gamma / sqrt(var + eps)``; BN -> layer where exact), see
              :mod:`keras_isnet.canonizers`. The kernel rule then sees the folded weights,
              and with ``bias=False`` the folded bias (the BN shift) is ignored too, so
              bias-free rules conserve relevance. A BN that cannot be folded exactly passes
              relevance unchanged, with a warning naming it. The model is not modified.
            * ``"pass"``: relevance passes through BN unchanged.
            * ``"linear"``: BN is an element-wise affine layer ``s x + (beta - mean s)``
              under ``bn_layer_rule`` (or the rule map's "affine" entry, else epsilon).

            Default None means "fold", or "linear" when ``bn_layer_rule`` is given.
        compute_dtype: None (default: the model's dtype, float32) or ``"float64"``: the
            forward replay and every rule run in double precision, with the weights cast
            (the model is not modified). Slower; for checking conservation where relevance
            is large and cancels (bias-free rules on BatchNorm-folded networks amplify
            float32 rounding), and for reference heatmaps. Results are float64.
        bn_layer_rule: rule for BatchNormalization with ``bn_rule="linear"``. Default:
            whatever the rule map gives, else the epsilon rule.
        weightless_epsilon: stabiliser of the z-rule at average pooling and Add: None
            (default) divides by the exact sum guarded only at zero, as iNNvestigate does; a
            float uses ``z + eps * sign(z)``.
        neuron_selection_mode, output_index, strip_softmax: see :class:`Analyzer`.
    """

    name = "lrp"

    def __init__(
        self,
        model,
        rule=None,
        *,
        input_layer_rule=None,
        until_layer_idx: int | None = None,
        until_layer_rule=None,
        bn_layer_rule=None,
        weightless_epsilon: float | None = None,
        bn_rule: str | None = None,
        compute_dtype: str | None = None,
        **kwargs,
    ):
        if rule is None:
            raise ValueError(
                "LRP needs rule=...: a rule name such as 'Epsilon', a Rule, or a rule map "
                "[(condition, rule), ...]; or use a preset such as 'lrp.epsilon'."
            )
        self._rule_map = self._parse_rule_map(rule)
        self._input_layer_rule = None if input_layer_rule is None else get_rule(input_layer_rule)
        self._until = (until_layer_idx, until_layer_rule)
        if until_layer_rule is not None and until_layer_idx is None:
            raise ValueError("until_layer_rule needs until_layer_idx (the last layer number).")
        self._bn_layer_rule = None if bn_layer_rule is None else get_rule(bn_layer_rule)
        if bn_rule is None:
            bn_rule = "linear" if bn_layer_rule is not None else "fold"
        if bn_rule not in BN_RULES:
            raise ValueError(f"Unknown bn_rule {bn_rule!r}; valid values are {list(BN_RULES)}.")
        if bn_layer_rule is not None and bn_rule != "linear":
            raise ValueError(
                f"bn_layer_rule={bn_layer_rule!r} applies to BatchNormalization only with "
                f"bn_rule='linear', but bn_rule={bn_rule!r}; drop one of the two."
            )
        self.bn_rule = bn_rule
        self.fold_plan = None
        if compute_dtype not in (None, "float32", "float64"):
            raise ValueError(
                f"compute_dtype must be None, 'float32' or 'float64', got {compute_dtype!r}."
            )
        self._compute_dtype = compute_dtype
        self._weightless_epsilon = weightless_epsilon
        self._kernel_numbers = None
        self._first_kernels = None
        super().__init__(model, **kwargs)

    # --------------------------------------------------------------------------- rules
    @staticmethod
    def _parse_rule_map(rule):
        if isinstance(rule, dict):
            rule = list(rule.items())
        if isinstance(rule, list):
            if not all(isinstance(item, tuple) and len(item) == 2 for item in rule):
                raise TypeError(
                    f"A rule map is a list of (condition, rule) pairs or a dict; got {rule!r}."
                )
            return [(_condition(cond), get_rule(r), True) for cond, r in rule]
        return [(lambda layer, category: True, get_rule(rule), False)]

    def _number_kernel_layers(self):
        """Number kernel steps in graph order and find the first ones (next to the input)."""
        numbers, first = {}, set()
        after_kernel = {k: False for k in self._input_keys}
        count = 0
        for step in self._steps:
            spec = lookup(step.layer)
            is_kernel = isinstance(spec, KernelLayer) and spec.category != "affine"
            upstream = any(after_kernel.get(k, False) for k in step.inputs)
            if is_kernel:
                numbers[step.index] = count
                count += 1
                if not upstream:
                    first.add(step.index)
            for k in step.outputs:
                after_kernel[k] = upstream or is_kernel
        self._kernel_numbers, self._first_kernels = numbers, first

    def rule_for(self, step) -> Rule:
        """The rule used at kernel step ``step`` (also useful to inspect a configuration)."""
        if self._kernel_numbers is None:
            self._number_kernel_layers()
        spec = lookup(step.layer)
        if self._bn_passes(step):
            return PassRule()
        if spec.category == "affine":
            bn_rule = self._bn_layer_rule or getattr(self, "_preset_bn_layer_rule", None)
            if bn_rule is not None:
                return bn_rule
        if step.index in self._first_kernels and self._input_layer_rule is not None:
            return self._input_layer_rule
        until_idx, until_rule = self._until
        number = self._kernel_numbers.get(step.index)
        if until_rule is not None and number is not None and number <= until_idx:
            return get_rule(until_rule)
        for condition, rule, _ in self._rule_map:
            if condition(step.layer, spec.category):
                return rule
        if spec.category == "affine":
            return EpsilonRule()
        raise ValueError(
            f"No LRP rule applies to layer {step.path!r} ({type(step.layer).__name__}, "
            f"category {spec.category!r}); add a condition for it to the rule map."
        )

    def _nonkernel_rule(self, step):
        """A rule-map rule for a weightless layer (Norm, Pass), matched by class or name."""
        for condition, rule, explicit in self._rule_map:
            if (
                explicit
                and hasattr(rule, "reverse_weightless")
                and condition(step.layer, "weightless")
            ):
                return rule
        return None

    # ------------------------------------------------------------------ BatchNormalization
    def _canonize(self):
        if self.bn_rule != "fold":
            return None
        protected = set(self._output_keys) | {self._head_key}
        plan = plan_batch_norm_folds(self._steps, protected_keys=protected)
        self.fold_plan = plan
        for fold in plan.folds.values():
            if fold.before is not None:  # the layer now reads the BN's input
                bn = fold.before
                self._nonnegative[bn.outputs[0]] = self._nonnegative.get(bn.inputs[0], False)
        by_index = {step.index: step for step in self._steps}
        unfolded = [
            (by_index[index].path, why)
            for index, why in plan.fallbacks.items()
            if index in self._active
        ]
        if unfolded:  # one warning, not one per layer (a DenseNet has dozens)
            shown = "; ".join(f"{path!r} ({why})" for path, why in unfolded[:5])
            if len(unfolded) > 5:
                rest = ", ".join(repr(path) for path, _ in unfolded[5:])
                shown += f"; and {len(unfolded) - 5} more: {rest}"
            warnings.warn(
                f"{len(unfolded)} BatchNormalization layer(s) cannot be folded into a "
                f"neighbouring Dense/conv layer: {shown}. Relevance passes through them "
                "unchanged (bn_rule='pass' for these layers). Pass bn_rule='pass' or "
                "'linear' to choose explicitly.",
                stacklevel=4,
            )
        return plan if plan.folds else None

    def _is_batch_norm(self, step) -> bool:
        return isinstance(lookup(step.layer), BatchNormalizationReverse)

    def _bn_passes(self, step) -> bool:
        """Whether ``step`` is a BN that relevance crosses unchanged (pass or folded)."""
        return self.bn_rule != "linear" and self._is_batch_norm(step)

    # ------------------------------------------------------------------------ handlers
    def _weightless_divide(self, R, z):
        if self._weightless_epsilon is None:
            return safe_divide(R, z)
        return ops.divide(R, stabilize(z, self._weightless_epsilon))

    def _handler(self, step):
        spec = lookup(step.layer)
        if spec is None:
            raise self._unsupported(step)
        kind = _kind(spec, step.layer)
        if kind == "kernel":
            if self._bn_passes(step):
                return _pass_handler
            rule = self.rule_for(step)
            return lambda record, Rs: [rule(record.kernel, Rs[0])]
        if kind == "elementwise":
            if len(set(step.inputs)) != 1 or len(step.outputs) != 1:
                raise self._unsupported(step, "an element-wise layer needs one input and output")
            in_shape = tuple(step.node.input_tensors[0].shape[1:])
            out_shape = tuple(step.node.outputs[0].shape[1:])
            if in_shape != out_shape:
                raise self._unsupported(
                    step, f"registered as element-wise but maps {in_shape} to {out_shape}"
                )
            return lambda record, Rs: [Rs[0]]
        if kind == "routing":
            return lambda record, Rs: record.pullback(Rs)
        if kind == "weightless_linear":
            rule = self._nonkernel_rule(step)
            if rule is not None:
                return lambda record, Rs: list(
                    rule.reverse_weightless(
                        step.layer, record.inputs, record.outputs, record.pullback, Rs
                    )
                )
            return self._weightless_handler
        if kind == "embedding":
            return lambda record, Rs: [ops.sum(Rs[0], axis=-1)]
        if kind == "custom":
            return lambda record, Rs: list(spec.fn(step.layer, record.inputs, record.outputs, Rs))
        raise self._unsupported(step, f"unknown reverse kind {kind!r}")

    def _weightless_handler(self, record, Rs):
        s = [self._weightless_divide(R, y) for R, y in zip(Rs, record.outputs, strict=True)]
        grads = record.pullback(s)
        return [
            None if g is None else ops.multiply(x, g)
            for x, g in zip(record.inputs, grads, strict=True)
        ]

    # ------------------------------------------------------------------- conservation
    def conservation_info(self, step) -> tuple[str, list[str]]:
        """How relevance crosses ``step``: ``(rule label, possible causes of absorption)``.

        Used by :func:`keras_isnet.conservation_report` to explain where relevance goes.
        The causes are what can make the relevance leaving a layer differ from the
        relevance arriving: ``"bias"``, ``"BN shift of 'bn1'"``, ``"epsilon"``,
        ``"zero denominators"``, ``"max-pool ties"``, ``"non-conserving rule"``, ...

        Example:
            >>> analyzer.conservation_info(step)
            ('Epsilon(e=1e-09)', ['bias', "BN shift of 'bn1' (folded)", 'epsilon'])
        """
        spec = lookup(step.layer)
        if spec is None:
            return "unsupported", []
        kind = _kind(spec, step.layer)
        if kind == "kernel":
            plan = self.fold_plan
            if self._is_batch_norm(step) and self.bn_rule != "linear":
                folded = plan.folded_into(step.index) if plan is not None else None
                if folded is not None:
                    return f"folded into {folded[0].path!r}", []
                return "Pass", []
            rule = self.rule_for(step)
            causes = []
            if _rule_uses_bias(rule):
                if self._is_batch_norm(step):
                    causes.append("BN shift")
                elif getattr(step.layer, "use_bias", False):
                    causes.append("bias")
                fold = None if plan is None else plan.folds.get(step.index)
                if fold is not None:
                    for bn in (fold.before, fold.after):
                        if bn is not None:
                            causes.append(f"BN shift of {bn.path!r} (folded)")
            if isinstance(rule, (EpsilonRule, NormRule, GammaRule, ZennitAlphaBetaRule, ZBoxRule)):
                causes.append("epsilon")
            elif isinstance(rule, BoundedRule) and rule.epsilon is not None:
                causes.append("epsilon")
            elif not isinstance(rule, PassRule):
                causes.append("zero denominators")
            if isinstance(rule, (AlphaBetaRule, ZennitAlphaBetaRule)) and rule.beta > 0:
                causes.append("non-conserving rule (alpha-beta where one part is zero)")
            return _rule_label(rule), causes
        if kind == "weightless_linear":
            rule = self._nonkernel_rule(step)
            if rule is not None:
                return _rule_label(rule), ([] if isinstance(rule, PassRule) else ["epsilon"])
            if self._weightless_epsilon is None:
                return "z-rule", ["zero denominators"]
            return f"z-rule(e={self._weightless_epsilon:g})", ["epsilon"]
        if kind == "routing":
            layer = step.layer
            if isinstance(layer, MAX_POOLING):
                return "winner-take-all", ["max-pool ties"]
            padding = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D)
            if isinstance(layer, (*padding, keras.layers.ZeroPadding3D)):
                return "routing", ["relevance on the padding"]
            return "routing", []
        if kind == "elementwise":
            return "pass", []
        if kind == "embedding":
            return "sum over embedding", []
        return spec.label, list(spec.causes)


# ------------------------------------------------------------------------------- presets
class LRPZ(LRP):
    """LRP-0 (``lrp.z``); ``bias=False`` is iNNvestigate's LRPZIgnoreBias."""

    name = "lrp.z"

    def __init__(self, model, *, bias: bool = True, **kwargs):
        self.bias = bias
        super().__init__(model, rule=ZRule(bias=bias), **kwargs)


class LRPEpsilon(LRP):
    """LRP-epsilon (``lrp.epsilon``), epsilon 1e-7 by default; ``bias=False`` ignores biases."""

    name = "lrp.epsilon"

    def __init__(self, model, *, epsilon: float = 1e-7, bias: bool = True, **kwargs):
        self.epsilon = epsilon
        self.bias = bias
        super().__init__(model, rule=EpsilonRule(epsilon=epsilon, bias=bias), **kwargs)


class LRPWSquare(LRP):
    """The w-square rule on every kernel layer (``lrp.w_square``)."""

    name = "lrp.w_square"

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=WSquareRule(), **kwargs)


class LRPFlat(LRP):
    """The flat rule on every kernel layer (``lrp.flat``)."""

    name = "lrp.flat"

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=FlatRule(), **kwargs)


class LRPAlphaBeta(LRP):
    """LRP-alpha-beta (``lrp.alpha_beta``): give alpha or beta, alpha - beta = 1."""

    name = "lrp.alpha_beta"

    def __init__(self, model, *, alpha=None, beta=None, bias: bool = True, **kwargs):
        self.bias = bias
        super().__init__(model, rule=AlphaBetaRule(alpha=alpha, beta=beta, bias=bias), **kwargs)


def _fixed_alpha_beta(alpha, beta, bias, name, doc):
    class _Preset(LRP):
        def __init__(self, model, **kwargs):
            super().__init__(model, rule=AlphaBetaRule(alpha=alpha, beta=beta, bias=bias), **kwargs)

    _Preset.name = name
    _Preset.__doc__ = doc
    return _Preset


LRPAlpha2Beta1 = _fixed_alpha_beta(2, 1, True, "lrp.alpha_2_beta_1", "LRP-alpha2-beta1.")
LRPAlpha2Beta1IgnoreBias = _fixed_alpha_beta(
    2, 1, False, "lrp.alpha_2_beta_1_IB", "LRP-alpha2-beta1, biases ignored."
)
LRPAlpha1Beta0 = _fixed_alpha_beta(1, 0, True, "lrp.alpha_1_beta_0", "LRP-alpha1-beta0.")
LRPAlpha1Beta0IgnoreBias = _fixed_alpha_beta(
    1, 0, False, "lrp.alpha_1_beta_0_IB", "LRP-alpha1-beta0, biases ignored."
)
for _cls, _name in (
    (LRPAlpha2Beta1, "LRPAlpha2Beta1"),
    (LRPAlpha2Beta1IgnoreBias, "LRPAlpha2Beta1IgnoreBias"),
    (LRPAlpha1Beta0, "LRPAlpha1Beta0"),
    (LRPAlpha1Beta0IgnoreBias, "LRPAlpha1Beta0IgnoreBias"),
):
    _cls.__name__ = _cls.__qualname__ = _name


class LRPZPlus(LRP):
    """z-plus (``lrp.z_plus``): alpha1-beta0 ignoring biases."""

    name = "lrp.z_plus"

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=ZPlusRule(), **kwargs)


class LRPZPlusFast(LRP):
    """z-plus for non-negative inputs, one pass (``lrp.z_plus_fast``)."""

    name = "lrp.z_plus_fast"

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=ZPlusFastRule(), **kwargs)


class LRPSequentialPresetA(LRP):
    """Epsilon (0.1) on dense layers, alpha1-beta0 on convolutions (``lrp.sequential_preset_a``).

    Args:
        epsilon: the dense layers' epsilon, default 0.1.
    """

    name = "lrp.sequential_preset_a"
    conv_rule = (1, 0)

    def __init__(self, model, *, epsilon: float = 1e-1, **kwargs):
        alpha, beta = self.conv_rule
        rules = [
            ("dense", EpsilonRule(epsilon=epsilon, bias=True)),
            ("conv", AlphaBetaRule(alpha=alpha, beta=beta, bias=True)),
        ]
        # iNNvestigate's BN rule, used with bn_rule="linear" unless bn_layer_rule is given.
        self._preset_bn_layer_rule = EpsilonRule(epsilon=epsilon, bias=True)
        super().__init__(model, rule=rules, **kwargs)


class LRPSequentialPresetB(LRPSequentialPresetA):
    """Epsilon (0.1) on dense layers, alpha2-beta1 on convolutions (``lrp.sequential_preset_b``)."""

    name = "lrp.sequential_preset_b"
    conv_rule = (2, 1)


class LRPSequentialPresetAFlat(LRPSequentialPresetA):
    """Preset A with the flat rule at the input layer."""

    name = "lrp.sequential_preset_a_flat"

    def __init__(self, model, **kwargs):
        super().__init__(model, input_layer_rule="Flat", **kwargs)


class LRPSequentialPresetBFlat(LRPSequentialPresetB):
    """Preset B with the flat rule at the input layer."""

    name = "lrp.sequential_preset_b_flat"

    def __init__(self, model, **kwargs):
        super().__init__(model, input_layer_rule="Flat", **kwargs)


class LRPSequentialPresetBFlatUntilIdx(LRPSequentialPresetB):
    """Preset B with the flat rule on kernel layers ``0..until_layer_idx`` and the input layer."""

    name = "lrp.sequential_preset_b_flat_until_idx"

    def __init__(self, model, *, until_layer_idx: int | None = None, **kwargs):
        if until_layer_idx is None:
            raise ValueError(
                "lrp.sequential_preset_b_flat_until_idx needs until_layer_idx: the number of "
                "the last kernel layer (0 = first) that gets the flat rule."
            )
        super().__init__(
            model,
            input_layer_rule="Flat",
            until_layer_idx=until_layer_idx,
            until_layer_rule=FlatRule(),
            **kwargs,
        )
