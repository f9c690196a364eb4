"""The TensorFlow implementation of keras-isnet's backend primitives (see
:mod:`keras_isnet.backend`): ``tf.GradientTape`` pullbacks, ``tf.function`` compilation,
gated gradients, ``tf.distribute`` loss scaling and in-graph checks."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_isnet.backend.host_checks import short


def vjp(fn: Callable, primals: Sequence) -> tuple[object, Callable]:
    """Evaluate ``fn(*primals)`` and return ``(outputs, pullback)``.

    ``pullback(cotangents)`` returns a list with one cotangent per primal: the vector-Jacobian
    product ``cotangents^T d fn / d primal``, with zeros where a primal does not influence the
    outputs and ``None`` for non-floating primals (integer indices). ``cotangents`` has the
    structure of ``outputs``. The pullback may be called several times, and it is itself
    differentiable, so it can run inside an outer ``tf.GradientTape`` (the ISNet trains on
    heatmaps that are built from pullbacks).

    Args:
        fn: a function of tensors.
        primals: the positional arguments of ``fn``.

    Returns:
        ``(outputs, pullback)``.
    """
    primals = [None if p is None else tf.convert_to_tensor(p) for p in primals]
    floating = [p is not None and p.dtype.is_floating for p in primals]
    tape = tf.GradientTape(persistent=True)
    with tape:
        for p, is_float in zip(primals, floating, strict=True):
            if is_float:
                tape.watch(p)
        outputs = fn(*primals)

    sources = [p for p, is_float in zip(primals, floating, strict=True) if is_float]

    def pullback(cotangents):
        grads = tape.gradient(
            outputs,
            sources,
            output_gradients=cotangents,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        grads = iter(grads)
        return [next(grads) if is_float else None for is_float in floating]

    return outputs, pullback


def compile_function(fn: Callable, variables: Sequence = ()) -> Callable:
    """Trace ``fn`` into a graph function (``tf.function`` with reduced retracing; the
    variables are captured by reference, so ``variables`` is not needed)."""
    return tf.function(fn, reduce_retracing=True)


def value_and_gradients(fn: Callable, variables: Sequence) -> tuple[object, list]:
    """``(fn(), d fn()[0] / d variables)`` for ``fn`` returning ``(loss, aux)``.

    The loss is the first element of ``fn``'s result; ``aux`` is returned untouched.

    Inside a graph (``tf.function``, ``model.fit``) the gradients are gated: each one is
    released only after the loss and *all* the gradients have been computed, so an optimizer
    update built from them cannot run while the step still reads the weights it changes.

    Why: the automatic control dependencies of ``tf.function`` order every read of a variable
    before the later write to it, but grappler's dependency optimizer can drop such an edge.
    Keras' optimizer passes all gradients through one multi-input ``IdentityN`` (the
    replica-context all-reduce); the transitive reduction sees a path "read -> heatmap ->
    some other weight's gradient -> IdentityN -> update" and removes the direct read -> write
    edge as redundant, then bypasses the ``IdentityN``, which wires each update to its own
    gradient only and breaks that path. A read used only by the heatmap (the explained
    layer's bias, whose gradient comes from the cross-entropy alone) is then unordered with
    respect to the update of its variable and sometimes sees the new value. The gate
    (``tf.tuple``: one ``NoOp`` with control inputs from the loss and every gradient, and an
    identity of each gradient behind it) makes every update wait for every gradient; the
    weights' reads reach the gradients through true data dependencies, which grappler keeps.
    """
    with tf.GradientTape() as tape:
        value = fn()
    grads = tape.gradient(value[0], variables)
    if tf.executing_eagerly() or all(g is None for g in grads):
        return value, grads
    return value, tf.tuple(grads, control_inputs=[value[0]])


def scale_loss_for_distribution(loss):
    """Divide a per-replica mean loss by the replica count, so that the gradients summed
    across replicas are those of the mean over the global batch (identity without a
    distribution strategy)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss / replicas


def after(tensors):
    """A context whose operations run only after ``tensors`` (``tf.control_dependencies``).

    The optimizer's ``iterations.assign_add(1)`` does not read the gradients, so in a graph
    it could run before a failing input check that gates them; built under ``after(grads)``,
    a rejected step leaves the iteration count as it was."""
    return tf.control_dependencies([t for t in tensors if t is not None])


def replica_position():
    """``(replica id, replica count)`` of the running step: under a ``tf.distribute``
    strategy each replica runs the step on its share of the global batch (the id is a
    scalar tensor in ``[0, count)``, the global batch split in replica order); ``(0, 1)``
    outside one."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    context = tf.distribute.get_replica_context()
    if replicas == 1 or context is None:
        return 0, 1
    return context.replica_id_in_sync_group, replicas


#: marker of the messages of the in-graph checks below, so that :func:`value_errors` finds them.
CHECK_MARKER = "[keras_isnet]"


def _gated(ok, data, x, gated):
    """``x`` (and ``gated``) released only after ``tf.debugging.Assert(ok, data)``."""
    check = tf.debugging.Assert(ok, [CHECK_MARKER, *data])
    with tf.control_dependencies([check]):
        if not gated:
            return tf.identity(x)
        return (tf.identity(x), *(tf.identity(g) for g in gated))


def assert_binary(x, *gated, what: str = "masks"):
    """``x`` (and ``gated`` tensors), released only after checking that ``x`` holds only 0
    and 1: everything computed from the results waits for the check, so a failing step stops
    before any weight update (works in graphs). Returns ``x`` alone, or a tuple with ``gated``.

    The failure surfaces as a TensorFlow ``InvalidArgumentError``; run the step inside
    :func:`value_errors` to get a ``ValueError`` instead.
    """
    x = tf.convert_to_tensor(x)
    bad = tf.logical_not(tf.logical_or(tf.equal(x, 0), tf.equal(x, 1)))
    data = [
        f"Non-binary mask: {what} must hold only 0 (background) and 1 (foreground); "
        "threshold soft masks first (e.g. masks > 0.5). Found the value",
        tf.boolean_mask(x, bad)[:1],
    ]
    return _gated(tf.logical_not(tf.reduce_any(bad)), data, x, gated)


def assert_within(x, low, high, *gated, what: str = "images", hint: str = ""):
    """``x`` (and ``gated``), released only after checking ``low <= x <= high`` (``low`` and
    ``high`` numbers or arrays broadcastable to ``x``), with a tolerance of 1e-3 of the range
    for round-off. Works like :func:`assert_binary`; ``hint`` says what to do.
    """
    x = tf.convert_to_tensor(x)
    low_t = tf.cast(tf.convert_to_tensor(low), x.dtype)
    high_t = tf.cast(tf.convert_to_tensor(high), x.dtype)
    slack = 1e-3 * (high_t - low_t)
    ok = tf.logical_and(tf.reduce_all(x >= low_t - slack), tf.reduce_all(x <= high_t + slack))
    data = [
        f"{what} outside the bounds ({short(low)}, {short(high)}). {hint} Found values from",
        tf.reduce_min(x),
        "to",
        tf.reduce_max(x),
    ]
    return _gated(ok, data, x, gated)


def assert_finite(x, *gated, what: str = "images", hint: str = ""):
    """``x`` (and ``gated``), released only after checking that ``x`` holds no NaN or inf
    (as :func:`assert_binary`)."""
    x = tf.convert_to_tensor(x)
    finite = tf.reshape(tf.math.is_finite(x), (tf.shape(x)[0], -1))
    bad = tf.logical_not(tf.reduce_all(finite, axis=1))
    data = [
        f"{what} hold NaN or inf in",
        tf.reduce_sum(tf.cast(bad, tf.int32)),
        f"sample(s) of this batch. {hint}",
    ]
    return _gated(tf.logical_not(tf.reduce_any(bad)), data, x, gated)


class value_errors:
    """Context manager: re-raise the failures of :func:`assert_binary` and
    :func:`assert_within` as ``ValueError`` with their message."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, tf.errors.InvalidArgumentError) and CHECK_MARKER in str(exc):
            raise ValueError(_assert_message(str(exc))) from None
        return False


def _assert_message(text: str) -> str:
    """The data of a failed ``tf.debugging.Assert`` after :data:`CHECK_MARKER`, as one line.

    In a graph it reads ``assertion failed: [[marker]] [a] [b]`` followed by the node; run
    eagerly, ``Summarized data: b'[marker]'`` then one datum per line, strings as bytes.
    """
    rest = text[text.index(CHECK_MARKER) + len(CHECK_MARKER) :].split("\n\t")[0]
    pieces = []
    for line in rest.split("\n"):
        for piece in line.split("] ["):
            piece = piece.strip()
            if piece[:2] in ("b'", 'b"'):
                try:
                    piece = ast.literal_eval(piece).decode()
                except (ValueError, SyntaxError):
                    pass
            piece = piece.strip(" []'")
            if piece:
                pieces.append(piece)
    return " ".join(pieces)


def supports_float64() -> bool:
    """Whether float64 tensors are float64 (JAX: only with ``jax_enable_x64``)."""
    return True


def native_dataset(arrays, *, batch_size: int, shuffle: bool, seed):
    """A ``tf.data.Dataset`` of the ``(images, labels, masks)`` arrays, batched, shuffled
    each epoch from ``seed``, prefetched."""
    images, labels, masks = arrays
    ds = tf.data.Dataset.from_tensor_slices((images, labels, masks))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
