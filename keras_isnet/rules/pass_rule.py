"""The pass rule: relevance crosses the layer unchanged (zennit's ``Pass``).

For a layer whose output has its input's shape (BatchNormalization, a same-shape Dense or
an element-wise layer): ``R_in = R_out``. It conserves relevance exactly. In a rule map it
may also target single-input weightless layers (``keras.layers.AveragePooling2D`` is not
one of them: its output shape differs).

Example:
    >>> ki.create_analyzer(
    ...     "lrp", model, rule=[(keras.layers.BatchNormalization, PassRule()), ("conv", "Z")],
    ...     bn_rule="linear")
"""

from __future__ import annotations

from keras_isnet.rules.base import KernelCall, Rule


def _check_same_shape(layer, x_shape, r_shape):
    if tuple(x_shape[1:]) != tuple(r_shape[1:]):
        raise ValueError(
            f"PassRule cannot be used at layer {getattr(layer, 'name', layer)!r}: its input has "
            f"shape {tuple(x_shape)} but its output {tuple(r_shape)}; relevance can only pass "
            "unchanged between tensors of the same shape."
        )


class PassRule(Rule):
    """``R_in = R_out`` for layers whose output has the input's shape.

    Example:
        >>> PassRule()(call, R) is R
        True
    """

    name = "Pass"
    stabilizer = None
    applies_to_weightless = True

    def __call__(self, call: KernelCall, R):
        _check_same_shape(call.layer, call.x.shape, R.shape)
        return R

    def reverse_weightless(self, layer, inputs, outputs, pullback, relevances):
        """Pass rule at a weightless layer: one input of the output's shape."""
        if len(inputs) != 1 or len(relevances) != 1:
            raise ValueError(
                f"PassRule cannot be used at layer {getattr(layer, 'name', layer)!r}: it has "
                f"{len(inputs)} inputs and {len(relevances)} outputs; it needs one of each."
            )
        _check_same_shape(layer, inputs[0].shape, relevances[0].shape)
        return [relevances[0]]

    def __repr__(self):
        return "PassRule()"
