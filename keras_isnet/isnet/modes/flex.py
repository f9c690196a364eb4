"""``lrp="flex"``: the official LRP-Flex ISNet (``ISNetFlexTorch.ISNetFlex``, trained by
``ISNetFlexLightning``), the "Faster ISNet".

LRP-Flex changes only the backward pass of the ReLUs: a ReLU's gradient becomes
``g_out * y / (y + epsilon)`` (``y`` the ReLU output, with its gradient, so the biases
before it get heatmap gradients); every other layer propagates its plain gradient, so a
layer not followed by a ReLU (the logits, a conv+BN before a residual Add, a shortcut,
global average pooling) gets LRP-0. The relevance at the first ReLU's output is
``y0 * gradient``, and the first layer applies the z^B rule with the detached bias
(:class:`~keras_isnet.rules.ZbRule`; a BatchNormalization after it folded as the official
``FuseBN``: gamma's gradient kept, the unbiased batch variance in training mode). Hidden
BatchNormalization layers are not folded: in training mode the gradient runs through the
batch statistics. The walk here is in gradient space above the first ReLU.

Explained quantities: a logit (original, stochastic: one backward pass of
``sum_batch logit_c``); the selective quantity ``sum_batch log(p_c + eps_s) -
log(1 - p_c + eps_s)``, ``p = softmax(logits)``, with ``eps_s = selective_eps`` (1e-7 in
``ISNetFlexLightning``; ``ISNetFlexTorch`` and ``RunISNetFlex.py`` use 1e-2). Stochastic
draw (``RandomLogitIndices``): per sample the top logit with probability 5/11, otherwise a
uniform other class.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.backend import vjp
from keras_isnet.canonizers import (
    FoldPlan,
    batch_norm_training,
    update_moving_statistics,
)
from keras_isnet.engine import pullback_handler
from keras_isnet.isnet.modes.base import LRPMode, other_class, register_lrp_mode
from keras_isnet.isnet.variants.base import replica_draw
from keras_isnet.layers import ElementwiseLayer, KernelLayer, lookup
from keras_isnet.layers.base import activation_name, pass_handler
from keras_isnet.layers.normalization import BatchNormalizationReverse
from keras_isnet.propagation import KernelOverride

#: probability that LRP-Flex's stochastic draw explains a sample's top logit (11 outcomes).
FLEX_TOP_PROBABILITY = 5.0 / 11.0


class FlexTrainingPlan:
    """The replay's overrides of LRP-Flex in training mode: the first layer's BN folds with
    the batch statistics (unbiased variance), every other BatchNormalization as Keras
    computes it in training (its gradient through the batch statistics; moving statistics
    updated once per replay)."""

    def __init__(self, plan: FoldPlan, bn_steps):
        self.training_plan = plan.training(unbiased_variance=True)
        self.identity_steps = plan.identity_steps
        self.bn_steps = frozenset(bn_steps)

    def kernel_override(self, step):
        override = self.training_plan.kernel_override(step)
        if override is not None or step.index not in self.bn_steps:
            return override
        bn = step.layer
        if not bn.trainable:  # Keras uses the moving statistics for a frozen BN
            return None

        def train_bn(spec, x):
            update_moving_statistics(bn, x)
            out, pull = vjp(lambda v: batch_norm_training(bn, v), [x])
            kernel, _ = spec.weights(bn)
            return KernelOverride(spec, kernel, None, linear=(out, pull))

        return train_bn


@register_lrp_mode
class FlexLRP(LRPMode):
    """The official LRP-Flex ISNet, bound to one ISNet heatmaps object.

    Args:
        heatmaps: the :class:`~keras_isnet.isnet.ISNetHeatmaps` (its ``epsilon``,
            ``selective_eps`` and first-layer rule).

    Raises:
        ValueError: with the z^B rule (``input_bounds`` given), a first layer that is not
            followed by a ReLU (optionally after a BatchNormalization): LRP-Flex reads the
            relevance at the first ReLU's output.

    Example:
        >>> heatmaps = ki.ISNetHeatmaps(model, lrp="flex", selective_eps=1e-7)
        >>> logits, maps = heatmaps.logits_and_heatmaps(x, labels, variant="selective")
    """

    name = "flex"
    official = "ISNetFlexTorch / ISNetFlexLightning (LRP-Flex)"
    supports_relevance_rules = False

    def __init__(self, heatmaps):
        super().__init__(heatmaps)
        engine = heatmaps.engine
        self.first = heatmaps.rules.first_kernels
        self.zb = heatmaps.composite.first_layer
        plan = engine.canonization
        if plan is not None:
            plan = plan.restricted(self.first if self.zb is not None else ())
        self.plan = plan
        bn_steps = [
            s.index
            for s in engine.steps
            if isinstance(lookup(s.layer), BatchNormalizationReverse)
            and (plan is None or s.index not in plan.identity_steps)
        ]
        self._training_plan = None
        if plan is not None or bn_steps:
            self._training_plan = FlexTrainingPlan(plan or FoldPlan(), bn_steps)
        self._handlers = None

    # -------------------------------------------------------------------- replay
    def canonization(self, training: bool):
        if training:
            return self._training_plan
        return self.plan

    # ------------------------------------------------------------------ handlers
    def handlers(self) -> dict:
        if self._handlers is None:
            self._handlers = self._build_handlers()
        return self._handlers

    def _build_handlers(self) -> dict:
        engine = self.heatmaps.engine
        eps = self.heatmaps.epsilon
        identity = self.plan.identity_steps if self.plan is not None else frozenset()
        first_relus = set()
        if self.zb is not None:
            first_relus = self._first_relus(identity)

        def relu_gradient(record, gs):
            y = record.outputs[0]
            return [ops.multiply(gs[0], ops.divide(y, ops.add(y, eps)))]

        def to_relevance(record, gs):  # the first ReLU: R = y0 * gradient, then relevance
            return [ops.multiply(gs[0], record.outputs[0])]

        def kernel_relu_gradient(record, gs):
            y = record.outputs[0]
            return [record.kernel.pullback(ops.multiply(gs[0], ops.divide(y, ops.add(y, eps))))]

        zb = self.zb

        def first_kernel(record, gs):
            R = gs[0]
            if activation_name(record.step.layer) == "relu":
                R = ops.multiply(R, record.outputs[0])
            return [zb(record.kernel, R)]

        def choose(step):
            spec = lookup(step.layer)
            if zb is not None and step.index in self.first:
                return first_kernel
            if step.index in identity:
                return pass_handler
            if step.index in first_relus:
                return to_relevance
            if isinstance(spec, ElementwiseLayer) and spec.is_relu(step.layer):
                return relu_gradient
            if isinstance(spec, KernelLayer) and activation_name(step.layer) == "relu":
                if step.index not in engine.linear_steps:
                    return kernel_relu_gradient
            return pullback_handler

        return engine.handlers(choose)

    def _first_relus(self, identity) -> set:
        """The ReLU steps reading the first layers' outputs (through folded BNs)."""
        engine = self.heatmaps.engine
        reach = {}
        for step in engine.steps:
            if step.index in self.first:
                if activation_name(step.layer) == "relu":
                    continue  # the layer's own ReLU
                for k in step.outputs:
                    reach[k] = step.index
        found, seen = set(), set()
        for step in engine.steps:
            sources = {reach[k] for k in step.inputs if k in reach}
            if not sources:
                continue
            spec = lookup(step.layer)
            if step.index in identity:
                for k in step.outputs:
                    reach[k] = next(iter(sources))
            elif isinstance(spec, ElementwiseLayer) and spec.is_relu(step.layer):
                found.add(step.index)
                seen |= sources
            else:
                first = next(iter(sources))
                raise ValueError(
                    "lrp='flex' reads the relevance at the first ReLU's output and applies "
                    f"the z^B rule to the first layer, but the output of first layer "
                    f"{engine.steps[first].path!r} reaches {step.path!r} "
                    f"({type(step.layer).__name__}) before any ReLU. Put a ReLU (optionally "
                    "after BatchNormalization) right after the first layer, or pass "
                    "input_bounds=None (no z^B rule)."
                )
        missing = [
            i
            for i in self.first
            if i not in seen and activation_name(engine.steps[i].layer) != "relu"
        ]
        if missing:
            raise ValueError(
                f"lrp='flex': the first layer {engine.steps[missing[0]].path!r} is not followed "
                "by a ReLU; LRP-Flex's z^B rule needs one (or pass input_bounds=None)."
            )
        return found

    # --------------------------------------------------------------------- seeds
    def class_seeds(self, walks, weights) -> dict:
        logits = walks.logits
        return {self.heatmaps.engine.head_key: ops.cast(weights, logits.dtype)}

    def selective_seeds(self, walks, classes) -> dict:
        """The gradient of ``sum_b log(p_c + eps_s) - log(1 - p_c + eps_s)`` at the logits."""
        logits = walks.logits
        eps = self.heatmaps.selective_eps
        dtype = keras.backend.standardize_dtype(logits.dtype)
        z = ops.cast(logits, "float32") if dtype in ("float16", "bfloat16") else logits
        p = ops.softmax(z, axis=-1)
        onehot = ops.cast(ops.one_hot(classes, z.shape[-1]), z.dtype)
        p_c = ops.sum(ops.multiply(p, onehot), axis=-1, keepdims=True)
        dq = ops.add(ops.reciprocal(ops.add(p_c, eps)), ops.reciprocal(ops.add(1.0 - p_c, eps)))
        g = ops.multiply(ops.multiply(dq, p_c), ops.subtract(onehot, p))
        return {self.heatmaps.engine.head_key: ops.cast(g, dtype)}

    def stochastic_classes(self, logits, seed=None):
        top = ops.cast(ops.argmax(logits, axis=-1), "int32")
        k = ops.shape(logits)[-1]
        uniform = replica_draw(lambda r: keras.random.uniform((r,), seed=seed), ops.shape(top)[0])
        coin = uniform < FLEX_TOP_PROBABILITY
        return ops.where(coin, top, other_class(top, k, seed))

    def input_map(self, walks, value):
        if self.zb is None:  # no z^B: the map is input x gradient
            return ops.multiply(walks.x, value)
        return value
