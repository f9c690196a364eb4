"""The analyzer base class: model checks, output choice, neuron selection, batching.

An analyzer is built once per model. It walks the model's graph, picks the explained output
(stripping a final softmax or sigmoid), chooses a backward handler for every layer call, and
then explains inputs either as NumPy arrays (:meth:`Analyzer.analyze`) or as tensors inside
a larger computation (:meth:`Analyzer.relevance`, differentiable with respect to the
model's weights).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_isnet.backend import compile_function
from keras_isnet.graph import walk
from keras_isnet.layers import ElementwiseLayer, KernelLayer, lookup
from keras_isnet.layers.activation import NONNEGATIVE_ACTIVATIONS
from keras_isnet.propagation import backward, forward
from keras_isnet.selection import check_mode, normalize_selection, selection_weights

_SQUASHING = ("softmax", "sigmoid")


class UnsupportedLayerError(TypeError):
    """An analyzer met a layer type it has no reverse rule for."""


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


class Analyzer:
    """Base class of every analyzer.

    Args:
        model: a built Keras functional or Sequential model (nested models are walked into).
        neuron_selection_mode: ``"max_activation"`` (default: per sample, the largest output),
            ``"index"`` (pass ``neuron_selection`` to :meth:`analyze`) or ``"all"``.
        output_index: for models with several outputs, the index or name of the output to
            explain (required there).
        strip_softmax: if True (default), a final softmax or sigmoid, as a separate layer or
            as the ``activation=`` of the last Dense/Conv layer, is removed and relevance
            starts at the logits, as in iNNvestigate. False explains the probabilities.
    """

    #: the name under which :func:`keras_isnet.create_analyzer` knows the analyzer.
    name = ""

    def __init__(
        self,
        model,
        neuron_selection_mode: str = "max_activation",
        *,
        output_index: int | str | None = None,
        strip_softmax: bool = True,
    ):
        if not getattr(model, "built", False) or not getattr(model, "inputs", None):
            raise ValueError(
                f"Model {getattr(model, 'name', model)!r} is not built: create it with "
                "keras.Input(...) or call model.build(input_shape) first."
            )
        self.model = model
        self.neuron_selection_mode = check_mode(neuron_selection_mode)
        self.strip_softmax = strip_softmax
        self._steps, self._input_keys, output_keys = walk(model)
        self._output_key = self._choose_output(output_keys, output_index)
        self._producer = {k: step for step in self._steps for k in step.outputs}
        self._head_key, self._linear_steps = self._find_head(strip_softmax)
        self._active = self._steps_reaching(self._head_key)
        self._nonnegative = self._infer_nonnegative()
        self._handlers = {}
        for step in self._steps:
            if step.index in self._active:
                self._handlers[step.index] = self._handler(step)
        self._compiled = None

    # ----------------------------------------------------------------------------- graph
    def _choose_output(self, output_keys, output_index):
        if output_index is None:
            if len(output_keys) > 1:
                names = [t.name for t in self.model.outputs]
                raise ValueError(
                    f"Model {self.model.name!r} has {len(output_keys)} outputs {names}; choose "
                    "the one to explain with output_index=<position or name>."
                )
            return output_keys[0]
        if isinstance(output_index, str):
            names = [t.name for t in self.model.outputs]
            layer_names = [t._keras_history[0].name for t in self.model.outputs]
            for i, (n, ln) in enumerate(zip(names, layer_names, strict=True)):
                if output_index in (n, ln):
                    return output_keys[i]
            raise ValueError(
                f"output_index={output_index!r} names no output of model {self.model.name!r}; "
                f"its outputs are {layer_names}."
            )
        if not -len(output_keys) <= output_index < len(output_keys):
            raise ValueError(
                f"output_index={output_index} is out of range: model {self.model.name!r} has "
                f"{len(output_keys)} outputs."
            )
        return output_keys[output_index]

    def _find_head(self, strip):
        """The key of the explained tensor and the kernel steps to run without activation."""
        key = self._output_key
        if not strip:
            return key, frozenset()
        step = self._producer.get(key)
        while step is not None:
            spec = lookup(step.layer)
            layer = step.layer
            if isinstance(spec, ElementwiseLayer) and len(step.inputs) == 1:
                is_squash = type(layer).__name__ == "Softmax" or _activation_name(layer) in (
                    _SQUASHING
                )
                if is_squash:
                    return step.inputs[0], frozenset()
                return key, frozenset()
            if isinstance(spec, KernelLayer) and _activation_name(layer) in _SQUASHING:
                return key, frozenset([step.index])
            return key, frozenset()
        return key, frozenset()

    def _steps_reaching(self, key) -> set[int]:
        """Indices of the steps on a path from the inputs to ``key``."""
        needed = {key}
        active = set()
        for step in reversed(self._steps):
            if any(k in needed for k in step.outputs):
                active.add(step.index)
                needed.update(step.inputs)
        return active

    def _infer_nonnegative(self) -> dict:
        """Which tensors are >= 0 by construction (outputs of ReLUs and what routes them)."""
        nonneg = {k: False for k in self._input_keys}
        for step in self._steps:
            spec = lookup(step.layer)
            inputs_nonneg = all(nonneg.get(k, False) for k in step.inputs)
            value = False
            if isinstance(spec, KernelLayer):
                value = (
                    step.index not in self._linear_steps
                    and _activation_name(step.layer) in NONNEGATIVE_ACTIVATIONS
                )
            elif spec is not None:
                value = spec.output_nonnegative(step.layer, inputs_nonneg)
            for k in step.outputs:
                nonneg[k] = value
        return nonneg

    def _handler(self, step):
        """The backward handler of ``step``: ``handler(record, R_out) -> R_in``."""
        raise NotImplementedError

    def _unsupported(self, step, why: str = ""):
        layer = step.layer
        return UnsupportedLayerError(
            f"{type(self).__name__} cannot propagate relevance through layer {step.path!r} "
            f"of class {type(layer).__name__}{': ' + why if why else ''}. Tell keras-isnet how "
            f"relevance crosses it with keras_isnet.register_reverse_rule({type(layer).__name__}"
            ", rule), e.g. rule='pass' for an element-wise layer or 'routing' for a layer that "
            "only moves values."
        )

    # ------------------------------------------------------------------------ computation
    def _seed(self, head, weights):
        """The relevance of the explained output (LRP: ``head * weights``)."""
        return ops.multiply(head, weights)

    def _finalize(self, inputs, relevances):
        """Turn input-tensor relevances into the analysis (identity by default)."""
        return relevances

    def _propagate(self, inputs, weights_fn, *, training=False, keep=None):
        """One forward replay and backward walk. ``weights_fn(head) -> weights``."""
        values, records = forward(
            self._steps,
            self._input_keys,
            inputs,
            training=training,
            nonnegative=self._nonnegative,
            linear_steps=self._linear_steps,
        )
        head = values[self._head_key]
        seed = self._seed(head, weights_fn(head))
        relevance = backward(records, {self._head_key: seed}, self._handlers, keep=keep)
        out = []
        for k, x in zip(self._input_keys, inputs, strict=True):
            r = relevance.get(k)
            out.append(ops.zeros(ops.shape(x), "float32") if r is None else r)
        return out

    def _explain(self, inputs, selection, *, training=False, keep=None):
        """The analysis of ``inputs`` as a list of tensors (one per model input)."""
        mode = self.neuron_selection_mode

        def weights_fn(head):
            return selection_weights(head, mode, selection)

        out = self._propagate(inputs, weights_fn, training=training, keep=keep)
        return self._finalize(inputs, out)

    def _as_tensors(self, x):
        xs = x if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self._input_keys):
            raise ValueError(
                f"Model {self.model.name!r} has {len(self._input_keys)} inputs but "
                f"{len(xs)} arrays were given; pass a list with one array per input."
            )
        return [
            ops.convert_to_tensor(v, dtype=t.dtype)
            for v, t in zip(xs, self.model.inputs, strict=True)
        ]

    def relevance(self, x, neuron_selection=None, *, training: bool = False):
        """The analysis as tensors, for use inside a larger (differentiable) computation.

        Runs eagerly or inside ``tf.function``; under a ``tf.GradientTape`` watching the
        model's weights, the result is differentiable with respect to them (the ISNet trains
        on it).

        Args:
            x: a tensor ``(batch, *input_shape)``, or a list of tensors for multi-input models.
            neuron_selection: for mode ``"index"``, see :mod:`keras_isnet.selection`.
            training: passed to layers with a ``training`` argument (Dropout, BatchNorm).

        Returns:
            A tensor shaped like ``x`` (a list for multi-input models). NaN values in ``x``
            propagate into the result; :meth:`analyze` rejects them.
        """
        inputs = self._as_tensors(x)
        selection = self._prepare_selection(neuron_selection, inputs)
        out = self._explain(inputs, selection, training=training)
        return out if len(out) > 1 else out[0]

    def _prepare_selection(self, neuron_selection, inputs):
        if self.neuron_selection_mode != "index":
            if neuron_selection is not None:
                raise ValueError(
                    f"neuron_selection was given but neuron_selection_mode is "
                    f"{self.neuron_selection_mode!r}; create the analyzer with "
                    "neuron_selection_mode='index' to choose the explained neuron."
                )
            return None
        if hasattr(neuron_selection, "dtype") and not isinstance(neuron_selection, np.ndarray):
            return neuron_selection  # already a tensor
        out_shape = tuple(self._head_shape())
        batch = int(ops.shape(inputs[0])[0])
        return normalize_selection(neuron_selection, out_shape, batch)

    def _head_shape(self):
        step = self._producer.get(self._head_key)
        if step is None:  # the head is a model input
            i = self._input_keys.index(self._head_key)
            return self.model.inputs[i].shape[1:]
        position = step.outputs.index(self._head_key)
        return step.node.outputs[position].shape[1:]

    # ----------------------------------------------------------------------------- numpy
    def _check_arrays(self, xs):
        for i, (v, t) in enumerate(zip(xs, self.model.inputs, strict=True)):
            expected = tuple(t.shape)
            if v.ndim != len(expected) or any(
                e is not None and e != s for e, s in zip(expected[1:], v.shape[1:], strict=True)
            ):
                raise ValueError(
                    f"Input {i} ({t.name!r}) of model {self.model.name!r} expects shape "
                    f"{expected} (None = any size), got an array of shape {v.shape}."
                )
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                bad = ~np.isfinite(v.reshape(len(v), -1)).all(axis=1)
                raise ValueError(
                    f"Input {i} contains NaN or infinite values in {int(bad.sum())} sample(s) "
                    f"(first: sample {int(np.argmax(bad))}); a heatmap of such an input is "
                    "meaningless. Clean or drop those samples before analyzing."
                )

    def analyze(self, X, neuron_selection=None, *, batch_size: int | None = None):
        """Explain ``X``.

        Args:
            X: an array ``(batch, *input_shape)``, or a list of arrays for multi-input models.
            neuron_selection: for mode ``"index"``: an int (flat output index), one int per
                sample, a tuple indexing the output's non-batch shape, or a float weights
                array shaped like the output (see :mod:`keras_isnet.selection`).
            batch_size: if given, ``X`` is processed in chunks of this many samples, for
                inputs larger than memory allows. Default: all at once.

        Returns:
            A float32 NumPy array shaped like ``X`` (a list for multi-input models).

        Raises:
            ValueError: wrong number of inputs, wrong input shape, NaN or inf in ``X``, or a
                bad ``neuron_selection``.
        """
        xs = X if isinstance(X, (list, tuple)) else [X]
        if len(xs) != len(self._input_keys):
            raise ValueError(
                f"Model {self.model.name!r} has {len(self._input_keys)} inputs but {len(xs)} "
                "arrays were given; pass a list with one array per input."
            )
        xs = [np.asarray(v) for v in xs]
        self._check_arrays(xs)
        n = len(xs[0])
        selection = None
        if self.neuron_selection_mode == "index":
            selection = normalize_selection(neuron_selection, tuple(self._head_shape()), n)
        elif neuron_selection is not None:
            self._prepare_selection(neuron_selection, None)  # raises with the explanation
        if self._compiled is None:
            self._compiled = compile_function(self._compiled_explain)
        size = n if not batch_size else int(batch_size)
        chunks = []
        for start in range(0, n, size):
            part = [v[start : start + size] for v in xs]
            tensors = [
                ops.convert_to_tensor(v, dtype=t.dtype)
                for v, t in zip(part, self.model.inputs, strict=True)
            ]
            sel = None if selection is None else selection[start : start + size]
            out = self._compiled(tensors, sel)
            chunks.append([np.asarray(ops.convert_to_numpy(o), dtype=np.float32) for o in out])
        result = [np.concatenate([c[i] for c in chunks]) for i in range(len(xs))]
        return result if len(result) > 1 else result[0]

    def _compiled_explain(self, inputs, selection):
        return self._explain(list(inputs), selection)

    def __repr__(self):
        return (
            f"{type(self).__name__}(model={self.model.name!r}, mode={self.neuron_selection_mode!r})"
        )
