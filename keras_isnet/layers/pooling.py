"""Pooling layers.

Average pooling (local and global) is a weightless linear map: LRP splits relevance over
the window with the z-rule ``R_i = x_i / sum_window(x) * R``. Max pooling (local and global)
routes relevance to the window's winner, with TensorFlow's tie rule (the first maximum).

Example:
    >>> spec = lookup(keras.layers.MaxPooling2D())
    >>> pull = spec.pullback(layer, [x], [y], autodiff_pullback)
    >>> pull([R])[0].shape == x.shape
    True
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers.base import RoutingLayer, WeightlessLinearLayer
from keras_isnet.layers.registry import register_reverse_rule

for _cls in (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
):
    register_reverse_rule(_cls, WeightlessLinearLayer())

#: the max-pooling layer classes (winner-takes-all routing).
MAX_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)

_GLOBAL_MAX_POOLING = MAX_POOLING[3:]


class MaxPoolingRouting(RoutingLayer):
    """Max pooling: relevance goes to each window's winner.

    When the windows do not overlap (``strides == pool_size``, the Keras default) and the
    input's spatial shape is known, the winners are found once per forward pass (the
    automatic-differentiation pullback of ones, so ties go where TensorFlow's gradient puts
    them) and every backward walk is a product: ``R_in = share * upsample(R)``, with
    ``share`` 1 at the winners and 0 elsewhere (global pooling splits ties equally, as its
    gradient does). That is the same number as the pullback, but it costs an element-wise
    product instead of a max-pool gradient, and its own derivative (ISNet training
    differentiates the walk) is a product and a sum instead of TensorFlow's slow
    ``MaxPoolGradGrad``. Overlapping windows use the pullback.
    """

    def lrp_handler(self, step, context):
        choose = getattr(context, "max_pooling_rule", None)
        rule = None if choose is None else choose(step)
        if rule is None:
            return super().lrp_handler(step, context)
        return lambda record, Rs: rule.reverse_routing(
            record.inputs, record.outputs, record.pullback, Rs
        )

    def conservation_info(self, step, context):
        choose = getattr(context, "max_pooling_rule", None)
        rule = None if choose is None else choose(step)
        if rule is not None:
            return rule.label, rule.absorption()
        return "winner-take-all", ["max-pool ties"]

    def pullback(self, layer, inputs, outputs, pullback):
        x, y = inputs[0], outputs[0]
        channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
        spatial = (
            list(range(2, len(x.shape))) if channels_first else list(range(1, len(x.shape) - 1))
        )
        if any(x.shape[a] is None for a in spatial):
            return pullback
        is_global = isinstance(layer, _GLOBAL_MAX_POOLING)
        if not is_global and tuple(layer.strides) != tuple(layer.pool_size):
            return pullback
        # 1 at each window's winner, 0 elsewhere (global pooling: 1/n at each of n ties).
        share = ops.stop_gradient(pullback([ops.ones_like(y)])[0])

        def select(cotangents):
            r = cotangents[0]
            if is_global:
                shape = [-1] + [1] * (len(x.shape) - 1)
                shape[1 if channels_first else -1] = x.shape[1 if channels_first else -1]
                r = ops.reshape(r, shape)
                return [ops.multiply(share, r)]
            for axis, size in zip(spatial, layer.pool_size, strict=True):
                r = ops.repeat(r, size, axis=axis)
                extra = r.shape[axis] - x.shape[axis]
                if extra > 0:  # "same" padding: the windows overhang by `extra` positions,
                    index = [slice(None)] * len(x.shape)  # extra // 2 of them at the start
                    index[axis] = slice(extra // 2, extra // 2 + x.shape[axis])
                    r = r[tuple(index)]
                elif extra < 0:  # "valid" padding: the rows after the last window get none
                    pad = [(0, 0)] * len(x.shape)
                    pad[axis] = (0, -extra)
                    r = ops.pad(r, pad)
            return [ops.multiply(share, r)]

        return select


for _cls in MAX_POOLING:
    register_reverse_rule(_cls, MaxPoolingRouting())
