"""The RRR and Grad-CAM penalty baselines: their penalties against closed forms in NumPy, and
their training step on every backend (on JAX, Keras' stateless step) against one SGD update
computed from an independent gradient, with BatchNorm statistics updated as one training call.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_isnet import backend
from keras_isnet.experiments.baselines import GradCAMPenaltyClassifier, RRRClassifier

RTOL = 2e-5


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _batch(shape, classes, n=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *shape)).astype("float32")
    labels = rng.integers(0, classes, size=n)
    masks = (rng.random((n, *shape[:2])) > 0.5).astype("float32")
    return images, labels, masks


def test_rrr_penalty_is_the_closed_form_of_a_linear_softmax():
    """For logits z = x W + b: d/dx sum_k log p_k = W (1 - K p), squared on the background."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    dense = keras.layers.Dense(3, bias_initializer="random_normal")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    images, labels, masks = _batch((4, 4, 2), 3)
    logits, penalty = RRRClassifier(model).penalty(images, labels, masks)

    w, b = (np.asarray(v, "float64") for v in dense.get_weights())
    p = _softmax(images.reshape(len(images), -1) @ w + b)
    grads = ((1.0 - 3.0 * p) @ w.T).reshape(images.shape)
    expected = np.mean(np.sum(np.sum(grads**2, axis=-1) * (1.0 - masks), axis=(1, 2)))
    z = images.reshape(len(images), -1) @ w + b
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), z, rtol=RTOL, atol=1e-5)
    assert float(penalty) == pytest.approx(float(expected), rel=float(RTOL))


def test_gradcam_penalty_is_the_closed_form_of_a_pooled_head():
    """Conv -> global average pooling -> Dense: the Grad-CAM weights of class c are W[:, c] / HW,
    so the map is relu(A @ W[:, c]) / HW and the penalty its background share."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 1))
    features = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    dense = keras.layers.Dense(4)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(features)))
    images, labels, masks = _batch((6, 6, 1), 4)
    trainer = GradCAMPenaltyClassifier(model)
    assert trainer.layer_name == "conv"
    _, penalty = trainer.penalty(images, labels, masks)

    a = keras.ops.convert_to_numpy(keras.Model(inputs, features)(images)).astype("float64")
    w = np.asarray(dense.get_weights()[0], "float64")
    cam = np.maximum(np.einsum("nhwk,nk->nhw", a, w[:, labels].T) / 36.0, 0.0)
    share = np.sum(cam * (1.0 - masks), axis=(1, 2)) / (np.sum(cam, axis=(1, 2)) + 1e-8)
    assert float(penalty) == pytest.approx(float(np.mean(share)), rel=float(RTOL))


def test_gradcam_rejects_an_unknown_layer():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match="no layer 'nope'.*'conv'"):
        GradCAMPenaltyClassifier(model, layer_name="nope")


def _cnn(seed=0):
    """Conv -> BatchNorm -> ReLU -> Conv -> ReLU -> pooling -> Dense: BatchNorm statistics are
    state the step must return (on JAX) rather than assign."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


MAKERS = {
    "rrr": lambda m: RRRClassifier(m, lam=0.5),
    "gradcam": lambda m: GradCAMPenaltyClassifier(m, lam=2.0),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_one_step_is_sgd_on_the_penalised_loss(name):
    """train_on_batch (Keras' compiled step; stateless on JAX) moves the weights by
    -lr * the gradient taken eagerly on a copy, and the BatchNorm statistics as one training
    forward pass of that copy does."""
    images, labels, masks = _batch((8, 8, 1), 3, n=8)
    trainer = MAKERS[name](_cnn())
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = trainer.train_on_batch(images, labels, sample_weight=masks, return_dict=True)

    reference = MAKERS[name](_cnn())
    start = [np.array(keras.ops.convert_to_numpy(v)) for v in reference.trainable_variables]
    (total, _), grads = backend.value_and_gradients(
        lambda: reference._penalised_loss(images, labels, masks), reference.trainable_variables
    )
    assert float(logs["loss"]) == pytest.approx(float(total), rel=float(RTOL))
    assert float(logs["penalty"]) > 0.0
    for v, w0, g in zip(trainer.trainable_variables, start, grads, strict=True):
        expected = w0 - 0.1 * keras.ops.convert_to_numpy(g)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), expected, rtol=1e-4, atol=1e-6)

    forward = _cnn()
    forward(images, training=True)
    for got, want in zip(
        trainer.classifier.non_trainable_variables, forward.non_trainable_variables, strict=True
    ):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-6
        )
    moving_mean = keras.ops.convert_to_numpy(trainer.classifier.non_trainable_variables[0])
    assert np.abs(moving_mean).max() > 0.0  # the statistics did move


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_fit_and_evaluate(name):
    """A short fit lowers the penalised loss; evaluate reports the classification loss and
    metrics without the penalty; a batch without masks is refused with the way to give them."""
    images, labels, masks = _batch((8, 8, 1), 3, n=32, seed=3)
    trainer = MAKERS[name](_cnn())
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    history = trainer.fit(images, labels, sample_weight=masks, batch_size=16, epochs=6, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    results = trainer.evaluate(images, labels, batch_size=16, verbose=0, return_dict=True)
    assert set(results) == {"loss", "classification_loss", "accuracy"}
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, trainer.predict(images, verbose=0)
    )
    assert float(results["classification_loss"]) == pytest.approx(float(plain), rel=1e-4)
    with pytest.raises(ValueError, match=r"\(images, labels, masks\)"):
        fresh = MAKERS[name](_cnn())
        fresh.compile(optimizer="sgd")
        fresh.fit(images, labels, epochs=1, verbose=0)
