"""zennit's LRP composites, with zennit's defaults.

=================================== ======================================================
name                                rules
=================================== ======================================================
``lrp.epsilon_plus``                convolutions: z-plus; Dense: epsilon
``lrp.epsilon_plus_flat``           as epsilon_plus, the flat rule at the first layer
``lrp.epsilon_alpha2_beta1``        convolutions: alpha2-beta1; Dense: epsilon
``lrp.epsilon_alpha2_beta1_flat``   as epsilon_alpha2_beta1, the flat rule at the first layer
``lrp.epsilon_gamma_box``           first layer: ZBox(low, high); other convolutions:
                                    gamma (0.25); Dense: epsilon
=================================== ======================================================

As in zennit: epsilon 1e-6; z-plus and alpha-beta split the bias by sign (``b+`` in the
positive part, ``b-`` in the negative) with the stabiliser ``z + 1e-6 sign(z)``
(:class:`~keras_isnet.rules.ZennitZPlusRule`, :class:`~keras_isnet.rules.ZennitAlphaBetaRule`);
Add and average pooling use the Norm rule (the z-rule stabilised by 1e-6); activations
pass relevance unchanged; BatchNormalization is folded into its neighbour (zennit's
canonizers; ``bn_rule`` as for every LRP analyzer). "Convolution" includes transposed,
depthwise and separable convolutions. Differences from zennit: the first layer is every
Dense/conv layer with no other Dense/conv layer between it and the input (zennit takes the
first matching module in registration order), and the flat rule guards only exact zeros.

Every composite here takes ``epsilon`` (the Dense layers' epsilon, default 1e-6), ``bias``
(default True, as in zennit; False ignores the biases, zennit's ``zero_params=["bias"]``,
and conserves relevance) and ``layer_map`` (rule-map entries ``[(condition, rule), ...]``
tried before the composite's own: a layer class, a layer name, a category or a callable).

Example:
    >>> ki.create_analyzer("lrp.epsilon_gamma_box", model, low=-1.0, high=1.0).analyze(x)
"""

from __future__ import annotations

from keras_isnet.composites.composite import Composite, condition, rule_map
from keras_isnet.composites.registry import register_composite
from keras_isnet.rules import (
    EpsilonRule,
    FlatRule,
    GammaRule,
    Rule,
    ZBoxRule,
    ZennitAlphaBetaRule,
    ZennitZPlusRule,
)

#: zennit's stabiliser and epsilon default.
ZENNIT_EPSILON = 1e-6


def _zennit(conv_rule: Rule, epsilon: float, bias: bool, layer_map, **changes) -> Composite:
    """``layer_map``, then ``conv_rule`` on convolutions and epsilon on Dense layers, with
    zennit's Norm rule (z-rule, 1e-6) at Add and average pooling."""
    return Composite(
        rules=rule_map(layer_map)
        + (
            (condition("conv"), conv_rule),
            (condition("dense"), EpsilonRule(epsilon=epsilon, bias=bias)),
        ),
        weightless_epsilon=ZENNIT_EPSILON,
        **changes,
    )


@register_composite("lrp.epsilon_plus")
def epsilon_plus(epsilon: float = ZENNIT_EPSILON, bias: bool = True, layer_map=None):
    """z-plus on convolutions, epsilon on Dense layers."""
    return _zennit(ZennitZPlusRule(epsilon=ZENNIT_EPSILON, bias=bias), epsilon, bias, layer_map)


@register_composite("lrp.epsilon_plus_flat")
def epsilon_plus_flat(epsilon: float = ZENNIT_EPSILON, bias: bool = True, layer_map=None):
    """epsilon_plus with the flat rule at the first layer."""
    return epsilon_plus(epsilon, bias, layer_map).replace(first_layer=FlatRule())


@register_composite("lrp.epsilon_alpha2_beta1")
def epsilon_alpha2_beta1(epsilon: float = ZENNIT_EPSILON, bias: bool = True, layer_map=None):
    """alpha2-beta1 on convolutions, epsilon on Dense layers."""
    conv = ZennitAlphaBetaRule(alpha=2.0, beta=1.0, epsilon=ZENNIT_EPSILON, bias=bias)
    return _zennit(conv, epsilon, bias, layer_map)


@register_composite("lrp.epsilon_alpha2_beta1_flat")
def epsilon_alpha2_beta1_flat(
    epsilon: float = ZENNIT_EPSILON, bias: bool = True, layer_map=None
) -> Composite:
    """epsilon_alpha2_beta1 with the flat rule at the first layer."""
    return epsilon_alpha2_beta1(epsilon, bias, layer_map).replace(first_layer=FlatRule())


@register_composite("lrp.epsilon_gamma_box")
def epsilon_gamma_box(
    low=None,
    high=None,
    gamma: float = 0.25,
    epsilon: float = ZENNIT_EPSILON,
    bias: bool = True,
    layer_map=None,
) -> Composite:
    """ZBox at the first layer (``low``, ``high`` required: scalars, arrays shaped like the
    input, or one value per channel), gamma (0.25) on other convolutions, epsilon on Dense."""
    if low is None or high is None:
        raise ValueError(
            "lrp.epsilon_gamma_box needs the input bounds low=... and high=... for the "
            "ZBox rule at the first layer (e.g. low=0.0, high=1.0 for images in [0, 1])."
        )
    conv = GammaRule(gamma=float(gamma), epsilon=ZENNIT_EPSILON, bias=bias)
    return _zennit(conv, epsilon, bias, layer_map, first_layer=ZBoxRule(low=low, high=high))
