"""What the ISNet rejects, and the state it leaves (issue 12, items 3 and 4).

Each bad input is rejected with a ``ValueError`` that names what is wrong, before any state
changes: the weights, BatchNorm's moving statistics, the optimizer's iteration count and
slots and the stochastic variant's random state are bit-identical afterwards, and the
corrected call trains exactly as a fresh run. Before: out-of-range labels raised a raw
``InvalidArgumentError`` after Adam's iteration count had moved, masks of the wrong batch size
were "ambiguous cardinality", one-hot labels of the wrong width trained silently, and a NaN
image in a dataset with ``input_bounds=None`` made every weight NaN.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from isnet_models import conv_classifier, toy_batch

import keras_isnet as ki


def _isnet(bounds=(0.0, 1.0), variant="stochastic"):
    isnet = ki.ISNet(
        conv_classifier(3, batchnorm=True), variant=variant, P=0.5, input_bounds=bounds, seed=1
    )
    isnet.compile(optimizer=keras.optimizers.Adam(1e-2))
    isnet.optimizer.build(isnet.trainable_variables)
    return isnet


def _data(n=8):
    return toy_batch(n, 3)


def _state(isnet):
    values = [v.numpy() for v in isnet.variables]
    values += [v.numpy() for v in isnet.optimizer.variables]  # iterations, moments
    values.append(isnet._seed_generator.state.numpy())
    return [np.array(v, copy=True) for v in values]


def _same(a, b):
    return len(a) == len(b) and all(
        np.array_equal(p, q, equal_nan=True) for p, q in zip(a, b, strict=True)
    )


X, Y, M = _data()
NAN = X.copy()
NAN[2, 3, 3, 0] = np.nan
INF = X.copy()
INF[5, 0, 0, 0] = np.inf


def _numpy(x, y, m):
    return lambda isnet: isnet.fit(
        x, y, sample_weight=m, batch_size=8, epochs=1, verbose=0, shuffle=False
    )


def _dataset(x, y, m):
    return lambda isnet: isnet.fit(
        ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False), epochs=1, verbose=0
    )


CASES = {
    # name: (bounds, the bad call, the message it must contain)
    "label out of range": ((0.0, 1.0), _numpy(X, np.where(Y == 0, 7, Y), M), "label 7"),
    "negative label": ((0.0, 1.0), _numpy(X, np.where(Y == 0, -1, Y), M), "label -1"),
    "label out of range in a dataset": (
        (0.0, 1.0),
        _dataset(X, np.where(Y == 0, 7, Y), M),
        "ISNet: label",  # in-graph (TensorFlow): "labels outside the bounds (0, 2) ... to 7"
    ),
    "one-hot of the wrong width": ((0.0, 1.0), _numpy(X, np.eye(4)[Y], M), "has 3 logits"),
    "multi-hot for a softmax": (
        (0.0, 1.0),
        _numpy(X, np.minimum(np.eye(3)[Y] + np.eye(3)[(Y + 1) % 3], 1), M),
        "multilabel=True",
    ),
    "masks of another batch size": ((0.0, 1.0), _numpy(X, Y, M[:5]), "8 images but 5 masks"),
    "NaN image, input_bounds=None": (None, _numpy(NAN, Y, M), "NaN or inf in 1 sample"),
    "inf image, input_bounds=None": (None, _numpy(INF, Y, M), "(first: sample 5)"),
    "NaN image in a dataset, input_bounds=None": (None, _dataset(NAN, Y, M), "NaN or inf"),
    "NaN image in a dataset": ((0.0, 1.0), _dataset(NAN, Y, M), "ISNet: images"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_before_any_state_changes(case):
    bounds, call, message = CASES[case]
    isnet = _isnet(bounds)
    before = _state(isnet)
    with pytest.raises(ValueError, match=None) as info:
        call(isnet)
    assert message in str(info.value), str(info.value)
    assert _same(before, _state(isnet)), "a rejected call changed the state"
    # the corrected call trains exactly as a fresh ISNet does
    _numpy(X, Y, M)(isnet)
    fresh = _isnet(bounds)
    _numpy(X, Y, M)(fresh)
    assert _same(_state(isnet), _state(fresh))


def test_train_on_batch_and_evaluate_reject_bad_labels_too():
    isnet = _isnet()
    before = _state(isnet)
    with pytest.raises(ValueError, match="label 7"):
        isnet.train_on_batch(X, np.where(Y == 0, 7, Y), sample_weight=M)
    with pytest.raises(ValueError, match="has 3 logits"):
        isnet.evaluate(X, np.eye(5)[Y], sample_weight=M, verbose=0)
    assert _same(before, _state(isnet))
