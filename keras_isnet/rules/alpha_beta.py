"""The alpha-beta rule and its special cases (z-plus, alpha1-beta0, alpha2-beta1).

Positive and negative contributions are propagated separately::

    activator  z+ = x+ W+ + x- W- (+ b+ + b-)
    inhibitor  z- = x+ W- + x- W+ (+ b- + b+)
    R = alpha * R(z+) - beta * R(z-),   alpha - beta = 1

with each part split by the z-rule. With ``bias=True`` the full bias enters both
denominators, exactly as in iNNvestigate. When the input is known to be non-negative (it
comes from a ReLU), the ``x-`` terms vanish and are skipped: the same numbers at half the
cost. (``x W-`` is computed directly, not as ``x W - x W+``: that difference leaves
round-off where the true value is 0, and dividing by it destroys the relevance.)

Example:
    >>> ki.create_analyzer("lrp.alpha_beta", model, alpha=2, beta=1)
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules._sign_split import AlphaBetaFamily, sign_split
from keras_isnet.rules.base import KernelCall, Rule, negative, positive, safe_divide


class AlphaBetaRule(AlphaBetaFamily):
    """LRP-alpha-beta. ``alpha - beta = 1`` is required; give one and the other follows."""

    name = "AlphaBeta"

    def __init__(self, alpha: float | None = None, beta: float | None = None, bias=True):
        if alpha is None and beta is None:
            raise ValueError("AlphaBetaRule needs alpha or beta (alpha - beta = 1).")
        if alpha is None:
            alpha = beta + 1
        if beta is None:
            beta = alpha - 1
        if abs(alpha - beta - 1) > 1e-12 or beta < 0:
            raise ValueError(
                f"AlphaBetaRule needs alpha - beta = 1 and beta >= 0, got alpha={alpha}, "
                f"beta={beta}."
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = bias

    def __call__(self, call: KernelCall, R):
        # iNNvestigate: the full bias (b+ + b-) in both denominators, exact-zero guard only.
        bias = call.bias if self.bias and call.bias is not None else None
        return sign_split(
            call,
            R,
            kernel_a=call.map_kernel(positive),
            kernel_b=call.map_kernel(negative),
            bias_a=bias,
            bias_b=bias,
            weight_a=self.alpha,
            weight_b=-self.beta,
            epsilon=None,
        )


class ZPlusRule(AlphaBetaRule):
    """z-plus: alpha = 1, beta = 0, bias ignored (iNNvestigate's ZPlusRule)."""

    name = "ZPlus"
    label_ignored_bias = False

    def __init__(self):
        super().__init__(alpha=1, beta=0, bias=False)

    def __repr__(self):
        return "ZPlusRule()"


class ZPlusFastRule(Rule):
    """``R_i = x_i * (W+^T (R / (x W+)))_i``: z-plus assuming non-negative inputs, no bias."""

    name = "ZPlusFast"

    def __call__(self, call: KernelCall, R):
        z, pullback = call.linear_vjp(call.x, call.map_kernel(positive))
        return ops.multiply(call.x, pullback(safe_divide(R, z)))
