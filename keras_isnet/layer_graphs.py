"""Subclassed layers walked as the functional graph of the layers and ops they call.

A subclassed Keras layer whose ``call`` only runs sublayers and ``keras.ops`` (keras-hub's
encoder blocks, a user's ``TransformerBlock``) is one opaque node in a functional model: the
walk cannot see the sublayers inside it, and the analyzers raise the unsupported-layer error.
:func:`register_layer_graph` tells the walk to look inside: it calls the layer's ``call`` (or
a function you give) on symbolic inputs, which records the sublayer calls and ops as a
functional graph, and walks that graph in the layer's place, as it walks a nested model. The
sublayers are the layer's own, so the weights are shared and an ISNet trains the layer.

Example:
    >>> class Block(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.norm = keras.layers.LayerNormalization()
    ...         self.dense = keras.layers.Dense(shape[-1])
    ...     def call(self, x):
    ...         return x + self.dense(self.norm(x))
    >>> ki.register_layer_graph(Block)   # the walk now sees LayerNormalization, Dense, add
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras

#: ``{layer class or "module.QualName": build(layer, *args, **kwargs) -> outputs}``
_REGISTRY: dict[type | str, Callable] = {}
#: the graph built for each layer, by the symbolic shapes and dtypes of its call
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _call(layer, *args, **kwargs):
    return layer.call(*args, **kwargs)


def register_layer_graph(layer_class: type | str, build: Callable | None = None) -> None:
    """Walk layers of ``layer_class`` as the functional graph of what they call.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass, or its dotted name
            ``"package.module.ClassName"`` (registers a class of an optional package
            without importing it). Subclasses use the same registration unless they are
            registered themselves.
        build: ``build(layer, *args, **kwargs) -> outputs``, called once per layer and input
            signature on symbolic ``keras.Input`` tensors in place of the call's tensors; it
            must compute the layer's output from Keras layers (the layer's own sublayers, so
            that the weights are shared) and ``keras.ops``. Default: ``layer.call``. Give one
            when ``call`` does what a functional graph cannot record, e.g. reads
            ``ops.shape(x)[0]`` to tile a weight over the batch.

    Raises:
        TypeError: if ``layer_class`` is neither a class nor a dotted name, or ``build`` is
            not callable.

    Example:
        >>> ki.register_layer_graph(MyEncoderBlock)
        >>> ki.create_analyzer("lrp.cp_lrp", model).analyze(x)   # walks into every block
    """
    if not (isinstance(layer_class, type) or (isinstance(layer_class, str) and "." in layer_class)):
        raise TypeError(
            "register_layer_graph expects a layer class or its dotted name "
            f"('package.module.ClassName'); got {layer_class!r}."
        )
    if build is not None and not callable(build):
        raise TypeError(
            f"register_layer_graph(build=...) must be a function build(layer, *args) -> "
            f"outputs; got {build!r}."
        )
    _REGISTRY[layer_class] = build or _call


def layer_graph_builder(layer) -> Callable | None:
    """The ``build`` registered for ``layer``'s class or its nearest registered base, or None."""
    if isinstance(layer, keras.Model):
        return None
    for cls in type(layer).__mro__:
        for key in (cls, f"{cls.__module__}.{cls.__qualname__}"):
            build = _REGISTRY.get(key)
            if build is not None:
                return build
    return None


def layer_graph(layer, node) -> keras.Model:
    """The functional model of ``layer``'s call recorded by ``node`` (built once per signature).

    Args:
        layer: a layer whose class was given to :func:`register_layer_graph`.
        node: the Keras node of one call of ``layer`` in the model.

    Returns:
        A functional ``keras.Model`` whose inputs are the call's tensors, in the order of
        ``node.input_tensors``, and whose outputs are the call's outputs.

    Raises:
        ValueError: if the graph's outputs do not match the call's (the build function
            computed something else).
    """
    build = layer_graph_builder(layer)
    signature = tuple((tuple(t.shape), str(t.dtype)) for t in node.input_tensors)
    graphs = _GRAPHS.setdefault(layer, {})
    if signature in graphs:
        return graphs[signature]
    inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=f"{layer.name}_input{i}")
        for i, t in enumerate(node.input_tensors)
    ]
    args, kwargs = node.arguments.fill_in(
        {id(t): x for t, x in zip(node.input_tensors, inputs, strict=True)}
    )
    outputs = build(layer, *args, **kwargs)
    flat = keras.tree.flatten(outputs)
    expected = [tuple(t.shape) for t in node.outputs]
    if [tuple(t.shape) for t in flat] != expected:
        raise ValueError(
            f"The layer graph of {layer.name!r} ({type(layer).__name__}) has outputs of shapes "
            f"{[tuple(t.shape) for t in flat]}, but the layer's call returns {expected}: its "
            "build function must compute the layer's outputs from the call's inputs."
        )
    graph = keras.Model(inputs, outputs, name=f"{layer.name}_graph")
    graphs[signature] = graph
    return graph


__all__ = ["layer_graph", "layer_graph_builder", "register_layer_graph"]
