"""The propagation engine: walk a model once, replay it on real tensors, walk relevance back.

Every analyzer, the ISNet heatmaps and the conservation report run on one :class:`Engine`.
It owns the three stages of the runtime core and exposes them as a small public surface:

1. **Walk** (built once, in the constructor): the model's graph as a flat list of
   :class:`~keras_isnet.graph.Step` (:attr:`Engine.steps`), the explained tensor
   (:attr:`Engine.head_key`: the chosen output, with a final softmax or sigmoid stripped), the
   steps that reach it (:attr:`Engine.active`), which tensors are non-negative by
   construction (:attr:`Engine.nonnegative`), and the weight overrides of the canonizers
   (:attr:`Engine.canonization`, e.g. BatchNorm folding).
2. **Replay** (:meth:`Engine.replay`): the forward pass on real tensors, recording each
   layer call's inputs, outputs and pullback.
3. **Backward walk** (:meth:`Engine.backward`): relevance from seeds at the head back to the
   inputs, one handler per step. Handlers come from whoever uses the engine (an LRP
   composite, the gradient analyzers, ...): :meth:`Engine.handlers` asks a function for one
   per active step.

Example:
    >>> engine = Engine(model)
    >>> handlers = engine.handlers(lambda step: lambda record, Rs: record.pullback(Rs))
    >>> values, records = engine.replay([x])
    >>> relevance = engine.backward(records, {engine.head_key: values[engine.head_key]}, handlers)
    >>> gradient = engine.input_relevances(relevance, [x])[0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops, tree
from keras.src.utils import naming

from keras_isnet import backend
from keras_isnet.graph import Step, walk
from keras_isnet.layers import ElementwiseLayer, KernelLayer, lookup
from keras_isnet.layers.base import activation_name
from keras_isnet.propagation import Record, backward, forward

#: final activations that ``strip_softmax`` removes from the explained output.
SQUASHING = ("softmax", "sigmoid")

#: a backward handler: ``handler(record, output_relevances) -> input_relevances``.
Handler = Callable[[Record, list], list]


class UnsupportedLayerError(TypeError):
    """An analyzer met a layer type it has no reverse rule for."""


class Engine:
    """The walked graph of one model and the replay/backward passes over it.

    Args:
        model: a built Keras functional or Sequential model (nested models are walked into).
        output_index: for models with several outputs, the index or name of the output to
            explain (required there); default None.
        strip_softmax: if True (default), a final softmax or sigmoid (a separate layer or the
            ``activation=`` of the last Dense/conv layer) is removed: the head is the logits.
        canonizers: objects with ``apply(engine) -> plan or None`` (see
            :class:`keras_isnet.canonizers.BatchNormFold`); the plan they return overrides
            weights in the replay, unless its ``changes_nothing`` is true. At most one may
            return a plan that changes something. Default: none.
        compute_dtype: None (the model's dtype) or ``"float64"``: the replay computes in this
            dtype (see :func:`keras_isnet.propagation.forward`).

    Attributes:
        steps: the walked graph, in topological order.
        input_keys, output_keys: the tensor keys of the model's inputs and outputs.
        output_key: the key of the explained output; ``head_key`` the explained tensor (the
            output, or the input of a stripped softmax); ``head_step`` the step producing it
            (None when it is a model input).
        producer: tensor key -> the step producing it.
        active: indices of the steps on a path from the inputs to the head.
        linear_steps: indices of kernel steps replayed without their activation (a stripped
            final softmax that was the ``activation=`` of the last layer).
        nonnegative: tensor key -> whether the tensor is >= 0 by construction.
        canonization: the weight-override plan of the canonizers, or None when no
            canonizer changes anything.
        canonizer_plans: each canonizer's plan, in order (kept even when it changes
            nothing: the conservation report reads why a BN was not folded).
    """

    def __init__(
        self,
        model,
        *,
        output_index: int | str | None = None,
        strip_softmax: bool = True,
        canonizers: Sequence = (),
        compute_dtype: str | None = None,
    ):
        if compute_dtype not in (None, "float32", "float64"):
            raise ValueError(
                f"compute_dtype must be None, 'float32' or 'float64', got {compute_dtype!r}."
            )
        if compute_dtype == "float64" and not backend.supports_float64():
            raise ValueError(
                "compute_dtype='float64' needs float64 on the JAX backend: set "
                "JAX_ENABLE_X64=1 (or jax.config.update('jax_enable_x64', True)) before any "
                "JAX array is created; without it JAX computes in float32 silently."
            )
        self.model = model
        self.compute_dtype = compute_dtype
        self.steps, self.input_keys, output_keys = walk(model)
        self.output_keys = list(output_keys)
        self.output_key = self._choose_output(output_index)
        self.producer = {k: step for step in self.steps for k in step.outputs}
        self.head_key, self.linear_steps = self._find_head(strip_softmax)
        self.head_step = self.producer.get(self.head_key)
        self.active = self.steps_reaching(self.head_key)
        self.nonnegative = self._infer_nonnegative()
        self.canonizer_plans = [canonizer.apply(self) for canonizer in canonizers]
        plans = [
            plan
            for plan in self.canonizer_plans
            if plan is not None and not getattr(plan, "changes_nothing", False)
        ]
        if len(plans) > 1:
            raise ValueError(
                "Only one canonizer may override weights in the replay; got plans from "
                f"{[type(c).__name__ for c in canonizers]}."
            )
        self.canonization = plans[0] if plans else None

    # --------------------------------------------------------------------------- walk
    def _choose_output(self, output_index):
        keys, model = self.output_keys, self.model
        if output_index is None:
            if len(keys) > 1:
                names = [t.name for t in model.outputs]
                raise ValueError(
                    f"Model {model.name!r} has {len(keys)} outputs {names}; choose the one to "
                    "explain with output_index=<position or name>."
                )
            return keys[0]
        if isinstance(output_index, str):
            names = [t.name for t in model.outputs]
            layer_names = [t._keras_history[0].name for t in model.outputs]
            for i, (n, ln) in enumerate(zip(names, layer_names, strict=True)):
                if output_index in (n, ln):
                    return keys[i]
            raise ValueError(
                f"output_index={output_index!r} names no output of model {model.name!r}; "
                f"its outputs are {layer_names}."
            )
        if not -len(keys) <= output_index < len(keys):
            raise ValueError(
                f"output_index={output_index} is out of range: model {model.name!r} has "
                f"{len(keys)} outputs."
            )
        return keys[output_index]

    def _find_head(self, strip: bool):
        """The key of the explained tensor and the kernel steps to run without activation."""
        key = self.output_key
        step = self.producer.get(key)
        if not strip or step is None:
            return key, frozenset()
        spec = lookup(step.layer)
        if isinstance(spec, ElementwiseLayer) and len(step.inputs) == 1:
            layer = step.layer
            if type(layer).__name__ == "Softmax" or activation_name(layer) in SQUASHING:
                return step.inputs[0], frozenset()
        elif isinstance(spec, KernelLayer) and activation_name(step.layer) in SQUASHING:
            return key, frozenset([step.index])
        return key, frozenset()

    def steps_reaching(self, key) -> set[int]:
        """Indices of the steps on a path from the inputs to tensor ``key``."""
        needed = {key}
        active = set()
        for step in reversed(self.steps):
            if any(k in needed for k in step.outputs):
                active.add(step.index)
                needed.update(step.inputs)
        return active

    def _infer_nonnegative(self) -> dict:
        """Which tensors are >= 0 by construction (outputs of ReLUs and what routes them)."""
        nonneg = {k: False for k in self.input_keys}
        for step in self.steps:
            spec = lookup(step.layer)
            inputs_nonneg = all(nonneg.get(k, False) for k in step.inputs)
            if spec is None or step.index in self.linear_steps:
                value = False
            else:
                value = spec.output_nonnegative(step.layer, inputs_nonneg)
            for k in step.outputs:
                nonneg[k] = value
        return nonneg

    def handlers(self, choose: Callable[[Step], Handler]) -> dict[int, Handler]:
        """``{step index: choose(step)}`` for every active step (what :meth:`backward` takes)."""
        return {step.index: choose(step) for step in self.steps if step.index in self.active}

    def unsupported(self, step: Step, why: str = "", who: str = "") -> UnsupportedLayerError:
        """The error for a layer call that relevance cannot cross, saying how to fix it."""
        layer = step.layer
        name = type(layer).__name__
        who = who or "The analyzer"
        why = f": {why}" if why else ""
        examples = (
            "e.g. rule='pass' for an element-wise map or 'routing' for one that only moves values"
        )
        if not isinstance(layer, keras.layers.Layer):  # a keras.ops node
            module = type(layer).__module__
            function = naming.to_snake_case(name)
            return UnsupportedLayerError(
                f"{who} cannot propagate relevance through operation {step.path!r} of class "
                f"{module}.{name} (keras.ops.{function}){why}. Tell keras-isnet how relevance "
                f"crosses it with: from {module} import {name}; "
                f"keras_isnet.register_reverse_rule({name}, rule), {examples}."
            )
        if name == "Lambda":
            return UnsupportedLayerError(
                f"{who} cannot propagate relevance through Lambda layer {step.path!r}{why}: "
                "its function is Python code keras-isnet cannot read. Tell keras-isnet how "
                f"relevance crosses it with keras_isnet.register_reverse_rule({layer.name!r}, "
                "rule) (by the layer's name) or register_reverse_rule(function, rule) (every "
                f"Lambda of that function), {examples}."
            )
        inside = ""
        if any(True for _ in layer._flatten_layers(include_self=False, recursive=False)):
            inside = (
                " If its call() only runs its sublayers and keras.ops, "
                f"keras_isnet.register_layer_graph({name}) makes the walk go inside it instead."
            )
        return UnsupportedLayerError(
            f"{who} cannot propagate relevance through layer {step.path!r} "
            f"of class {name}{why}. Tell keras-isnet how relevance "
            f"crosses it with keras_isnet.register_reverse_rule({name}, rule), {examples}."
            f"{inside}"
        )

    # ------------------------------------------------------------------------- shapes
    def head_shape(self) -> tuple:
        """The explained tensor's static shape without the batch axis (may hold None)."""
        if self.head_step is None:  # the head is a model input
            return tuple(self.model.inputs[self.input_keys.index(self.head_key)].shape[1:])
        position = self.head_step.outputs.index(self.head_key)
        return tuple(self.head_step.node.outputs[position].shape[1:])

    def concrete_head_shape(self, inputs) -> tuple:
        """The explained tensor's shape without batch axis for these inputs (fully
        convolutional models have ``None`` spatial sizes in their static shape)."""
        shape = self.head_shape()
        if all(s is not None for s in shape):
            return shape
        specs = [
            keras.KerasTensor((None, *tuple(v.shape)[1:]), dtype=t.dtype)
            for v, t in zip(inputs, self.model.inputs, strict=True)
        ]
        outs = tree.flatten(self.model.compute_output_spec(specs if len(specs) > 1 else specs[0]))
        out_shape = tuple(outs[self.output_keys.index(self.output_key)].shape[1:])
        if any(s is None for s in out_shape) or len(out_shape) != len(shape):
            raise ValueError(
                f"Cannot tell the shape of the explained output of {self.model.name!r} (static "
                f"shape {shape}) for inputs of shape {[tuple(v.shape) for v in inputs]}."
            )
        return out_shape

    # ------------------------------------------------------------------------ passes
    def replay(self, inputs, *, training: bool = False, canonization=None):
        """The forward replay: ``(values by tensor key, records)``.

        Args:
            inputs: one tensor per model input.
            training: passed to layers with a ``training`` argument.
            canonization: a weight-override plan used instead of :attr:`canonization` (the
                ISNet folds BatchNorm with batch statistics in training).
        """
        return forward(
            self.steps,
            self.input_keys,
            list(inputs),
            training=training,
            nonnegative=self.nonnegative,
            linear_steps=self.linear_steps,
            canonization=self.canonization if canonization is None else canonization,
            compute_dtype=self.compute_dtype,
        )

    def backward(self, records, seeds: dict, handlers: dict, *, keep: dict | None = None):
        """Relevance of every tensor reached from ``seeds`` (see
        :func:`keras_isnet.propagation.backward`)."""
        return backward(records, seeds, handlers, keep=keep)

    def input_relevances(self, relevance: dict, inputs) -> list:
        """One relevance per model input from a :meth:`backward` result (zeros where none
        arrived; float32 for integer inputs)."""
        out = []
        for k, x in zip(self.input_keys, inputs, strict=True):
            r = relevance.get(k)
            dtype = x.dtype if "float" in str(x.dtype) else "float32"
            out.append(ops.zeros(ops.shape(x), dtype) if r is None else r)
        return out


def pullback_handler(record: Record, relevances: list) -> list:
    """The handler that propagates along the gradient (the call's pullback)."""
    return record.pullback(relevances)


__all__ = ["Engine", "Handler", "UnsupportedLayerError", "pullback_handler"]
