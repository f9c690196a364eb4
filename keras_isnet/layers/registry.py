"""The registry that maps Keras layer classes to their :class:`ReverseLayer` description."""

from __future__ import annotations

from collections.abc import Callable

from keras_isnet.layers.base import (
    CustomLayer,
    ElementwiseLayer,
    ReverseLayer,
    RoutingLayer,
    WeightlessLinearLayer,
)

_REGISTRY: dict[type, ReverseLayer] = {}
#: rules of ``keras.layers.Lambda`` layers, by layer name and by the wrapped function.
_LAMBDA_BY_NAME: dict[str, ReverseLayer] = {}
_LAMBDA_BY_FUNCTION: dict[int, tuple[Callable, ReverseLayer]] = {}

_SHORTHANDS = {
    "elementwise": ElementwiseLayer,
    "pass": ElementwiseLayer,
    "routing": RoutingLayer,
    "weightless_linear": WeightlessLinearLayer,
}


def register_reverse_rule(
    layer_class: type | str | Callable, rule: ReverseLayer | str | Callable
) -> None:
    """Tell the LRP analyzers how relevance crosses layers of ``layer_class``.

    The public extension point for custom layers and operations. Subclasses of
    ``layer_class`` use the same rule unless they are registered themselves.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass, a Keras operation class (the class
            of a ``keras.ops`` node, e.g. ``keras.src.ops.numpy.Cumsum``), or, for
            ``keras.layers.Lambda`` layers, the name of a Lambda layer (a string) or the
            function a Lambda wraps (a rule for every Lambda of that function).
        rule: one of

            * ``"pass"`` (or ``"elementwise"``): relevance passes unchanged, for element-wise
              layers with one input whose output has the input's shape;
            * ``"routing"``: relevance follows the gradient, for layers that move or copy
              values without mixing them (reshapes, crops, pads);
            * ``"weightless_linear"``: the z-rule ``R_i = x_i * d(sum)/dx_i * R / z``, for
              weightless sums and means;
            * a :class:`~keras_isnet.layers.base.ReverseLayer` instance (for a layer with
              weights, subclass :class:`~keras_isnet.layers.base.KernelLayer` so that every
              LRP rule applies to it);
            * a callable ``fn(layer, inputs, outputs, relevances) -> input_relevances`` taking
              and returning lists of tensors.

    Example:
        >>> class Scale(keras.layers.Layer):
        ...     def call(self, x):
        ...         return 2.0 * x
        >>> ki.register_reverse_rule(Scale, "pass")
        >>> double = keras.layers.Lambda(lambda t: 2.0 * t, name="double")
        >>> ki.register_reverse_rule("double", "pass")   # the Lambda layer named "double"
    """
    is_layer = hasattr(layer_class, "name")
    if isinstance(layer_class, type):
        label = layer_class.__name__
    elif isinstance(layer_class, str):
        label = f"Lambda layer {layer_class!r}"
    elif callable(layer_class) and not is_layer:
        label = f"Lambda function {getattr(layer_class, '__name__', layer_class)!r}"
    else:
        raise TypeError(
            f"register_reverse_rule expects a layer class, an operation class, a Lambda layer's "
            f"name or a Lambda's function; got {layer_class!r} "
            f"({type(layer_class).__name__}). Pass the class, e.g. type(layer), or the "
            "Lambda's name."
        )
    if isinstance(rule, str):
        if rule not in _SHORTHANDS:
            raise ValueError(
                f"Unknown reverse rule {rule!r} for {label}; valid names are "
                f"{sorted(_SHORTHANDS)}, or pass a ReverseLayer or a callable."
            )
        rule = _SHORTHANDS[rule]()
    elif not isinstance(rule, ReverseLayer):
        rule = CustomLayer(rule)
    if isinstance(layer_class, type):
        _REGISTRY[layer_class] = rule
    elif isinstance(layer_class, str):
        _LAMBDA_BY_NAME[layer_class] = rule
    else:
        _LAMBDA_BY_FUNCTION[id(layer_class)] = (layer_class, rule)


def lookup(layer) -> ReverseLayer | None:
    """The description registered for ``layer``'s class or its nearest registered base (for a
    ``keras.layers.Lambda``: the rule registered for its name, else for its function)."""
    if type(layer).__name__ == "Lambda" and hasattr(layer, "function"):
        rule = _LAMBDA_BY_NAME.get(getattr(layer, "name", None))
        if rule is not None:
            return rule
        entry = _LAMBDA_BY_FUNCTION.get(id(layer.function))
        if entry is not None and entry[0] is layer.function:
            return entry[1]
    for cls in type(layer).__mro__:
        rule = _REGISTRY.get(cls)
        if rule is not None:
            return rule
    return None
