"""Layer-wise Relevance Propagation: the ``lrp`` analyzer and every named LRP composite.

An :class:`LRP` analyzer is a :class:`~keras_isnet.composites.Composite` (which rule each
layer gets) applied to a model's :class:`~keras_isnet.engine.Engine`. Kernel layers (Dense,
convolutions) get the composite's rule; the other layers are handled by their description
(see :mod:`keras_isnet.layers.base`): element-wise layers pass relevance unchanged, routing
layers (reshapes, concatenation, max pooling) route it along the gradient, average pooling
and Add split it with the z-rule, Embedding sums it over the embedding axis.

The named analyzers (``lrp.epsilon``, ``lrp.sequential_preset_a``, ``lrp.epsilon_plus``, ...)
are :class:`LRP` with a registered composite; their options are the composite's parameters
(see :mod:`keras_isnet.composites`).

Example:
    >>> analyzer = ki.create_analyzer("lrp.epsilon", model, epsilon=1e-7)
    >>> heatmaps = analyzer.analyze(x)          # same shape as x
"""

from __future__ import annotations

import inspect

from keras import ops

from keras_isnet.analyzers.base import Analyzer
from keras_isnet.canonizers import BatchNormFold
from keras_isnet.composites import COMPOSITES, Composite, composite_factory, composite_parameters
from keras_isnet.rules import Rule, get_rule

#: the values of ``bn_rule``.
BN_RULES = ("fold", "pass", "linear")


class LRP(Analyzer):
    """LRP with a rule per layer, given as a composite, a rule or a rule map.

    Args:
        model: the Keras model.
        rule: for the generic ``lrp`` analyzer, the rule for kernel layers: a rule name
            (``"Epsilon"``, ``"Z"``, ``"Alpha2Beta1"``, ... see
            :data:`keras_isnet.rules.RULES`), a :class:`~keras_isnet.rules.Rule`, or a rule
            map: a list of ``(condition, rule)`` pairs or a dict ``{condition: rule}``,
            tried in order, where a condition is a Keras layer class, a layer name, a
            category (``"dense"``, ``"conv"``, ``"affine"`` for BatchNormalization with
            ``bn_rule="linear"``, ``"weightless"`` for Add/Average/average pooling) or a
            callable ``layer -> bool``. Rules for weightless layers
            (:class:`~keras_isnet.rules.NormRule`, :class:`~keras_isnet.rules.PassRule`)
            apply to the weightless layers a rule-map entry names; other rules apply to kernel
            layers only. The first layer's rule is ``input_layer_rule``.
        composite: instead of ``rule``, a :class:`~keras_isnet.composites.Composite` or the
            name of a registered one (its parameters as further keyword arguments).
        input_layer_rule: rule for the first kernel layer(s) (those with no kernel layer
            between them and the input): ``"Flat"``, ``"WSquare"``, ``(low, high)`` for the
            bounded z^B rule, or any rule. Default None (the composite's, if any).
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
            the composite's, else whatever the rule map gives, else the epsilon rule.
        weightless_epsilon: stabiliser of the z-rule at average pooling and Add: None
            (default: the composite's; iNNvestigate's composites divide by the exact sum
            guarded only at zero) or a float for ``z + eps * sign(z)``.
        neuron_selection_mode, output_index, strip_softmax: see :class:`Analyzer`.
        **params: the named composite's parameters (``epsilon=``, ``bias=``, ``low=``, ...).

    Example:
        >>> ki.analyzers.LRP(model, rule=[("conv", "Alpha1Beta0"), ("dense", "Epsilon")])
        >>> ki.analyzers.LRP(model, composite="lrp.epsilon", epsilon=1e-3)
    """

    name = "lrp"

    def __init__(
        self,
        model,
        rule=None,
        *,
        composite: Composite | str | None = None,
        input_layer_rule=None,
        until_layer_idx: int | None = None,
        until_layer_rule=None,
        bn_layer_rule=None,
        weightless_epsilon: float | None = None,
        bn_rule: str | None = None,
        compute_dtype: str | None = None,
        neuron_selection_mode: str = "max_activation",
        output_index: int | str | None = None,
        strip_softmax: bool = True,
        **params,
    ):
        name = composite if isinstance(composite, str) else None
        if name is None and composite is None and rule is None and self.name in COMPOSITES:
            name = self.name
        if name is not None and "until_layer_idx" in composite_parameters(name):
            params["until_layer_idx"], until_layer_idx = until_layer_idx, None
        composite, self.composite_params = self._composite(rule, composite, name, params)
        if until_layer_rule is not None and until_layer_idx is None:
            raise ValueError("until_layer_rule needs until_layer_idx (the last layer number).")
        changes = {}
        if input_layer_rule is not None:
            changes["first_layer"] = get_rule(input_layer_rule)
        if until_layer_rule is not None:
            changes["until"] = (until_layer_idx, get_rule(until_layer_rule))
        if bn_layer_rule is not None:
            changes["bn_layer_rule"] = get_rule(bn_layer_rule)
        if weightless_epsilon is not None:
            changes["weightless_epsilon"] = weightless_epsilon
        composite = composite.replace(**changes) if changes else composite
        if bn_rule is None:
            bn_rule = "linear" if bn_layer_rule is not None else "fold"
        if bn_rule not in BN_RULES:
            raise ValueError(f"Unknown bn_rule {bn_rule!r}; valid values are {list(BN_RULES)}.")
        if bn_layer_rule is not None and bn_rule != "linear":
            raise ValueError(
                f"bn_layer_rule={bn_layer_rule!r} applies to BatchNormalization only with "
                f"bn_rule='linear', but bn_rule={bn_rule!r}; drop one of the two."
            )
        canonizers = composite.canonizers
        if bn_rule != "fold":
            canonizers = tuple(c for c in canonizers if not isinstance(c, BatchNormFold))
        super().__init__(
            model,
            neuron_selection_mode,
            output_index=output_index,
            strip_softmax=strip_softmax,
            canonizers=canonizers,
            compute_dtype=compute_dtype,
        )
        self.composite = composite
        self.bn_rule = bn_rule
        for key, value in self.composite_params.items():  # analyzer.epsilon, analyzer.bias
            setattr(self, key, value)
        self.rules = composite.bind(self.engine, bn_rule, who=type(self).__name__)
        self.fold_plan = self.rules.fold_plan
        self._handlers = self.rules.handlers()

    def _composite(self, rule, composite, name, params) -> tuple[Composite, dict]:
        """The composite and its parameters (with defaults) from the arguments."""
        who = self.name or type(self).__name__
        if name is not None:
            factory = composite_factory(name)
            allowed = composite_parameters(name)
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                raise TypeError(
                    f"{who} got unexpected keyword argument(s) {unknown}; its composite "
                    f"{name!r} takes {allowed or 'no parameters'}, and every LRP analyzer "
                    "takes input_layer_rule, until_layer_idx, until_layer_rule, bn_rule, "
                    "bn_layer_rule, weightless_epsilon, compute_dtype, neuron_selection_mode, "
                    "output_index and strip_softmax."
                )
            bound = inspect.signature(factory).bind(**params)
            bound.apply_defaults()
            return factory(**bound.arguments), dict(bound.arguments)
        if params:
            raise TypeError(
                f"{who} got unexpected keyword argument(s) {sorted(params)}; parameters other "
                "than the LRP options belong to a named composite (composite='lrp.epsilon')."
            )
        if composite is not None:
            if not isinstance(composite, Composite):
                raise TypeError(
                    f"composite must be a keras_isnet.composites.Composite or the name of a "
                    f"registered one, got {type(composite).__name__}."
                )
            return composite, {}
        if rule is None:
            raise ValueError(
                "LRP needs rule=...: a rule name such as 'Epsilon', a Rule, or a rule map "
                "[(condition, rule), ...]; or use a preset such as 'lrp.epsilon'."
            )
        return Composite.from_rule(rule), {}

    # ------------------------------------------------------------------- inspection
    def rule_for(self, step) -> Rule:
        """The rule used at kernel step ``step`` (also useful to inspect a configuration)."""
        return self.rules.rule_for(step)

    @property
    def _weightless_epsilon(self) -> float | None:
        return self.composite.weightless_epsilon

    def _seed(self, head, weights):
        if self.composite.head == "relu":
            head = ops.relu(head)
        return ops.multiply(head, weights)

    def conservation_info(self, step) -> tuple[str, list[str]]:
        """How relevance crosses ``step``: ``(rule label, possible causes of absorption)``.

        Used by :func:`keras_isnet.conservation_report` to explain where relevance goes.
        The causes are what can make the relevance leaving a layer differ from the
        relevance arriving: ``"bias"``, ``"BN shift of 'bn1'"``, ``"epsilon"``,
        ``"zero denominators"``, ``"max-pool ties"``, ``"non-conserving rule"``, ...; each
        rule and layer description says its own (:meth:`Rule.absorption`,
        :meth:`ReverseLayer.conservation_info`).

        Example:
            >>> analyzer.conservation_info(step)
            ('Epsilon(e=1e-09)', ['bias', "BN shift of 'bn1' (folded)", 'epsilon'])
        """
        return self.rules.conservation_info(step)


__all__ = ["BN_RULES", "LRP"]
