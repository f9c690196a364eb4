"""zennit's LRP composites as analyzers: which rule each layer gets, with zennit's defaults.

=============================== ============================================================
name                            rules
=============================== ============================================================
``lrp.epsilon_plus``            convolutions: z-plus; Dense: epsilon
``lrp.epsilon_plus_flat``       as epsilon_plus, the flat rule at the first layer
``lrp.epsilon_alpha2_beta1``    convolutions: alpha2-beta1; Dense: epsilon
``lrp.epsilon_alpha2_beta1_flat`` as epsilon_alpha2_beta1, the flat rule at the first layer
``lrp.epsilon_gamma_box``       first layer: ZBox(low, high); other convolutions:
                                gamma (0.25); Dense: epsilon
=============================== ============================================================

As in zennit: epsilon 1e-6; z-plus and alpha-beta split the bias by sign (``b+`` in the
positive part, ``b-`` in the negative) with the stabiliser ``z + 1e-6 sign(z)``
(:class:`~keras_isnet.rules.ZennitZPlusRule`, :class:`~keras_isnet.rules.ZennitAlphaBetaRule`);
Add and average pooling use the Norm rule (the z-rule stabilised by 1e-6); activations
pass relevance unchanged; BatchNormalization is folded into its neighbour (zennit's
canonizers; ``bn_rule`` as for every LRP analyzer). "Convolution" includes transposed,
depthwise and separable convolutions. Differences from zennit: the first layer is every
Dense/conv layer with no other Dense/conv layer between it and the input (zennit takes the
first matching module in registration order), and the flat rule guards only exact zeros.

Example:
    >>> analyzer = ki.create_analyzer("lrp.epsilon_gamma_box", model, low=-1.0, high=1.0)
    >>> heatmaps = analyzer.analyze(x)
"""

from __future__ import annotations

from keras_isnet.analyzers.lrp import LRP
from keras_isnet.rules import (
    EpsilonRule,
    FlatRule,
    GammaRule,
    ZBoxRule,
    ZennitAlphaBetaRule,
    ZennitZPlusRule,
)

#: zennit's stabiliser and epsilon default.
ZENNIT_EPSILON = 1e-6


class _Composite(LRP):
    """Base of the composites: a conv rule, epsilon on Dense, Norm at Add/average pooling."""

    def _conv_rule(self, bias):
        raise NotImplementedError

    def __init__(self, model, *, epsilon=ZENNIT_EPSILON, bias=True, layer_map=None, **kwargs):
        self.epsilon = float(epsilon)
        self.bias = bias
        rules = list(_as_pairs(layer_map)) + [
            ("conv", self._conv_rule(bias)),
            ("dense", EpsilonRule(epsilon=epsilon, bias=bias)),
        ]
        kwargs.setdefault("weightless_epsilon", ZENNIT_EPSILON)
        super().__init__(model, rule=rules, **kwargs)


def _as_pairs(layer_map):
    if layer_map is None:
        return []
    if isinstance(layer_map, dict):
        return list(layer_map.items())
    return list(layer_map)


_COMMON_ARGS = """
    Args:
        model: the Keras model.
        epsilon: the epsilon of the Dense layers' rule, default 1e-6.
        bias: whether the rules include the biases (default True, as in zennit); False
            ignores them (zennit's ``zero_params=["bias"]``) and conserves relevance.
        layer_map: rule-map entries ``[(condition, rule), ...]`` tried before the
            composite's own (a layer class, a layer name, a category or a callable).
        **kwargs: other :class:`~keras_isnet.analyzers.lrp.LRP` options (``bn_rule``,
            ``neuron_selection_mode``, ``input_layer_rule``, ...).
"""


class EpsilonPlus(_Composite):
    """``lrp.epsilon_plus``: z-plus on convolutions, epsilon on Dense layers.
    {args}
    Example:
        >>> ki.create_analyzer("lrp.epsilon_plus", model).analyze(x)
    """

    name = "lrp.epsilon_plus"

    def _conv_rule(self, bias):
        return ZennitZPlusRule(epsilon=ZENNIT_EPSILON, bias=bias)


class EpsilonAlpha2Beta1(_Composite):
    """``lrp.epsilon_alpha2_beta1``: alpha2-beta1 on convolutions, epsilon on Dense layers.
    {args}
    Example:
        >>> ki.create_analyzer("lrp.epsilon_alpha2_beta1", model).analyze(x)
    """

    name = "lrp.epsilon_alpha2_beta1"

    def _conv_rule(self, bias):
        return ZennitAlphaBetaRule(alpha=2.0, beta=1.0, epsilon=ZENNIT_EPSILON, bias=bias)


class EpsilonPlusFlat(EpsilonPlus):
    """``lrp.epsilon_plus_flat``: epsilon_plus with the flat rule at the first layer.
    {args}
    Example:
        >>> ki.create_analyzer("lrp.epsilon_plus_flat", model).analyze(x)
    """

    name = "lrp.epsilon_plus_flat"

    def __init__(self, model, **kwargs):
        kwargs.setdefault("input_layer_rule", FlatRule())
        super().__init__(model, **kwargs)


class EpsilonAlpha2Beta1Flat(EpsilonAlpha2Beta1):
    """``lrp.epsilon_alpha2_beta1_flat``: epsilon_alpha2_beta1, the flat rule first.
    {args}
    Example:
        >>> ki.create_analyzer("lrp.epsilon_alpha2_beta1_flat", model).analyze(x)
    """

    name = "lrp.epsilon_alpha2_beta1_flat"

    def __init__(self, model, **kwargs):
        kwargs.setdefault("input_layer_rule", FlatRule())
        super().__init__(model, **kwargs)


class EpsilonGammaBox(_Composite):
    """``lrp.epsilon_gamma_box``: ZBox first, gamma on other convolutions, epsilon on Dense.

    Args:
        model: the Keras model.
        low, high: the input bounds of the ZBox rule (required): scalars, arrays shaped like
            the input, or one value per channel (normalised images).
        gamma: the gamma of the convolutions' rule, default 0.25.
        epsilon: the epsilon of the Dense layers' rule, default 1e-6.
        bias: whether the rules include the biases (default True).
        layer_map: rule-map entries tried before the composite's own.
        **kwargs: other LRP options.

    Example:
        >>> ki.create_analyzer("lrp.epsilon_gamma_box", model, low=0.0, high=1.0).analyze(x)
    """

    name = "lrp.epsilon_gamma_box"

    def __init__(self, model, *, low=None, high=None, gamma: float = 0.25, **kwargs):
        if low is None or high is None:
            raise ValueError(
                "lrp.epsilon_gamma_box needs the input bounds low=... and high=... for the "
                "ZBox rule at the first layer (e.g. low=0.0, high=1.0 for images in [0, 1])."
            )
        self.low, self.high, self.gamma = low, high, float(gamma)
        kwargs.setdefault("input_layer_rule", ZBoxRule(low=low, high=high))
        super().__init__(model, **kwargs)

    def _conv_rule(self, bias):
        return GammaRule(gamma=self.gamma, epsilon=ZENNIT_EPSILON, bias=bias)


for _cls in (EpsilonPlus, EpsilonAlpha2Beta1, EpsilonPlusFlat, EpsilonAlpha2Beta1Flat):
    _cls.__doc__ = _cls.__doc__.replace("{args}", _COMMON_ARGS)

#: the composites by analyzer name.
COMPOSITES = {
    cls.name: cls
    for cls in (
        EpsilonPlus,
        EpsilonPlusFlat,
        EpsilonAlpha2Beta1,
        EpsilonAlpha2Beta1Flat,
        EpsilonGammaBox,
    )
}

__all__ = [
    "COMPOSITES",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
]
