"""Alpha-beta and z-plus as zennit (and Bach et al. 2015) define them: the bias split by sign.

::

    z_a = x+ W+ + x- W- + b+          (activator: the positive contributions)
    z_b = x+ W- + x- W+ + b-          (inhibitor: the negative contributions)
    R_i = alpha (x+_i W+ + x-_i W-) R / stab(z_a) - beta (x+_i W- + x-_i W+) R / stab(z_b)

with ``stab(z) = z + epsilon sign(z)``, epsilon 1e-6. z-plus is alpha = 1, beta = 0. They
differ from iNNvestigate's :class:`~keras_isnet.rules.AlphaBetaRule` (the full bias in both
denominators, exact-zero guard only) and :class:`~keras_isnet.rules.ZPlusRule` (no bias) only
through the bias and the stabiliser; the zennit composites
(:mod:`keras_isnet.composites`) use these.

Example:
    >>> rule = ZennitAlphaBetaRule(alpha=2, beta=1)
"""

from __future__ import annotations

from keras_isnet.rules._sign_split import AlphaBetaFamily, sign_split
from keras_isnet.rules.base import KernelCall, negative, positive


class ZennitAlphaBetaRule(AlphaBetaFamily):
    """zennit's ``AlphaBeta``: ``alpha - beta = 1``, defaults alpha 2, beta 1.

    Args:
        alpha, beta: the weights of the activator and inhibitor parts (>= 0, difference 1).
        epsilon: the stabiliser, default 1e-6.
        bias: whether ``b+`` enters the activator and ``b-`` the inhibitor (default True).

    Example:
        >>> ki.create_analyzer("lrp", model, rule=ZennitAlphaBetaRule(alpha=1, beta=0))
    """

    name = "ZennitAlphaBeta"
    stabilizer = "epsilon"

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-6, bias: bool = True
    ):
        if alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-12:
            raise ValueError(
                f"ZennitAlphaBetaRule needs alpha, beta >= 0 and alpha - beta = 1, got "
                f"alpha={alpha}, beta={beta}."
            )
        if not epsilon > 0:
            raise ValueError(f"ZennitAlphaBetaRule needs epsilon > 0, got {epsilon!r}.")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.bias = bias

    def __call__(self, call: KernelCall, R):
        use_bias = self.bias and call.bias is not None
        return sign_split(
            call,
            R,
            kernel_a=call.map_kernel(positive),
            kernel_b=call.map_kernel(negative),
            bias_a=positive(call.bias) if use_bias else None,
            bias_b=negative(call.bias) if use_bias else None,
            weight_a=self.alpha,
            weight_b=-self.beta,
            epsilon=self.epsilon,
        )


class ZennitZPlusRule(ZennitAlphaBetaRule):
    """zennit's ``ZPlus``: ``R_i = (x+_i W+ + x-_i W-) R / stab(x+ W+ + x- W- + b+)``.

    Args:
        epsilon: the stabiliser, default 1e-6.
        bias: whether ``b+`` enters the denominator (default True).

    Example:
        >>> ki.create_analyzer("lrp", model, rule=[("conv", ZennitZPlusRule())])
    """

    name = "ZennitZPlus"

    def __init__(self, epsilon: float = 1e-6, bias: bool = True):
        super().__init__(alpha=1.0, beta=0.0, epsilon=epsilon, bias=bias)

    def __repr__(self):
        return f"ZennitZPlusRule(epsilon={self.epsilon!r}, bias={self.bias!r})"
