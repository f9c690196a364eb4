"""The generalised gamma rule (Montavon et al. 2019; Andeol et al. 2021), as zennit defines it.

Positive contributions are favoured by adding ``gamma`` times the positive weight part. For an
output with ``z > 0``::

    z_p = x+ (W + g W+) + x- (W + g W-) + (b + g b+)
    R_i = x+_i sum_j (W + g W+)_ij R_j / z_p_j + x-_i sum_j (W + g W-)_ij R_j / z_p_j

and symmetrically, with the roles of ``W+`` and ``W-`` swapped (bias ``b + g b-``), for an
output with ``z < 0``; outputs with ``z = 0`` pass no relevance. Denominators are stabilised
with ``z + epsilon * sign(z)`` (zennit's ``stabilize``, epsilon 1e-6). For non-negative inputs
it is the original gamma rule; ``gamma = 0`` gives LRP-epsilon with epsilon 1e-6, and large
``gamma`` approaches z-plus. The bias absorbs relevance (``bias=False`` drops it).

Example:
    >>> ki.create_analyzer("lrp", model, rule=ki.rules.GammaRule(gamma=0.25))
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules._sign_split import sign_split
from keras_isnet.rules.base import KernelCall, Rule, negative, positive


class GammaRule(Rule):
    """The generalised gamma rule.

    Args:
        gamma: weight of the added positive (for z > 0) or negative (z < 0) parameter part,
            >= 0; default 0.25 (zennit's default).
        epsilon: the denominator stabiliser, default 1e-6 (zennit's).
        bias: whether the bias (modified like the weights) enters the denominators; default
            True. With False the rule conserves relevance.

    Example:
        >>> rule = GammaRule(gamma=0.25)
        >>> analyzer = ki.create_analyzer("lrp", model, rule=[("conv", rule), ("dense", "Epsilon")])
    """

    name = "Gamma"
    stabilizer = "epsilon"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6, bias: bool = True):
        if not gamma >= 0:
            raise ValueError(f"GammaRule needs gamma >= 0, got gamma={gamma!r}.")
        if not epsilon > 0:
            raise ValueError(f"GammaRule needs epsilon > 0, got epsilon={epsilon!r}.")
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.bias = bias

    def __call__(self, call: KernelCall, R):
        g = self.gamma

        def plus(w):
            return ops.add(w, ops.multiply(g, positive(w)))

        def minus(w):
            return ops.add(w, ops.multiply(g, negative(w)))

        use_bias = self.bias and call.bias is not None
        z = call.z if use_bias else call.z_nobias
        return sign_split(
            call,
            R,
            kernel_a=call.map_kernel(plus),
            kernel_b=call.map_kernel(minus),
            bias_a=plus(call.bias) if use_bias else None,
            bias_b=minus(call.bias) if use_bias else None,
            weight_a=1.0,
            weight_b=1.0,
            mask_a=ops.cast(ops.greater(z, 0), R.dtype),
            mask_b=ops.cast(ops.less(z, 0), R.dtype),
            epsilon=self.epsilon,
        )
