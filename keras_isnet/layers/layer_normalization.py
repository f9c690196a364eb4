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

from keras_isnet.layers.base import CustomLayer
from keras_isnet.layers.registry import register_reverse_rule
from keras_isnet.rules.base import safe_divide


def layer_norm_relevance(layer, inputs, outputs, relevances):
    """The LN rule for one call of a ``keras.layers.LayerNormalization`` (see the module).

    Args:
        layer: the layer; inputs, outputs, relevances: one-element lists of tensors of the
            same shape ``(batch, ...)``.

    Returns:
        ``[R_x]``, the relevance of the input, shaped like it.
    """
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            f"Layer {layer.name!r}: LayerNormalization(rms_scaling=True) is deprecated in "
            "Keras and has no reverse rule here; use keras.layers.RMSNormalization or "
            "register a rule with ki.register_reverse_rule."
        )
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
    t = ops.multiply(safe_divide(R, z), scale)
    return [ops.multiply(x, ops.subtract(t, ops.mean(t, axis=axes, keepdims=True)))]


register_reverse_rule(
    keras.layers.LayerNormalization,
    CustomLayer(layer_norm_relevance, label="LN rule", causes=("beta where z = 0",)),
)
