"""Merge layers.

Add, Subtract and Average are weightless linear maps: LRP splits relevance between the
branches in proportion to their contributions, ``R_k = x_k / sum(x) * R`` (z-rule).
Concatenate routes each slice of relevance back to the input it came from.

Multiply is treated as gating (squeeze-and-excitation blocks, attention maps): the input that
has the output's full shape is the signal and receives all the relevance, the broadcast
inputs are gates and receive none (the "signal-take-all" rule of Arras et al., 2017, for
LSTM gates). This conserves relevance. When several inputs have the full shape (a 1 x 1
feature map), an input computed by a sigmoid (possibly reshaped) is the gate; otherwise the
layer is refused and a rule must be registered for it.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import (
    CustomLayer,
    RoutingLayer,
    WeightlessLinearLayer,
    activation_name,
)
from keras_isnet.layers.registry import register_reverse_rule

_GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")


def _is_gate(tensor, depth=3) -> bool:
    """Whether a symbolic tensor comes from a sigmoid, possibly through reshapes."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or depth == 0:
        return False
    layer = history.operation
    if activation_name(layer) in _GATE_ACTIVATIONS:
        return True
    if isinstance(layer, (keras.layers.Reshape, keras.layers.Flatten, keras.layers.Permute)):
        node = layer._inbound_nodes[history.node_index]
        return _is_gate(node.input_tensors[0], depth - 1)
    return False


def _signal_takes_all(layer, inputs, outputs, relevances):
    """Multiply as a gate: all relevance to the one input with the output's shape (or, when
    several have it, to the one that does not come from a sigmoid)."""
    shape = tuple(outputs[0].shape[1:])
    full = [i for i, x in enumerate(inputs) if tuple(x.shape[1:]) == shape]
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(full) > 1 and len(nodes) == 1 and len(nodes[0].input_tensors) == len(inputs):
        symbolic = nodes[0].input_tensors
        full = [i for i in full if not _is_gate(symbolic[i])]
    if len(full) != 1:
        raise ValueError(
            f"Layer {layer.name!r} (Multiply): cannot tell the signal from the gate, since "
            f"{len(full)} of its inputs have the output's shape {shape} and are not sigmoid "
            "outputs (a gate is recognised by being broadcast, like the (1, 1, C) weights of "
            "a squeeze-and-excitation block, or by coming from a sigmoid). Register a rule, "
            "e.g. ki.register_reverse_rule(keras.layers.Multiply, lambda layer, inputs, "
            "outputs, R: [R[0], None])."
        )
    return [relevances[0] if i == full[0] else None for i in range(len(inputs))]


for _cls in (keras.layers.Add, keras.layers.Average):
    register_reverse_rule(_cls, WeightlessLinearLayer())
register_reverse_rule(keras.layers.Subtract, WeightlessLinearLayer(preserves_sign=False))

register_reverse_rule(keras.layers.Concatenate, RoutingLayer())
register_reverse_rule(
    keras.layers.Multiply, CustomLayer(_signal_takes_all, label="gate: signal takes all", causes=())
)
