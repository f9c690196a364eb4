"""The ISNet's LRP rules as a composite (``"isnet"``), the rules its training heatmaps use.

The ISNet reference (``shared/design/isnet-method.md`` section 3): LRP-epsilon (epsilon 1e-2,
the bias a detached constant input) on Dense/conv layers, the z^B rule with the input bounds
at the first layer, the epsilon-stabilised z-rule at average pooling and Add; max pooling
routes relevance to the winners; BatchNorm is folded.

Example:
    >>> ki.create_analyzer("lrp", model, composite="isnet", neuron_selection_mode="index")
"""

from __future__ import annotations

from keras_isnet.composites.composite import Composite
from keras_isnet.composites.registry import register_composite
from keras_isnet.rules import BoundedRule, EpsilonRule


@register_composite("isnet")
def isnet(epsilon: float = 1e-2, input_bounds=(0.0, 1.0)) -> Composite:
    """The ISNet heatmap rules: ``epsilon`` (1e-2) everywhere, z^B with ``input_bounds``
    (``(low, high)``, default ``(0, 1)``; None: the epsilon rule there too) at the first
    layer."""
    epsilon = float(epsilon)
    first = None
    if input_bounds is not None:
        first = BoundedRule(low=input_bounds[0], high=input_bounds[1], epsilon=epsilon)
    return Composite(
        default=EpsilonRule(epsilon=epsilon, detach_bias=True),
        first_layer=first,
        weightless_epsilon=epsilon,
    )
