"""LayerNormalization with its standard deviation held constant (the "LN rule").

``y = gamma * (x - mean(x)) / sigma(x) + beta`` over the layer's axes is not linear in ``x``
because of ``sigma``; LRP through it loses relevance. Following Ali et al. (2022, "XAI for
Transformers: Better Explanations through Conservative Propagation"), ``sigma`` is treated as
a constant, which leaves the linear map ``z = A x`` with ``A = diag(gamma / sigma) C`` and the
centering matrix ``C = I - 1 1^T / n``. The z-rule on it, bias (``beta``) ignored::

    R_i = x_i * sum_j A_ji R_j / z_j = x_i * (t_i - mean(t)),   t = gamma / sigma * R / z

conserves relevance (``sum_i R_i(x) = sum_j R_j``) except where ``z_j = 0`` (an all-zero
input vector, e.g. dead ReLUs at one position): the relevance that ``beta`` draws there is
absorbed, as a bias absorbs it. It is differentiable, so ISNet training works through it (with
``sigma`` detached, as the rule defines it). The division guards exact zeros only
(iNNvestigate's SafeDivide). ``rms_scaling=True`` (deprecated in Keras) is refused.

Example:
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
    ...                           keras.layers.LayerNormalization(), keras.layers.Dense(3)])
    >>> ki.create_analyzer("lrp.epsilon", model).analyze(x)   # relevance crosses the LN
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.backend import vjp
from keras_isnet.layers.base import CustomLayer
from keras_isnet.layers.registry import register_reverse_rule
from keras_isnet.rules.base import safe_divide


def _refuse_rms_scaling(layer):
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            f"Layer {layer.name!r}: LayerNormalization(rms_scaling=True) is deprecated in "
            "Keras and has no reverse rule here; use keras.layers.RMSNormalization or "
            "register a rule with ki.register_reverse_rule."
        )


def layer_norm_relevance(layer, inputs, outputs, relevances, divide=safe_divide):
    """The LN rule for one call of a ``keras.layers.LayerNormalization`` (see the module).

    Args:
        layer: the layer; inputs, outputs, relevances: one-element lists of tensors of the
            same shape ``(batch, ...)``.
        divide: ``R / z``; default: exact zeros guarded only (a composite with a z-rule
            stabiliser, the ISNet's, passes its epsilon-stabilised division).

    Returns:
        ``[R_x]``, the relevance of the input, shaped like it.
    """
    _refuse_rms_scaling(layer)
    x, R = inputs[0], relevances[0]
    rank = len(x.shape)
    axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, list) else [layer.axis]))
    mean = ops.mean(x, axis=axes, keepdims=True)
    variance = ops.var(x, axis=axes, keepdims=True)
    scale = ops.stop_gradient(ops.rsqrt(ops.add(variance, layer.epsilon)))
    if layer.gamma is not None:
        shape = [x.shape[i] if i in axes else 1 for i in range(rank)]
        scale = ops.multiply(scale, ops.reshape(ops.cast(layer.gamma, x.dtype), shape))
    z = ops.multiply(ops.subtract(x, mean), scale)  # the output without beta
    t = ops.multiply(divide(R, z), scale)
    return [ops.multiply(x, ops.subtract(t, ops.mean(t, axis=axes, keepdims=True)))]


#: the stabiliser of AttnLRP's LayerNorm rule (lxt's ``layer_norm``: ``y + 1e-6``).
ATTN_LRP_EPSILON = 1e-6


def layer_norm_attn_lrp(layer, x, R, epsilon: float = ATTN_LRP_EPSILON):
    """AttnLRP's LayerNorm rule (Achtibat et al., 2024; lxt's ``layer_norm``): the standard
    deviation held constant (the identity rule on ``1 / sigma``), the epsilon rule on the
    centering and the affine part: ``R_x = x * J^T (R / (y + epsilon))`` with ``y`` the whole
    output (gamma and beta included) and ``J`` its Jacobian with ``sigma`` constant.

    Args:
        layer: a ``keras.layers.LayerNormalization``; x, R: its input and the relevance of
            its output, the same shape.
        epsilon: the stabiliser added to ``y`` (lxt adds it unsigned).

    Returns:
        The relevance of ``x``.
    """
    rank = len(x.shape)
    axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, list) else [layer.axis]))
    shape = [x.shape[i] if i in axes else 1 for i in range(rank)]
    scale = ops.stop_gradient(
        ops.rsqrt(ops.add(ops.var(x, axis=axes, keepdims=True), layer.epsilon))
    )

    def normalised(v):
        y = ops.multiply(ops.subtract(v, ops.mean(v, axis=axes, keepdims=True)), scale)
        if layer.gamma is not None:
            y = ops.multiply(y, ops.reshape(ops.cast(layer.gamma, v.dtype), shape))
        if layer.beta is not None:
            y = ops.add(y, ops.reshape(ops.cast(layer.beta, v.dtype), shape))
        return y

    y, pull = vjp(normalised, [x])
    return ops.multiply(x, pull(ops.divide(R, ops.add(y, epsilon)))[0])


class LayerNormalizationReverse(CustomLayer):
    """LayerNormalization: the LN rule, or AttnLRP's rule under ``layer_norm="attn_lrp"``."""

    def __init__(self):
        super().__init__(layer_norm_relevance, label="LN rule", causes=("beta where z = 0",))

    def lrp_handler(self, step, context):
        if getattr(context, "layer_norm", "ln_rule") != "attn_lrp":
            if getattr(context, "weightless_epsilon", None) is None:
                return super().lrp_handler(step, context)
            layer, divide = step.layer, context.weightless_divide  # the ISNet's stabiliser
            return lambda record, Rs: layer_norm_relevance(
                layer, record.inputs, record.outputs, Rs, divide
            )
        layer = step.layer
        _refuse_rms_scaling(layer)
        return lambda record, Rs: [layer_norm_attn_lrp(layer, record.inputs[0], Rs[0])]

    def conservation_info(self, step, context):
        if getattr(context, "layer_norm", "ln_rule") == "attn_lrp":
            return "LayerNorm (AttnLRP)", ["beta", "epsilon"]
        epsilon = getattr(context, "weightless_epsilon", None)
        if epsilon is not None:
            return f"LN rule(e={epsilon:g})", ["beta where z = 0", "epsilon"]
        return super().conservation_info(step, context)


register_reverse_rule(keras.layers.LayerNormalization, LayerNormalizationReverse())
