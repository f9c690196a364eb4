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

from collections.abc import Callable

from keras import ops

from keras_isnet.analyzers.base import Analyzer
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.rules import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    Rule,
    WSquareRule,
    ZPlusFastRule,
    ZPlusRule,
    ZRule,
    get_rule,
)
from keras_isnet.rules.base import safe_divide, stabilize


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
            ``"conv"``, ``"affine"`` for BatchNormalization) or a callable ``layer -> bool``.
        input_layer_rule: rule for the first kernel layer(s) (those with no kernel layer
            between them and the input): ``"Flat"``, ``"WSquare"``, ``(low, high)`` for the
            bounded z^B rule, or any rule. Default None (no special rule).
        until_layer_idx, until_layer_rule: apply ``until_layer_rule`` to the kernel layers
            numbered ``0..until_layer_idx`` in graph order (BatchNormalization not counted).
        bn_layer_rule: rule for BatchNormalization (an element-wise affine map). Default:
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
            return [(_condition(cond), get_rule(r)) for cond, r in rule]
        return [(lambda layer, category: True, get_rule(rule))]

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
        if spec.category == "affine" and self._bn_layer_rule is not None:
            return self._bn_layer_rule
        if step.index in self._first_kernels and self._input_layer_rule is not None:
            return self._input_layer_rule
        until_idx, until_rule = self._until
        number = self._kernel_numbers.get(step.index)
        if until_rule is not None and number is not None and number <= until_idx:
            return get_rule(until_rule)
        for condition, rule in self._rule_map:
            if condition(step.layer, spec.category):
                return rule
        if spec.category == "affine":
            return EpsilonRule()
        raise ValueError(
            f"No LRP rule applies to layer {step.path!r} ({type(step.layer).__name__}, "
            f"category {spec.category!r}); add a condition for it to the rule map."
        )

    # ------------------------------------------------------------------------ handlers
    def _weightless_divide(self, R, z):
        if self._weightless_epsilon is None:
            return safe_divide(R, z)
        return ops.divide(R, stabilize(z, self._weightless_epsilon))

    def _handler(self, step):
        spec = lookup(step.layer)
        if spec is None:
            raise self._unsupported(step)
        kind = spec.kind
        if kind == "kernel":
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


# ------------------------------------------------------------------------------- presets
class LRPZ(LRP):
    """LRP-0 (``lrp.z``); ``bias=False`` is iNNvestigate's LRPZIgnoreBias."""

    name = "lrp.z"

    def __init__(self, model, *, bias: bool = True, **kwargs):
        super().__init__(model, rule=ZRule(bias=bias), **kwargs)


class LRPEpsilon(LRP):
    """LRP-epsilon (``lrp.epsilon``), epsilon 1e-7 by default; ``bias=False`` ignores biases."""

    name = "lrp.epsilon"

    def __init__(self, model, *, epsilon: float = 1e-7, bias: bool = True, **kwargs):
        self.epsilon = epsilon
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
        kwargs.setdefault("bn_layer_rule", EpsilonRule(epsilon=epsilon, bias=True))
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
