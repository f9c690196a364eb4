"""``lrp="block"``: the official LRP Block ISNet (``ISNetLayersZe``/``ISNetFunctionsZe``,
trained by ``ISNetLightningZe``).

The ``"isnet"`` composite's rules (:mod:`keras_isnet.composites.isnet`): LRP-epsilon with
the detached bias, z^B with the detached bias at the first layer, epsilon-stabilised max
pooling, the epsilon z-rule at Add and average pooling; BatchNormalization folded (the
fused bias keeps gamma's gradient; in training mode the fold uses the batch mean and the
unbiased batch variance, detached). Seeds: the logit with the detached bias (``LRPOutput``)
for the original and stochastic variants; the selective variant's exact ``eta_c`` through
the virtual layer (``LRPClassSelectiveOutputLayer``). Stochastic draw: one coin per batch
(probability 1/2) for the top logit of every sample, otherwise per sample a uniform other
class.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.isnet.modes.base import LRPMode, other_class, register_lrp_mode
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.rules.base import stabilize

#: the stabiliser of the selective output layer's denominator (``LRPClassSelectiveOutputLayer``).
SELECTIVE_STABILIZER = 1e-5
#: probability that the LRP Block's stochastic draw explains every sample's top logit.
BLOCK_TOP_PROBABILITY = 0.5


@register_lrp_mode
class BlockLRP(LRPMode):
    """The official LRP Block ISNet, bound to one ISNet heatmaps object.

    Args:
        heatmaps: the :class:`~keras_isnet.isnet.ISNetHeatmaps`.

    Example:
        >>> heatmaps = ki.ISNetHeatmaps(model, lrp="block")
        >>> type(heatmaps.mode).__name__
        'BlockLRP'
    """

    name = "block"
    official = "ISNetLayersZe / ISNetFunctionsZe / ISNetLightningZe (LRP Block)"

    def __init__(self, heatmaps):
        super().__init__(heatmaps)
        plan = heatmaps.engine.canonization
        self._training_plan = None if plan is None else plan.training(unbiased_variance=True)
        self._handlers = None

    def handlers(self) -> dict:
        if self._handlers is None:
            self._handlers = self.heatmaps.rules.handlers()
        return self._handlers

    def canonization(self, training: bool):
        return self._training_plan if training else self.heatmaps.engine.canonization

    def _detached_bias_logits(self, walks):
        """The logits with the last layer's bias detached (``LRPOutput``'s seed values)."""
        head = self.heatmaps.engine.head_step
        if head is None or not isinstance(lookup(head.layer), KernelLayer):
            return walks.logits
        call = walks.records[head.index].kernel
        if call is None or call.bias is None:
            return walks.logits
        return call.add_bias(call.z_nobias, call.detached_bias)

    def class_seeds(self, walks, weights) -> dict:
        logits = self._detached_bias_logits(walks)
        weights = ops.cast(weights, logits.dtype)
        return {self.heatmaps.engine.head_key: ops.multiply(logits, weights)}

    def selective_seeds(self, walks, classes) -> dict:
        """The relevance at the last layer's input for ``eta_c`` (method note section 4)."""
        heatmaps = self.heatmaps
        head = heatmaps.engine.head_step
        if head is None or not isinstance(lookup(head.layer), KernelLayer):
            raise ValueError(
                "The selective ISNet explains the logits through the last Dense/Conv layer, "
                f"but the logits of {heatmaps.model.name!r} come from "
                f"{type(head.layer).__name__ if head else 'an input'}. "
                "Use variant='stochastic' or 'original', or end the model with a Dense layer."
            )
        record = walks.records[head.index]
        call = record.kernel
        bias = call.detached_bias
        z = call.z_nobias if bias is None else call.add_bias(call.z_nobias, bias)
        # The virtual layer runs in float32 under mixed precision (its -1e30 mask and the
        # exponentials do not fit float16); the seeds go back in the layer's dtype.
        dtype = keras.backend.standardize_dtype(z.dtype)
        if dtype in ("float16", "bfloat16"):
            z = ops.cast(z, "float32")
        k = z.shape[-1]
        onehot = ops.cast(ops.one_hot(classes, k), z.dtype)
        z_c = ops.sum(ops.multiply(z, onehot), axis=-1, keepdims=True)
        zcc = ops.subtract(z_c, z)  # 0 at c' = c
        # Stable form of e^{-zcc} / (sum e^{-zcc''} - 1): a softmax over c' != c.
        masked = ops.where(onehot > 0, ops.full_like(zcc, -1e30), ops.negative(zcc))
        lse = ops.logsumexp(masked, axis=-1, keepdims=True)
        weights = ops.multiply(ops.exp(ops.subtract(masked, lse)), 1.0 - onehot)
        correction = ops.divide(
            1.0, ops.add(1.0, ops.multiply(SELECTIVE_STABILIZER, ops.exp(ops.negative(lse))))
        )
        R = ops.multiply(ops.multiply(zcc, weights), correction)
        s = ops.divide(R, stabilize(zcc, heatmaps.epsilon))
        s_total = ops.sum(s, axis=-1, keepdims=True)
        cotangent = ops.cast(ops.subtract(ops.multiply(onehot, s_total), s), dtype)
        r_a = ops.multiply(call.x, call.pullback(cotangent))
        return {record.input_keys[0]: r_a}

    def stochastic_classes(self, logits, seed=None):
        top = ops.cast(ops.argmax(logits, axis=-1), "int32")
        k = ops.shape(logits)[-1]
        coin = keras.random.uniform((), seed=seed) < BLOCK_TOP_PROBABILITY  # one per batch
        return ops.where(coin, top, other_class(top, k, seed))
