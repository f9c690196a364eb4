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

from keras import ops

from keras_isnet.rules.base import KernelCall, negative, positive, stabilize
from keras_isnet.rules.bounded import BoundedRule, _is_zero


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

    def __call__(self, call: KernelCall, R):
        key = ("zb", repr(self.low), repr(self.high), self.epsilon)
        inverse, inputs, transposes = call.cached(key, lambda: self._prepare(call))
        s = ops.multiply(R, inverse)
        terms = transposes(s) if transposes is not None else [call.pullback(s)]
        relevance = ops.multiply(call.x, terms[0])
        for value, term in zip(inputs, terms[1:], strict=True):
            relevance = ops.add(relevance, ops.multiply(value, term))
        return relevance

    def _prepare(self, call):
        """``(1 / stabilised z, [-bound, ...], transposes)`` of one layer call."""
        x = call.x
        bias = call.detached_bias
        z = call.z_nobias if bias is None else call.add_bias(call.z_nobias, bias)
        kernels, inputs = [call.kernel], []
        for bound, part in ((self.low, positive), (self.high, negative)):
            if _is_zero(bound):
                continue  # a zero bound contributes nothing to z or R
            full = ops.add(ops.zeros_like(x[:1]), ops.cast(bound, x.dtype))
            kernel = call.map_kernel(part)
            bound_z = call.linear(full, kernel)  # sum_i bound_i w+-_ij (zero padding)
            if bias is not None:
                # bound * b+- (the official code multiplies the bias part by the scalar
                # bound; per-channel bounds use their mean)
                scalar = ops.mean(ops.cast(bound, x.dtype))
                bound_z = call.add_bias(bound_z, ops.multiply(part(bias), scalar))
            z = ops.subtract(z, bound_z)
            kernels.append(kernel)
            inputs.append(ops.negative(full))
        inverse = ops.reciprocal(stabilize(z, self.epsilon))
        return inverse, inputs, (call.transposes(kernels) if inputs else None)
