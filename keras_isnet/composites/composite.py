"""A composite: which LRP rule each layer of a model gets, as a value.

A :class:`Composite` is data: a rule map for kernel layers (by layer class, layer name,
category or predicate), an optional default rule, a first-layer rule, the z-rule stabiliser
of weightless layers and the canonizers to apply. It knows nothing of a particular model;
:meth:`Composite.bind` pairs it with an :class:`~keras_isnet.engine.Engine` and gives the
:class:`BoundComposite` that answers, per layer call, which rule applies and which backward
handler to run (asking the layer's description, :meth:`ReverseLayer.lrp_handler`).

Example:
    >>> composite = Composite(rules=(("dense", EpsilonRule(0.1)), ("conv", "Alpha1Beta0")))
    >>> analyzer = ki.analyzers.LRP(model, composite=composite)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from keras import ops

from keras_isnet.canonizers import BatchNormFold, FoldPlan
from keras_isnet.engine import Engine, pullback_handler
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.rules import EpsilonRule, PassRule, Rule, get_rule
from keras_isnet.rules.base import safe_divide, stabilize

#: a rule-map condition: ``condition(layer, category) -> bool``.
Condition = Callable[[object, str], bool]


def condition(key) -> Condition:
    """A ``condition(layer, category) -> bool`` from a rule-map key.

    Args:
        key: a Keras layer class (matches instances), a string (a layer name or a category:
            ``"dense"``, ``"conv"``, ``"affine"``, ``"weightless"``) or a callable
            ``layer -> bool``.
    """
    if callable(key) and not isinstance(key, type):
        return lambda layer, category: bool(key(layer))
    if isinstance(key, type):
        return lambda layer, category: isinstance(layer, key)
    if isinstance(key, str):
        return lambda layer, category: key in (layer.name, category)
    raise TypeError(
        f"Rule-map key {key!r} must be a layer class, a layer name, a category "
        "('dense', 'conv', 'affine') or a callable layer -> bool."
    )


def rule_map(entries) -> tuple:
    """``((condition, rule), ...)`` from a list of ``(key, rule)`` pairs or a dict; keys as
    :func:`condition` takes them, rules as :func:`keras_isnet.rules.get_rule` does."""
    if entries is None:
        return ()
    if isinstance(entries, dict):
        entries = list(entries.items())
    if not isinstance(entries, (list, tuple)) or not all(
        isinstance(item, tuple) and len(item) == 2 for item in entries
    ):
        raise TypeError(
            f"A rule map is a list of (condition, rule) pairs or a dict; got {entries!r}."
        )
    return tuple((condition(key), get_rule(rule)) for key, rule in entries)


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets.

    Args:
        rules: the rule map: ``(condition, rule)`` pairs (conditions as :func:`condition`
            builds them), tried in order on kernel layers; a rule that
            ``applies_to_weightless`` (Norm, Pass) also applies to the weightless linear layers
            (Add, Average, average pooling) its condition names.
        default: the rule for kernel layers that no entry of ``rules`` matches (None: such a
            layer is an error, except BatchNormalization under ``bn_rule="linear"``, which
            gets the epsilon rule).
        first_layer: the rule for the first kernel layer(s), those with no kernel layer
            between them and the input (None: no special rule).
        until: ``(index, rule)``: ``rule`` on the kernel layers numbered ``0..index`` in graph
            order (BatchNormalization not counted), or None.
        bn_layer_rule: the rule of BatchNormalization under ``bn_rule="linear"`` (None: the
            rule map decides).
        weightless_epsilon: the stabiliser of the z-rule at weightless linear layers: None
            guards exact zeros only (iNNvestigate), a float uses ``z + eps sign(z)``.
        canonizers: the canonizers (default: BatchNorm folding); ``bn_rule="pass"`` or
            ``"linear"`` drops the BatchNorm fold.
        elsewhere: ``"lrp"`` (default): layers without a rule of their own use their LRP
            description (pass, route, z-rule); ``"gradient"``: they propagate along the
            gradient (Deep Taylor).
        head: ``None`` or ``"relu"``: the explained value is ``relu(output)`` (Deep Taylor).
        products: products of signals (``x * y``, ``ops.matmul``, ``ops.einsum``, the two
            products inside ``MultiHeadAttention``): ``"uniform"`` (default; AttnLRP's uniform
            rule, every factor an equal share) or ``"constant_softmax"`` (CP-LRP: a factor
            computed by a softmax, the attention weights, is a constant and gets none).
        softmax: ``"pass"`` (default: relevance passes, an element-wise map) or ``"taylor"``
            (AttnLRP: ``R_x = x * (R - s sum(R))``).
        layer_norm: ``"ln_rule"`` (default: Ali et al.'s LN rule, the standard deviation
            constant, beta not in the denominator) or ``"attn_lrp"`` (AttnLRP / lxt: the
            standard deviation constant, ``R_x = x * J^T (R / (y + eps))`` with the whole
            output ``y``, beta included).
        max_pooling: the rule of max-pooling layers (a rule with ``reverse_routing``, such as
            :class:`~keras_isnet.rules.MaxPoolEpsilonRule`), or None (default): winner takes
            all along the gradient.
    """

    rules: tuple = ()
    default: Rule | None = None
    first_layer: Rule | None = None
    until: tuple | None = None
    bn_layer_rule: Rule | None = None
    weightless_epsilon: float | None = None
    canonizers: tuple = field(default_factory=lambda: (BatchNormFold(),))
    elsewhere: str = "lrp"
    head: str | None = None
    products: str = "uniform"
    softmax: str = "pass"
    layer_norm: str = "ln_rule"
    max_pooling: Rule | None = None

    def __post_init__(self):
        for name, allowed in (
            ("products", ("uniform", "constant_softmax")),
            ("softmax", ("pass", "taylor")),
            ("layer_norm", ("ln_rule", "attn_lrp")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.elsewhere not in ("lrp", "gradient"):
            raise ValueError(f"elsewhere must be 'lrp' or 'gradient', got {self.elsewhere!r}.")
        if self.head not in (None, "relu"):
            raise ValueError(f"head must be None or 'relu', got {self.head!r}.")

    @classmethod
    def from_rule(cls, rule, **kwargs) -> Composite:
        """The composite of the generic ``lrp`` analyzer: ``rule`` is one rule for every
        kernel layer (a name, a :class:`Rule`, ``(low, high)``) or a rule map."""
        if isinstance(rule, (list, dict)):
            return cls(rules=rule_map(rule), **kwargs)
        return cls(default=get_rule(rule), **kwargs)

    def replace(self, **changes) -> Composite:
        """A copy with ``changes`` (keyword arguments as for the constructor)."""
        return dataclasses.replace(self, **changes)

    def with_kernel_rule(self, rule: Rule) -> Composite:
        """This composite with ``rule`` on every kernel layer (the first one included)."""
        return self.replace(rules=(), default=rule, first_layer=None, until=None)

    def bind(self, engine: Engine, bn_rule: str = "fold", who: str = "") -> BoundComposite:
        """The composite applied to one model: see :class:`BoundComposite`."""
        return BoundComposite(self, engine, bn_rule, who)


class BoundComposite:
    """A :class:`Composite` applied to the walked graph of one model.

    It is the LRP *context* the layer descriptions see (:meth:`ReverseLayer.lrp_handler`):
    ``rule_for(step)``, ``weightless_rule(step)``, ``weightless_divide``,
    ``weightless_epsilon``, ``bn_rule``, ``fold_plan`` and ``unsupported(step, why)``.

    Args:
        composite: the composite.
        engine: the engine of the model.
        bn_rule: ``"fold"``, ``"pass"`` or ``"linear"`` (see :class:`~keras_isnet.analyzers.LRP`).
        who: the analyzer's name, for error messages.
    """

    def __init__(self, composite: Composite, engine: Engine, bn_rule: str = "fold", who=""):
        self.composite = composite
        self.engine = engine
        self.bn_rule = bn_rule
        self.who = who
        self.weightless_epsilon = composite.weightless_epsilon
        self.products = composite.products
        self.softmax = composite.softmax
        self.layer_norm = composite.layer_norm
        plans = [plan for plan in engine.canonizer_plans if isinstance(plan, FoldPlan)]
        #: the BatchNorm fold plan (None without folding).
        self.fold_plan = plans[0] if plans else None
        self._kernel_numbers, self._first_kernels = self._number_kernel_layers()

    def _number_kernel_layers(self):
        """Number kernel steps in graph order and find the first ones (next to the input)."""
        numbers, first = {}, set()
        after_kernel = {k: False for k in self.engine.input_keys}
        count = 0
        for step in self.engine.steps:
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
        return numbers, first

    @property
    def first_kernels(self) -> frozenset:
        """Indices of the first kernel steps (no kernel layer between them and the input):
        where ``first_layer`` applies."""
        return frozenset(self._first_kernels)

    # ------------------------------------------------------------------------ rules
    def rule_for(self, step) -> Rule:
        """The rule used at kernel step ``step``."""
        composite = self.composite
        spec = lookup(step.layer)
        if spec.relevance_passes(self):
            return PassRule()
        if spec.category == "affine" and composite.bn_layer_rule is not None:
            return composite.bn_layer_rule
        if step.index in self._first_kernels and composite.first_layer is not None:
            return composite.first_layer
        if composite.until is not None:
            until_idx, until_rule = composite.until
            number = self._kernel_numbers.get(step.index)
            if number is not None and number <= until_idx:
                return until_rule
        return self.rule_for_layer(step.layer, spec.category, step.path)

    def rule_for_layer(self, layer, category: str, path: str = "") -> Rule:
        """The rule-map (or default) rule of a kernel layer of ``category``: for the steps of
        the walk (:meth:`rule_for`) and for the sublayers of a layer whose description runs
        them itself (the projections inside ``MultiHeadAttention``)."""
        composite = self.composite
        for matches, rule in composite.rules:
            if matches(layer, category):
                return rule
        if composite.default is not None:
            return composite.default
        if category == "affine":
            return EpsilonRule()
        raise ValueError(
            f"No LRP rule applies to layer {path or layer.name!r} ({type(layer).__name__}, "
            f"category {category!r}); add a condition for it to the rule map."
        )

    def weightless_rule(self, step) -> Rule | None:
        """A rule-map rule for a weightless linear layer (Norm, Pass), or None."""
        for matches, rule in self.composite.rules:
            if rule.applies_to_weightless and matches(step.layer, "weightless"):
                return rule
        return None

    def max_pooling_rule(self, step) -> Rule | None:
        """The composite's rule for max-pooling step ``step``, or None (winner takes all)."""
        return self.composite.max_pooling

    def weightless_divide(self, R, z):
        """``R / z`` for the z-rule at weightless layers, stabilised as the composite says."""
        if self.weightless_epsilon is None:
            return safe_divide(R, z)
        return ops.divide(R, stabilize(z, self.weightless_epsilon))

    def unsupported(self, step, why: str = ""):
        return self.engine.unsupported(step, why, self.who)

    # --------------------------------------------------------------------- handlers
    def handler(self, step):
        """The backward handler of ``step`` (what :meth:`Engine.handlers` asks for)."""
        spec = lookup(step.layer)
        if self.composite.elsewhere == "gradient" and (spec is None or not spec.decomposes):
            return pullback_handler
        if spec is None:
            raise self.unsupported(step)
        return spec.lrp_handler(step, self)

    def handlers(self) -> dict:
        """The handlers of every active step of the engine."""
        return self.engine.handlers(self.handler)

    def conservation_info(self, step) -> tuple[str, list[str]]:
        """``(rule label, possible causes of absorption)`` of ``step`` (see
        :meth:`keras_isnet.analyzers.LRP.conservation_info`)."""
        spec = lookup(step.layer)
        if spec is None:
            return "unsupported", []
        return spec.conservation_info(step, self)


__all__ = ["BoundComposite", "Composite", "condition", "rule_map"]
