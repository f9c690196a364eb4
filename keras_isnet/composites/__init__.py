"""Composites: which LRP rule each layer gets, as values registered by name.

:class:`Composite` is the value (a rule map, a first-layer rule, canonizers, ...);
:func:`register_composite` registers a factory of composites under a name; the modules
:mod:`~keras_isnet.composites.innvestigate` and :mod:`~keras_isnet.composites.zennit` hold
iNNvestigate's and zennit's composites as data.

Example:
    >>> ki.composites.build_composite("lrp.epsilon", {"epsilon": 0.1})
    >>> ki.create_analyzer("lrp.epsilon_plus", model).analyze(x)
"""

import warnings

from keras_isnet.composites import (  # noqa: F401  (registrations)
    innvestigate,
    isnet,
    transformers,
    zennit,
)
from keras_isnet.composites.composite import BoundComposite, Composite, condition, rule_map
from keras_isnet.composites.registry import (
    COMPOSITES,
    build_composite,
    composite_factory,
    composite_parameters,
    register_composite,
)
from keras_isnet.composites.zennit import ZENNIT_EPSILON

__all__ = [
    "COMPOSITES",
    "ZENNIT_EPSILON",
    "BoundComposite",
    "Composite",
    "build_composite",
    "composite_factory",
    "composite_parameters",
    "condition",
    "register_composite",
    "rule_map",
]


#: deprecated names of this module -> (object, where it lives now); filled by the package
#: that defines them (:mod:`keras_isnet.analyzers`), so this package imports nothing of it.
_MOVED: dict = {}


def add_deprecated_aliases(objects: dict, where: str) -> None:
    """Make ``keras_isnet.composites.<name>`` a deprecated alias of each of ``objects``
    (``{name: object}``) for one release; ``where`` is the module they moved to."""
    _MOVED.update({name: (obj, where) for name, obj in objects.items()})


def __getattr__(name: str):
    """The composite analyzer classes of earlier releases (``keras_isnet.composites.EpsilonPlus``)
    now live in :mod:`keras_isnet.analyzers`; kept here as deprecated aliases for one release."""
    if name in _MOVED:
        obj, where = _MOVED[name]
        warnings.warn(
            f"keras_isnet.composites.{name} moved to {where}.{name}; the alias will be removed "
            "in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return obj
    raise AttributeError(f"module 'keras_isnet.composites' has no attribute {name!r}")
