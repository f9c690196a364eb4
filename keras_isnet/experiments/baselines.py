"""The two background-penalty baselines the ISNet papers compare against.

* :class:`RRRClassifier`: "Right for the Right Reasons" (Ross et al., 2017): cross-entropy
  plus ``lam * sum over background pixels of (d sum_k log p_k / d x)^2``.
* :class:`GradCAMPenaltyClassifier`: cross-entropy plus ``lam * (share of the label's Grad-CAM
  map that lies on the background)``, with Grad-CAM taken at a named convolution layer and
  up-sampled to the input.

Both train from ``(images, labels, masks)`` batches like :class:`keras_isnet.ISNet` and are
the plain classifier at inference.

Example:
    >>> rrr = RRRClassifier(build_cnn(), lam=10.0)
    >>> rrr.compile(optimizer="adam", metrics=["accuracy"])
    >>> rrr.fit(ki.isnet_dataset(images, labels, masks), epochs=5)
"""

from __future__ import annotations

import time

import keras
from keras import ops

from keras_isnet import backend
from keras_isnet.experiments.training import build_classifier, make_optimizer, train_dataset
from keras_isnet.isnet import stateless
from keras_isnet.isnet.model import classification_loss, unpack_batch
from keras_isnet.isnet.variants import sparse_labels
from keras_isnet.losses import prepare_masks


class _PenaltyClassifier(keras.Model):
    """Cross-entropy plus ``lam * penalty(images, labels, masks)``; subclasses give the penalty."""

    def __init__(self, model, lam: float, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{type(self).__name__}_{model.name}"))
        self.classifier = model
        self.lam = float(lam)
        self._trackers = [
            keras.metrics.Mean(name=n) for n in ("loss", "classification_loss", "penalty")
        ]

    @property
    def metrics(self):
        extra = [m for m in super().metrics if m not in self._trackers and m.name != "loss"]
        return self._trackers + extra

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def penalty(self, images, labels, masks):
        raise NotImplementedError

    def _penalised_loss(self, images, labels, masks):
        """``(total, (ce, penalty, logits))`` of one batch, as the step differentiates it."""
        logits, pen = self.penalty(images, labels, masks)
        ce = classification_loss(labels, logits)
        total = ops.add(ce, ops.multiply(self.lam, pen))
        for extra in self.classifier.losses:
            total = ops.add(total, extra)
        return total, (ce, pen, logits)

    def _logs(self, labels, values, logits):
        for tracker, value in zip(self._trackers, values, strict=True):
            tracker.update_state(value)
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(sparse_labels(labels), ops.softmax(logits, axis=-1))
        return self.get_metrics_result()

    def train_step(self, *args):
        """One step: ``train_step(data)`` on TensorFlow and PyTorch, ``train_step(state, data)
        -> (logs, state)`` on JAX (Keras' stateless step, :mod:`keras_isnet.isnet.stateless`)."""
        state, data = args if len(args) == 2 else (None, args[0])
        images, labels, masks = unpack_batch(data)
        if masks is None or labels is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs (images, labels, masks) batches, e.g. "
                "ki.isnet_dataset(images, labels, masks)."
            )

        def compute():
            return self._penalised_loss(images, labels, masks)

        def update_metrics(total, aux):
            ce, pen, logits = aux
            return self._logs(labels, (total, ce, pen), logits)

        if keras.backend.backend() == "jax":
            return stateless.train_step(self, state, compute, update_metrics)
        variables = self.trainable_variables

        def loss_fn():
            total, aux = compute()
            # identity unless a LossScaleOptimizer (mixed precision) scales the loss
            scaled = self.optimizer.scale_loss(backend.scale_loss_for_distribution(total))
            return scaled, (total, aux)

        (_, (total, aux)), grads = backend.value_and_gradients(loss_fn, variables)
        self.optimizer.apply(grads, variables)
        return update_metrics(total, aux)

    def test_step(self, *args):
        """The classification loss and metrics of a batch (masks are optional and unused)."""
        state, data = args if len(args) == 2 else (None, args[0])
        images, labels, _ = unpack_batch(data)

        def compute():
            logits = self.classifier(images, training=False)
            return None, (classification_loss(labels, logits), logits)

        def update_metrics(total, aux):
            ce, logits = aux
            self._trackers[0].update_state(ce)
            self._trackers[1].update_state(ce)
            if self._compile_metrics is not None:
                probabilities = ops.softmax(logits, axis=-1)
                self._compile_metrics.update_state(sparse_labels(labels), probabilities)
            return {k: v for k, v in self.get_metrics_result().items() if k != "penalty"}

        if keras.backend.backend() == "jax":
            return stateless.test_step(self, state, compute, update_metrics)
        return update_metrics(*compute())


class RRRClassifier(_PenaltyClassifier):
    """Right for the Right Reasons: penalise input gradients of ``sum_k log p_k`` on the background.

    Args:
        model: a classifier with logits output.
        lam: the penalty weight, default 10.
    """

    def __init__(self, model, lam: float = 10.0, **kwargs):
        super().__init__(model, lam, **kwargs)

    def penalty(self, images, labels, masks):
        logits, pullback = backend.vjp(lambda x: self.classifier(x, training=True), [images])
        # d/dx sum_k log p_k = sum_k (1 - K p_k) d logit_k/dx: the cotangent below.
        cotangent = ops.subtract(1.0, ops.multiply(float(logits.shape[-1]), ops.softmax(logits)))
        grads = pullback(cotangent)[0]
        background = 1.0 - prepare_masks(masks, tuple(images.shape[1:3]))
        per_pixel = ops.sum(ops.square(grads), axis=-1)
        return logits, ops.mean(ops.sum(ops.multiply(per_pixel, background), axis=(1, 2)))


class GradCAMPenaltyClassifier(_PenaltyClassifier):
    """Penalise the share of the label's Grad-CAM map that falls on the background.

    Args:
        model: a functional classifier with logits output.
        layer_name: the convolution layer Grad-CAM looks at (default: the last Conv2D).
        lam: the penalty weight, default 1.
    """

    def __init__(self, model, layer_name: str | None = None, lam: float = 1.0, **kwargs):
        super().__init__(model, lam, **kwargs)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        if layer_name is None:
            if not convs:
                raise ValueError(f"Model {model.name!r} has no Conv2D layer for Grad-CAM.")
            layer_name = convs[-1].name
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ValueError(
                f"Model {model.name!r} has no layer {layer_name!r}; its Conv2D layers are "
                f"{[c.name for c in convs]}."
            ) from None
        self.layer_name = layer_name
        self._body = keras.Model(model.input, layer.output)
        self._head = keras.Model(layer.output, model.outputs[0])

    def penalty(self, images, labels, masks):
        features = self._body(images, training=True)
        logits, pull = backend.vjp(lambda a: self._head(a, training=True), [features])
        onehot = ops.one_hot(sparse_labels(labels), logits.shape[-1], dtype=logits.dtype)
        grads = pull(onehot)[0]
        weights = ops.mean(grads, axis=(1, 2), keepdims=True)
        cam = ops.relu(ops.sum(ops.multiply(weights, features), axis=-1, keepdims=True))
        cam = ops.image.resize(cam, tuple(images.shape[1:3]), interpolation="bilinear")[..., 0]
        background = 1.0 - prepare_masks(masks, tuple(images.shape[1:3]))
        share = ops.divide(
            ops.sum(ops.multiply(cam, background), axis=(1, 2)),
            ops.add(ops.sum(cam, axis=(1, 2)), 1e-8),
        )
        return logits, ops.mean(share)


def train_baselines(data, config) -> dict:
    """Train both baselines as the demo trains the ISNet; ``{name: (model, seconds)}``."""
    out = {}
    for name, make in (
        ("rrr", lambda m: RRRClassifier(m, lam=10.0)),
        ("gradcam_penalty", lambda m: GradCAMPenaltyClassifier(m, lam=1.0)),
    ):
        print(f"\n== baseline: {name} ==", flush=True)
        model = build_classifier(config.seed)
        trainer = make(model)
        trainer.compile(optimizer=make_optimizer(config), metrics=["accuracy"])
        train = train_dataset(data, config)
        start = time.perf_counter()
        trainer.fit(train, epochs=config.epochs, verbose=config.verbose)
        out[name] = (model, time.perf_counter() - start)
    return out


__all__ = ["GradCAMPenaltyClassifier", "RRRClassifier", "train_baselines"]
