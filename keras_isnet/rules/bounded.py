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

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, negative, positive, safe_divide, stabilize


class BoundedRule(Rule):
    """z^B with bounds ``low`` (default -1) and ``high`` (default 1), optional ``epsilon``."""

    name = "Bounded"

    def __init__(self, low=-1.0, high=1.0, epsilon: float | None = None):
        self.low = low
        self.high = high
        self.epsilon = epsilon

    def __call__(self, call: KernelCall, R):
        x = call.x
        low = ops.add(ops.zeros_like(x), ops.cast(self.low, x.dtype))
        high = ops.add(ops.zeros_like(x), ops.cast(self.high, x.dtype))
        z_low, pull_pos = call.linear_vjp(low, call.map_kernel(positive))
        z_high, pull_neg = call.linear_vjp(high, call.map_kernel(negative))
        z = ops.subtract(call.z_nobias, ops.add(z_low, z_high))
        s = safe_divide(R, z) if self.epsilon is None else ops.divide(R, stabilize(z, self.epsilon))
        return ops.subtract(
            ops.multiply(x, call.pullback(s)),
            ops.add(ops.multiply(low, pull_pos(s)), ops.multiply(high, pull_neg(s))),
        )
