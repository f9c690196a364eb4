"""What an ISNet LRP mode is: how the heatmaps are propagated, as a strategy object.

The official ISNet code has two implementations, and ``ISNet(lrp=...)`` chooses which one
keras-isnet reproduces: ``"block"`` (the LRP Block, :class:`~keras_isnet.isnet.modes.BlockLRP`)
and ``"flex"`` (LRP-Flex, :class:`~keras_isnet.isnet.modes.FlexLRP`). A mode is bound to one
:class:`~keras_isnet.isnet.ISNetHeatmaps` and gives the variants (which say *what* is
explained) everything that depends on the implementation: the backward handlers, the
BatchNormalization folds, the seeds of a logit's or the selective quantity's walk, the
stochastic draw and the map read at the input.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.isnet.variants.base import replica_draw

#: mode name -> mode class (filled by :func:`register_lrp_mode`).
LRP_MODES: dict[str, type] = {}


def register_lrp_mode(cls: type) -> type:
    """Register an :class:`LRPMode` subclass under its ``name`` (``ISNet(lrp=name)``)."""
    if not getattr(cls, "name", ""):
        raise ValueError("An LRP mode needs a name.")
    LRP_MODES[cls.name] = cls
    return cls


def get_lrp_mode(name: str) -> type:
    """The mode class registered as ``name``; a ValueError naming ``lrp`` and the valid values
    otherwise."""
    if isinstance(name, type) and issubclass(name, LRPMode):
        return name
    try:
        return LRP_MODES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown lrp={name!r}; valid values are {sorted(LRP_MODES)} ('block': the "
            "official LRP Block ISNet, 'flex': the official LRP-Flex)."
        ) from None


def check_selective_eps(selective_eps) -> float:
    """``selective_eps`` as a float, or a ValueError naming the argument and its valid values."""
    try:
        value = float(selective_eps)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and value < 1):
        raise ValueError(
            f"selective_eps must be a number in (0, 1) (LRP-Flex's stabiliser of "
            f"log(p + eps) - log(1 - p + eps); 1e-7 as ISNetFlexLightning, 1e-2 as "
            f"ISNetFlexTorch), got {selective_eps!r}."
        )
    return value


class LRPMode:
    """An ISNet LRP implementation bound to one :class:`~keras_isnet.isnet.ISNetHeatmaps`.

    Args:
        heatmaps: the ISNet heatmaps (its engine, composite and bound rules).

    Subclasses implement :meth:`handlers`, :meth:`canonization`, :meth:`class_seeds`,
    :meth:`selective_seeds` and :meth:`stochastic_classes`.
    """

    #: the ``lrp=`` value.
    name = ""
    #: the official classes the mode reproduces (for messages and docs).
    official = ""
    #: whether hidden-layer relevance (deep supervision) and the dual variant's z-plus map
    #: come with this mode.
    supports_relevance_rules = True

    def __init__(self, heatmaps):
        self.heatmaps = heatmaps

    def handlers(self) -> dict:
        """The backward handlers per step index."""
        raise NotImplementedError

    def canonization(self, training: bool):
        """The BatchNormalization folds of the replay (None: none)."""
        raise NotImplementedError

    def class_seeds(self, walks, weights) -> dict:
        """The seeds of the walk explaining ``sum(logits * weights)`` (``weights`` shaped like
        the logits: a one-hot per sample, or segmentation weights)."""
        raise NotImplementedError

    def selective_seeds(self, walks, classes) -> dict:
        """The seeds of the walk explaining the selective quantity of ``classes``."""
        raise NotImplementedError

    def stochastic_classes(self, logits, seed=None):
        """The stochastic variant's draw, ``(batch,)`` int32."""
        raise NotImplementedError

    def input_map(self, walks, value):
        """The heatmap from what the walk left at the input (default: it is the map)."""
        return value

    def __repr__(self):
        return f"{type(self).__name__}()"


def other_class(top, k, seed):
    """Per sample a class drawn uniformly among the ``k - 1`` classes other than ``top``."""
    # per replica under a distribution strategy (replica_draw): the global batch's draws
    shift = replica_draw(
        lambda r: keras.random.randint((r,), 1, k, seed=seed, dtype="int32"), ops.shape(top)[0]
    )
    return ops.mod(top + shift, k)
