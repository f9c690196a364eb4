"""Deep Taylor decomposition (Montavon et al., 2017) for ReLU networks.

The head is ``relu(selected output)``; kernel layers use the z-plus rule (the bounded z^B
rule at the first kernel layer for ``deep_taylor.bounded``); every other layer passes
relevance along its gradient, so average pooling spreads it uniformly and Add copies it to
every branch, as in iNNvestigate.

Example:
    >>> ki.create_analyzer("deep_taylor.bounded", model, low=0.0, high=1.0).analyze(x)
"""

from __future__ import annotations

from keras import ops

from keras_isnet.analyzers.lrp import LRP
from keras_isnet.layers import lookup
from keras_isnet.rules import BoundedRule, ZPlusRule


class DeepTaylor(LRP):
    """``deep_taylor``: z-plus on kernel layers, gradient elsewhere, head ``relu(y)``."""

    name = "deep_taylor"

    def __init__(self, model, **kwargs):
        super().__init__(model, rule=ZPlusRule(), **kwargs)

    def _seed(self, head, weights):
        return ops.multiply(ops.relu(head), weights)

    def _handler(self, step):
        spec = lookup(step.layer)
        if spec is not None and spec.kind in ("kernel", "embedding", "custom"):
            return super()._handler(step)
        return lambda record, Rs: record.pullback(Rs)


class BoundedDeepTaylor(DeepTaylor):
    """``deep_taylor.bounded``: Deep Taylor with the z^B rule for inputs in ``[low, high]``.

    Args:
        low, high: the input bounds (required; scalars or arrays broadcastable to the input
            of the first kernel layer).
    """

    name = "deep_taylor.bounded"

    def __init__(self, model, *, low=None, high=None, **kwargs):
        if low is None or high is None:
            raise ValueError(
                "deep_taylor.bounded needs the input bounds low=... and high=... (e.g. "
                "low=0.0, high=1.0 for images scaled to [0, 1])."
            )
        self.low, self.high = low, high
        super(DeepTaylor, self).__init__(
            model, rule=ZPlusRule(), input_layer_rule=BoundedRule(low=low, high=high), **kwargs
        )
