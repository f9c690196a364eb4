"""LRP decomposition rules for kernel layers (Dense, convolutions, affine BatchNorm).

Rules are plain objects; :func:`get_rule` turns iNNvestigate's rule names into them.
Besides iNNvestigate's rules there are zennit's: :class:`GammaRule`, :class:`ZBoxRule`
(per-channel bounds), :class:`PassRule`, :class:`NormRule` (the last two also apply to
weightless layers such as Add and average pooling when a rule map names them), and
zennit's bias-split :class:`ZennitAlphaBetaRule` / :class:`ZennitZPlusRule`, and the
official ISNet's :class:`ZbRule` (z^B with the detached bias) and
:class:`MaxPoolEpsilonRule` (epsilon-stabilised max pooling).
"""

from __future__ import annotations

from keras_isnet.rules.alpha_beta import AlphaBetaRule, ZPlusFastRule, ZPlusRule
from keras_isnet.rules.base import KernelCall, Rule, safe_divide, stabilize
from keras_isnet.rules.bounded import BoundedRule
from keras_isnet.rules.epsilon import EpsilonRule, ZRule
from keras_isnet.rules.gamma import GammaRule
from keras_isnet.rules.max_pool_epsilon import MaxPoolEpsilonRule
from keras_isnet.rules.norm import NormRule
from keras_isnet.rules.pass_rule import PassRule
from keras_isnet.rules.w_square import FlatRule, WSquareRule
from keras_isnet.rules.zb import ZbRule
from keras_isnet.rules.zbox import ZBoxRule
from keras_isnet.rules.zennit_alpha_beta import ZennitAlphaBetaRule, ZennitZPlusRule

#: iNNvestigate's rule names (LRP_RULES) and how to build each.
RULES = {
    "Z": lambda: ZRule(),
    "ZIgnoreBias": lambda: ZRule(bias=False),
    "Epsilon": lambda: EpsilonRule(),
    "EpsilonIgnoreBias": lambda: EpsilonRule(bias=False),
    "WSquare": lambda: WSquareRule(),
    "Flat": lambda: FlatRule(),
    "AlphaBeta": lambda: AlphaBetaRule(alpha=1, beta=0),
    "AlphaBetaIgnoreBias": lambda: AlphaBetaRule(alpha=1, beta=0, bias=False),
    "Alpha2Beta1": lambda: AlphaBetaRule(alpha=2, beta=1),
    "Alpha2Beta1IgnoreBias": lambda: AlphaBetaRule(alpha=2, beta=1, bias=False),
    "Alpha1Beta0": lambda: AlphaBetaRule(alpha=1, beta=0),
    "Alpha1Beta0IgnoreBias": lambda: AlphaBetaRule(alpha=1, beta=0, bias=False),
    "ZPlus": lambda: ZPlusRule(),
    "ZPlusFast": lambda: ZPlusFastRule(),
    "Bounded": lambda: BoundedRule(),
    # zennit's rules (stabiliser 1e-6); ZBox needs bounds: pass ZBoxRule(low, high).
    "Gamma": lambda: GammaRule(),
    "Pass": lambda: PassRule(),
    "Norm": lambda: NormRule(),
    "ZennitZPlus": lambda: ZennitZPlusRule(),
    "ZennitAlpha2Beta1": lambda: ZennitAlphaBetaRule(alpha=2, beta=1),
    "ZennitAlpha1Beta0": lambda: ZennitAlphaBetaRule(alpha=1, beta=0),
}


def register_rule(name: str, factory) -> None:
    """Make ``name`` a rule name that :func:`get_rule` (and so every ``rule=`` or rule-map
    entry) accepts.

    Args:
        name: the name, e.g. ``"PositiveEpsilon"``; an existing name is refused.
        factory: a :class:`Rule` subclass or a function of no arguments returning a rule.

    Example:
        >>> register_rule("PositiveEpsilon", PositiveEpsilonRule)
        >>> ki.create_analyzer("lrp", model, rule="PositiveEpsilon")
    """
    if not callable(factory):
        raise TypeError(f"register_rule needs a Rule class or a factory, got {factory!r}.")
    if name in RULES and RULES[name] is not factory:
        raise ValueError(f"A rule named {name!r} is registered already.")
    RULES[name] = factory


# The official ISNet's rules: z^B with the detached bias (bounds (0, 1), epsilon 1e-2) and
# its epsilon-stabilised max pooling (for a composite's max_pooling rule).
register_rule("Zb", ZbRule)
register_rule("MaxPoolEpsilon", MaxPoolEpsilonRule)


def get_rule(rule) -> Rule:
    """A :class:`Rule` from a rule object, a rule name, a Rule subclass or ``(low, high)``.

    Args:
        rule: a :class:`Rule` instance; one of the names in :data:`RULES` (iNNvestigate's
            names, e.g. ``"Epsilon"``, ``"Alpha2Beta1"``, ``"Flat"``); a Rule subclass
            (instantiated with no arguments); or a ``(low, high)`` tuple for the bounded rule.
    """
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"Unknown LRP rule {rule!r}; valid names are {sorted(RULES)}.")
        return RULES[rule]()
    if isinstance(rule, type) and issubclass(rule, Rule):
        return rule()
    if isinstance(rule, tuple) and len(rule) == 2:
        return BoundedRule(low=rule[0], high=rule[1])
    raise TypeError(
        f"Cannot make an LRP rule from {rule!r}: pass a rule name ({sorted(RULES)}), a Rule "
        "instance or a (low, high) tuple."
    )


__all__ = [
    "RULES",
    "AlphaBetaRule",
    "BoundedRule",
    "EpsilonRule",
    "FlatRule",
    "GammaRule",
    "KernelCall",
    "MaxPoolEpsilonRule",
    "NormRule",
    "PassRule",
    "Rule",
    "WSquareRule",
    "ZBoxRule",
    "ZbRule",
    "ZennitAlphaBetaRule",
    "ZennitZPlusRule",
    "ZPlusFastRule",
    "ZPlusRule",
    "ZRule",
    "get_rule",
    "register_rule",
    "safe_divide",
    "stabilize",
]
