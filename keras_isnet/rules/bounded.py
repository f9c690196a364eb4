"""The z^B (bounded, "box") rule of Deep Taylor decomposition for the input layer.

For inputs known to lie in ``[low, high]``::

    z_j = sum_i x_i w_ij - low w+_ij - high w-_ij
    R_i = sum_j (x_i w_ij - low w+_ij - high w-_ij) R_j / z_j

``low`` and ``high`` are scalars or arrays broadcastable to the layer input (per-channel
bounds for normalised images). The bias is ignored. The division guards exact zeros only
(iNNvestigate); with ``epsilon`` it uses ``z + epsilon * sign(z)`` instead (the ISNet
reference's "Zb" rule).

Example:
    >>> ki.create_analyzer("lrp.z", model, input_layer_rule=(-1.0, 1.0))
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_isnet.rules.base import (
    KernelCall,
    Rule,
    negative,
    positive,
    safe_divide,
    stabilize,
)


def _is_zero(bound) -> bool:
    """True for a bound known to be 0 everywhere (a number or an array, not a tensor)."""
    if isinstance(bound, (int, float)):
        return bound == 0
    if isinstance(bound, np.ndarray):
        return not bound.any()
    return False


class BoundedRule(Rule):
    """z^B with bounds ``low`` (default -1) and ``high`` (default 1), optional ``epsilon``."""

    name = "Bounded"

    @property
    def stabilizer(self) -> str:
        return "zero denominators" if self.epsilon is None else "epsilon"

    def __init__(self, low=-1.0, high=1.0, epsilon: float | None = None):
        self.low = low
        self.high = high
        self.epsilon = epsilon

    def __call__(self, call: KernelCall, R):
        # Everything but R is shared by the walks of one forward pass (one per class for the
        # original ISNet), so it is computed once per layer call.
        key = (type(self).__name__, repr(self.low), repr(self.high), self.epsilon)
        inverse, inputs, transposes = call.cached(key, lambda: self._prepare(call))
        s = ops.multiply(R, inverse)
        if transposes is None:
            return ops.multiply(call.x, call.pullback(s))
        # x W^T s - low W+^T s - high W-^T s, the transposes in one call where possible.
        terms = transposes(s)
        relevance = ops.multiply(call.x, terms[0])
        for value, term in zip(inputs, terms[1:], strict=True):
            relevance = ops.add(relevance, ops.multiply(value, term))
        return relevance

    def denominator_bias(self, call: KernelCall):
        """The bias that enters ``z`` (None: iNNvestigate's z^B ignores it; the official
        ISNet's :class:`~keras_isnet.rules.ZbRule` returns the detached bias)."""
        return None

    def _prepare(self, call):
        """``(1 / stabilised z, [-bound, ...], transposes)`` of one layer call."""
        x = call.x
        bias = self.denominator_bias(call)
        z = call.z_nobias if bias is None else call.add_bias(call.z_nobias, bias)
        kernels, inputs = [call.kernel], []
        for bound, part in ((self.low, positive), (self.high, negative)):
            if _is_zero(bound):
                continue  # a zero bound contributes nothing to z or R
            full = ops.add(ops.zeros_like(x[:1]), ops.cast(bound, x.dtype))
            kernel = call.map_kernel(part)
            # The bound's pre-activation does not depend on the sample: one sample suffices.
            bound_z = call.linear(full, kernel)  # sum_i bound_i w+-_ij (zero padding)
            if bias is not None:
                # bound * b+- (the official code multiplies the bias part by the scalar
                # bound; per-channel bounds use their mean)
                scalar = ops.mean(ops.cast(bound, x.dtype))
                bound_z = call.add_bias(bound_z, ops.multiply(part(bias), scalar))
            z = ops.subtract(z, bound_z)
            kernels.append(kernel)
            inputs.append(ops.negative(full))
        if self.epsilon is None:
            inverse = safe_divide(ops.ones_like(z), z)
        else:
            inverse = ops.reciprocal(stabilize(z, self.epsilon))
        return inverse, inputs, (call.transposes(kernels) if inputs else None)
