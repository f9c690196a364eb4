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

_SHORTHANDS = {
    "elementwise": ElementwiseLayer,
    "pass": ElementwiseLayer,
    "routing": RoutingLayer,
    "weightless_linear": WeightlessLinearLayer,
}


def register_reverse_rule(layer_class: type, rule: ReverseLayer | str | Callable) -> None:
    """Tell the LRP analyzers how relevance crosses layers of ``layer_class``.

    The public extension point for custom layers. Subclasses of ``layer_class`` use the same
    rule unless they are registered themselves.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass.
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
    """
    if not isinstance(layer_class, type):
        raise TypeError(
            f"register_reverse_rule expects a layer class, got {layer_class!r} "
            f"({type(layer_class).__name__}); pass the class, e.g. type(layer)."
        )
    if isinstance(rule, str):
        if rule not in _SHORTHANDS:
            raise ValueError(
                f"Unknown reverse rule {rule!r} for {layer_class.__name__}; valid names are "
                f"{sorted(_SHORTHANDS)}, or pass a ReverseLayer or a callable."
            )
        rule = _SHORTHANDS[rule]()
    elif not isinstance(rule, ReverseLayer):
        rule = CustomLayer(rule)
    _REGISTRY[layer_class] = rule


def lookup(layer) -> ReverseLayer | None:
    """The description registered for ``layer``'s class or its nearest registered base."""
    for cls in type(layer).__mro__:
        rule = _REGISTRY.get(cls)
        if rule is not None:
            return rule
    return None
