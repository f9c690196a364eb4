"""What the classifier's head predicts: one class (softmax), independent labels (sigmoid).

The ISNet's classification loss, its label checks, the probabilities its metrics see and the
quantity its selective variant explains all depend on the head:

* :class:`SoftmaxHead` (the default): one class per sample out of K >= 2 logits; labels are
  integers ``(batch,)``/``(batch, 1)`` in ``[0, K)`` or one-hot ``(batch, K)``; sparse
  cross-entropy on the logits; the metrics see ``softmax(logits)``. Segmentation logits
  ``(batch, H, W, K)`` take per-pixel labels.
* :class:`SigmoidHead`: ``multilabel=True`` (K independent labels, multi-hot labels
  ``(batch, K)`` in {0, 1}) or a 1-unit head (binary, labels ``(batch,)`` or ``(batch, 1)``
  in {0, 1}); binary cross-entropy with logits, mean over labels and samples, with an
  optional ``pos_weight`` (``(K,)`` or a number) on the positive term, as PyTorch's
  ``BCEWithLogitsLoss`` that the reference code uses with ``multiLabel=True``; the metrics
  see ``sigmoid(logits)`` and the labels as given (``binary_accuracy``,
  ``keras.metrics.AUC(multi_label=True, num_labels=K)``).

Example:
    >>> head = head_for((4,), multilabel=True, pos_weight=[1.0, 1.0, 4.0, 1.0])
    >>> head.loss(labels, logits)          # a scalar
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_isnet import backend
from keras_isnet.isnet.variants.base import segmentation_labels, sparse_labels
from keras_isnet.losses import loss_dtype

_LABELS_HINT = {
    "softmax": "integer classes (batch,) in [0, {k}) or one-hot labels (batch, {k})",
    "multilabel": "multi-hot labels (batch, {k}) with 0/1 per label",
    "binary": "0/1 labels (batch,) or (batch, 1)",
}


def weighted_mean(per_sample, weights=None):
    """``mean(per_sample)``, or ``mean(weights * per_sample)`` with ``weights`` ``(batch,)``
    broadcast over any further axes of ``per_sample``."""
    if weights is not None:
        weights = ops.cast(weights, per_sample.dtype)
        weights = ops.reshape(weights, (-1,) + (1,) * (len(per_sample.shape) - 1))
        per_sample = ops.multiply(per_sample, weights)
    return _mean(per_sample)


def _mean(x, axis=None):
    """``sum / count``: Keras' ``ops.mean`` accumulates float64 in float32 on JAX and PyTorch
    (5e-8 off); a sum keeps the precision of ``x``."""
    return ops.divide(ops.sum(x, axis=axis), ops.sum(ops.ones_like(x), axis=axis))


class SoftmaxHead:
    """One class per sample (softmax over K >= 2 logits; per pixel for segmentation).

    Args:
        classes: K, the number of logits.
        dense: whether the logits are dense (segmentation, ``(batch, H, W, K)``).
    """

    kind = "softmax"
    sigmoid = False

    def __init__(self, classes: int, dense: bool = False):
        self.classes = int(classes)
        self.dense = dense

    def loss(self, labels, logits, weights=None):
        """Mean sparse cross-entropy on the logits, at least float32 (see
        :func:`keras_isnet.isnet.model.classification_loss`)."""
        logits = ops.cast(logits, loss_dtype(logits.dtype))
        ce = keras.losses.sparse_categorical_crossentropy(
            self.metric_labels(labels, logits), logits, from_logits=True
        )
        return weighted_mean(ce, weights)

    def metric_labels(self, labels, logits):
        """Sparse labels: ``(batch,)``, or ``(batch, H, W)`` for dense logits."""
        if len(logits.shape) > 2:
            return segmentation_labels(labels, logits)
        return sparse_labels(labels)

    def probabilities(self, logits):
        """``softmax(logits)`` in float32, what the compiled metrics see."""
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def sample_classes(self, labels):
        """Per sample, the class whose ``class_weight`` applies, ``(batch,)`` int32."""
        return sparse_labels(labels)

    def class_weight_problem(self) -> str | None:
        """Why ``class_weight`` cannot weight this head's samples, else None."""
        return None

    @property
    def weight_classes(self) -> int:
        """How many classes ``class_weight`` may name."""
        return self.classes

    def labels_problem(self, labels) -> str | None:
        """The error message for NumPy ``labels`` this head cannot train on, else None."""
        if self.dense:
            return None  # per-pixel labels: checked against the logits' shape in the step
        labels = np.asarray(labels)
        k = self.classes
        if labels.ndim == 2 and labels.shape[1] != 1:
            if labels.shape[1] != k:
                return (
                    f"ISNet: labels of shape {labels.shape} look one-hot, but the classifier "
                    f"has {k} logits. Give {_LABELS_HINT['softmax'].format(k=k)}."
                )
            binary = np.isin(labels, (0, 1)).all()
            sums = labels.sum(axis=1)
            if binary and np.any(sums > 1):
                row = int(np.argmax(sums > 1))
                return (
                    f"ISNet: labels hold several 1s per row (row {row}: {labels[row].tolist()}): "
                    "multi-hot labels need a multi-label ISNet, ki.ISNet(model, multilabel=True) "
                    "(binary cross-entropy per label); this one explains a softmax (one class "
                    "per sample)."
                )
            if not binary or np.any(sums != 1):
                row = int(np.argmax(~np.isin(labels, (0, 1)).all(axis=1) | (sums != 1)))
                return (
                    f"ISNet: one-hot labels must hold exactly one 1 per row; row {row} is "
                    f"{labels[row].tolist()}. Give {_LABELS_HINT['softmax'].format(k=k)}."
                )
            return None
        if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
            hint = _LABELS_HINT["softmax"].format(k=k)
            return f"ISNet: labels of shape {labels.shape}; give {hint}."
        flat = labels.reshape(-1)
        bad = (
            ~np.isfinite(flat.astype("float64"))
            | (flat < 0)
            | (flat >= k)
            | (flat != np.round(flat))
        )
        if bad.any():
            i = int(np.argmax(bad))
            return (
                f"ISNet: label {flat[i].item()!r} (sample {i}) is not a class of this classifier: "
                f"give {_LABELS_HINT['softmax'].format(k=k)}."
            )
        return None

    def checked_labels(self, labels, *gated):
        """``(labels, *gated)`` released after an in-graph check that sparse labels lie in
        ``[0, K)`` (a dataset's batches; NumPy labels are checked whole before the fit)."""
        if self.dense or labels is None:
            return (labels, *gated)
        labels = ops.convert_to_tensor(labels)
        if len(labels.shape) >= 2 and labels.shape[-1] not in (None, 1):
            return (labels, *gated)  # one-hot: argmax is a class whatever the values
        return _within(
            labels,
            0,
            self.classes - 1,
            *gated,
            what="ISNet: labels",
            hint=f"Give {_LABELS_HINT['softmax'].format(k=self.classes)}.",
        )


class SigmoidHead:
    """Independent labels: a sigmoid per logit (multi-label, or a 1-unit binary head).

    Args:
        classes: K, the number of logits (1 for a binary head).
        pos_weight: weight of the positive term per label, ``(K,)`` or a number, default
            None (1): ``loss = mean(pos_weight * y * softplus(-z) + (1 - y) * softplus(z))``.
    """

    kind = "sigmoid"
    sigmoid = True

    def __init__(self, classes: int, pos_weight=None):
        self.classes = int(classes)
        self.pos_weight = _pos_weight(pos_weight, self.classes)
        self.binary = self.classes == 1

    @property
    def name(self) -> str:
        return "binary" if self.binary else "multilabel"

    def _targets(self, labels, dtype):
        labels = ops.cast(ops.convert_to_tensor(labels), dtype)
        return ops.reshape(labels, (-1, self.classes))

    def loss(self, labels, logits, weights=None):
        """Binary cross-entropy with logits, mean over labels and samples (float32 at least);
        ``weights`` ``(batch,)`` weight each sample's mean over its labels."""
        logits = ops.cast(logits, loss_dtype(logits.dtype))
        y = self._targets(labels, logits.dtype)
        positive = ops.multiply(y, _softplus(ops.negative(logits)))
        if self.pos_weight is not None:
            positive = ops.multiply(positive, ops.cast(self.pos_weight, logits.dtype))
        per_label = ops.add(positive, ops.multiply(1.0 - y, _softplus(logits)))
        return weighted_mean(_mean(per_label, axis=-1), weights)

    def metric_labels(self, labels, logits):
        """The labels as ``(batch, K)`` floats (0/1), as Keras' binary metrics take them."""
        return self._targets(labels, "float32")

    def probabilities(self, logits):
        """``sigmoid(logits)`` in float32."""
        return ops.sigmoid(ops.cast(logits, "float32"))

    def sample_classes(self, labels):
        """Binary heads: the label (0 or 1) selects the ``class_weight``."""
        problem = self.class_weight_problem()
        if problem:
            raise ValueError(problem)
        return ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")

    def class_weight_problem(self) -> str | None:
        """Multi-label heads refuse ``class_weight`` (several labels per sample)."""
        if self.binary:
            return None
        return (
            "class_weight weights one class per sample; a multi-label ISNet has several "
            "labels per sample: pass pos_weight= (one weight per label) to ki.ISNet instead."
        )

    @property
    def weight_classes(self) -> int:
        return 2 if self.binary else self.classes

    def labels_problem(self, labels) -> str | None:
        labels = np.asarray(labels)
        k = self.classes
        hint = _LABELS_HINT[self.name].format(k=k)
        ok_shape = labels.ndim == 2 and labels.shape[1] == k
        if self.binary:
            ok_shape = ok_shape or labels.ndim == 1
        if not ok_shape:
            extra = ""
            if not self.binary and labels.ndim == 1:
                extra = (
                    f" Class indices can be made multi-hot with np.eye({k})[labels] (one label "
                    "per sample), or use a softmax ISNet (multilabel=False)."
                )
            return f"ISNet ({self.name}): labels of shape {labels.shape}; give {hint}.{extra}"
        values = labels.astype("float64")
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            return (
                f"ISNet ({self.name}): labels must lie in [0, 1] (0/1 per label); found "
                f"{labels[index].item()!r} at index {index}. Give {hint}."
            )
        return None

    def checked_labels(self, labels, *gated):
        """``(labels, *gated)`` released after an in-graph check of ``0 <= labels <= 1``."""
        if labels is None:
            return (labels, *gated)
        return _within(
            ops.convert_to_tensor(labels),
            0,
            1,
            *gated,
            what=f"ISNet ({self.name}): labels",
            hint=f"Give {_LABELS_HINT[self.name].format(k=self.classes)}.",
        )


def _softplus(x):
    """``log(1 + e^x)`` as ``max(x, 0) + log1p(e^-|x|)``: exact in float64 on every backend
    (PyTorch's float64 softplus is 1e-7 off) and without overflow."""
    return ops.add(ops.relu(x), ops.log1p(ops.exp(ops.negative(ops.abs(x)))))


def _within(x, low, high, *gated, what: str, hint: str) -> tuple:
    """``(x, *gated)`` after :func:`keras_isnet.backend.assert_within` (always a tuple)."""
    checked = ops.cast(x, "float32")  # integer labels: the check's tolerance is a float
    return tuple(backend.assert_within(checked, low, high, x, *gated, what=what, hint=hint)[1:])


def _pos_weight(pos_weight, k: int):
    if pos_weight is None:
        return None
    w = np.asarray(pos_weight, dtype="float32")
    if w.ndim == 0:
        w = np.full((k,), float(w), dtype="float32")
    if w.shape != (k,):
        raise ValueError(
            f"pos_weight must be a number or have shape ({k},) (one per label), got shape "
            f"{w.shape}."
        )
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"pos_weight must be finite and >= 0, got {w.tolist()}.")
    return w


def head_for(logits_shape: tuple, multilabel: bool = False, pos_weight=None):
    """The head of a classifier with logits of shape ``logits_shape`` (without the batch
    axis): :class:`SigmoidHead` for ``multilabel=True`` or a 1-unit classifier (binary),
    :class:`SoftmaxHead` otherwise.

    Args:
        logits_shape: ``(K,)``, or ``(H, W, K)`` for segmentation.
        multilabel: K independent labels (default False).
        pos_weight: the positive-term weight of a sigmoid head (default None).

    Raises:
        ValueError: ``multilabel`` or ``pos_weight`` with dense (segmentation) logits, or
            ``pos_weight`` on a softmax head (the message says what to use).
    """
    shape = tuple(logits_shape)
    k = shape[-1]
    if len(shape) > 1:
        if multilabel or pos_weight is not None:
            raise ValueError(
                f"multilabel/pos_weight are for classifiers with (batch, K) logits; these "
                f"logits have shape (batch, *{shape}) (segmentation: one class per pixel, "
                "softmax)."
            )
        return SoftmaxHead(k, dense=True)
    if multilabel or k == 1:
        return SigmoidHead(k, pos_weight)
    if pos_weight is not None:
        raise ValueError(
            "pos_weight weights the positive term of a binary cross-entropy: pass "
            "multilabel=True for independent labels, or class_weight= to fit for a softmax "
            "classifier."
        )
    return SoftmaxHead(k)
