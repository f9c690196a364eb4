"""The z-rule and the epsilon rule.

``R_i = x_i * sum_j w_ij R_j / d(z_j)`` with ``z_j = sum_i x_i w_ij (+ b_j)`` and

* Z rule: ``d(z) = z`` guarded against exact zeros (iNNvestigate's SafeDivide);
* Epsilon rule: ``d(z) = z + epsilon * sign(z)``, ``sign(0) = +1``.

``bias=False`` drops the bias from ``z`` (iNNvestigate's "IgnoreBias" rules), which makes
the rule conserve relevance exactly for the z-rule.

Example:
    >>> ki.create_analyzer("lrp.epsilon", model, epsilon=1e-7, bias=True)
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, safe_divide, stabilize


class ZRule(Rule):
    """LRP-0: ``R_i = x_i * (W^T (R / z))_i``, the bias a constant input neuron by default."""

    name = "Z"

    def __init__(self, bias: bool = True):
        self.bias = bias

    def __call__(self, call: KernelCall, R):
        z = call.z if self.bias else call.z_nobias
        return ops.multiply(call.x, call.pullback(safe_divide(R, z)))


class EpsilonRule(Rule):
    """LRP-epsilon with ``epsilon = 1e-7`` by default (iNNvestigate's default).

    Args:
        epsilon: the stabiliser, > 0.
        bias: whether the bias is part of ``z`` (default True).
        detach_bias: if True, the bias enters ``z`` as a constant (no gradient flows from the
            relevance into the bias; a folded BatchNormalization shift keeps gamma's
            gradient, see :attr:`KernelCall.detached_bias`), as in the official LRP Block
            ISNet; default False.
    """

    name = "Epsilon"
    stabilizer = "epsilon"

    def __init__(self, epsilon: float = 1e-7, bias: bool = True, detach_bias: bool = False):
        if not epsilon > 0:
            raise ValueError(f"EpsilonRule needs epsilon > 0, got epsilon={epsilon!r}.")
        self.epsilon = float(epsilon)
        self.bias = bias
        self.detach_bias = detach_bias

    def __call__(self, call: KernelCall, R):
        def inverse():  # 1 / (z + epsilon sign(z)), shared by every walk of this forward pass
            if not self.bias or call.bias is None:
                z = call.z_nobias
            elif self.detach_bias:
                z = call.add_bias(call.z_nobias, call.detached_bias)
            else:
                z = call.z
            return ops.reciprocal(stabilize(z, self.epsilon))

        key = ("epsilon", self.epsilon, self.bias and call.bias is not None, self.detach_bias)
        return ops.multiply(call.x, call.pullback(ops.multiply(R, call.cached(key, inverse))))
