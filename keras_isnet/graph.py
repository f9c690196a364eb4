"""Walk a Keras 3 model into a flat, topologically ordered list of layer calls.

Nested models (functional or Sequential, called as a layer) are walked into: their layers
become steps of the flat list, so every analyzer sees every layer. So are subclassed layers
registered with :func:`keras_isnet.register_layer_graph` (``layer_graphs.py``): the walk
follows the functional graph of the sublayers and ops their call runs. A layer shared by several
nodes appears once per call. The walk never modifies the model.

Example:
    >>> steps, inputs, outputs = walk(model)
    >>> [step.layer.name for step in steps]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import keras
from keras import tree

from keras_isnet.layer_graphs import layer_graph, layer_graph_builder


class ModelWalkError(TypeError):
    """The model's graph cannot be walked (subclassed model, unbuilt Sequential, ...)."""


@dataclass
class Step:
    """One call of one layer in the flattened graph.

    Attributes:
        layer: the Keras layer (or operation) that is called.
        node: the Keras ``Node`` recording the call's symbolic arguments.
        inputs: integer keys of the tensors the call reads, in the order of
            ``node.input_tensors``.
        outputs: integer keys of the tensors the call produces.
        path: the layer's name, prefixed by the names of the nested models it sits in
            (``"encoder/conv1"``).
        index: position in the walk.
    """

    layer: object
    node: object
    inputs: list[int]
    outputs: list[int]
    path: str
    index: int = 0
    _symbolic_ids: list[int] = field(default_factory=list, repr=False)

    def call_arguments(self, values: dict) -> tuple[tuple, dict]:
        """The call's positional and keyword arguments, with tensors taken from ``values``."""
        tensor_dict = {
            sid: values[key] for sid, key in zip(self._symbolic_ids, self.inputs, strict=True)
        }
        return self.node.arguments.fill_in(tensor_dict)


def as_functional(model, path: str):
    """The functional graph behind ``model``, or a ModelWalkError saying how to get one."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ModelWalkError(
                f"Sequential model {path or model.name!r} has no graph yet because it was "
                "created without an input shape. Start it with keras.Input(shape=...) or call "
                "model.build(input_shape) before creating an analyzer."
            )
        return functional
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_inputs"):
        return model
    raise ModelWalkError(
        f"Model {path or model.name!r} of class {type(model).__name__} is a subclassed model: "
        "its call() is Python code whose layer graph Keras does not record, so relevance "
        "cannot be propagated layer by layer. Rebuild it with the functional API "
        "(inputs = keras.Input(...); outputs = ...; keras.Model(inputs, outputs)) or as a "
        "keras.Sequential, reusing the same layers so that the weights are shared."
    )


def is_model(layer) -> bool:
    """True for a Keras model used as a layer (functional, Sequential or subclassed)."""
    return isinstance(layer, keras.Model)


def walk(model) -> tuple[list[Step], list[int], list[int]]:
    """Flatten ``model`` into steps.

    Args:
        model: a built Keras functional or Sequential model.

    Returns:
        ``(steps, input_keys, output_keys)``: the steps in an order in which every step's
        inputs are produced before it runs, and the keys of the model's input and output
        tensors (flattened, in Keras' order).

    Raises:
        ModelWalkError: for subclassed models and Sequential models without an input shape.
    """
    counter = itertools.count()
    steps: list[Step] = []
    functional = as_functional(model, "")
    input_keys = [next(counter) for _ in functional.inputs]
    output_keys = _walk(functional, "", input_keys, steps, counter)
    for i, step in enumerate(steps):
        step.index = i
    return steps, input_keys, output_keys


def _walk(functional, prefix: str, input_keys, steps, counter) -> list[int]:
    env = {id(t): k for t, k in zip(functional.inputs, input_keys, strict=True)}
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if any(id(t) not in env for t in node.input_tensors):
                continue  # not reachable from the model's inputs (Keras skips these too)
            layer = node.operation
            path = f"{prefix}{layer.name}"
            if is_model(layer):
                inner = as_functional(layer, path)
                args, _ = node.arguments.fill_in({sid: _Key(k) for sid, k in env.items()})
                inner_inputs = [k.key for k in tree.flatten(args[0] if args else [])]
                if len(inner_inputs) != len(inner.inputs):
                    raise ModelWalkError(
                        f"Nested model {path!r} is called with {len(inner_inputs)} tensors "
                        f"but has {len(inner.inputs)} inputs; pass all its inputs as the first "
                        "positional argument."
                    )
                out_keys = _walk(inner, f"{path}/", inner_inputs, steps, counter)
                for t, k in zip(node.outputs, out_keys, strict=True):
                    env[id(t)] = k
                continue
            in_keys = [env[id(t)] for t in node.input_tensors]
            if layer_graph_builder(layer) is not None:
                out_keys = _walk(layer_graph(layer, node), f"{path}/", in_keys, steps, counter)
                for t, k in zip(node.outputs, out_keys, strict=True):
                    env[id(t)] = k
                continue
            out_keys = [next(counter) for _ in node.outputs]
            steps.append(
                Step(
                    layer=layer,
                    node=node,
                    inputs=in_keys,
                    outputs=out_keys,
                    path=path,
                    _symbolic_ids=[id(t) for t in node.input_tensors],
                )
            )
            for t, k in zip(node.outputs, out_keys, strict=True):
                env[id(t)] = k
    return [env[id(t)] for t in functional.outputs]


class _Key:
    """A tensor key wrapped so that ``tree.flatten`` treats it as a leaf."""

    __slots__ = ("key",)

    def __init__(self, key: int):
        self.key = key
