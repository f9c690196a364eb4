"""Analyzers in iNNvestigate's style, created by name with :func:`create_analyzer`."""

from __future__ import annotations

import difflib

from keras_isnet.analyzers.base import Analyzer, UnsupportedLayerError
from keras_isnet.analyzers.grad_cam import GradCAM, GradCAMPlusPlus
from keras_isnet.analyzers.gradient import (
    BaselineGradient,
    Deconvnet,
    Gradient,
    GuidedBackprop,
    InputTimesGradient,
)
from keras_isnet.analyzers.igos import IGOS, IGOSPlusPlus
from keras_isnet.analyzers.lrp import LRP
from keras_isnet.analyzers.misc import Input, Random
from keras_isnet.analyzers.presets import (
    LRPZ,
    BoundedDeepTaylor,
    DeepTaylor,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LRPAlpha1Beta0,
    LRPAlpha1Beta0IgnoreBias,
    LRPAlpha2Beta1,
    LRPAlpha2Beta1IgnoreBias,
    LRPAlphaBeta,
    LRPEpsilon,
    LRPFlat,
    LRPSequentialPresetA,
    LRPSequentialPresetAFlat,
    LRPSequentialPresetB,
    LRPSequentialPresetBFlat,
    LRPSequentialPresetBFlatUntilIdx,
    LRPWSquare,
    LRPZPlus,
    LRPZPlusFast,
)
from keras_isnet.analyzers.smoothing import IntegratedGradients, SmoothGrad
from keras_isnet.composites import COMPOSITES, add_deprecated_aliases

#: iNNvestigate's 28 analyzer names and zennit's composites ("lrp.epsilon_plus", ...), with
#: their classes.
ANALYZERS: dict[str, type[Analyzer]] = {
    cls.name: cls
    for cls in (
        Input,
        Random,
        Gradient,
        BaselineGradient,
        InputTimesGradient,
        Deconvnet,
        GuidedBackprop,
        IntegratedGradients,
        SmoothGrad,
        LRP,
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
        GradCAM,
        GradCAMPlusPlus,
        IGOSPlusPlus,
        IGOS,
    )
}


add_deprecated_aliases(
    {
        cls.__name__: cls
        for cls in (
            EpsilonPlus,
            EpsilonPlusFlat,
            EpsilonAlpha2Beta1,
            EpsilonAlpha2Beta1Flat,
            EpsilonGammaBox,
        )
    },
    "keras_isnet.analyzers",
)


def create_analyzer(name: str, model, **kwargs) -> Analyzer:
    """Create the analyzer called ``name`` for ``model`` (iNNvestigate's entry point).

    Args:
        name: one of :data:`ANALYZERS` (``"lrp.epsilon"``, ``"gradient"``, ...), or the name
            of a composite registered with :func:`keras_isnet.composites.register_composite`
            (an :class:`LRP` analyzer with that composite).
        model: a built Keras functional or Sequential model.
        **kwargs: the analyzer's options, e.g. ``neuron_selection_mode="index"``,
            ``epsilon=1e-7``, ``bias=False``, ``input_layer_rule="Flat"``.

    Returns:
        An :class:`Analyzer`; call ``.analyze(x)`` on it.

    Raises:
        KeyError: for an unknown name; the message suggests the closest names and lists
            every valid name.

    Example:
        >>> analyzer = create_analyzer("lrp.epsilon", model)
        >>> heatmaps = analyzer.analyze(x)
    """
    cls = ANALYZERS.get(name)
    if cls is not None:
        return cls(model, **kwargs)
    if name in COMPOSITES:  # a composite registered by the user: an LRP analyzer
        return LRP(model, composite=name, **kwargs)
    names = list(ANALYZERS) + [n for n in COMPOSITES if n not in ANALYZERS]
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise KeyError(f"No analyzer named {name!r}.{hint} Valid names are: {', '.join(names)}.")


__all__ = ["ANALYZERS", "Analyzer", "UnsupportedLayerError", "create_analyzer"] + [
    cls.__name__ for cls in ANALYZERS.values()
]
