"""iNNvestigate's ``model_wo_softmax``: the model without its final softmax.

The analyzers strip a final softmax (or sigmoid) themselves (``strip_softmax=True``), so this
is only needed where code written for iNNvestigate calls it, or to get the logits model.

Example:
    >>> logits_model = ki.model_wo_softmax(model)
    >>> ki.create_analyzer("lrp.epsilon", logits_model).analyze(x)  # same as on `model`
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import activation_name

__all__ = ["model_wo_output_activation", "model_wo_softmax"]


def model_wo_softmax(model):
    """``model`` without its final softmax (iNNvestigate's ``model_wo_softmax``).

    See :func:`model_wo_output_activation`, with ``activation="softmax"``.
    """
    return model_wo_output_activation(model, "softmax")


def model_wo_output_activation(model, activation: str = "softmax"):
    """A model that computes ``model``'s outputs without their final ``activation``.

    For each output: if it comes from an ``Activation(activation)`` layer (or a ``Softmax``
    layer, for ``"softmax"``), the new output is that layer's input; if it comes from a layer
    with the activation built in (``Dense(10, activation="softmax")``, a convolution), the new
    output is a copy of that layer with a linear activation and the same weights, called on
    the same input. All other layers are shared with ``model`` (same weight variables).

    Args:
        model: a built functional or Sequential Keras model.
        activation: the name of the final activation to remove (default ``"softmax"``).

    Returns:
        A functional ``keras.Model`` with ``model``'s inputs, named ``<model>_wo_<activation>``.

    Raises:
        ValueError: if an output does not end in ``activation`` (the message names the layer)
            or the model has no graph (a subclassed model).
    """
    if not getattr(model, "outputs", None):
        raise ValueError(
            f"model_wo_output_activation needs a functional or Sequential model with a graph; "
            f"{type(model).__name__} {model.name!r} has none (build it on keras.Input first)."
        )
    outputs = []
    for i, output in enumerate(model.outputs):
        layer, node_index, _ = output._keras_history
        inputs = layer._inbound_nodes[node_index].input_tensors
        if _is_activation_layer(layer, activation):
            outputs.append(inputs[0])
        elif activation_name(layer) == activation:
            config = dict(layer.get_config(), activation="linear")
            config["name"] = f"{layer.name}_wo_{activation}"
            copy = type(layer).from_config(config)
            outputs.append(copy(inputs[0]))
            copy.set_weights(layer.get_weights())
        else:
            raise ValueError(
                f"Output {i} of model {model.name!r} comes from layer {layer.name!r} "
                f"({type(layer).__name__}, activation {activation_name(layer) or 'none'!r}), "
                f"not from a {activation!r} activation; there is nothing to remove."
            )
    inputs = model.inputs
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],  # called with a tensor, like `model`
        outputs if len(outputs) > 1 else outputs[0],
        name=f"{model.name}_wo_{activation}",
    )


def _is_activation_layer(layer, activation) -> bool:
    if activation == "softmax" and isinstance(layer, keras.layers.Softmax):
        return True
    return isinstance(layer, keras.layers.Activation) and activation_name(layer) == activation
