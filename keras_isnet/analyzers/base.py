"""The analyzer base class: model checks, output choice, neuron selection, batching.

An analyzer is built once per model. It walks the model's graph, picks the explained output
(stripping a final softmax or sigmoid), chooses a backward handler for every layer call, and
then explains inputs either as NumPy arrays (:meth:`Analyzer.analyze`) or as tensors inside
a larger computation (:meth:`Analyzer.relevance`, differentiable with respect to the
model's weights).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_isnet.arrays import to_numpy
from keras_isnet.backend import compile_function
from keras_isnet.engine import Engine, UnsupportedLayerError
from keras_isnet.graph import as_functional
from keras_isnet.propagation import step_names
from keras_isnet.selection import check_mode, normalize_selection, selection_weights

#: the key under which :meth:`Analyzer._propagate` stores the seed (the explained relevance
#: ``head * weights``) in its ``keep`` dict; no layer path can contain "<".
SEED_KEY = "<seed>"

#: samples per chunk of :meth:`Analyzer.analyze` when ``batch_size`` is not given (as
#: ``model.predict``), so that a large array does not exhaust memory.
DEFAULT_BATCH_SIZE = 32


def check_batch_size(batch_size) -> int:
    """``batch_size`` as a positive int (None: :data:`DEFAULT_BATCH_SIZE`)."""
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"batch_size must be a positive integer or None (default {DEFAULT_BATCH_SIZE}), "
            f"got {batch_size!r} ({type(batch_size).__name__})."
        )
    if batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer or None (default {DEFAULT_BATCH_SIZE}), "
            f"got {batch_size}."
        )
    return int(batch_size)


class Analyzer:
    """Base class of every analyzer.

    The analyzer checks the model, builds its :class:`~keras_isnet.engine.Engine` (walk,
    replay, backward walk) and owns what is common to all analyses: neuron selection,
    batching and NumPy conversion. Subclasses choose the backward handlers
    (``self._handlers = self.engine.handlers(...)`` at the end of their ``__init__``) and
    may change the seed (:meth:`_seed`), the final step (:meth:`_finalize`) or the whole
    explanation (:meth:`_explain`). The constructor calls no subclass method.

    Args:
        model: a built Keras functional or Sequential model (nested models are walked into).
        neuron_selection_mode: ``"max_activation"`` (default: per sample, the largest output),
            ``"index"`` (pass ``neuron_selection`` to :meth:`analyze`) or ``"all"``.
        output_index: for models with several outputs, the index or name of the output to
            explain (required there).
        strip_softmax: if True (default), a final softmax or sigmoid, as a separate layer or
            as the ``activation=`` of the last Dense/Conv layer, is removed and relevance
            starts at the logits, as in iNNvestigate. False explains the probabilities.
        canonizers: passed to the engine (LRP analyzers: the composite's BatchNorm fold).
        compute_dtype: passed to the engine (None: the model's dtype; ``"float64"``).
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
        canonizers=(),
        compute_dtype: str | None = None,
    ):
        as_functional(model, "")  # subclassed models: say how to make them walkable
        if not getattr(model, "built", False) or not getattr(model, "inputs", None):
            raise ValueError(
                f"Model {getattr(model, 'name', model)!r} is not built: create it with "
                "keras.Input(...) or call model.build(input_shape) first."
            )
        self.model = model
        self.neuron_selection_mode = check_mode(neuron_selection_mode)
        self.strip_softmax = strip_softmax
        self.engine = Engine(
            model,
            output_index=output_index,
            strip_softmax=strip_softmax,
            canonizers=canonizers,
            compute_dtype=compute_dtype,
        )
        self._handlers: dict = {}
        self._compiled = None
        self._compiled_layers = None

    # ------------------------------------------------------------- graph (read-only)
    @property
    def _steps(self):
        """The walked graph (``self.engine.steps``)."""
        return self.engine.steps

    @property
    def _nonnegative(self) -> dict:
        """Which tensors are >= 0 by construction (``self.engine.nonnegative``)."""
        return self.engine.nonnegative

    @property
    def _compute_dtype(self) -> str | None:
        return self.engine.compute_dtype

    def _unsupported(self, step, why: str = "") -> UnsupportedLayerError:
        return self.engine.unsupported(step, why, type(self).__name__)

    # ------------------------------------------------------------------------ computation
    def _seed(self, head, weights):
        """The relevance of the explained output (LRP: ``head * weights``)."""
        return ops.multiply(head, weights)

    def _finalize(self, inputs, relevances):
        """Turn input-tensor relevances into the analysis (identity by default)."""
        return relevances

    def _propagate(self, inputs, weights_fn, *, training=False, keep=None):
        """One forward replay and backward walk. ``weights_fn(head) -> weights``.

        With a ``keep`` dict, the relevance at every layer's inputs is recorded in it (see
        :func:`propagation.backward`) and the seed under :data:`SEED_KEY`.
        """
        engine = self.engine
        values, records = engine.replay(inputs, training=training)
        head = values[engine.head_key]
        seed = self._seed(head, weights_fn(head))
        relevance = engine.backward(records, {engine.head_key: seed}, self._handlers, keep=keep)
        if keep is not None:
            keep[SEED_KEY] = [seed]
        return engine.input_relevances(relevance, inputs)

    def _explain(self, inputs, selection, *, training=False, keep=None):
        """The analysis of ``inputs`` as a list of tensors (one per model input)."""
        mode = self.neuron_selection_mode

        def weights_fn(head):
            return selection_weights(head, mode, selection)

        out = self._propagate(inputs, weights_fn, training=training, keep=keep)
        return self._finalize(inputs, out)

    def as_tensors(self, x) -> list:
        """``x`` (an array, a tensor or a list of them) as one tensor per model input, in
        the dtype the analysis runs in; a ValueError for the wrong number of inputs."""
        xs = x if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.engine.input_keys):
            raise ValueError(
                f"Model {self.model.name!r} has {len(self.engine.input_keys)} inputs but "
                f"{len(xs)} arrays were given; pass a list with one array per input."
            )
        return [
            ops.convert_to_tensor(v, dtype=self._input_dtype(t))
            for v, t in zip(xs, self.model.inputs, strict=True)
        ]

    def _input_dtype(self, model_input):
        """The dtype an input is fed in: the compute dtype for float inputs, if one is set."""
        if self._compute_dtype is not None and "float" in str(model_input.dtype):
            return self._compute_dtype
        return model_input.dtype

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
        inputs = self.as_tensors(x)
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
        out_shape = self.engine.concrete_head_shape(inputs)
        batch = int(ops.shape(inputs[0])[0])
        return normalize_selection(neuron_selection, out_shape, batch)

    # ----------------------------------------------------------------------------- numpy
    def _check_arrays(self, xs):
        sizes = [len(v) if v.ndim else 0 for v in xs]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"The inputs of model {self.model.name!r} have different batch sizes {sizes}; "
                "pass the same number of samples for every input."
            )
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
        self._check_tokens(xs)

    def _check_tokens(self, xs):
        """Integer model inputs read by an Embedding must be indices into its vocabulary
        (TensorFlow's raw gather error otherwise names no layer)."""
        engine = self.engine
        for step in engine.steps:
            layer = step.layer
            if not isinstance(layer, keras.layers.Embedding) or step.inputs[0] not in (
                engine.input_keys
            ):
                continue
            i = engine.input_keys.index(step.inputs[0])
            v = xs[i]
            if v.size == 0 or v.dtype.kind not in "iuf":
                continue
            low, high = v.min(), v.max()
            if low < 0 or high >= layer.input_dim:
                bad = int(low) if low < 0 else int(high)
                raise ValueError(
                    f"Input {i} feeds Embedding layer {layer.name!r} (input_dim="
                    f"{layer.input_dim}), but holds the token {bad!r}, outside [0, "
                    f"{layer.input_dim}); map unknown tokens to a valid index (e.g. an OOV id)."
                )

    def analyze(
        self,
        X,
        neuron_selection=None,
        *,
        batch_size: int | None = None,
        keep_layers: bool = False,
    ):
        """Explain ``X``.

        Args:
            X: an array ``(batch, *input_shape)``, or a list of arrays for multi-input models.
            neuron_selection: for mode ``"index"``: an int (flat output index), one int per
                sample, a tuple indexing the output's non-batch shape (``(row, col, class)``
                for a segmentation map), or a float weights array shaped like the output
                (explains ``sum(output * weights)``: a region or a whole class map, see
                :mod:`keras_isnet.selection` and :mod:`keras_isnet.segmentation`).
            batch_size: ``X`` is processed in chunks of this many samples (a positive int;
                default None: :data:`DEFAULT_BATCH_SIZE` = 32, as ``model.predict``), so that
                large arrays fit in memory. An empty ``X`` gives an empty result.
            keep_layers: if True, also return the relevance at the inputs of every layer
                call that relevance reaches (default False).

        Returns:
            A float32 NumPy array shaped like ``X`` (float64 for LRP analyzers created with
            ``compute_dtype="float64"``; a list for multi-input models). With
            ``keep_layers=True``, a pair ``(heatmaps, layers)`` where ``layers`` maps each
            layer's path (``"conv1"``, ``"encoder/conv1"`` in nested models; ``"conv1#1"``
            for the second call of a shared layer) to the relevance at its input, a float32
            array shaped like that input ``(batch, ...)``, or a list of arrays (None where no
            relevance flows) for layers with several distinct inputs. Ordered from the
            output back to the input. Analyzers that do not walk the layers (input, random,
            SmoothGrad, integrated gradients) return an empty dict.

        Raises:
            ValueError: wrong number of inputs, wrong input shape, inputs with different
                batch sizes, NaN or inf in ``X``, tokens outside an Embedding's vocabulary,
                ``batch_size`` < 1, or a bad ``neuron_selection``.

        Example:
            >>> heatmaps, layers = analyzer.analyze(x, keep_layers=True)
            >>> {name: r.sum() for name, r in layers.items()}   # relevance entering each layer
        """
        result, layers, _ = self._analyze_numpy(X, neuron_selection, batch_size, keep_layers)
        heatmaps = result if len(result) > 1 else result[0]
        if not keep_layers:
            return heatmaps
        return heatmaps, {name: (rs[0] if len(rs) == 1 else rs) for name, rs in layers.items()}

    def layer_relevances(self, X, neuron_selection=None, *, batch_size: int | None = None):
        """The relevance at every layer and the seed, as NumPy (what the conservation report
        reads).

        Args:
            X, neuron_selection, batch_size: as for :meth:`analyze`.

        Returns:
            ``(inputs, layers, seed)``: one array per model input; ``{layer path: [array or
            None per distinct input of the call]}`` from the output back to the input (as
            :meth:`analyze` with ``keep_layers=True``); and the seed ``head * weights``
            shaped like the explained output, whose sum per sample is the explained quantity.
        """
        return self._analyze_numpy(X, neuron_selection, batch_size, True)

    def _analyze_numpy(self, X, neuron_selection, batch_size, keep_layers):
        """``(input relevances, layers, seed)`` as NumPy; ``layers`` and ``seed`` are None
        unless ``keep_layers``: ``{name: [array or None per distinct input]}`` and the
        seed ``head * weights`` (its sum per sample is the explained quantity)."""
        xs = X if isinstance(X, (list, tuple)) else [X]
        if len(xs) != len(self.engine.input_keys):
            raise ValueError(
                f"Model {self.model.name!r} has {len(self.engine.input_keys)} inputs but {len(xs)} "
                "arrays were given; pass a list with one array per input."
            )
        xs = [np.asarray(v) for v in xs]
        size = check_batch_size(batch_size)
        self._check_arrays(xs)
        n = len(xs[0])
        if n == 0:
            dtype = np.float64 if self._compute_dtype == "float64" else np.float32
            empty = [np.zeros(v.shape, dtype) for v in xs]
            if not keep_layers:
                return empty, None, None
            return empty, {}, np.zeros((0, *self.engine.concrete_head_shape(xs)), dtype)
        selection = None
        if self.neuron_selection_mode == "index":
            selection = normalize_selection(
                neuron_selection, self.engine.concrete_head_shape(xs), n
            )
        elif neuron_selection is not None:
            self._prepare_selection(neuron_selection, None)  # raises with the explanation
        if keep_layers:
            if self._compiled_layers is None:
                self._compiled_layers = compile_function(
                    self._compiled_explain_layers, self.model.variables
                )
            fn = self._compiled_layers
        else:
            if self._compiled is None:
                self._compiled = compile_function(self._compiled_explain, self.model.variables)
            fn = self._compiled
        chunks, layer_chunks, seed_chunks = [], [], []
        for start in range(0, n, size):
            part = [v[start : start + size] for v in xs]
            tensors = [
                ops.convert_to_tensor(v, dtype=self._input_dtype(t))
                for v, t in zip(part, self.model.inputs, strict=True)
            ]
            sel = None if selection is None else selection[start : start + size]
            if keep_layers:
                out, kept, seed = fn(tensors, sel)
                layer_chunks.append({name: [_numpy(r) for r in rs] for name, rs in kept.items()})
                seed_chunks.append(None if seed is None else _numpy(seed))
            else:
                out = fn(tensors, sel)
            chunks.append([_numpy(o) for o in out])
        result = [np.concatenate([c[i] for c in chunks]) for i in range(len(xs))]
        if not keep_layers:
            return result, None, None
        layers = {}
        names = step_names(self.engine.steps)
        rank = {name: i for i, name in names.items()}  # from the output back to the input
        for name in sorted(layer_chunks[0], key=lambda k: -rank.get(k, 0)):
            first = layer_chunks[0][name]
            layers[name] = [
                None if r is None else np.concatenate([c[name][i] for c in layer_chunks])
                for i, r in enumerate(first)
            ]
        seeds = None if seed_chunks[0] is None else np.concatenate(seed_chunks)
        return result, layers, seeds

    def _compiled_explain(self, inputs, selection):
        return self._explain(list(inputs), selection)

    def _compiled_explain_layers(self, inputs, selection):
        keep = {}
        out = self._explain(list(inputs), selection, keep=keep)
        seed = keep.pop(SEED_KEY, [None])[0]
        return out, keep, seed

    def __repr__(self):
        return (
            f"{type(self).__name__}(model={self.model.name!r}, mode={self.neuron_selection_mode!r})"
        )


def _numpy(t):
    """float32 NumPy, or float64 for float64 tensors (``compute_dtype="float64"``)."""
    if t is None:
        return None
    a = to_numpy(t)
    return a if a.dtype == np.float64 else a.astype(np.float32)
