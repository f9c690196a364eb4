"""What every Keras layer type looks like to relevance propagation.

Each supported layer class is described by one :class:`ReverseLayer`. The descriptions say
*what kind* of operation a layer is; the analyzers decide what to do with each kind:

* :class:`KernelLayer`: a linear map with weights, an optional bias and an optional
  activation (Dense, convolutions, BatchNormalization as an affine map). LRP analyzers
  apply their decomposition rule (epsilon, alpha-beta, ...) to the linear part.
* :class:`ElementwiseLayer`: an element-wise function (activations, dropout, noise,
  input preprocessing). LRP passes relevance through unchanged.
* :class:`RoutingLayer`: moves or copies values without mixing them (Flatten, Reshape,
  Concatenate, padding, cropping, up-sampling, max pooling). LRP routes relevance along the
  gradient, which conserves it.
* :class:`WeightlessLinearLayer`: sums or averages inputs without weights (average pooling,
  Add). LRP splits relevance in proportion to each input's contribution (the z-rule).
* :class:`CustomLayer`: a user-supplied reverse function.

New layer types are added with :func:`keras_isnet.register_reverse_rule`.
"""

from __future__ import annotations

from collections.abc import Callable

from keras import ops


def activation_name(layer) -> str:
    """The ``__name__`` of ``layer``'s built-in activation (``"relu"``, ``"softmax"``, ...),
    ``""`` for layers without one."""
    return getattr(getattr(layer, "activation", None), "__name__", "")


class ReverseLayer:
    """Base class of the layer descriptions. ``kind`` names the category."""

    kind: str = ""

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        """Whether the layer's output is >= 0 (``inputs_nonnegative``: all inputs are)."""
        return False

    def __repr__(self):
        return f"{type(self).__name__}()"


class ElementwiseLayer(ReverseLayer):
    """An element-wise layer: LRP relevance passes through unchanged.

    Args:
        relu: whether the layer is a plain ReLU (deconvnet and guided backprop treat ReLUs
            specially); a callable ``relu(layer) -> bool`` decides per layer instance.
        nonnegative: whether the output is >= 0: a bool, a callable ``f(layer) -> bool``, or
            ``"inherit"`` for identity-like layers (dropout) whose output is >= 0 when the
            input is. Only used to skip work that is zero for non-negative inputs.
    """

    kind = "elementwise"

    def __init__(self, relu: bool | Callable = False, nonnegative: bool | Callable | str = False):
        self._relu = relu
        self._nonnegative = nonnegative

    def is_relu(self, layer) -> bool:
        return self._relu(layer) if callable(self._relu) else bool(self._relu)

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        if self._nonnegative == "inherit":
            return inputs_nonnegative
        if callable(self._nonnegative):
            return bool(self._nonnegative(layer))
        return bool(self._nonnegative)


class RoutingLayer(ReverseLayer):
    """A layer that moves values without mixing them: relevance follows the gradient."""

    kind = "routing"

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return inputs_nonnegative

    def pullback(self, layer, inputs, outputs, pullback):
        """The pullback the backward walks use for one call of ``layer``.

        ``pullback`` is the call's automatic-differentiation pullback (a list of output
        cotangents to a list of input cotangents); subclasses may return an equivalent
        that is cheaper to run repeatedly and to differentiate (see max pooling).
        """
        return pullback


class WeightlessLinearLayer(ReverseLayer):
    """A weightless linear layer (sum or mean of inputs): LRP uses the z-rule.

    Args:
        preserves_sign: whether non-negative inputs give a non-negative output (True for
            sums and means, False for Subtract).
    """

    kind = "weightless_linear"

    def __init__(self, preserves_sign: bool = True):
        self.preserves_sign = preserves_sign

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return self.preserves_sign and inputs_nonnegative


class KernelLayer(ReverseLayer):
    """A layer ``y = activation(linear(x, kernel) + bias)``.

    Subclasses implement :meth:`weights` and :meth:`linear`. ``category`` is "dense",
    "conv" or "affine" and is what rule maps by layer type use (the sequential presets put
    the epsilon rule on "dense" and alpha-beta on "conv").
    """

    kind = "kernel"
    category = "dense"

    def weights(self, layer):
        """``(kernel, bias)`` of ``layer``; ``kernel`` may be a tuple, ``bias`` may be None."""
        raise NotImplementedError

    def linear(self, layer, x, kernel):
        """The bias-free linear part of ``layer`` applied to ``x`` with ``kernel``."""
        raise NotImplementedError

    def add_bias(self, layer, z, bias):
        """``z + bias`` broadcast along the layer's channel axis (the last, by default)."""
        if bias is None:
            return z
        return ops.add(z, bias)

    def input_channel_axes(self, layer):
        """``(kernel_axis, input_axis)``: the axis of the kernel and of the input that run
        over input channels, when stacking kernels along them stacks the linear maps (so
        several transposes run as one call); None where that does not hold."""
        return None

    def transposes(self, layer, x, kernels):
        """A function ``s -> [W^T s for W in kernels]`` for inputs shaped like ``x``.

        Where :meth:`input_channel_axes` allows it, the kernels are stacked along their
        input-channel axis and all transposes run as one call (one transposed convolution
        with several output channels instead of several with one, which is much faster for
        the first layer of an image model); otherwise one pullback per kernel.
        """
        from keras_isnet.backend import vjp

        axes = self.input_channel_axes(layer)
        if axes is None or len(kernels) == 1:
            pulls = [vjp(lambda v, k=k: self.linear(layer, v, k), [x])[1] for k in kernels]
            return lambda s: [pull(s)[0] for pull in pulls]
        kernel_axis, input_axis = axes
        stacked = ops.concatenate(list(kernels), axis=kernel_axis)
        wide = ops.concatenate([x] * len(kernels), axis=input_axis)
        _, pull = vjp(lambda v: self.linear(layer, v, stacked), [wide])
        return lambda s: ops.split(pull(s)[0], len(kernels), axis=input_axis)

    def activation(self, layer):
        """The layer's activation function, or None for a linear layer."""
        act = getattr(layer, "activation", None)
        if act is None or getattr(act, "__name__", "") == "linear":
            return None
        return act


class CustomLayer(ReverseLayer):
    """A user-supplied reverse function for LRP analyzers.

    Args:
        fn: ``fn(layer, inputs, outputs, relevances) -> list of input relevances``; all
            arguments are lists of tensors, one relevance per output, and it returns one
            relevance per input (None for inputs that receive none).
        label: how :func:`keras_isnet.conservation_report` names the rule (default
            "custom").
        causes: where the rule may absorb relevance, for the report (default
            ``("custom rule",)``).
    """

    kind = "custom"

    def __init__(self, fn: Callable, label: str = "custom", causes=("custom rule",)):
        if not callable(fn):
            raise TypeError(f"CustomLayer expects a callable, got {type(fn).__name__}.")
        self.fn = fn
        self.label = label
        self.causes = list(causes)

    def __repr__(self):
        return f"CustomLayer({getattr(self.fn, '__name__', self.fn)!r})"


class EmbeddingLayer(ReverseLayer):
    """An embedding lookup: the relevance of a token is the sum over its embedding vector."""

    kind = "embedding"
