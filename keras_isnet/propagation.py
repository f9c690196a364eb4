"""The two passes every analyzer runs: a forward replay that records each layer call, and a
backward walk that hands each call's output relevance to a per-step handler.

The forward replay calls every layer of the walked graph (see :mod:`keras_isnet.graph`) on
real tensors and keeps, per call, its inputs, outputs and the pullback (vector-Jacobian
product) of the call. Kernel layers (Dense, convolutions, affine BatchNorm) are split into
their bias-free linear part, bias and activation, so that LRP rules can reuse the forward
pass's linear computation instead of running it again.

The backward walk visits the calls in reverse order, sums the relevance arriving at each
tensor from all its consumers, and asks a handler (chosen by the analyzer for each step) for
the relevance of the call's inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keras import ops, tree

from keras_isnet.backend import vjp
from keras_isnet.graph import Step
from keras_isnet.layers import KernelLayer, RoutingLayer, lookup
from keras_isnet.rules.base import KernelCall


@dataclass
class Record:
    """What the forward replay keeps of one layer call.

    Attributes:
        step: the graph step.
        input_keys: the distinct keys of the call's input tensors.
        inputs: the input tensors, aligned with ``input_keys``.
        outputs: the output tensors, aligned with ``step.outputs``.
        pullback: ``pullback(output_cotangents) -> input_cotangents`` of the whole call
            (one per ``input_keys`` entry, None for integer inputs).
        kernel: for kernel layers, the :class:`KernelCall` of the linear part.
    """

    step: Step
    input_keys: list[int]
    inputs: list
    outputs: list
    pullback: Callable
    kernel: KernelCall | None = None


@dataclass
class KernelOverride:
    """The weights a kernel step computes with instead of its own (a canonizer's output).

    Attributes:
        spec: the kernel-layer description to compute with (the layer's own, or one that
            adds a full-shaped bias).
        kernel, bias: the weights (the bias may be None).
        z_model: optionally, the pre-activation as the model itself computes it; the step's
            output is then that tensor (equal to the override's up to round-off:
            training-mode BatchNorm folds, whose gradient must be plain Keras training's).
        linear: optionally, ``(z_nobias, pullback)`` of the override's linear part, computed
            from the model's own call (saves a second convolution in a training step).
        lrp_bias: optionally, the bias as the detached-bias rules see it
            (:attr:`keras_isnet.rules.KernelCall.detached_bias`).
    """

    spec: object
    kernel: object
    bias: object = None
    z_model: object = None
    linear: tuple | None = None
    lrp_bias: object = None


def _unique(keys):
    seen = []
    for k in keys:
        if k not in seen:
            seen.append(k)
    return seen


def forward(
    steps: list[Step],
    input_keys: list[int],
    inputs: list,
    *,
    training: bool = False,
    nonnegative: dict | None = None,
    linear_steps: frozenset = frozenset(),
    canonization=None,
    compute_dtype: str | None = None,
) -> tuple[dict, list[Record]]:
    """Replay ``steps`` on ``inputs``.

    Args:
        steps: the walked graph.
        input_keys: keys of the model inputs, aligned with ``inputs``.
        inputs: the input tensors.
        training: passed to layers that take a ``training`` argument.
        nonnegative: optional map key -> bool saying which tensors are known to be >= 0.
        linear_steps: indices of kernel steps whose activation is skipped (the stripped
            final softmax), so that their output is the pre-activation.
        canonization: optional weight overrides, e.g. a
            :class:`keras_isnet.canonizers.FoldPlan`: an object with ``identity_steps`` (step
            indices whose output is their input, such as folded BatchNormalization) and
            ``kernel_override(step)`` returning None or ``override(spec, x) ->``
            :class:`KernelOverride` for kernel steps that compute with other weights. The
            model's weights are never changed.
        compute_dtype: if given (``"float64"``), every step computes in this dtype: kernel
            layers with their weights cast to it, weightless layers through their ``call``
            (skipping Keras' cast to the layer's float32 compute dtype), other layers on
            cast inputs with their outputs cast back. The inputs must have this dtype.

    Returns:
        ``(values, records)``: tensor values by key, and one :class:`Record` per step.
    """
    values = dict(zip(input_keys, inputs, strict=True))
    nonnegative = nonnegative or {}
    identity = canonization.identity_steps if canonization is not None else frozenset()
    records = []
    for step in steps:
        spec = lookup(step.layer)
        keys = _unique(step.inputs)
        tensors = [values[k] for k in keys]
        if step.index in identity:
            record = _forward_identity(step, keys, tensors)
        elif isinstance(spec, KernelLayer) and len(keys) == 1:
            override = None if canonization is None else canonization.kernel_override(step)
            record = _forward_kernel(
                step, spec, keys, tensors, nonnegative, linear_steps, override, compute_dtype
            )
        else:
            record = _forward_generic(step, keys, tensors, training, compute_dtype)
            if isinstance(spec, RoutingLayer):
                record.pullback = spec.pullback(
                    step.layer, record.inputs, record.outputs, record.pullback
                )
        for k, v in zip(step.outputs, record.outputs, strict=True):
            values[k] = v
        records.append(record)
    return values, records


def _forward_identity(step, keys, tensors):
    """A step replaced by the identity (a BatchNormalization folded into its neighbour)."""
    return Record(step, keys, tensors, [tensors[0]], lambda cotangents: [cotangents[0]])


def _is_float(t) -> bool:
    return "float" in str(getattr(t, "dtype", ""))


def _cast(t, dtype):
    """``t`` in ``dtype`` (unchanged, no operation, when it has that dtype already)."""
    return t if getattr(t, "dtype", None) == dtype else ops.cast(t, dtype)


def _forward_kernel(
    step, spec, keys, tensors, nonnegative, linear_steps, override=None, compute_dtype=None
):
    layer = step.layer
    x = tensors[0]
    lrp_bias = None
    if override is None:
        call_spec, z_model, linear = spec, None, None
        kernel, bias = spec.weights(layer)
    else:
        o = override(spec, x)
        call_spec, kernel, bias, z_model, linear = o.spec, o.kernel, o.bias, o.z_model, o.linear
        lrp_bias = o.lrp_bias
    # Compute as the layer does: in ``compute_dtype`` if given, else in the layer's compute
    # dtype (float16 / bfloat16 under a mixed-precision policy, whose variables are float32).
    dtype = compute_dtype or getattr(layer, "compute_dtype", None)
    if dtype is not None and "float" in str(dtype):
        if _is_float(x) and x.dtype != dtype:
            x = ops.cast(x, dtype)
        kernel = tree.map_structure(lambda k: _cast(k, dtype), kernel)
        bias = None if bias is None else _cast(bias, dtype)
        lrp_bias = None if lrp_bias is None else _cast(lrp_bias, dtype)
    # Read each weight once: every rule and seed of this step then sees the same value, even
    # when a training step updates the variable later in the same graph.
    kernel = tree.map_structure(ops.convert_to_tensor, kernel)
    bias = None if bias is None else ops.convert_to_tensor(bias)
    if linear is not None and compute_dtype is None:
        z_nobias, pull_linear = linear
    else:
        z_nobias, pull_linear = vjp(lambda v: call_spec.linear(layer, v, kernel), [x])
    call = KernelCall(
        call_spec,
        layer,
        x,
        kernel,
        bias,
        z_nobias,
        pull_linear,
        nonnegative.get(keys[0], False),
        lrp_bias,
    )
    # With a training-mode fold the forward output is the model's own computation (BN with
    # batch statistics that carry their gradient), so that it differentiates as in plain
    # Keras training; its value is the folded layer's up to round-off. The rules see the
    # folded weights through ``call``.
    z = call.z if z_model is None else z_model
    activation = None if step.index in linear_steps else spec.activation(layer)
    if activation is None:
        y, pull_activation = z, None
    else:
        y, pull_act = vjp(activation, [z])
        pull_activation = lambda g: pull_act(g)[0]  # noqa: E731

    def pullback(cotangents):
        g = cotangents[0]
        if pull_activation is not None:
            g = pull_activation(g)
        return [call.pullback(g)]

    return Record(step, keys, tensors, [y], pullback, call)


def _forward_generic(step, keys, tensors, training, compute_dtype=None):
    layer = step.layer
    direct = compute_dtype is not None and not getattr(layer, "weights", ())

    def run(*ts):
        args, kwargs = step.call_arguments(dict(zip(keys, ts, strict=True)))
        if getattr(layer, "_call_has_training_arg", False):
            kwargs["training"] = training
        if direct:  # layer.call: no autocast of the inputs to float32
            outputs = tree.flatten(layer.call(*args, **kwargs))
        else:
            outputs = tree.flatten(layer(*args, **kwargs))
        if compute_dtype is not None:
            outputs = [ops.cast(o, compute_dtype) if _is_float(o) else o for o in outputs]
        return outputs

    outputs, pull = vjp(run, tensors)
    # Some layers lose static shapes in a graph (image augmentation in training mode): give
    # the outputs the model's symbolic shapes, and the cotangents their inputs' shapes.
    symbolic = list(getattr(step.node, "output_tensors", None) or [])
    if len(symbolic) == len(outputs):
        outputs = [_with_static_shape(o, s.shape) for o, s in zip(outputs, symbolic, strict=True)]

    def pullback(cotangents):
        grads = pull(cotangents)
        return [_with_static_shape(g, t.shape) for g, t in zip(grads, tensors, strict=True)]

    return Record(step, keys, tensors, outputs, pullback)


def _with_static_shape(t, shape):
    """``t`` reshaped to ``shape`` (None: unknown) where ``t``'s own static shape knows less
    and ``shape`` has at most one unknown dimension; else ``t`` unchanged."""
    if t is None or shape is None or not hasattr(t, "shape") or len(t.shape) != len(shape):
        return t
    if all(a is not None or b is None for a, b in zip(t.shape, shape, strict=True)):
        return t
    if sum(d is None for d in shape) > 1:
        return t
    return ops.reshape(t, [-1 if d is None else d for d in shape])


def backward(
    records: list[Record],
    seeds: dict,
    handlers: dict[int, Callable],
    *,
    keep: dict | None = None,
) -> dict:
    """Propagate relevance from ``seeds`` back through ``records``.

    Args:
        records: the forward records.
        seeds: initial relevance by tensor key (the explained output).
        handlers: per step index, ``handler(record, output_relevances) -> input_relevances``
            (aligned with ``record.input_keys``; None where no relevance flows).
        keep: if a dict is given, it receives the relevance at the inputs of every step
            that relevance reaches, keyed by :func:`step_names` (the step's path; a layer
            called several times gets ``path#1``, ``path#2``, ... for its later calls), as a
            list aligned with ``record.input_keys`` (None where no relevance flows).

    Returns:
        The relevance of every tensor that received some, by key.
    """
    relevance = dict(seeds)
    names = step_names([record.step for record in records]) if keep is not None else None
    for record in reversed(records):
        step = record.step
        arriving = [relevance.get(k) for k in step.outputs]
        if all(r is None for r in arriving):
            continue
        arriving = [
            ops.zeros_like(y) if r is None else r
            for r, y in zip(arriving, record.outputs, strict=True)
        ]
        leaving = handlers[step.index](record, arriving)
        if keep is not None:
            keep[names[step.index]] = leaving
        for k, r in zip(record.input_keys, leaving, strict=True):
            if r is None:
                continue
            relevance[k] = r if k not in relevance else ops.add(relevance[k], r)
    return relevance


def step_names(steps) -> dict[int, str]:
    """A unique name per step: its path, with ``#1``, ``#2``, ... for later calls of a layer.

    Example:
        >>> step_names(steps)[3]
        'encoder/conv1'
    """
    names, seen = {}, {}
    for step in steps:
        n = seen.get(step.path, 0)
        names[step.index] = step.path if n == 0 else f"{step.path}#{n}"
        seen[step.path] = n + 1
    return names
