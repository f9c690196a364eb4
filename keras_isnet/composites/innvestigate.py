"""iNNvestigate's LRP analyzers and Deep Taylor as composites, with iNNvestigate's defaults.

Each name is a few lines of data: the factory's keyword arguments are the analyzer's
options (``create_analyzer("lrp.epsilon", model, epsilon=1e-3, bias=False)``).
"""

from __future__ import annotations

from keras_isnet.composites.composite import Composite, condition
from keras_isnet.composites.registry import register_composite
from keras_isnet.rules import (
    AlphaBetaRule,
    BoundedRule,
    EpsilonRule,
    FlatRule,
    WSquareRule,
    ZPlusFastRule,
    ZPlusRule,
    ZRule,
)


@register_composite("lrp.z")
def z(bias: bool = True) -> Composite:
    """LRP-0 on every kernel layer; ``bias=False`` is iNNvestigate's LRPZIgnoreBias."""
    return Composite(default=ZRule(bias=bias))


@register_composite("lrp.epsilon")
def epsilon(epsilon: float = 1e-7, bias: bool = True) -> Composite:
    """LRP-epsilon (``z + epsilon sign(z)``), epsilon 1e-7; ``bias=False`` ignores biases."""
    return Composite(default=EpsilonRule(epsilon=epsilon, bias=bias))


@register_composite("lrp.w_square")
def w_square() -> Composite:
    """The w-square rule on every kernel layer."""
    return Composite(default=WSquareRule())


@register_composite("lrp.flat")
def flat() -> Composite:
    """The flat rule on every kernel layer."""
    return Composite(default=FlatRule())


@register_composite("lrp.alpha_beta")
def alpha_beta(alpha: float | None = None, beta: float | None = None, bias: bool = True):
    """LRP-alpha-beta: give alpha or beta, alpha - beta = 1."""
    return Composite(default=AlphaBetaRule(alpha=alpha, beta=beta, bias=bias))


@register_composite("lrp.alpha_2_beta_1")
def alpha_2_beta_1() -> Composite:
    """LRP-alpha2-beta1."""
    return Composite(default=AlphaBetaRule(alpha=2, beta=1, bias=True))


@register_composite("lrp.alpha_2_beta_1_IB")
def alpha_2_beta_1_ignore_bias() -> Composite:
    """LRP-alpha2-beta1, biases ignored."""
    return Composite(default=AlphaBetaRule(alpha=2, beta=1, bias=False))


@register_composite("lrp.alpha_1_beta_0")
def alpha_1_beta_0() -> Composite:
    """LRP-alpha1-beta0."""
    return Composite(default=AlphaBetaRule(alpha=1, beta=0, bias=True))


@register_composite("lrp.alpha_1_beta_0_IB")
def alpha_1_beta_0_ignore_bias() -> Composite:
    """LRP-alpha1-beta0, biases ignored."""
    return Composite(default=AlphaBetaRule(alpha=1, beta=0, bias=False))


@register_composite("lrp.z_plus")
def z_plus() -> Composite:
    """z-plus: alpha1-beta0 ignoring biases."""
    return Composite(default=ZPlusRule())


@register_composite("lrp.z_plus_fast")
def z_plus_fast() -> Composite:
    """z-plus for non-negative inputs, one pass."""
    return Composite(default=ZPlusFastRule())


def _sequential_preset(epsilon: float, alpha: float, beta: float, **changes) -> Composite:
    """Epsilon on dense layers, alpha-beta on convolutions, iNNvestigate's BN rule (epsilon,
    used with ``bn_rule="linear"``)."""
    return Composite(
        rules=(
            (condition("dense"), EpsilonRule(epsilon=epsilon, bias=True)),
            (condition("conv"), AlphaBetaRule(alpha=alpha, beta=beta, bias=True)),
        ),
        bn_layer_rule=EpsilonRule(epsilon=epsilon, bias=True),
        **changes,
    )


@register_composite("lrp.sequential_preset_a")
def sequential_preset_a(epsilon: float = 1e-1) -> Composite:
    """Epsilon (0.1) on dense layers, alpha1-beta0 on convolutions."""
    return _sequential_preset(epsilon, 1, 0)


@register_composite("lrp.sequential_preset_b")
def sequential_preset_b(epsilon: float = 1e-1) -> Composite:
    """Epsilon (0.1) on dense layers, alpha2-beta1 on convolutions."""
    return _sequential_preset(epsilon, 2, 1)


@register_composite("lrp.sequential_preset_a_flat")
def sequential_preset_a_flat(epsilon: float = 1e-1) -> Composite:
    """Preset A with the flat rule at the input layer."""
    return _sequential_preset(epsilon, 1, 0, first_layer=FlatRule())


@register_composite("lrp.sequential_preset_b_flat")
def sequential_preset_b_flat(epsilon: float = 1e-1) -> Composite:
    """Preset B with the flat rule at the input layer."""
    return _sequential_preset(epsilon, 2, 1, first_layer=FlatRule())


@register_composite("lrp.sequential_preset_b_flat_until_idx")
def sequential_preset_b_flat_until_idx(
    until_layer_idx: int | None = None, epsilon: float = 1e-1
) -> Composite:
    """Preset B with the flat rule on kernel layers ``0..until_layer_idx`` and the input layer."""
    if until_layer_idx is None:
        raise ValueError(
            "lrp.sequential_preset_b_flat_until_idx needs until_layer_idx: the number of "
            "the last kernel layer (0 = first) that gets the flat rule."
        )
    return _sequential_preset(
        epsilon, 2, 1, first_layer=FlatRule(), until=(until_layer_idx, FlatRule())
    )


@register_composite("deep_taylor")
def deep_taylor() -> Composite:
    """Deep Taylor: z-plus on kernel layers, the gradient elsewhere, head ``relu(y)``; average
    pooling spreads relevance uniformly and Add copies it to every branch (iNNvestigate)."""
    return Composite(default=ZPlusRule(), elsewhere="gradient", head="relu")


@register_composite("deep_taylor.bounded")
def deep_taylor_bounded(low=None, high=None) -> Composite:
    """Deep Taylor with the z^B rule for inputs in ``[low, high]`` at the first kernel layer
    (``low``, ``high`` required: scalars or arrays broadcastable to that layer's input)."""
    if low is None or high is None:
        raise ValueError(
            "deep_taylor.bounded needs the input bounds low=... and high=... (e.g. "
            "low=0.0, high=1.0 for images scaled to [0, 1])."
        )
    return deep_taylor().replace(first_layer=BoundedRule(low=low, high=high))
