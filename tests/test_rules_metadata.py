"""What each rule says about itself: its label, whether the bias enters its denominators,
why it may absorb relevance, and whether it applies to weightless layers. The conservation
report reads these, so they must stay what the rules compute."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_isnet as ki
from keras_isnet import rules as R

CASES = [
    (R.ZRule(), "Z", True, ["zero denominators"], False),
    (R.ZRule(bias=False), "Z[no bias]", False, ["zero denominators"], False),
    (R.EpsilonRule(epsilon=1e-7), "Epsilon(e=1e-07)", True, ["epsilon"], False),
    (R.EpsilonRule(0.1, bias=False), "Epsilon(e=0.1)[no bias]", False, ["epsilon"], False),
    (R.WSquareRule(), "WSquare", False, ["zero denominators"], False),
    (R.FlatRule(), "Flat", False, ["zero denominators"], False),
    (
        R.AlphaBetaRule(alpha=2, beta=1),
        "AlphaBeta(a=2,b=1)",
        True,
        ["zero denominators", "non-conserving rule (alpha-beta where one part is zero)"],
        False,
    ),
    (R.AlphaBetaRule(alpha=1, beta=0), "AlphaBeta(a=1,b=0)", True, ["zero denominators"], False),
    (R.ZPlusRule(), "ZPlus", False, ["zero denominators"], False),
    (R.ZPlusFastRule(), "ZPlusFast", False, ["zero denominators"], False),
    (R.BoundedRule(0.0, 1.0), "Bounded", False, ["zero denominators"], False),
    (R.BoundedRule(0.0, 1.0, epsilon=0.01), "Bounded(e=0.01)", False, ["epsilon"], False),
    (R.ZBoxRule(0.0, 1.0), "ZBox", False, ["epsilon"], False),
    (R.ZbRule(0.0, 1.0), "Zb(e=0.01)", True, ["epsilon"], False),
    (R.MaxPoolEpsilonRule(), "MaxPoolEpsilon(e=0.01)", False, ["epsilon", "max-pool ties"], False),
    (R.GammaRule(), "Gamma(e=1e-06)(g=0.25)", True, ["epsilon"], False),
    (R.NormRule(), "Norm(e=1e-06)", True, ["epsilon"], True),
    (R.PassRule(), "Pass", False, [], True),
    (R.ZennitZPlusRule(), "ZennitZPlus(e=1e-06)", True, ["epsilon"], False),
    (
        R.ZennitAlphaBetaRule(),
        "ZennitAlphaBeta(e=1e-06)(a=2,b=1)",
        True,
        ["epsilon", "non-conserving rule (alpha-beta where one part is zero)"],
        False,
    ),
]


@pytest.mark.parametrize("rule, label, uses_bias, absorption, weightless", CASES, ids=repr)
def test_rule_metadata(rule, label, uses_bias, absorption, weightless):
    assert rule.label == label
    assert rule.uses_bias is uses_bias
    assert rule.absorption() == absorption
    assert rule.applies_to_weightless is weightless


def test_every_named_rule_has_a_case():
    covered = {type(rule) for rule, *_ in CASES}
    assert {type(R.get_rule(name)) for name in R.RULES} <= covered


def test_kernel_rules_refuse_weightless_layers():
    with pytest.raises(TypeError, match="NormRule or PassRule"):
        R.EpsilonRule().reverse_weightless(None, [], [], None, [])


def test_a_bias_free_rule_absorbs_nothing_at_a_bias_free_net():
    """uses_bias=False and "zero denominators" together: a bias-free z-rule conserves on a net
    without zero pre-activations (checked against the report built from the metadata)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    x = np.random.default_rng(0).random((5, 4)).astype("float64")
    analyzer = ki.create_analyzer("lrp.z", model, bias=False, compute_dtype="float64")
    report = ki.conservation_report(analyzer, x)
    assert abs(report.gap) <= 1e-9 * abs(report.explained)
    assert [layer.rule for layer in report.layers] == ["Z[no bias]", "Z[no bias]"]
    assert all(layer.causes == ["zero denominators"] for layer in report.layers)


def test_register_rule_makes_a_name_usable_and_refuses_a_taken_name():
    class Halved(R.EpsilonRule):
        name = "Halved"

    R.register_rule("Halved", Halved)
    try:
        assert isinstance(R.get_rule("Halved"), Halved)
        with pytest.raises(ValueError, match="registered already"):
            R.register_rule("Halved", R.ZRule)
    finally:
        del R.RULES["Halved"]
