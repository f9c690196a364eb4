"""The w-square and flat rules (Deep Taylor decomposition, Montavon et al. 2017).

``R_i = sum_j w_ij^2 R_j / sum_i' w_i'j^2`` (w-square) and the same with ``w = 1`` (flat).
The input values are ignored, and so is the bias. The denominator is the layer applied to
a tensor of ones, so at convolution borders only the weights that touch the input count.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, safe_divide


class WSquareRule(Rule):
    """``R_i = sum_j w_ij^2 R_j / sum_i' w_i'j^2``."""

    name = "WSquare"

    def _kernel(self, call: KernelCall):
        return call.map_kernel(ops.square)

    def __call__(self, call: KernelCall, R):
        kernel = self._kernel(call)
        ones = ops.ones_like(call.x)
        z, pullback = call.linear_vjp(ones, kernel)
        return pullback(safe_divide(R, z))


class FlatRule(WSquareRule):
    """The w-square rule with every weight set to one: relevance spreads uniformly."""

    name = "Flat"

    def _kernel(self, call: KernelCall):
        return call.map_kernel(ops.ones_like)
