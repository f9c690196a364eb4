"""Multi-label and binary ISNets (issue 12, item 2).

The loss is checked against the closed form of binary cross-entropy with logits in NumPy
float64 and against PyTorch's ``binary_cross_entropy_with_logits`` (the reference code's loss
with ``multiLabel=True``); the selective map of a sigmoid head against the map of the same
logit from the original variant and from the ``lrp.epsilon`` analyzer's counterpart; the
metrics against NumPy. Before: a multi-label head trained on the argmax of its multi-hot
labels, a 1-unit head gave a cross-entropy of exactly 0, one-hot labels of the wrong width
were accepted.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from isnet_models import conv_classifier, toy_batch

import keras_isnet as ki
from keras_isnet import backend
from keras_isnet.isnet.heads import SigmoidHead, SoftmaxHead, head_for

#: float64 closed forms: 1e-12, except where float64 is not computed in float64 (JAX without
#: jax_enable_x64).
REL = 1e-12 if backend.supports_float64() else 1e-6


def _model(k=4, activation=None, seed=0):
    return conv_classifier(k, activation=activation, seed=seed)


def _data(n=16, k=4, seed=0):
    return toy_batch(n, k, multilabel=True, seed=seed)


def _bce(y, z, pos_weight=None):
    """NumPy float64: -[w y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], mean."""
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    w = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    return float(np.mean(-(w * y * np.log(p) + (1 - y) * np.log(1 - p))))


# ------------------------------------------------------------------------------ the loss
@pytest.mark.parametrize("pos_weight", [None, 2.5, [1.0, 3.0, 0.5, 2.0]])
def test_binary_cross_entropy_matches_the_closed_form(pos_weight):
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(6, 4))
    y = (rng.uniform(size=(6, 4)) < 0.5).astype("float64")
    head = SigmoidHead(4, pos_weight)
    got = float(head.loss(y, keras.ops.convert_to_tensor(z, "float64")))
    assert got == pytest.approx(_bce(y, z, pos_weight), rel=float(REL))


def test_binary_cross_entropy_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z = rng.normal(scale=4.0, size=(5, 3))
    y = (rng.uniform(size=(5, 3)) < 0.5).astype("float64")
    w = np.array([1.0, 4.0, 0.25])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(z), torch.tensor(y), pos_weight=torch.tensor(w)
    ).item()
    got = float(SigmoidHead(3, w).loss(y, keras.ops.convert_to_tensor(z, "float64")))
    assert got == pytest.approx(expected, rel=float(REL))


def test_sample_weights_weight_each_samples_mean_over_labels():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 3))
    y = (rng.uniform(size=(4, 3)) < 0.5).astype("float64")
    weights = np.array([1.0, 0.0, 2.0, 0.5])
    per_sample = [_bce(y[i], z[i]) for i in range(4)]
    got = float(SigmoidHead(3).loss(y, keras.ops.convert_to_tensor(z, "float64"), weights))
    assert got == pytest.approx(float(np.mean(weights * per_sample)), rel=float(REL))


def test_a_one_unit_head_is_binary_and_its_loss_is_not_zero():
    x, _, m = _data(8, 1)
    y = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    isnet = ki.ISNet(_model(1), P=0.0)
    assert isnet.head.kind == "sigmoid" and isnet.head.binary
    logits = keras.ops.convert_to_numpy(isnet.heatmaps.logits(x))
    expected = _bce(y[:, None], logits)
    for labels in (y, y[:, None], y.astype("float32")):
        assert float(isnet.head.loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    zeros = float(isnet.head.loss(np.zeros(8), logits))
    assert zeros == pytest.approx(_bce(np.zeros((8, 1)), logits), rel=1e-5) and zeros > 0.0


# ---------------------------------------------------------------------------- the heads
def test_heads_by_shape_and_arguments():
    assert isinstance(head_for((5,)), SoftmaxHead)
    assert isinstance(head_for((5,), multilabel=True), SigmoidHead)
    assert head_for((1,)).binary
    assert isinstance(head_for((8, 8, 3)), SoftmaxHead) and head_for((8, 8, 3)).dense
    with pytest.raises(ValueError, match="multilabel=True for independent labels"):
        head_for((5,), pos_weight=2.0)
    with pytest.raises(ValueError, match="segmentation"):
        head_for((8, 8, 3), multilabel=True)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        head_for((4,), multilabel=True, pos_weight=[1.0, 2.0])


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 1, 2, 3]), r"labels of shape \(4,\).*np.eye\(4\)\[labels\]"),
        (np.ones((4, 3)), r"labels of shape \(4, 3\); give multi-hot labels \(batch, 4\)"),
        (np.full((4, 4), 2.0), r"must lie in \[0, 1\].*found 2.0 at index \(0, 0\)"),
    ],
)
def test_multilabel_labels_that_do_not_fit_are_refused(labels, match):
    x, _, m = _data(4)
    isnet = ki.ISNet(_model(4), multilabel=True)
    isnet.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=match):
        isnet.fit(x, labels, sample_weight=m, verbose=0)


def test_a_sigmoid_head_without_multilabel_warns():
    with pytest.warns(UserWarning, match="multilabel=True"):
        ki.ISNet(_model(4, activation="sigmoid"))


def test_class_weight_is_refused_for_multilabel_and_selective_label_too():
    x, y, m = _data(4)
    isnet = ki.ISNet(_model(4), multilabel=True)
    isnet.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="pos_weight="):
        isnet.fit(x, y, sample_weight=m, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="selective_class='label'"):
        ki.ISNet(_model(4), multilabel=True, selective_class="label")


# ------------------------------------------------------------------------------ heatmaps
@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_selective_explains_the_chosen_labels_logit(activation):
    """For a sigmoid, log(p / (1 - p)) is the logit: the selective map of the argmin label is
    the original variant's map of that label (and a 1-unit head's only map)."""
    x, y, _ = _data(6)
    model = _model(4, activation=activation)
    heatmaps = ki.ISNetHeatmaps(model, multilabel=True)
    logits, selective = heatmaps.logits_and_heatmaps(x, y, variant="selective")
    _, original = heatmaps.logits_and_heatmaps(x, y, variant="original")
    lowest = np.argmin(keras.ops.convert_to_numpy(logits), axis=-1)
    selective = keras.ops.convert_to_numpy(selective)[:, 0]
    original = keras.ops.convert_to_numpy(original)[np.arange(6), lowest]
    assert np.abs(selective).max() > 1e-4
    np.testing.assert_allclose(selective, original, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["selective", "stochastic", "original"])
def test_a_binary_head_has_one_nonzero_map(variant):
    x, _, _ = _data(6)
    heatmaps = ki.ISNetHeatmaps(_model(1))
    _, maps = heatmaps.logits_and_heatmaps(
        x, np.zeros(6), variant=variant, seed=keras.random.SeedGenerator(0)
    )
    _, reference = heatmaps.logits_and_heatmaps(x, np.zeros(6), variant="original")
    maps = keras.ops.convert_to_numpy(maps)
    assert maps.shape[1] == 1 and np.abs(maps).max() > 1e-4
    np.testing.assert_allclose(maps, keras.ops.convert_to_numpy(reference), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------ training
def test_multilabel_fit_learns_and_reports_binary_metrics():
    keras.utils.set_random_seed(0)
    x, y, m = _data(32)
    # each label is a bright pixel inside the foreground square: learnable
    for j in range(4):
        x[:, 2 + j, 3, 0] = np.where(y[:, j] > 0, 0.95, 0.05)
    isnet = ki.ISNet(_model(4), multilabel=True, pos_weight=[1.0, 1.5, 1.0, 2.0], P=0.3)
    isnet.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        metrics=["binary_accuracy", keras.metrics.AUC(multi_label=True, num_labels=4)],
    )
    history = isnet.fit(x, y, sample_weight=m, batch_size=8, epochs=15, verbose=0).history
    assert history["classification_loss"][-1] < 0.6 * history["classification_loss"][0]
    result = isnet.evaluate(x, y, sample_weight=m, batch_size=32, verbose=0, return_dict=True)
    probabilities = 1.0 / (1.0 + np.exp(-keras.ops.convert_to_numpy(isnet.predict(x, verbose=0))))
    accuracy = float(np.mean((probabilities > 0.5) == (y > 0.5)))
    assert result["binary_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert result["auc"] > 0.8
    assert result["classification_loss"] == pytest.approx(
        _bce(y, np.log(probabilities / (1 - probabilities)), [1.0, 1.5, 1.0, 2.0]), rel=1e-3
    )


def test_multilabel_isnet_saves_and_loads(tmp_path):
    x, y, m = _data(8)
    isnet = ki.ISNet(_model(4), multilabel=True, pos_weight=[1.0, 2.0, 3.0, 4.0])
    isnet.compile(optimizer="sgd")
    isnet.fit(x, y, sample_weight=m, verbose=0)
    path = tmp_path / "multilabel.keras"
    isnet.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.multilabel and loaded.pos_weight.tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.predict(x, verbose=0)),
        keras.ops.convert_to_numpy(isnet.predict(x, verbose=0)),
        rtol=1e-6,
    )


def test_binary_class_weight_equals_repeating_the_positive_samples():
    keras.utils.set_random_seed(0)
    x, _, m = _data(4, 1)
    y = np.array([1, 0, 0, 1])
    weighted = ki.ISNet(_model(1, seed=4), P=0.5)
    weighted.compile(optimizer=keras.optimizers.SGD(0.1))
    weighted.fit(
        x, y, sample_weight=m, batch_size=4, class_weight={1: 2.0}, verbose=0, shuffle=False
    )
    repeated = ki.ISNet(_model(1, seed=4), P=0.5)
    repeated.compile(optimizer=keras.optimizers.SGD(0.1 * 6 / 4))
    order = [0, 0, 1, 2, 3, 3]
    repeated.fit(x[order], y[order], sample_weight=m[order], batch_size=6, verbose=0, shuffle=False)
    for a, b in zip(weighted.classifier.weights, repeated.classifier.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------- metrics
def test_per_label_auc_equals_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    labels = (rng.uniform(size=(40, 3)) < 0.4).astype(int)
    scores = np.round(rng.normal(size=(40, 3)) + labels, 1)  # rounded: ties
    got = ki.metrics.per_label_auc(labels, scores)
    expected = [metrics.roc_auc_score(labels[:, j], scores[:, j]) for j in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isnan(ki.metrics.per_label_auc(np.ones(4), np.arange(4.0)))[0]
    with pytest.raises(ValueError, match="same shape"):
        ki.metrics.per_label_auc(labels, scores[:, :2])


def test_per_label_accuracy_thresholds_the_logits_at_zero():
    labels = np.array([[1, 0], [0, 0], [1, 1]])
    logits = np.array([[0.3, -1.0], [0.1, 2.0], [-0.2, 0.5]])
    np.testing.assert_array_equal(ki.metrics.per_label_accuracy(labels, logits), [1 / 3, 2 / 3])
