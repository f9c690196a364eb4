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

from keras_isnet.rules.base import KernelCall, Rule, negative, positive, safe_divide


class AlphaBetaRule(Rule):
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

    def _biases(self, call: KernelCall):
        if not self.bias or call.bias is None:
            return None
        return ops.add(positive(call.bias), negative(call.bias))

    def __call__(self, call: KernelCall, R):
        kernel_pos = call.map_kernel(positive)
        bias = self._biases(call)
        x = call.x
        if call.x_nonnegative:
            # x- = 0: only x+ W+ (activator) and x+ W- (inhibitor) remain.
            z_pos, pull_pos = call.linear_vjp(x, kernel_pos)
            s_a = safe_divide(R, call.add_bias(z_pos, bias))
            r_a = ops.multiply(x, pull_pos(s_a))
            if not self.beta:
                return r_a
            z_neg, pull_neg = call.linear_vjp(x, call.map_kernel(negative))
            s_b = safe_divide(R, call.add_bias(z_neg, bias))
            r_b = ops.multiply(x, pull_neg(s_b))
            return ops.subtract(ops.multiply(self.alpha, r_a), ops.multiply(self.beta, r_b))

        kernel_neg = call.map_kernel(negative)
        x_pos, x_neg = positive(x), negative(x)
        # Both input parts through each weight part, stacked along the batch axis.
        both = ops.concatenate([x_pos, x_neg], axis=0)
        n = ops.shape(x)[0]
        z_wpos, pull_wpos = call.linear_vjp(both, kernel_pos)
        z_wneg, pull_wneg = call.linear_vjp(both, kernel_neg)
        z_pp, z_np = z_wpos[:n], z_wpos[n:]
        z_pn, z_nn = z_wneg[:n], z_wneg[n:]
        s_a = safe_divide(R, call.add_bias(ops.add(z_pp, z_nn), bias))
        # W+^T [s_a; s_b] gives the x+ activator and x- inhibitor terms, W-^T [s_b; s_a] the rest.
        if self.beta:
            s_b = safe_divide(R, call.add_bias(ops.add(z_pn, z_np), bias))
        else:
            s_b = ops.zeros_like(s_a)
        g_wpos = pull_wpos(ops.concatenate([s_a, s_b], axis=0))
        g_wneg = pull_wneg(ops.concatenate([s_b, s_a], axis=0))
        r_a = ops.add(ops.multiply(x_pos, g_wpos[:n]), ops.multiply(x_neg, g_wneg[n:]))
        if not self.beta:
            return r_a
        r_b = ops.add(ops.multiply(x_pos, g_wneg[:n]), ops.multiply(x_neg, g_wpos[n:]))
        return ops.subtract(ops.multiply(self.alpha, r_a), ops.multiply(self.beta, r_b))


class ZPlusRule(AlphaBetaRule):
    """z-plus: alpha = 1, beta = 0, bias ignored (iNNvestigate's ZPlusRule)."""

    name = "ZPlus"

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
