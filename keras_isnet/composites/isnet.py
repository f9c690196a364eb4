"""The ISNet's LRP rules as a composite (``"isnet"``), the rules its training heatmaps use.

The official LRP Block ISNet (``ISNetLayersZe``/``ISNetFunctionsZe``): LRP-epsilon (epsilon
1e-2, the bias a detached constant; a folded BatchNorm shift keeps gamma's gradient) on
Dense/conv layers, the z^B rule with the input bounds and the detached bias in its
denominator at the first layer (:class:`~keras_isnet.rules.ZbRule`), the epsilon-stabilised
z-rule at average pooling and Add, and epsilon-stabilised max pooling
(:class:`~keras_isnet.rules.MaxPoolEpsilonRule`); BatchNorm is folded.

Example:
    >>> ki.create_analyzer("lrp", model, composite="isnet", neuron_selection_mode="index")
"""

from __future__ import annotations

from keras_isnet.composites.composite import Composite
from keras_isnet.composites.registry import register_composite
from keras_isnet.rules import EpsilonRule, MaxPoolEpsilonRule, ZbRule


@register_composite("isnet")
def isnet(epsilon: float = 1e-2, input_bounds=(0.0, 1.0)) -> Composite:
    """The LRP Block ISNet's heatmap rules: ``epsilon`` (1e-2) everywhere, z^B with the bias
    and ``input_bounds`` (``(low, high)``, default ``(0, 1)``; None: the epsilon rule there
    too) at the first layer, epsilon-stabilised max pooling."""
    epsilon = float(epsilon)
    first = None
    if input_bounds is not None:
        first = ZbRule(low=input_bounds[0], high=input_bounds[1], epsilon=epsilon)
    return Composite(
        default=EpsilonRule(epsilon=epsilon, detach_bias=True),
        first_layer=first,
        weightless_epsilon=epsilon,
        max_pooling=MaxPoolEpsilonRule(epsilon=epsilon),
    )
