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

Behaviour per family is a method of the description: :meth:`ReverseLayer.lrp_handler`
gives the LRP backward handler of one layer call and :meth:`ReverseLayer.conservation_info`
what the conservation report says about it. Both receive the LRP *context* (a
:class:`keras_isnet.composites.BoundComposite`): the rule chosen for a kernel layer
(``context.rule_for(step)``), a rule map's rule for a weightless layer
(``context.weightless_rule(step)``), the z-rule's division (``context.weightless_divide``),
``context.bn_rule`` and ``context.fold_plan``.

New layer types are added with :func:`keras_isnet.register_reverse_rule`.
"""

from __future__ import annotations

from collections.abc import Callable

from keras import ops

from keras_isnet.backend import vjp

#: the conservation cause of a bias-free rule at a layer with a bias (or folded BN shift):
#: an output whose inputs are all zero is the bias alone, and no relevance can leave it.
BIAS_ONLY = "output carried by the bias alone"

#: activations whose output is never negative.
NONNEGATIVE_ACTIVATIONS = ("relu", "relu6", "softplus", "sigmoid", "softmax", "exponential")


def pass_handler(record, relevances):
    """The backward handler that hands the relevance of the output to the input unchanged."""
    return [relevances[0]]


def activation_name(layer) -> str:
    """The ``__name__`` of ``layer``'s built-in activation (``"relu"``, ``"softmax"``, ...),
    ``""`` for layers without one."""
    return getattr(getattr(layer, "activation", None), "__name__", "")


class ReverseLayer:
    """Base class of the layer descriptions."""

    #: whether LRP decomposes the layer with a rule of its own (kernel layers, embeddings,
    #: custom rules); Deep Taylor propagates along the gradient through all other layers.
    decomposes = False

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        """Whether the layer's output is >= 0 (``inputs_nonnegative``: all inputs are)."""
        return False

    def lrp_handler(self, step, context):
        """The LRP backward handler ``handler(record, R_out) -> R_in`` of one layer call.

        Args:
            step: the layer call (:class:`keras_isnet.graph.Step`).
            context: the LRP context (see the module docstring).
        """
        raise NotImplementedError

    def conservation_info(self, step, context) -> tuple[str, list[str]]:
        """``(rule label, causes of absorption)`` of one layer call, for the report."""
        return type(self).__name__, []

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

    def lrp_handler(self, step, context):
        if len(set(step.inputs)) != 1 or len(step.outputs) != 1:
            raise context.unsupported(step, "an element-wise layer needs one input and output")
        in_shape = tuple(step.node.input_tensors[0].shape[1:])
        out_shape = tuple(step.node.outputs[0].shape[1:])
        if in_shape != out_shape:
            raise context.unsupported(
                step, f"registered as element-wise but maps {in_shape} to {out_shape}"
            )
        return pass_handler

    def conservation_info(self, step, context):
        return "pass", []


class RoutingLayer(ReverseLayer):
    """A layer that moves values without mixing them: relevance follows the gradient."""

    #: what the conservation report names as this layer's possible losses.
    causes: tuple = ()

    def __init__(self, causes: tuple = ()):
        self.causes = tuple(causes)

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return inputs_nonnegative

    def pullback(self, layer, inputs, outputs, pullback):
        """The pullback the backward walks use for one call of ``layer``.

        ``pullback`` is the call's automatic-differentiation pullback (a list of output
        cotangents to a list of input cotangents); subclasses may return an equivalent
        that is cheaper to run repeatedly and to differentiate (see max pooling).
        """
        return pullback

    def lrp_handler(self, step, context):
        return _routing_handler

    def conservation_info(self, step, context):
        return "routing", list(self.causes)


def _routing_handler(record, relevances):
    return record.pullback(relevances)


class WeightlessLinearLayer(ReverseLayer):
    """A weightless linear layer (sum or mean of inputs): LRP uses the z-rule.

    Args:
        preserves_sign: whether non-negative inputs give a non-negative output (True for
            sums and means, False for Subtract).
    """

    def __init__(self, preserves_sign: bool = True):
        self.preserves_sign = preserves_sign

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return self.preserves_sign and inputs_nonnegative

    def lrp_handler(self, step, context):
        rule = context.weightless_rule(step)
        if rule is not None:
            return lambda record, Rs: list(
                rule.reverse_weightless(
                    step.layer, record.inputs, record.outputs, record.pullback, Rs
                )
            )
        divide = context.weightless_divide

        def z_rule(record, Rs):
            s = [divide(R, y) for R, y in zip(Rs, record.outputs, strict=True)]
            grads = record.pullback(s)
            return [
                None if g is None else ops.multiply(x, g)
                for x, g in zip(record.inputs, grads, strict=True)
            ]

        return z_rule

    def conservation_info(self, step, context):
        rule = context.weightless_rule(step)
        if rule is not None:
            return rule.label, rule.absorption()
        epsilon = context.weightless_epsilon
        if epsilon is None:
            return "z-rule", ["zero denominators"]
        return f"z-rule(e={epsilon:g})", ["epsilon"]


class KernelLayer(ReverseLayer):
    """A layer ``y = activation(linear(x, kernel) + bias)``.

    Subclasses implement :meth:`weights` and :meth:`linear`. ``category`` is "dense",
    "conv" or "affine" and is what rule maps by layer type use (the sequential presets put
    the epsilon rule on "dense" and alpha-beta on "conv").
    """

    category = "dense"
    decomposes = True
    #: whether BatchNormalization can be folded into layers of this type (canonizers).
    foldable = False

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

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return activation_name(layer) in NONNEGATIVE_ACTIVATIONS

    def channel_axis(self, layer, rank: int) -> int:
        """The channel axis (non-negative) of a rank-``rank`` input or output of ``layer``."""
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            return 1
        return rank - 1

    def fold_problem(self, layer, side: str) -> str | None:
        """Why a BatchNormalization cannot be folded into ``layer`` on ``side`` (``"before"``:
        the BN feeds the layer; ``"after"``: it reads the layer's output), as a predicate
        such as ``"is quantized"``, or None."""
        if not self.foldable:
            return "is not a Dense or convolution layer"
        if getattr(layer, "quantization_mode", None):
            return "is quantized"
        if side == "after" and self.activation(layer) is not None:
            act = getattr(self.activation(layer), "__name__", "an activation")
            return f"has activation {act!r} before the BN"
        return None

    def scale_inputs(self, layer, kernel, s):
        """The kernel of ``x -> layer(s * x)`` (``s`` per input channel): kernels shaped
        ``(..., in, out)`` by default."""
        return ops.multiply(kernel, ops.expand_dims(s, -1))

    def scale_outputs(self, layer, kernel, s):
        """The kernel of ``x -> s * layer(x)`` (``s`` per output channel)."""
        return ops.multiply(kernel, s)

    def relevance_passes(self, context) -> bool:
        """Whether relevance crosses this layer unchanged under ``context`` (a folded or
        passed BatchNormalization); False for ordinary kernel layers."""
        return False

    def lrp_handler(self, step, context):
        if self.relevance_passes(context):
            return pass_handler
        rule = context.rule_for(step)
        return lambda record, Rs: [rule(record.kernel, Rs[0])]

    def conservation_info(self, step, context):
        rule = context.rule_for(step)
        causes = []
        biases = self.bias_causes(step, context)
        if rule.uses_bias:
            causes.extend(biases)
        elif biases:  # a bias-free rule cannot pass on what the bias alone computes
            causes.append(BIAS_ONLY)
        causes.extend(rule.absorption())
        return rule.label, causes

    def bias_causes(self, step, context) -> list[str]:
        """What plays the role of a bias at this layer call: its own bias and the shifts of
        the BatchNormalization layers folded into it."""
        causes = ["bias"] if getattr(step.layer, "use_bias", False) else []
        plan = context.fold_plan
        fold = None if plan is None else plan.folds.get(step.index)
        if fold is not None:
            for bn in (fold.before, fold.after):
                if bn is not None:
                    causes.append(f"BN shift of {bn.path!r} (folded)")
        return causes

    def transposes(self, layer, x, kernels):
        """A function ``s -> [W^T s for W in kernels]`` for inputs shaped like ``x``.

        Where :meth:`input_channel_axes` allows it, the kernels are stacked along their
        input-channel axis and all transposes run as one call (one transposed convolution
        with several output channels instead of several with one, which is much faster for
        the first layer of an image model); otherwise one pullback per kernel.
        """
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

    decomposes = True

    def __init__(self, fn: Callable, label: str = "custom", causes=("custom rule",)):
        if not callable(fn):
            raise TypeError(f"CustomLayer expects a callable, got {type(fn).__name__}.")
        self.fn = fn
        self.label = label
        self.causes = list(causes)

    def lrp_handler(self, step, context):
        fn = self.fn
        return lambda record, Rs: list(fn(step.layer, record.inputs, record.outputs, Rs))

    def conservation_info(self, step, context):
        return self.label, list(self.causes)

    def __repr__(self):
        return f"CustomLayer({getattr(self.fn, '__name__', self.fn)!r})"


class EmbeddingLayer(ReverseLayer):
    """An embedding lookup: the relevance of a token is the sum over its embedding vector."""

    decomposes = True

    def lrp_handler(self, step, context):
        return lambda record, Rs: [ops.sum(Rs[0], axis=-1)]

    def conservation_info(self, step, context):
        return "sum over embedding", []
