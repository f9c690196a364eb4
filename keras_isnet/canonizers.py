"""Canonizers: rewrite a model's computation into an equivalent one that LRP explains well.

The one canonizer here folds BatchNormalization into its neighbouring Dense or convolution
layer (zennit's ``MergeBatchNorm``), found from the walked graph. At inference BN is the
element-wise affine map ``y = s x + t`` with ``s = gamma / sqrt(var + eps)`` and
``t = beta - mean s`` along its axis, so

* layer -> BN (the layer has no activation and its output feeds only the BN):
  ``W' = W s`` (per output channel), ``b' = (b - mean) s + beta = b s + t``;
* BN -> layer (the BN output feeds only the layer): ``W' = W diag(s)`` (per input channel)
  and ``b' = layer(t) + b``, the layer's linear part applied to the constant image ``t``;
  for valid padding and Dense this is a constant per channel, for other paddings it varies
  near the borders, so it is kept as a position-dependent bias (exact for every padding).

The fold is a per-step weight override used by the forward replay
(:func:`keras_isnet.propagation.forward`): the kernel step computes with the folded
``(kernel, bias)`` and the BN step becomes the identity, so every output of the model is
unchanged and the model and its weights are never modified. The folded weights are computed
with ``keras.ops`` from the layers' variables at every call, so they stay differentiable
with respect to the weights.

Where no exact fold exists (BN after an Add, a layer with an activation before the BN, a
grouped convolution after it, a BN axis that is not the channel axis), the BN is left out of
the plan with a reason; LRP then passes relevance through it unchanged.

Example:
    >>> folded = ki.fold_batch_norm(model)
    >>> folded.folds            # [("bn1", "conv1", "after"), ...]
    >>> np.abs(folded.predict(x) - model.predict(x)).max()   # ~1e-6
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from keras import ops, tree

from keras_isnet.arrays import to_numpy
from keras_isnet.backend import vjp
from keras_isnet.graph import Step, walk
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.layers.normalization import BatchNormalizationReverse
from keras_isnet.propagation import KernelOverride, forward


# ------------------------------------------------------------------------- canonizer
class BatchNormFold:
    """The canonizer that folds BatchNormalization into its Dense/conv neighbours.

    zennit's ``MergeBatchNorm``, made reversible by construction: it never modifies the
    model, it returns a :class:`FoldPlan` of weight overrides for the forward replay. A BN
    that cannot be folded is reported in one warning and passes relevance unchanged.

    Example:
        >>> engine = Engine(model, canonizers=[BatchNormFold()])
        >>> engine.canonization.describe()      # [("bn1", "conv1", "after"), ...]
    """

    def apply(self, engine) -> FoldPlan:
        """The fold plan of ``engine``'s graph (see :func:`plan_batch_norm_folds`).

        A layer that now reads a folded BN's input sees that input's sign, so
        ``engine.nonnegative`` is updated for it.
        """
        protected = set(engine.output_keys) | {engine.head_key}
        plan = plan_batch_norm_folds(engine.steps, protected_keys=protected)
        for fold in plan.folds.values():
            if fold.before is not None:  # the layer now reads the BN's input
                bn = fold.before
                engine.nonnegative[bn.outputs[0]] = engine.nonnegative.get(bn.inputs[0], False)
        by_index = {step.index: step for step in engine.steps}
        unfolded = [
            (by_index[index].path, why)
            for index, why in plan.fallbacks.items()
            if index in engine.active
        ]
        if unfolded:  # one warning, not one per layer (a DenseNet has dozens)
            shown = "; ".join(f"{path!r} ({why})" for path, why in unfolded[:5])
            if len(unfolded) > 5:
                rest = ", ".join(repr(path) for path, _ in unfolded[5:])
                shown += f"; and {len(unfolded) - 5} more: {rest}"
            warnings.warn(
                f"{len(unfolded)} BatchNormalization layer(s) cannot be folded into a "
                f"neighbouring Dense/conv layer: {shown}. Relevance passes through them "
                "unchanged (bn_rule='pass' for these layers). Pass bn_rule='pass' or "
                "'linear' to choose explicitly.",
                stacklevel=6,
            )
        return plan

    def __repr__(self):
        return "BatchNormFold()"


# ------------------------------------------------------------------------------ plan
@dataclass
class KernelFold:
    """The BatchNormalization steps folded into one kernel step.

    Attributes:
        step: the Dense/convolution step.
        before: the BN step whose output is this layer's input (BN -> layer), or None.
        after: the BN step that reads this layer's output (layer -> BN), or None.
    """

    step: Step
    before: Step | None = None
    after: Step | None = None

    def weights(self, spec, x, statistics=None) -> KernelOverride:
        """The folded layer for the input ``x``, as a :class:`KernelOverride`.

        ``call_spec`` is ``spec``, or a wrapper adding a full-shaped bias when a BN before
        the layer gave a position-dependent bias. ``statistics`` optionally maps
        ``"before"``/``"after"`` to the ``(scale, shift, constant shift)`` of that BN
        (default: its moving statistics, as at inference). For a BN after the layer the
        override's ``lrp_bias`` is the folded bias with gamma's gradient only,
        ``gamma (sg(b) - sg(mean)) / sg(std) + sg(beta)`` (the official ISNet's ``FuseBN``).
        """
        layer = self.step.layer
        dtype = x.dtype
        statistics = statistics or {}

        def cast(v):
            return None if v is None else ops.cast(v, dtype)

        kernel, bias = spec.weights(layer)
        kernel, bias = tree.map_structure(cast, kernel), cast(bias)
        call_spec = spec
        bn_spec = BatchNormalizationReverse()
        rank_in = len(x.shape)
        lrp_bias = None
        if self.before is not None:
            s, t = (
                cast(v) for v in statistics.get("before", bn_spec.weights(self.before.layer))[:2]
            )
            constant = ops.multiply(
                ops.ones_like(x[:1]), _along(t, spec.channel_axis(layer, rank_in), rank_in)
            )
            shift = spec.linear(layer, constant, kernel)  # (1, *out): layer applied to t
            bias = shift if bias is None else spec.add_bias(layer, shift, bias)
            kernel = spec.scale_inputs(layer, kernel, s)
            call_spec = FullBiasSpec(spec)
        if self.after is not None:
            bn = self.after.layer
            if "after" in statistics:
                s, t, t_const = (cast(v) for v in statistics["after"])
            else:
                mean, variance = (cast(v) for v in (bn.moving_mean, bn.moving_variance))
                s, t, t_const = _scale_shift(bn, mean, variance, dtype)
            if self.before is None:  # the official FuseBN's bias: gamma's gradient only
                lrp_bias = t_const
                if bias is not None:
                    lrp_bias = ops.add(ops.multiply(ops.stop_gradient(bias), s), t_const)
            kernel = spec.scale_outputs(layer, kernel, s)
            if self.before is not None:  # full-shaped bias: scale along the channel axis
                rank_out = len(bias.shape)
                axis = spec.channel_axis(layer, rank_out)
                bias = ops.add(
                    ops.multiply(bias, _along(s, axis, rank_out)), _along(t, axis, rank_out)
                )
            else:
                bias = t if bias is None else ops.add(ops.multiply(bias, s), t)
        return KernelOverride(call_spec, kernel, bias, lrp_bias=lrp_bias)

    def training_weights(self, spec, x, unbiased_variance: bool = False) -> KernelOverride:
        """The fold with the batch statistics of training mode (the ISNet's training step).

        Each BN that Keras would run with batch statistics (``trainable`` layers) is folded
        with the mean and variance of its input in this batch (over all axes but the BN
        axis), under ``stop_gradient``; gamma keeps its gradient. With ``unbiased_variance``
        the fold uses the unbiased variance (``N - 1``, the official ISNet's ``torch.var``;
        the forward output normalises with the biased one, as Keras). Its moving statistics are
        updated as Keras' ``BatchNormalization`` does in training
        (``moving = moving * momentum + batch * (1 - momentum)``).

        Returns:
            A :class:`KernelOverride`: the folded layer as :meth:`weights`, with ``z_model``
            the pre-activation computed as the model computes it (BN with
            the batch statistics *with* their gradient), whose value equals the folded
            layer's output and which the forward replay uses for the gradient of the layer
            output, so that the classification loss trains the BN network as plain Keras
            training does; and, for a layer with a BN after it only, ``(z_nobias,
            pullback)`` of the folded linear part computed from the model's own
            convolution (``s * conv(x, W)`` and ``c -> W^T (s c)``), so that a training step
            runs each convolution once, not once for the model and once for the fold
            (``linear``, None otherwise).
        """
        layer = self.step.layer
        dtype = x.dtype

        def cast(v):
            return None if v is None else ops.cast(v, dtype)

        kernel, bias = spec.weights(layer)
        kernel, bias = tree.map_structure(cast, kernel), cast(bias)
        statistics = {}
        h = x
        if self.before is not None:
            h, statistics["before"] = _batch_norm_train(self.before.layer, h, unbiased_variance)
        linear = None
        if self.before is None and self.after is not None:
            z_linear, pull = vjp(lambda v: spec.linear(layer, v, kernel), [x])
            h, statistics["after"] = _batch_norm_train(
                self.after.layer, spec.add_bias(layer, z_linear, bias), unbiased_variance
            )
            s = (statistics["after"] or BatchNormalizationReverse().weights(self.after.layer))[0]
            rank = len(z_linear.shape)
            s = _along(cast(s), spec.channel_axis(layer, rank), rank)
            linear = (ops.multiply(z_linear, s), lambda c: pull(ops.multiply(c, s)))
        else:
            h = spec.add_bias(layer, spec.linear(layer, h, kernel), bias)
            if self.after is not None:
                h, statistics["after"] = _batch_norm_train(self.after.layer, h, unbiased_variance)
        statistics = {k: v for k, v in statistics.items() if v is not None}
        folded = self.weights(spec, x, statistics)
        return KernelOverride(
            folded.spec,
            folded.kernel,
            folded.bias,
            z_model=h,
            linear=linear,
            lrp_bias=folded.lrp_bias,
        )


def _uses_batch_statistics(bn) -> bool:
    """Whether Keras runs ``bn`` with batch statistics in training mode."""
    return bool(bn.trainable)


def _scale_shift(bn, mean, variance, dtype):
    """``(s, t, t_const)`` of ``y = s x + t`` for ``bn`` with the statistics ``mean``,
    ``variance``; ``t_const`` is ``t`` with gamma's gradient only (``sg(beta) - sg(mean) s``)."""
    scale = ops.rsqrt(ops.add(variance, bn.epsilon))
    if bn.scale:
        scale = ops.multiply(scale, ops.cast(bn.gamma, dtype))
    shift = ops.negative(ops.multiply(mean, scale))
    const = ops.negative(ops.multiply(ops.stop_gradient(mean), scale))
    if bn.center:
        beta = ops.cast(bn.beta, dtype)
        shift = ops.add(shift, beta)
        const = ops.add(const, ops.stop_gradient(beta))
    return scale, shift, const


def _batch_norm_train(bn, h, unbiased_variance: bool = False):
    """``bn(h, training=True)`` computed here, and the ``(s, t, t_const)`` of its fold.

    Returns ``(output, (s, t, t_const))`` with the batch statistics under ``stop_gradient``
    in the fold (the variance unbiased with ``unbiased_variance``) and the moving statistics
    updated; ``(output, None)`` for a BN that uses its moving statistics in training mode
    (``trainable=False``).
    """
    dtype = h.dtype
    gamma = ops.cast(bn.gamma, dtype) if bn.scale else None
    beta = ops.cast(bn.beta, dtype) if bn.center else None
    if not _uses_batch_statistics(bn):
        mean = ops.cast(bn.moving_mean, dtype)
        variance = ops.cast(bn.moving_variance, dtype)
        statistics = None
    else:
        mean, variance = batch_moments(bn, h)
        bn.moving_mean.assign(
            ops.add(
                ops.multiply(bn.moving_mean, bn.momentum),
                ops.multiply(ops.cast(mean, bn.moving_mean.dtype), 1.0 - bn.momentum),
            )
        )
        bn.moving_variance.assign(
            ops.add(
                ops.multiply(bn.moving_variance, bn.momentum),
                ops.multiply(ops.cast(variance, bn.moving_variance.dtype), 1.0 - bn.momentum),
            )
        )
        fold_variance = variance
        if unbiased_variance:
            fold_variance = ops.multiply(variance, _unbiased_factor(bn, h))
        statistics = _scale_shift(
            bn, ops.stop_gradient(mean), ops.stop_gradient(fold_variance), dtype
        )
    out = ops.batch_normalization(
        h, mean, variance, axis=bn.axis, offset=beta, scale=gamma, epsilon=bn.epsilon
    )
    return out, statistics


def _unbiased_factor(bn, h):
    """``N / (N - 1)`` with ``N`` the values per channel that ``bn``'s batch statistics of
    ``h`` average over (all axes but the BN axis), as a tensor of ``h``'s dtype."""
    axis = bn.axis % len(h.shape)
    n = ops.cast(ops.divide(ops.size(h), ops.shape(h)[axis]), h.dtype)
    return ops.divide(n, ops.maximum(ops.subtract(n, 1.0), 1.0))


def batch_moments(bn, h):
    """The batch mean and (biased) variance of ``h`` over all axes but ``bn``'s axis.

    Computed here rather than by ``keras.ops.moments``: TensorFlow's ``tf.nn.moments`` stops
    the gradient of the mean inside the variance, which leaves first derivatives right but
    makes second derivatives wrong (the ISNet differentiates heatmaps that contain BN
    gradients, as LRP-Flex does in training mode).
    """
    axis = bn.axis % len(h.shape)
    axes = tuple(i for i in range(len(h.shape)) if i != axis)
    # sums over a count, not ops.mean: Keras' JAX mean of float64 loses precision (~1e-8)
    count = ops.cast(ops.divide(ops.size(h), ops.shape(h)[axis]), h.dtype)
    mean = ops.divide(ops.sum(h, axis=axes), count)
    shape = [1] * len(h.shape)
    shape[axis] = -1
    centred = ops.subtract(h, ops.reshape(mean, shape))
    variance = ops.divide(ops.sum(ops.square(centred), axis=axes), count)
    return mean, variance


def batch_norm_training(bn, h):
    """``bn(h, training=True)`` as a function of ``h`` (the gradient runs through the batch
    statistics), without updating the moving statistics."""
    dtype = h.dtype
    gamma = ops.cast(bn.gamma, dtype) if bn.scale else None
    beta = ops.cast(bn.beta, dtype) if bn.center else None
    mean, variance = batch_moments(bn, h)
    return ops.batch_normalization(
        h, mean, variance, axis=bn.axis, offset=beta, scale=gamma, epsilon=bn.epsilon
    )


def update_moving_statistics(bn, h) -> None:
    """Update ``bn``'s moving statistics with the batch statistics of ``h`` (as Keras'
    ``BatchNormalization`` in training mode)."""
    mean, variance = batch_moments(bn, ops.stop_gradient(h))
    for var, value in ((bn.moving_mean, mean), (bn.moving_variance, variance)):
        var.assign(
            ops.add(
                ops.multiply(var, bn.momentum),
                ops.multiply(ops.cast(value, var.dtype), 1.0 - bn.momentum),
            )
        )


@dataclass
class FoldPlan:
    """Which BatchNormalization steps fold into which kernel steps.

    Attributes:
        folds: kernel step index -> :class:`KernelFold`.
        identity_steps: indices of the BN steps that the forward replay skips (identity).
        fallbacks: BN step index -> why it could not be folded.
    """

    folds: dict = field(default_factory=dict)
    identity_steps: frozenset = frozenset()
    fallbacks: dict = field(default_factory=dict)

    @property
    def changes_nothing(self) -> bool:
        """True when nothing was folded (the replay then needs no overrides)."""
        return not self.folds

    def kernel_override(self, step):
        """The override ``override(spec, x) -> KernelOverride`` of ``step``, or None."""
        fold = self.folds.get(step.index)
        return None if fold is None else fold.weights

    def training(self, unbiased_variance: bool = False) -> TrainingFoldPlan:
        """This plan with the batch statistics of training mode (see
        :meth:`KernelFold.training_weights`); the ISNet's training step uses it."""
        return TrainingFoldPlan(self, unbiased_variance)

    def restricted(self, kernel_indices) -> FoldPlan:
        """The plan with only the folds into the kernel steps ``kernel_indices`` (the other
        BatchNormalization steps run as layers)."""
        folds = {i: f for i, f in self.folds.items() if i in set(kernel_indices)}
        identity = {bn.index for f in folds.values() for bn in (f.before, f.after) if bn}
        return FoldPlan(folds, frozenset(identity), dict(self.fallbacks))

    def folded_into(self, bn_index: int):
        """``(kernel step, "before" | "after")`` for a folded BN step, else None."""
        for fold in self.folds.values():
            if fold.before is not None and fold.before.index == bn_index:
                return fold.step, "before"
            if fold.after is not None and fold.after.index == bn_index:
                return fold.step, "after"
        return None

    def describe(self) -> list[tuple[str, str, str]]:
        """``[(bn path, layer path, "before" | "after"), ...]`` in graph order."""
        out = []
        for fold in sorted(self.folds.values(), key=lambda f: f.step.index):
            for bn, where in ((fold.before, "before"), (fold.after, "after")):
                if bn is not None:
                    out.append((bn.path, fold.step.path, where))
        return sorted(out, key=lambda item: item[0])


class TrainingFoldPlan:
    """A :class:`FoldPlan` whose folds use the batch statistics (training mode).

    Its kernel overrides return a :class:`KernelOverride` with ``z_model`` and update the
    BN layers' moving statistics, once per forward replay.
    """

    def __init__(self, plan: FoldPlan, unbiased_variance: bool = False):
        self.plan = plan
        self.identity_steps = plan.identity_steps
        self.unbiased_variance = unbiased_variance

    def kernel_override(self, step):
        fold = self.plan.folds.get(step.index)
        if fold is None:
            return None
        unbiased = self.unbiased_variance
        return lambda spec, x: fold.training_weights(spec, x, unbiased)


class FullBiasSpec(KernelLayer):
    """A kernel-layer description whose bias is a full ``(1, *output_shape)`` tensor."""

    def __init__(self, spec):
        self.spec = spec
        self.category = spec.category

    def weights(self, layer):
        return self.spec.weights(layer)

    def linear(self, layer, x, kernel):
        return self.spec.linear(layer, x, kernel)

    def add_bias(self, layer, z, bias):
        return z if bias is None else ops.add(z, bias)

    def activation(self, layer):
        return self.spec.activation(layer)

    def __repr__(self):
        return f"FullBiasSpec({self.spec!r})"


def plan_batch_norm_folds(steps: list[Step], protected_keys=()) -> FoldPlan:
    """Find the exact BatchNormalization folds of a walked graph.

    Args:
        steps: the walked graph (:func:`keras_isnet.graph.walk`).
        protected_keys: tensor keys whose values must stay what the model computes (the
            model outputs and the explained tensor).

    Returns:
        A :class:`FoldPlan`. Each BN is folded into the layer before it when possible, else
        into the layer after it, else listed in ``fallbacks`` with the reason.

    Example:
        >>> steps, inputs, outputs = walk(model)
        >>> plan = plan_batch_norm_folds(steps, protected_keys=outputs)
    """
    producer = {k: step for step in steps for k in step.outputs}
    consumers: dict[int, list[Step]] = {}
    for step in steps:
        for k in dict.fromkeys(step.inputs):
            consumers.setdefault(k, []).append(step)
    protected = set(protected_keys)
    folds: dict[int, KernelFold] = {}
    identity, fallbacks = set(), {}
    for step in steps:
        if not isinstance(lookup(step.layer), BatchNormalizationReverse):
            continue
        if len(set(step.inputs)) != 1 or len(step.outputs) != 1:
            fallbacks[step.index] = "it is called with several inputs or outputs"
            continue
        why_after = _why_not_after(step, producer, consumers, protected, folds)
        if why_after is None:
            prev = producer[step.inputs[0]]
            folds.setdefault(prev.index, KernelFold(prev)).after = step
            identity.add(step.index)
            continue
        why_before = _why_not_before(step, consumers, protected, folds)
        if why_before is None:
            nxt = consumers[step.outputs[0]][0]
            folds.setdefault(nxt.index, KernelFold(nxt)).before = step
            identity.add(step.index)
            continue
        fallbacks[step.index] = f"{why_after}, and {why_before}"
    return FoldPlan(folds, frozenset(identity), fallbacks)


def _describe(step) -> str:
    return f"{step.path!r} ({type(step.layer).__name__})"


def _kernel_problem(step, rank, bn, side) -> str | None:
    """Why ``bn`` cannot fold into kernel step ``step`` on ``side``, or None."""
    spec = lookup(step.layer)
    layer = step.layer
    if not isinstance(spec, KernelLayer) or not spec.foldable:
        return f"{_describe(step)} is not a Dense or convolution layer"
    if len(set(step.inputs)) != 1:
        return f"{_describe(step)} has several inputs"
    problem = spec.fold_problem(layer, side)
    if problem is not None:
        return f"{_describe(step)} {problem}"
    bn_axis = getattr(bn.layer, "axis", None)
    if not isinstance(bn_axis, (int, np.integer)):
        return f"the BN axis {bn_axis!r} is not a single axis"
    channel = spec.channel_axis(layer, rank)
    if int(bn_axis) % rank != channel:
        return (
            f"the BN normalises axis {int(bn_axis) % rank} but {_describe(step)} has its "
            f"channels on axis {channel}"
        )
    return None


def _why_not_after(bn, producer, consumers, protected, folds) -> str | None:
    key = bn.inputs[0]
    prev = producer.get(key)
    if prev is None:
        return "its input is a model input"
    rank = len(bn.node.input_tensors[0].shape)
    problem = _kernel_problem(prev, rank, bn, "after")
    if problem is not None:
        return problem
    if len(consumers.get(key, [])) != 1 or key in protected:
        return f"the output of {_describe(prev)} is also used elsewhere"
    if prev.index in folds and folds[prev.index].after is not None:
        return f"{_describe(prev)} already has a BN folded after it"
    return None


def _why_not_before(bn, consumers, protected, folds) -> str | None:
    key = bn.outputs[0]
    users = consumers.get(key, [])
    if key in protected:
        return "its output is a model output"
    if len(users) != 1:
        return f"its output feeds {len(users)} layers"
    nxt = users[0]
    rank = len(bn.node.outputs[0].shape)
    problem = _kernel_problem(nxt, rank, bn, "before")
    if problem is not None:
        return problem
    if nxt.index in folds and folds[nxt.index].before is not None:
        return f"{_describe(nxt)} already has a BN folded before it"
    return None


# ------------------------------------------------------------------------- arithmetic
def _along(v, axis: int, rank: int):
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(v, shape)


# ------------------------------------------------------------------------- public API
class FoldedModel:
    """A model with its BatchNormalization layers folded, for inspection and checks.

    Built by :func:`fold_batch_norm`; the model itself is never modified.

    Attributes:
        model: the original model.
        plan: the :class:`FoldPlan`.
        folds: ``[(bn path, layer path, "before" | "after"), ...]``.
        fallbacks: ``{bn path: reason}`` for the BN layers that could not be folded (they
            are computed as they are).
    """

    def __init__(self, model):
        self.model = model
        self._steps, self._input_keys, self._output_keys = walk(model)
        self.plan = plan_batch_norm_folds(self._steps, protected_keys=self._output_keys)
        by_index = {step.index: step for step in self._steps}
        self.folds = self.plan.describe()
        self.fallbacks = {by_index[i].path: why for i, why in self.plan.fallbacks.items()}

    def __call__(self, x):
        """The model's outputs computed with the folded weights, as tensors.

        Args:
            x: a tensor or array ``(batch, *input_shape)``, or a list for multi-input models.

        Returns:
            One tensor (single-output models) or a list of tensors.
        """
        xs = x if isinstance(x, (list, tuple)) else [x]
        xs = [
            ops.convert_to_tensor(v, dtype=t.dtype)
            for v, t in zip(xs, self.model.inputs, strict=True)
        ]
        values, _ = forward(self._steps, self._input_keys, xs, canonization=self.plan)
        out = [values[k] for k in self._output_keys]
        return out if len(out) > 1 else out[0]

    def predict(self, x):
        """Like ``model.predict(x)``, with the folded weights: NumPy in, NumPy out.

        Example:
            >>> np.abs(fold_batch_norm(model).predict(x) - model.predict(x)).max()
        """
        out = self(x)
        if isinstance(out, list):
            return [to_numpy(o) for o in out]
        return to_numpy(out)

    def __repr__(self):
        return f"FoldedModel({self.model.name!r}, folds={self.folds}, fallbacks={self.fallbacks})"


def fold_batch_norm(model) -> FoldedModel:
    """Fold every foldable BatchNormalization of ``model`` into its Dense/conv neighbour.

    This is what LRP analyzers do with ``bn_rule="fold"`` (their default); use it to inspect
    the folds or to check that they leave the predictions unchanged.

    Args:
        model: a built functional or Sequential Keras model (nested models are walked into).

    Returns:
        A :class:`FoldedModel`: ``.folds``, ``.fallbacks`` and ``.predict(x)``.

    Example:
        >>> folded = fold_batch_norm(model)
        >>> folded.folds
        [('bn1', 'conv1', 'after'), ('bn2', 'dense', 'before')]
        >>> np.abs(folded.predict(x) - model.predict(x)).max() < 1e-5
        True
    """
    return FoldedModel(model)


__all__ = [
    "BatchNormFold",
    "FoldPlan",
    "FoldedModel",
    "FullBiasSpec",
    "KernelFold",
    "TrainingFoldPlan",
    "fold_batch_norm",
    "plan_batch_norm_folds",
]
