"""Gradient-based analyzers: gradient, input times gradient, deconvnet, guided backprop.

They run the same layer-by-layer backward walk as LRP, with each layer's pullback (its
vector-Jacobian product); deconvnet and guided backprop change only what happens at ReLUs.
Any layer works, registered or not, since every Keras layer has a gradient.

Example:
    >>> ki.create_analyzer("gradient", model, postprocess="abs").analyze(x)
"""

from __future__ import annotations

from keras import ops

from keras_isnet.analyzers.base import Analyzer
from keras_isnet.backend import vjp
from keras_isnet.engine import pullback_handler
from keras_isnet.layers import ElementwiseLayer, KernelLayer, lookup
from keras_isnet.layers.base import activation_name

POSTPROCESS = (None, "abs", "square")


def _check_float_inputs(analyzer):
    for t in analyzer.model.inputs:
        if "float" not in str(t.dtype):
            raise TypeError(
                f"{type(analyzer).__name__} differentiates with respect to the input, but model "
                f"input {t.name!r} has dtype {t.dtype} (e.g. Embedding indices). Use an LRP "
                "analyzer, which reports per-token relevance for Embedding inputs."
            )


class Gradient(Analyzer):
    """The gradient of the selected output with respect to the input (``gradient``).

    Args:
        postprocess: None (default), ``"abs"`` or ``"square"``, applied to the gradient.
    """

    name = "gradient"

    def __init__(self, model, *, postprocess: str | None = None, **kwargs):
        if postprocess not in POSTPROCESS:
            raise ValueError(
                f"Unknown postprocess {postprocess!r}; valid values are {list(POSTPROCESS)}."
            )
        self.postprocess = postprocess
        super().__init__(model, **kwargs)
        _check_float_inputs(self)
        self._handlers = self.engine.handlers(lambda step: pullback_handler)

    def _seed(self, head, weights):
        return weights

    def _finalize(self, inputs, relevances):
        if self.postprocess == "abs":
            return [ops.abs(r) for r in relevances]
        if self.postprocess == "square":
            return [ops.square(r) for r in relevances]
        return relevances


class BaselineGradient(Gradient):
    """``gradient.baseline``: the same gradient, from one autodiff call on the whole model.

    Kept, as in iNNvestigate, as an independent cross-check of the layer-wise walk.
    """

    name = "gradient.baseline"

    def _propagate(self, inputs, weights_fn, *, training=False, keep=None):
        engine = self.engine

        def head_of(*xs):
            return engine.replay(list(xs), training=training)[0][engine.head_key]

        head, pullback = vjp(head_of, inputs)
        grads = pullback(weights_fn(head))
        return [ops.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


class InputTimesGradient(Gradient):
    """Input times gradient (``input_t_gradient``)."""

    name = "input_t_gradient"

    def _finalize(self, inputs, relevances):
        return [ops.multiply(x, r) for x, r in zip(inputs, relevances, strict=True)]


def _relu_kind(step):
    """ "layer" for a ReLU layer, "activation" for a kernel layer with a ReLU, else None."""
    spec = lookup(step.layer)
    if isinstance(spec, ElementwiseLayer) and spec.is_relu(step.layer):
        return "layer"
    if isinstance(spec, KernelLayer) and activation_name(step.layer) == "relu":
        return "activation"
    return None


class Deconvnet(Analyzer):
    """Deconvnet (Zeiler & Fergus, 2014): at ReLUs, keep the positive part of the signal.

    The head is the selected output's value. A ReLU layer maps ``R`` to ``relu(R)``; a kernel
    layer with a ReLU activation applies ``relu(R)`` and then the gradient of its linear
    part; every other layer uses its gradient.
    """

    name = "deconvnet"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        _check_float_inputs(self)
        self._handlers = self.engine.handlers(self._handler)

    def _handler(self, step):
        kind = _relu_kind(step)
        if kind == "layer":
            return lambda record, Rs: [ops.relu(Rs[0])]
        if kind == "activation" and step.index not in self.engine.linear_steps:
            return lambda record, Rs: [record.kernel.pullback(ops.relu(Rs[0]))]
        return pullback_handler


class GuidedBackprop(Analyzer):
    """Guided backprop (Springenberg et al., 2015): the gradient, with ``relu(R)`` at ReLUs.

    The head is the selected output's value.
    """

    name = "guided_backprop"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        _check_float_inputs(self)
        self._handlers = self.engine.handlers(self._handler)

    def _handler(self, step):
        if _relu_kind(step) is not None and step.index not in self.engine.linear_steps:
            return lambda record, Rs: record.pullback([ops.relu(Rs[0])])
        return pullback_handler
