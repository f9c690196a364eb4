"""The named LRP analyzers: iNNvestigate's and zennit's names, each an :class:`LRP` whose
composite is registered under its ``name`` (see :mod:`keras_isnet.composites`).

A class here is data: a name and a docstring. Its options are the composite's parameters,
e.g. ``LRPEpsilon(model, epsilon=1e-3, bias=False)``, plus every LRP option
(``input_layer_rule``, ``bn_rule``, ``compute_dtype``, ``neuron_selection_mode``, ...).
"""

from __future__ import annotations

from keras_isnet.analyzers.lrp import LRP


class LRPZ(LRP):
    """LRP-0 (``lrp.z``); ``bias=False`` is iNNvestigate's LRPZIgnoreBias."""

    name = "lrp.z"


class LRPEpsilon(LRP):
    """LRP-epsilon (``lrp.epsilon``), epsilon 1e-7 by default; ``bias=False`` ignores biases."""

    name = "lrp.epsilon"


class LRPWSquare(LRP):
    """The w-square rule on every kernel layer (``lrp.w_square``)."""

    name = "lrp.w_square"


class LRPFlat(LRP):
    """The flat rule on every kernel layer (``lrp.flat``)."""

    name = "lrp.flat"


class LRPAlphaBeta(LRP):
    """LRP-alpha-beta (``lrp.alpha_beta``): give ``alpha`` or ``beta``, alpha - beta = 1."""

    name = "lrp.alpha_beta"


class LRPAlpha2Beta1(LRP):
    """LRP-alpha2-beta1 (``lrp.alpha_2_beta_1``)."""

    name = "lrp.alpha_2_beta_1"


class LRPAlpha2Beta1IgnoreBias(LRP):
    """LRP-alpha2-beta1, biases ignored (``lrp.alpha_2_beta_1_IB``)."""

    name = "lrp.alpha_2_beta_1_IB"


class LRPAlpha1Beta0(LRP):
    """LRP-alpha1-beta0 (``lrp.alpha_1_beta_0``)."""

    name = "lrp.alpha_1_beta_0"


class LRPAlpha1Beta0IgnoreBias(LRP):
    """LRP-alpha1-beta0, biases ignored (``lrp.alpha_1_beta_0_IB``)."""

    name = "lrp.alpha_1_beta_0_IB"


class LRPZPlus(LRP):
    """z-plus (``lrp.z_plus``): alpha1-beta0 ignoring biases."""

    name = "lrp.z_plus"


class LRPZPlusFast(LRP):
    """z-plus for non-negative inputs, one pass (``lrp.z_plus_fast``)."""

    name = "lrp.z_plus_fast"


class LRPSequentialPresetA(LRP):
    """Epsilon (``epsilon=0.1``) on dense layers, alpha1-beta0 on convolutions
    (``lrp.sequential_preset_a``)."""

    name = "lrp.sequential_preset_a"


class LRPSequentialPresetB(LRP):
    """Epsilon (``epsilon=0.1``) on dense layers, alpha2-beta1 on convolutions
    (``lrp.sequential_preset_b``)."""

    name = "lrp.sequential_preset_b"


class LRPSequentialPresetAFlat(LRP):
    """Preset A with the flat rule at the input layer (``lrp.sequential_preset_a_flat``)."""

    name = "lrp.sequential_preset_a_flat"


class LRPSequentialPresetBFlat(LRP):
    """Preset B with the flat rule at the input layer (``lrp.sequential_preset_b_flat``)."""

    name = "lrp.sequential_preset_b_flat"


class LRPSequentialPresetBFlatUntilIdx(LRP):
    """Preset B with the flat rule on kernel layers ``0..until_layer_idx`` (required) and the
    input layer (``lrp.sequential_preset_b_flat_until_idx``)."""

    name = "lrp.sequential_preset_b_flat_until_idx"


class DeepTaylor(LRP):
    """Deep Taylor (``deep_taylor``): z-plus on kernel layers, the gradient elsewhere, head
    ``relu(y)``."""

    name = "deep_taylor"


class BoundedDeepTaylor(LRP):
    """Deep Taylor with the z^B rule for inputs in ``[low, high]`` (``deep_taylor.bounded``;
    ``low`` and ``high`` required)."""

    name = "deep_taylor.bounded"


class EpsilonPlus(LRP):
    """zennit's ``EpsilonPlus`` (``lrp.epsilon_plus``): z-plus on convolutions, epsilon on
    Dense layers; options ``epsilon`` (1e-6), ``bias`` (True), ``layer_map``."""

    name = "lrp.epsilon_plus"


class EpsilonPlusFlat(LRP):
    """zennit's ``EpsilonPlusFlat`` (``lrp.epsilon_plus_flat``): epsilon_plus with the flat
    rule at the first layer."""

    name = "lrp.epsilon_plus_flat"


class EpsilonAlpha2Beta1(LRP):
    """zennit's ``EpsilonAlpha2Beta1`` (``lrp.epsilon_alpha2_beta1``): alpha2-beta1 on
    convolutions, epsilon on Dense layers."""

    name = "lrp.epsilon_alpha2_beta1"


class EpsilonAlpha2Beta1Flat(LRP):
    """zennit's ``EpsilonAlpha2Beta1Flat`` (``lrp.epsilon_alpha2_beta1_flat``): the same with
    the flat rule at the first layer."""

    name = "lrp.epsilon_alpha2_beta1_flat"


class EpsilonGammaBox(LRP):
    """zennit's ``EpsilonGammaBox`` (``lrp.epsilon_gamma_box``): ZBox(``low``, ``high``,
    required) at the first layer, gamma (``gamma=0.25``) on other convolutions, epsilon on
    Dense layers."""

    name = "lrp.epsilon_gamma_box"


#: every named LRP analyzer class, in the order of :data:`keras_isnet.ANALYZERS`.
PRESETS = (
    LRPZ,
    LRPEpsilon,
    LRPWSquare,
    LRPFlat,
    LRPAlphaBeta,
    LRPAlpha2Beta1,
    LRPAlpha2Beta1IgnoreBias,
    LRPAlpha1Beta0,
    LRPAlpha1Beta0IgnoreBias,
    LRPZPlus,
    LRPZPlusFast,
    LRPSequentialPresetA,
    LRPSequentialPresetB,
    LRPSequentialPresetAFlat,
    LRPSequentialPresetBFlat,
    LRPSequentialPresetBFlatUntilIdx,
    DeepTaylor,
    BoundedDeepTaylor,
    EpsilonPlus,
    EpsilonPlusFlat,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
)

__all__ = [cls.__name__ for cls in PRESETS] + ["PRESETS"]
