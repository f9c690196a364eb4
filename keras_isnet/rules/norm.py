"""The norm rule (zennit's ``Norm``): the z-rule with the epsilon stabiliser 1e-6.

``R_i = x_i * d z_j / d x_i * R_j / (z_j + 1e-6 sign(z_j))``, summed over j, where ``z`` is the
layer's output (bias included). zennit uses it at sums (Add) and average pooling; in a rule
map it applies to kernel layers as LRP-epsilon with epsilon 1e-6 and to weightless linear
layers (Add, Average, average pooling) as the stabilised z-rule.

Example:
    >>> ki.create_analyzer("lrp", model, rule=[(keras.layers.Add, NormRule()), ("dense", "Z")])
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, stabilize


class NormRule(Rule):
    """The stabilised z-rule with the layer's own output as denominator.

    Args:
        epsilon: the stabiliser, default 1e-6.

    Example:
        >>> NormRule(epsilon=1e-6)
    """

    name = "Norm"
    stabilizer = "epsilon"
    applies_to_weightless = True
    #: the layer's own output, bias included, is the denominator.
    uses_bias = True

    def __init__(self, epsilon: float = 1e-6):
        if not epsilon > 0:
            raise ValueError(f"NormRule needs epsilon > 0, got epsilon={epsilon!r}.")
        self.epsilon = float(epsilon)

    def __call__(self, call: KernelCall, R):
        s = ops.divide(R, stabilize(call.z, self.epsilon))
        return ops.multiply(call.x, call.pullback(s))

    def reverse_weightless(self, layer, inputs, outputs, pullback, relevances):
        """Norm rule at a weightless linear layer (Add, average pooling)."""
        s = [
            ops.divide(R, stabilize(y, self.epsilon))
            for R, y in zip(relevances, outputs, strict=True)
        ]
        grads = pullback(s)
        return [
            None if g is None else ops.multiply(x, g) for x, g in zip(inputs, grads, strict=True)
        ]
