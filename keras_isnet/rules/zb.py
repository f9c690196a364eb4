"""The official ISNet's z^B rule for the first layer: the bounded rule with the bias.

Both official implementations (the LRP Block's ``ZbRuleConvInput``/``ZbRuleConvBNInput`` and
LRP-Flex's copies) put the layer's detached bias into the denominator::

    z_j = (sum_i x_i w_ij + b_j) - low (sum_i w+_ij + b+_j) - high (sum_i w-_ij + b-_j)
    R_i = sum_j (x_i w_ij - low w+_ij - high w-_ij) R_j / (z_j + epsilon sign z_j)

with ``b`` under ``stop_gradient`` (a folded BatchNormalization's shift keeps gamma's
gradient, as the official ``FuseBN``; see :attr:`KernelCall.detached_bias`) and
``sign(0) = +1``. The bias changes only the denominator; for ``low = 0, high = 1`` it is
``z = W x - W- 1 + b+``. iNNvestigate's :class:`BoundedRule` (the analyzers' z^B) has no bias.

Example:
    >>> rule = ZbRule(low=0.0, high=1.0, epsilon=1e-2)
    >>> rule.label, rule.uses_bias
    ('Zb(e=0.01)', True)
"""

from __future__ import annotations

from keras_isnet.rules.base import KernelCall
from keras_isnet.rules.bounded import BoundedRule


class ZbRule(BoundedRule):
    """z^B with the detached bias in the denominator, as the official ISNet code.

    Args:
        low: the lower input bound (number or array broadcastable to the input), default 0.
        high: the upper input bound, default 1.
        epsilon: the stabiliser, default 1e-2 (the official ``e``).
    """

    name = "Zb"
    label_ignored_bias = False

    def __init__(self, low=0.0, high=1.0, epsilon: float = 1e-2):
        if not epsilon > 0:
            raise ValueError(f"ZbRule needs epsilon > 0, got epsilon={epsilon!r}.")
        super().__init__(low=low, high=high, epsilon=float(epsilon))

    @property
    def uses_bias(self) -> bool:
        return True

    def denominator_bias(self, call: KernelCall):
        return call.detached_bias
