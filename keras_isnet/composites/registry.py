"""The registry of named composites: ``register_composite("lrp.epsilon")`` on a factory.

A factory is a function of the composite's parameters (keyword arguments with defaults)
that returns a :class:`~keras_isnet.composites.Composite`. The LRP analyzers look their
composite up here by name; :func:`keras_isnet.create_analyzer` passes it the keyword
arguments that the factory takes.

Example:
    >>> @register_composite("lrp.my_epsilon")
    ... def my_epsilon(epsilon: float = 0.05) -> Composite:
    ...     return Composite(default=EpsilonRule(epsilon=epsilon))
    >>> build_composite("lrp.my_epsilon", {"epsilon": 0.1})
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from keras_isnet.composites.composite import Composite

#: composite name -> factory.
COMPOSITES: dict[str, Callable[..., Composite]] = {}


def register_composite(name: str) -> Callable:
    """Decorator: register ``factory`` as the composite called ``name``.

    Args:
        name: the name, e.g. ``"lrp.epsilon"`` (also the analyzer name when an
            :class:`~keras_isnet.analyzers.LRP` subclass of that ``name`` exists).

    Returns:
        The decorator; it returns the factory unchanged.
    """

    def decorate(factory: Callable[..., Composite]) -> Callable[..., Composite]:
        if name in COMPOSITES and COMPOSITES[name] is not factory:
            raise ValueError(f"A composite named {name!r} is registered already.")
        COMPOSITES[name] = factory
        return factory

    return decorate


def composite_parameters(name: str) -> list[str]:
    """The keyword parameters of the composite ``name`` (its factory's parameters)."""
    factory = composite_factory(name)
    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def build_composite(name: str, params: dict | None = None) -> Composite:
    """The composite ``name`` built with ``params`` (its factory's keyword arguments)."""
    return composite_factory(name)(**(params or {}))


def composite_factory(name: str) -> Callable[..., Composite]:
    """The factory registered as ``name``; a KeyError with the closest names otherwise."""
    try:
        return COMPOSITES[name]
    except KeyError:
        close = difflib.get_close_matches(name, COMPOSITES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"No composite named {name!r}.{hint} Registered: {', '.join(sorted(COMPOSITES))}."
        ) from None


__all__ = [
    "COMPOSITES",
    "build_composite",
    "composite_factory",
    "composite_parameters",
    "register_composite",
]
