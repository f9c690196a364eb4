"""The arithmetic shared by the rules that treat positive and negative inputs separately.

Gamma, zennit's alpha-beta and zennit's z-plus all have the form::

    z_a = x+ K_a + x- K_b + b_a          z_b = x+ K_b + x- K_a + b_b
    s_a = w_a m_a R / stab(z_a)          s_b = w_b m_b R / stab(z_b)
    R_in = x+ (K_a^T s_a + K_b^T s_b) + x- (K_b^T s_a + K_a^T s_b)

for two transformed kernels ``K_a``, ``K_b``, biases ``b_a``, ``b_b``, weights ``w_a``,
``w_b`` and optional masks ``m_a``, ``m_b`` over the outputs; ``stab(z) = z + eps sign(z)``
with ``sign(0) = +1`` (zennit's ``stabilize``), or iNNvestigate's exact-zero guard for its
alpha-beta rule. Both input signs go through each kernel in one call, stacked along the
batch axis.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, negative, positive, safe_divide, stabilize


def sign_split(
    call: KernelCall,
    R,
    *,
    kernel_a,
    kernel_b,
    bias_a=None,
    bias_b=None,
    weight_a: float = 1.0,
    weight_b: float = 0.0,
    mask_a=None,
    mask_b=None,
    epsilon: float | None = 1e-6,
):
    """The input relevance of the two-part rule described in the module docstring.

    Args:
        call: the kernel layer call.
        R: the relevance of the layer's pre-activation, shaped like ``call.z_nobias``.
        kernel_a, kernel_b: the transformed kernels (same structure as ``call.kernel``).
        bias_a, bias_b: biases added to ``z_a`` and ``z_b`` (None: no bias).
        weight_a, weight_b: the weights of the two parts (``weight_b = 0`` skips part b).
        mask_a, mask_b: optional 0/1 tensors shaped like ``R`` selecting the outputs whose
            relevance each part distributes.
        epsilon: the stabiliser; None guards exact zeros only (iNNvestigate's SafeDivide).

    Returns:
        The relevance of ``call.x``, with its shape.
    """
    use_b = bool(weight_b)

    def scaled(z, weight, mask):
        s = safe_divide(R, z) if epsilon is None else ops.divide(R, stabilize(z, epsilon))
        if mask is not None:
            s = ops.multiply(s, mask)
        return ops.multiply(s, weight) if weight != 1.0 else s

    x = call.x
    if call.x_nonnegative:  # x- = 0: one pass through each kernel
        z_a, pull_a = call.linear_vjp(x, kernel_a)
        s_a = scaled(call.add_bias(z_a, bias_a), weight_a, mask_a)
        grad = pull_a(s_a)
        if use_b:
            z_b, pull_b = call.linear_vjp(x, kernel_b)
            s_b = scaled(call.add_bias(z_b, bias_b), weight_b, mask_b)
            grad = ops.add(grad, pull_b(s_b))
        return ops.multiply(x, grad)

    x_pos, x_neg = positive(x), negative(x)
    n = ops.shape(x)[0]
    both = ops.concatenate([x_pos, x_neg], axis=0)
    za_full, pull_a = call.linear_vjp(both, kernel_a)  # [x+ K_a; x- K_a]
    zb_full, pull_b = call.linear_vjp(both, kernel_b)  # [x+ K_b; x- K_b]
    s_a = scaled(call.add_bias(ops.add(za_full[:n], zb_full[n:]), bias_a), weight_a, mask_a)
    if use_b:
        s_b = scaled(call.add_bias(ops.add(zb_full[:n], za_full[n:]), bias_b), weight_b, mask_b)
    else:
        s_b = ops.zeros_like(s_a)
    g_a = pull_a(ops.concatenate([s_a, s_b], axis=0))  # [K_a^T s_a; K_a^T s_b]
    g_b = pull_b(ops.concatenate([s_b, s_a], axis=0))  # [K_b^T s_b; K_b^T s_a]
    return ops.add(
        ops.multiply(x_pos, ops.add(g_a[:n], g_b[:n])),
        ops.multiply(x_neg, ops.add(g_a[n:], g_b[n:])),
    )


class AlphaBetaFamily(Rule):
    """What the alpha-beta rules (iNNvestigate's and zennit's) say about themselves: their
    label shows alpha and beta, and with ``beta > 0`` they do not conserve relevance where
    one of the two parts is zero."""

    alpha: float
    beta: float

    def _label_extra(self) -> str:
        if "ZPlus" in self.name:
            return ""
        return f"(a={self.alpha:g},b={self.beta:g})"

    def absorption(self) -> list[str]:
        causes = super().absorption()
        if self.beta > 0:
            causes.append("non-conserving rule (alpha-beta where one part is zero)")
        return causes
