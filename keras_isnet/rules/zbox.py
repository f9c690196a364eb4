"""ZBox: the z^B rule with zennit's stabiliser and per-channel bounds.

For inputs in the box ``[low, high]``::

    z_j = sum_i x_i w_ij - low_i w+_ij - high_i w-_ij
    R_i = sum_j (x_i w_ij - low_i w+_ij - high_i w-_ij) R_j / (z_j + epsilon sign(z_j))

The bias is ignored (in zennit it cancels out). ``low`` and ``high`` are scalars, arrays
shaped like the layer input without the batch axis, or 1-D arrays with one bound per channel
(normalised images: ``low = (0 - mean) / std`` per channel), which are placed along the
layer's channel axis (the last one, or axis 1 for ``channels_first`` convolutions).

Example:
    >>> rule = ZBoxRule(low=(0 - mean) / std, high=(1 - mean) / std)   # per channel
    >>> ki.create_analyzer("lrp.epsilon", model, input_layer_rule=rule)
"""

from __future__ import annotations

import numpy as np

from keras_isnet.rules.base import KernelCall, Rule
from keras_isnet.rules.bounded import BoundedRule


class ZBoxRule(Rule):
    """zennit's ``ZBox`` rule: bounds ``low`` and ``high`` (required), epsilon 1e-6.

    Args:
        low, high: the lowest and highest possible input values: scalars, arrays shaped like
            the layer input (without batch axis), or per-channel 1-D arrays.
        epsilon: the stabiliser, default 1e-6.

    Example:
        >>> ZBoxRule(low=0.0, high=1.0)
        >>> ZBoxRule(low=np.array([-2.1, -2.0, -1.8]), high=np.array([2.2, 2.4, 2.6]))
    """

    name = "ZBox"
    stabilizer = "epsilon"
    label_params: dict = {}

    def __init__(self, low, high, epsilon: float = 1e-6):
        if low is None or high is None:
            raise ValueError("ZBoxRule needs both bounds, e.g. ZBoxRule(low=0.0, high=1.0).")
        lo, hi = np.asarray(low, dtype="float64"), np.asarray(high, dtype="float64")
        try:
            bad = np.any(np.broadcast_to(lo, np.broadcast_shapes(lo.shape, hi.shape)) > hi)
        except ValueError:
            raise ValueError(
                f"ZBoxRule bounds have shapes {lo.shape} (low) and {hi.shape} (high), which do "
                "not broadcast against each other."
            ) from None
        if bad:
            raise ValueError("ZBoxRule needs low <= high everywhere.")
        self.low = low
        self.high = high
        self.epsilon = float(epsilon)

    def _bound(self, value, call: KernelCall, which: str):
        arr = np.asarray(value, dtype="float32")
        x_shape = tuple(call.x.shape[1:])
        rank = len(x_shape) + 1
        if arr.ndim == 1 and rank > 2:
            channels_first = getattr(call.layer, "data_format", None) == "channels_first"
            axis = 1 if channels_first else rank - 1
            n = x_shape[axis - 1]
            if n is not None and arr.shape[0] not in (1, n):
                raise ValueError(
                    f"ZBoxRule {which} has {arr.shape[0]} per-channel values but layer "
                    f"{call.layer.name!r} has {n} input channels (input shape {x_shape})."
                )
            shape = [1] * rank
            shape[axis] = -1
            arr = arr.reshape(shape)
        else:
            try:
                np.broadcast_shapes(arr.shape, tuple(1 if s is None else s for s in x_shape))
            except ValueError:
                raise ValueError(
                    f"ZBoxRule {which} of shape {arr.shape} does not broadcast to the input "
                    f"of layer {call.layer.name!r}, shape {x_shape} (without batch axis); give a "
                    "scalar, one value per channel, or an array of that shape."
                ) from None
        return arr

    def __call__(self, call: KernelCall, R):
        low = self._bound(self.low, call, "low")
        high = self._bound(self.high, call, "high")
        return BoundedRule(low=low, high=high, epsilon=self.epsilon)(call, R)

    def __repr__(self):
        return f"ZBoxRule(low={self.low!r}, high={self.high!r}, epsilon={self.epsilon!r})"
