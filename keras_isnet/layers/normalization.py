"""BatchNormalization at inference, as the element-wise affine map it is.

``y = s * x + (beta - mean * s)`` with ``s = gamma / sqrt(moving_variance + epsilon)``,
broadcast along the layer's axis. As a :class:`KernelLayer` of category "affine", every LRP
rule applies to it with the correct formula (iNNvestigate squares the variance and drops
gamma from the shift; we do not).

Example:
    >>> bn = keras.layers.BatchNormalization()
    >>> kernel, bias = BatchNormalizationReverse().weights(bn)   # s, beta - mean * s
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers.base import KernelLayer
from keras_isnet.layers.registry import register_reverse_rule


class BatchNormalizationReverse(KernelLayer):
    """BatchNormalization (inference statistics) as an element-wise affine kernel layer."""

    category = "affine"

    def weights(self, layer):
        scale = ops.rsqrt(ops.add(layer.moving_variance, layer.epsilon))
        if layer.scale:
            scale = ops.multiply(scale, layer.gamma)
        shift = ops.negative(ops.multiply(layer.moving_mean, scale))
        if layer.center:
            shift = ops.add(shift, layer.beta)
        return scale, shift

    def _broadcast(self, layer, v, rank):
        axis = layer.axis % rank
        shape = [1] * rank
        shape[axis] = -1
        return ops.reshape(v, shape)

    def linear(self, layer, x, kernel):
        return ops.multiply(x, self._broadcast(layer, kernel, len(x.shape)))

    def add_bias(self, layer, z, bias):
        if bias is None:
            return z
        return ops.add(z, self._broadcast(layer, bias, len(z.shape)))

    def activation(self, layer):
        return None

    def relevance_passes(self, context) -> bool:
        """Relevance crosses a BN unchanged unless ``bn_rule="linear"`` puts a rule on it
        (folded BNs are identities in the replay; ``"pass"`` passes them)."""
        return context.bn_rule != "linear"

    def conservation_info(self, step, context):
        if self.relevance_passes(context):
            plan = context.fold_plan
            folded = plan.folded_into(step.index) if plan is not None else None
            if folded is not None:
                return f"folded into {folded[0].path!r}", []
            return "Pass", []
        return super().conservation_info(step, context)

    def bias_causes(self, step, context) -> list[str]:
        return ["BN shift"]


register_reverse_rule(keras.layers.BatchNormalization, BatchNormalizationReverse())
